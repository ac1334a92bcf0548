// AudioWorklet: plays decoded PCM from a ring buffer behind an adaptive jitter buffer (40-300 ms,
// jitter.js: from measured interarrival jitter, bounded), conceals lost frames (the last frame
// repeated with a fade to silence: WebCodecs' AudioDecoder cannot decode Opus FEC from the next
// packet), and reports the audio clock (timestamp now playing) back to the decoder worker.
// Voices: one ring and jitter buffer per voice (each has its own capture clock and arrival
// jitter), summed into the output through a peak limiter (instant attack, 100 ms release); the
// clock and the figures reported are voice 0's (the floor holder: the video follows it).
// Runs on the audio thread: no allocation per quantum, no decoding, no network.
import { JitterBuffer } from "./jitter.js";

const RATE = 48000;
const RING = RATE * 2;
const CONCEAL_FADE_S = 0.04;  // a lost stretch: the last frame repeated, fading out over this, then silence
const MAX_CONCEAL_S = 0.2;    // a longer gap is not concealed (the stream restarted or jumped)
const RESUME_S = 0.04;       // after an underrun, play again once this much is back (not the whole target:
                             // the stall already grew the playout delay by as much as the audio was late)
const DRAIN_WINDOW_S = 1.0;   // the least buffered over each window this long...
const DRAIN_SLACK_S = 0.01;   // ...above what the target needs by more than this: play fast until the next window
const DRAIN_EXTRA = 2;        // ...reading this many samples more per 128-sample quantum (1.6 % fast, linear
                              // interpolation: 50 ms of excess goes in ~3 s, a pitch change of ~0.3 semitone)
const LIMIT = 0.95;                // peak of the mix
const RELEASE_PER_SAMPLE = 1 / (0.1 * RATE);
class Voice {
  constructor() {
    this.ring = new Float32Array(RING);
    this.last = new Float32Array(RATE / 10);  // the latest frame received (up to 100 ms), for concealment
    this.lastLen = 0;
    this.w = 0; this.r = 0;            // absolute sample counters
    this.headTs = null;                // µs timestamp of sample index r
    this.nextTs = null;                // µs timestamp expected at write position
    this.playing = false; this.started = false;
    this.jb = new JitterBuffer();
    this.targetMs = this.jb.targetMs(0);
    this.underruns = 0; this.framesIn = 0; this.concealed = 0;
    this.winMin = Infinity; this.winSamples = 0; this.draining = false; this.drained = 0;
  }
  buffered() { return this.w - this.r; }
  head() { return this.playing ? this.headTs : null; }  // timestamp (µs) of the next sample played
  conceal(n) {  // n samples of a gap: the last frame again, fading out, then silence
    const fade = CONCEAL_FADE_S * RATE;
    for (let i = 0; i < n; i++) {
      const g = this.lastLen ? Math.max(0, 1 - i / fade) : 0;
      this.ring[(this.w + i) % RING] = g ? this.last[i % this.lastLen] * g : 0;
    }
    this.w += n; this.concealed += n;
  }
  push(m) {
    const now = currentTime * 1000;
    this.jb.arrival(now, m.ts, m.pcm.length / RATE * 1000);
    this.targetMs = this.jb.targetMs(now);
    if (this.nextTs !== null) {
      // lost frames (the worker counts sequence gaps; decoder timestamps need not show them)
      const gapUs = m.lostUs > 0 ? m.lostUs : m.ts - this.nextTs;
      if (!(m.lostUs > 0) && gapUs < -5000) return;  // late duplicate
      if (gapUs > 5000 && gapUs < MAX_CONCEAL_S * 1e6) this.conceal(Math.round(gapUs / 1e6 * RATE));
    }
    if (this.buffered() + m.pcm.length > RING) { this.r = this.w - RING + m.pcm.length; this.headTs = null; }
    for (let i = 0; i < m.pcm.length; i++) this.ring[(this.w + i) % RING] = m.pcm[i];
    this.lastLen = Math.min(m.pcm.length, this.last.length);
    this.last.set(m.pcm.subarray(m.pcm.length - this.lastLen));
    if (this.headTs === null || this.buffered() === 0) this.headTs = m.ts - (this.buffered() / RATE) * 1e6;
    this.w += m.pcm.length; this.framesIn++;
    this.nextTs = m.ts + m.pcm.length / RATE * 1e6;
  }
  // The buffer holds more than the target needs when a late stretch (or a sender's faster clock)
  // left audio behind: every frame then plays that much later than it must. Its least over a window,
  // plus a frame (it dips by a frame between arrivals), against the target: drain the excess slowly.
  noteLevel(targetSamples, n) {
    this.winMin = Math.min(this.winMin, this.buffered());
    this.winSamples += n;
    if (this.winSamples < DRAIN_WINDOW_S * RATE) return;
    const frameSamples = this.jb.frameMs / 1000 * RATE;
    this.draining = this.winMin + frameSamples - targetSamples > DRAIN_SLACK_S * RATE;
    this.winMin = Infinity; this.winSamples = 0;
  }
  render(mix, n) {  // adds this voice's next n samples into mix
    const targetSamples = this.targetMs / 1000 * RATE;
    // the first start waits for the whole target; a restart after an underrun only for RESUME_S
    // (waiting for the target again would add the target to every late frame's silence)
    const startSamples = this.started ? Math.min(targetSamples, RESUME_S * RATE) : targetSamples;
    if (!this.playing && this.buffered() >= startSamples) { this.playing = true; this.started = true; }
    if (this.playing) {
      const excess = this.buffered() - (targetSamples + 0.1 * RATE);
      if (excess > 0) { this.r += Math.floor(excess); this.headTs += excess / RATE * 1e6; }  // catch up
      if (this.buffered() < n) {
        this.playing = false; this.underruns++;
        this.jb.underrun(currentTime * 1000);
        this.targetMs = this.jb.targetMs(currentTime * 1000);
        this.winMin = Infinity; this.winSamples = 0; this.draining = false;
      } else {
        this.noteLevel(targetSamples, n);
        const k = this.draining && this.buffered() >= n + DRAIN_EXTRA ? DRAIN_EXTRA : 0;
        if (k === 0) {
          for (let i = 0; i < n; i++) mix[i] += this.ring[(this.r + i) % RING];
        } else {  // n output samples from n + k: read a little fast, interpolating between neighbours
          for (let i = 0; i < n; i++) {
            const pos = i * (n + k) / n, i0 = Math.floor(pos), f = pos - i0;
            mix[i] += this.ring[(this.r + i0) % RING] * (1 - f) + this.ring[(this.r + i0 + 1) % RING] * f;
          }
          this.drained += k;
        }
        this.r += n + k; this.headTs += (n + k) / RATE * 1e6;
      }
    }
  }
}

class Playout extends AudioWorkletProcessor {
  constructor() {
    super();
    this.voices = [new Voice(), new Voice(), new Voice()];  // 0 floor holder, 1 chair, 2 extra
    this.gain = 1; this.quanta = 0; this.limited = 0;
    this.port.onmessage = (ev) => {
      if (ev.data.port) {
        this.out = ev.data.port;
        this.out.onmessage = (e) => { const v = this.voices[e.data.voice | 0]; if (v) v.push(e.data); };
      }
    };
  }
  process(_inputs, outputs) {
    const out = outputs[0][0];
    const n = out.length;
    out.fill(0);
    for (const v of this.voices) if (v.framesIn) v.render(out, n);
    for (let i = 0; i < n; i++) {  // the limiter: a sum of voices never clips
      const a = Math.abs(out[i]) * this.gain;
      if (a > LIMIT) { this.gain = LIMIT / Math.abs(out[i]); this.limited++; }
      out[i] *= this.gain;
      if (this.gain < 1) this.gain = Math.min(1, this.gain + RELEASE_PER_SAMPLE);
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    let e = 0;
    for (let i = 0; i < n; i++) e += out[i] * out[i];
    this.level = Math.max(this.level || 0, Math.sqrt(e / n));
    const v0 = this.voices[0];
    if (this.out && ++this.quanta % 4 === 0) {
      this.out.postMessage({ clockUs: v0.playing ? v0.headTs : null, underruns: v0.underruns,
        bufferedMs: v0.buffered() / RATE * 1000, targetMs: v0.targetMs, concealedMs: v0.concealed / RATE * 1000,
        drainedMs: v0.drained / RATE * 1000,
        jitterMs: v0.jb.jitterMs, limited: this.limited,
        voicesPlaying: this.voices.map((v) => v.playing) });
      // the page: its own microphone ducks while others speak; `at` (context time s) is when the next
      // quantum starts playing and `heads` each voice's timestamp (µs) at it (null: not playing), so
      // a probe page knows when each voice's audio was rendered
      this.port.postMessage({ level: this.level, at: currentTime + n / RATE,
        heads: [this.voices[0].head(), this.voices[1].head(), this.voices[2].head()] });
      this.level = 0;
    }
    return true;
  }
}
registerProcessor("mm-playout", Playout);
