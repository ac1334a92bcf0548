"""The commune LoRa key offer: only an HQ member of this commune can make one; junk is refused cleanly."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings, strategies as st

from meshmeet.membership.identity import KeyPair, verify
from meshmeet.lora.keyshare import (KeyShareError, accept_offer, better, decode_offer, make_offer)

import pytest

COMMUNE = bytes(range(16))
HQ = KeyPair.from_seed(b"\x01" * 32)
HALL = KeyPair.from_seed(b"\x02" * 32)


@dataclass(frozen=True)
class M:
    role: str
    public_key: bytes


MEMBERS = {1: M("hq", HQ.public_key), 2: M("hall", HALL.public_key)}


def test_hq_offer_round_trips_and_is_accepted():
    offer = make_offer(HQ, COMMUNE, 1, 1_700_000_000)
    got = accept_offer(offer.to_bytes(), COMMUNE, MEMBERS.get, verify)
    assert got == offer and len(got.key) == 32
    assert make_offer(HQ, COMMUNE, 1, 1_700_000_000).key != offer.key  # random each time


@pytest.mark.parametrize("case", ["hall_signer", "unknown_signer", "other_commune", "tampered_key", "claims_hq_id"])
def test_offers_not_from_this_communes_hq_are_refused(case):
    if case == "hall_signer":
        body = make_offer(HALL, COMMUNE, 2, 1).to_bytes()
    elif case == "unknown_signer":
        body = make_offer(HQ, COMMUNE, 9, 1).to_bytes()
    elif case == "other_commune":
        body = make_offer(HQ, bytes(16), 1, 1).to_bytes()
    elif case == "tampered_key":
        o = make_offer(HQ, COMMUNE, 1, 1)
        body = make_offer(HQ, COMMUNE, 1, 1, key=o.key).to_bytes().replace(o.key, bytes(32))
    else:  # a hall signs but names HQ's short id
        body = make_offer(HALL, COMMUNE, 1, 1).to_bytes()
    with pytest.raises(KeyShareError):
        accept_offer(body, COMMUNE, MEMBERS.get, verify)


def test_newer_offer_wins_then_higher_signer():
    a, b = make_offer(HQ, COMMUNE, 1, 10), make_offer(HQ, COMMUNE, 1, 11)
    assert better(a, None) and better(b, a) and not better(a, b) and not better(a, a)
    assert better(make_offer(HQ, COMMUNE, 3, 10), a)


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_hostile_bytes_give_keyshare_error_only(data):
    try:
        accept_offer(data, COMMUNE, MEMBERS.get, verify)
    except KeyShareError:
        pass


@settings(max_examples=200)
@given(st.lists(st.one_of(st.integers(-(1 << 63), (1 << 64) - 1), st.binary(max_size=70), st.text(max_size=5), st.none()), max_size=6))
def test_hostile_msgpack_shapes_give_keyshare_error_only(items):
    import msgpack

    try:
        decode_offer(msgpack.packb(["key", *items], use_bin_type=True))
    except KeyShareError:
        pass


def test_v2_offer_names_revoked_seats_and_signs_them():
    offer = make_offer(HQ, COMMUNE, 1, 20, excluded=[5, 3, 3])
    assert offer.excluded == (3, 5) and not offer.may_reach(3) and offer.may_reach(2)
    got = accept_offer(offer.to_bytes(), COMMUNE, MEMBERS.get, verify)
    assert got == offer
    import msgpack

    items = msgpack.unpackb(offer.to_bytes(), raw=False)
    assert items[0] == "key2"
    items[5] = [5]  # a forwarder drops seat 3 from the list to let the key reach it
    with pytest.raises(KeyShareError):
        accept_offer(msgpack.packb(items, use_bin_type=True), COMMUNE, MEMBERS.get, verify)
    items[5] = [5, 3]  # not sorted: not canonical
    with pytest.raises(KeyShareError):
        accept_offer(msgpack.packb(items, use_bin_type=True), COMMUNE, MEMBERS.get, verify)
    assert msgpack.unpackb(make_offer(HQ, COMMUNE, 1, 20).to_bytes())[0] == "key"  # no revocation: v1 bytes
