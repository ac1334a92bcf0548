"""The packet-level link emulator core (sans-IO), its profiles and the plan of a profiled link.

Properties (hypothesis): the queue never holds more than its depth; serialisation respects the rate;
delay stays within base ± jitter plus queueing (order kept: never earlier than the packet ahead);
order is preserved unless reordering is allowed; nothing is duplicated or invented; the two
directions are independent; loss is within statistical bounds for a seeded random stream; a
profile spec parses or fails with EmulatorError only.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.sim.scenario import load_scenario
from meshmeet.testbed.delayline import EmulatorError
from meshmeet.testbed.packetcore import AB, BA, DROPPED, LOST, QUEUED, Direction, PacketLink, Shape
from meshmeet.testbed.plan import MESH_PORT, make_plan, setup_commands
from meshmeet.testbed.profiles import PRESETS, parse_profile, profile_spec

EPS = 1e-9

shapes = st.builds(
    lambda loss, rate, queue_pkts, delay, jitter_frac, keep: Shape(
        loss=loss, rate_bps=rate, queue_bytes=None if rate is None else 1500 * queue_pkts,
        delay_s=delay, jitter_s=delay * jitter_frac, keep_order=keep),
    st.sampled_from([0.0, 0.01, 0.3]),
    st.one_of(st.none(), st.floats(1000, 1e7)),
    st.integers(1, 40),
    st.floats(0, 0.5),
    st.floats(0, 1),
    st.booleans(),
)
# (gap before this packet in s, its size in bytes)
traffic = st.lists(st.tuples(st.floats(0, 0.05), st.integers(20, 1500)), min_size=1, max_size=200)


def _run(d: Direction, pkts: list[tuple[float, int]]):
    now, offers = 0.0, []
    for i, (gap, size) in enumerate(pkts):
        now += gap
        offers.append((now, size, d.offer(i.to_bytes(4, "big") + bytes(size - 4), now)))
    return offers


@given(shapes, traffic, st.integers(0, 2**32))
@settings(max_examples=150, deadline=None)
def test_queue_rate_delay_and_order(shape, pkts, seed):
    d = Direction(shape, random.Random(seed))
    now, prev_sent, prev_due = 0.0, None, float("-inf")
    for i, (gap, size) in enumerate(pkts):
        now += gap
        off = d.offer(i.to_bytes(4, "big") + bytes(size - 4), now)
        if shape.rate_bps is not None:
            assert d.backlog_bytes(now) <= shape.queue_bytes   # the queue never exceeds its depth
        if off.verdict != QUEUED:
            assert off.verdict in (LOST, DROPPED) and off.due_at is None
            assert off.verdict != DROPPED or shape.rate_bps is not None
            continue
        if shape.rate_bps is not None:      # serialised at the rate, after the packet ahead
            tx = size * 8 / shape.rate_bps
            assert off.sent_at >= now + tx - EPS
            if prev_sent is not None:
                assert off.sent_at >= prev_sent + tx - EPS
        else:
            assert off.sent_at == now
        low, high = off.sent_at + shape.delay_s - shape.jitter_s, off.sent_at + shape.delay_s + shape.jitter_s
        assert off.due_at >= low - EPS
        if shape.keep_order:
            assert off.due_at >= prev_due and (off.due_at <= high + EPS or off.due_at == prev_due)
            prev_due = off.due_at
        else:
            assert off.due_at <= high + EPS
        prev_sent = off.sent_at
    # everything comes out once, due order; in offer order when order is kept
    out = d.pop_due(now + 1e6)
    ids = [int.from_bytes(p[:4], "big") for p in out]
    assert len(ids) == len(set(ids)) == d.counters.offered - d.counters.lost - d.counters.dropped
    assert set(ids) <= set(range(len(pkts)))
    if shape.keep_order:
        assert ids == sorted(ids)
    assert d.pop_due(now + 2e6) == [] and d.next_due() is None


@given(traffic, traffic, st.integers(0, 2**32))
@settings(max_examples=60, deadline=None)
def test_directions_are_independent(fwd, back, seed):
    """What b -> a carries changes nothing a -> b does (own shape, own random stream)."""
    shape = PRESETS["D"].forward
    alone = PacketLink(shape, shape, seed)
    busy = PacketLink(shape, shape, seed)
    now, results = 0.0, ([], [])
    back_iter = iter(back)
    for gap, size in fwd:
        now += gap
        results[0].append(alone.offer(AB, bytes(size), now))
        nxt = next(back_iter, None)
        if nxt is not None:
            busy.offer(BA, bytes(nxt[1]), now)
        results[1].append(busy.offer(AB, bytes(size), now))
    assert results[0] == results[1]


@given(st.integers(0, 2**32), st.sampled_from([0.01, 0.03, 0.05, 0.2]))
@settings(max_examples=20, deadline=None)
def test_loss_rate_within_bounds(seed, loss):
    n = 20_000
    d = Direction(Shape(loss=loss), random.Random(seed))
    lost = sum(d.offer(b"x" * 100, i * 0.001).verdict == LOST for i in range(n))
    sigma = math.sqrt(loss * (1 - loss) / n)
    assert abs(lost / n - loss) < 5 * sigma


def test_rate_cap_drops_at_the_tail_and_drains_at_the_rate():
    # E: 32 kbit/s, 6000 B: a 100 kB burst keeps 6000 B and delivers them at 32 kbit/s
    d = Direction(PRESETS["E"].forward, random.Random(1))
    offers = [d.offer(bytes(1000), 0.0) for _ in range(100)]
    assert [o.verdict for o in offers].count(QUEUED) == 6
    assert all(o.verdict == DROPPED for o in offers[6:])
    last = [o for o in offers if o.verdict == QUEUED][-1]
    assert last.sent_at == pytest.approx(6000 * 8 / 32000)
    assert last.due_at == pytest.approx(6000 * 8 / 32000 + 0.1)
    assert len(d.pop_due(last.due_at - 0.001)) == 5 and len(d.pop_due(last.due_at)) == 1
    assert d.counters.delivered == 6 and d.counters.dropped == 94


def test_same_seed_same_run_and_reshape_keeps_scheduled_packets():
    a, b = (Direction(PRESETS["C"].forward, random.Random("s")) for _ in range(2))
    assert [a.offer(bytes(200), i * 0.01) for i in range(500)] == [b.offer(bytes(200), i * 0.01) for i in range(500)]
    due = a.next_due()
    a.reshape(PRESETS["A"].forward)
    assert a.next_due() == due                   # already in the air
    off = a.offer(bytes(200), 5.0)
    assert off.sent_at == 5.0 and off.verdict == QUEUED


@pytest.mark.parametrize("kwargs", [
    {"loss": 1.0}, {"loss": -0.1}, {"rate_bps": 10.0, "queue_bytes": 5000}, {"rate_bps": 1e6},
    {"rate_bps": 1e6, "queue_bytes": 100}, {"delay_s": -1.0}, {"delay_s": 0.01, "jitter_s": 0.02}, {"delay_s": 1e9},
])
def test_bad_shapes_are_refused(kwargs):
    with pytest.raises(EmulatorError):
        Shape(**kwargs)


def test_empty_or_huge_packet_refused():
    d = Direction(Shape(), random.Random(0))
    for bad in (b"", bytes(70_000)):
        with pytest.raises(EmulatorError):
            d.offer(bad, 0.0)


def test_presets_match_the_issue():
    c = PRESETS["C"].forward
    assert (c.delay_s, c.jitter_s, c.loss, c.rate_bps, c.queue_s) == (0.08, 0.03, 0.03, 1e6, 0.5)
    e = PRESETS["E"].forward
    assert (e.delay_s, e.jitter_s, e.loss, e.rate_bps, e.queue_s) == (0.1, 0.0, 0.0, 32e3, 1.5)
    assert PRESETS["A"].forward == Shape()
    for p in PRESETS.values():
        assert p.forward == p.back and p.forward.keep_order
        assert parse_profile(profile_spec(p)) == p


def test_profile_text_forms():
    p = parse_profile("loss=3%,rate=1M,queue_ms=500,delay_ms=80,jitter_ms=30")
    assert p.forward == PRESETS["C"].forward == p.back
    q = parse_profile("delay_ms=10,rate=256k,queue_bytes=3000/delay_ms=20,reorder=1")
    assert q.forward.rate_bps == 256e3 and q.forward.queue_bytes == 3000 and q.back.rate_bps is None
    assert not q.back.keep_order and q.back.delay_s == 0.02
    assert parse_profile(profile_spec(q)).forward == q.forward
    assert parse_profile("c") == PRESETS["C"]


@given(st.text(max_size=120))
@settings(max_examples=300)
def test_profile_parser_never_raises_anything_else(text):
    try:
        p = parse_profile(text)
    except EmulatorError:
        return
    assert isinstance(p.forward, Shape) and isinstance(p.back, Shape)


def test_plan_puts_a_profiled_link_on_a_forwarder():
    scenario = load_scenario({"nodes": [{"id": "hq", "role": "hq"}, {"id": "relay"}, {"id": "end"}],
                              "links": [{"a": "hq", "b": "relay", "kind": "lan"}, {"a": "end", "b": "relay", "kind": "4g"}]})
    plan = make_plan(scenario, "pt", {("relay", "end"): "D"})
    link = plan.link("relay", "end")
    assert link.packet is not None and link.packet.mid.startswith(plan.prefix)
    # forward shapes relay -> end even though the scenario names the link end~relay
    assert link.packet.ns_a == plan.host("relay").netns and link.packet.addr_a == link.addr_of("relay")
    assert plan.host("end").peers == (f"{link.addr_of('relay')}:{MESH_PORT}",)
    assert len(plan.host("relay").routes) == 1 and plan.link("hq", "relay").packet is None
    flat = [" ".join(c) for c in setup_commands(plan)]
    assert not any(f" {link.dev} " in c or c.endswith(f" {link.dev}") for c in flat)
    assert any("veth" in c for c in flat)
    # the forwarder's loss and jitter repeat run after run unless another seed is asked for
    assert link.packet.seed == make_plan(scenario, "pt", {("relay", "end"): "D"}).link("relay", "end").packet.seed
    other = make_plan(scenario, "pt", {("relay", "end"): "D"}, seed="7").link("relay", "end").packet
    assert other.seed == "7-1" and other.seed != link.packet.seed and "7-1" in other.forwarder_argv()
    with pytest.raises(EmulatorError):
        make_plan(scenario, "pt", {("hq", "end"): "C"})       # no such link
    with pytest.raises(EmulatorError):
        make_plan(scenario, "pt", {("relay", "end"): "F"})    # no such profile


def _forwarder():
    import os

    from meshmeet.testbed.packetlink import Forwarder

    r, w = os.pipe()
    return Forwarder(r, w, PRESETS["C"], seed=1), (r, w)


@given(st.binary(max_size=300))
@settings(max_examples=200)
def test_forwarder_control_refuses_bad_requests_and_changes_nothing(line):
    import os

    fwd, fds = _forwarder()
    try:
        answer = fwd.control(line)
        assert isinstance(answer, dict) and "ok" in answer
        if not answer["ok"]:
            assert fwd.profile == PRESETS["C"] and fwd.core.dirs[AB].shape == PRESETS["C"].forward
    finally:
        for fd in fds:
            os.close(fd)


def test_forwarder_control_changes_the_profile():
    import os

    fwd, fds = _forwarder()
    try:
        for bad in (b"[1]", b'{"op":"profile","spec":"Z"}', b'{"op":"profile","spec":5}', b"[" * 5000, b'{"op":"x"}'):
            assert fwd.control(bad)["ok"] is False
        assert fwd.profile == PRESETS["C"]
        answer = fwd.control(b'{"op":"profile","spec":"E"}')
        assert answer["ok"] and answer["profile"] == "E" and fwd.core.dirs[BA].shape == PRESETS["E"].back
        assert set(fwd.control(b'{"op":"stats"}')["dirs"]) == {AB, BA}
    finally:
        for fd in fds:
            os.close(fd)
