"""The media wire format: encoded chunks, decoder configs, keyframe and audio rate requests.

Byte-exact description and test vectors: docs/protocol/media.md (a test checks both, and that
static/media/chunk.js agrees). This module only encodes and parses; it must never do I/O, keep
state between calls, or raise anything but MediaFormatError on hostile bytes.

Every media message starts with a kind byte:
  0x01 chunk            14-byte header + codec payload
  0x02 decoder config   3-byte header + UTF-8 JSON object (WebCodecs decoder config)
  0x03 keyframe request 3 bytes
  0x04 padding          link-local probe filler (ignored)
  0x05 fragment         2-byte header + a piece of one video chunk (link-local, see fragments.py)
  0x06 audio rate request 3 bytes: asks the source for a lower Opus bitrate (kbit/s); 6 bytes:
                        also a frame duration and in-band FEC for lossy links (audio encoding request)
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from typing import Any

from meshmeet.errors import MeshmeetError

KIND_CHUNK = 0x01
KIND_CONFIG = 0x02
KIND_KEYFRAME_REQUEST = 0x03
KIND_PADDING = 0x04
KIND_FRAGMENT = 0x05
KIND_AUDIO_RATE_REQUEST = 0x06
UPSTREAM_KINDS = (KIND_KEYFRAME_REQUEST, KIND_AUDIO_RATE_REQUEST)  # travel towards the source
FRAGMENT_FIRST = 0x01
FRAGMENT_LAST = 0x02
FRAGMENT_HEADER_BYTES = 2

TRACK_AUDIO = 0
TRACK_VIDEO = 1

LAYER_HIGH = 0  # 640x360 (and, for audio, voice 0: the floor holder's)
LAYER_LOW = 1  # 320x180
# Audio's layer field names the voice (docs/protocol/media.md, "Voices"): 0 the floor holder, 1 the
# chair, 2 the extra voice the chair allowed. Voices 1 and 2 go only to peers that said "voices/1".
MAX_VOICES = 3

CHUNK_HEADER_BYTES = 14
CONFIG_HEADER_BYTES = 3
KEYFRAME_REQUEST_BYTES = 3
AUDIO_RATE_REQUEST_BYTES = 3
AUDIO_ENCODING_REQUEST_BYTES = 6  # the long form: + frame duration, FEC loss %, reserved
AUDIO_RATE_MIN_KBPS = 6  # Opus's lowest bitrate; a request below it is malformed
AUDIO_FRAME_MS = (20, 40, 60)  # Opus frame durations a source may be asked for (WebCodecs opus.frameDuration)
AUDIO_DEFAULT_FRAME_MS = 20
AUDIO_FEC_MAX_PERCENT = 100  # Opus packetlossperc range 0..100 (0: in-band FEC off)
MAX_MESSAGE_BYTES = 1 << 20  # one encoded frame never comes near 1 MiB
MAX_CONFIG_JSON_BYTES = 8192
MAX_TIMESTAMP_US = (1 << 40) - 1  # ~12.7 days
MAX_DURATION_US = 0xFFFF * 100
MAX_TEMPORAL_ID = 2  # L1T3: temporal ids 0, 1, 2

_SEQ_TS_DUR = struct.Struct(">IIBH")  # seq, timestamp low 32 bits, timestamp high 8 bits, duration/100 µs


class MediaFormatError(MeshmeetError):
    """A media message could not be parsed."""

    def __init__(self, en: str) -> None:
        super().__init__("Gói tin âm thanh/hình ảnh không hợp lệ", en)


@dataclass(frozen=True)
class Chunk:
    """One encoded audio or video frame."""

    track: int
    layer: int
    temporal_id: int
    keyframe: bool
    generation: int  # config generation (u8): which decoder config this chunk needs
    seq: int  # u32, per (track, layer), counts every chunk the encoder produced
    timestamp_us: int  # u40, presentation time from the capture clock
    duration_us: int  # stored in units of 100 µs
    payload: bytes


@dataclass(frozen=True)
class DecoderConfig:
    """A WebCodecs decoder config for one (track, layer) at one generation."""

    track: int
    layer: int
    generation: int
    config: dict[str, Any]  # JSON object; "description" (if any) is base64 text


@dataclass(frozen=True)
class KeyframeRequest:
    """Asks the source (hop by hop) for a keyframe of one video layer."""

    layer: int


@dataclass(frozen=True)
class Padding:
    """Filler a relay sends to probe a link; receivers ignore it."""

    size: int


@dataclass(frozen=True)
class Fragment:
    """A piece of one large video chunk, so that audio can go out between the pieces."""

    first: bool
    last: bool
    piece: bytes


@dataclass(frozen=True)
class AudioRateRequest:
    """Asks the source (hop by hop, merged) for an Opus bitrate of at most `kbps`, frames of at
    least `frame_ms` and in-band FEC tuned for `fec_loss_percent` % loss (0: off).

    The 3-byte form carries `kbps` only (frame 20 ms, FEC off); the 6-byte form all three."""

    kbps: int  # AUDIO_RATE_MIN_KBPS..255 (255: no bitrate limit, the source's own preset)
    frame_ms: int = AUDIO_DEFAULT_FRAME_MS  # one of AUDIO_FRAME_MS
    fec_loss_percent: int = 0  # 0..AUDIO_FEC_MAX_PERCENT


MediaMessage = Chunk | DecoderConfig | KeyframeRequest | Padding | Fragment | AudioRateRequest


def _stream_byte(track: int, layer: int, temporal_id: int, keyframe: bool) -> int:
    if track not in (TRACK_AUDIO, TRACK_VIDEO):
        raise ValueError(f"track {track}")
    if not 0 <= layer < (MAX_VOICES if track == TRACK_AUDIO else LAYER_LOW + 1):
        raise ValueError(f"layer {layer}")
    if not 0 <= temporal_id <= MAX_TEMPORAL_ID:
        raise ValueError(f"temporal id {temporal_id}")
    return (track << 6) | (layer << 4) | (temporal_id << 2) | (int(keyframe) << 1)


def _split_stream_byte(b: int) -> tuple[int, int, int, bool]:
    track, layer, tid = b >> 6, (b >> 4) & 3, (b >> 2) & 3
    if b & 1:
        raise MediaFormatError("reserved stream bit set")
    if track > TRACK_VIDEO:
        raise MediaFormatError(f"unknown track {track}")
    if layer >= (MAX_VOICES if track == TRACK_AUDIO else LAYER_LOW + 1):
        raise MediaFormatError(f"unknown layer {layer}")
    if tid > MAX_TEMPORAL_ID:
        raise MediaFormatError(f"temporal id {tid} out of range")
    if track == TRACK_AUDIO and tid:
        raise MediaFormatError("audio has no temporal ids")
    return track, layer, tid, bool(b & 2)


def encode_chunk(c: Chunk) -> bytes:
    """Header (14 B) + payload. Raises ValueError for fields out of range (a local bug)."""
    if not 0 <= c.generation <= 0xFF or not 0 <= c.seq <= 0xFFFFFFFF:
        raise ValueError("generation or seq out of range")
    if not 0 <= c.timestamp_us <= MAX_TIMESTAMP_US or not 0 <= c.duration_us <= MAX_DURATION_US:
        raise ValueError("timestamp or duration out of range")
    if c.track == TRACK_AUDIO and c.temporal_id:
        raise ValueError("audio has no temporal ids")
    head = bytes((KIND_CHUNK, _stream_byte(c.track, c.layer, c.temporal_id, c.keyframe), c.generation))
    ts = c.timestamp_us
    return head + _SEQ_TS_DUR.pack(c.seq, ts & 0xFFFFFFFF, ts >> 32, round(c.duration_us / 100)) + c.payload


def encode_config(d: DecoderConfig) -> bytes:
    body = json.dumps(d.config, separators=(",", ":"), sort_keys=True).encode()
    if len(body) > MAX_CONFIG_JSON_BYTES:
        raise ValueError("decoder config too large")
    if not 0 <= d.generation <= 0xFF:
        raise ValueError("generation out of range")
    return bytes((KIND_CONFIG, _stream_byte(d.track, d.layer, 0, False), d.generation)) + body


def encode_keyframe_request(r: KeyframeRequest) -> bytes:
    return bytes((KIND_KEYFRAME_REQUEST, _stream_byte(TRACK_VIDEO, r.layer, 0, False), 0))


def encode_audio_rate_request(r: AudioRateRequest) -> bytes:
    """The 3-byte form when frame and FEC are the defaults (20 ms, off), else the 6-byte form."""
    if not AUDIO_RATE_MIN_KBPS <= r.kbps <= 0xFF:
        raise ValueError(f"audio rate {r.kbps} kbit/s")
    if r.frame_ms not in AUDIO_FRAME_MS or not 0 <= r.fec_loss_percent <= AUDIO_FEC_MAX_PERCENT:
        raise ValueError(f"audio frame {r.frame_ms} ms or FEC {r.fec_loss_percent} %")
    head = bytes((KIND_AUDIO_RATE_REQUEST, _stream_byte(TRACK_AUDIO, LAYER_HIGH, 0, False), r.kbps))
    if r.frame_ms == AUDIO_DEFAULT_FRAME_MS and r.fec_loss_percent == 0:
        return head
    return head + bytes((r.frame_ms, r.fec_loss_percent, 0))


def encode_fragment(f: Fragment) -> bytes:
    flags = (FRAGMENT_FIRST if f.first else 0) | (FRAGMENT_LAST if f.last else 0)
    return bytes((KIND_FRAGMENT, flags)) + f.piece


def encode(m: MediaMessage) -> bytes:
    if isinstance(m, Chunk):
        return encode_chunk(m)
    if isinstance(m, DecoderConfig):
        return encode_config(m)
    if isinstance(m, Padding):
        return bytes((KIND_PADDING,)) + bytes(max(0, m.size - 1))
    if isinstance(m, Fragment):
        return encode_fragment(m)
    if isinstance(m, AudioRateRequest):
        return encode_audio_rate_request(m)
    return encode_keyframe_request(m)


def peek_kind(data: bytes) -> int:
    """The kind byte, checked; cheap enough for the relay's hot path."""
    if not data:
        raise MediaFormatError("empty message")
    k = data[0]
    if k not in (KIND_CHUNK, KIND_CONFIG, KIND_KEYFRAME_REQUEST, KIND_PADDING, KIND_FRAGMENT,
                 KIND_AUDIO_RATE_REQUEST):
        raise MediaFormatError(f"unknown kind 0x{k:02x}")
    return k


def parse(data: bytes) -> MediaMessage:
    """Parse one media message. Raises MediaFormatError, never anything else."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise MediaFormatError("message too large")
    kind = peek_kind(data)
    if kind == KIND_CHUNK:
        if len(data) < CHUNK_HEADER_BYTES:
            raise MediaFormatError("chunk shorter than its header")
        track, layer, tid, key = _split_stream_byte(data[1])
        seq, ts_lo, ts_hi, dur = _SEQ_TS_DUR.unpack_from(data, 3)
        return Chunk(track, layer, tid, key, data[2], seq, (ts_hi << 32) | ts_lo, dur * 100,
                     bytes(data[CHUNK_HEADER_BYTES:]))
    if kind == KIND_CONFIG:
        if len(data) < CONFIG_HEADER_BYTES:
            raise MediaFormatError("config shorter than its header")
        track, layer, tid, key = _split_stream_byte(data[1])
        if tid or key:
            raise MediaFormatError("config with temporal id or keyframe bit")
        body = bytes(data[CONFIG_HEADER_BYTES:])
        if len(body) > MAX_CONFIG_JSON_BYTES:
            raise MediaFormatError("decoder config too large")
        try:
            cfg = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise MediaFormatError(f"decoder config is not JSON: {e}") from None
        if not isinstance(cfg, dict) or not isinstance(cfg.get("codec"), str):
            raise MediaFormatError("decoder config must be an object with a codec string")
        desc = cfg.get("description")
        if desc is not None:
            try:
                base64.b64decode(desc, validate=True)
            except (TypeError, ValueError):
                raise MediaFormatError("decoder config description is not base64") from None
        return DecoderConfig(track, layer, data[2], cfg)
    if kind == KIND_PADDING:
        return Padding(len(data))
    if kind == KIND_FRAGMENT:
        if len(data) < FRAGMENT_HEADER_BYTES + 1:
            raise MediaFormatError("fragment without a piece")
        if data[1] & ~(FRAGMENT_FIRST | FRAGMENT_LAST):
            raise MediaFormatError("reserved fragment flag set")
        return Fragment(bool(data[1] & FRAGMENT_FIRST), bool(data[1] & FRAGMENT_LAST), bytes(data[2:]))
    if kind == KIND_AUDIO_RATE_REQUEST:
        return _parse_audio_rate_request(data)
    if len(data) != KEYFRAME_REQUEST_BYTES:
        raise MediaFormatError("keyframe request must be 3 bytes")
    track, layer, tid, key = _split_stream_byte(data[1])
    if track != TRACK_VIDEO or tid or key or data[2]:
        raise MediaFormatError("keyframe request for a non-video stream")
    return KeyframeRequest(layer)


def _parse_audio_rate_request(data: bytes) -> AudioRateRequest:
    if len(data) not in (AUDIO_RATE_REQUEST_BYTES, AUDIO_ENCODING_REQUEST_BYTES):
        raise MediaFormatError("audio rate request must be 3 or 6 bytes")
    if data[1] != 0x00:
        raise MediaFormatError("audio rate request for another stream than voice 0")
    if data[2] < AUDIO_RATE_MIN_KBPS:
        raise MediaFormatError(f"audio rate {data[2]} kbit/s below Opus's minimum")
    if len(data) == AUDIO_RATE_REQUEST_BYTES:
        return AudioRateRequest(data[2])
    if data[3] not in AUDIO_FRAME_MS:
        raise MediaFormatError(f"audio frame duration {data[3]} ms (20, 40 or 60)")
    if data[4] > AUDIO_FEC_MAX_PERCENT:
        raise MediaFormatError(f"FEC packet loss {data[4]} % above 100")
    if data[5]:
        raise MediaFormatError("reserved byte of an audio rate request set")
    return AudioRateRequest(data[2], data[3], data[4])


@dataclass(frozen=True)
class ChunkInfo:
    """The header fields the relay needs, read without copying the payload."""

    track: int
    layer: int
    temporal_id: int
    keyframe: bool
    generation: int
    seq: int


def peek_chunk(data: bytes) -> ChunkInfo:
    """Header of a chunk (kind 0x01) without copying its payload. MediaFormatError on bad bytes."""
    if len(data) < CHUNK_HEADER_BYTES or data[0] != KIND_CHUNK:
        raise MediaFormatError("not a chunk")
    if len(data) > MAX_MESSAGE_BYTES:
        raise MediaFormatError("message too large")
    track, layer, tid, key = _split_stream_byte(data[1])
    return ChunkInfo(track, layer, tid, key, data[2], int.from_bytes(data[3:7], "big"))
