"""Five emulated RAK3172 modems in a chain, 10 % loss, no IP: real drivers, real ptys, MockClock."""

from __future__ import annotations

import random

import pytest
import trio
from trio.testing import MockClock

from meshmeet.lora.airtime import WINDOW_S
from meshmeet.lora.at import P2PSettings
from meshmeet.lora.core import Acked, Delivered
from meshmeet.lora.emulator import EmulatedRak3172, RadioChannel, Topology
from meshmeet.lora.link import LoraLink
from meshmeet.lora.messages import Alert, Attendance
from meshmeet.lora.rak3172 import Rak3172
from meshmeet.lora.serial_io import open_serial

from test_lora_helpers import make_cores

FAST = P2PSettings(921_500_000, 7, 250, 0, 16, 14)


@pytest.fixture
def pty_clock():
    return MockClock(autojump_threshold=0.05)


async def start_chain(nursery, n: int, loss: float, seed: int = 5):
    channel = RadioChannel(Topology.chain(n, loss), nursery, random.Random(seed))
    cores, _ = make_cores(list(range(1, n + 1)), ack_timeout_s=15.0, max_retries=10)
    links, events = {}, {i: [] for i in cores}
    for i in cores:
        modem = EmulatedRak3172(i, channel)
        await nursery.start(modem.serve)
        driver = Rak3172(open_serial(modem.path, 115200).stream)
        await nursery.start(driver.run)
        await driver.configure(FAST)
        links[i] = LoraLink(cores[i], driver, events[i].append)
        await nursery.start(links[i].run)
    return channel, links, events


@pytest.mark.slow
async def test_chain_of_five_alert_ack_and_attendance(pty_clock):
    async with trio.open_nursery() as n:
        channel, links, events = await start_chain(n, 5, loss=0.10)
        alert = Alert("Khẩn: bão số 3, họp trực tuyến hoãn đến 14 giờ", 1_700_000_000)
        mid = links[1].send(alert, ack_from=frozenset({2, 3, 4, 5}))
        links[5].send(Attendance(meeting=3, present=41, expected=45), dest=1)
        with trio.move_on_after(3000):  # simulated seconds
            while True:
                acked = {e.by for e in events[1] if isinstance(e, Acked) and e.msg_id == mid}
                got_att = any(isinstance(e, Delivered) and isinstance(e.message, Attendance) for e in events[1])
                if acked == {2, 3, 4, 5} and got_att:
                    break
                await trio.sleep(15)  # each MockClock jump costs real idle time: poll sparsely
        diag = ({i: l.core.stats for i, l in links.items()}, {i: len(channel.ledger(i)) for i in links}, events[1], trio.current_time())
        assert any(isinstance(e, Delivered) and e.message == alert for e in events[5]), diag
        assert {e.by for e in events[1] if isinstance(e, Acked) and e.msg_id == mid} == {2, 3, 4, 5}
        assert [e.message for e in events[1] if isinstance(e, Delivered)] == [Attendance(3, 41, 45)]
        assert channel.stats["lost"] > 0 or channel.stats["delivered"] > 0
        for node in links:  # what the emulated radio recorded, not what the core believes
            ledger = channel.ledger(node)
            for t, _ in ledger:
                assert sum(a for s, a in ledger if t - WINDOW_S < s <= t) <= 36.0
        n.cancel_scope.cancel()
