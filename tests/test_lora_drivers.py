"""Drivers against the pty emulator (real ptys, real pyserial, FdStream), parsers under Hypothesis."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given, settings, strategies as st

from meshmeet.lora.at import AtParser, P2PSettings
from meshmeet.lora_io.check import LoraConfig, check_modem
from meshmeet.lora_io.e22 import E22
from meshmeet.lora.e22proto import E22Error, E22Settings, TransparentDeframer, parse_reply
from meshmeet.lora_io.emulator import EmulatedE22, EmulatedRak3172, RadioChannel, Topology
from meshmeet.lora_io.modem import ModemError
from meshmeet.lora_io.rak3172 import Rak3172
from meshmeet.lora_io.serial_io import open_serial

VN = P2PSettings(921_500_000, 9, 250, 0, 16, 14)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_at_parser_never_raises(chunks):
    p = AtParser()
    for c in chunks:
        p.feed(c)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_e22_reply_parser_gives_clean_error(data):
    try:
        parse_reply(data)
    except E22Error:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=239), max_size=6))
def test_e22_deframer_round_trips(frames):
    d = TransparentDeframer()
    stream = b"".join(bytes([len(f)]) + f for f in frames)
    out = []
    for i in range(0, len(stream), 7):
        out += d.feed(stream[i : i + 7])
    assert out == frames


async def _rak_pair(nursery, behaviour="ok"):
    channel = RadioChannel(Topology.chain(2), nursery)
    modems = [EmulatedRak3172(1, channel), EmulatedRak3172(2, channel, behaviour=behaviour)]
    drivers = []
    for m in modems:
        await nursery.start(m.serve)
        port = open_serial(m.path, 115200)
        d = Rak3172(port.stream, timeout_s=1.0)
        await nursery.start(d.run)
        drivers.append(d)
    return modems, drivers


async def test_rak3172_configures_sends_and_receives(pty_clock):
    async with trio.open_nursery() as n:
        modems, (a, b) = await _rak_pair(n)
        assert await a.configure(VN) == VN
        assert await b.configure(VN) == VN
        assert modems[0].p2p == VN and modems[0].nwm == 0 and modems[0].receiving
        await a.send(b"\x01\x02meshmeet")
        got = await b.recv()
        assert got.data == b"\x01\x02meshmeet" and got.rssi is not None
        with pytest.raises(ModemError):
            await a.command("AT+P2P=1:2:3")  # the modem's AT_PARAM_ERROR becomes a ModemError
        n.cancel_scope.cancel()


async def test_rak3172_silent_modem_gives_clean_error(pty_clock):
    async with trio.open_nursery() as n:
        _, (_, silent) = await _rak_pair(n, "silent")
        with pytest.raises(ModemError) as err:
            await silent.configure(VN)
        assert "không trả lời" in err.value.vi
        n.cancel_scope.cancel()


async def test_rak3172_garbage_modem_gives_clean_error(pty_clock):
    async with trio.open_nursery() as n:
        _, (_, noisy) = await _rak_pair(n, "garbage")
        with pytest.raises(ModemError):
            await noisy.configure(VN)
        n.cancel_scope.cancel()


async def _e22_pair(nursery, behaviour="ok"):
    channel = RadioChannel(Topology.chain(2), nursery)
    modems = [EmulatedE22(1, channel), EmulatedE22(2, channel, behaviour=behaviour)]
    drivers = []
    for m in modems:
        await nursery.start(m.serve)
        port = open_serial(m.path, 9600)
        d = E22(port.stream, m.pins, timeout_s=1.0)
        await nursery.start(d.run)
        drivers.append(d)
    return modems, drivers


async def test_e22_configures_sends_and_receives(pty_clock):
    want = E22Settings(channel=71, power_dbm=10)
    async with trio.open_nursery() as n:
        modems, (a, b) = await _e22_pair(n)
        assert await a.configure(want) == want
        assert await b.configure(want) == want
        assert modems[0].settings.freq_mhz == 921.125 and not modems[0].pins.config
        await a.send(b"frame-one")
        await a.send(b"frame-two")
        assert (await b.recv()).data == b"frame-one"
        assert (await b.recv()).data == b"frame-two"
        n.cancel_scope.cancel()


@pytest.mark.parametrize("behaviour", ["silent", "garbage"])
async def test_e22_bad_modem_gives_clean_error(pty_clock, behaviour):
    async with trio.open_nursery() as n:
        _, (_, bad) = await _e22_pair(n, behaviour)
        with pytest.raises(ModemError):
            await bad.configure(E22Settings())
        n.cancel_scope.cancel()


async def test_check_modem_reports_ok_and_plain_problems(pty_clock):
    async with trio.open_nursery() as n:
        channel = RadioChannel(Topology.chain(1), n)
        m = EmulatedRak3172(1, channel)
        await n.start(m.serve)
        good = await check_modem(LoraConfig(port=m.path))
        assert good.ok and good.applied["command"] == "AT+P2P=921500000:9:250:0:16:14"
        assert good.budget_s_per_hour == 36.0
        bad = await check_modem(LoraConfig(port=m.path, freq_hz=868_000_000, power_dbm=20))
        assert not bad.ok
        assert any("ngoài băng" in p.vi for p in bad.problems)
        assert any("power 20 dBm" in p.en for p in bad.problems)
        silent = EmulatedRak3172(2, channel, behaviour="silent")
        await n.start(silent.serve)
        quiet = await check_modem(LoraConfig(port=silent.path))
        assert not quiet.ok and "did not answer" in quiet.problems[0].en
        n.cancel_scope.cancel()
