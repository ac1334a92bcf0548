"""Tree message and broadcast frame codecs: round trips, strictness, hostile bytes, link cost."""

from __future__ import annotations

import math
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.tree.cost import MAX_COST, LinkCostInputs, link_cost
from meshmeet.tree.forward import Broadcast, BroadcastFrameError, decode_broadcast, encode_broadcast
from meshmeet.tree.messages import (
    MAX_METRIC, MAX_SEQNO, Request, TreeMessageError, Update, decode, encode,
)

ids = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=16).filter(str.isprintable)
updates = st.builds(
    Update, root=ids, epoch=st.integers(0, 2**32 - 1), priority=st.integers(0, 2**32 - 1),
    seqno=st.integers(0, MAX_SEQNO), metric=st.integers(0, MAX_METRIC), flags=st.sampled_from([0, 1]),
)
requests = st.builds(Request, root=ids, seqno=st.integers(0, MAX_SEQNO))


@given(st.one_of(updates, requests))
def test_round_trip(message: Update | Request) -> None:
    assert decode(encode(message)) == message


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_hostile_bytes_give_only_the_protocol_error(data: bytes) -> None:
    try:
        message = decode(data)
    except TreeMessageError:
        return
    assert encode(message) == data or decode(encode(message)) == message


@given(st.lists(st.one_of(st.integers(-2**70, 2**70), st.booleans(), st.none(), st.text(max_size=70),
                          st.binary(max_size=8), st.floats()), max_size=9))
def test_msgpack_shaped_garbage_is_rejected_cleanly(body: list) -> None:
    try:
        data = msgpack.packb(body, use_bin_type=True)
    except (OverflowError, ValueError):
        return
    try:
        decode(data)
    except TreeMessageError:
        pass


def test_strictness() -> None:
    good = encode(Update("hq", 0, 100, 5, 0, 1))
    assert decode(good) == Update("hq", 0, 100, 5, 0, 1)
    with pytest.raises(TreeMessageError):
        decode(good + b"\x00")                                     # trailing bytes
    with pytest.raises(TreeMessageError):
        decode(msgpack.packb([1, "hq", 0, True, 5, 0, 1]))         # bool where an int belongs
    with pytest.raises(TreeMessageError):
        decode(msgpack.packb([1, "hq", 0, 100, 5, 0, 2]))          # unknown flag
    with pytest.raises(TreeMessageError):
        decode(msgpack.packb([2, "hq", -1]))                       # negative seqno
    with pytest.raises(TreeMessageError):
        decode(msgpack.packb([9, "hq", 1]))                        # unknown kind
    with pytest.raises(TreeMessageError):
        encode(Update("hq", 0, 100, 5, MAX_METRIC + 1, 0))         # never send what a peer rejects
    assert len(encode(Update("0123456789abcdef", 1, 100, 2**40, 123456, 1))) <= 40   # a hello is tiny


@given(st.builds(Broadcast, source=ids, seq=st.integers(0, 2**63 - 1), payload=st.binary(max_size=300)))
def test_broadcast_round_trip(frame: Broadcast) -> None:
    assert decode_broadcast(encode_broadcast(frame)) == frame


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_broadcast_hostile_bytes(data: bytes) -> None:
    try:
        decode_broadcast(data)
    except BroadcastFrameError:
        pass


@given(rtt=st.floats(allow_nan=True), loss=st.floats(allow_nan=True), capacity=st.floats(allow_nan=True),
       metered=st.booleans())
def test_link_cost_is_always_a_positive_bounded_integer(rtt: float, loss: float, capacity: float, metered: bool) -> None:
    cost = link_cost(LinkCostInputs(rtt, loss, capacity, metered))
    assert type(cost) is int and 1 <= cost <= MAX_COST


def test_link_cost_orders_the_kinds_of_link() -> None:
    lan = link_cost(LinkCostInputs(0.001, 0.0, 100e6, False))
    fibre_far = link_cost(LinkCostInputs(0.004, 0.0, 1e9, False))
    lossy = link_cost(LinkCostInputs(0.001, 0.2, 100e6, False))
    metered = link_cost(LinkCostInputs(0.07, 0.01, 10e6, True))
    lora = link_cost(LinkCostInputs(0.2, 0.05, 5470, False))
    assert lan < fibre_far < metered < lora
    assert lan < lossy
    assert link_cost(LinkCostInputs(0.07, 0.01, 10e6, False)) * 4 == pytest.approx(metered, rel=0.01)
    assert not math.isnan(lora)


VECTORS = [
    (Update("0123456789abcdef", 0, 100, 4242, 0, 0), "9701b0303132333435363738396162636465660064cd10920000"),
    (Update("0123456789abcdef", 3, 50, 70000, 1234, 1), "9701b0303132333435363738396162636465660332ce00011170cd04d201"),
    (Request("0123456789abcdef", 4243), "9302b030313233343536373839616263646566cd1093"),
]


@pytest.mark.parametrize(("message", "hex_bytes"), VECTORS)
def test_vectors_of_docs_protocol_tree(message: Update | Request, hex_bytes: str) -> None:
    assert encode(message).hex() == hex_bytes
    assert decode(bytes.fromhex(hex_bytes)) == message
    assert hex_bytes in (Path(__file__).resolve().parents[1] / "docs" / "protocol" / "tree.md").read_text()
