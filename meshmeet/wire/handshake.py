"""The link handshake: three fixed-size messages, mutual Ed25519 authentication, session keys.

msg1 I->R (37 B): version | commune tag (2) | I's short id (u16 BE) | I's ephemeral X25519 pk (32)
msg2 R->I (98 B): R's short id (u16 BE) | R's ephemeral pk (32) | sig_R (64)
msg3 I->R (64 B): sig_I
sig_R signs LABEL_R + commune id + msg1 + msg2[:34]; sig_I signs LABEL_I + commune id + msg1 + msg2.
Keys: crypto_kx over the ephemerals (I is the client), each direction's kx key then keyed into
BLAKE2b-256 over LABEL_KEY + commune id + msg1 + msg2[:34]. See docs/protocol/link.md.

These are plain objects fed whole messages; they must never read a clock, do I/O, or raise
anything but HandshakeError for bad input.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

from nacl.bindings import (
    crypto_kx_client_session_keys,
    crypto_kx_server_session_keys,
    crypto_scalarmult_base,
)
from nacl.exceptions import CryptoError
from nacl.utils import random as random_bytes

from ..membership.identity import COMMUNE_ID_BYTES, KeyPair, node_id_of, verify
from .events import CloseCode, Peer

VERSION = 0x01
COMMUNE_TAG_BYTES = 2
EPHEMERAL_BYTES = 32
SIGNATURE_BYTES = 64
MSG1_BYTES = 1 + COMMUNE_TAG_BYTES + 2 + EPHEMERAL_BYTES  # 37
MSG2_SIGNED_BYTES = 2 + EPHEMERAL_BYTES  # 34: the part of msg2 that precedes sig_R
MSG2_BYTES = MSG2_SIGNED_BYTES + SIGNATURE_BYTES  # 98
MSG3_BYTES = SIGNATURE_BYTES  # 64
SETUP_BYTES = MSG1_BYTES + MSG2_BYTES + MSG3_BYTES  # 199
LABEL_R = b"meshmeet/link/1 R"
LABEL_I = b"meshmeet/link/1 I"
LABEL_KEY = b"meshmeet/link/1 key"
SESSION_KEY_BYTES = 32

Lookup = Callable[[int], "bytes | None"]


class HandshakeError(Exception):
    """The handshake is refused; the link must close with `code` (no close frame is possible)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class SessionKeys:
    send_key: bytes
    recv_key: bytes


@dataclass(frozen=True)
class HandshakeResult:
    peer: Peer
    keys: SessionKeys


def transcript_r(commune_id: bytes, msg1: bytes, msg2_signed: bytes) -> bytes:
    return LABEL_R + commune_id + msg1 + msg2_signed


def transcript_i(commune_id: bytes, msg1: bytes, msg2: bytes) -> bytes:
    return LABEL_I + commune_id + msg1 + msg2


def direction_key(kx_key: bytes, commune_id: bytes, msg1: bytes, msg2_signed: bytes) -> bytes:
    """BLAKE2b-256 keyed by one crypto_kx key over the handshake transcript."""
    data = LABEL_KEY + commune_id + msg1 + msg2_signed
    return hashlib.blake2b(data, digest_size=SESSION_KEY_BYTES, key=kx_key).digest()


def _ephemeral(secret: bytes | None) -> tuple[bytes, bytes]:
    sk = random_bytes(EPHEMERAL_BYTES) if secret is None else secret
    if len(sk) != EPHEMERAL_BYTES:
        raise ValueError("ephemeral secret must be 32 bytes")
    return crypto_scalarmult_base(sk), sk


def _check_params(my_short_id: int, commune_id: bytes) -> None:
    if not 0 <= my_short_id <= 0xFFFF:
        raise ValueError("short id must fit in a uint16")
    if len(commune_id) != COMMUNE_ID_BYTES:
        raise ValueError(f"commune id must be {COMMUNE_ID_BYTES} bytes")


def _member(lookup: Lookup, short_id: int, my_short_id: int) -> Peer:
    if short_id == my_short_id:
        raise HandshakeError(CloseCode.UNEXPECTED_PEER, "link to self")
    public_key = lookup(short_id)
    if public_key is None:
        raise HandshakeError(CloseCode.NOT_ON_ROSTER, "not on roster")
    return Peer(short_id=short_id, public_key=bytes(public_key), node_id=node_id_of(bytes(public_key)))


class InitiatorHandshake:
    """The dialing side: msg1 out, msg2 in, msg3 out."""

    def __init__(
        self,
        *,
        me: KeyPair,
        my_short_id: int,
        commune_id: bytes,
        lookup: Lookup,
        ephemeral_secret: bytes | None = None,
        expected_peer: int | None = None,
    ) -> None:
        _check_params(my_short_id, commune_id)
        self._me = me
        self._commune_id = bytes(commune_id)
        self._lookup = lookup
        self._expected_peer = expected_peer
        self._eph_pk, self._eph_sk = _ephemeral(ephemeral_secret)
        self.msg1 = (
            bytes((VERSION,)) + self._commune_id[:COMMUNE_TAG_BYTES] + my_short_id.to_bytes(2, "big") + self._eph_pk
        )
        self._my_short_id = my_short_id

    def on_msg2(self, msg2: bytes) -> tuple[bytes, HandshakeResult]:
        """Check msg2; return msg3 and the authenticated peer with session keys."""
        if len(msg2) != MSG2_BYTES:
            raise HandshakeError(CloseCode.PROTOCOL_ERROR, "truncated handshake")
        short_id = int.from_bytes(msg2[:2], "big")
        if self._expected_peer is not None and short_id != self._expected_peer:
            raise HandshakeError(CloseCode.UNEXPECTED_PEER, "unexpected peer")
        peer = _member(self._lookup, short_id, self._my_short_id)
        signed, sig_r = msg2[:MSG2_SIGNED_BYTES], msg2[MSG2_SIGNED_BYTES:]
        if not verify(peer.public_key, transcript_r(self._commune_id, self.msg1, signed), sig_r):
            raise HandshakeError(CloseCode.BAD_SIGNATURE, "bad signature")
        peer_eph = msg2[2:MSG2_SIGNED_BYTES]
        try:
            rx, tx = crypto_kx_client_session_keys(self._eph_pk, self._eph_sk, peer_eph)
        except CryptoError:
            raise HandshakeError(CloseCode.BAD_KEY, "bad ephemeral key") from None
        keys = SessionKeys(
            send_key=direction_key(tx, self._commune_id, self.msg1, signed),
            recv_key=direction_key(rx, self._commune_id, self.msg1, signed),
        )
        msg3 = self._me.sign(transcript_i(self._commune_id, self.msg1, msg2))
        return msg3, HandshakeResult(peer=peer, keys=keys)


class ResponderHandshake:
    """The accepting side: msg1 in, msg2 out, msg3 in."""

    def __init__(
        self,
        *,
        me: KeyPair,
        my_short_id: int,
        commune_id: bytes,
        lookup: Lookup,
        ephemeral_secret: bytes | None = None,
    ) -> None:
        _check_params(my_short_id, commune_id)
        self._me = me
        self._my_short_id = my_short_id
        self._commune_id = bytes(commune_id)
        self._lookup = lookup
        self._eph_pk, self._eph_sk = _ephemeral(ephemeral_secret)
        self._msg1 = b""
        self._msg2 = b""
        self._peer: Peer | None = None
        self._keys: SessionKeys | None = None

    def on_msg1(self, msg1: bytes) -> bytes:
        """Check msg1 and return msg2."""
        if len(msg1) != MSG1_BYTES:
            raise HandshakeError(CloseCode.PROTOCOL_ERROR, "truncated handshake")
        if msg1[0] != VERSION:
            raise HandshakeError(CloseCode.UNSUPPORTED_VERSION, "unsupported version")
        if msg1[1 : 1 + COMMUNE_TAG_BYTES] != self._commune_id[:COMMUNE_TAG_BYTES]:
            raise HandshakeError(CloseCode.DIFFERENT_COMMUNE, "different commune")
        peer = _member(self._lookup, int.from_bytes(msg1[3:5], "big"), self._my_short_id)
        peer_eph = msg1[5:MSG1_BYTES]
        try:
            rx, tx = crypto_kx_server_session_keys(self._eph_pk, self._eph_sk, peer_eph)
        except CryptoError:
            raise HandshakeError(CloseCode.BAD_KEY, "bad ephemeral key") from None
        signed = self._my_short_id.to_bytes(2, "big") + self._eph_pk
        self._keys = SessionKeys(
            send_key=direction_key(tx, self._commune_id, msg1, signed),
            recv_key=direction_key(rx, self._commune_id, msg1, signed),
        )
        self._msg1, self._peer = bytes(msg1), peer
        self._msg2 = signed + self._me.sign(transcript_r(self._commune_id, msg1, signed))
        return self._msg2

    def on_msg3(self, msg3: bytes) -> HandshakeResult:
        """Check msg3; return the authenticated peer with session keys."""
        if self._peer is None or self._keys is None:
            raise HandshakeError(CloseCode.PROTOCOL_ERROR, "msg3 before msg1")
        if len(msg3) != MSG3_BYTES:
            raise HandshakeError(CloseCode.PROTOCOL_ERROR, "truncated handshake")
        if not verify(self._peer.public_key, transcript_i(self._commune_id, self._msg1, self._msg2), msg3):
            raise HandshakeError(CloseCode.BAD_SIGNATURE, "bad signature")
        return HandshakeResult(peer=self._peer, keys=self._keys)
