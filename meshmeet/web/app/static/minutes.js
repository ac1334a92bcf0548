// The printable minutes of one meeting, from /app/minutes/ID.json (record + SHA-256 of it).
(() => {
  const { t, el, fill } = MM;
  async function load() {
    const id = decodeURIComponent(location.pathname.split("/").pop());
    let data;
    try { data = await MM.request(`/app/minutes/${encodeURIComponent(id)}.json`); }
    catch (e) { MM.say("[data-testid=minutes-msg]", MM.errText(e), true); return; }
    const r = data.record;
    // every node records a started meeting under its id (docs/protocol/media.md): replay it on the TV page
    document.querySelector("[data-testid=minutes-replay]").href = `/hall?replay=${encodeURIComponent(id)}`;
    fill("[data-testid=minutes-title]", `${t("minutes")}: ${r.meeting.title || ""}`);
    fill("[data-testid=minutes-meta]", [r.meeting.starts, t("status_" + (r.meeting.status || "planned")), data.site].filter(Boolean).join(" · "));
    fill("[data-testid=minutes-agenda]", r.agenda.map((a) => el("li", {}, a.title)));
    fill("[data-testid=minutes-attendance]", el("tbody", {},
      Object.entries(r.attendance.per_hall).map(([site, n]) => el("tr", {}, el("td", {}, site), el("td", {}, String(n)))),
      el("tr", {}, el("th", {}, t("total")), el("th", { "data-testid": "minutes-total" }, String(r.attendance.total)))));
    fill("[data-testid=minutes-motions]", r.motions.map((m) => {
      const x = m.result || {};
      const verdict = m.status === "closed" ? t(MM.passed(x) ? "passed" : "failed") : t("open");
      return el("div", { class: "motion", "data-testid": "minutes-motion" }, el("strong", {}, m.title), ` (${t(m.rule === "two-thirds" ? "two_thirds" : "majority")}): `,
        `${t("yes")} ${x.yes || 0}, ${t("no")} ${x.no || 0}, ${t("abstain")} ${x.abstain || 0}; ${t("present")} ${x.present || 0}; `,
        `${MM.quorumMet(x) ? t("quorum_ok") : t("quorum_no")} — `, el("strong", {}, verdict),
        (m.uncounted || []).length ? el("div", { class: "muted", "data-testid": "minutes-uncounted" }, `${t("uncounted")}: ` +
          m.uncounted.map((u) => `${u.site} ${t(u.choice) || u.choice} ${u.count} (${t("uncounted_" + u.reason)})`).join("; ")) : null);
    }));
    fill("[data-testid=minutes-announcements]", r.announcements.map((a) => el("li", { class: "user-text" }, (a.urgent ? `[${t("urgent")}] ` : "") + a.text)));
    fill("[data-testid=minutes-hash]", data.sha256);
  }
  document.addEventListener("DOMContentLoaded", () => {
    document.querySelector("[data-testid=minutes-print]").addEventListener("click", () => window.print());
    load(); MM.onLang(load);
  });
})();
