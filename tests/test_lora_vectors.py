"""The test vectors in docs/protocol/lora.md match the code; keys, nonce and tag are also recomputed
from the construction the document gives, with hashlib's BLAKE2b instead of the code's pynacl."""

from __future__ import annotations

import hashlib
import struct

import pytest

from meshmeet.lora.frames import Frame, FrameError, FrameKeys, decode_frame, encode_frame, nonce_of
from meshmeet.lora.messages import (BROADCAST, Alert, Control, ControlAction, Kind, MessageError, decode_message,
                                    encode_message)
from meshmeet.membership.identity import KeyPair, verify

from conftest import doc_vectors

V = doc_vectors("protocol/lora.md")
KEYS = FrameKeys.derive(V["commune_key"])


def test_keys_and_nonce_follow_the_written_construction() -> None:
    def sub(person: bytes) -> bytes:
        return hashlib.blake2b(b"", digest_size=32, key=V["commune_key"], person=person).digest()

    assert KEYS.enc == V["enc_key"] == sub(b"meshmeet-lr-enc")
    assert KEYS.mac == V["mac_key"] == sub(b"meshmeet-lr-mac")
    assert nonce_of(1, 258) == V["nonce_source_1_counter_258"] == b"mmLR" + struct.pack(">HI", 1, 258) + bytes(14)


def test_control_message_and_frame() -> None:
    message = Control(3, ControlAction.VOTE_OPEN, 2)
    plaintext = encode_message(message, source=1, msg_id=258, dest=BROADCAST, ref=None, sign=None)
    assert plaintext == V["control_plaintext"]
    frame = encode_frame(Frame(int(Kind.CONTROL), 3, 1, 258, plaintext), KEYS)
    assert frame == V["control_frame"] and len(frame) == len(plaintext) + 14
    header, tag = frame[:6], frame[-8:]
    assert header == bytes([0x36]) + struct.pack(">H", 1) + (258).to_bytes(3, "big")
    assert tag == hashlib.blake2b(frame[:-8], digest_size=8, key=V["mac_key"], person=b"meshmeet-lr-tag").digest()
    back = decode_frame(V["control_frame"], KEYS)
    assert (back.kind, back.hops, back.source, back.counter, back.payload) == (3, 3, 1, 258, plaintext)
    env = decode_message(back.kind, back.payload, source=1, first_counter=258, public_key_of=lambda s: None,
                         verify=verify)
    assert (env.dest, env.ref, env.message) == (BROADCAST, None, message)


def test_fragment_frame() -> None:
    frame = encode_frame(Frame(3, 2, 1, 259, bytes.fromhex("010203"), fragment=(1, 2)), KEYS)
    assert frame == V["fragment_frame"] and len(frame) == 3 + 15 and frame[6] == 0x12
    assert decode_frame(V["fragment_frame"], KEYS).fragment == (1, 2)


def test_signed_alert() -> None:
    ident = KeyPair.from_seed(V["identity_seed"])
    message = Alert("Họp khẩn lúc 14h", 1_800_000_000)
    plaintext = encode_message(message, source=1, msg_id=260, dest=BROADCAST, ref=None, sign=ident.sign)
    assert plaintext == V["alert_plaintext"]
    assert encode_frame(Frame(int(Kind.ALERT), 3, 1, 260, plaintext), KEYS) == V["alert_frame"]
    back = decode_frame(V["alert_frame"], KEYS)
    env = decode_message(back.kind, back.payload, source=1, first_counter=260,
                         public_key_of=lambda s: ident.public_key if s == 1 else None, verify=verify)
    assert env.message == message
    with pytest.raises(MessageError):  # the signature binds the source: as source 2 it fails
        decode_message(back.kind, back.payload, source=2, first_counter=260,
                       public_key_of=lambda s: ident.public_key, verify=verify)


def test_a_flipped_bit_or_another_key_is_refused() -> None:
    frame = bytearray(V["control_frame"])
    frame[7] ^= 1
    with pytest.raises(FrameError):
        decode_frame(bytes(frame), KEYS)
    with pytest.raises(FrameError):
        decode_frame(V["control_frame"], FrameKeys.derive(bytes(32)))
