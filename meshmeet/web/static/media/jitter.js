// The hall player's adaptive jitter buffer: how much audio to hold before playing, from what the
// network does (docs/protocol/media.md, "Players"). Pure logic, imported by the playout worklet and
// tested on its own (tests/test_media_jitter_js.py); it never touches audio, the network or a clock
// (callers pass the time in ms).
//
// target = clamp(frame + max(JITTER_MULT x jitter, late peak) + MARGIN + underrun boost, MIN, MAX)
//   jitter     RFC 3550 interarrival jitter: the smoothed change in transit time (arrival time minus
//              media timestamp) between consecutive frames
//   late peak  the most a frame's transit time grew over the previous frame's (TCP head-of-line
//              stalls come in bursts that smoothing hides), decaying by PEAK_DECAY_PER_S; until
//              measured, at least a cautious START_LATE_MS that fades by START_DECAY_PER_S (a
//              start that lingered like a measured peak kept every page ~100 ms late for a minute)
//   boost      UNDERRUN_BOOST_MS after each underrun, decaying by BOOST_DECAY_PER_S

export const MIN_MS = 40;
export const MAX_MS = 300;
export const JITTER_GAIN = 1 / 16;  // RFC 3550
export const JITTER_MULT = 3;
export const MARGIN_MS = 20;  // render quanta and scheduling slack
export const PEAK_DECAY_PER_S = 0.98;  // the late peak keeps 98 % of itself per second (half-life ~34 s)
export const UNDERRUN_BOOST_MS = 40;
export const BOOST_DECAY_PER_S = 0.98;
export const START_LATE_MS = 100;  // until measured: cautious (a loaded host's decoder is jittery too)...
export const START_DECAY_PER_S = 0.9;  // ...fading to 12 ms in 20 s (half-life ~6.6 s): what was measured stays
export const SOURCE_JUMP_MS = 5000;  // a transit change above this is a new source, not jitter

export class JitterBuffer {
  constructor() {
    this.jitterMs = 0;
    this.peakLateMs = 0;
    this.startLateMs = START_LATE_MS;
    this.boostMs = 0;
    this.frameMs = 20;
    this.prevTransit = null;
    this.lastDecayMs = null;
  }

  _decay(nowMs) {
    if (this.lastDecayMs !== null && nowMs > this.lastDecayMs) {
      const s = (nowMs - this.lastDecayMs) / 1000;
      this.peakLateMs *= Math.pow(PEAK_DECAY_PER_S, s);
      this.boostMs *= Math.pow(BOOST_DECAY_PER_S, s);
      this.startLateMs *= Math.pow(START_DECAY_PER_S, s);
    }
    this.lastDecayMs = nowMs;
  }

  // A decoded frame of durMs starting at media time tsUs arrived at nowMs.
  arrival(nowMs, tsUs, durMs) {
    if (!Number.isFinite(nowMs) || !Number.isFinite(tsUs) || !(durMs > 0)) return;
    this._decay(nowMs);
    const transit = nowMs - tsUs / 1000;
    if (this.prevTransit !== null && Math.abs(transit - this.prevTransit) < SOURCE_JUMP_MS) {
      const d = transit - this.prevTransit;  // > 0: this frame came that much later than the previous one's pace
      this.jitterMs += (Math.abs(d) - this.jitterMs) * JITTER_GAIN;
      this.peakLateMs = Math.max(this.peakLateMs, Math.min(MAX_MS, d));
    }
    this.prevTransit = transit;
    this.frameMs = durMs;
  }

  underrun(nowMs) {
    this._decay(nowMs);
    this.boostMs = Math.min(MAX_MS, this.boostMs + UNDERRUN_BOOST_MS);
  }

  targetMs(nowMs) {
    this._decay(nowMs);
    const spread = Math.max(JITTER_MULT * this.jitterMs, this.peakLateMs, this.startLateMs);
    return Math.min(MAX_MS, Math.max(MIN_MS, this.frameMs + spread + MARGIN_MS + this.boostMs));
  }
}
