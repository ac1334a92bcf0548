// The chair's view of the Zalo OA bridge (issue 17): the bilingual alert when the refresh token is
// refused, and per item: queued, sent (with the OA's message id) or failed with the OA's error.
(() => {
  const { el, fill } = MM;
  Object.assign(MM_TEXT.vi, { send_zalo: "Gửi Zalo", zalo_title: "Zalo OA", zalo_retry: "Gửi lại",
    zalo_queued: "đang chờ", zalo_sending: "đang gửi", zalo_unsure: "đang kiểm tra", zalo_sent: "đã gửi", zalo_failed: "lỗi" });
  Object.assign(MM_TEXT.en, { send_zalo: "Send to Zalo", zalo_title: "Zalo OA", zalo_retry: "Send again",
    zalo_queued: "queued", zalo_sending: "sending", zalo_unsure: "checking", zalo_sent: "sent", zalo_failed: "failed" });
  const t = (k) => MM.t(k);
  async function refresh() {
    let s;
    try { s = await MM.get("zalo_status"); } catch (e) { return; }
    const panel = document.querySelector("[data-testid=zalo-panel]");
    if (!s.configured) { panel.classList.add("hidden"); return; }
    panel.classList.remove("hidden");
    const alert = document.querySelector("[data-testid=zalo-alert]");
    alert.classList.toggle("hidden", !s.alert);
    alert.textContent = s.alert ? `${s.alert.vi} — ${s.alert.en}` : "";
    fill("[data-testid=zalo-counts]", Object.entries(s.counts || {}).map(([k, n]) => `${t("zalo_" + k)}: ${n}`).join(" · "));
    fill("[data-testid=zalo-items]", (s.items || []).filter((i) => i.kind !== "broadcast").slice(0, 30).map((i) =>
      el("li", { "data-testid": "zalo-item", "data-state": i.state },
        el("span", { class: "pill" }, t("zalo_" + i.state)), " ", el("span", { class: "user-text" }, i.text.slice(0, 80)),
        i.error ? el("div", { class: "muted user-text", "data-testid": "zalo-error" }, i.error) : null,
        i.state === "failed" ? el("button", { class: "secondary", onclick: () => MM.api("zalo_retry", { key: i.key }).then(refresh) },
          t("zalo_retry")) : null)));
  }
  document.addEventListener("DOMContentLoaded", () => { refresh(); setInterval(refresh, 5000); });
})();
