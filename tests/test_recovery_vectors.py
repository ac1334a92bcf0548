"""The test vectors in docs/protocol/recovery.md match the code."""

from __future__ import annotations

import re
from pathlib import Path

import msgpack
import pytest
from nacl.public import PrivateKey

from meshmeet.membership.identity import KeyPair
from meshmeet.recovery import backup_file as bf
from meshmeet.recovery import shares as sh
from meshmeet.recovery.hqsecrets import HqSecrets
from meshmeet.recovery.shamir import Share, combine, split

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol" / "recovery.md"
PASS = "một câu mật khẩu dài"


@pytest.fixture(scope="module")
def v() -> dict[str, str]:
    block = re.search(r"```vectors\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block, "no ```vectors block in recovery.md"
    out = {}
    for line in block.group(1).splitlines():
        m = re.fullmatch(r"\s*(\w+)\s*=\s*(\S+)\s*", line)
        assert m, f"unparsable vector line {line!r}"
        out[m.group(1)] = m.group(2)
    return out


def h(v, name: str) -> bytes:
    return bytes.fromhex(v[name])


def test_bundle_and_file(v):
    secrets = HqSecrets(b"\x01" * 32, b"\x02" * 32, b"CA-KEY-PEM", b"CA-CRT-PEM", b"{}", b"ROSTER", 1700000000)
    assert secrets.to_bytes() == h(v, "bundle") and secrets.check() == h(v, "check")
    assert secrets.commune_id == h(v, "commune")
    cost = bf.KdfCost(int(v["kdf_ops"]), int(v["kdf_mem"]))
    assert bf.derive_key(PASS, h(v, "salt"), cost) == h(v, "key")
    assert bf.seal(secrets, PASS, cost, salt=h(v, "salt"), nonce=h(v, "nonce")) == h(v, "file")
    assert bf.open_file(h(v, "file"), PASS) == secrets


def test_shares_and_records(v):
    bundle = h(v, "bundle")
    coeffs = iter([b"\x11" * len(bundle), b"\x22" * len(bundle)])
    shares = split(bundle, 3, 5, random_bytes=lambda n: next(coeffs))
    for s in shares:
        assert s.data == h(v, f"share_{s.x}")
    assert combine([Share(x, h(v, f"share_{x}")) for x in (2, 4, 5)]) == bundle
    record = sh.ShareRecord.from_bytes(h(v, "record_1"))
    assert record.share == shares[0] and (record.k, record.n) == (3, 5) and record.check == h(v, "check")
    hall = KeyPair.from_seed(h(v, "hall_seed"))
    assert sh.open_with_node_key(h(v, "sealed_record_1"), hall) == record


def test_link_messages_and_restore_exchange(v):
    hall = KeyPair.from_seed(h(v, "hall_seed"))
    sealed = h(v, "sealed_record_1")
    assert sh.msg_id_of(sealed) == h(v, "msg_id")
    assert sh.encode_link(sh.Deliver(hall.node_id, sealed)) == h(v, "deliver")
    assert sh.decode_link(h(v, "ack")) == sh.Ack(hall.node_id, h(v, "msg_id"), h(v, "check"))
    one_time = PrivateKey(h(v, "one_time_secret"))
    assert bytes(one_time.public_key) == h(v, "one_time_public")
    assert sh.code_of(bytes(one_time.public_key)) == "BDFB-BXIU" and "`BDFB-BXIU`" in DOC.read_text()
    assert sh.encode_ask(h(v, "commune"), bytes(one_time.public_key)) == h(v, "ask")
    assert sh.decode_ask(h(v, "ask")) == (h(v, "commune"), h(v, "one_time_public"))
    wait = h(v, "answer_wait")
    assert int.from_bytes(wait[:4], "big") == len(wait) - 4 and sh.decode_answer(wait[4:]) == ("wait", b"")
    assert msgpack.unpackb(h(v, "deliver"))[0] == 1
