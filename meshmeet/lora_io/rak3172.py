"""Driver for the RAK3172 in RUI3 AT P2P mode over a trio byte stream.

Sequence: AT, AT+NWM=0 (P2P), AT+P2P=freq:sf:bw:cr:preamble:power, read back AT+P2P=?,
AT+PRECV=65534 (receive continuously, sending allowed). Frames go out as AT+PSEND=<hex> and come
in as +EVT:RXP2P:rssi:snr:hex. Run `run()` in a nursery before any command. This module must
never block without a timeout on the modem, and never let modem bytes raise anything but
ModemError.
"""

from __future__ import annotations

import logging
import math

import trio

from ..lora.airtime import LoraParams, time_on_air_s
from ..lora.at import (AtError, AtOk, AtParser, AtValue, Garbage, P2PSettings, PRECV_CONTINUOUS, RxPacket,
                 TxDone, psend_command)
from .modem import ModemError, Received, no_answer

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 2.0
MTU_BYTES = 255  # RUI3 P2P payload limit per AT+PSEND
RX_QUEUE = 64
READ_BYTES = 4096


class Rak3172:
    extra_air_bytes = 0

    def __init__(self, stream: trio.abc.Stream, *, timeout_s: float = COMMAND_TIMEOUT_S,
                 mtu_bytes: int = MTU_BYTES) -> None:
        self._stream = stream
        self._timeout_s = timeout_s
        self.mtu_bytes = mtu_bytes
        self.params = LoraParams()
        self.garbage = 0
        self._parser = AtParser()
        self._resp_send, self._resp_recv = trio.open_memory_channel[object](64)
        self._rx_send, self._rx_recv = trio.open_memory_channel[Received](RX_QUEUE)
        self._tx_send, self._tx_recv = trio.open_memory_channel[None](4)
        self._lock = trio.Lock()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read the modem until the stream closes; dispatch responses, packets and TX events."""
        task_status.started()
        while True:
            try:
                data = await self._stream.receive_some(READ_BYTES)
            except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
                return
            if not data:
                return
            for ev in self._parser.feed(data):
                if isinstance(ev, RxPacket):
                    try:
                        self._rx_send.send_nowait(Received(ev.data, ev.rssi, ev.snr))
                    except trio.WouldBlock:
                        log.warning("LoRa rx queue full; dropping a packet")
                elif isinstance(ev, TxDone):
                    try:
                        self._tx_send.send_nowait(None)
                    except trio.WouldBlock:
                        pass
                elif isinstance(ev, Garbage):
                    self.garbage += 1
                else:
                    try:
                        self._resp_send.send_nowait(ev)
                    except trio.WouldBlock:
                        self.garbage += 1

    def _drain(self) -> None:
        while True:
            try:
                self._resp_recv.receive_nowait()
            except trio.WouldBlock:
                return

    async def command(self, cmd: str, timeout_s: float | None = None) -> list[str]:
        """Send one AT command; return its value lines. Raises ModemError on error or silence."""
        async with self._lock:
            self._drain()
            await self._stream.send_all(cmd.encode("ascii") + b"\r\n")
            values: list[str] = []
            with trio.move_on_after(timeout_s or self._timeout_s):
                while True:
                    ev = await self._resp_recv.receive()
                    if isinstance(ev, AtOk):
                        return values
                    if isinstance(ev, AtError):
                        raise ModemError(f"Modem từ chối lệnh {cmd.split('=')[0]}: {ev.word}",
                                         f"modem refused {cmd.split('=')[0]}: {ev.word}")
                    if isinstance(ev, AtValue):
                        values.append(ev.line)
            raise no_answer(cmd.split("=")[0])

    async def configure(self, s: P2PSettings) -> P2PSettings:
        """Apply P2P settings, read them back, start continuous receive. Returns the read-back."""
        await self.command("AT")
        await self.command("AT+NWM=0")
        await self.command(s.command())
        lines = await self.command("AT+P2P=?")
        try:
            back = P2PSettings.parse(lines[-1] if lines else "")
        except ValueError:
            raise ModemError("Modem trả về cấu hình P2P không đọc được",
                             "modem returned an unreadable P2P setting") from None
        if back != s:
            raise ModemError(f"Modem không giữ cấu hình: đặt {s.command()}, đọc lại {back.command()}",
                             f"modem did not keep the settings: set {s.command()}, read {back.command()}")
        await self.command(f"AT+PRECV={PRECV_CONTINUOUS}")
        self.params = LoraParams(sf=s.sf, bw_hz=s.bw_khz * 1000, cr=s.cr + 1, preamble=s.preamble)
        return back

    async def send(self, frame: bytes) -> None:
        """Transmit one frame and wait for +EVT:TXP2P DONE."""
        if not 0 < len(frame) <= self.mtu_bytes:
            raise ValueError("frame larger than the modem MTU")
        while True:  # forget a stale TX DONE
            try:
                self._tx_recv.receive_nowait()
            except trio.WouldBlock:
                break
        airtime = time_on_air_s(len(frame), self.params)
        await self.command(psend_command(frame))
        with trio.move_on_after(math.ceil(airtime * 2) + self._timeout_s):
            await self._tx_recv.receive()
            return
        raise no_answer("+EVT:TXP2P")

    async def recv(self) -> Received:
        return await self._rx_recv.receive()
