"""Chunk format: round trips, the documented test vectors, hostile bytes, and JS agreement."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.media import chunk as C
from conftest import doc_json_blocks

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "meshmeet" / "web" / "static" / "media" / "chunk.js"


def doc_vectors() -> list[dict]:
    """The JSON test vectors in docs/protocol/media.md (fenced ```json vectors blocks)."""
    return [v for block in doc_json_blocks("protocol/media.md", "vectors") for v in block]


def message_of(v: dict) -> C.MediaMessage:
    if v["kind"] == "chunk":
        return C.Chunk(v["track"], v["layer"], v["temporal_id"], v["keyframe"], v["generation"], v["seq"],
                       v["timestamp_us"], v["duration_us"], bytes.fromhex(v["payload_hex"]))
    if v["kind"] == "config":
        return C.DecoderConfig(v["track"], v["layer"], v["generation"], v["config"])
    if v["kind"] == "fragment":
        return C.Fragment(v["first"], v["last"], bytes.fromhex(v["piece_hex"]))
    if v["kind"] == "audio-rate-request":
        return C.AudioRateRequest(v["kbps"], v.get("frame_ms", 20), v.get("fec_loss_percent", 0))
    return C.KeyframeRequest(v["layer"])


def test_doc_vectors_match_python() -> None:
    vs = doc_vectors()
    assert len(vs) >= 4
    for v in vs:
        m = message_of(v)
        assert C.encode(m).hex() == v["hex"], v["name"]
        assert C.parse(bytes.fromhex(v["hex"])) == m


def test_chunk_header_is_14_bytes() -> None:
    c = C.Chunk(C.TRACK_AUDIO, 0, 0, True, 7, 1, 20000, 20000, b"opus")
    assert len(C.encode(c)) == 14 + 4


chunks = st.builds(
    C.Chunk,
    track=st.just(C.TRACK_VIDEO), layer=st.sampled_from([0, 1]), temporal_id=st.integers(0, 2),
    keyframe=st.booleans(), generation=st.integers(0, 255), seq=st.integers(0, 2**32 - 1),
    timestamp_us=st.integers(0, C.MAX_TIMESTAMP_US), duration_us=st.integers(0, 0xFFFF).map(lambda d: d * 100),
    payload=st.binary(max_size=64),
) | st.builds(
    C.Chunk, track=st.just(C.TRACK_AUDIO), layer=st.integers(0, C.MAX_VOICES - 1), temporal_id=st.just(0), keyframe=st.booleans(),
    generation=st.integers(0, 255), seq=st.integers(0, 2**32 - 1), timestamp_us=st.integers(0, C.MAX_TIMESTAMP_US),
    duration_us=st.integers(0, 0xFFFF).map(lambda d: d * 100), payload=st.binary(max_size=64))


@settings(max_examples=300)
@given(chunks)
def test_chunk_round_trip(c: C.Chunk) -> None:
    data = C.encode(c)
    assert C.parse(data) == c
    info = C.peek_chunk(data)
    assert (info.track, info.layer, info.temporal_id, info.keyframe, info.seq) == (c.track, c.layer, c.temporal_id, c.keyframe, c.seq)


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from(["codedWidth", "sampleRate", "x"]), st.integers(0, 10**6)),
       st.sampled_from([0, 1]), st.integers(0, 255))
def test_config_round_trip(extra: dict, layer: int, gen: int) -> None:
    cfg = {"codec": "vp8", **extra, "description": "AAEC"}
    d = C.DecoderConfig(C.TRACK_VIDEO, layer, gen, cfg)
    assert C.parse(C.encode(d)) == d


@settings(max_examples=1000)
@given(st.binary(max_size=80))
def test_hostile_bytes_give_media_format_error(data: bytes) -> None:
    try:
        m = C.parse(data)
    except C.MediaFormatError:
        return
    assert C.parse(C.encode(m)) == m  # anything accepted means what it says


@settings(max_examples=300)
@given(st.sampled_from([0x01, 0x02, 0x03, 0x06]), st.binary(max_size=40))
def test_hostile_bytes_with_valid_kind(kind: int, rest: bytes) -> None:
    try:
        C.parse(bytes([kind]) + rest)
    except C.MediaFormatError:
        pass
    try:
        C.peek_chunk(bytes([kind]) + rest)
    except C.MediaFormatError:
        pass


def test_bad_config_json_is_a_format_error() -> None:
    for body in (b"\xff", b"[1]", b'{"codec": 1}', b"{" * 5000, b'{"codec":"vp8","description":"!!"}'):
        with pytest.raises(C.MediaFormatError):
            C.parse(b"\x02\x40\x00" + body)


def test_js_codec_agrees_with_vectors(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot run the JS chunk codec")
    mod = tmp_path / "chunk.mjs"
    mod.write_text(JS.read_text())
    vec = tmp_path / "vectors.json"
    vec.write_text(json.dumps(doc_vectors()))
    script = tmp_path / "check.mjs"
    script.write_text(
        "import * as C from './chunk.mjs';\n"
        "import fs from 'fs';\n"
        "const vs = JSON.parse(fs.readFileSync('./vectors.json', 'utf8'));\n"
        "const hex = (u) => Buffer.from(u).toString('hex');\n"
        "const out = [];\n"
        "for (const v of vs) {\n"
        "  const bytes = new Uint8Array(Buffer.from(v.hex, 'hex'));\n"
        "  const m = C.parseMessage(bytes);\n"
        "  let enc;\n"
        "  if (v.kind === 'chunk') enc = C.encodeChunk({track: v.track, layer: v.layer, temporalId: v.temporal_id,\n"
        "      keyframe: v.keyframe, generation: v.generation, seq: v.seq, timestampUs: v.timestamp_us,\n"
        "      durationUs: v.duration_us, payload: new Uint8Array(Buffer.from(v.payload_hex, 'hex'))});\n"
        "  else if (v.kind === 'config') enc = C.encodeConfig(v.track, v.layer, v.generation, v.config);\n"
        "  else if (v.kind === 'audio-rate-request') enc = C.encodeAudioRateRequest(v.kbps, v.frame_ms, v.fec_loss_percent);\n"
        "  else if (v.kind === 'fragment') enc = C.encodeFragment(v.first, v.last, new Uint8Array(Buffer.from(v.piece_hex, 'hex')));\n"
        "  else enc = C.encodeKeyframeRequest(v.layer);\n"
        "  out.push({name: v.name, enc: hex(enc), parsed: {...m, payload: m.payload ? hex(m.payload) : undefined, piece: m.piece ? hex(m.piece) : undefined}});\n"
        "}\n"
        "let bad = 0; for (const b of [[], [9], [1,2,3], [3,0x50], [1,0xff,0,0,0,0,0,0,0,0,0,0,0,0], [5,1], [5,4,1], [6,0], [6,0,5], [6,0x40,16], [6,2,16], [6,0,16,0], [6,0,16,30,0,0], [6,0,16,60,101,0], [6,0,16,60,5,1], [6,0,5,60,5,0]]) {\n"
        "  try { C.parseMessage(new Uint8Array(b)); } catch (e) { if (e instanceof C.MediaFormatError) bad++; }\n"
        "}\n"
        "console.log(JSON.stringify({out, bad}));\n")
    res = subprocess.run([node, str(script)], cwd=tmp_path, capture_output=True, text=True, check=True)
    got = json.loads(res.stdout)
    assert got["bad"] == 16
    for v, o in zip(doc_vectors(), got["out"]):
        assert o["enc"] == v["hex"], v["name"]
        p = o["parsed"]
        if v["kind"] == "chunk":
            assert (p["track"], p["layer"], p["temporalId"], p["keyframe"], p["generation"], p["seq"],
                    p["timestampUs"], p["durationUs"], p["payload"]) == (
                v["track"], v["layer"], v["temporal_id"], v["keyframe"], v["generation"], v["seq"],
                v["timestamp_us"], v["duration_us"], v["payload_hex"]), v["name"]
        elif v["kind"] == "fragment":
            assert (p["first"], p["last"], p["piece"]) == (v["first"], v["last"], v["piece_hex"])
        elif v["kind"] == "audio-rate-request":
            assert (p["kbps"], p["frameMs"], p["fecLossPercent"]) == (
                v["kbps"], v.get("frame_ms", 20), v.get("fec_loss_percent", 0)), v["name"]
        elif v["kind"] == "config":
            assert (p["track"], p["layer"], p["generation"], p["config"]) == (v["track"], v["layer"], v["generation"], v["config"])
        else:
            assert p["layer"] == v["layer"]
