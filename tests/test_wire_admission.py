"""meshmeet.wire.admission: token buckets per source and connection counts (sans-IO, properties)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.config import ConfigError, load
from meshmeet.wire.admission import ConnectionCounter, SourceRateLimiter, source_key

times = st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), min_size=1, max_size=300).map(sorted)


@settings(max_examples=200, deadline=None)
@given(times, st.floats(min_value=0.1, max_value=50), st.integers(min_value=1, max_value=20))
def test_one_source_never_gets_more_than_burst_plus_rate_times_span(moments, rate, burst):
    lim = SourceRateLimiter(rate, burst)
    allowed = sum(lim.allow("10.0.0.9", t) for t in moments)
    assert allowed <= burst + rate * (moments[-1] - moments[0]) + 1e-9
    assert allowed >= 1
    assert lim.refused == len(moments) - allowed


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=400))
def test_a_flooding_source_does_not_slow_another(sources):
    lim = SourceRateLimiter(1.0, 3, max_sources=8)
    for i, s in enumerate(sources):
        lim.allow(f"10.0.{s}.1", i * 0.001)
        assert lim.tracked() <= 8
    assert lim.allow("192.168.1.7", len(sources) * 0.001)  # a new source starts with a full bucket


def test_refill_over_time_and_clock_going_backwards_gives_nothing_extra():
    lim = SourceRateLimiter(2.0, 2)
    assert lim.allow("a", 0.0) and lim.allow("a", 0.0) and not lim.allow("a", 0.0)
    assert not lim.allow("a", 0.2) and lim.allow("a", 0.5)
    assert not lim.allow("a", -100.0)  # a time in the past adds no tokens
    with pytest.raises(ValueError):
        SourceRateLimiter(0, 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=5)), max_size=300))
def test_counter_caps_hold_and_counts_return_to_zero(ops):
    c = ConnectionCounter(max_total=6, max_per_source=2)
    held: list[str] = []
    for is_open, s in ops:
        src = f"s{s}"
        if is_open:
            fits = c.can_open(src)
            assert c.open(src) == fits
            if fits:
                held.append(src)
        elif src in held:
            held.remove(src)
            c.close(src)
        assert c.total == len(held) <= 6
        assert all(c.count(x) == held.count(x) <= 2 for x in set(held))
    for src in list(held):
        c.close(src)
    assert c.total == 0
    with pytest.raises(ValueError):
        c.close("s0")


def test_source_key_groups_an_ipv6_host_by_its_64_and_unmaps_ipv4():
    assert source_key("10.1.2.3") == "10.1.2.3"
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("[2001:db8:1:2:ffff::9]") == "2001:db8:1:2::/64"
    assert source_key("::ffff:192.168.1.5") == "192.168.1.5"
    assert source_key("fe80::1%eth0") == "fe80::/64"
    assert source_key("not an address") == "not an address"


def test_limits_table_is_checked(tmp_path):
    (tmp_path / "config.toml").write_text("[limits]\nweb_idle_s = 5\nmesh_max_pending = 8\n")
    lim = load(tmp_path).limits
    assert lim.web_idle_s == 5.0 and lim.mesh_max_pending == 8 and lim.handshakes_per_s == 2.0
    for bad in ("[limits]\nweb_idle_s = 0\n", "[limits]\nmesh_max_pending = 1.5\n", "[limits]\nnope = 1\n",
                "limits = 3\n", '[limits]\nhandshakes_per_s = "x"\n'):
        (tmp_path / "config.toml").write_text(bad)
        with pytest.raises(ConfigError) as e:
            load(tmp_path)
        assert "limits" in e.value.en


@settings(max_examples=200, deadline=None)
@given(times, st.floats(min_value=0.1, max_value=50), st.integers(min_value=1, max_value=20))
def test_wait_s_says_exactly_when_the_next_token_comes(moments, rate, burst):
    lim = SourceRateLimiter(rate, burst)
    for t in moments:
        wait = lim.wait_s("k", t)
        assert wait >= 0.0
        if wait == 0.0:
            assert lim.allow("k", t)
        else:
            assert not lim.allow("k", t)
            assert lim.wait_s("k", t + wait + 1e-6) == 0.0


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=8),
       st.lists(st.tuples(st.sampled_from(["add", "spoke", "remove"]), st.integers(min_value=0, max_value=30)),
                max_size=200))
def test_pending_set_drops_silent_before_speaking_and_stays_under_its_cap(cap, ops):
    from meshmeet.wire.admission import PendingSet

    pending = PendingSet(cap)
    dropped: list[int] = []
    state: dict[int, str] = {}  # key -> "silent" | "speaking", as a model
    for op, key in ops:
        if op == "add" and key not in state:
            silent_before = [k for k, v in state.items() if v == "silent"]
            n_dropped = len(dropped)
            pending.add(key, lambda k=key: dropped.append(k))
            for k in dropped[n_dropped:]:
                assert silent_before == [] or state[k] == "silent"  # speaking ones only when no silent one is left
                del state[k]
            state[key] = "silent"
        elif op == "spoke" and key in state:
            pending.spoke(key)
            state[key] = "speaking"
        elif op == "remove":
            pending.remove(key)
            state.pop(key, None)
        assert len(pending) == len(state) <= cap
        assert pending.silent() == sum(v == "silent" for v in state.values())
        assert pending.dropped == len(dropped)
