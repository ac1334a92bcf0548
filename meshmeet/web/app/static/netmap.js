// The network map on /chair: this node in the middle, every roster site around it, a line per
// link coloured by quality (RTT), with each node's meshmeet version and update state, layer, media transport (UDP datagrams or TCP), loss and jitter, and last seen. Built as SVG DOM (text nodes only).
window.MMNetmap = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 640, H = 420, R = 150;
  function s(tag, attrs, text) {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function quality(link) {
    if (!link || link.state !== "up") return { colour: "#9b1c1c", dash: "6 5", label: "down" };
    const rtt = link.rtt_ms;
    if (rtt === null || rtt === undefined || rtt < 150) return { colour: "#2e7d32", dash: "", label: "good" };
    if (rtt < 600) return { colour: "#b26a00", dash: "", label: "fair" };
    return { colour: "#9b1c1c", dash: "", label: "poor" };
  }
  function ago(ts, t) {
    if (!ts) return "—";
    const s = Math.max(0, Math.round(Date.now() / 1000 - ts));
    return s < 90 ? `${s} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
  }
  function draw(container, status, info, t) {
    const me = status.node || {};
    const links = status.links || [];
    const byPeer = Object.fromEntries(links.map((l) => [l.peer, l]));
    const media = Object.fromEntries(((status.media || {}).links || []).map((l) => [l.peer, l]));
    const seen = (status.webapp || {}).last_seen || {};
    const tree = status.tree || {};
    const versions = (status.release || {}).nodes || {};  // node_versions: every node's version and update state
    const versionLine = (id) => {
      const v = versions[id];
      if (!v) return null;
      return `${t("version")} ${v.version}${v.state && v.state !== "running" ? " · " + t("update_" + v.state) : ""}`;
    };
    const peers = Object.keys(info.sites || {}).filter((id) => id !== me.id);
    for (const l of links) if (!peers.includes(l.peer)) peers.push(l.peer);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "data-testid": "netmap-svg", "aria-label": t("netmap") });
    svg.appendChild(s("title", {}, t("netmap")));
    const cx = W / 2, cy = H / 2;
    const pos = {};
    peers.forEach((p, i) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, peers.length);
      pos[p] = [cx + R * 1.6 * Math.cos(a), cy + (R - 30) * Math.sin(a)];
    });
    for (const p of peers) {
      const q = quality(byPeer[p]);
      const [x, y] = pos[p];
      const attrs = { x1: cx, y1: cy, x2: x, y2: y, stroke: q.colour, "stroke-width": tree.parent === p || (tree.children || []).includes(p) ? 5 : 3,
        "data-testid": "netmap-link", "data-peer": p, "data-quality": byPeer[p] ? q.label : "none" };
      if (q.dash || !byPeer[p]) attrs["stroke-dasharray"] = q.dash || "2 6";
      if (!byPeer[p]) attrs.stroke = "#888";
      svg.appendChild(s("line", attrs));
    }
    const node = (x, y, label, lines, self, id) => {
      const g = s("g", { "data-testid": "netmap-site", "data-node": id, "data-version": (versions[id] || {}).version || "" });
      g.appendChild(s("circle", { cx: x, cy: y, r: self ? 26 : 18, fill: self ? "#0b3d2e" : "#fff", stroke: "#0b3d2e", "stroke-width": 3 }));
      const halo = { "paint-order": "stroke", stroke: "#fbfbf8", "stroke-width": 5, "stroke-linejoin": "round" };
      // Labels go on the outer side of the node (above it in the upper half) so links never cross them.
      const up = !self && y < H / 2, r = self ? 26 : 18;
      const all = [label, ...lines];
      all.forEach((ln, i) => {
        const ty = up ? y - r - 8 - 15 * (all.length - 1 - i) : y + r + 16 + 15 * i;
        g.appendChild(s("text", { x, y: ty, "text-anchor": "middle", "font-weight": i === 0 ? 700 : 400, ...halo }, ln));
      });
      return g;
    };
    for (const p of peers) {
      const l = byPeer[p], m = media[p];
      const [x, y] = pos[p];
      const lines = [];
      if (l) lines.push(`${l.state === "up" ? t("link_up") : t("link_down")}${l.rtt_ms != null ? " · " + t("rtt") + " " + Math.round(l.rtt_ms) + " ms" : ""}`);
      if (m) lines.push(`${t("layer")} ${m.layer}${m.transport ? " · " + t("transport_" + m.transport) : ""}${
        m.transport === "datagram" && m.loss != null ? " · " + t("loss") + " " + (m.loss * 100).toFixed(1) + " %" : ""}${
        m.transport === "datagram" && m.jitter_ms != null ? " · " + t("jitter") + " " + Math.round(m.jitter_ms) + " ms" : ""}`);
      lines.push(`${t("last_seen")}: ${l && l.state === "up" ? t("link_up") : ago(seen[p], t)}`);
      if (versionLine(p)) lines.push(versionLine(p));
      svg.appendChild(node(x, y, (info.sites || {})[p] || (l && l.site) || p, lines, false, p));
    }
    svg.appendChild(node(cx, cy, me.site || t("you"), [t("you"), versionLine(me.id)].filter(Boolean), true, me.id || "self"));
    container.replaceChildren(svg);
  }
  return { draw };
})();
