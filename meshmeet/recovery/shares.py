"""Shamir shares of HQ's secrets held by halls, and the messages that move them (sans-IO).

A share record (msgpack) names its commune, the bundle it belongs to (`check`, hqsecrets.py),
k, n, its x and its bytes. It only ever travels sealed (libsodium sealed box, X25519 from the
recipient's Ed25519 node key): to a hall's node key when HQ hands it out over the links (service
RECOVERY 0x90, flooded, so any node may carry it and only the holder can open it), and to the
one-time key of a restoring machine when the hall's operator releases it (the mesh port, first byte
`R`). Formats and test vectors: docs/protocol/recovery.md. Pure functions: they must never do I/O,
and never return a share that is not sealed, except from `open_*` to the key it was sealed to.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import msgpack
import nacl.exceptions
from nacl.bindings import (
    crypto_box_seal,
    crypto_box_seal_open,
    crypto_sign_ed25519_pk_to_curve25519,
)

from ..errors import MeshmeetError
from ..membership.identity import KeyPair
from .hqsecrets import CHECK_BYTES, HqSecrets
from .shamir import Share, split

RECOVERY_FIRST_BYTE = 0x52  # "R": a restoring machine asking a hall's mesh port for its share
MSG_DELIVER = 1
MSG_ACK = 2
REQ_ASK = 1
REP_ANSWER = 2
STATE_WAIT, STATE_NONE, STATE_RELEASED = "wait", "none", "released"
MSG_ID_BYTES = 16
MAX_MESSAGE_BYTES = 60_000
ANY_COMMUNE = bytes(16)  # in an ask: "the commune you hold a share of" (the machine may not know its id)
CODE_BYTES = 5  # 40 bits shown as 8 base32 letters: what the hall operator compares


class ShareError(MeshmeetError):
    """A share or recovery message that does not parse, or is not for us."""


def _bad(en: str) -> ShareError:
    return ShareError(f"Mảnh khôi phục không hợp lệ ({en})", f"invalid recovery share ({en})")


@dataclass(frozen=True)
class ShareRecord:
    commune: bytes
    check: bytes
    k: int
    n: int
    share: Share
    made_at: int

    def to_bytes(self) -> bytes:
        return msgpack.packb({"v": 1, "commune": self.commune, "check": self.check, "k": self.k, "n": self.n,
                              "x": self.share.x, "made_at": self.made_at, "data": self.share.data}, use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> "ShareRecord":
        try:
            d = msgpack.unpackb(data, raw=False)
        except Exception:  # msgpack raises several types on junk
            raise _bad("not msgpack") from None
        ok = (isinstance(d, dict) and d.get("v") == 1 and type(d.get("commune")) is bytes and len(d["commune"]) == 16
              and type(d.get("check")) is bytes and len(d["check"]) == CHECK_BYTES
              and all(type(d.get(f)) is int for f in ("k", "n", "x", "made_at"))
              and type(d.get("data")) is bytes)
        if not ok or not 1 <= d["k"] <= d["n"] <= 255 or not 1 <= d["x"] <= d["n"]:
            raise _bad("bad fields")
        return cls(d["commune"], d["check"], d["k"], d["n"], Share(d["x"], d["data"]), d["made_at"])


def make_records(secrets: HqSecrets, k: int, n: int) -> list[ShareRecord]:
    """n share records of the bundle, any k of which rebuild it."""
    data, check = secrets.to_bytes(), secrets.check()
    return [ShareRecord(secrets.commune_id, check, k, n, s, secrets.made_at) for s in split(data, k, n)]


def x25519_public(ed25519_public: bytes) -> bytes:
    return crypto_sign_ed25519_pk_to_curve25519(ed25519_public)


def seal_to(public_x25519: bytes, plaintext: bytes) -> bytes:
    return crypto_box_seal(plaintext, public_x25519)


def seal_to_node(node_public_key: bytes, record: ShareRecord) -> bytes:
    """A record sealed to a hall's node key (Ed25519 -> X25519)."""
    return seal_to(x25519_public(node_public_key), record.to_bytes())


def open_sealed(sealed: bytes, public_x25519: bytes, secret_x25519: bytes) -> ShareRecord:
    try:
        plain = crypto_box_seal_open(sealed, public_x25519, secret_x25519)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise _bad("cannot open: not sealed to this key") from None
    return ShareRecord.from_bytes(plain)


def open_with_node_key(sealed: bytes, node_key: KeyPair) -> ShareRecord:
    sk = bytes(node_key.signing_key.to_curve25519_private_key())
    return open_sealed(sealed, x25519_public(node_key.public_key), sk)


def msg_id_of(sealed: bytes) -> bytes:
    return hashlib.blake2b(sealed, digest_size=MSG_ID_BYTES, person=b"meshmeet-rcvmsg").digest()


def code_of(public_x25519: bytes) -> str:
    """The 8-letter code a restoring machine shows and the hall operator compares (ABCD-EFGH)."""
    digest = hashlib.blake2b(public_x25519, digest_size=CODE_BYTES, person=b"meshmeet-rcvcode").digest()
    text = base64.b32encode(digest).decode()
    return f"{text[:4]}-{text[4:8]}"


# ---- link messages (service RECOVERY) ------------------------------------------------------

@dataclass(frozen=True)
class Deliver:
    to: str  # node id of the holder
    sealed: bytes


@dataclass(frozen=True)
class Ack:
    holder: str
    msg_id: bytes
    check: bytes


def encode_link(msg: Deliver | Ack) -> bytes:
    if isinstance(msg, Deliver):
        return msgpack.packb([MSG_DELIVER, msg.to, msg.sealed], use_bin_type=True)
    return msgpack.packb([MSG_ACK, msg.holder, msg.msg_id, msg.check], use_bin_type=True)


def decode_link(body: bytes) -> Deliver | Ack:
    if len(body) > MAX_MESSAGE_BYTES:
        raise _bad("too long")
    try:
        m = msgpack.unpackb(body, raw=False)
    except Exception:  # msgpack raises several types on junk
        raise _bad("not msgpack") from None
    if isinstance(m, list) and len(m) == 3 and m[0] == MSG_DELIVER and type(m[1]) is str and type(m[2]) is bytes:
        return Deliver(m[1], m[2])
    if (isinstance(m, list) and len(m) == 4 and m[0] == MSG_ACK and type(m[1]) is str
            and type(m[2]) is bytes and len(m[2]) == MSG_ID_BYTES and type(m[3]) is bytes and len(m[3]) == CHECK_BYTES):
        return Ack(m[1], m[2], m[3])
    raise _bad("bad shape")


# ---- the restore exchange on a hall's mesh port (first byte R) -----------------------------

def encode_ask(commune: bytes, public_x25519: bytes) -> bytes:
    return bytes([RECOVERY_FIRST_BYTE]) + msgpack.packb([REQ_ASK, commune, public_x25519], use_bin_type=True)


def decode_ask(data: bytes) -> tuple[bytes, bytes]:
    """(commune id, the restoring machine's one-time X25519 public key) from an ask."""
    if not data or data[0] != RECOVERY_FIRST_BYTE or len(data) > 256:
        raise _bad("not an ask")
    try:
        m = msgpack.unpackb(data[1:], raw=False)
    except Exception:  # msgpack raises several types on junk (also: a partial read)
        raise _bad("not msgpack") from None
    if not (isinstance(m, list) and len(m) == 3 and m[0] == REQ_ASK and type(m[1]) is bytes and len(m[1]) == 16
            and type(m[2]) is bytes and len(m[2]) == 32):
        raise _bad("bad ask")
    return m[1], m[2]


def encode_answer(state: str, sealed: bytes = b"") -> bytes:
    body = msgpack.packb([REP_ANSWER, state, sealed], use_bin_type=True)
    return len(body).to_bytes(4, "big") + body


def decode_answer(body: bytes) -> tuple[str, bytes]:
    try:
        m = msgpack.unpackb(body, raw=False)
    except Exception:  # msgpack raises several types on junk
        raise _bad("not msgpack") from None
    if not (isinstance(m, list) and len(m) == 3 and m[0] == REP_ANSWER and m[1] in (STATE_WAIT, STATE_NONE, STATE_RELEASED)
            and type(m[2]) is bytes):
        raise _bad("bad answer")
    return m[1], m[2]
