"""Emulated LoRa modems on pseudo-terminals, sharing one simulated radio channel.

`RadioChannel` charges airtime with the LoRa formula, drops packets by per-link loss, delivers
only to nodes in range (a `Topology`), loses both packets when two overlap at a receiver
(collision) and anything heard while the receiver itself transmits (half duplex). Emulated
RAK3172 (RUI3 AT P2P) and E22 (registers in config mode, transparent bytes) modems speak the
real protocols on the master side of a pty, so the real drivers run against them. Behaviour
"silent" never answers; "garbage" answers noise. Time is `trio.current_time()`, so tests can run
under MockClock. This module must never be imported by the node for real traffic.
"""

from __future__ import annotations

import logging
import os
import random
import tomllib
import tty
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import trio

from ..lora.airtime import LoraParams, time_on_air_s
from ..lora.at import P2PSettings, PRECV_CONTINUOUS
from .e22 import AIR_RATE_PARAMS
from ..lora.e22proto import READ, WRITE, E22Settings

log = logging.getLogger(__name__)

RAK_DEFAULT = P2PSettings(868_000_000, 7, 125, 0, 8, 14)
E22_DEFAULT_REGS = E22Settings(channel=18).registers()  # factory default 868.125 MHz


@dataclass(frozen=True)
class Topology:
    """Undirected links with a loss probability each."""

    links: dict[frozenset[int], float]
    nodes: tuple[int, ...]

    @classmethod
    def chain(cls, n: int, loss: float = 0.0, first: int = 1) -> "Topology":
        ids = tuple(range(first, first + n))
        return cls({frozenset((a, a + 1)): loss for a in ids[:-1]}, ids)

    @classmethod
    def full(cls, n: int, loss: float = 0.0, first: int = 1) -> "Topology":
        ids = tuple(range(first, first + n))
        return cls({frozenset((a, b)): loss for a in ids for b in ids if a < b}, ids)

    @classmethod
    def load(cls, path: Path) -> "Topology":
        """TOML: nodes = [1, 2, 3]; default_loss = 0.1; [[link]] a = 1, b = 2, loss = 0.05."""
        doc = tomllib.loads(path.read_text())
        default = float(doc.get("default_loss", 0.0))
        links = {frozenset((int(l["a"]), int(l["b"]))): float(l.get("loss", default)) for l in doc.get("link", [])}
        nodes = tuple(int(n) for n in doc.get("nodes", sorted({x for k in links for x in k})))
        return cls(links, nodes)

    def neighbours(self, node: int) -> dict[int, float]:
        return {next(iter(k - {node})): loss for k, loss in self.links.items() if node in k and len(k) == 2}


@dataclass
class _Rx:
    sender: int
    data: bytes
    start: float
    end: float
    lost: bool
    collided: bool = False


@dataclass
class _Radio:
    node: int
    deliver: Callable[[bytes, int, int], None]
    tune: Callable[[], tuple]  # who can hear whom: equal tuning tuples only
    params: Callable[[], LoraParams]
    tx: list[tuple[float, float]] = field(default_factory=list)
    inflight: list[_Rx] = field(default_factory=list)


class RadioChannel:
    def __init__(self, topology: Topology, nursery: trio.Nursery, rng: random.Random | None = None) -> None:
        self.topology = topology
        self._nursery = nursery
        self._rng = rng or random.Random(7)
        self._radios: dict[int, _Radio] = {}
        self.stats = {"sent": 0, "delivered": 0, "lost": 0, "collided": 0, "half_duplex": 0}

    def attach(self, node: int, deliver: Callable[[bytes, int, int], None], tune: Callable[[], tuple],
               params: Callable[[], LoraParams]) -> None:
        self._radios[node] = _Radio(node, deliver, tune, params)

    def ledger(self, node: int) -> list[tuple[float, float]]:
        """(start, airtime) of every transmission by `node`."""
        return [(s, e - s) for s, e in self._radios[node].tx]

    def transmit(self, node: int, data: bytes) -> float:
        me = self._radios[node]
        now = trio.current_time()
        airtime = time_on_air_s(len(data), me.params())
        me.tx.append((now, now + airtime))
        self.stats["sent"] += 1
        log.debug("radio %d sends %d B (%.3f s) at %.3f", node, len(data), airtime, now)
        for other, loss in self.topology.neighbours(node).items():
            radio = self._radios.get(other)
            if radio is None or radio.tune() != me.tune():
                continue
            rx = _Rx(node, data, now, now + airtime, lost=self._rng.random() < loss)
            for prior in radio.inflight:
                if prior.end > now:
                    prior.collided = rx.collided = True
            radio.inflight.append(rx)
            self._nursery.start_soon(self._deliver, radio, rx)
        return airtime

    async def _deliver(self, radio: _Radio, rx: _Rx) -> None:
        await trio.sleep_until(rx.end)
        radio.inflight.remove(rx)
        if rx.lost:
            self.stats["lost"] += 1
            log.debug("radio %d lost a frame from %d (link loss)", radio.node, rx.sender)
        elif rx.collided:
            self.stats["collided"] += 1
            log.debug("radio %d lost a frame from %d (collision)", radio.node, rx.sender)
        elif any(s < rx.end and e > rx.start for s, e in radio.tx):
            self.stats["half_duplex"] += 1
            log.debug("radio %d lost a frame from %d (it was transmitting)", radio.node, rx.sender)
        else:
            self.stats["delivered"] += 1
            radio.deliver(rx.data, -60 - int(self._rng.random() * 40), 8)


class _PtyModem:
    """Shared plumbing: the pty pair and a writer task."""

    def __init__(self, node: int, channel: RadioChannel, behaviour: str, rng: random.Random) -> None:
        if behaviour not in ("ok", "silent", "garbage"):
            raise ValueError(behaviour)
        self.node = node
        self.channel = channel
        self.behaviour = behaviour
        self.rng = rng
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self._out_send, self._out_recv = trio.open_memory_channel[bytes](256)

    def write(self, data: bytes) -> None:
        try:
            self._out_send.send_nowait(data)
        except trio.WouldBlock:
            pass  # a real UART would overrun too

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        stream = trio.lowlevel.FdStream(self.master)
        try:
            async with trio.open_nursery() as n:
                n.start_soon(self._writer, stream)
                task_status.started(self.path)
                while True:
                    try:
                        data = await stream.receive_some(4096)
                    except (OSError, trio.BrokenResourceError):
                        return
                    if not data:
                        return
                    if self.behaviour == "silent":
                        continue
                    if self.behaviour == "garbage":
                        self.write(bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 40))))
                        continue
                    await self.on_bytes(data)
        finally:
            os.close(self.slave)

    async def _writer(self, stream: trio.lowlevel.FdStream) -> None:
        async for data in self._out_recv:
            try:
                await stream.send_all(data)
            except (OSError, trio.BrokenResourceError):
                return

    async def on_bytes(self, data: bytes) -> None:
        raise NotImplementedError


class EmulatedRak3172(_PtyModem):
    """RUI3 AT P2P subset: AT, AT+NWM, AT+P2P, AT+PRECV, AT+PSEND."""

    def __init__(self, node: int, channel: RadioChannel, behaviour: str = "ok",
                 rng: random.Random | None = None) -> None:
        super().__init__(node, channel, behaviour, rng or random.Random(node))
        self.nwm = 1
        self.p2p = RAK_DEFAULT
        self.receiving = False
        self._buf = bytearray()
        channel.attach(node, self._heard, lambda: ("rak", self.p2p.freq_hz, self.p2p.sf, self.p2p.bw_khz),
                       self._params)

    def _params(self) -> LoraParams:
        return LoraParams(sf=self.p2p.sf, bw_hz=self.p2p.bw_khz * 1000, cr=self.p2p.cr + 1,
                          preamble=self.p2p.preamble)

    def _heard(self, data: bytes, rssi: int, snr: int) -> None:
        if self.receiving and self.nwm == 0:
            self.write(f"+EVT:RXP2P:{rssi}:{snr}:{data.hex().upper()}\r\n".encode())

    async def on_bytes(self, data: bytes) -> None:
        self._buf += data
        while (nl := self._buf.find(b"\n")) >= 0:
            line = bytes(self._buf[:nl]).strip().decode("ascii", "replace")
            del self._buf[: nl + 1]
            if line:
                await self._command(line)

    def _reply(self, *lines: str) -> None:
        self.write("".join(l + "\r\n" for l in lines).encode())

    async def _command(self, line: str) -> None:
        name, _, arg = line.partition("=")
        name = name.upper()
        if name == "AT" and not arg:
            return self._reply("OK")
        if name == "AT+NWM":
            if arg == "?":
                return self._reply(f"AT+NWM={self.nwm}", "OK")
            if arg in ("0", "1", "2"):
                self.nwm = int(arg)
                return self._reply("OK")
            return self._reply("AT_PARAM_ERROR")
        if name == "AT+P2P":
            if arg == "?":
                return self._reply(self.p2p.command(), "OK")
            try:
                s = P2PSettings.parse(arg)
            except ValueError:
                return self._reply("AT_PARAM_ERROR")
            if not (150_000_000 <= s.freq_hz <= 960_000_000 and 5 <= s.sf <= 12 and s.bw_khz in (125, 250, 500)
                    and 0 <= s.cr <= 3 and 5 <= s.preamble <= 65535 and 5 <= s.power_dbm <= 22):
                return self._reply("AT_PARAM_ERROR")
            self.p2p = s
            return self._reply("OK")
        if name == "AT+PRECV":
            if self.nwm != 0:
                return self._reply("AT_ERROR")
            if arg in ("0", str(PRECV_CONTINUOUS), "65535"):
                self.receiving = arg != "0"
                return self._reply("OK")
            return self._reply("AT_PARAM_ERROR")
        if name == "AT+PSEND":
            if self.nwm != 0:
                return self._reply("AT_ERROR")
            try:
                payload = bytes.fromhex(arg)
            except ValueError:
                return self._reply("AT_PARAM_ERROR")
            if not 0 < len(payload) <= 255:
                return self._reply("AT_PARAM_ERROR")
            self._reply("OK")
            airtime = self.channel.transmit(self.node, payload)
            await trio.sleep(airtime)
            return self._reply("+EVT:TXP2P DONE")
        return self._reply("AT_COMMAND_NOT_FOUND")


class E22Pins:
    """The emulated M0/M1 lines (the driver's ModePins)."""

    def __init__(self) -> None:
        self.config = False

    def set_config_mode(self, config: bool) -> None:
        self.config = config


class EmulatedE22(_PtyModem):
    """E22-900T22: C0/C1 register commands in config mode, transparent packets otherwise.

    Each chunk the host writes in transparent mode becomes one packet (split at the sub-packet
    size), as the module does after a short UART idle.
    """

    def __init__(self, node: int, channel: RadioChannel, behaviour: str = "ok",
                 rng: random.Random | None = None) -> None:
        super().__init__(node, channel, behaviour, rng or random.Random(node))
        self.pins = E22Pins()
        self.regs = bytearray(E22_DEFAULT_REGS) + bytearray(2)
        self._cmd = bytearray()
        channel.attach(node, self._heard, lambda: ("e22", self.regs[5], self.regs[3] & 7, self.regs[2]),
                       self._params)

    @property
    def settings(self) -> E22Settings:
        return E22Settings.from_registers(bytes(self.regs[:7]))

    def _params(self) -> LoraParams:
        return AIR_RATE_PARAMS[self.settings.air_rate_bps]

    def _heard(self, data: bytes, rssi: int, snr: int) -> None:
        if not self.pins.config:
            self.write(data + (bytes([(rssi + 256) & 0xFF]) if self.regs[6] & 0x80 else b""))

    async def on_bytes(self, data: bytes) -> None:
        if self.pins.config:
            self._cmd += data
            while len(self._cmd) >= 3:
                op, addr, n = self._cmd[0], self._cmd[1], self._cmd[2]
                if op not in (WRITE, READ, 0xC2) or addr + n > 9:
                    self._cmd.clear()
                    self.write(b"\xff\xff\xff")
                    return
                if op == READ:
                    del self._cmd[:3]
                    self.write(bytes([READ, addr, n]) + bytes(self.regs[addr : addr + n]))
                    continue
                if len(self._cmd) < 3 + n:
                    return
                body = bytes(self._cmd[3 : 3 + n])
                del self._cmd[: 3 + n]
                self.regs[addr : addr + n] = body
                self.write(bytes([READ, addr, n]) + body)
            return
        size = self.settings.sub_packet_bytes
        for i in range(0, len(data), size):
            airtime = self.channel.transmit(self.node, data[i : i + size])
            await trio.sleep(airtime)
