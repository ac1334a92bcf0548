// The hall tablet: agenda and documents, check-in, request to speak, the hall's ballots, feedback.
// Every action is the node's own: the node adds its site; the store refuses a second ballot.
(() => {
  Object.assign(MM_TEXT.vi, {
    pair_title: "Ghép máy tính bảng với điểm họp", pair_pin: "Mã PIN thiết bị",
    pair_help: "Điểm họp này cần máy tính bảng được ghép trước khi điểm danh, biểu quyết hay xin phát biểu (để máy của người dân trong Wi-Fi không làm được). Nhập mã PIN thiết bị một lần.",
    pair_send: "Ghép", pair_done: "Đã ghép máy này với điểm họp",
  });
  Object.assign(MM_TEXT.en, {
    pair_title: "Pair this tablet with the site", pair_pin: "Device PIN",
    pair_help: "This site needs its tablets paired before they check in, vote or ask to speak (so residents' phones on the Wi-Fi cannot). Enter the device PIN once.",
    pair_send: "Pair", pair_done: "This tablet is paired with the site",
  });
  const { t, el, fill, say } = MM;
  let info = { sites: {} }, meeting = null, motion = null;

  function human(n) { return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : n >= 1024 ? (n / 1024).toFixed(0) + " kB" : n + " B"; }

  async function refresh() {
    const list = await MM.get("meetings");
    meeting = MM.currentMeeting(list.meetings || []);
    const fb = await MM.get("feedback_list").catch(() => ({ feedback: [] }));
    renderFeedback(fb.feedback || []);
    if (!meeting) { fill("[data-testid=tablet-meeting-title]", t("no_meeting")); return; }
    const d = await MM.get("meeting", { id: meeting.id });
    const m = d.meeting || meeting;
    fill("[data-testid=tablet-meeting-title]", m.title || "");
    fill("[data-testid=tablet-meeting-status]", t("status_" + (m.status || "planned")));
    fill("[data-testid=tablet-agenda]", (d.agenda || []).map((a) =>
      el("li", { class: a.id === m.current_item ? "current" : "", "data-testid": "agenda-item" }, a.title)));
    fill("[data-testid=tablet-docs]", (d.documents || []).map((doc) => el("li", { "data-testid": "doc-item" },
      el("div", {}, MM.docLink(doc, "doc-open")), el("div", { class: "row muted" },
        el("progress", { max: doc.chunks_total || 1, value: doc.chunks_held || 0, "aria-label": doc.name }),
        `${doc.chunks_held || 0}/${doc.chunks_total || 0} — ${human(doc.size || 0)}`))));
    const mine = (d.speaking_queue || []).find((q) => q.node === info.node_id || q.site === info.site);
    say("[data-testid=speak-state]", mine && mine.state === "waiting" ? t("speak_waiting") : t("speak_none"));
    motion = MM.openMotion(d.motions);
    fill("[data-testid=vote-motion]", motion ? motion.title : t("no_motion"));
    document.querySelector("[data-testid=vote-form]").classList.toggle("hidden", !motion);
  }

  function renderFeedback(items) {
    const ours = items.filter((f) => !f.site || f.site === info.site || f.node === info.node_id);
    fill("[data-testid=feedback-list]", ours.slice(-10).reverse().map((f) => el("li", { "data-testid": "feedback-item" },
      el("div", { class: "user-text" }, f.text),
      (f.replies || []).length ? (f.replies || []).map((r) => el("div", { class: "user-text", "data-testid": "feedback-reply" }, "↳ " + r.text))
        : el("div", { class: "muted" }, t("no_replies")))));
  }

  function showPairing(needed) {
    document.querySelector("[data-testid=pair-card]").classList.toggle("hidden", !needed);
  }

  async function act(msgSel, fn, okText) {
    try { await fn(); say(msgSel, okText); await refresh(); } catch (e) {
      say(msgSel, MM.errText(e), true);
      if (e.err && e.err.code === "device_pairing") showPairing(true);
    }
  }

  function count(sel) {
    const raw = document.querySelector(sel).value.trim();
    if (raw === "") return 0;
    if (!/^\d{1,6}$/.test(raw)) throw new Error(MM.lang === "vi" ? "Số không hợp lệ" : "invalid number");
    return parseInt(raw, 10);
  }

  document.addEventListener("DOMContentLoaded", async () => {
    try { info = await MM.request("/app/session"); } catch (e) { /* offline: keep trying via refresh */ }
    fill("[data-testid=tablet-site]", [info.site, t("tablet")].filter(Boolean).join(" — "));
    const q = (s) => document.querySelector(s);
    showPairing(!!(info.device && info.device.required && !info.device.paired));
    q("[data-testid=pair-form]").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await MM.request("/app/pair", { method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ pin: q("[data-testid=pair-pin]").value }) });
        q("[data-testid=pair-pin]").value = "";
        showPairing(false);
        say("[data-testid=checkin-msg]", t("pair_done"));
      } catch (e) { say("[data-testid=pair-msg]", MM.errText(e), true); }
    });
    q("[data-testid=checkin-submit]").addEventListener("click", () => act("[data-testid=checkin-msg]", async () => {
      if (!meeting) throw new Error(t("no_meeting"));
      const n = count("[data-testid=checkin-count]");
      await MM.api("checkin", { meeting_id: meeting.id, present: n });
    }, `${t("checked_in")} ${q("[data-testid=checkin-count]").value} ${t("people")}`));
    q("[data-testid=checkin-member-submit]").addEventListener("click", () => {
      const name = q("[data-testid=checkin-member]").value.trim();
      act("[data-testid=checkin-msg]", async () => {
        if (!meeting) throw new Error(t("no_meeting"));
        const r = await MM.api("checkin", { meeting_id: meeting.id, member: name });
        q("[data-testid=checkin-member]").value = "";
        return r;
      }, `${t("member_in")} ${name}`);
    });
    q("[data-testid=speak-request]").addEventListener("click", () => act("[data-testid=speak-state]",
      () => MM.api("speak_request", { meeting_id: meeting && meeting.id, state: "waiting" }), t("speak_waiting")));
    q("[data-testid=speak-withdraw]").addEventListener("click", () => act("[data-testid=speak-state]",
      () => MM.api("speak_request", { meeting_id: meeting && meeting.id, state: "withdrawn" }), t("speak_none")));
    q("[data-testid=vote-submit]").addEventListener("click", () => act("[data-testid=vote-msg]", async () => {
      if (!motion) throw new Error(t("no_motion"));
      const counts = { yes: count("[data-testid=vote-yes]"), no: count("[data-testid=vote-no]"), abstain: count("[data-testid=vote-abstain]") };
      for (const [choice, n] of Object.entries(counts)) if (n > 0) await MM.api("vote", { motion_id: motion.id, choice, count: n });
    }, t("vote_done")));
    q("[data-testid=feedback-submit]").addEventListener("click", () => act("[data-testid=feedback-msg]", async () => {
      const text = q("[data-testid=feedback-text]").value;
      await MM.api("feedback", meeting ? { text, meeting_id: meeting.id } : { text });
      q("[data-testid=feedback-text]").value = "";
    }, t("saved")));
    const conn = q("[data-testid=conn-state]");
    MM.watchState(refresh, (s) => { conn.className = "conn " + s; conn.textContent = t(s); });
    MM.onLang(() => refresh().catch(() => {}));
  });
})();
