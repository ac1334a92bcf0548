"""Rolling upgrades, sans-IO: the capabilities message (service 0xA0), and a sync session that
never sends a batch format its peer has not said it accepts (while a peer that says nothing is
taken to accept what release 0.1.0 does)."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.membership.identity import KeyPair
from meshmeet.node.capability_service import my_capabilities
from meshmeet.meeting import meetings as m
from meshmeet.store.batch import BATCH_VERSION, batch_format
from meshmeet.store.errors import ProtocolError
from meshmeet.sync.messages import Hello, decode as sync_decode, encode as sync_encode
from meshmeet.sync.session import ProtocolViolation, SyncSession
from meshmeet.meeting.replica import open_store
from meshmeet.wire.capabilities import LEGACY, Capabilities, CapabilityError, decode, encode

HQ, HALL = KeyPair.from_seed(bytes([41]) * 32), KeyPair.from_seed(bytes([42]) * 32)
ROLES = {HQ.node_id: "hq", HALL.node_id: "hall"}


def test_capabilities_round_trip_and_legacy_is_a_subset_of_mine() -> None:
    mine = my_capabilities()
    assert decode(encode(mine)) == mine
    for name, versions in LEGACY.formats.items():
        assert versions <= mine.formats[name], name  # this release still accepts all 0.1.0 sends
    assert mine.highest_common(LEGACY, "batch") == BATCH_VERSION


def test_unknown_names_and_features_from_a_newer_peer_are_kept_not_refused() -> None:
    data = msgpack.packb({"sw": "0.9.0", "fmt": {"batch": [3, 4], "hologram": [1]}, "feat": ["teleport"],
                          "future_key": {"x": 1}})
    c = decode(data)
    assert c.accepts("batch", 4) and not c.accepts("batch", 2) and "teleport" in c.features


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_any_bytes_give_capabilities_or_capability_error(data: bytes) -> None:
    try:
        decode(data)
    except CapabilityError:
        pass


def _pump(a: SyncSession, b: SyncSession, first_a, first_b) -> list:
    events_b: list = []
    qa, qb = list(first_b), list(first_a)
    while qa or qb:
        if qa:
            out, _ = a.receive(qa.pop(0).data, 0.0)
            qb += out
        if qb:
            out, ev = b.receive(qb.pop(0).data, 0.0)
            events_b += ev
            qa += out
    return events_b


def test_a_batch_format_the_peer_does_not_accept_is_withheld_not_sent() -> None:
    hq, hall = open_store(":memory:", HQ, ROLES.get), open_store(":memory:", HALL, ROLES.get)
    mid = m.create_meeting(hq, "Họp")
    assert all(batch_format(b.body) == BATCH_VERSION for b in hq.batches_after({}))
    a, b = SyncSession(hq, HALL.node_id, 0.0), SyncSession(hall, HQ.node_id, 0.0)
    a.peer_batch_versions = frozenset({2})  # an (imagined) peer that knows only batch format 2
    events = _pump(a, b, a.on_connect(), b.on_connect())
    assert hall.get("meetings", mid) is None and a.withheld_batches >= 1
    assert not any(isinstance(e, ProtocolViolation) for e in events) and not a.closed and not b.closed
    # once it says it knows format 3 (its capabilities arrive), the withheld batch goes
    a.peer_batch_versions = frozenset({2, 3})
    _pump(a, b, a.on_local_change(0.0), [])
    assert hall.get("meetings", mid)["title"] == "Họp"


def test_a_sync_hello_of_a_newer_protocol_version_is_read_not_refused() -> None:
    msg = sync_decode(msgpack.packb([1, 2, bytes(16)], use_bin_type=True))
    assert isinstance(msg, Hello) and msg.version == 2
    try:
        sync_decode(msgpack.packb([1, 0, bytes(16)], use_bin_type=True))
    except ProtocolError:
        pass
    else:
        raise AssertionError("version 0 must be refused")
    assert sync_encode(Hello(bytes(16)))[1] == 1  # we still say version 1


def test_capabilities_vector_in_protocol_md() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "protocol.md").read_text()
    hexed = re.search(r"capabilities = ([0-9a-f]+)", text).group(1)  # type: ignore[union-attr]
    c = Capabilities("0.1.1", {"batch": frozenset({2, 3}), "sync": frozenset({1})}, frozenset({"release/1"}))
    assert encode(c).hex() == hexed and decode(bytes.fromhex(hexed)) == c
