"""The test vectors in docs/protocol/sync.md match the code: every value is parsed from the doc."""

from __future__ import annotations

import hashlib

import pytest

from meshmeet.membership.identity import KeyPair
from meshmeet.store.batch import ForgedBatchError, decode_batch, encode_batch
from meshmeet.sync.messages import Batch, Have, Hello, Vector, Want, decode, encode, vector_hash

from conftest import doc_vectors

V = doc_vectors("protocol/sync.md")
CHANGE = (1_800_000_000_000 << 16, 8, 0, ("a1",), {0: "Họp lúc 8h", 1: 1, 2: 1.5})  # as the doc describes it


def test_key_and_ids() -> None:
    key = KeyPair.from_seed(V["key_seed"])
    assert key.node_id == V["node_id"].hex() and key.public_key == V["public_key"]


def test_hello_vector_and_want() -> None:
    key = KeyPair.from_seed(V["key_seed"])
    assert vector_hash({}) == V["empty_vector_hash"]
    assert encode(Hello(vector_hash({}))) == V["hello_empty"] and len(V["hello_empty"]) == 21
    assert encode(Vector({key.node_id: 3})) == V["vector_one"]
    assert encode(Want((bytes(32),))) == V["want_zero"]
    assert encode(Have((bytes(32), bytes(range(32))))) == V["have_two"] and len(V["have_two"]) == 71
    for name in ("hello_empty", "vector_one", "want_zero", "have_two", "batch_message"):
        assert encode(decode(V[name])) == V[name]  # and each decodes to what re-encodes the same


def test_batch_body_signature_and_message() -> None:
    key = KeyPair.from_seed(V["key_seed"])
    batch = encode_batch(key, 1, [CHANGE])
    assert batch.body == V["batch_body"]
    assert hashlib.sha256(batch.body).digest() == V["batch_body_sha256"]
    assert batch.sig == V["batch_sig"]
    assert encode(Batch(batch.body, batch.sig)) == V["batch_message"] and len(V["batch_message"]) == 157
    assert decode_batch(V["batch_body"], V["batch_sig"]).changes()[0].values == CHANGE[4]


def test_version_2_batch_is_accepted_and_each_signature_binds_its_version() -> None:
    assert V["batch_v2_body"] == V["batch_body"][:1] + b"\x02" + V["batch_body"][2:]
    assert decode_batch(V["batch_v2_body"], V["batch_v2_sig"]).changes()[0].values == CHANGE[4]
    for body, sig in ((V["batch_v2_body"], V["batch_sig"]), (V["batch_body"], V["batch_v2_sig"])):
        with pytest.raises(ForgedBatchError):
            decode_batch(body, sig)
