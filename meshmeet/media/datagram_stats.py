"""Loss, jitter and delay of one datagram direction (sans-IO): measured by the receiver, read by the sender.

The receiver feeds every authentic datagram (its counter, the sender's send time, the local
arrival time) to ReceiverStats, which makes the periodic Report; the sender feeds each Report to
SenderView, which turns it into Feedback (loss fraction over the interval, jitter, delay trend,
round trip). Send times are the sender's clock: only differences are used, so clocks need not
agree. This module must never do I/O or read a clock (callers pass `now`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .datagram import TIME_MODULUS
from .datagram_bodies import Report

DELAY_BASE_WINDOW_S = 10.0  # the delay trend is measured against the lowest delay seen this long
DELAY_BASE_BUCKET_S = 1.0
LOSS_WINDOW_S = 5.0  # status shows the loss over this long


def _signed(x: int) -> int:
    x %= TIME_MODULUS
    return x - TIME_MODULUS if x >= TIME_MODULUS // 2 else x


def us(t: float) -> int:
    """Seconds on the local clock as the wire's u32 µs."""
    return int(t * 1_000_000) % TIME_MODULUS


class ReceiverStats:
    """What has arrived on one direction."""

    def __init__(self) -> None:
        self.received = 0
        self.highest = -1
        self.jitter_us = 0.0
        self._last_transit: int | None = None
        self._ref: int | None = None  # first transit: delays are relative to it (no clock sync)
        self._newest_send_us = 0
        self._newest_at = 0.0
        self._interval: list[int] = []  # relative delays since the last report
        self._base: deque[tuple[float, int]] = deque()  # (bucket start, lowest relative delay in it)

    def arrived(self, counter: int, send_time_us: int, now: float) -> None:
        self.received += 1
        transit = (us(now) - send_time_us) % TIME_MODULUS
        if self._ref is None:
            self._ref = transit
        rel = _signed(transit - self._ref)
        if counter > self.highest:
            self.highest = counter
            self._newest_send_us, self._newest_at = send_time_us, now
            if self._last_transit is not None:  # RFC 3550 6.4.1, in order arrivals only
                d = abs(_signed(transit - self._last_transit))
                self.jitter_us += (d - self.jitter_us) / 16
            self._last_transit = transit
        self._interval.append(rel)
        if self._base and now - self._base[-1][0] < DELAY_BASE_BUCKET_S:
            t, low = self._base[-1]
            self._base[-1] = (t, min(low, rel))
        else:
            self._base.append((now, rel))
        while self._base and now - self._base[0][0] > DELAY_BASE_WINDOW_S:
            self._base.popleft()

    def pending(self) -> bool:
        """Something arrived since the last report."""
        return bool(self._interval)

    def report(self, now: float) -> Report:
        trend = 0
        if self._interval:
            base = min([*self._interval, *(low for _, low in self._base)])
            trend = sum(self._interval) // len(self._interval) - base  # >= 0: base <= every value here
        self._interval = []
        return Report(max(self.highest, 0), self.received, int(self.jitter_us), trend,
                      self._newest_send_us, int((now - self._newest_at) * 1_000_000))


@dataclass(frozen=True)
class Feedback:
    """One receiver report, as the sender reads it (the MediaRelay's link_feedback arguments)."""

    loss_fraction: float
    jitter_s: float
    delay_trend_s: float
    rtt_s: float | None


class SenderView:
    """Turns successive reports from the peer into Feedback, and keeps the loss of the last
    LOSS_WINDOW_S (status: one 250 ms interval holds a dozen datagrams, too few to show 5 %)."""

    def __init__(self) -> None:
        self._last: Report | None = None
        self.last: Feedback | None = None
        self._window: deque[tuple[float, int, int]] = deque()  # (when, expected, received) per report

    def recent_loss(self, now: float) -> float | None:
        """Loss fraction over the reports of the last LOSS_WINDOW_S, None without any."""
        while self._window and now - self._window[0][0] > LOSS_WINDOW_S:
            self._window.popleft()
        expected = sum(e for _, e, _ in self._window)
        got = sum(g for _, _, g in self._window)
        return min(1.0, max(0.0, 1.0 - got / expected)) if expected > 0 else None

    def report(self, r: Report, now: float) -> Feedback | None:
        """Feedback from `r`, or None when it is stale (older than one already read)."""
        prev = self._last
        if prev is not None and r.highest < prev.highest:
            return None
        if prev is not None:
            expected, got = r.highest - prev.highest, r.received - prev.received
        else:
            expected, got = r.highest + 1, r.received
        loss = min(1.0, max(0.0, 1.0 - got / expected)) if expected > 0 else 0.0
        if expected > 0:
            self._window.append((now, expected, min(max(got, 0), expected)))
        self._last = r
        rtt_us = _signed(us(now) - r.echo_us - r.hold_us)
        rtt = rtt_us / 1e6 if 0 <= rtt_us < 60_000_000 else None
        self.last = Feedback(loss, r.jitter_us / 1e6, r.delay_trend_us / 1e6, rtt)
        return self.last
