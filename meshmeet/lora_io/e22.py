"""Driver for the Ebyte E22-900T22 (SX1262) UART module over a trio byte stream.

Configuration happens in config mode (M0=0, M1=1) through the `pins` hook, since M0/M1 are GPIO
lines and not UART bytes: write registers with C0, read back with C1, compare, return to
transparent mode. Frames are length-prefixed in transparent mode (see e22proto). Run `run()` in
a nursery first. This module must never wait on the module without a timeout, and never let
module bytes raise anything but ModemError/E22Error.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

from ..lora.airtime import LoraParams, time_on_air_s
from ..lora.e22proto import (MAX_FRAME_BYTES, READABLE_REGS, E22Error, E22Settings, TransparentDeframer,
                       frame_for_air, parse_reply, read_command, write_command)
from .modem import ModemError, Received, no_answer

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 2.0
MODE_SWITCH_S = 0.05  # the module needs a moment after M0/M1 change (AUX goes high)
REPLY_BYTES = 3 + READABLE_REGS

# The E22 air rates are not documented as LoRa SF/BW; these are conservative estimates (the
# slower neighbour of each rate) used only to charge airtime. See firmware-config/modems/e22.toml.
AIR_RATE_PARAMS = {
    300: LoraParams(sf=12, bw_hz=125_000), 1200: LoraParams(sf=11, bw_hz=125_000),
    2400: LoraParams(sf=9, bw_hz=125_000), 4800: LoraParams(sf=8, bw_hz=125_000),
    9600: LoraParams(sf=7, bw_hz=125_000), 19200: LoraParams(sf=7, bw_hz=250_000),
    38400: LoraParams(sf=7, bw_hz=500_000), 62500: LoraParams(sf=6, bw_hz=500_000),
}


class ModePins(Protocol):
    def set_config_mode(self, config: bool) -> None: ...


class RtsDtrPins:
    """M0 on RTS, M1 on DTR, for adapters wired that way (levels inverted by most USB bridges)."""

    def __init__(self, ser) -> None:  # serial.Serial
        self._ser = ser

    def set_config_mode(self, config: bool) -> None:
        self._ser.rts = True   # M0 = 0
        self._ser.dtr = not config  # M1 = 1 in config mode


class E22:
    extra_air_bytes = 1  # our length prefix

    def __init__(self, stream: trio.abc.Stream, pins: ModePins, *,
                 timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self._stream = stream
        self._pins = pins
        self._timeout_s = timeout_s
        self.mtu_bytes = MAX_FRAME_BYTES
        self.params = AIR_RATE_PARAMS[2400]
        self.garbage = 0
        self._config = False
        self._reply = bytearray()
        self._reply_event = trio.Event()
        self._deframer = TransparentDeframer()
        self._rx_send, self._rx_recv = trio.open_memory_channel[Received](64)
        self._lock = trio.Lock()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                data = await self._stream.receive_some(4096)
            except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
                return
            if not data:
                return
            if self._config:
                self._reply += data
                self._reply_event.set()
                continue
            for frame in self._deframer.feed(data):
                try:
                    self._rx_send.send_nowait(Received(frame))
                except trio.WouldBlock:
                    log.warning("LoRa rx queue full; dropping a packet")
            if self._deframer.pending > MAX_FRAME_BYTES + 2:
                self.garbage += 1
                self._deframer.reset()

    async def _exchange(self, cmd: bytes) -> bytes:
        self._reply.clear()
        await self._stream.send_all(cmd)
        with trio.move_on_after(self._timeout_s):
            while len(self._reply) < REPLY_BYTES and not bytes(self._reply).startswith(b"\xff\xff\xff"):
                self._reply_event = trio.Event()
                await self._reply_event.wait()
            return bytes(self._reply)
        raise no_answer("E22 " + cmd[:1].hex().upper())

    async def configure(self, s: E22Settings) -> E22Settings:
        """Write registers, read them back, compare, and return to transparent mode."""
        async with self._lock:
            self._config = True
            self._pins.set_config_mode(True)
            await trio.sleep(MODE_SWITCH_S)
            try:
                try:
                    parse_reply(await self._exchange(write_command(s)))
                    back = parse_reply(await self._exchange(read_command()))
                except E22Error as e:
                    raise ModemError(e.vi, e.en) from None
            finally:
                self._pins.set_config_mode(False)
                await trio.sleep(MODE_SWITCH_S)
                self._config = False
                self._deframer.reset()
            if back != s:
                raise ModemError(f"E22 không giữ cấu hình (kênh {back.channel}, {back.power_dbm} dBm)",
                                 f"E22 did not keep the settings (channel {back.channel}, {back.power_dbm} dBm)")
            self.params = AIR_RATE_PARAMS[s.air_rate_bps]
            self.mtu_bytes = min(MAX_FRAME_BYTES, s.sub_packet_bytes - 1)
            return back

    async def send(self, frame: bytes) -> None:
        """Write one frame; wait its estimated airtime (the module has no TX-done message)."""
        async with self._lock:
            await self._stream.send_all(frame_for_air(frame))
            await trio.sleep(time_on_air_s(len(frame) + 1, self.params))

    async def recv(self) -> Received:
        return await self._rx_recv.receive()
