// AudioWorklet: plays decoded PCM from a ring buffer behind an adaptive jitter buffer (40-300 ms),
// and reports the audio clock (timestamp now playing) back to the decoder worker.
// Runs on the audio thread: no allocation per quantum, no decoding, no network.
const RATE = 48000;
const RING = RATE * 2;
const MIN_MS = 40, MAX_MS = 300;
const PEAK_DECAY = 0.9998;  // per 20 ms frame: ~1 %/s
class Playout extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Float32Array(RING);
    this.w = 0; this.r = 0;            // absolute sample counters
    this.headTs = null;                // µs timestamp of sample index r
    this.nextTs = null;                // µs timestamp expected at write position
    this.playing = false; this.started = false;
    this.targetMs = 120; this.peakGapMs = 90; this.lastArrival = null;
    this.underruns = 0; this.quanta = 0; this.framesIn = 0; this.concealed = 0;
    this.port.onmessage = (ev) => { if (ev.data.port) { this.out = ev.data.port; this.out.onmessage = (e) => this.push(e.data); } };
  }
  buffered() { return this.w - this.r; }
  push(m) {
    const now = currentTime * 1000;
    // peak-hold of the arrival gaps: grows at once with a burst, decays slowly
    this.peakGapMs *= PEAK_DECAY;
    if (this.lastArrival !== null) this.peakGapMs = Math.max(this.peakGapMs, now - this.lastArrival);
    this.lastArrival = now;
    this.targetMs = Math.min(MAX_MS, Math.max(MIN_MS, this.peakGapMs + 30));
    if (this.nextTs !== null) {
      const gapUs = m.ts - this.nextTs;
      if (gapUs < -5000) return;        // late duplicate
      if (gapUs > 5000 && gapUs < 200000) {  // lost frames: conceal with silence, keep the clock
        const n = Math.round(gapUs / 1e6 * RATE);
        for (let i = 0; i < n; i++) this.ring[(this.w + i) % RING] = 0;
        this.w += n; this.concealed += n;
      }
    }
    if (this.buffered() + m.pcm.length > RING) { this.r = this.w - RING + m.pcm.length; this.headTs = null; }
    for (let i = 0; i < m.pcm.length; i++) this.ring[(this.w + i) % RING] = m.pcm[i];
    if (this.headTs === null || this.buffered() === 0) this.headTs = m.ts - (this.buffered() / RATE) * 1e6;
    this.w += m.pcm.length; this.framesIn++;
    this.nextTs = m.ts + m.pcm.length / RATE * 1e6;
  }
  process(_inputs, outputs) {
    const out = outputs[0][0];
    const n = out.length;
    const targetSamples = this.targetMs / 1000 * RATE;
    if (!this.playing && this.buffered() >= targetSamples) { this.playing = true; this.started = true; }
    if (this.playing) {
      const excess = this.buffered() - (targetSamples + 0.1 * RATE);
      if (excess > 0) { this.r += Math.floor(excess); this.headTs += excess / RATE * 1e6; }  // catch up
      if (this.buffered() < n) {
        this.playing = false; this.underruns++; this.peakGapMs += 60;
        this.targetMs = Math.min(MAX_MS, this.targetMs + 40);
        out.fill(0);
      } else {
        for (let i = 0; i < n; i++) out[i] = this.ring[(this.r + i) % RING];
        this.r += n; this.headTs += n / RATE * 1e6;
      }
    } else out.fill(0);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (this.out && ++this.quanta % 4 === 0) {
      this.out.postMessage({ clockUs: this.playing ? this.headTs : null, underruns: this.underruns,
        bufferedMs: this.buffered() / RATE * 1000, targetMs: this.targetMs, concealedMs: this.concealed / RATE * 1000 });
    }
    return true;
  }
}
registerProcessor("mm-playout", Playout);
