// meshmeet media wire format (docs/protocol/media.md), the browser's side of
// meshmeet/media/chunk.py. Only encodes and parses; never touches the network.
// Throws MediaFormatError (and nothing else) on malformed bytes.

export const KIND_CHUNK = 0x01;
export const KIND_CONFIG = 0x02;
export const KIND_KEYFRAME_REQUEST = 0x03;
export const KIND_PADDING = 0x04;
export const KIND_FRAGMENT = 0x05;
export const KIND_AUDIO_RATE_REQUEST = 0x06;
export const AUDIO_RATE_MIN_KBPS = 6;  // Opus's lowest bitrate
export const AUDIO_FRAME_MS = [20, 40, 60];  // frame durations a source may be asked for
export const TRACK_AUDIO = 0;
export const TRACK_VIDEO = 1;
export const LAYER_HIGH = 0;
export const LAYER_LOW = 1;
export const MAX_VOICES = 3;  // audio's layer field is the voice: 0 floor holder, 1 chair, 2 extra
export const CHUNK_HEADER_BYTES = 14;

export class MediaFormatError extends Error {}

function streamByte(track, layer, temporalId, keyframe) {
  return (track << 6) | (layer << 4) | (temporalId << 2) | (keyframe ? 2 : 0);
}

function splitStreamByte(b) {
  const track = b >> 6, layer = (b >> 4) & 3, temporalId = (b >> 2) & 3;
  if (b & 1) throw new MediaFormatError("reserved stream bit set");
  if (track > TRACK_VIDEO) throw new MediaFormatError("unknown track");
  if (layer >= (track === TRACK_AUDIO ? MAX_VOICES : LAYER_LOW + 1)) throw new MediaFormatError("unknown layer");
  if (temporalId > 2) throw new MediaFormatError("temporal id out of range");
  if (track === TRACK_AUDIO && temporalId) throw new MediaFormatError("audio has no temporal ids");
  return { track, layer, temporalId, keyframe: !!(b & 2) };
}

// c: {track, layer, temporalId, keyframe, generation, seq, timestampUs, durationUs, payload: Uint8Array}
export function encodeChunk(c) {
  const out = new Uint8Array(CHUNK_HEADER_BYTES + c.payload.byteLength);
  const dv = new DataView(out.buffer);
  out[0] = KIND_CHUNK;
  out[1] = streamByte(c.track, c.layer, c.temporalId, c.keyframe);
  out[2] = c.generation & 0xff;
  dv.setUint32(3, c.seq >>> 0);
  const ts = Math.max(0, Math.round(c.timestampUs));
  dv.setUint32(7, ts % 0x100000000);
  out[11] = Math.floor(ts / 0x100000000) & 0xff;
  dv.setUint16(12, Math.min(0xffff, Math.round(c.durationUs / 100)));
  out.set(c.payload, CHUNK_HEADER_BYTES);
  return out;
}

// Same JSON text as Python's json.dumps(sort_keys=True, separators=(",", ":")).
function canonicalJson(v) {
  if (Array.isArray(v)) return "[" + v.map(canonicalJson).join(",") + "]";
  if (v !== null && typeof v === "object") {
    return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canonicalJson(v[k])).join(",") + "}";
  }
  return JSON.stringify(v);
}

export function encodeConfig(track, layer, generation, config) {
  const body = new TextEncoder().encode(canonicalJson(config));
  const out = new Uint8Array(3 + body.byteLength);
  out[0] = KIND_CONFIG;
  out[1] = streamByte(track, layer, 0, false);
  out[2] = generation & 0xff;
  out.set(body, 3);
  return out;
}

export function encodeKeyframeRequest(layer) {
  return new Uint8Array([KIND_KEYFRAME_REQUEST, streamByte(TRACK_VIDEO, layer, 0, false), 0]);
}

// Asks the source for an Opus bitrate of at most kbps, frames of frameMs and in-band FEC for
// fecLossPercent % loss (relays send it; a page only parses it). 3 bytes when frame 20 and FEC 0.
export function encodeAudioRateRequest(kbps, frameMs = 20, fecLossPercent = 0) {
  const head = [KIND_AUDIO_RATE_REQUEST, streamByte(TRACK_AUDIO, LAYER_HIGH, 0, false), kbps & 0xff];
  if (frameMs === 20 && !fecLossPercent) return new Uint8Array(head);
  return new Uint8Array([...head, frameMs & 0xff, fecLossPercent & 0xff, 0]);
}

// Returns {kind: "chunk", track, layer, temporalId, keyframe, generation, seq, timestampUs,
// durationUs, payload} | {kind: "config", track, layer, generation, config}
// | {kind: "keyframe-request", layer} | {kind: "padding"} | {kind: "fragment", first, last, piece}
// | {kind: "audio-rate-request", kbps, frameMs, fecLossPercent}.
export function parseMessage(u8) {
  if (!(u8 instanceof Uint8Array)) u8 = new Uint8Array(u8);
  if (u8.byteLength === 0) throw new MediaFormatError("empty message");
  const kind = u8[0];
  if (kind === KIND_CHUNK) {
    if (u8.byteLength < CHUNK_HEADER_BYTES) throw new MediaFormatError("chunk shorter than its header");
    const s = splitStreamByte(u8[1]);
    const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
    return {
      kind: "chunk", ...s, generation: u8[2], seq: dv.getUint32(3),
      timestampUs: u8[11] * 0x100000000 + dv.getUint32(7), durationUs: dv.getUint16(12) * 100,
      payload: u8.subarray(CHUNK_HEADER_BYTES),
    };
  }
  if (kind === KIND_CONFIG) {
    if (u8.byteLength < 3) throw new MediaFormatError("config shorter than its header");
    const s = splitStreamByte(u8[1]);
    if (s.temporalId || s.keyframe) throw new MediaFormatError("config with temporal id or keyframe bit");
    let config;
    try { config = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(u8.subarray(3))); }
    catch (e) { throw new MediaFormatError("decoder config is not JSON"); }
    if (config === null || typeof config !== "object" || Array.isArray(config) || typeof config.codec !== "string") {
      throw new MediaFormatError("decoder config must be an object with a codec string");
    }
    return { kind: "config", track: s.track, layer: s.layer, generation: u8[2], config };
  }
  if (kind === KIND_KEYFRAME_REQUEST) {
    if (u8.byteLength !== 3) throw new MediaFormatError("keyframe request must be 3 bytes");
    const s = splitStreamByte(u8[1]);
    if (s.track !== TRACK_VIDEO || s.temporalId || s.keyframe || u8[2]) throw new MediaFormatError("bad keyframe request");
    return { kind: "keyframe-request", layer: s.layer };
  }
  if (kind === KIND_PADDING) return { kind: "padding" };
  if (kind === KIND_FRAGMENT) {
    if (u8.byteLength < 3) throw new MediaFormatError("fragment without a piece");
    if (u8[1] & ~3) throw new MediaFormatError("reserved fragment flag set");
    return { kind: "fragment", first: !!(u8[1] & 1), last: !!(u8[1] & 2), piece: u8.subarray(2) };
  }
  if (kind === KIND_AUDIO_RATE_REQUEST) {
    if (u8.byteLength !== 3 && u8.byteLength !== 6) throw new MediaFormatError("audio rate request must be 3 or 6 bytes");
    if (u8[1] !== 0) throw new MediaFormatError("audio rate request for another stream than voice 0");
    if (u8[2] < AUDIO_RATE_MIN_KBPS) throw new MediaFormatError("audio rate below Opus's minimum");
    if (u8.byteLength === 3) return { kind: "audio-rate-request", kbps: u8[2], frameMs: 20, fecLossPercent: 0 };
    if (!AUDIO_FRAME_MS.includes(u8[3])) throw new MediaFormatError("audio frame duration not 20, 40 or 60 ms");
    if (u8[4] > 100) throw new MediaFormatError("FEC packet loss above 100 %");
    if (u8[5]) throw new MediaFormatError("reserved byte of an audio rate request set");
    return { kind: "audio-rate-request", kbps: u8[2], frameMs: u8[3], fecLossPercent: u8[4] };
  }
  throw new MediaFormatError("unknown kind");
}

export function encodeFragment(first, last, piece) {
  const out = new Uint8Array(2 + piece.byteLength);
  out[0] = KIND_FRAGMENT; out[1] = (first ? 1 : 0) | (last ? 2 : 0);
  out.set(piece, 2);
  return out;
}

// Joins the pieces of fragmented chunks on one ordered link. push(msg) -> whole chunk bytes or null.
export class Reassembler {
  constructor(maxBytes = 1 << 20) { this.parts = null; this.size = 0; this.max = maxBytes; }
  push(m) {
    if (m.first) { this.parts = []; this.size = 0; }
    if (!this.parts) return null;            // the start was lost: drop the rest
    this.parts.push(m.piece.slice()); this.size += m.piece.byteLength;
    if (this.size > this.max) { this.parts = null; throw new MediaFormatError("fragmented chunk too large"); }
    if (!m.last) return null;
    const out = new Uint8Array(this.size);
    let off = 0;
    for (const p of this.parts) { out.set(p, off); off += p.byteLength; }
    this.parts = null;
    return out;
  }
}

export function b64encode(u8) {
  let s = "";
  for (let i = 0; i < u8.length; i++) s += String.fromCharCode(u8[i]);
  return btoa(s);
}

export function b64decode(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
