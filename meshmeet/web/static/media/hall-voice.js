// The hall's own voice, from the TV page (/media/hall?speak=1) while its site may speak (it holds the
// floor or the chair allowed it: the node says so, docs/protocol/media.md "Voices"). Captures the
// microphone with the browser's echo cancellation on (in the same page that plays the others, so
// Chrome's canceller has what the page plays as its reference), encodes Opus 16 kbit/s in 20 ms
// frames and sends configs and chunks to /media/ws/present as voice 0; the node labels them with
// the site's voice. Ducking: while the page plays the others above DUCK_LEVEL, the microphone is
// sent DUCK_GAIN quieter (a fallback where echo cancellation does not reach the loudspeaker's echo).
// Never plays anything and never sends anything but audio configs and chunks.
import * as C from "./chunk.js";

const BITRATE = 16000;
const DUCK_LEVEL = 0.02;   // RMS of what the page plays (the others) above which the microphone is ducked
const DUCK_GAIN = 0.2;     // -14 dB
const DUCK_HOLD_MS = 300;  // stays ducked this long after the others fall quiet

export class HallVoice {
  constructor() {
    this.running = false; this.ws = null; this.enc = null; this.ctx = null; this.stream = null;
    this.seq = 0; this.gen = 0; this.cfgText = null; this.startUs = null; this.t0 = performance.now();
    this.othersLoudAt = -1e9; this.stats = { chunksSent: 0, ducked: 0, echoCancellation: null, errors: 0 };
    this.probe = [];  // [timestamp µs, RMS sent, epoch ms it reached the encoder] per frame (probe pages)
  }

  playing(level) {  // the RMS of what the page plays now (the worklet reports it)
    if (level > DUCK_LEVEL) this.othersLoudAt = performance.now();
  }

  send(bytes) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) { this.ws.send(bytes); this.stats.chunksSent++; }
  }

  async start() {
    if (this.running) return;
    this.running = true;
    const proto = location.protocol === "https:" ? "wss" : "ws";
    this.ws = new WebSocket(`${proto}://${location.host}/media/ws/present`);
    this.ws.binaryType = "arraybuffer";
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 } });
    const track = this.stream.getAudioTracks()[0];
    this.stats.echoCancellation = track.getSettings().echoCancellation ?? null;
    this.ctx = new AudioContext({ sampleRate: 48000 });
    await this.ctx.audioWorklet.addModule("/media/static/capture-worklet.js");
    const src = this.ctx.createMediaStreamSource(this.stream);
    const node = new AudioWorkletNode(this.ctx, "mm-capture", {
      numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: "explicit", channelInterpretation: "speakers" });
    const mute = this.ctx.createGain(); mute.gain.value = 0;
    src.connect(node); node.connect(mute); mute.connect(this.ctx.destination);
    if (this.ctx.state === "suspended") await this.ctx.resume();
    this.enc = new AudioEncoder({ output: (chunk, meta) => this.output(chunk, meta),
      error: (e) => { this.stats.errors++; console.error("hall voice AudioEncoder", e); } });
    this.enc.configure({ codec: "opus", sampleRate: 48000, numberOfChannels: 1, bitrate: BITRATE,
      opus: { frameDuration: 20000 } });
    node.port.onmessage = (ev) => {
      if (!this.running || this.enc.state !== "configured") return;
      if (this.startUs === null) this.startUs = Math.round((performance.now() - this.t0) * 1000);
      const pcm = ev.data.pcm;
      if (performance.now() - this.othersLoudAt < DUCK_HOLD_MS) {
        for (let i = 0; i < pcm.length; i++) pcm[i] *= DUCK_GAIN;
        this.stats.ducked++;
      }
      const timestamp = this.startUs + ev.data.index * 20000;
      if (this.probe.length < 5000) { let e = 0; for (const x of pcm) e += x * x; this.probe.push([timestamp, Math.sqrt(e / pcm.length), performance.timeOrigin + performance.now()]); }
      const ad = new AudioData({ format: "f32-planar", sampleRate: 48000, numberOfFrames: pcm.length, numberOfChannels: 1,
        timestamp, data: pcm });
      this.enc.encode(ad); ad.close();
    };
  }

  output(chunk, meta) {
    if (meta && meta.decoderConfig) {
      const d = meta.decoderConfig;
      const cfg = { codec: d.codec, sampleRate: d.sampleRate, numberOfChannels: d.numberOfChannels };
      if (d.description) cfg.description = C.b64encode(new Uint8Array(d.description.buffer || d.description));
      const text = JSON.stringify(cfg);
      if (text !== this.cfgText) { this.cfgText = text; this.gen = (this.gen + 1) & 0xff; }
      this.send(C.encodeConfig(C.TRACK_AUDIO, 0, this.gen, cfg));
    }
    const payload = new Uint8Array(chunk.byteLength); chunk.copyTo(payload);
    this.send(C.encodeChunk({ track: C.TRACK_AUDIO, layer: 0, temporalId: 0, keyframe: true, generation: this.gen,
      seq: this.seq++, timestampUs: chunk.timestamp, durationUs: chunk.duration || 20000, payload }));
  }

  stop() {
    this.running = false;
    try { if (this.enc && this.enc.state !== "closed") this.enc.close(); } catch (e) { /* closed */ }
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    if (this.ctx) this.ctx.close();
    if (this.ws) this.ws.close();
    this.enc = null; this.stream = null; this.ctx = null; this.ws = null; this.startUs = null;
  }
}
