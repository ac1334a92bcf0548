// Decoder worker for the hall page: parses media messages, decodes audio and video with
// WebCodecs, sends PCM to the playout worklet, and draws video on the audio clock into an
// OffscreenCanvas. Shows nothing itself (the page does) and never touches the network.
// Voices (docs/protocol/media.md "Voices"): each audio voice (the layer field: 0 floor holder,
// 1 chair, 2 extra) has its own decoder and sequence numbers; its PCM goes to the worklet tagged
// with the voice (one jitter buffer each, mixed there). Voice 0 drives the stats the node reads
// (audioSeq, audioTsUs) and the video clock; a muted voice (this page's own) is decoded, not played.
import * as C from "./chunk.js";

const AUDIO_ONLY_AFTER_MS = 350;   // no new picture for this long while audio plays: "audio only"
const MAX_QUEUED_FRAMES = 8;
const s = {
  canvas: null, ctx: null, audioPort: null, probe: false,
  configs: new Map(),               // "track:layer" -> {generation, config} (audio: layer = voice)
  voices: new Map(),                // voice -> {dec, gen, seq, lostBefore: µs lost before each pending output}
  muted: null,                      // the voice this page speaks itself: not played here
  videoDec: null, videoLayer: null, videoGen: null,
  frames: [], drawn: null, clockUs: null, lastVideoMs: -1e9, lastAudioMs: -1e9,
  stats: { audioFramesDecoded: 0, videoFramesDecoded: 0, audioUnderruns: 0, mode: "audio-only",
    decoderErrors: 0, formatErrors: 0, videoLayer: null, bufferedMs: 0, targetMs: 0, framesDrawn: 0, keyframeRequests: 0,
    audioSeqMissing: 0,             // audio chunks never received: sum of sequence gaps (loss on the way here)
    audioSeq: null,                 // sequence number of the latest audio chunk received
    jitterMs: 0, concealedMs: 0,    // playout: measured interarrival jitter, audio concealed (lost frames)
    drainedMs: 0,                   // playout: excess buffer played away (read 1.6 % fast) to get back to the target
    audioTsUs: null,                // capture timestamp (µs, the source's media clock) of the latest decoded audio frame
    modeSinceAudioTsUs: null },     // audioTsUs when `mode` last changed (media time of the flip)
  barcodes: [], tones: [], audioGaps: [],  // probe: audioGaps = [[previous seq, seq], ...] (voice 0)
  voiceTones: [], voiceGaps: [],    // probe, every voice: [voice, Hz], [voice, previous seq, seq]
  decoded: [],                      // probe: [track, capture timestamp µs, decoded at (ms since the epoch)]
  arrived: [],                      // probe: [capture timestamp µs, epoch ms] of each voice-0 audio chunk reaching this worker
  levelHz: null, levels: [],        // probe: Hz asked for (page's probeLevels), [voice, ts µs, [amplitude per Hz]]
};
const MAX_PROBE_DECODED = 5000;
function probeDecoded(track, tsUs) {
  if (s.decoded.length < MAX_PROBE_DECODED) s.decoded.push([track, tsUs, performance.timeOrigin + performance.now()]);
}

function b64(s64) { return C.b64decode(s64); }

function decoderConfig(cfg) {
  const out = { ...cfg };
  if (cfg.description) out.description = b64(cfg.description);
  return out;
}

function voiceState(voice) {
  let v = s.voices.get(voice);
  if (!v) { v = { dec: null, gen: null, seq: null, lostBefore: [], decoded: 0, missing: 0 }; s.voices.set(voice, v); }
  return v;
}

function ensureAudio(voice) {
  const entry = s.configs.get(`0:${voice}`);
  if (!entry) return false;
  const v = voiceState(voice);
  if (v.dec && v.gen === entry.generation && v.dec.state === "configured") return true;
  if (!v.dec || v.dec.state === "closed") {
    v.dec = new AudioDecoder({ output: (ad) => onAudio(voice, ad),
      error: (e) => { s.stats.decoderErrors++; console.error("AudioDecoder", voice, e); } });
  }
  v.dec.configure(decoderConfig(entry.config));
  v.lostBefore = [];  // outputs pending before the reconfiguration are not matched any more
  v.gen = entry.generation;
  return true;
}

function onAudio(voice, ad) {
  const v = voiceState(voice);
  const pcm = new Float32Array(ad.numberOfFrames);
  ad.copyTo(pcm, { planeIndex: 0, format: "f32-planar" });
  const ts = ad.timestamp;
  ad.close();
  s.stats.audioFramesDecoded++;
  v.decoded++;
  if (s.probe && s.voiceTones.length < MAX_PROBE_DECODED) s.voiceTones.push([voice, toneOf(pcm)]);
  if (s.probe && s.levelHz && s.levels.length < MAX_PROBE_DECODED) s.levels.push([voice, ts, s.levelHz.map((hz) => amplitudeAt(pcm, hz))]);
  if (voice === 0) {
    if (s.probe) probeDecoded(0, ts);
    s.stats.audioTsUs = ts;
    s.lastAudioMs = performance.now();
    if (s.probe) s.tones.push(toneOf(pcm));
  }
  const lostUs = v.lostBefore.length ? v.lostBefore.shift() : 0;
  if (s.audioPort && voice !== s.muted) s.audioPort.postMessage({ voice, ts, pcm, lostUs }, [pcm.buffer]);
}

function toneOf(pcm) {  // zero crossings -> Hz (diagnostics probe)
  let z = 0;
  for (let i = 1; i < pcm.length; i++) if ((pcm[i - 1] < 0) !== (pcm[i] < 0)) z++;
  return Math.round(z / 2 / (pcm.length / 48000));
}

function amplitudeAt(pcm, hz) {  // Hann-windowed Goertzel: a sine of amplitude A at hz reads ~A (probe)
  const w = 2 * Math.PI * hz / 48000, coeff = 2 * Math.cos(w), n = pcm.length;
  let s1 = 0, s2 = 0, sumW = 0;
  for (let i = 0; i < n; i++) {
    const win = 0.5 - 0.5 * Math.cos(2 * Math.PI * i / (n - 1));
    const x = pcm[i] * win + coeff * s1 - s2; s2 = s1; s1 = x; sumW += win;
  }
  return Math.round(2 * Math.sqrt(Math.max(0, s1 * s1 + s2 * s2 - coeff * s1 * s2)) / sumW * 1e5) / 1e5;
}

function startVideo(layer) {
  const entry = s.configs.get(`1:${layer}`);
  if (!entry) return false;
  if (!s.videoDec || s.videoDec.state === "closed") {
    s.videoDec = new VideoDecoder({ output: onVideo, error: (e) => {
      s.stats.decoderErrors++; console.error("VideoDecoder", e); s.videoLayer = null; requestKeyframe(layer);
    } });
  }
  s.videoDec.configure({ ...decoderConfig(entry.config), optimizeForLatency: true });
  s.videoLayer = layer; s.videoGen = entry.generation; s.stats.videoLayer = layer === 0 ? "high" : "low";
  return true;
}

function requestKeyframe(layer) {
  s.stats.keyframeRequests++;
  postMessage({ type: "send", data: C.encodeKeyframeRequest(layer) });
}

function onVideo(frame) {
  s.stats.videoFramesDecoded++;
  if (s.probe) probeDecoded(1, frame.timestamp);
  s.lastVideoMs = performance.now();
  if (s.probe) s.barcodes.push(readBarcode(frame));
  s.frames.push(frame);
  while (s.frames.length > MAX_QUEUED_FRAMES) s.frames.shift().close();
  if (s.clockUs === null || performance.now() - s.lastClockMs > 200) draw();
}

let probeCanvas = null, probeCtx = null;
function readBarcode(frame) {  // 16 bars across the top band of the test pattern (diagnostics probe)
  if (!probeCanvas) { probeCanvas = new OffscreenCanvas(160, 90); probeCtx = probeCanvas.getContext("2d", { willReadFrequently: true }); }
  probeCtx.drawImage(frame, 0, 0, 160, 90);
  const row = probeCtx.getImageData(0, 8, 160, 1).data;
  let v = 0;
  for (let b = 0; b < 16; b++) {
    const x = b * 10 + 5;
    v = (v << 1) | (row[x * 4] > 128 ? 1 : 0);
  }
  return v;
}

function draw() {
  if (!s.frames.length || !s.ctx) return;
  let pick = -1;
  if (s.clockUs === null) pick = s.frames.length - 1;
  else {
    for (let i = 0; i < s.frames.length; i++) if (s.frames[i].timestamp <= s.clockUs + 20000) pick = i;
    const first = s.frames[0].timestamp;
    if (pick < 0 && first - s.clockUs > 500000) pick = 0;  // clocks disagree: do not freeze
    if (pick < 0 && s.clockUs - s.frames[s.frames.length - 1].timestamp > 500000) pick = s.frames.length - 1;
  }
  if (pick < 0) return;
  const f = s.frames[pick];
  if (f === s.drawn) return;  // already on the canvas: the audio clock ticks ~94 times a second, pictures 20
  s.drawn = f;
  if (s.canvas.width !== f.displayWidth || s.canvas.height !== f.displayHeight) {
    s.canvas.width = f.displayWidth; s.canvas.height = f.displayHeight;
  }
  s.ctx.drawImage(f, 0, 0, s.canvas.width, s.canvas.height);
  s.stats.framesDrawn++;
  for (let i = 0; i < pick; i++) s.frames[i].close();
  s.frames = s.frames.slice(pick);
}
s.lastClockMs = -1e9;

const reassembler = new C.Reassembler();
function handle(u8) {
  let m;
  try {
    m = C.parseMessage(u8);
    if (m.kind === "fragment") {
      const whole = reassembler.push(m);
      if (!whole) return;
      m = C.parseMessage(whole);
    }
  } catch (e) { s.stats.formatErrors++; return; }
  if (m.kind === "config") {
    s.configs.set(`${m.track}:${m.layer}`, { generation: m.generation, config: m.config });
    if (m.track === C.TRACK_AUDIO) ensureAudio(m.layer);
    return;
  }
  if (m.kind !== "chunk") return;
  try {
    if (m.track === C.TRACK_AUDIO) {
      const v = voiceState(m.layer);
      const lostUs = noteAudioSeq(m.layer, m.seq) * m.durationUs;
      if (s.probe && m.layer === 0 && s.arrived.length < MAX_PROBE_DECODED) s.arrived.push([m.timestampUs, performance.timeOrigin + performance.now()]);
      if (!ensureAudio(m.layer)) return;
      // Opus gives one output per chunk, in order: the loss before this chunk travels with its PCM
      if (v.lostBefore.length < 64) v.lostBefore.push(lostUs);
      v.dec.decode(new EncodedAudioChunk({ type: "key", timestamp: m.timestampUs, duration: m.durationUs, data: m.payload }));
      return;
    }
    if (m.keyframe && (m.layer !== s.videoLayer || m.generation !== s.videoGen || !s.videoDec || s.videoDec.state !== "configured")) {
      if (!startVideo(m.layer)) return;
    }
    // wait for a keyframe: of this layer, and of this generation (a delta of a re-configured encoder
    // fed to the decoder configured for the old one is a decoder error, and the decoder closes)
    if (m.layer !== s.videoLayer || m.generation !== s.videoGen || !s.videoDec || s.videoDec.state !== "configured") return;
    s.videoDec.decode(new EncodedVideoChunk({ type: m.keyframe ? "key" : "delta", timestamp: m.timestampUs,
      duration: m.durationUs, data: m.payload }));
  } catch (e) {
    s.stats.decoderErrors++; console.error("decode", e);
  }
}

const MAX_PROBE_GAPS = 1000;
// Relays pass audio frames in order and drop only late ones (or a datagram link lost them): a
// sequence gap is audio lost on the way. Returns how many frames are missing before `seq`.
// Each voice counts its own sequence; voice 0's is what the node reads (player reports).
function noteAudioSeq(voice, seq) {
  const v = voiceState(voice);
  const prev = v.seq;
  v.seq = seq;
  if (voice === 0) s.stats.audioSeq = seq;
  if (prev === null || seq === ((prev + 1) >>> 0)) return 0;
  const missing = (seq - prev - 1) >>> 0;
  if (s.probe && voice === 0 && s.audioGaps.length < MAX_PROBE_GAPS) s.audioGaps.push([prev, seq]);
  if (s.probe && s.voiceGaps.length < MAX_PROBE_GAPS) s.voiceGaps.push([voice, prev, seq]);
  if (missing >= 0x80000000) return 0;  // a backwards step: a new presenter
  v.missing += missing;
  if (voice === 0) s.stats.audioSeqMissing += missing;
  return missing;
}

function voiceStats() {
  const out = {};
  for (const [voice, v] of s.voices) out[voice] = { decoded: v.decoded, seq: v.seq, missing: v.missing };
  return out;
}

function publishStats() {
  const t = performance.now();
  const videoFresh = t - s.lastVideoMs < AUDIO_ONLY_AFTER_MS;
  const mode = videoFresh ? "video" : "audio-only";
  if (mode !== s.stats.mode) s.stats.modeSinceAudioTsUs = s.stats.audioTsUs;
  s.stats.mode = mode;
  postMessage({ type: "stats", stats: { ...s.stats, voices: voiceStats(), mutedVoice: s.muted },
    barcodes: s.probe ? s.barcodes.splice(0) : [], tones: s.probe ? s.tones.splice(0) : [],
    decoded: s.probe ? s.decoded.splice(0) : [], arrived: s.probe ? s.arrived.splice(0) : [], audioGaps: s.probe ? s.audioGaps.splice(0) : [],
    voiceTones: s.probe ? s.voiceTones.splice(0) : [], voiceGaps: s.probe ? s.voiceGaps.splice(0) : [],
    levels: s.probe ? s.levels.splice(0) : [] });
}

onmessage = (ev) => {
  const d = ev.data;
  if (d instanceof ArrayBuffer) { handle(new Uint8Array(d)); return; }
  if (d.type === "mute") { s.muted = Number.isInteger(d.voice) ? d.voice : null; return; }
  if (d.type === "levels") { s.levelHz = Array.isArray(d.hz) ? d.hz.filter((x) => Number.isFinite(x)).slice(0, 8) : null; return; }
  if (d.type === "init") {
    s.canvas = d.canvas; s.ctx = s.canvas.getContext("2d"); s.probe = d.probe;
    s.audioPort = d.audioPort;
    s.audioPort.onmessage = (e) => {
      const m = e.data;
      s.clockUs = m.clockUs; s.lastClockMs = performance.now();
      s.stats.audioUnderruns = m.underruns; s.stats.bufferedMs = Math.round(m.bufferedMs); s.stats.targetMs = Math.round(m.targetMs);
      s.stats.jitterMs = Math.round(m.jitterMs * 10) / 10; s.stats.concealedMs = Math.round(m.concealedMs);
      s.stats.drainedMs = Math.round(m.drainedMs || 0);
      draw();
    };
    setInterval(publishStats, 100);
    setInterval(() => { if (performance.now() - s.lastClockMs > 200) { s.clockUs = null; draw(); } }, 50);
  }
};
