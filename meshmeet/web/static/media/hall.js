// Hall TV page: receives media from the local node over a WebSocket, hands it to the decoder
// worker, plays audio through the playout worklet, and shows the mode and the connection.
// window.meshmeet.stats() -> {audioFramesDecoded, videoFramesDecoded, audioUnderruns, mode}.
// Once a second it reports what it decoded back to its node (a JSON text message, docs/protocol/media.md
// "Player reports"): the node sees a stalled player. Never decodes on the main thread and never sends
// anything but keyframe requests and those reports.
// With ?speak=1 (the hall TV, /hall) the page also sends the hall's voice while its site may speak
// (the node says which voice, text {"type":"voice","mine":V,"root":B}): hall-voice.js captures the
// microphone (echo cancellation on, ducked while the others play) and this page's player does not
// play that voice itself. The chair (the tree root) speaks through /present instead.
import { HallVoice } from "./hall-voice.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const replay = params.get("replay");
const probe = params.get("probe") === "1";
const speak = params.get("speak") === "1" && !replay;
const voice = new HallVoice();
let voiceRole = { mine: null, root: false };
let latest = { audioFramesDecoded: 0, videoFramesDecoded: 0, audioUnderruns: 0, mode: "audio-only" };
const emptyProbe = () => ({ barcodes: [], tones: [], decoded: [], arrived: [], audioGaps: [], voiceTones: [], voiceGaps: [],
  rendered: [], levels: [] });
const MAX_PROBE_RENDERED = 30000;
let probeLog = emptyProbe();
let ws = null, connected = false, lastMsgMs = 0, reconnectMs = 500;

window.meshmeet = {
  stats: () => ({ audioFramesDecoded: latest.audioFramesDecoded, videoFramesDecoded: latest.videoFramesDecoded,
    audioUnderruns: latest.audioUnderruns, mode: latest.mode }),
  details: () => ({ ...latest, connected }),
  // probe=1 only: barcodes and tones seen, decoded frames as [track, capture timestamp µs, decoded at epoch ms],
  // voice 0's audio chunks as they reached the decoder worker, arrived: [capture timestamp µs, epoch ms],
  // and audio sequence gaps as [previous seq, seq]; rendered: [voice, timestamp µs, epoch ms] when that
  // voice's audio of that timestamp reaches the output (the worklet's position, ~every 10.7 ms, mapped
  // to the epoch by AudioContext.getOutputTimestamp(): includes the output latency); levels: see probeLevels
  probe: () => { const p = probeLog; probeLog = emptyProbe(); return p; },
  // probe=1 only: from now on, per decoded audio frame [voice, timestamp µs, [amplitude at each Hz]]
  // (Hann-windowed Goertzel; a full-scale sine at that frequency reads 1.0) in probe().levels
  probeLevels: (hz) => { worker.postMessage({ type: "levels", hz }); },
  // probe=1 only: how rendered times are mapped to the epoch ("output-timestamp" or "current-time")
  clockMapping: () => clockMapping,
  // the hall's own voice: {role: {mine, root}, sending, chunksSent, ducked, echoCancellation}
  voice: () => ({ role: voiceRole, sending: voice.running, ...voice.stats }),
  voiceProbe: () => voice.probe.splice(0),  // [[timestamp µs, RMS sent, epoch ms the PCM reached the encoder]]
};

const worker = new Worker("/media/static/player-worker.js", { type: "module" });
const ctx = new AudioContext({ sampleRate: 48000 });
const channel = new MessageChannel();

async function setup() {
  await ctx.audioWorklet.addModule("/media/static/playout-worklet.js");
  const node = new AudioWorkletNode(ctx, "mm-playout", { numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1] });
  node.connect(ctx.destination);
  node.port.onmessage = (e) => {
    if (!e.data || typeof e.data.level !== "number") return;
    voice.playing(e.data.level);
    if (probe && e.data.heads) noteRendered(e.data.at, e.data.heads);
  };
  node.port.postMessage({ port: channel.port1 }, [channel.port1]);
  const off = $("screen").transferControlToOffscreen();
  worker.postMessage({ type: "init", canvas: off, audioPort: channel.port2, probe }, [off, channel.port2]);
  if (ctx.state === "suspended") {
    $("unmute").style.display = "block";
    $("unmute").onclick = () => { ctx.resume(); $("unmute").style.display = "none"; };
  }
  connect();
}

worker.onmessage = (ev) => {
  const d = ev.data;
  if (d.type === "stats") {
    latest = d.stats;
    if (probe) { probeLog.barcodes.push(...d.barcodes); probeLog.tones.push(...d.tones); probeLog.decoded.push(...d.decoded); probeLog.arrived.push(...d.arrived); probeLog.audioGaps.push(...d.audioGaps);
      probeLog.voiceTones.push(...d.voiceTones); probeLog.voiceGaps.push(...d.voiceGaps); probeLog.levels.push(...(d.levels || [])); }
    $("audioonly").style.display = latest.mode === "audio-only" && latest.audioFramesDecoded > 0 ? "flex" : "none";
    showConnection();
  } else if (d.type === "send" && ws && ws.readyState === WebSocket.OPEN) {
    ws.send(d.data);
  }
};

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const path = replay ? `/media/ws/replay/${encodeURIComponent(replay)}` : "/media/ws/hall";
  ws = new WebSocket(`${proto}://${location.host}${path}`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { connected = true; reconnectMs = 500; };
  ws.onmessage = (ev) => {
    lastMsgMs = performance.now();
    if (typeof ev.data === "string") {  // the node says which voice this site speaks
      let m = null;
      try { m = JSON.parse(ev.data); } catch (e) { /* not JSON */ }
      if (m && m.type === "voice") { onVoiceRole(m); return; }
    }
    if (typeof ev.data === "string") {  // replay: a slide record of the recording, for the TV page around us
      if (replay && window.parent !== window) {
        try { const m = JSON.parse(ev.data); if (m.type === "slide") window.parent.postMessage(m, location.origin); } catch (e) { /* not ours */ }
      }
      return;
    }
    worker.postMessage(ev.data, [ev.data]);
  };
  ws.onclose = () => {
    connected = false;
    if (!replay) { setTimeout(connect, reconnectMs); reconnectMs = Math.min(5000, reconnectMs * 2); }
  };
}

// probe=1: when each voice's timestamp `heads[v]` plays, in epoch ms (context time `at` mapped
// through getOutputTimestamp(), which says when a context time leaves the output device)
let clockMapping = null;
function noteRendered(at, heads) {
  const o = ctx.getOutputTimestamp ? ctx.getOutputTimestamp() : null;
  let epoch;
  if (o && o.performanceTime > 0) {
    epoch = performance.timeOrigin + o.performanceTime + (at - o.contextTime) * 1000; clockMapping = "output-timestamp";
  } else {
    epoch = performance.timeOrigin + performance.now() + (at - ctx.currentTime + (ctx.outputLatency || ctx.baseLatency || 0)) * 1000;
    clockMapping = "current-time";
  }
  for (let v = 0; v < heads.length; v++) {
    if (heads[v] !== null && probeLog.rendered.length < MAX_PROBE_RENDERED) probeLog.rendered.push([v, heads[v], epoch]);
  }
}

function onVoiceRole(m) {
  voiceRole = { mine: Number.isInteger(m.mine) ? m.mine : null, root: !!m.root };
  const mayspeak = speak && voiceRole.mine !== null && !voiceRole.root;
  worker.postMessage({ type: "mute", voice: mayspeak ? voiceRole.mine : null });
  if (mayspeak && !voice.running) voice.start().catch((e) => { console.error("hall voice", e); voice.stop(); });
  else if (!mayspeak && voice.running) voice.stop();
}

function showConnection() {
  const el = $("conn");
  const quiet = performance.now() - lastMsgMs;
  if (!connected) { el.className = "down"; el.textContent = replay ? "Hết bản ghi / Replay ended" : "Mất kết nối / Disconnected"; }
  else if (quiet > 2000) { el.className = "weak"; el.textContent = "Chờ tín hiệu / Waiting for signal"; }
  else if (latest.mode === "audio-only") { el.className = "weak"; el.textContent = "Đường truyền yếu / Weak link"; }
  else { el.className = "ok"; el.textContent = replay ? "Phát lại / Replay" : "Trực tiếp / Live"; }
}
setInterval(showConnection, 250);

const REPORT_MS = 1000;
const count = (v) => (Number.isSafeInteger(v) && v >= 0 ? v : 0);
const ms = (v) => (Number.isFinite(v) ? Math.min(60000, Math.max(0, Math.round(v * 10) / 10)) : 0);
function sendReport() {  // the receiver report: its exact keys and ranges are checked by the node
  if (replay || !ws || ws.readyState !== WebSocket.OPEN) return;
  const seq = latest.audioSeq, ts = latest.audioTsUs;
  ws.send(JSON.stringify({ type: "report",
    audioSeq: Number.isSafeInteger(seq) && seq >= 0 && seq <= 0xffffffff ? seq : null,
    audioTsUs: Number.isFinite(ts) ? Math.min(2 ** 40 - 1, Math.max(0, Math.round(ts))) : null,
    decoded: count(latest.audioFramesDecoded), underruns: count(latest.audioUnderruns),
    bufferMs: ms(latest.bufferedMs), targetMs: ms(latest.targetMs), jitterMs: ms(latest.jitterMs),
    missing: count(latest.audioSeqMissing) }));
}
setInterval(sendReport, REPORT_MS);

setup();
