"""Five emulated RAK3172 modems in a chain, 10 % loss, no IP: real drivers, real ptys, MockClock."""

from __future__ import annotations

import random

import pytest
import trio

from meshmeet.lora.airtime import WINDOW_S
from meshmeet.lora.at import P2PSettings
from meshmeet.lora.events import Acked, Delivered
from meshmeet.lora_io.emulator import EmulatedRak3172, RadioChannel, Topology
from meshmeet.lora_io.link import LoraLink
from meshmeet.lora.messages import Alert, Attendance
from meshmeet.lora_io.rak3172 import Rak3172
from meshmeet.lora_io.serial_io import open_serial

from test_lora_helpers import make_cores

FAST = P2PSettings(921_500_000, 7, 250, 0, 16, 14)


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


@pytest.mark.slow
async def test_chain_of_three_e22_modems_alert_ack_and_attendance(pty_clock):
    """The same flood over the E22 driver (config mode through the emulated M0/M1 pins)."""
    from meshmeet.lora_io.e22 import AIR_RATE_PARAMS, E22
    from meshmeet.lora.e22proto import E22Settings
    from meshmeet.lora_io.emulator import EmulatedE22

    async with trio.open_nursery() as n:
        channel = RadioChannel(Topology.chain(3, 0.05), n, random.Random(3))
        cores, _ = make_cores([1, 2, 3], mtu=239, ack_timeout_s=30.0, max_retries=10, extra_air_bytes=1,
                              params=AIR_RATE_PARAMS[2400])
        links, events = {}, {i: [] for i in cores}
        for i in cores:
            modem = EmulatedE22(i, channel)
            await n.start(modem.serve)
            driver = E22(open_serial(modem.path, 9600).stream, modem.pins)
            await n.start(driver.run)
            back = await driver.configure(E22Settings(channel=71, power_dbm=10))
            assert back.freq_mhz == 921.125
            assert driver.params == cores[i].config.params and driver.mtu_bytes == 239
            links[i] = LoraLink(cores[i], driver, events[i].append)
            await n.start(links[i].run)
        alert = Alert("Khẩn: nước lên, sơ tán thôn 3", 1_700_000_000)
        mid = links[1].send(alert, ack_from=frozenset({2, 3}))
        links[3].send(Attendance(meeting=4, present=30, expected=33), dest=1)
        with trio.move_on_after(3000):
            while True:
                acked = {e.by for e in events[1] if isinstance(e, Acked) and e.msg_id == mid}
                if acked == {2, 3} and any(isinstance(e, Delivered) for e in events[1]):
                    break
                await trio.sleep(15)
        assert any(isinstance(e, Delivered) and e.message == alert for e in events[3])
        assert {e.by for e in events[1] if isinstance(e, Acked) and e.msg_id == mid} == {2, 3}
        assert [e.message for e in events[1] if isinstance(e, Delivered)] == [Attendance(4, 30, 33)]
        for node in links:
            ledger = channel.ledger(node)
            assert ledger, "every modem transmitted"
            for t, _ in ledger:
                assert sum(a for s, a in ledger if t - WINDOW_S < s <= t) <= 36.0
        n.cancel_scope.cancel()
