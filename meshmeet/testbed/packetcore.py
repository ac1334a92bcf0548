"""The packet-level link emulator core: what a weak link (4G, a modem's deep queue) does to IP packets.

Sans-IO: packets go in with `now`, come out with the time they are due at the far end; randomness
comes from the `random.Random` it is given (seeded by the caller), so a run can be replayed.
Per direction, in this order (the order a 4G uplink imposes):
  1. random loss: each offered packet is lost with probability `loss` (radio loss, decided on entry,
     so a lost packet takes no capacity);
  2. a rate cap feeding a drop-tail queue: a packet is serialised at `rate_bps` after the ones
     before it; if the bytes not yet fully sent (the one being sent included) plus this packet would
     exceed `queue_bytes`, it is dropped (tail drop, as a modem's buffer does);
  3. one-way delay `delay_s` plus uniform jitter in [-jitter_s, +jitter_s] after serialisation.
     With `keep_order` (the default, as real 4G mostly delivers in order: its RLC layer reorders)
     a packet never leaves before the one ahead of it: due = max(sent + delay + jitter, previous due).
     Without it, jitter may reorder.
The two directions of a link are independent (own shape, own random stream).
This module must never read a clock, touch a socket or parse the packets it carries.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field

from .delayline import EmulatorError

MIN_QUEUE_BYTES = 1500          # a queue must hold at least one full-size packet
MAX_PACKET_BYTES = 65535
MAX_DELAY_S = 60.0
MIN_RATE_BPS = 1000.0

LOST = "lost"
DROPPED = "dropped"
QUEUED = "queued"


@dataclass(frozen=True)
class Shape:
    """One direction of a link. rate_bps None: no cap (and no queue)."""

    loss: float = 0.0
    rate_bps: float | None = None
    queue_bytes: int | None = None
    delay_s: float = 0.0
    jitter_s: float = 0.0
    keep_order: bool = True

    def __post_init__(self) -> None:
        bad = None
        if not 0.0 <= self.loss < 1.0:
            bad = f"loss {self.loss} (0 <= loss < 1)"
        elif self.rate_bps is not None and not self.rate_bps >= MIN_RATE_BPS:
            bad = f"rate {self.rate_bps} bit/s (at least {MIN_RATE_BPS:g})"
        elif self.rate_bps is not None and (self.queue_bytes is None or self.queue_bytes < MIN_QUEUE_BYTES):
            bad = f"queue {self.queue_bytes} bytes (a capped link needs at least {MIN_QUEUE_BYTES})"
        elif not 0.0 <= self.delay_s <= MAX_DELAY_S:
            bad = f"delay {self.delay_s} s (0..{MAX_DELAY_S:g})"
        elif not 0.0 <= self.jitter_s <= self.delay_s:
            bad = f"jitter {self.jitter_s} s (0..delay)"
        if bad:
            raise EmulatorError(f"thông số liên kết không hợp lệ: {bad}", f"invalid link shape: {bad}")

    @property
    def queue_s(self) -> float | None:
        """The queue's depth as time at the cap (None without a cap)."""
        return None if self.rate_bps is None or self.queue_bytes is None else self.queue_bytes * 8 / self.rate_bps


def queue_bytes_for(rate_bps: float, queue_s: float) -> int:
    """A drop-tail depth of `queue_s` seconds at `rate_bps`, in bytes (at least MIN_QUEUE_BYTES)."""
    return max(MIN_QUEUE_BYTES, int(rate_bps / 8 * queue_s))


@dataclass(frozen=True)
class Offer:
    """What happened to one offered packet: QUEUED (with when it is fully sent and when due), LOST or DROPPED."""

    verdict: str
    sent_at: float | None = None
    due_at: float | None = None


@dataclass
class Counters:
    offered: int = 0
    lost: int = 0
    dropped: int = 0
    delivered: int = 0
    bytes_delivered: int = 0


@dataclass(order=True)
class _Pending:
    due_at: float
    order: int
    packet: bytes = field(compare=False)


class Direction:
    """One direction of an emulated link."""

    def __init__(self, shape: Shape, rng: random.Random) -> None:
        self.shape = shape
        self._rng = rng
        self._sending: deque[tuple[float, int]] = deque()   # (sent_at, size) not yet fully sent
        self._sending_bytes = 0
        self._line_free_at = float("-inf")
        self._last_due = float("-inf")
        self._pending: list[_Pending] = []
        self._order = 0
        self.counters = Counters()

    def reshape(self, shape: Shape) -> None:
        """A new shape from now on; packets already scheduled keep their times, the queue starts empty."""
        self.shape = shape
        self._sending.clear()
        self._sending_bytes = 0
        self._line_free_at = float("-inf")

    def backlog_bytes(self, now: float) -> int:
        """Bytes accepted but not yet fully serialised at `now` (the packet on the line included)."""
        while self._sending and self._sending[0][0] <= now:
            self._sending_bytes -= self._sending.popleft()[1]
        return self._sending_bytes

    def offer(self, packet: bytes, now: float) -> Offer:
        """A packet enters this direction at `now`."""
        size = len(packet)
        if not 0 < size <= MAX_PACKET_BYTES:
            raise EmulatorError("gói tin rỗng hoặc quá lớn", f"packet of {size} bytes")
        s = self.shape
        self.counters.offered += 1
        if s.loss and self._rng.random() < s.loss:
            self.counters.lost += 1
            return Offer(LOST)
        if s.rate_bps is None:
            sent_at = now
        else:
            assert s.queue_bytes is not None
            if self.backlog_bytes(now) + size > s.queue_bytes:
                self.counters.dropped += 1
                return Offer(DROPPED)
            sent_at = max(now, self._line_free_at) + size * 8 / s.rate_bps
            self._line_free_at = sent_at
            self._sending.append((sent_at, size))
            self._sending_bytes += size
        due = sent_at + s.delay_s
        if s.jitter_s:
            due += self._rng.uniform(-s.jitter_s, s.jitter_s)
        if s.keep_order:
            due = max(due, self._last_due)
        self._last_due = max(self._last_due, due)
        self._order += 1
        heapq.heappush(self._pending, _Pending(due, self._order, packet))
        return Offer(QUEUED, sent_at, due)

    def next_due(self) -> float | None:
        return self._pending[0].due_at if self._pending else None

    def pop_due(self, now: float) -> list[bytes]:
        """Every packet due by `now`, in the order they arrive at the far end."""
        out = []
        while self._pending and self._pending[0].due_at <= now:
            p = heapq.heappop(self._pending).packet
            self.counters.delivered += 1
            self.counters.bytes_delivered += len(p)
            out.append(p)
        return out

    def in_flight(self) -> int:
        return len(self._pending)


AB = "ab"   # side a -> side b
BA = "ba"   # side b -> side a


class PacketLink:
    """Both directions of a link: `forward` shapes a -> b, `back` shapes b -> a, each with its own random stream."""

    def __init__(self, forward: Shape, back: Shape, seed: int | str = 0) -> None:
        self.dirs = {AB: Direction(forward, random.Random(f"{seed}:{AB}")),
                     BA: Direction(back, random.Random(f"{seed}:{BA}"))}

    def reshape(self, forward: Shape, back: Shape) -> None:
        self.dirs[AB].reshape(forward)
        self.dirs[BA].reshape(back)

    def offer(self, direction: str, packet: bytes, now: float) -> Offer:
        return self.dirs[direction].offer(packet, now)

    def pop_due(self, direction: str, now: float) -> list[bytes]:
        return self.dirs[direction].pop_due(now)

    def next_due(self) -> float | None:
        times = [t for t in (d.next_due() for d in self.dirs.values()) if t is not None]
        return min(times) if times else None

    def stats(self) -> dict[str, dict[str, int]]:
        return {k: vars(d.counters).copy() for k, d in self.dirs.items()}
