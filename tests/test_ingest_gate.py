"""The stream-key gate in front of a listening ingest (meshmeet/ingest/push_gate.py): the attacker's
tests first. A pusher without the key, or with bytes an encoder does not send before it, gets
nothing to FFmpeg beyond the handshake and the commands an encoder must send first; never a
publish, a RECORD or a byte of media. Then the same with real FFmpeg (PyAV) on both sides of the
real trio driver (node/ingest_gate.py): the right key's stream is decoded behind the gate, a
wrong key's never opens.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.ingest.push_gate import (MAX_PREAUTH_BYTES, GateRefused, RtmpGate, RtspGate,
                                       valid_key)
from meshmeet.ingest.stream_key import KEY_FILE, stream_key
from meshmeet.ingest.source import SourceError

KEY = "k3y-Of_Th3-Xa"
TOOLS = str(Path(__file__).parent / "ingest_tools.py")


# ----- an RTMP encoder's bytes, built here from the spec (RTMP 1.0 5.3, AMF0 2.x) --------------
def amf_str(s: str) -> bytes:
    b = s.encode()
    return b"\x02" + len(b).to_bytes(2, "big") + b


def amf_num(x: float) -> bytes:
    return b"\x00" + struct.pack(">d", x)


def command(name: str, tid: float, *rest: bytes) -> bytes:
    return amf_str(name) + amf_num(tid) + b"".join(rest)


def message(csid: int, type_id: int, body: bytes, chunk: int, msid: int = 0, ts: int = 0) -> bytes:
    out = bytes([csid]) + ts.to_bytes(3, "big") + len(body).to_bytes(3, "big") + bytes([type_id]) \
        + msid.to_bytes(4, "little") + body[:chunk]
    for i in range(chunk, len(body), chunk):
        out += bytes([0xC0 | csid]) + body[i:i + chunk]
    return out


CONNECT_OBJ = b"\x03" + b"\x00\x03app" + amf_str("live") + b"\x00\x05tcUrl" + amf_str("rtmp://hq:1935/live") + b"\x00\x00\x09"


def encoder_stream(key: str = KEY, chunk: int = 128, media_first: bool = False) -> tuple[bytes, int]:
    """What OBS or FFmpeg sends to publish: handshake, commands, publish, then video. Also where the
    publish message starts (nothing from there on may reach FFmpeg with a wrong key)."""
    out = b"\x03" + os.urandom(1536) + os.urandom(1536)
    if chunk != 128:
        out += message(2, 1, chunk.to_bytes(4, "big"), 128)
    out += message(3, 20, command("connect", 1, CONNECT_OBJ), chunk)
    out += message(3, 20, command("releaseStream", 2, b"\x05", amf_str(key)), chunk)
    out += message(3, 20, command("FCPublish", 3, b"\x05", amf_str(key)), chunk)
    out += message(3, 20, command("createStream", 4, b"\x05"), chunk)
    if media_first:
        out += message(6, 9, b"\x17" + os.urandom(500), chunk, msid=1)
    publish_at = len(out)
    out += message(8, 20, command("publish", 5, b"\x05", amf_str(key), amf_str("live")), chunk, msid=1)
    out += message(6, 9, b"\x17" + os.urandom(9000), chunk, msid=1)
    return out, publish_at


def feed_all(gate, data: bytes, cuts: list[int]) -> tuple[bytes, bool]:
    forwarded, pos = b"", 0
    for cut in sorted(set(c for c in cuts if 0 < c < len(data))) + [len(data)]:
        got = gate.feed(data[pos:cut])
        forwarded += got.forward
        pos = cut
    return forwarded, gate.passed


@pytest.mark.parametrize("chunk", [128, 4096, 16])
def test_the_right_key_passes_and_every_byte_reaches_ffmpeg_unchanged(chunk: int) -> None:
    data, _ = encoder_stream(chunk=chunk)
    forwarded, passed = feed_all(RtmpGate(KEY), data, [1, 1537, 1600, 3100, 3200, 3300])
    assert passed and forwarded == data


@pytest.mark.parametrize("key", ["wrong-key-123", KEY + "x", KEY[:-1], "", KEY.upper()])
def test_a_wrong_key_is_refused_and_its_publish_never_reaches_ffmpeg(key: str) -> None:
    data, publish_at = encoder_stream(key=key)
    gate, forwarded = RtmpGate(KEY), b""
    with pytest.raises(GateRefused, match="stream key|string"):
        for i in range(0, len(data), 100):
            forwarded += gate.feed(data[i:i + 100]).forward
    assert data.startswith(forwarded) and len(forwarded) <= publish_at and not gate.passed


def test_media_or_data_before_the_key_is_refused() -> None:
    data, publish_at = encoder_stream(media_first=True)
    gate = RtmpGate(KEY)
    with pytest.raises(GateRefused, match="type 9"):
        gate.feed(data)
    for type_id in (8, 17, 18, 2, 22):
        pre, _ = encoder_stream()
        hs = pre[:3073]
        with pytest.raises(GateRefused):
            RtmpGate(KEY).feed(hs + message(4, type_id, b"\x00" * 8, 128))


@pytest.mark.parametrize("bad, why", [
    (message(3, 20, command("play", 1, b"\x05", amf_str(KEY)), 128), "play"),
    (message(3, 20, b"\x00" * 40, 128), "string"),
    (message(3, 20, amf_str("publish") + amf_num(5) + amf_str(KEY), 128), "null"),
    (bytes([3]) + b"\xff\xff\xff" + (20).to_bytes(3, "big") + b"\x14" + b"\x00" * 4 + b"\x00" * 4, "extended"),
    (bytes([3]) + b"\x00\x00\x00" + (5000).to_bytes(3, "big") + b"\x14" + b"\x00" * 4, "5000 bytes"),
    (bytes([0xC5]) + b"\x00" * 10, "no message before"),
    (message(2, 1, (8).to_bytes(4, "big"), 128), "chunk size 8"),
])
def test_what_an_encoder_does_not_send_before_its_key_is_refused(bad: bytes, why: str) -> None:
    with pytest.raises(GateRefused, match=why):
        RtmpGate(KEY).feed(b"\x03" + bytes(3072) + bad)


def test_not_rtmp_and_endless_preambles_are_refused() -> None:
    with pytest.raises(GateRefused, match="version"):
        RtmpGate(KEY).feed(b"GET / HTTP/1.1\r\n\r\n")
    gate = RtmpGate(KEY)
    gate.feed(b"\x03" + bytes(3072))
    createstream = message(3, 20, command("createStream", 4, b"\x05"), 128)
    with pytest.raises(GateRefused, match="without the stream key"):
        for _ in range(MAX_PREAUTH_BYTES // len(createstream) + 2):
            gate.feed(createstream)


def test_a_half_received_message_is_held_back_until_it_is_judged() -> None:
    data, publish_at = encoder_stream(key="wrong-key-123")
    gate = RtmpGate(KEY)
    got = gate.feed(data[:publish_at + 10])  # all but the end of the wrong publish
    assert got.forward == data[:publish_at] and not gate.passed
    with pytest.raises(GateRefused):
        gate.feed(data[publish_at + 10:])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 20000), max_size=12), st.sampled_from([16, 128, 1000, 4096]))
def test_any_split_of_an_encoders_bytes_gives_the_same_verdict(cuts: list[int], chunk: int) -> None:
    data, _ = encoder_stream(chunk=chunk)
    forwarded, passed = feed_all(RtmpGate(KEY), data, cuts)
    assert passed and forwarded == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=5))
def test_hostile_bytes_after_a_handshake_only_ever_wait_or_are_refused(junk: bytes, cuts: list[int]) -> None:
    gate, forwarded = RtmpGate(KEY), b""
    data = b"\x03" + bytes(3072) + junk
    try:
        forwarded, passed = feed_all(gate, data, cuts)
    except GateRefused:
        passed = False
    assert not passed or b"publish" in junk  # a key can only come in a publish
    assert data.startswith(forwarded)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_flipped_byte_in_the_commands_never_lets_a_wrong_key_through(data) -> None:
    stream, publish_at = encoder_stream(key="wrong-key-123")
    i = data.draw(st.integers(3073, len(stream) - 1))
    stream = stream[:i] + bytes([data.draw(st.integers(0, 255))]) + stream[i + 1:]
    gate = RtmpGate(KEY)
    try:
        gate.feed(stream)
    except GateRefused:
        pass
    assert not gate.passed


# ----- RTSP ----------------------------------------------------------------------------------
SDP = (b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n"
       b"a=rtpmap:96 H264/90000\r\na=control:streamid=0\r\n")


def rtsp(method: str, uri: str, seq: int, *headers: str, body: bytes = b"") -> bytes:
    head = [f"{method} {uri} RTSP/1.0", f"CSeq: {seq}", *headers]
    if body:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def rtsp_stream(key: str = KEY) -> tuple[bytes, int]:
    base = f"rtsp://127.0.0.1:8554/live/{key}"
    out = rtsp("OPTIONS", base, 1) + rtsp("ANNOUNCE", base, 2, "Content-Type: application/sdp", body=SDP)
    out += rtsp("SETUP", base + "/streamid=0", 3, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record")
    record_at = len(out)
    out += rtsp("RECORD", base, 4, "Range: npt=0.000-", "Session: 1234")
    return out + b"$\x00\x00\x10" + os.urandom(16), record_at


def test_rtsp_with_the_key_in_every_uri_passes_unchanged() -> None:
    data, _ = rtsp_stream()
    forwarded, passed = feed_all(RtspGate(KEY), data, [5, 60, 200, 300])
    assert passed and forwarded == data


@pytest.mark.parametrize("bad, why", [
    (rtsp("ANNOUNCE", "rtsp://h/live/wrong-key-123", 1, body=SDP), "stream key"),
    (rtsp("ANNOUNCE", "rtsp://h/live", 1, body=SDP), "stream key"),
    (rtsp("ANNOUNCE", f"rtsp://h/other/{KEY}", 1, body=SDP), "stream key"),
    (rtsp("RECORD", f"rtsp://h/live/{KEY}/x/y", 1), "stream key"),
    (rtsp("DESCRIBE", f"rtsp://h/live/{KEY}", 1), "not an RTSP request"),
    (rtsp("ANNOUNCE", f"rtsp://h/live/{KEY}", 1, "Content-Length: 99999999"), "Content-Length"),
    (b"$\x00\x00\x04abcd", "interleaved"),
    (b"OPTIONS * RTSP/1.0\r\nX: \x01\r\n\r\n", "control"),
    (b"A" * 9000, "8 KiB"),
])
def test_rtsp_without_the_key_or_odd_requests_are_refused(bad: bytes, why: str) -> None:
    with pytest.raises(GateRefused, match=why):
        RtspGate(KEY).feed(bad)


def test_an_rtsp_request_is_forwarded_only_whole_and_judged() -> None:
    data, record_at = rtsp_stream(key="wrong-key-123")
    gate = RtspGate(KEY)
    assert gate.feed(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n").forward == b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n"
    assert gate.feed(b"ANNOUNCE rtsp://h/live/" + KEY.encode()).forward == b""
    with pytest.raises(GateRefused):
        gate.feed(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=5))
def test_hostile_bytes_at_the_rtsp_gate_only_ever_wait_or_are_refused(junk: bytes, cuts: list[int]) -> None:
    gate = RtspGate(KEY)
    try:
        forwarded, passed = feed_all(gate, junk, cuts)
    except GateRefused:
        forwarded, passed = b"", False
    assert not passed or KEY.encode() in junk
    assert junk.startswith(forwarded)


# ----- the key file ----------------------------------------------------------------------------
def test_the_stream_key_is_made_once_kept_0600_and_a_chairs_key_replaces_it(tmp_path: Path) -> None:
    k1 = stream_key(tmp_path)
    assert valid_key(k1) and stream_key(tmp_path) == k1
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert stream_key(tmp_path, "my-own-key-42") == "my-own-key-42" == stream_key(tmp_path)
    for bad in ("short", "has space in it", "x" * 65, "khoá-bí-mật"):
        with pytest.raises(SourceError, match="8-64"):
            stream_key(tmp_path, bad)
    (tmp_path / KEY_FILE).chmod(0o644)
    with pytest.raises(SourceError, match="readable by others"):
        stream_key(tmp_path)


# ----- real FFmpeg on both sides of the real driver ------------------------------------------
def _ffmpeg_listener(url: str, options: dict, fmt: str, out: dict) -> None:
    import av

    try:
        with av.open(url, format=fmt, options=options, timeout=(30, 10)) as c:
            for packet in c.demux():
                if packet.size:
                    out["packets"] = out.get("packets", 0) + 1
                if out.get("packets", 0) >= 40:
                    break
    except Exception as e:  # noqa: BLE001 - what FFmpeg says is the result
        out["error"] = repr(e)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["rtmp", "rtsp"])
def test_real_ffmpeg_behind_the_gate_gets_the_keyed_push_and_never_a_wrong_one(protocol: str) -> None:
    pytest.importorskip("av")
    from meshmeet.ingest.source import behind_gate, parse_source
    from meshmeet.node.ingest_gate import GateCounters, serve_gate

    def free() -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    port, inner = free(), free()
    src = behind_gate(parse_source(listen=port, protocol=protocol, bind="127.0.0.1"), inner)
    counters = GateCounters()

    def push(key: str) -> subprocess.Popen:
        url = f"{protocol}://127.0.0.1:{port}/live/{key}"
        args = [url, "flv" if protocol == "rtmp" else "rtsp", "4", "320x180"]
        if protocol == "rtsp":
            args.append("rtsp_transport=tcp")
        return subprocess.Popen([sys.executable, TOOLS, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    results: list[dict] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_gate, protocol, "127.0.0.1", port, inner, KEY, counters)
            for key, expect in (("wrong-key-123", False), (KEY, True)):
                got: dict = {}
                t = threading.Thread(target=_ffmpeg_listener, args=(src.url, src.options, src.format, got), daemon=True)
                t.start()
                await trio.sleep(1.0)  # FFmpeg listening
                pusher = push(key)
                await trio.to_thread.run_sync(pusher.wait)
                if not expect:
                    # FFmpeg never opened a stream from it; let the listener give up: connect and leave
                    try:
                        s = await trio.open_tcp_stream("127.0.0.1", inner)
                        await s.aclose()
                    except OSError:
                        pass  # FFmpeg saw the refused pusher's handshake go and stopped listening already
                await trio.to_thread.run_sync(t.join, 40)
                results.append(got)
            nursery.cancel_scope.cancel()

    trio.run(main)
    wrong, right = results
    assert wrong.get("packets", 0) == 0, wrong
    assert counters.refused >= 1 and "stream key" in counters.last_refused, counters
    assert right.get("packets", 0) >= 40, right
    assert counters.accepted == 1, counters
