// AudioWorklet: mono 48 kHz capture in 20 ms frames (960 samples) for the Opus encoder.
// Runs on the audio thread: it only copies samples and posts them; never allocates per sample.
const FRAME = 960;
class Capture extends AudioWorkletProcessor {
  constructor() { super(); this.buf = new Float32Array(FRAME); this.n = 0; this.frames = 0; }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (!ch) return true;
    let i = 0;
    while (i < ch.length) {
      const take = Math.min(FRAME - this.n, ch.length - i);
      this.buf.set(ch.subarray(i, i + take), this.n);
      this.n += take; i += take;
      if (this.n === FRAME) {
        this.port.postMessage({ index: this.frames++, pcm: this.buf }, [this.buf.buffer]);
        this.buf = new Float32Array(FRAME); this.n = 0;
      }
    }
    return true;
  }
}
registerProcessor("mm-capture", Capture);
