// Shared page helpers: language, API calls, live refresh over /ws/state with polling fallback,
// and DOM building that only ever sets text (user text is never parsed as HTML).
window.MM = (() => {
  let lang = localStorage.getItem("mm_lang") || "vi";
  const langListeners = [];
  const t = (k) => (MM_TEXT[lang] && MM_TEXT[lang][k]) || MM_TEXT.vi[k] || k;

  function applyI18n(root = document) {
    document.documentElement.lang = lang;
    root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    root.querySelectorAll("[data-i18n-ph]").forEach((el) => { el.placeholder = t(el.dataset.i18nPh); });
    root.querySelectorAll("[data-i18n-label]").forEach((el) => { el.setAttribute("aria-label", t(el.dataset.i18nLabel)); });
  }
  function setLang(l) {
    lang = l; localStorage.setItem("mm_lang", l); applyI18n(); langListeners.forEach((f) => f());
  }
  function onLang(f) { langListeners.push(f); }
  function langButton() {
    const b = document.querySelector("[data-testid=lang-switch]");
    if (b) b.addEventListener("click", () => setLang(lang === "vi" ? "en" : "vi"));
  }

  class ApiFailure extends Error {
    constructor(err, status) { super(err.en || "error"); this.err = err; this.status = status; }
    text() { return lang === "vi" ? (this.err.vi || this.err.en) : (this.err.en || this.err.vi); }
  }
  function errText(e) { return e instanceof ApiFailure ? e.text() : String(e && e.message || e); }

  async function request(url, opts) {
    let resp;
    try { resp = await fetch(url, opts); } catch (e) {
      throw new ApiFailure({ code: "network", vi: "Không kết nối được nút", en: "cannot reach the node" }, 0);
    }
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) throw new ApiFailure((body && body.error) || { code: "http", vi: "Lỗi HTTP " + resp.status, en: "HTTP " + resp.status }, resp.status);
    return body;
  }
  function api(name, args) {
    if (args === undefined) return request("/api/" + name, { headers: { Accept: "application/json" } });
    return request("/api/" + name, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(args) });
  }
  function get(name, query) {
    const q = new URLSearchParams(query || {}).toString();
    return request("/api/" + name + (q ? "?" + q : ""), {});
  }

  // Live refresh: a state_changed message (or a poll tick when the socket is down) calls refresh().
  const POLL_MS = 4000, RECONNECT_MS = 2000;
  function watchState(refresh, onConn) {
    let ws = null, timer = null, pending = false;
    const kick = () => {
      if (pending) return; pending = true;
      setTimeout(async () => { pending = false; try { await refresh(); } catch (e) { console.warn(e); } }, 150);
    };
    const connect = () => {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      ws = new WebSocket(proto + "//" + location.host + "/ws/state");
      ws.onopen = () => { onConn && onConn("online"); kick(); };
      ws.onmessage = () => kick();
      ws.onclose = () => { onConn && onConn("polling"); setTimeout(connect, RECONNECT_MS); };
    };
    connect();
    timer = setInterval(() => { if (!ws || ws.readyState !== 1) kick(); }, POLL_MS);
    setInterval(kick, POLL_MS * 4);  // belt and braces: a missed message is caught up within seconds
    kick();
    return () => clearInterval(timer);
  }

  // el("div", {class: "x", "data-testid": "y", onclick: f}, "text", child, ...)
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  function fill(target, ...children) {
    const node = typeof target === "string" ? document.querySelector(target) : target;
    node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false)
      .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
    return node;
  }
  function say(target, text, bad) {
    const node = typeof target === "string" ? document.querySelector(target) : target;
    node.textContent = text; node.classList.toggle("bad", !!bad); node.classList.toggle("good", !bad && !!text);
  }

  // The meeting to show: the one in session, else the next one not ended, else the latest.
  function currentMeeting(list) {
    if (!list || !list.length) return null;
    const started = list.filter((m) => m.status === "started");
    if (started.length) return started[started.length - 1];
    const upcoming = list.filter((m) => m.status !== "ended");
    return upcoming.length ? upcoming[upcoming.length - 1] : list[list.length - 1];
  }
  // A document's name: a link to /app/doc/ID once this node holds it whole, else plain text
  // with "(downloading)". data-complete says which, for tests and styling.
  function docLink(doc, testid) {
    const whole = (doc.chunks_held || 0) >= (doc.chunks_total || 0);
    if (!whole) return el("span", { "data-testid": testid, "data-complete": "no" }, doc.name, " ", el("em", { class: "muted" }, `(${t("doc_downloading")})`));
    return el("a", { href: "/app/doc/" + encodeURIComponent(doc.id), target: "_blank", rel: "noopener",
      "data-testid": testid, "data-complete": "yes", "aria-label": `${t("doc_open")}: ${doc.name}` }, doc.name);
  }
  function siteName(sites, entry) {
    if (!entry) return "";
    if (typeof entry === "string") return sites[entry] || entry;
    return entry.site || sites[entry.node] || sites[entry.holder] || entry.node || entry.holder || "";
  }
  function openMotion(motions) { return (motions || []).filter((m) => m.status === "open").slice(-1)[0] || null; }
  function lastClosed(motions) { return (motions || []).filter((m) => m.status === "closed").slice(-1)[0] || null; }
  function tallyOf(m) {
    let r = m && (m.status === "closed" && m.result && typeof m.result === "object" ? m.result : (m.tally || m.result));
    if (typeof r === "string") { try { r = JSON.parse(r); } catch (e) { r = null; } }
    return r || {};
  }
  function quorumMet(t) { return t.quorum_met !== undefined ? !!t.quorum_met : !!t.quorum; }
  function passed(t) { return t.passed !== undefined ? !!t.passed : t.result === "passed"; }

  function chime() {
    try {
      const ctx = new (window.AudioContext || window.webkitAudioContext)();
      [880, 660, 880].forEach((f, i) => {
        const o = ctx.createOscillator(), g = ctx.createGain();
        o.frequency.value = f; o.connect(g); g.connect(ctx.destination);
        const t0 = ctx.currentTime + i * 0.35;
        g.gain.setValueAtTime(0.0001, t0); g.gain.exponentialRampToValueAtTime(0.4, t0 + 0.03);
        g.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.3); o.start(t0); o.stop(t0 + 0.32);
      });
    } catch (e) { /* no audio device: the banner is still there */ }
  }

  document.addEventListener("DOMContentLoaded", () => { applyI18n(); langButton(); });
  return { t, api, get, request, errText, watchState, el, fill, say, onLang, setLang, applyI18n, currentMeeting,
           siteName, docLink, openMotion, lastClosed, tallyOf, quorumMet, passed, chime, get lang() { return lang; } };
})();
