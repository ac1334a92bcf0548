"""The thin trio driver that joins a LoraCore to a modem driver.

One task feeds received frames to the core, the other asks the core what to transmit and
sleeps until the core's next deadline or a wake-up. Events go to the `on_event` callback.
This module must never decide anything the core decides (priorities, budget, retries).
"""

from __future__ import annotations

import logging
import math
from typing import Awaitable, Callable

import trio

from ..lora.core import LoraCore
from ..lora.events import Event
from ..lora.messages import BROADCAST, Message
from .modem import Modem, ModemError

log = logging.getLogger(__name__)


class LoraLink:
    def __init__(self, core: LoraCore, modem: Modem, on_event: Callable[[Event], None], *,
                 before_transmit: Callable[[], Awaitable[None]] | None = None) -> None:
        """`before_transmit` is awaited before every frame goes to the modem (the node uses it to
        persist the frame counter mark first)."""
        self.core = core
        self.modem = modem
        self._on_event = on_event
        self._before_transmit = before_transmit
        self._wake = trio.Event()
        self.send_errors = 0

    def wake(self) -> None:
        """Look at the core again (after something was queued on it directly)."""
        self._wake.set()

    def send(self, message: Message, *, dest: int = BROADCAST, ack_from: frozenset[int] | None = None) -> int:
        msg_id = self.core.send(message, trio.current_time(), dest=dest, ack_from=ack_from)
        self._wake.set()
        return msg_id

    def _emit(self, events: list[Event]) -> None:
        for ev in events:
            self._on_event(ev)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive_loop)
            task_status.started()
            await self._transmit_loop()

    async def _receive_loop(self) -> None:
        while True:
            got = await self.modem.recv()
            self._emit(self.core.receive(got.data, trio.current_time()))
            self._wake.set()

    async def _transmit_loop(self) -> None:
        while True:
            now = trio.current_time()
            self._emit(self.core.handle_timers(now))
            frame = self.core.next_transmit(now)
            if frame is not None:
                if self._before_transmit is not None:
                    await self._before_transmit()
                try:
                    await self.modem.send(frame)
                except ModemError as e:
                    self.send_errors += 1
                    log.warning("LoRa send failed: %s", e.en)
                continue
            deadline = self.core.next_deadline(now)
            self._wake = trio.Event()
            with trio.move_on_at(math.inf if deadline is None else max(deadline, now)):
                await self._wake.wait()
