"""How fast one outgoing link carries media, measured from how fast it drains while backlogged (sans-IO).

The relay (relay.py) keeps one DrainEstimate per link and tells it about every message the link
takes (with the link's framing) and when the link runs idle. A send that follows the previous one
at once measures capacity: the previous message took that long to go out. The estimate is the
drain rate over the last ESTIMATE_WINDOW_S of such sends, or, without enough of them, at least
what was handed to the link in that window. This module only measures; it must never decide a
quality level, do I/O, sleep or read a clock (callers pass `now`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

ESTIMATE_WINDOW_S = 1.0  # sends older than this no longer count
ESTIMATE_MIN_BACKLOG_S = 0.1  # backlogged time needed before the drain rate is trusted
CONGESTED_MIN_S = 0.05  # congestion younger than this gives no estimate yet


@dataclass
class DrainEstimate:
    """One link's drain rate; `estimate_bps` is the latest figure (a passed probe or a downgrade may set it)."""

    estimate_bps: float = 0.0
    _last_send: float | None = None  # None: the link was idle before the next send
    _last_send_bytes: int = 0
    _backlog: deque = field(default_factory=deque)  # (t, bytes, seconds) while backlogged
    _sent: deque = field(default_factory=deque)  # (t, bytes)
    _backlog_bytes: int = 0
    _backlog_secs: float = 0.0
    _sent_bytes: int = 0

    def sent(self, nbytes: int, now: float) -> None:
        """The link took a message of `nbytes` (its framing included) at `now`."""
        if self._last_send is not None and now > self._last_send:
            self._backlog.append((now, self._last_send_bytes, now - self._last_send))
            self._backlog_bytes += self._last_send_bytes
            self._backlog_secs += now - self._last_send
        self._last_send, self._last_send_bytes = now, nbytes
        self._sent.append((now, nbytes))
        self._sent_bytes += nbytes

    def idle(self) -> None:
        """The link had nothing to send: the next send does not measure capacity."""
        self._last_send = None

    def estimate(self, now: float) -> float:
        """Bits per second the link drains (updates and returns `estimate_bps`)."""
        while self._backlog and now - self._backlog[0][0] > ESTIMATE_WINDOW_S:
            _, b, sec = self._backlog.popleft()
            self._backlog_bytes -= b
            self._backlog_secs -= sec
        while self._sent and now - self._sent[0][0] > ESTIMATE_WINDOW_S:
            self._sent_bytes -= self._sent.popleft()[1]
        if self._backlog_secs >= ESTIMATE_MIN_BACKLOG_S:
            self.estimate_bps = self._backlog_bytes * 8 / self._backlog_secs
        else:
            self.estimate_bps = max(self.estimate_bps, self._sent_bytes * 8 / ESTIMATE_WINDOW_S)
        return self.estimate_bps

    def sent_bps(self, now: float) -> float:
        """What the link took over the last ESTIMATE_WINDOW_S, in bits per second."""
        while self._sent and now - self._sent[0][0] > ESTIMATE_WINDOW_S:
            self._sent_bytes -= self._sent.popleft()[1]
        return self._sent_bytes * 8 / ESTIMATE_WINDOW_S

    def rate_since(self, since: float | None, now: float) -> float:
        """Drain rate since the queue began to grow at `since` (older samples describe another
        link); 0.0 when not congested (None) or too soon to tell."""
        if since is None:
            return 0.0
        samples = [(b, s) for t, b, s in self._backlog if t - s >= since - 1e-9]
        secs = sum(s for _, s in samples)
        if secs >= ESTIMATE_MIN_BACKLOG_S:
            return sum(b for b, _ in samples) * 8 / secs
        if now - since < CONGESTED_MIN_S:
            return 0.0
        # a long message is still going out: what was handed to the link since is an upper bound
        return sum(b for t, b in self._sent if t >= since) * 8 / (now - since)
