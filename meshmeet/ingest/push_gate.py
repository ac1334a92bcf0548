"""The stream-key check in front of a listening ingest: who may push the conference every hall sees.

FFmpeg's RTMP and RTSP listen modes take any pusher and any stream key. So the public port is
ours: node/ingest_gate.py accepts the encoder's connection, feeds what the encoder sends to a gate
here, forwards only what the gate approved to FFmpeg listening on loopback, and once the gate has
seen the right key, gets out of the way (bytes pass untouched both ways).

`RtmpGate`: the RTMP handshake (C0 = 3, C1, C2: 3,073 bytes) passes; then the client's chunk
stream (RTMP 1.0, section 5.3) is parsed message by message. Before a `publish` command only small
control messages (set chunk size, acknowledgement, user control, window size) and the AMF0
commands an encoder sends first (connect, releaseStream, FCPublish, createStream, _checkbw) pass;
`publish` passes only with the stream key as its name, and everything after it passes unparsed.
Media, data, AMF3 and abort messages, extended timestamps, messages over 4 KiB, an unknown command
or a wrong key before that: refused. Bytes are forwarded only where no message is half received,
so FFmpeg never holds part of a message the gate has not judged.

`RtspGate`: RTSP/1.0 requests (OPTIONS, ANNOUNCE, SETUP, RECORD), each judged whole (headers
≤ 8 KiB, body by Content-Length ≤ 16 KiB) before it is forwarded: the URI's path must be
/live/KEY (a SETUP may add one segment); OPTIONS may name `*`. After RECORD with the key:
passes. Interleaved data (`$`) before that: refused.

Either gate refuses anything after 64 KiB without the key. Pure: bytes in, bytes out; this module
must never do I/O, and never hand on a byte it has not judged before it says `passed`.
"""

from __future__ import annotations

import hmac
import re
import struct
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_PREAUTH_BYTES = 65536       # what an encoder may send before its key is seen
MAX_MESSAGE_BYTES = 4096        # an RTMP message before the key (a connect is ~300 B)
MAX_RTSP_HEAD_BYTES = 8192
MAX_RTSP_BODY_BYTES = 16384     # an ANNOUNCE's SDP
MIN_CHUNK_SIZE, MAX_CHUNK_SIZE = 16, 65536
RTMP_HANDSHAKE_BYTES = 1 + 1536 + 1536
KEY_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
LIVE_APP = "live"

# RTMP message types (RTMP 1.0, 5.4 and 7.1)
SET_CHUNK_SIZE, ABORT, ACK, USER_CONTROL, WINDOW_ACK_SIZE, PEER_BANDWIDTH = 1, 2, 3, 4, 5, 6
AMF0_COMMAND = 20
CONTROL_TYPES = frozenset({SET_CHUNK_SIZE, ACK, USER_CONTROL, WINDOW_ACK_SIZE, PEER_BANDWIDTH})
PRE_PUBLISH_COMMANDS = frozenset({"connect", "releaseStream", "FCPublish", "createStream", "_checkbw"})
RTSP_METHODS = frozenset({"OPTIONS", "ANNOUNCE", "SETUP", "RECORD"})


class GateRefused(Exception):
    """The encoder's bytes were refused; the message says why (for the log)."""


@dataclass
class GateResult:
    forward: bytes = b""   # judged bytes to hand to FFmpeg now
    passed: bool = False   # the key was right: from now on bytes pass unparsed


def valid_key(key: str) -> bool:
    return bool(KEY_RE.match(key))


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


class _Gate:
    def __init__(self, key: str) -> None:
        if not valid_key(key):
            raise ValueError("a stream key is 8-64 characters of A-Z a-z 0-9 _ -")
        self.key = key
        self.passed = False
        self._buf = bytearray()   # received, not yet forwarded
        self._seen = 0            # bytes received in all

    def feed(self, data: bytes) -> GateResult:
        if self.passed or not data:
            return GateResult(bytes(data), self.passed)
        self._seen += len(data)
        self._buf += data
        cut = self._judge()       # bytes of _buf now judged and forwardable (all of it once passed)
        out = bytes(self._buf[:cut])
        del self._buf[:cut]
        if not self.passed and self._seen > MAX_PREAUTH_BYTES:
            raise GateRefused(f"{self._seen} bytes without the stream key")
        return GateResult(out, self.passed)

    def _judge(self) -> int:
        raise NotImplementedError


@dataclass
class _Stream:
    """What the chunk stream remembers per chunk stream id (RTMP 1.0, 5.3.1.2)."""

    length: int = 0
    type_id: int = 0
    body: bytearray = field(default_factory=bytearray)


class RtmpGate(_Gate):
    """See the module docstring."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self._pos = 0                    # parse position in _buf (bytes before it are judged)
        self._handshake_left = RTMP_HANDSHAKE_BYTES
        self._chunk_size = 128
        self._streams: dict[int, _Stream] = {}

    def _judge(self) -> int:
        if self._handshake_left:
            if self._handshake_left == RTMP_HANDSHAKE_BYTES and self._buf[0] != 3:
                raise GateRefused(f"RTMP version {self._buf[0]}, not 3")
            n = min(len(self._buf), self._handshake_left)  # FFmpeg reads C0 C1, answers, reads C2
            self._handshake_left -= n
            self._pos = n
        forwardable = self._pos if not any(s.body for s in self._streams.values()) else 0
        while not self.passed:
            start = self._pos
            if not self._chunk():
                self._pos = start
                break
            if not any(s.body for s in self._streams.values()):
                forwardable = self._pos  # no message half received: FFmpeg may have all of it
        if self.passed:
            return len(self._buf)
        self._pos -= forwardable         # the caller drops the forwarded bytes from _buf
        return forwardable

    def _take(self, n: int) -> bytes | None:
        if len(self._buf) - self._pos < n:
            return None
        out = bytes(self._buf[self._pos:self._pos + n])
        self._pos += n
        return out

    def _chunk(self) -> bool:
        """Parse one chunk at _pos; False: not all of it is here yet."""
        b = self._take(1)
        if b is None:
            return False
        fmt, csid = b[0] >> 6, b[0] & 0x3F
        if csid in (0, 1):
            ext = self._take(1 if csid == 0 else 2)
            if ext is None:
                return False
            csid = 64 + ext[0] + (ext[1] * 256 if csid == 1 else 0)
        head = self._take((11, 7, 3, 0)[fmt])
        if head is None:
            return False
        st = self._streams.get(csid)
        if fmt == 0:
            st = self._streams.setdefault(csid, _Stream())
            if st.body:
                raise GateRefused(f"a new message on chunk stream {csid} before the last one ended")
        elif st is None:
            raise GateRefused(f"chunk type {fmt} on chunk stream {csid} with no message before it")
        if fmt in (0, 1, 2) and head[:3] == b"\xff\xff\xff":
            raise GateRefused("an extended timestamp before the stream key")
        if fmt in (0, 1):
            if st.body:
                raise GateRefused(f"a new message header on chunk stream {csid} mid-message")
            st.length = int.from_bytes(head[3:6], "big")
            st.type_id = head[6]
            if not 0 < st.length <= MAX_MESSAGE_BYTES:
                raise GateRefused(f"an RTMP message of {st.length} bytes before the stream key")
        payload = self._take(min(self._chunk_size, st.length - len(st.body)))
        if payload is None:
            return False
        st.body += payload
        if len(st.body) == st.length:
            body = bytes(st.body)
            st.body.clear()
            self._message(st.type_id, body)
        return True

    def _message(self, type_id: int, body: bytes) -> None:
        if type_id == SET_CHUNK_SIZE:
            if len(body) != 4:
                raise GateRefused("a set chunk size message that is not 4 bytes")
            size = struct.unpack(">I", body)[0]
            if not MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE:
                raise GateRefused(f"chunk size {size}")
            self._chunk_size = size
        elif type_id == AMF0_COMMAND:
            self._command(body)
        elif type_id not in CONTROL_TYPES:
            raise GateRefused(f"RTMP message type {type_id} before the stream key")

    def _command(self, body: bytes) -> None:
        amf = _Amf0(body)
        name = amf.string()
        if name in PRE_PUBLISH_COMMANDS:
            return
        if name != "publish":
            raise GateRefused(f"RTMP command {name[:40]!r} before the stream key")
        amf.number()      # transaction id
        amf.null()        # command object
        stream = amf.string()
        if not _same(stream, self.key):
            raise GateRefused("publish with a wrong stream key")
        self.passed = True


class _Amf0:
    """The three AMF0 values a publish command starts with (AMF0 spec, 2.2, 2.4, 2.7)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def _marker(self, want: int, what: str) -> None:
        if self.pos >= len(self.data) or self.data[self.pos] != want:
            raise GateRefused(f"an RTMP command without its {what}")
        self.pos += 1

    def string(self) -> str:
        self._marker(0x02, "string")
        if self.pos + 2 > len(self.data):
            raise GateRefused("a cut AMF0 string")
        n = int.from_bytes(self.data[self.pos:self.pos + 2], "big")
        raw = self.data[self.pos + 2:self.pos + 2 + n]
        if len(raw) != n:
            raise GateRefused("a cut AMF0 string")
        self.pos += 2 + n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GateRefused("an AMF0 string that is not UTF-8") from None

    def number(self) -> float:
        self._marker(0x00, "transaction id")
        if self.pos + 8 > len(self.data):
            raise GateRefused("a cut AMF0 number")
        self.pos += 8
        return struct.unpack(">d", self.data[self.pos - 8:self.pos])[0]

    def null(self) -> None:
        self._marker(0x05, "null command object")


class RtspGate(_Gate):
    """See the module docstring."""

    def _judge(self) -> int:
        buf, pos = self._buf, 0
        while not self.passed and pos < len(buf):
            if buf[pos:pos + 1] == b"$":
                raise GateRefused("interleaved RTSP data before the stream key")
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                if len(buf) - pos > MAX_RTSP_HEAD_BYTES:
                    raise GateRefused("an RTSP request head over 8 KiB")
                break
            if end + 4 - pos > MAX_RTSP_HEAD_BYTES:
                raise GateRefused("an RTSP request head over 8 KiB")
            method, length = self._request(bytes(buf[pos:end]))
            if len(buf) < end + 4 + length:
                break
            pos = end + 4 + length
            if method == "RECORD":
                self.passed = True
        return len(buf) if self.passed else pos

    def _request(self, head: bytes) -> tuple[str, int]:
        try:
            text = head.decode("ascii")
        except UnicodeDecodeError:
            raise GateRefused("an RTSP request that is not ASCII") from None
        lines = text.split("\r\n")
        if any(ch < " " and ch != "\t" or ch == "\x7f" for line in lines for ch in line):
            raise GateRefused("control characters in an RTSP request")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[2] != "RTSP/1.0" or parts[0] not in RTSP_METHODS:
            raise GateRefused(f"not an RTSP request an encoder sends: {lines[0][:60]!r}")
        method, uri = parts[0], parts[1]
        if not (method == "OPTIONS" and uri == "*"):
            self._check_uri(uri, method)
        length = 0
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise GateRefused("an RTSP header line without a colon")
            if name.strip().lower() == "content-length":
                value = value.strip()
                if not value.isdigit() or int(value) > MAX_RTSP_BODY_BYTES:
                    raise GateRefused(f"RTSP Content-Length {value[:20]!r}")
                length = int(value)
        return method, length

    def _check_uri(self, uri: str, method: str) -> None:
        try:
            parts = urlsplit(uri)
        except ValueError:
            raise GateRefused("an RTSP URI that does not parse") from None
        segs = parts.path.split("/")[1:]
        extra = 1 if method == "SETUP" else 0
        if parts.scheme != "rtsp" or not 2 <= len(segs) <= 2 + extra or segs[0] != LIVE_APP \
                or not _same(segs[1], self.key):
            raise GateRefused(f"an RTSP {method} without the stream key in its path")
