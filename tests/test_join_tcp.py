"""Join over real loopback TCP between real data dirs, with a minimal trio driver like the node's.

The two small drivers below are what the node's listener (on a first byte 0x4A) and the CLI's
`meshmeet join` do around the sans-IO JoinServer / JoinClient.
"""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path

import pytest
import trio

from meshmeet.membership.datadir import (
    PendingJoin,
    create_invite,
    finish_join,
    init_commune,
    load_membership,
    load_roster,
    prepare_join,
    save_roster,
)
from meshmeet.membership.invite import parse_address
from meshmeet.membership.join import JoinAccepted, JoinCode, Joined, JoinRefused, JoinServer, is_join_start

RECEIVE_BYTES = 65536


async def serve_join(stream: trio.SocketStream, data_dir: Path, outcomes: list) -> None:
    """The member side: read until the sans-IO server has an outcome, answer, save, close."""
    node, roster, _ = load_membership(data_dir)
    server = JoinServer(roster, node, trio.current_time(), time.time())
    first = await stream.receive_some(RECEIVE_BYTES)
    assert is_join_start(first)
    outcome = server.receive_data(first, trio.current_time())
    with trio.move_on_at(server.deadline):
        while outcome is None:
            outcome = server.receive_data(await stream.receive_some(RECEIVE_BYTES), trio.current_time())
    outcome = outcome or server.timeout(trio.current_time())
    await stream.send_all(server.data_to_send())
    if isinstance(outcome, JoinAccepted) and outcome.new:
        save_roster(data_dir, roster)
    outcomes.append(outcome)
    await stream.aclose()


async def join_over_tcp(pending: PendingJoin) -> Joined | JoinRefused:
    """The hall side: try each address of the invite until one member answers."""
    result: Joined | JoinRefused = JoinRefused(JoinCode.CLOSED, "", "")
    for address in pending.addresses:
        host, port = parse_address(address)
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            continue
        async with stream:
            client = pending.client(os.urandom(16), trio.current_time())
            await stream.send_all(client.data_to_send())
            out = None
            with trio.move_on_at(client.deadline):
                while out is None:
                    out = client.receive_data(await stream.receive_some(RECEIVE_BYTES), trio.current_time())
            result = out or client.timeout(trio.current_time())
        if isinstance(result, Joined):
            return result
    return result


async def test_join_over_loopback_then_reuse_is_refused(tmp_path: Path) -> None:
    hq = tmp_path / "hq"
    init_commune(hq, "Xã Triệu Sơn", "UBND xã", time.time())
    outcomes: list = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, lambda s: serve_join(s, hq, outcomes), 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        # first address is dead: the hall moves on to the next member
        dead = trio.socket.socket()
        await dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        dead.close()
        code, _ = create_invite(hq, "Thôn Xuân Tiên", "hall", 3600,
                                [f"127.0.0.1:{dead_port}", f"127.0.0.1:{port}"], time.time())

        hall = tmp_path / "hall"
        pending = prepare_join(hall, code, time.time())
        got = await join_over_tcp(pending)
        assert isinstance(got, Joined), got
        summary = finish_join(hall, pending, got.roster)
        assert summary.short_id == 2 and summary.site == "Thôn Xuân Tiên"
        assert load_roster(hq).member_by_short_id(2).public_key == pending.node_key.public_key
        assert load_roster(hall).digest() == load_roster(hq).digest()

        # the same code from another data dir: refused with a clear message
        thief = prepare_join(tmp_path / "thief", code, time.time())
        refused = await join_over_tcp(thief)
        assert isinstance(refused, JoinRefused) and refused.code == JoinCode.ALREADY_CLAIMED
        assert "already used" in refused.en and refused.vi
        nursery.cancel_scope.cancel()
    assert [type(o) for o in outcomes] == [JoinAccepted, JoinRefused]


async def test_join_through_a_hall_while_hq_is_down(tmp_path: Path) -> None:
    """HQ makes an invite offline; only an existing hall is reachable; the join still works."""
    hq, hall1, hall2 = tmp_path / "hq", tmp_path / "h1", tmp_path / "h2"
    init_commune(hq, "Xã Triệu Sơn", "UBND xã", time.time())
    outcomes: list = []
    async with trio.open_nursery() as hq_running:
        # hall 1 joins through HQ
        serve = partial(trio.serve_tcp, lambda s: serve_join(s, hq, outcomes), 0, host="127.0.0.1")
        hq_port = (await hq_running.start(serve))[0].socket.getsockname()[1]
        code1, _ = create_invite(hq, "Thôn A", "hall", 3600, [f"127.0.0.1:{hq_port}"], time.time())
        p1 = prepare_join(hall1, code1, time.time())
        got1 = await join_over_tcp(p1)
        assert isinstance(got1, Joined)
        finish_join(hall1, p1, got1.roster)
        hq_running.cancel_scope.cancel()  # HQ goes down
    async with trio.open_nursery() as nursery:
        # hall 1 serves joins; HQ's new invite names hall 1's address
        listeners = await nursery.start(partial(trio.serve_tcp, lambda s: serve_join(s, hall1, outcomes), 0, host="127.0.0.1"))
        h1_port = listeners[0].socket.getsockname()[1]
        code2, seat2 = create_invite(hq, "Thôn B", "hall", 3600,
                                     [f"127.0.0.1:{hq_port}", f"127.0.0.1:{h1_port}"], time.time())
        p2 = prepare_join(hall2, code2, time.time())
        got2 = await join_over_tcp(p2)
        assert isinstance(got2, Joined), got2
        assert got2.responder.site == "Thôn A"
        finish_join(hall2, p2, got2.roster)
        assert load_roster(hall1).member_by_short_id(seat2.short_id).public_key == p2.node_key.public_key
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("junk", [b"J\xff\xff\xff\xff", b"J\x00\x00\x00\x03abc", b"JJJJJJJJJJJJJJ"])
async def test_hostile_client_gets_an_error_answer_and_roster_is_untouched(tmp_path: Path, junk: bytes) -> None:
    hq = tmp_path / "hq"
    init_commune(hq, "Xã Triệu Sơn", "UBND xã", time.time())
    before = load_roster(hq).digest()
    outcomes: list = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, lambda s: serve_join(s, hq, outcomes), 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(junk)
            answer = b""
            while chunk := await stream.receive_some(RECEIVE_BYTES):
                answer += chunk
        assert answer.startswith(b"J")
        nursery.cancel_scope.cancel()
    assert len(outcomes) == 1 and outcomes[0].code == JoinCode.MALFORMED
    assert load_roster(hq).digest() == before
