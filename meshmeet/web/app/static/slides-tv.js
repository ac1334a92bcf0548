// The slide show on the hall TV: the page the chair turned to, drawn from this hall's own copy of
// the document (the node renders it: /app/slides/DOC/PAGE.png). Live: /ws/slides plus a poll of
// /api/slide_state; replay (?replay=ID): the slide records of the recording, sent by the player frame.
(() => {
  const { t } = MM;
  Object.assign(MM_TEXT.vi, { slide_loading: "Đang tải tài liệu", slide_page: "Trang", slide_error: "Không hiển thị được trang này" });
  Object.assign(MM_TEXT.en, { slide_loading: "Loading the document", slide_page: "Page", slide_error: "This page cannot be shown" });
  const replay = new URLSearchParams(location.search).get("replay");
  const LOADING_POLL_MS = 1000, IDLE_POLL_MS = 5000;
  let box, img, status, shownKey = null, loading = false, lastState = null;

  function hide() {
    box.classList.add("hidden"); document.body.classList.remove("showing-slide");
    box.dataset.state = "off"; shownKey = null;
  }
  function say(text, state) { status.textContent = text; box.dataset.state = state; }

  async function load(docId, page) {
    const key = docId + "/" + page;
    box.dataset.doc = docId; box.dataset.page = String(page);
    box.classList.remove("hidden"); document.body.classList.add("showing-slide");
    if (key === shownKey) return;
    const url = `/app/slides/${encodeURIComponent(docId)}/${page}.png`;
    let resp;
    try { resp = await fetch(url); } catch (e) { return; }
    if (box.dataset.doc !== docId || box.dataset.page !== String(page)) return;  // a newer turn came meanwhile
    if (!resp.ok) {
      let err = null;
      try { err = (await resp.json()).error; } catch (e) { err = null; }
      if (resp.status === 409) { loading = true; say(err ? (MM.lang === "vi" ? err.vi : err.en) : t("slide_loading"), "loading"); }
      else say(t("slide_error") + (err ? ": " + (MM.lang === "vi" ? err.vi : err.en) : ""), "error");
      return;
    }
    await resp.arrayBuffer();  // now in the HTTP cache: the <img> below takes it from there (CSP: no blob: images)
    img.onload = () => {
      box.dataset.shownDoc = docId; box.dataset.shownPage = String(page); box.dataset.shownAt = String(Date.now());
      box.dataset.sha256 = resp.headers.get("X-Slide-Sha256") || "";
      const pages = resp.headers.get("X-Slide-Pages");
      say("", "shown");
      status.textContent = "";
      img.alt = `${t("slide_page")} ${page}` + (pages ? ` / ${pages}` : "");
    };
    shownKey = key; loading = false;
    img.src = url;
  }

  function showState(s) {
    lastState = s;
    const slide = s && s.slide;
    if (!slide || !slide.page) { hide(); return; }
    const doc = s.document;
    box.dataset.via = slide.via || "";
    if (doc && !doc.complete) {
      box.dataset.doc = slide.doc_id; box.dataset.page = String(slide.page);
      box.classList.remove("hidden"); document.body.classList.add("showing-slide");
      loading = true; shownKey = null;
      say(`${t("slide_loading")} ${doc.percent} %`, "loading");
      return;
    }
    load(slide.doc_id, slide.page);
  }

  async function poll() {
    try { showState(await MM.get("slide_state")); } catch (e) { /* node away: keep the page */ }
  }

  function live() {
    const connect = () => {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(proto + "//" + location.host + "/ws/slides");
      ws.onmessage = (ev) => { try { showState(JSON.parse(ev.data)); } catch (e) { /* not ours */ } };
      ws.onopen = poll;
      ws.onclose = () => setTimeout(connect, 2000);
    };
    connect();
    const tick = () => { poll().finally(() => setTimeout(tick, loading ? LOADING_POLL_MS : IDLE_POLL_MS)); };
    setTimeout(tick, LOADING_POLL_MS);
  }

  // Replay: the player frame forwards the recording's slide records at their time. Listening starts
  // at once (the frame may play before this page's DOM is ready); the newest waits for the DOM.
  let pendingReplay = null;
  const onReplay = (d) => { if (!d.page) hide(); else load(d.doc_id, d.page); };
  if (replay) {
    window.addEventListener("message", (ev) => {
      if (ev.origin !== location.origin || !ev.data || ev.data.type !== "slide") return;
      if (box) onReplay(ev.data); else pendingReplay = ev.data;
    });
  }

  function replayed() {
    if (pendingReplay) onReplay(pendingReplay);
    setInterval(() => { if (loading && box.dataset.doc) { shownKey = null; load(box.dataset.doc, Number(box.dataset.page)); } }, LOADING_POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    box = document.querySelector("[data-testid=tv-slide]");
    img = box.querySelector("img"); status = box.querySelector(".slide-status");
    hide();
    if (replay) replayed(); else live();
    MM.onLang(() => { if (lastState) { shownKey = null; showState(lastState); } });
  });
})();
