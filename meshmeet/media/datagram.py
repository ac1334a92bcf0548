"""Media datagrams (sans-IO): the key offer sent over the link, sealing and opening, the replay window.

Live media between two nodes may travel as UDP datagrams instead of on the TCP link (no
head-of-line blocking on loss). Each side of an established link sends the other, over that
link, an *offer*: the channel id the peer must put on datagrams to it, its UDP port, and a fresh
random key for its own send direction. Datagram keys are thus bound to the link handshake and
the roster (no second trust system) and new for every link. A datagram is

    channel (u16 BE) || counter (u32 BE) || ChaCha20-Poly1305(key, nonce = 8 zero bytes || counter,
                                                          aad = the 6 header bytes,
                                                          type (u8) || send time (u32 BE, µs) || body)

docs/protocol/media.md ("Datagrams") has the layouts and test vectors. This module must never do
I/O, read a clock, keep per-link state beyond one key's replay window, or raise anything but
DatagramError for bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

OFFER_VERSION = 1
OFFER_BYTES = 1 + 2 + 2 + 32
KEY_BYTES = 32
HEADER_BYTES = 6  # channel u16 + counter u32
TAG_BYTES = 16
INNER_HEADER_BYTES = 5  # type u8 + send time u32
OVERHEAD_BYTES = HEADER_BYTES + TAG_BYTES + INNER_HEADER_BYTES  # 27 B on every datagram
MAX_DATAGRAM_BYTES = 1200  # MTU-safe on any path (QUIC's minimum; IPv6's 1280 less headers)
MAX_BODY_BYTES = MAX_DATAGRAM_BYTES - OVERHEAD_BYTES
MAX_COUNTER = 0xFFFFFFFF  # a key sends at most this many datagrams (then the link falls back to TCP)
REPLAY_WINDOW_PACKETS = 1024
TIME_MODULUS = 1 << 32

# datagram types (first byte of the plaintext)
T_MEDIA = 0x01  # one media message, whole
T_AUDIO = 0x02  # an audio chunk with up to N earlier ones (redundancy)
T_VIDEO = 0x03  # a piece of one video chunk
T_PROBE = 0x04  # reachability; answered with a probe ack
T_PROBE_ACK = 0x05
T_REPORT = 0x06  # receiver report (feedback)
T_NACK = 0x07  # video pieces to send again
TYPES = frozenset({T_MEDIA, T_AUDIO, T_VIDEO, T_PROBE, T_PROBE_ACK, T_REPORT, T_NACK})

_HEADER = struct.Struct(">HI")
_INNER = struct.Struct(">BI")


class DatagramError(ValueError):
    """A datagram or offer that is malformed, forged, or replayed: drop it and count `reason`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason  # "malformed" | "auth" | "replay" | "exhausted"


@dataclass(frozen=True)
class Offer:
    """Sent over the link: label datagrams to me `channel`, send them to my `port`; mine are sealed with `key`."""

    channel: int
    port: int
    key: bytes


def encode_offer(offer: Offer) -> bytes:
    if len(offer.key) != KEY_BYTES or not 0 <= offer.channel <= 0xFFFF or not 0 < offer.port <= 0xFFFF:
        raise ValueError("bad offer")
    return struct.pack(">BHH", OFFER_VERSION, offer.channel, offer.port) + offer.key


def parse_offer(data: bytes) -> Offer:
    if len(data) != OFFER_BYTES:
        raise DatagramError("malformed", f"offer of {len(data)} B")
    version, channel, port = struct.unpack_from(">BHH", data)
    if version != OFFER_VERSION:
        raise DatagramError("malformed", f"offer version {version}")
    if port == 0:
        raise DatagramError("malformed", "offer port 0")
    return Offer(channel, port, bytes(data[5:]))


def peek_channel(data: bytes) -> int:
    """The channel id of a datagram (unauthenticated: only to find the key)."""
    if len(data) < HEADER_BYTES + TAG_BYTES + INNER_HEADER_BYTES:
        raise DatagramError("malformed", f"datagram of {len(data)} B")
    return _HEADER.unpack_from(data)[0]


def _nonce(counter: int) -> bytes:
    return bytes(8) + counter.to_bytes(4, "big")


@dataclass(frozen=True)
class Opened:
    counter: int
    type: int
    send_time_us: int
    body: bytes


class Sealer:
    """One send direction: key, the peer's channel id, the next counter (never reused with this key)."""

    def __init__(self, key: bytes, channel: int, counter: int = 0) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.channel = channel
        self.counter = counter

    def seal(self, type_: int, send_time_us: int, body: bytes) -> bytes:
        if self.counter > MAX_COUNTER:
            raise DatagramError("exhausted", "the key's counter space is used up")
        header = _HEADER.pack(self.channel, self.counter)
        inner = _INNER.pack(type_, send_time_us % TIME_MODULUS) + body
        out = header + self._aead.encrypt(_nonce(self.counter), inner, header)
        self.counter += 1
        return out


class ReplayWindow:
    """Which of the last REPLAY_WINDOW_PACKETS counters were seen (RFC 6479's idea, one int bitmap)."""

    def __init__(self, size: int = REPLAY_WINDOW_PACKETS) -> None:
        self.size = size
        self.top = -1  # highest counter accepted
        self._bits = 0  # bit i: counter top - i was accepted

    def check(self, counter: int) -> bool:
        """True if `counter` is new and inside the window (does not record it)."""
        if counter > self.top:
            return True
        back = self.top - counter
        return back < self.size and not (self._bits >> back) & 1

    def accept(self, counter: int) -> None:
        if counter > self.top:
            shift = counter - self.top
            self._bits = ((self._bits << shift) | 1) & ((1 << self.size) - 1) if shift < self.size else 1
            self.top = counter
        else:
            self._bits |= 1 << (self.top - counter)


class Opener:
    """One receive direction: the peer's key and its replay window."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.window = ReplayWindow()

    def open(self, data: bytes) -> Opened:
        channel = peek_channel(data)
        del channel
        counter = _HEADER.unpack_from(data)[1]
        if not self.window.check(counter):
            raise DatagramError("replay", f"counter {counter}")
        header = bytes(data[:HEADER_BYTES])
        try:
            inner = self._aead.decrypt(_nonce(counter), bytes(data[HEADER_BYTES:]), header)
        except InvalidTag:
            raise DatagramError("auth", "tag does not verify") from None
        self.window.accept(counter)  # only after the tag verified: forgeries cannot move the window
        type_, send_time = _INNER.unpack_from(inner)
        if type_ not in TYPES:
            raise DatagramError("malformed", f"type 0x{type_:02x}")
        return Opened(counter, type_, send_time, inner[INNER_HEADER_BYTES:])
