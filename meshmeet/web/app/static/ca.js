// The CA install page: shows the commune CA fingerprint to compare with the hall screen.
document.addEventListener("DOMContentLoaded", async () => {
  try {
    const info = await MM.request("/app/session");
    MM.fill("[data-testid=ca-fingerprint]", info.ca_fingerprint || MM.t("ca_none"));
  } catch (e) { MM.fill("[data-testid=ca-fingerprint]", MM.errText(e)); }
});
