// The chair console (HQ): meetings, agenda, documents and readiness, the floor, motions,
// announcements, the feedback inbox and the network map. Needs the chair login (PIN).
(() => {
  const { t, el, fill, say } = MM;
  const q = (s) => document.querySelector(s);
  let info = { sites: {} }, meetings = [], selected = null, detail = null;
  const drafts = {};  // feedback id -> reply being typed (survives refreshes)

  async function session() {
    info = await MM.request("/app/session");
    fill("[data-testid=chair-site]", [info.commune, info.site, t("chair")].filter(Boolean).join(" — "));
    q("[data-testid=chair-not-hq]").classList.toggle("hidden", !!info.can_chair);
    q("[data-testid=chair-no-pin]").classList.toggle("hidden", !info.can_chair || info.pin_set);
    fill("[data-testid=chair-no-pin-cmd]", `meshmeet chair-pin --data-dir ${info.data_dir || "DIR"}`);
    q("[data-testid=chair-login-form]").classList.toggle("hidden", !info.can_chair || !info.pin_set || info.chair);
    q("[data-testid=chair-login-box]").classList.toggle("hidden", !!info.chair);
    q("[data-testid=chair-console]").classList.toggle("hidden", !info.chair);
    q("[data-testid=chair-logout]").classList.toggle("hidden", !info.chair);
    return info.chair;
  }

  async function refresh() {
    if (!info.chair) return;
    const list = await MM.get("meetings");
    meetings = list.meetings || [];
    const sel = q("[data-testid=meeting-select]");
    if (!selected || !meetings.find((m) => m.id === selected)) selected = (MM.currentMeeting(meetings) || {}).id || null;
    fill(sel, meetings.map((m) => el("option", { value: m.id, selected: m.id === selected }, m.title)));
    const [status, anns, fb] = await Promise.all([MM.get("status"), MM.get("announcements").catch(() => ({})), MM.get("feedback_list").catch(() => ({}))]);
    MMNetmap.draw(q("[data-testid=netmap]"), status, info, t);
    renderAnnouncements(anns.announcements || []);
    renderInbox(fb.feedback || []);
    const floor = (status.media || {}).floor || {};
    fill("[data-testid=floor-holder]", floor.holder_site || MM.siteName(info.sites, floor.holder) || t("nobody"));
    const extra = (floor.voices || {}).extra_site;  // one more site the chair lets speak at once (issue 15)
    fill("[data-testid=voice-extra]", extra || t("nobody"));
    q("[data-testid=voice-disallow]").disabled = !extra;
    if (!selected) { fill("[data-testid=meeting-status]", t("no_meeting")); return; }
    detail = await MM.get("meeting", { id: selected });
    renderMeeting(detail);
    const ready = await MM.get("doc_readiness", { meeting_id: selected }).catch(() => null);
    renderReadiness(ready);
  }

  function renderMeeting(d) {
    const m = d.meeting || {};
    fill("[data-testid=meeting-status]", t("status_" + (m.status || "planned")));
    q("[data-testid=minutes-link]").href = "/minutes/" + encodeURIComponent(m.id || selected);
    const agenda = (d.agenda || []).slice().sort((a, b) => (a.position || 0) - (b.position || 0));
    fill("[data-testid=agenda-list]", agenda.map((a, i) => el("li", { class: a.id === m.current_item ? "current" : "", "data-testid": "agenda-row" },
      el("div", { class: "row" }, el("span", { class: "title" }, `${i + 1}. ${a.title}`),
        el("button", { class: "secondary", "data-testid": "agenda-up", "aria-label": `${t("up")}: ${a.title}`, disabled: i === 0, onclick: () => move(agenda, i, -1) }, "↑"),
        el("button", { class: "secondary", "data-testid": "agenda-down", "aria-label": `${t("down")}: ${a.title}`, disabled: i === agenda.length - 1, onclick: () => move(agenda, i, 1) }, "↓"),
        el("button", { "data-testid": "agenda-current", onclick: () => act("[data-testid=agenda-msg]", () => MM.api("meeting_update", { id: selected, current_item: a.id })) }, t("make_current"))))));
    fill("[data-testid=doc-list]", (d.documents || []).map((doc) => el("li", { "data-testid": "doc-row" },
      MM.docLink(doc, "chair-doc-open"), ` — ${doc.size || 0} ${t("bytes")}`)));
    const queue = (d.speaking_queue || []).filter((e) => e.state === "waiting");
    fill("[data-testid=speak-queue]", queue.map((e) => {
      const site = MM.siteName(info.sites, e);
      return el("li", { "data-testid": "queue-row" }, el("div", { class: "row" }, el("span", { class: "title" }, site),
        el("button", { "data-testid": "floor-grant", "aria-label": `${t("grant")}: ${site}`,
          onclick: () => act("[data-testid=queue-msg]", () => MM.api("floor", { action: "grant", site })) }, t("grant")),
        el("button", { class: "secondary", "data-testid": "voice-allow", "aria-label": `${t("voice_allow")}: ${site}`,
          onclick: () => act("[data-testid=queue-msg]", () => MM.api("floor", { action: "allow", site })) }, t("voice_allow"))));
    }));
    fill("[data-testid=motion-list]", (d.motions || []).slice().reverse().map((mo) => {
      const tl = MM.tallyOf(mo);
      const line = `${t("yes")} ${tl.yes || 0} · ${t("no")} ${tl.no || 0} · ${t("abstain")} ${tl.abstain || 0} · ${t("present")} ${tl.present || 0}`;
      const verdict = mo.status === "closed" ? el("span", { class: "pill " + (MM.passed(tl) ? "ok" : "no"), "data-testid": "motion-result" }, t(MM.passed(tl) ? "passed" : "failed")) : null;
      return el("li", { "data-testid": "motion-row" }, el("div", { class: "row" }, el("span", { class: "title" }, mo.title), verdict,
        mo.status === "open" ? el("button", { class: "danger", "data-testid": "motion-close", "aria-label": `${t("close")}: ${mo.title}`,
          onclick: () => act("[data-testid=motion-msg]", () => MM.api("motion_close", { motion_id: mo.id })) }, t("close")) : null),
        el("div", { class: "muted", "data-testid": "motion-tally" }, line));
    }));
  }

  function renderReadiness(r) {
    const box = q("[data-testid=doc-readiness]");
    if (!r) { fill(box, "—"); return; }
    const src = r.sites || r.per_site || r.readiness || {};
    const rows = Array.isArray(src) ? src.map((x) => [MM.siteName(info.sites, x), x]) : Object.entries(src).map(([k, v]) => [info.sites[k] || k, v]);
    fill(box, el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, t("site")), el("th", {}, t("documents")))),
      el("tbody", {}, rows.filter(([, v]) => v !== null && typeof v === "object" || typeof v === "boolean").map(([site, v]) => {
        const ready = typeof v === "boolean" ? v : (v.ready ?? v.all_held ?? v.complete ?? null);
        const extra = typeof v === "object" && v.held !== undefined ? ` (${v.held}/${v.total})` : "";
        const pill = ready === null ? el("span", { class: "pill", title: t("not_heard") }, "?", " ", t("not_heard")) : el("span", { class: "pill " + (ready ? "ok" : "no") }, t(ready ? "ready" : "not_ready"));
        return el("tr", { "data-testid": "readiness-row", "data-ready": String(ready) }, el("td", {}, site), el("td", {}, pill, extra));
      }))));
  }

  function renderAnnouncements(list) {
    fill("[data-testid=announce-list]", list.slice(-8).reverse().map((a) => el("li", { "data-testid": "announce-row" },
      a.urgent ? el("span", { class: "pill no" }, t("urgent")) : null, " ", el("span", { class: "user-text" }, a.text))));
  }

  function renderInbox(items) {
    const box = q("[data-testid=feedback-inbox]");
    if (box.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;  // do not steal focus while typing
    fill("[data-testid=feedback-inbox]", items.slice(-20).reverse().map((f) => {
      const input = el("input", { maxlength: 2000, "data-testid": "reply-text", "aria-label": `${t("reply")}: ${MM.siteName(info.sites, f)}`,
        oninput: (ev) => { drafts[f.id] = ev.target.value; } });
      input.value = drafts[f.id] || "";
      return el("li", { "data-testid": "inbox-row" }, el("strong", {}, MM.siteName(info.sites, f)), ": ", el("span", { class: "user-text" }, f.text),
        (f.replies || []).map((r) => el("div", { class: "user-text muted" }, "↳ " + r.text)),
        el("div", { class: "row" }, input, el("button", { class: "secondary", "data-testid": "reply-send",
          onclick: () => act("[data-testid=inbox-msg]", async () => {
            await MM.api("feedback_reply", { feedback_id: f.id, text: drafts[f.id] || "" }); delete drafts[f.id];
          }) }, t("reply"))));
    }));
  }

  async function move(agenda, i, step) {
    const a = agenda[i], b = agenda[i + step];
    await act("[data-testid=agenda-msg]", async () => {
      await MM.api("agenda_update", { id: a.id, position: b.position ?? i + step });
      await MM.api("agenda_update", { id: b.id, position: a.position ?? i });
    });
  }

  async function act(msgSel, fn, okText) {
    try {
      const r = await fn(); say(msgSel, okText || t("saved")); await refresh(); return r;
    } catch (e) {
      if (e.status === 401) { await session().catch(() => {}); }
      say(msgSel, MM.errText(e), true);
      return null;
    }
  }

  function onSubmit(sel, fn) {
    q(sel).addEventListener("submit", (ev) => { ev.preventDefault(); fn(); });
  }

  document.addEventListener("DOMContentLoaded", async () => {
    await session().catch((e) => say("[data-testid=chair-login-msg]", MM.errText(e), true));
    onSubmit("[data-testid=chair-login-form]", async () => {
      try {
        await MM.request("/app/login", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ pin: q("[data-testid=chair-pin]").value }) });
        q("[data-testid=chair-pin]").value = "";
        say("[data-testid=chair-login-msg]", "");
        await session(); await refresh();
      } catch (e) { say("[data-testid=chair-login-msg]", MM.errText(e), true); }
    });
    q("[data-testid=chair-logout]").addEventListener("click", async () => { await MM.request("/app/logout", { method: "POST" }).catch(() => {}); await session(); });
    q("[data-testid=meeting-select]").addEventListener("change", (ev) => { selected = ev.target.value; refresh(); });
    onSubmit("[data-testid=meeting-form]", () => act("[data-testid=meeting-msg]", async () => {
      const args = { title: q("[data-testid=meeting-title]").value };
      const starts = q("[data-testid=meeting-starts]").value;
      if (starts) args.starts = starts;
      const r = await MM.api("meeting_create", args);
      selected = r.id; q("[data-testid=meeting-title]").value = "";
    }));
    q("[data-testid=meeting-start]").addEventListener("click", () => act("[data-testid=meeting-msg]", () => MM.api("meeting_update", { id: selected, status: "started" })));
    q("[data-testid=meeting-end]").addEventListener("click", () => act("[data-testid=meeting-msg]", () => MM.api("meeting_update", { id: selected, status: "ended" })));
    onSubmit("[data-testid=agenda-form]", () => act("[data-testid=agenda-msg]", async () => {
      const n = (detail && detail.agenda || []).length;
      await MM.api("agenda_add", { meeting_id: selected, title: q("[data-testid=agenda-title]").value, position: n + 1 });
      q("[data-testid=agenda-title]").value = "";
    }));
    q("[data-testid=doc-upload]").addEventListener("click", () => act("[data-testid=doc-msg]", async () => {
      const file = q("[data-testid=doc-file]").files[0];
      if (!file) throw new Error(t("choose_file"));
      const url = `/app/upload?meeting_id=${encodeURIComponent(selected || "")}&name=${encodeURIComponent(file.name)}`;
      await MM.request(url, { method: "POST", body: file });
    }));
    onSubmit("[data-testid=motion-form]", () => act("[data-testid=motion-msg]", async () => {
      await MM.api("motion_open", { meeting_id: selected, title: q("[data-testid=motion-title]").value, rule: q("[data-testid=motion-rule]").value });
      q("[data-testid=motion-title]").value = "";
    }));
    q("[data-testid=floor-revoke]").addEventListener("click", () => act("[data-testid=queue-msg]", () => MM.api("floor", { action: "release" })));
    q("[data-testid=voice-disallow]").addEventListener("click", () => act("[data-testid=queue-msg]", () => MM.api("floor", { action: "disallow" })));
    onSubmit("[data-testid=announce-form]", () => act("[data-testid=announce-msg]", async () => {
      const zalo = q("[data-testid=announce-zalo]");
      await MM.api("announce", { text: q("[data-testid=announce-text]").value, urgent: q("[data-testid=announce-urgent]").checked,
        zalo: !!(zalo && zalo.checked) });
      q("[data-testid=announce-text]").value = ""; q("[data-testid=announce-urgent]").checked = false; if (zalo) zalo.checked = false;
    }));
    const conn = q("[data-testid=conn-state]");
    MM.watchState(refresh, (s) => { conn.className = "conn " + s; conn.textContent = t(s); });
    MM.onLang(() => { session().then(refresh).catch(() => {}); });
  });
})();
