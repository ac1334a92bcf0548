"""A sans-IO one-way link emulator: bytes go in at `now`, come out after a delay and a rate cap.

One DelayLine is one direction of one TCP connection. It splits what it is given into segments
of at most SEGMENT_BYTES, serialises them at `rate_bps` (when set) one after the other, and makes
each segment due `delay_s` after its last bit left. An end of stream (close) is due after the
last byte. The queue is bounded (`max_buffer_bytes`): the driver reads from its socket only as
much as `room()` allows, so a rate cap turns into TCP back-pressure rather than memory growth.
This module must never read a clock, sleep or touch a socket; bad arguments raise EmulatorError.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from ..errors import MeshmeetError

SEGMENT_BYTES = 1448              # one TCP segment over a 1500-byte MTU
DEFAULT_MAX_BUFFER_BYTES = 1 << 20
MAX_DELAY_S = 60.0
MIN_RATE_BPS = 8.0


class EmulatorError(MeshmeetError):
    """A link emulator was misused or misconfigured."""

    exit_code = 2

    def __init__(self, vi: str, en: str) -> None:
        super().__init__(f"Bộ giả lập liên kết: {vi}", f"link emulator: {en}")


@dataclass(frozen=True)
class LinkShape:
    """What one direction of an emulated link does to bytes."""

    delay_s: float = 0.0
    rate_bps: float | None = None
    max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES

    def __post_init__(self) -> None:
        if not isinstance(self.delay_s, (int, float)) or not math.isfinite(self.delay_s) \
                or not 0.0 <= self.delay_s <= MAX_DELAY_S:
            raise EmulatorError(f"độ trễ phải trong 0..{MAX_DELAY_S} s", f"delay must be within 0..{MAX_DELAY_S} s")
        if self.rate_bps is not None and (not isinstance(self.rate_bps, (int, float))
                                          or not math.isfinite(self.rate_bps) or self.rate_bps < MIN_RATE_BPS):
            raise EmulatorError(f"tốc độ phải ≥ {MIN_RATE_BPS} bit/s", f"rate must be >= {MIN_RATE_BPS} bit/s")
        if not isinstance(self.max_buffer_bytes, int) or self.max_buffer_bytes < SEGMENT_BYTES:
            raise EmulatorError(f"bộ đệm phải ≥ {SEGMENT_BYTES} B", f"buffer must be >= {SEGMENT_BYTES} B")


@dataclass(frozen=True)
class Delivery:
    """What is due now: bytes to write, and whether the stream then ends."""

    data: bytes = b""
    eof: bool = False


class DelayLine:
    """One direction: `send`/`close` in, `receive` out, `next_deadline` for the driver's timer."""

    def __init__(self, shape: LinkShape) -> None:
        self.shape = shape
        self._queue: deque[tuple[float, bytes]] = deque()  # (due time, segment), due times non-decreasing
        self._queued_bytes = 0
        self._busy_until = -math.inf    # when the (rate-capped) sender finishes its last segment
        self._last_now = -math.inf
        self._eof_at: float | None = None
        self._eof_delivered = False
        self.bytes_in = 0
        self.bytes_out = 0

    def _clock(self, now: float) -> float:
        if not isinstance(now, (int, float)) or math.isnan(now):
            raise EmulatorError("thời điểm không hợp lệ", "invalid time value")
        self._last_now = max(self._last_now, float(now))  # a clock may never run backwards here
        return self._last_now

    @property
    def closed(self) -> bool:
        return self._eof_at is not None

    def room(self) -> int:
        """How many more bytes `send` accepts now (0 after close)."""
        return 0 if self.closed else max(0, self.shape.max_buffer_bytes - self._queued_bytes)

    def send(self, data: bytes, now: float) -> None:
        """Queue `data`, which entered the link at `now`."""
        now = self._clock(now)
        if self.closed:
            raise EmulatorError("gửi sau khi đã đóng", "send after close")
        if len(data) > self.room():
            raise EmulatorError("vượt bộ đệm", f"{len(data)} B exceeds the {self.room()} B of room")
        rate = self.shape.rate_bps
        for start in range(0, len(data), SEGMENT_BYTES):
            segment = bytes(data[start:start + SEGMENT_BYTES])
            if rate is None:
                left = now
            else:
                left = max(now, self._busy_until) + len(segment) * 8.0 / rate
                self._busy_until = left
            self._queue.append((left + self.shape.delay_s, segment))
            self._queued_bytes += len(segment)
        self.bytes_in += len(data)

    def close(self, now: float) -> None:
        """The sender ended its stream at `now`; the end is due after every queued byte."""
        now = self._clock(now)
        if self.closed:
            return
        last_due = self._queue[-1][0] if self._queue else -math.inf
        self._eof_at = max(now + self.shape.delay_s, last_due)

    def next_deadline(self) -> float:
        """When `receive` next has something to give (math.inf: nothing pending)."""
        if self._queue:
            return self._queue[0][0]
        if self._eof_at is not None and not self._eof_delivered:
            return self._eof_at
        return math.inf

    def receive(self, now: float) -> Delivery:
        """Everything due at `now`, in order."""
        now = self._clock(now)
        parts = []
        while self._queue and self._queue[0][0] <= now:
            _, segment = self._queue.popleft()
            self._queued_bytes -= len(segment)
            parts.append(segment)
        data = b"".join(parts)
        self.bytes_out += len(data)
        eof = False
        if not self._queue and self._eof_at is not None and not self._eof_delivered and self._eof_at <= now:
            self._eof_delivered = eof = True
        return Delivery(data, eof)

    @property
    def finished(self) -> bool:
        """True once the end of stream has been handed out."""
        return self._eof_delivered
