"""The mDNS sightings table (meshmeet/node/sightings.py), sans-IO, under random event sequences.

Properties: never more than `cap` targets; a withdrawn or expired sighting is never handed out
(until it is seen again); a target is never handed out while its dial is under way, nor before
its backoff (with the lowest jitter) has passed since its last failed dial; overall dials stay
under the token bucket; a member's sighting may take a non-member's place, never the reverse;
a link that came up resets the backoff.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from meshmeet.node.sightings import JITTER_HIGH, JITTER_LOW, REDIAL_AFTER_LINK_S, Sightings, backoff_s

NAMES = [f"n{i}" for i in range(8)]
PORTS = [1000, 1001]
MEMBERS = {"n0", "n1"}

event = st.one_of(
    st.tuples(st.just("seen"), st.sampled_from(NAMES), st.sampled_from(PORTS)),
    st.tuples(st.just("withdraw"), st.sampled_from(NAMES), st.none()),
    st.tuples(st.just("end"), st.integers(0, 30), st.booleans()),  # a dial under way ends
    st.tuples(st.just("wait"), st.one_of(st.floats(0.0, 2.0), st.floats(0.0, 200.0)), st.none()),
    st.tuples(st.just("due"), st.none(), st.none()),
)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(event, max_size=120), cap=st.integers(1, 6), burst=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1))
def test_bounds_hold_under_any_sequence(events, cap, burst, seed) -> None:
    ttl = 100.0
    rate = 0.5
    table = Sightings(cap=cap, ttl_s=ttl, backoff_start_s=1.0, backoff_max_s=60.0, burst=burst, dials_per_s=rate,
                      rng=random.Random(seed))
    now = 0.0
    alive: dict[tuple, float] = {}       # key -> last seen (model of what may be dialled)
    dialling: set[tuple] = set()
    not_before: dict[tuple, float] = {}  # key -> earliest next dial after a failure
    dial_times: list[float] = []
    for kind, a, b in events:
        if kind == "seen":
            key = (a, "127.0.0.1", b)
            was_kept = key in {t.key for t in table.targets()}
            kept = table.seen(a, "127.0.0.1", b, f"id-{a}", a in MEMBERS, now)
            if kept:
                alive[key] = now
                if not was_kept:  # a new sighting starts afresh
                    not_before.pop(key, None)
                    dialling.discard(key)
            else:
                assert a not in MEMBERS or all(t.member or t.dialling for t in table.targets())
        elif kind == "withdraw":
            table.withdrawn(a)
            for key in [k for k in alive if k[0] == a]:
                del alive[key]
                dialling.discard(key)
        elif kind == "end" and dialling:
            key = sorted(dialling)[a % len(dialling)]
            dialling.discard(key)
            t = next(t for t in table.targets() if t.key == key)
            table.dialled(key, b, now)
            not_before[key] = now + (REDIAL_AFTER_LINK_S if b else backoff_s(t.failures, 1.0, 60.0) * JITTER_LOW)
            if not b:  # the jittered backoff it chose lies within [low, high) times the backoff
                assert not_before[key] <= t.next_dial_at < now + backoff_s(t.failures, 1.0, 60.0) * JITTER_HIGH
        elif kind == "wait":
            now += a
        elif kind == "due":
            for t in table.due(now):
                assert t.key in alive and now < alive[t.key] + ttl, "withdrawn or expired target dialled"
                assert t.key not in dialling, "dialled twice at once"
                assert now >= not_before.get(t.key, now) - 1e-9, "dialled before its backoff"
                dialling.add(t.key)
                dial_times.append(now)
        for key in [k for k, seen_at in alive.items() if now >= seen_at + ttl]:
            del alive[key]  # expired: the table forgets it at its next look
            dialling.discard(key)
        table.expire(now)
        assert len(table.targets()) <= cap
        assert {t.key for t in table.targets()} <= set(alive)
    for i, t0 in enumerate(dial_times):  # token bucket: at most burst + rate * window dials in any window
        for t1 in dial_times[i:]:
            n = sum(1 for t in dial_times if t0 <= t <= t1)
            assert n <= burst + rate * (t1 - t0) + 1e-6


def test_a_failing_target_backs_off_exponentially_and_a_link_resets_it() -> None:
    table = Sightings(cap=4, ttl_s=10_000.0, backoff_start_s=1.0, backoff_max_s=60.0, burst=100, dials_per_s=100.0,
                      rng=random.Random(1))
    table.seen("fake", "10.0.0.9", 7000, "id", False, 0.0)
    now, gaps, last = 0.0, [], None
    while now < 2000.0:
        for t in table.due(now):
            if last is not None:
                gaps.append(now - last)
            last = now
            table.dialled(t.key, False, now)
        now += 0.25
    assert len(gaps) > 5
    assert all(g >= backoff_s(i + 1) * JITTER_LOW for i, g in enumerate(gaps))
    assert max(gaps) <= 60.0 * 1.5 + 0.25 and max(gaps) >= 30.0  # capped, and it got there
    (t,) = table.due(now + 100.0)
    table.dialled(t.key, True, now + 100.0)
    assert table.targets()[0].failures == 0 and not table.due(now + 100.0 + REDIAL_AFTER_LINK_S - 0.01)
    assert table.due(now + 100.0 + REDIAL_AFTER_LINK_S)


def test_members_displace_strangers_but_not_the_reverse() -> None:
    table = Sightings(cap=2, rng=random.Random(0))
    assert table.seen("a", "h", 1, "x", False, 0.0) and table.seen("b", "h", 2, "y", False, 0.0)
    assert not table.seen("c", "h", 3, "z", False, 0.0)
    assert table.seen("m", "h", 4, "member", True, 0.0)
    assert table.seen("m2", "h", 5, "member2", True, 0.0)
    assert not table.seen("d", "h", 6, "w", False, 0.0) and not table.seen("m3", "h", 7, "member3", True, 0.0)
    assert {t.key[0] for t in table.targets()} == {"m", "m2"}
    assert table.status()["over_cap"] == 3 and table.status()["evicted"] == 2


def test_withdrawal_and_ttl_forget_and_a_dial_under_way_ends_quietly() -> None:
    table = Sightings(cap=4, ttl_s=50.0, rng=random.Random(0))
    table.seen("a", "h", 1, "x", False, 0.0)
    table.seen("b", "h", 2, "y", False, 0.0)
    (first, second) = table.due(0.0)
    assert table.withdrawn("a") == 1
    table.dialled(first.key, False, 1.0)  # the dial of a withdrawn sighting ends: nothing comes back
    table.dialled(second.key, False, 1.0)
    assert [t.key[0] for t in table.targets()] == ["b"]
    table.seen("b", "h", 2, "y", False, 40.0)  # refreshed: lives until 90
    (again,) = table.due(89.0)
    assert again.key[0] == "b" and again.dialling
    assert table.next_deadline(89.0) is not None
    table.expire(90.0)
    assert table.targets() == [] and table.due(90.0) == [] and table.next_deadline(90.0) is None


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Sightings(cap=0)
