"""The testbed's pure parts: the delay line (Hypothesis), route parsing, the plan, the tree-whole check,
and the trio link emulator over real loopback sockets."""

from __future__ import annotations

import ipaddress
import math
from functools import partial

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.sim.scenario import load_scenario
from meshmeet.testbed.converge import check_tree, components
from meshmeet.testbed.delayline import SEGMENT_BYTES, DelayLine, Delivery, EmulatorError, LinkShape
from meshmeet.testbed.emulator import parse_route, serve_route
from meshmeet.testbed.plan import SUBNET, keepalive_for, link_commands, make_plan, setup_commands

# ----- delay line ----------------------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.floats(0, 2), st.binary(max_size=5000)),
        st.tuples(st.just("tick"), st.floats(0, 2), st.just(b"")),
    ),
    max_size=30,
)


def _drive(line: DelayLine, schedule, close_at: float | None):
    """Feed the schedule (times are increments); collect (time, bytes, eof) of every delivery."""
    now, fed, got = 0.0, [], []

    def drain(until: float) -> None:
        while line.next_deadline() <= until and line.next_deadline() != math.inf:
            t = line.next_deadline()
            out = line.receive(t)
            got.append((t, out.data, out.eof))

    for kind, dt, data in schedule:
        now += dt
        drain(now)
        if kind == "send" and line.room() >= len(data):
            line.send(data, now)
            fed.append((now, data))
    if close_at is not None:
        now += close_at
        drain(now)
        line.close(now)
    drain(math.inf)
    return fed, got, now


@settings(max_examples=150, deadline=None)
@given(ops, st.floats(0, 1), st.one_of(st.none(), st.floats(8e3, 1e8)), st.one_of(st.none(), st.floats(0, 1)))
def test_delay_line_keeps_bytes_order_delay_and_rate(schedule, delay_s, rate_bps, close_after):
    line = DelayLine(LinkShape(delay_s=delay_s, rate_bps=rate_bps))
    fed, got, _ = _drive(line, schedule, close_after)
    assert b"".join(d for _, d, _ in got) == b"".join(d for _, d in fed)
    # No byte comes out before it went in plus the delay (plus its serialisation at the cap).
    sent_before = 0
    out_total = 0
    fed_marks = []  # (cumulative bytes after this send, time it entered)
    for t, data in fed:
        sent_before += len(data)
        fed_marks.append((sent_before, t))
    for t, data, _ in got:
        out_total += len(data)
        if data:
            entered = next(ft for mark, ft in fed_marks if mark >= out_total)
            assert t >= entered + delay_s - 1e-9
    if rate_bps is not None and fed:
        first = fed[0][0]
        delivered = 0
        for t, data, _ in got:
            delivered += len(data)
            assert delivered * 8 <= rate_bps * (t - delay_s - first) + 1e-6 * rate_bps + 8 * len(data) + 8 * SEGMENT_BYTES
    eofs = [i for i, (_, _, eof) in enumerate(got) if eof]
    if close_after is None:
        assert eofs == [] and line.next_deadline() == math.inf
    else:
        assert eofs == [len(got) - 1] and line.finished
        assert got[-1][0] >= max((t for t, _ in fed), default=0) + delay_s - 1e-9


@settings(max_examples=100, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.one_of(st.none(), st.floats(allow_nan=True)), st.integers(-10, 10**7))
def test_link_shape_rejects_bad_values_with_its_own_error(delay, rate, buffer):
    try:
        shape = LinkShape(delay_s=delay, rate_bps=rate, max_buffer_bytes=buffer)
    except EmulatorError:
        return
    assert 0 <= shape.delay_s <= 60 and buffer >= SEGMENT_BYTES
    assert shape.rate_bps is None or shape.rate_bps >= 8


def test_delay_line_refuses_overflow_and_send_after_close():
    line = DelayLine(LinkShape(delay_s=0.1, max_buffer_bytes=SEGMENT_BYTES * 2))
    line.send(b"x" * SEGMENT_BYTES * 2, 0.0)
    assert line.room() == 0
    with pytest.raises(EmulatorError):
        line.send(b"y", 0.0)
    assert line.receive(0.05).data == b""          # not due yet
    assert len(line.receive(0.1).data) == SEGMENT_BYTES * 2
    assert line.room() == SEGMENT_BYTES * 2
    line.close(0.2)
    with pytest.raises(EmulatorError):
        line.send(b"z", 0.3)
    assert line.receive(0.25) == Delivery(b"", False)   # the end is due one delay after close
    assert line.receive(0.31).eof and line.finished


def test_rate_cap_spreads_a_burst_over_time():
    line = DelayLine(LinkShape(delay_s=0.0, rate_bps=8000.0))  # 1000 B/s
    line.send(b"a" * 5000, 0.0)
    assert len(line.receive(1.0).data) < 1000 + SEGMENT_BYTES
    assert len(line.receive(5.0).data) > 0
    assert line.next_deadline() == math.inf


# ----- route parsing -------------------------------------------------------------------------

def test_parse_route_round_trips():
    route = parse_route("127.0.0.1:17000=10.77.0.2:7733,delay=0.035,rate=1000000")
    assert (route.listen_port, route.target_host, route.target_port) == (17000, "10.77.0.2", 7733)
    assert route.shape.delay_s == 0.035 and route.shape.rate_bps == 1e6
    assert parse_route(str(route)) == route


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_parse_route_hostile_text_gives_emulator_error(text):
    try:
        route = parse_route(text)
    except EmulatorError:
        return
    assert 0 <= route.listen_port <= 65535 and 0 <= route.target_port <= 65535


# ----- plan ----------------------------------------------------------------------------------

scenario_dicts = st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.lists(st.text("abcXYZ-_ .ơ0", min_size=1, max_size=50), min_size=n, max_size=n, unique=True),
    st.sets(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda p: p[0] < p[1]), max_size=30),
    st.sampled_from(["lan", "fibre", "4g", "lora"]),
))


@settings(max_examples=100, deadline=None)
@given(scenario_dicts, st.sampled_from(["tb", "x1", "abcdefgh"]))
def test_plan_names_addresses_and_ports_are_unique_and_private(data, run):
    names, pairs, kind = data
    scenario = load_scenario({
        "nodes": [{"id": n} for n in names],
        "links": [{"a": names[i], "b": names[j], "kind": kind} for i, j in sorted(pairs)],
    })
    plan = make_plan(scenario, run)
    netns_names = [h.netns for h in plan.hosts]
    assert len(set(netns_names)) == len(netns_names)
    assert all(n.startswith(f"mm-{run}-") for n in netns_names)
    addrs = [a for link in plan.links for a in (link.addr_a, link.addr_b)]
    assert len(set(addrs)) == len(addrs)
    assert all(ipaddress.IPv4Address(a) in SUBNET for a in addrs)
    for link in plan.links:
        assert len(link.dev) <= 15
        assert ipaddress.IPv4Network(f"{link.addr_a}/30", strict=False) == ipaddress.IPv4Network(f"{link.addr_b}/30", strict=False)
    for host in plan.hosts:
        ports = [r.listen_port for r in host.routes]
        assert len(set(ports)) == len(ports) and all(r.listen_host == "127.0.0.1" for r in host.routes)
        assert 0.05 <= host.keepalive_s <= 5.0
    for argv in setup_commands(plan):
        assert argv[0] == "ip"
        joined = " ".join(argv)
        assert "mm-" in joined  # every command names one of our namespaces or veths


def test_plan_for_a_chain_dials_both_ways_through_proxies():
    scenario = load_scenario({"nodes": [{"id": "hq", "role": "hq"}, {"id": "a"}], "links": [{"a": "hq", "b": "a", "kind": "4g"}]})
    plan = make_plan(scenario, "tb")
    hq, a = plan.host("hq"), plan.host("a")
    assert hq.routes[0].target_host == plan.links[0].addr_b and a.routes[0].target_host == plan.links[0].addr_a
    assert hq.routes[0].shape.delay_s == 0.035
    assert hq.peers == (f"127.0.0.1:{plan.links[0].proxy_port}",)
    assert hq.keepalive_s == keepalive_for(3.0) == 1.0
    cmds = [" ".join(c) for c in setup_commands(plan)]
    assert any("tbf rate 10000000bit" in c for c in cmds)
    assert sum("statistic --mode random --probability 0.010000" in c for c in cmds) == 2
    assert [c[-1] for c in link_commands(plan, "a", "hq", up=False)] == ["down", "down"]


def test_bad_run_name_is_refused():
    scenario = load_scenario({"nodes": [{"id": "hq"}]})
    for bad in ("", "UPPER", "with space", "toolongname", "../x"):
        with pytest.raises(EmulatorError):
            make_plan(scenario, bad)


# ----- tree-whole check ----------------------------------------------------------------------

def _t(root, parent, children=()):
    return {"root": root, "parent": parent, "children": list(children)}


def test_check_tree_accepts_a_whole_chain_and_names_what_is_wrong():
    links = {frozenset(("hq", "a")), frozenset(("a", "b"))}
    whole = {"hq": _t("hq", None, ["a"]), "a": _t("hq", "hq", ["b"]), "b": _t("hq", "a")}
    assert check_tree(whole, links, {"hq": "hq", "a": "hq", "b": "hq"}).whole
    assert not check_tree({**whole, "b": None}, links).whole
    assert "agreement" in check_tree({**whole, "b": _t("b", None)}, links).why
    assert "child" in check_tree({**whole, "a": _t("hq", "hq", [])}, links).why
    assert "expected" in check_tree(whole, links, {"hq": "a", "a": "a", "b": "a"}).why
    # b cut off: two parts, each whole on its own.
    cut = {frozenset(("hq", "a"))}
    assert check_tree({"hq": _t("hq", None, ["a"]), "a": _t("hq", "hq"), "b": _t("b", None)}, cut).whole
    assert not check_tree(whole, cut).whole


def test_check_tree_finds_a_parent_loop():
    links = {frozenset(p) for p in (("r", "a"), ("a", "b"), ("b", "c"), ("c", "a"))}
    trees = {"r": _t("r", None), "a": _t("r", "c", ["b"]), "b": _t("r", "a", ["c"]), "c": _t("r", "b", ["a"])}
    assert "loop" in check_tree(trees, links).why


@settings(max_examples=100, deadline=None)
@given(st.sets(st.tuples(st.integers(0, 7), st.integers(0, 7)).filter(lambda p: p[0] != p[1]), max_size=20))
def test_components_partition_the_nodes(pairs):
    nodes = {str(i) for i in range(8)}
    links = {frozenset((str(a), str(b))) for a, b in pairs}
    parts = components(nodes, links)
    assert set().union(*parts) == nodes and sum(len(p) for p in parts) == len(nodes)
    for link in links:
        assert sum(1 for p in parts if link <= p) == 1


# ----- the trio emulator on real loopback sockets --------------------------------------------

async def test_emulator_delays_and_forwards_both_ways_and_passes_eof():
    async def echo_upper(stream: trio.SocketStream) -> None:
        while data := await stream.receive_some(65536):
            await stream.send_all(data.upper())
        await stream.send_eof()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, echo_upper, 0, host="127.0.0.1"))
        target_port = listeners[0].socket.getsockname()[1]
        route = parse_route(f"127.0.0.1:0=127.0.0.1:{target_port},delay=0.05")
        port = await nursery.start(serve_route, route)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        payload = bytes(range(97, 123)) * 4000  # ~100 kB
        sent_at = trio.current_time()
        await stream.send_all(payload)
        await stream.send_eof()
        received = b""
        first_at = None
        while chunk := await stream.receive_some(65536):
            first_at = first_at or trio.current_time()
            received += chunk
        assert received == payload.upper()
        assert first_at - sent_at >= 0.1  # one delay each way: a floor, never a ceiling
        nursery.cancel_scope.cancel()


async def test_emulator_closes_the_client_when_the_target_is_unreachable():
    with trio.socket.socket() as probe:  # a port nobody listens on
        await probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_route, parse_route(f"127.0.0.1:0=127.0.0.1:{dead_port}"))
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(30):  # hang guard
            try:
                assert await stream.receive_some(10) == b""
            except trio.BrokenResourceError:
                pass
        nursery.cancel_scope.cancel()


async def test_emulator_survives_a_reset_and_serves_the_next_connection():
    import socket
    import struct

    resets = 0

    async def reset_then_echo(stream: trio.SocketStream) -> None:
        nonlocal resets
        if resets == 0:
            resets += 1
            await stream.receive_some(10)
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            stream.socket.close()   # RST
            return
        while data := await stream.receive_some(65536):
            await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, reset_then_echo, 0, host="127.0.0.1"))
        target_port = listeners[0].socket.getsockname()[1]
        port = await nursery.start(serve_route, parse_route(f"127.0.0.1:0=127.0.0.1:{target_port},delay=0.01"))
        first = await trio.open_tcp_stream("127.0.0.1", port)
        await first.send_all(b"hello")
        with trio.fail_after(30):  # hang guard
            try:
                while await first.receive_some(10):
                    pass
            except trio.BrokenResourceError:
                pass
        second = await trio.open_tcp_stream("127.0.0.1", port)
        await second.send_all(b"still there?")
        with trio.fail_after(30):
            got = b""
            while len(got) < 12:
                got += await second.receive_some(100)
        assert got == b"still there?"
        nursery.cancel_scope.cancel()
