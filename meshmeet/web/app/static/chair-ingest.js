// The chair's "Tiếp sóng hội nghị cấp trên" card: relay the province's conference (an RTMP, RTSP,
// SRT or HLS URL pulled, or an RTMP push received on a port) to every hall through the node's
// `ingest` API, and show its state and its last error in the page's language. Only calls the API.
(() => {
  Object.assign(MM_TEXT.vi, {
    ingest_title: "Tiếp sóng hội nghị cấp trên", ingest_url: "Địa chỉ nguồn", ingest_start: "Bắt đầu tiếp sóng",
    ingest_stop: "Dừng", ingest_listen: "Nhận luồng đẩy tới cổng", ingest_idle: "Không tiếp sóng",
    ingest_starting: "Đang mở nguồn…", ingest_live: "Đang tiếp sóng", ingest_retrying: "Đang thử lại",
    ingest_stalled: "Nguồn im lặng", ingest_retry_in: "thử lại sau", ingest_need_url: "Cần địa chỉ nguồn hoặc cổng nhận",
    ingest_push: "Bộ mã hoá đẩy tới cổng {port} của máy này, đường dẫn {path} (khoá luồng: {key}). Luồng không đúng khoá bị từ chối.",
  });
  Object.assign(MM_TEXT.en, {
    ingest_title: "Relay the upstream conference", ingest_url: "Source address", ingest_start: "Start relaying",
    ingest_stop: "Stop", ingest_listen: "Receive a push on port", ingest_idle: "Not relaying",
    ingest_starting: "Opening the source…", ingest_live: "Relaying", ingest_retrying: "Retrying",
    ingest_stalled: "The source is silent", ingest_retry_in: "retry in", ingest_need_url: "A source address or a port is needed",
    ingest_push: "The encoder pushes to port {port} of this machine, path {path} (stream key: {key}). A push without this key is refused.",
  });
  const q = (s) => document.querySelector(s);
  let last = null;

  function show(st) {
    last = st;
    const { t } = MM;
    const lang = document.documentElement.lang === "en" ? "en" : "vi";
    let text = t("ingest_" + (st.state || "idle"));
    if (st.source) text += ` — ${st.source}`;
    if (st.video || st.audio) text += ` (${[st.video, st.audio].filter(Boolean).join(", ")})`;
    const err = st.error;
    if (err && st.state !== "live") {
      text += `: ${err[lang] || err.vi || err.en}`;
      if (st.next_try_in_s !== null && st.next_try_in_s !== undefined) text += ` (${t("ingest_retry_in")} ${st.next_try_in_s} s)`;
    }
    const box = q("[data-testid=ingest-status]");
    box.textContent = text;
    box.dataset.state = st.state || "idle";
    box.dataset.error = (err && err.code) || "";
    box.classList.toggle("bad", !!err && st.state !== "live");
  }

  async function poll() {
    if (q("[data-testid=chair-console]").classList.contains("hidden")) return;
    try { show(await MM.get("ingest", { action: "status" })); } catch (e) { /* the page shows offline elsewhere */ }
  }

  async function start(ev) {
    ev.preventDefault();
    const url = q("[data-testid=ingest-url]").value.trim();
    const listen = q("[data-testid=ingest-listen]").checked;
    const args = listen ? { action: "start", listen: Number(q("[data-testid=ingest-port]").value) } : { action: "start", url };
    if (!listen && !url) { MM.say("[data-testid=ingest-msg]", MM.t("ingest_need_url"), true); return; }
    try {
      const st = await MM.api("ingest", args);
      show(st);
      // the key is in the start answer only (never in the open status): shown to the chair who started it
      const p = st.push;
      MM.say("[data-testid=ingest-msg]", p ? MM.t("ingest_push").replace("{port}", p.port).replace("{path}", p.path)
        .replace("{key}", p.key) : "");
    } catch (e) { MM.say("[data-testid=ingest-msg]", MM.errText(e), true); }
  }

  async function stop() {
    try { show(await MM.api("ingest", { action: "stop" })); MM.say("[data-testid=ingest-msg]", ""); }
    catch (e) { MM.say("[data-testid=ingest-msg]", MM.errText(e), true); }
  }

  document.addEventListener("DOMContentLoaded", () => {
    q("[data-testid=ingest-form]").addEventListener("submit", start);
    q("[data-testid=ingest-stop]").addEventListener("click", stop);
    MM.onLang(() => last && show(last));
    setInterval(poll, 2000);
    poll();
  });
})();
