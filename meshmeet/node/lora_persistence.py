"""What the LoRa part must keep across restarts: the frame-counter mark, the replay window, the alerts.

DIR/lora-state.json holds the counter mark (frames are numbered below it; a restarted node resumes
at the mark, so no counter is ever used twice under one key) and each sender's replay window;
DIR/lora-alerts.json the recent alerts with their acks (files: lora_io/statefile.py). A new mark
is written before the frame that needs it leaves (`before_transmit`, handed to LoraLink); the
replay window and the alerts are saved by `run` when marked `changed`, at most every
STATE_SAVE_S, and once more at shutdown. A damaged state file is an `error`, and LoRa stays off
(reusing a counter would break the encryption; a new LoRa key is the way out).

This module must never let a frame leave whose counter mark is not on disk, never decide what the
LoRa core decides, and never touch the modem.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import trio

from ..errors import MeshmeetError
from ..lora.alertlog import AlertLog
from ..lora.core import LoraCore
from ..lora.counter import CounterReservation
from ..lora_io import statefile

log = logging.getLogger(__name__)

STATE_SAVE_S = 10.0  # how often the replay window is saved when it changed


class LoraPersistence:
    """The LoRa part's files in `data_dir`. `core()` is the running core (None while the modem is
    down); `on_write_failed(error)` is told when a counter mark could not be saved (the caller
    stops the modem session: the frame waiting for the mark never leaves)."""

    def __init__(self, data_dir: Path, core: Callable[[], LoraCore | None],
                 on_write_failed: Callable[[MeshmeetError], None]) -> None:
        self.dir = Path(data_dir)
        self._core = core
        self._on_write_failed = on_write_failed
        self.alerts = AlertLog.from_json(statefile.read_json(self.dir / statefile.ALERTS_FILE))
        self.reservation: CounterReservation | None = None
        self.replay: dict[int, tuple[int, int]] = {}
        self.error: MeshmeetError | None = None  # the state file is damaged: LoRa must stay off
        self._load_state()
        self._save_lock = trio.Lock()
        self._dirty = trio.Event()
        self._alerts_dirty = False

    def _load_state(self) -> None:
        path = self.dir / statefile.STATE_FILE
        raw = statefile.read_json(path)
        if raw is None and path.exists():
            self.error = MeshmeetError(
                f"Tệp {path} bị hỏng: LoRa tắt để không dùng lại bộ đếm (cần khóa LoRa mới)",
                f"{path} is damaged: LoRa stays off so no frame counter is reused (a new LoRa key is needed)")
            return
        try:
            reserved, self.replay = statefile.state_from_json(raw) if raw is not None else (0, {})
        except ValueError:
            self.error = MeshmeetError(f"Tệp {path} bị hỏng", f"{path} is damaged")
            return
        self.reservation = CounterReservation(reserved)

    def changed(self, alerts: bool = False) -> None:
        """Something worth saving changed (the replay window; with `alerts`, the alert log)."""
        self._alerts_dirty |= alerts
        self._dirty.set()

    def _write_state(self, reserved: int | None = None) -> None:
        assert self.reservation is not None
        mark = self.reservation.reserved if reserved is None else reserved
        core = self._core()
        replay = core.replay_state() if core is not None else self.replay
        statefile.write_json(self.dir / statefile.STATE_FILE, statefile.state_to_json(mark, replay))

    async def before_transmit(self) -> None:
        """Persist a new counter mark before a frame at or above the old one leaves. If the disk
        refuses, `on_write_failed` is told and this never returns: the frame never leaves."""
        core = self._core()
        assert self.reservation is not None and core is not None
        mark = self.reservation.needed(core.next_counter)
        if mark is None:
            return
        async with self._save_lock:
            try:
                await trio.to_thread.run_sync(self._write_state, mark)
            except OSError as e:
                self._on_write_failed(MeshmeetError(f"Không ghi được bộ đếm LoRa: {e}", f"cannot save the LoRa counter: {e}"))
                await trio.sleep_forever()
        self.reservation.saved(mark)
        log.debug("lora: counter mark %d saved", mark)

    async def run(self) -> None:
        """Save what changed, at most every STATE_SAVE_S, and everything once more when cancelled."""
        try:
            while True:
                with trio.move_on_after(STATE_SAVE_S):
                    await self._dirty.wait()
                self._dirty = trio.Event()
                async with self._save_lock:
                    try:
                        if self._core() is not None and self.reservation is not None:
                            await trio.to_thread.run_sync(self._write_state)
                        if self._alerts_dirty:
                            self._alerts_dirty = False
                            await trio.to_thread.run_sync(
                                statefile.write_json, self.dir / statefile.ALERTS_FILE, self.alerts.to_json())
                    except OSError as e:
                        log.error("lora: could not save state: %s", e)
        finally:
            with trio.CancelScope(shield=True):
                try:
                    if self._core() is not None and self.reservation is not None:
                        self._write_state()
                    statefile.write_json(self.dir / statefile.ALERTS_FILE, self.alerts.to_json())
                except OSError as e:
                    log.error("lora: could not save state at shutdown: %s", e)
