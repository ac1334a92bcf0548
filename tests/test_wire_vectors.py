"""The test vectors in docs/protocol/link.md match the code, recomputed from the primitives."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt,
    crypto_scalarmult,
    crypto_scalarmult_base,
)

from meshmeet.membership.identity import KeyPair, verify
from meshmeet.wire import HandshakeComplete, LinkConnection, MessageReceived, Role

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol" / "link.md"


def load_vectors() -> dict[str, bytes]:
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"```vectors\n(.*?)```", text, re.S)
    assert block, "no ```vectors block in link.md"
    vectors = {}
    for line in block.group(1).splitlines():
        match = re.fullmatch(r"\s*(\w+)\s*=\s*([0-9a-f]*)\s*", line)
        assert match, f"unparsable vector line: {line!r}"
        vectors[match.group(1)] = bytes.fromhex(match.group(2))
    return vectors


@pytest.fixture(scope="module")
def v() -> dict[str, bytes]:
    return load_vectors()


def run_vectors(v: dict[str, bytes]) -> dict[str, bytes]:
    ki, kr = KeyPair.from_seed(v["i_identity_seed"]), KeyPair.from_seed(v["r_identity_seed"])
    i_id, r_id = int.from_bytes(v["i_short_id"], "big"), int.from_bytes(v["r_short_id"], "big")
    roster = {i_id: ki.public_key, r_id: kr.public_key}
    common = dict(commune_id=v["commune_id"], lookup=roster.get, now=0.0)
    i = LinkConnection(role=Role.INITIATOR, me=ki, my_short_id=i_id, ephemeral_secret=v["i_ephemeral_secret"], **common)
    r = LinkConnection(role=Role.RESPONDER, me=kr, my_short_id=r_id, ephemeral_secret=v["r_ephemeral_secret"], **common)
    out = {"i_public_key": ki.public_key, "r_public_key": kr.public_key}
    i.start(0.0)
    out["msg1"] = i.data_to_send()
    assert r.receive_data(out["msg1"], 0.0) == []
    out["msg2"] = r.data_to_send()
    assert isinstance(i.receive_data(out["msg2"], 0.0)[0], HandshakeComplete)
    out["msg3"] = i.data_to_send()
    assert isinstance(r.receive_data(out["msg3"], 0.0)[0], HandshakeComplete)
    i.send_message(v["payload_i_to_r_0"], 0.0)
    out["frame_i_to_r_0"] = i.data_to_send()
    assert r.receive_data(out["frame_i_to_r_0"], 0.0) == [MessageReceived(v["payload_i_to_r_0"])]
    r.handle_timer(r.next_deadline())  # the keepalive ping, token 1
    out["frame_r_to_i_0"] = r.data_to_send()
    return out


def test_code_reproduces_every_message_and_frame(v: dict[str, bytes]) -> None:
    out = run_vectors(v)
    for name, value in out.items():
        assert value.hex() == v[name].hex(), name


def test_vectors_follow_the_written_construction(v: dict[str, bytes]) -> None:
    """Recompute from primitives, as a second implementation would from the prose."""
    ei, er = v["i_ephemeral_secret"], v["r_ephemeral_secret"]
    assert crypto_scalarmult_base(ei) == v["i_ephemeral_public"]
    assert crypto_scalarmult_base(er) == v["r_ephemeral_public"]
    q = crypto_scalarmult(ei, v["r_ephemeral_public"])
    assert q == crypto_scalarmult(er, v["i_ephemeral_public"]) == v["x25519_shared"]
    k = hashlib.blake2b(q + v["i_ephemeral_public"] + v["r_ephemeral_public"]).digest()
    assert (k[:32], k[32:]) == (v["kx_client_rx"], v["kx_client_tx"])

    cid, msg1, msg2, msg3 = v["commune_id"], v["msg1"], v["msg2"], v["msg3"]
    assert msg1 == b"\x01" + cid[:2] + v["i_short_id"] + v["i_ephemeral_public"]
    head = v["r_short_id"] + v["r_ephemeral_public"]
    assert msg2[:34] == head
    assert verify(v["r_public_key"], b"meshmeet/link/1 R" + cid + msg1 + head, msg2[34:])
    assert verify(v["i_public_key"], b"meshmeet/link/1 I" + cid + msg1 + msg2, msg3)

    data = b"meshmeet/link/1 key" + cid + msg1 + head
    assert hashlib.blake2b(data, digest_size=32, key=k[32:]).digest() == v["key_i_to_r"]
    assert hashlib.blake2b(data, digest_size=32, key=k[:32]).digest() == v["key_r_to_i"]

    frame = v["frame_i_to_r_0"]
    nonce0 = bytes(12)
    plain = crypto_aead_chacha20poly1305_ietf_decrypt(frame[2:], frame[:2], nonce0, v["key_i_to_r"])
    assert int.from_bytes(frame[:2], "big") == len(plain)
    assert plain == b"\x00" + v["payload_i_to_r_0"]
    ping = v["frame_r_to_i_0"]
    assert crypto_aead_chacha20poly1305_ietf_decrypt(ping[2:], ping[:2], nonce0, v["key_r_to_i"]) == b"\x01" + (1).to_bytes(4, "big")
