// The hall TV's resident panel (issue 17): the QR code of this hall's feedback page (/y-kien) and the
// latest residents' feedback that nobody hid (text only: never a name, phone or short code).
(() => {
  const { el, fill } = MM;
  Object.assign(MM_TEXT.vi, { yk_title: "Góp ý với xã", yk_scan: "Quét mã bằng điện thoại (Wi-Fi của hội trường) để gửi ý kiến." });
  Object.assign(MM_TEXT.en, { yk_title: "Residents' feedback", yk_scan: "Scan with a phone on the hall's Wi-Fi to send feedback." });
  async function refresh() {
    const wall = await MM.get("citizen_wall").catch(() => ({ feedback: [] }));
    fill("[data-testid=tv-yk-wall]", (wall.feedback || []).slice(0, 4).map((f) =>
      el("li", { class: "user-text", "data-testid": "tv-yk-item" }, (f.answered ? "✓ " : "") + f.text)));
  }
  document.addEventListener("DOMContentLoaded", async () => {
    try { fill("[data-testid=tv-yk-url]", (await MM.request("/y-kien/url")).url); } catch (e) { /* QR still shows */ }
    refresh(); setInterval(() => refresh().catch(() => {}), 8000);
  });
})();
