// "Trình chiếu" on the chair console: pick a document of the meeting, show it on every hall's TV,
// turn pages. Only "document, page" travels; each hall draws the page from its own copy.
(() => {
  const { t, el, fill, say } = MM;
  Object.assign(MM_TEXT.vi, { slides: "Trình chiếu", slide_start: "Trình chiếu", slide_prev: "◀ Trang trước",
    slide_next: "Trang sau ▶", slide_stop: "Tắt trình chiếu", slide_page: "Trang", slide_none: "Chưa trình chiếu" });
  Object.assign(MM_TEXT.en, { slides: "Slides", slide_start: "Show", slide_prev: "◀ Previous", slide_next: "Next ▶",
    slide_stop: "Stop the show", slide_page: "Page", slide_none: "No slides shown" });
  const q = (s) => document.querySelector(s);
  let current = null, pages = null;
  const msg = () => q("[data-testid=slide-msg]");

  async function turn(docId, page) {
    try {
      await MM.api("slide_show", { doc_id: docId, page });
      say(msg(), "");
      await refresh();
    } catch (e) { say(msg(), MM.errText(e), true); }
  }

  async function refresh() {
    const meetingId = (q("[data-testid=meeting-select]") || {}).value;
    if (meetingId) {
      const docs = (await MM.get("docs", { meeting_id: meetingId }).catch(() => ({ documents: [] }))).documents || [];
      const sel = q("[data-testid=slide-doc]");
      const keep = sel.value;
      fill(sel, docs.map((d) => el("option", { value: d.id, selected: d.id === keep }, d.name)));
    }
    const s = await MM.get("slide_state").catch(() => null);
    current = s && s.slide && s.slide.page ? s.slide : null;
    fill("[data-testid=slide-page]", current ? `${t("slide_page")} ${current.page}${pages ? " / " + pages : ""}` : t("slide_none"));
    const prev = q("[data-testid=slide-preview]");
    if (current && s.image) {
      const resp = await fetch(s.image).catch(() => null);
      if (resp && resp.ok) {
        pages = Number(resp.headers.get("X-Slide-Pages")) || null;
        await resp.arrayBuffer();
        if (prev.getAttribute("src") !== s.image) prev.src = s.image;
        prev.classList.remove("hidden");
        prev.dataset.page = String(current.page);
        fill("[data-testid=slide-page]", `${t("slide_page")} ${current.page}${pages ? " / " + pages : ""}`);
      } else if (resp) {
        const body = await resp.json().catch(() => null);
        say(msg(), body && body.error ? (MM.lang === "vi" ? body.error.vi : body.error.en) : "HTTP " + resp.status, true);
      }
    } else prev.classList.add("hidden");
    q("[data-testid=slide-next]").disabled = !current || (pages !== null && current.page >= pages);
    q("[data-testid=slide-prev]").disabled = !current || current.page <= 1;
    q("[data-testid=slide-stop]").disabled = !current;
  }

  document.addEventListener("DOMContentLoaded", () => {
    q("[data-testid=slide-start]").addEventListener("click", () => {
      const docId = q("[data-testid=slide-doc]").value;
      if (docId) { pages = null; turn(docId, 1); }
    });
    q("[data-testid=slide-next]").addEventListener("click", () => current && turn(current.doc_id, current.page + 1));
    q("[data-testid=slide-prev]").addEventListener("click", () => current && current.page > 1 && turn(current.doc_id, current.page - 1));
    q("[data-testid=slide-stop]").addEventListener("click", () => current && turn(current.doc_id, 0));
    const tick = () => { if (!q("[data-testid=chair-console]").classList.contains("hidden")) refresh().catch(() => {}); };
    setInterval(tick, 3000); setTimeout(tick, 500);
    q("[data-testid=meeting-select]").addEventListener("change", tick);
    MM.onLang(tick);
  });
})();
