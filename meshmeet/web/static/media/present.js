// Presenter page: capture camera + microphone, encode with WebCodecs, send chunks to the node.
// Picture: a camera (an HDMI capture card is one too) or, for a laptop's slides, the screen (getDisplayMedia).
// Audio: AudioWorklet at 48 kHz mono -> AudioEncoder (Opus, 20 ms). Video: two VideoEncoders
// (640x360, 320x180), VP8 or H.264 by isConfigSupported, L1T3, keyframe every 2 s and on request.
// Audio bitrate: the chosen preset is a ceiling; an audio rate request from the relays (a hall link
// that cannot carry it) lowers it, and it returns to the preset AUDIO_RATE_HOLD_MS after the last one.
// The request's long form also sets the Opus frame duration (40/60 ms on narrow links: fewer headers)
// and in-band FEC (useinbandfec + packetlossperc, when a link loses packets), held the same way.
// Never decodes or relays anything: the node does that.
import * as C from "./chunk.js";

const KEYFRAME_EVERY_US = 2_000_000;
const KEYFRAME_REQUEST_MIN_MS = 250;
const AUDIO_RATE_HOLD_MS = 6000;  // back to the chosen preset this long after the last audio rate request
const AUDIO_RATE_CHECK_MS = 500;
const LAYERS = [
  { layer: C.LAYER_HIGH, width: 640, height: 360, bitrate: 400_000 },
  { layer: C.LAYER_LOW, width: 320, height: 180, bitrate: 150_000 },
];
const CODECS = ["vp8", "avc1.42E01F"];

const $ = (id) => document.getElementById(id);
const st = {
  ws: null, running: false, t0: 0, audioCtx: null, audioEnc: null, audioSeq: 0, audioGen: 0,
  audioStartUs: null, audioTsUs: null, video: [], reader: null, stream: null, chunksSent: 0, encodeErrors: 0, keyframesOnRequest: 0,
  codec: null, audioPresetBps: 24000, audioBitrate: null, audioRequestBps: null, audioRequestAtMs: -Infinity,
  audioRateRequests: 0, audioCfgText: null, audioTimer: null,
  audioRequestFrameMs: 20, audioRequestFec: 0,  // what the latest request asked for
  audioEncoding: null,  // {bitrate, frameMs, fec} the encoder runs with now
  audioHeld: null,  // capture frames waiting while the encoder changes its frame duration
};
window.meshmeetPresenter = { stats: () => ({ chunksSent: st.chunksSent, encodeErrors: st.encodeErrors,
  keyframesOnRequest: st.keyframesOnRequest,
  codec: st.codec, running: st.running, audioFrames: st.audioSeq, videoFrames: st.video.map((v) => v.seq),
  audioBitrate: st.audioBitrate, audioPresetBitrate: st.audioPresetBps, audioRateRequests: st.audioRateRequests,
  audioFrameMs: st.audioEncoding ? st.audioEncoding.frameMs : null,
  audioFecPercent: st.audioEncoding ? st.audioEncoding.fec : null,
  audioTsUs: st.audioTsUs,  // timestamp of the latest audio chunk sent: the source's media clock
  // chunk timestamps are µs since this instant (ms since the epoch): capture time = epochMs + timestamp / 1000
  epochMs: performance.timeOrigin + st.t0 }),
  // probe=1 only, each call takes and clears: capture -> decoded latencies (ms) of the bare in-browser
  // loop (this page decodes its own audio, no node; a benchmark's baseline), and [timestamp µs, epoch ms]
  // of each audio chunk sent: when its PCM reached the encoder (Opus gives one chunk per 20 ms frame,
  // in order; chunk timestamps are not exactly the input's, and count frames, not capture instants)
  takeLoop: () => loop.lat.splice(0),
  takeCaptures: () => loop.captures.splice(0),
  // probe=1 only: [timestamp µs, epoch ms] of each 20 ms capture frame handed to the encoder (its
  // input timestamp, whatever frame duration the encoder runs: a decoded sample of timestamp t is
  // the captured sample of timestamp t, Opus's delay being taken off by the decoder's timestamps)
  takeFed: () => loop.fed.splice(0),
  // probe=1 only: [timestamp µs, Hz by zero crossings] of each 20 ms frame the capture worklet
  // handed over, before encoding (what the capture device gave us; compare with the player's tones)
  takeTones: () => loop.tones.splice(0) };
const loop = { on: new URLSearchParams(location.search).get("probe") === "1", dec: null, lat: [], captures: [],
  at: new Map(), inQ: [], tones: [], fed: [] };
const MAX_PROBE_ENTRIES = 5000;

function loopAudio(chunk, meta) {
  const at = loop.inQ.shift();
  if (at !== undefined) {
    if (loop.captures.length < MAX_PROBE_ENTRIES) loop.captures.push([chunk.timestamp, at]);
    loop.at.set(chunk.timestamp, at);
    if (loop.at.size > 500) loop.at.delete(loop.at.keys().next().value);
  }
  if (meta && meta.decoderConfig) {
    if (loop.dec) try { loop.dec.close(); } catch (e) { /* closed */ }
    loop.dec = new AudioDecoder({
      output: (ad) => {
        // the decoder's timestamps are the chunk's less Opus's pre-skip (6.5 ms): match within half a frame
        let at;
        for (const [ts, t] of loop.at) if (ts >= ad.timestamp && ts - ad.timestamp < 10000) { at = t; loop.at.delete(ts); break; }
        if (at !== undefined && loop.lat.length < MAX_PROBE_ENTRIES) loop.lat.push(performance.timeOrigin + performance.now() - at);
        ad.close();
      },
      error: (e) => console.warn("loop AudioDecoder", e),
    });
    loop.dec.configure(meta.decoderConfig);
  }
  if (loop.dec && loop.dec.state === "configured") loop.dec.decode(chunk);
}

function toneOf(pcm) {  // zero crossings -> Hz, as the player's probe counts them
  let z = 0;
  for (let i = 1; i < pcm.length; i++) if ((pcm[i - 1] < 0) !== (pcm[i] < 0)) z++;
  return Math.round(z / 2 / (pcm.length / 48000));
}

function status(vi, en) { $("status").textContent = `${vi} / ${en}`; }
function nowUs() { return Math.round((performance.now() - st.t0) * 1000); }
function send(bytes) {
  if (st.ws && st.ws.readyState === WebSocket.OPEN) { st.ws.send(bytes); st.chunksSent++; }
}

async function listDevices() {
  try {
    const devs = await navigator.mediaDevices.enumerateDevices();
    for (const [kind, sel] of [["videoinput", $("cam")], ["audioinput", $("mic")]]) {
      sel.innerHTML = "";
      for (const d of devs.filter((x) => x.kind === kind)) {
        const o = document.createElement("option");
        o.value = d.deviceId; o.textContent = d.label || d.deviceId || kind;
        sel.appendChild(o);
      }
    }
  } catch (e) { console.warn("enumerateDevices", e); }
}

function openSocket() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/media/ws/present`);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error("websocket"));
    ws.onclose = () => { if (st.running) status("Mất kết nối tới máy trạm", "Lost connection to the node"); };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") return;
      try {
        const m = C.parseMessage(new Uint8Array(ev.data));
        if (m.kind === "keyframe-request") requestKeyframe(m.layer);
        else if (m.kind === "audio-rate-request") requestAudioRate(m.kbps * 1000, m.frameMs, m.fecLossPercent);
      } catch (e) { console.warn("bad message from node", e); }
    };
  });
}

function requestKeyframe(layer) {
  const v = st.video.find((x) => x.layer === layer);
  if (!v) return;
  const t = performance.now();
  if (t - v.lastRequestMs < KEYFRAME_REQUEST_MIN_MS) { v.forceKey = true; return; }
  v.lastRequestMs = t; v.forceKey = true;
}

function audioEncoderConfig(e) {
  const opus = { frameDuration: e.frameMs * 1000 };
  if (e.fec > 0) { opus.useinbandfec = true; opus.packetlossperc = e.fec; }
  return { codec: "opus", sampleRate: 48000, numberOfChannels: 1, bitrate: e.bitrate, opus };
}

// What the encoder should run with: the preset at 20 ms frames without FEC, or what the relays ask
// for (a lower bitrate, longer frames, FEC) until AUDIO_RATE_HOLD_MS after their last request.
function wantedAudioEncoding() {
  const held = performance.now() - st.audioRequestAtMs < AUDIO_RATE_HOLD_MS && st.audioRequestBps !== null;
  if (!held) return { bitrate: st.audioPresetBps, frameMs: 20, fec: 0 };
  return { bitrate: Math.min(st.audioPresetBps, st.audioRequestBps), frameMs: st.audioRequestFrameMs, fec: st.audioRequestFec };
}

function applyAudioBitrate() {
  const enc = st.audioEnc, want = wantedAudioEncoding(), cur = st.audioEncoding;
  if (!enc || enc.state !== "configured") return;
  if (cur && want.bitrate === cur.bitrate && want.frameMs === cur.frameMs && want.fec === cur.fec) return;
  if (st.audioHeld) return;  // a frame-duration change is under way: the next check applies this
  if (cur && want.frameMs !== cur.frameMs) {
    changeAudioFrames(enc, want);
  } else {
    try {
      enc.configure(audioEncoderConfig(want));  // queued after the frames already given: none is lost
    } catch (e) {  // an encoder without these Opus options: keep the bitrate, 20 ms frames, no FEC
      console.warn("AudioEncoder.configure", e);
      want.frameMs = 20; want.fec = 0;
      enc.configure(audioEncoderConfig(want));
    }
  }
  st.audioEncoding = want;
  st.audioBitrate = want.bitrate;
  const fec = want.fec ? `, FEC ${want.fec} %` : "";
  status(`Đang phát (${st.codec}), âm thanh ${want.bitrate / 1000} kbit/s, khung ${want.frameMs} ms${fec}`,
    `Live (${st.codec}), audio ${want.bitrate / 1000} kbit/s, ${want.frameMs} ms frames${fec}`);
}

// Chromium's AudioEncoder keeps its Opus frame duration through a configure() that changes nothing
// else (measured: 20 -> 60 ms at one bitrate still gives 20 ms frames, and 60 -> 20 ms stays 60). A
// new frame duration takes flush, reset and configure; the capture's frames meanwhile wait in
// st.audioHeld and are encoded after it, so none is lost.
function changeAudioFrames(enc, want) {
  st.audioHeld = [];
  const resume = () => {
    const held = st.audioHeld || [];
    st.audioHeld = null;
    for (const ad of held) { if (enc.state === "configured") enc.encode(ad); ad.close(); }
  };
  enc.flush().then(() => {
    enc.reset();
    try {
      enc.configure(audioEncoderConfig(want));
    } catch (e) {
      console.warn("AudioEncoder.configure", e);
      want.frameMs = 20; want.fec = 0;
      enc.configure(audioEncoderConfig(want));
    }
    resume();
  }).catch((e) => { console.warn("AudioEncoder.flush", e); resume(); });
}

function requestAudioRate(bps, frameMs = 20, fecLossPercent = 0) {
  st.audioRateRequests++;
  st.audioRequestBps = bps;
  st.audioRequestFrameMs = [20, 40, 60].includes(frameMs) ? frameMs : 20;
  st.audioRequestFec = Math.max(0, Math.min(100, fecLossPercent | 0));
  st.audioRequestAtMs = performance.now();
  applyAudioBitrate();
}

async function startAudio(track, bitrate) {
  const ctx = new AudioContext({ sampleRate: 48000 });
  st.audioCtx = ctx;
  await ctx.audioWorklet.addModule("/media/static/capture-worklet.js");
  const src = ctx.createMediaStreamSource(new MediaStream([track]));
  const node = new AudioWorkletNode(ctx, "mm-capture", {
    numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: "explicit", channelInterpretation: "speakers",
  });
  const mute = ctx.createGain(); mute.gain.value = 0;
  src.connect(node); node.connect(mute); mute.connect(ctx.destination);
  if (ctx.state === "suspended") await ctx.resume();
  const enc = new AudioEncoder({
    output: (chunk, meta) => {
      if (loop.on) loopAudio(chunk, meta);
      if (meta && meta.decoderConfig) {
        const d = meta.decoderConfig;
        const cfg = { codec: d.codec, sampleRate: d.sampleRate, numberOfChannels: d.numberOfChannels };
        if (d.description) cfg.description = C.b64encode(new Uint8Array(d.description.buffer || d.description));
        const text = JSON.stringify(cfg);
        if (text !== st.audioCfgText) {  // a bitrate change gives the same config: players keep their decoder
          st.audioCfgText = text;
          st.audioGen = (st.audioGen + 1) & 0xff;
          send(C.encodeConfig(C.TRACK_AUDIO, 0, st.audioGen, cfg));
        }
      }
      const payload = new Uint8Array(chunk.byteLength); chunk.copyTo(payload);
      send(C.encodeChunk({ track: C.TRACK_AUDIO, layer: 0, temporalId: 0, keyframe: true, generation: st.audioGen,
        seq: st.audioSeq++, timestampUs: chunk.timestamp,
        durationUs: chunk.duration || (st.audioEncoding ? st.audioEncoding.frameMs * 1000 : 20000), payload }));
      st.audioTsUs = chunk.timestamp;
    },
    error: (e) => { st.encodeErrors++; console.error("AudioEncoder", e); },
  });
  st.audioPresetBps = bitrate;
  st.audioBitrate = bitrate;
  st.audioEncoding = { bitrate, frameMs: 20, fec: 0 };
  enc.configure(audioEncoderConfig(st.audioEncoding));
  st.audioEnc = enc;
  st.audioTimer = setInterval(applyAudioBitrate, AUDIO_RATE_CHECK_MS);
  node.port.onmessage = (ev) => {
    if (!st.running || enc.state !== "configured") return;
    if (st.audioStartUs === null) st.audioStartUs = nowUs();
    const ad = new AudioData({ format: "f32-planar", sampleRate: 48000, numberOfFrames: 960, numberOfChannels: 1,
      timestamp: st.audioStartUs + ev.data.index * 20000, data: ev.data.pcm });
    if (loop.on && loop.inQ.length < 500) loop.inQ.push(performance.timeOrigin + performance.now());
    if (loop.on && loop.tones.length < MAX_PROBE_ENTRIES) loop.tones.push([ad.timestamp, toneOf(ev.data.pcm)]);
    if (loop.on && loop.fed.length < MAX_PROBE_ENTRIES) loop.fed.push([ad.timestamp, performance.timeOrigin + performance.now()]);
    if (st.audioHeld) { st.audioHeld.push(ad); return; }  // changeAudioFrames: encoded after it
    enc.encode(ad); ad.close();
  };
}

async function pickCodec(l) {
  for (const codec of CODECS) {
    const cfg = { codec, width: l.width, height: l.height, bitrate: l.bitrate, framerate: 20,
      scalabilityMode: "L1T3", latencyMode: "realtime" };
    if (codec.startsWith("avc1")) cfg.avc = { format: "annexb" };
    try {
      const s = await VideoEncoder.isConfigSupported(cfg);
      if (s.supported) return cfg;
    } catch (e) { /* try the next */ }
  }
  throw new Error("no supported video codec");
}

async function startVideo(track) {
  for (const l of LAYERS) {
    const cfg = await pickCodec(l);
    st.codec = cfg.codec;
    const v = { ...l, cfg, seq: 0, gen: 0, lastKeyUs: -Infinity, forceKey: true, lastRequestMs: -1e9, enc: null,
      canvas: new OffscreenCanvas(l.width, l.height) };
    v.ctx2d = v.canvas.getContext("2d");
    v.enc = new VideoEncoder({
      output: (chunk, meta) => {
        if (meta && meta.decoderConfig) {
          v.gen = (v.gen + 1) & 0xff;
          const d = meta.decoderConfig;
          const out = { codec: d.codec, codedWidth: d.codedWidth || l.width, codedHeight: d.codedHeight || l.height };
          if (d.description) out.description = C.b64encode(new Uint8Array(d.description.buffer || d.description));
          send(C.encodeConfig(C.TRACK_VIDEO, l.layer, v.gen, out));
        }
        const payload = new Uint8Array(chunk.byteLength); chunk.copyTo(payload);
        const tid = chunk.type === "key" ? 0 : Math.min(2, (meta && meta.svc && meta.svc.temporalLayerId) || 0);
        send(C.encodeChunk({ track: C.TRACK_VIDEO, layer: l.layer, temporalId: tid, keyframe: chunk.type === "key",
          generation: v.gen, seq: v.seq++, timestampUs: chunk.timestamp, durationUs: chunk.duration || 50000, payload }));
      },
      error: (e) => { st.encodeErrors++; console.error("VideoEncoder", e); },
    });
    v.enc.configure(cfg);
    st.video.push(v);
  }
  const proc = new MediaStreamTrackProcessor({ track });
  st.reader = proc.readable.getReader();
  (async () => {
    while (st.running) {
      const { value: frame, done } = await st.reader.read();
      if (done) break;
      const ts = nowUs();
      for (const v of st.video) {
        if (v.enc.state !== "configured" || v.enc.encodeQueueSize > 2) continue;
        const key = v.forceKey || ts - v.lastKeyUs >= KEYFRAME_EVERY_US;
        let f;
        if (frame.displayWidth === v.width && frame.displayHeight === v.height) {
          f = new VideoFrame(frame, { timestamp: ts });
        } else {
          v.ctx2d.drawImage(frame, 0, 0, v.width, v.height);
          f = new VideoFrame(v.canvas, { timestamp: ts, duration: 50000 });
        }
        v.enc.encode(f, { keyFrame: key });
        f.close();
        if (key) { if (v.forceKey) st.keyframesOnRequest++; v.lastKeyUs = ts; v.forceKey = false; }
      }
      frame.close();
    }
  })();
}

async function start() {
  $("start").disabled = true;
  try {
    st.t0 = performance.now();
    const camId = $("cam").value, micId = $("mic").value;
    const audio = { deviceId: micId ? { exact: micId } : undefined, echoCancellation: false, noiseSuppression: false, autoGainControl: false };
    if ($("video-source").value === "screen") {
      // a laptop's slides: the screen (or one window) from getDisplayMedia, the voice from the microphone;
      // frames of any size are scaled to 640x360 and 320x180 like a camera's
      const screen = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 20, width: 1280, height: 720 }, audio: false });
      const mic = await navigator.mediaDevices.getUserMedia({ audio });
      st.stream = new MediaStream([...mic.getAudioTracks(), ...screen.getVideoTracks()]);
      screen.getVideoTracks()[0].addEventListener("ended", () => { if (st.running) stop(); });  // "Stop sharing"
    } else {
      st.stream = await navigator.mediaDevices.getUserMedia({
        audio,
        video: { deviceId: camId ? { exact: camId } : undefined, width: 640, height: 360, frameRate: 20 },
      });
    }
    $("preview").srcObject = st.stream;
    await listDevices();
    st.ws = await openSocket();
    st.running = true;
    await startAudio(st.stream.getAudioTracks()[0], Number($("preset").value));
    await startVideo(st.stream.getVideoTracks()[0]);
    status(`Đang phát (${st.codec})`, `Live (${st.codec})`);
    $("stop").disabled = false;
  } catch (e) {
    console.error(e);
    st.running = false;
    status(`Không bắt đầu được: ${e.message}`, `Could not start: ${e.message}`);
    $("start").disabled = false;
  }
}

function stop() {
  st.running = false;
  for (const v of st.video) try { v.enc.close(); } catch (e) { /* closed */ }
  st.video = [];
  try { st.audioEnc && st.audioEnc.close(); } catch (e) { /* closed */ }
  clearInterval(st.audioTimer);
  st.audioEnc = null; st.audioCfgText = null; st.audioEncoding = null;
  if (st.audioCtx) st.audioCtx.close();
  if (st.stream) st.stream.getTracks().forEach((t) => t.stop());
  if (st.ws) st.ws.close();
  status("Đã dừng", "Stopped");
  $("start").disabled = false; $("stop").disabled = true;
}

if (!window.isSecureContext || !("VideoEncoder" in window)) {
  status("Trang này cần localhost hoặc HTTPS và trình duyệt hỗ trợ WebCodecs",
    "This page needs localhost or HTTPS and a browser with WebCodecs");
  $("start").disabled = true;
}
$("start").onclick = start;
$("stop").onclick = stop;
$("preset").onchange = () => { st.audioPresetBps = Number($("preset").value); applyAudioBitrate(); };  // the user's ceiling
listDevices();
window.meshmeetPresenter.start = start;
