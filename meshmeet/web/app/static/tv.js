// The hall TV: current meeting, floor, attendance and quorum, open motion tally, ticker, urgent banner.
(() => {
  const { t, el, fill } = MM;
  let info = { sites: {} }, seenUrgent = null, lastState = null;
  const URGENT_SHOW_MS = 120000;

  // The hall's link as people see it: an IP link up (video, or audio only when every media level
  // this hall relays to its browsers has fallen to audio), else LoRa if a modem runs, else none.
  function linkState(status) {
    const links = (status.links || []).filter((l) => l.state === "up");
    const media = status.media || {};
    if (links.length) {
      const levels = [...(media.browsers || []), ...(media.links || [])].map((l) => l.level || l.layer).filter(Boolean);
      return levels.length && levels.every((x) => x === "audio") ? "audio" : "video";
    }
    const lora = status.lora || {};
    return lora.enabled && lora.state && lora.state !== "error" ? "lora" : "none";
  }

  // How media reaches this hall: over datagrams or the TCP link (fallback), with the loss measured
  // on the link from the source's side of the tree (the link media arrives on).
  function mediaTransport(status, lsEl) {
    const media = status.media || {};
    const src = (media.links || []).find((l) => l.peer === media.source_link);
    lsEl.dataset.transport = src && src.transport ? src.transport : "";
    if (!src || !src.transport) return "";
    const loss = src.loss != null ? ` · ${t("loss")} ${(src.loss * 100).toFixed(1)} %` : "";
    return ` · ${t("transport_" + src.transport)}${src.transport === "datagram" ? loss : ""}`;
  }

  async function refresh() {
    const [status, list, anns] = await Promise.all([MM.get("status"), MM.get("meetings"), MM.get("announcements").catch(() => ({ announcements: [] }))]);
    const ls = linkState(status);
    const lsEl = document.querySelector("[data-testid=tv-link-state]");
    lsEl.className = "linkstate " + ls; lsEl.dataset.state = ls;
    lsEl.textContent = t("link_" + ls) + (ls === "video" || ls === "audio" ? mediaTransport(status, lsEl) : "");
    const m = MM.currentMeeting(list.meetings || []);
    lastState = { m, anns: anns.announcements || [] };
    if (!m) {
      fill("[data-testid=tv-current-item]", t("no_meeting")); fill("[data-testid=tv-meeting-title]");
      fill("[data-testid=tv-floor]", t("nobody")); fill("[data-testid=tv-attendance]", "—"); fill("[data-testid=tv-quorum]");
      fill("[data-testid=tv-motion]", el("span", { class: "muted" }, t("no_motion")));
    } else {
      const d = await MM.get("meeting", { id: m.id });
      render(d, status);
    }
    ticker(lastState.anns);
  }

  function render(d, status) {
    const meeting = d.meeting || {};
    const item = (d.agenda || []).find((a) => a.id === meeting.current_item) || null;
    fill("[data-testid=tv-current-item]", item ? item.title : t("status_" + (meeting.status || "planned")));
    fill("[data-testid=tv-meeting-title]", meeting.title || "");
    const floor = d.floor || (status.media && status.media.floor) || null;
    const holder = floor ? (floor.holder_site || MM.siteName(info.sites, floor.holder || floor.node || floor)) : "";
    fill("[data-testid=tv-floor]", holder || t("nobody"));
    const att = d.attendance || {};
    fill("[data-testid=tv-attendance]", `${att.total || 0} ${t("people")}`);
    const open = MM.openMotion(d.motions), closed = MM.lastClosed(d.motions);
    const shown = open || closed;
    const tally = shown ? MM.tallyOf(shown) : null;
    const q = document.querySelector("[data-testid=tv-quorum]");
    if (tally && Object.keys(tally).length) {
      const ok = MM.quorumMet(tally);
      fill(q, el("span", { class: "pill " + (ok ? "ok" : "no"), "data-quorum": ok ? "yes" : "no" }, t(ok ? "quorum_ok" : "quorum_no")));
    } else fill(q);
    if (!shown) { fill("[data-testid=tv-motion]", el("span", { class: "muted" }, t("no_motion"))); return; }
    const total = Math.max(1, tally.present || 0, tally.turnout || 0);
    const row = (k) => [el("span", {}, t(k)), el("meter", { min: 0, max: total, value: tally[k] || 0 }),
      el("span", { "data-testid": "tv-tally-" + k }, String(tally[k] || 0))];
    const parts = [el("div", { class: "big" }, shown.title || ""), el("div", { class: "tally" }, row("yes"), row("no"), row("abstain")),
      el("div", { class: "muted" }, `${t("turnout")}: ${tally.turnout || 0} / ${t("present")}: ${tally.present || 0}`)];
    if (shown.status === "closed") {
      const ok = MM.passed(tally);
      parts.push(el("div", { class: "verdict " + (ok ? "ok" : "no"), "data-testid": "tv-result", "data-passed": ok ? "yes" : "no" },
        `${t("result")}: ${t(ok ? "passed" : "failed")}`));
    } else parts.push(el("div", { class: "muted" }, t("open")));
    fill("[data-testid=tv-motion]", parts);
  }

  function ticker(anns) {
    const sorted = anns.slice().sort((a, b) => (a.at || 0) - (b.at || 0));
    const text = sorted.slice(-5).map((a) => (a.urgent ? "⚠ " : "") + a.text).join("   •   ");
    const span = document.querySelector("[data-testid=tv-ticker] span");
    if (span.textContent !== text) span.textContent = text;
    document.querySelector("[data-testid=tv-ticker]").classList.toggle("empty", !text);
    const urgent = sorted.filter((a) => a.urgent).slice(-1)[0];
    if (urgent && urgent.id !== seenUrgent) {
      const firstLoad = seenUrgent === null && sessionStorage.getItem("mm_urgent_seen") === urgent.id;
      seenUrgent = urgent.id;
      if (!firstLoad) showUrgent(urgent);
    } else if (!urgent) seenUrgent = seenUrgent || "";
  }
  function showUrgent(a) {
    sessionStorage.setItem("mm_urgent_seen", a.id);
    fill("[data-testid=tv-urgent-text]", a.text);
    const box = document.querySelector("[data-testid=tv-urgent]");
    box.classList.remove("hidden"); MM.chime();
    clearTimeout(showUrgent.timer); showUrgent.timer = setTimeout(() => box.classList.add("hidden"), URGENT_SHOW_MS);
  }

  document.addEventListener("DOMContentLoaded", async () => {
    document.querySelector("[data-testid=tv-urgent-dismiss]").addEventListener("click", () =>
      document.querySelector("[data-testid=tv-urgent]").classList.add("hidden"));
    const clock = () => fill("[data-testid=tv-clock]", new Date().toLocaleTimeString(MM.lang === "vi" ? "vi-VN" : "en-GB", { hour: "2-digit", minute: "2-digit" }));
    clock(); setInterval(clock, 10000);
    try { info = await MM.request("/app/session"); } catch (e) { /* keep defaults */ }
    fill("[data-testid=tv-site]", [info.commune, info.site].filter(Boolean).join(" — "));
    fill("[data-testid=tv-ca-fingerprint]", (info.ca_fingerprint || "").slice(0, 23));
    const conn = document.querySelector("[data-testid=conn-state]");
    MM.watchState(refresh, (s) => { conn.className = "conn " + s; conn.dataset.i18n = s; conn.textContent = t(s); });
    MM.onLang(() => refresh().catch(() => {}));
  });
})();

// The live player runs in the iframe (/media/hall). Pass ?replay=ID through to it, and expose its
// stats here so that window.meshmeet.stats() works on /hall as on the bare player.
(function wirePlayer() {
  const frame = document.querySelector('[data-testid="tv-player"]');
  if (!frame) return;
  const replay = new URLSearchParams(location.search).get("replay");
  if (replay) frame.src = "/media/hall?embed=1&replay=" + encodeURIComponent(replay);
  window.meshmeet = Object.assign(window.meshmeet || {}, {
    stats: () => (frame.contentWindow && frame.contentWindow.meshmeet ? frame.contentWindow.meshmeet.stats() : null),
  });
})();
