"""mDNS sightings as dial targets (sans-IO): which announced addresses to dial, and when.

Anyone on the LAN can announce a service with the commune's TXT tag, so what mDNS says is only
a hint, and what it costs is bounded here: a sighting lives until mDNS withdraws it or until
`ttl_s` passes without it being seen again; at most `cap` sightings are kept (one of a roster
member may take the place of a non-member's, never the reverse); each target is dialled again
only after a backoff that doubles with every failed dial (with jitter) and resets when a link
came up; and all dials together stay under a token bucket (`burst`, `dials_per_s`). The handshake
(roster) still decides who links. Takes events and `now`; returns targets to dial. This module
must never do I/O, read a clock, or hand out a target that was withdrawn or expired.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_TARGETS = 16              # sightings kept (and dialled) at once
SIGHTING_TTL_S = 150.0        # not seen again for this long: forgotten (mDNS host records live 120 s)
BACKOFF_START_S = 1.0         # after one failed dial; doubles per failure, up to
BACKOFF_MAX_S = 60.0
REDIAL_AFTER_LINK_S = 1.0     # a link that came up and ended: dial again after this long
DIAL_BURST = 8                # dials allowed back to back ...
DIALS_PER_S = 1.0             # ... and on average, over all targets
JITTER_LOW, JITTER_HIGH = 0.5, 1.5  # a backoff is multiplied by a uniform factor in [low, high)

Key = tuple[str, str, int]  # (mDNS service name, host, port)


@dataclass
class Target:
    """One announced address of one mDNS service."""

    key: Key
    node_id: str
    member: bool
    expires_at: float
    next_dial_at: float
    failures: int = 0
    dialling: bool = False
    dials: int = 0

    @property
    def host(self) -> str:
        return self.key[1]

    @property
    def port(self) -> int:
        return self.key[2]


def backoff_s(failures: int, start_s: float = BACKOFF_START_S, max_s: float = BACKOFF_MAX_S) -> float:
    """The backoff before the next dial after `failures` failed dials in a row (before jitter)."""
    if failures <= 0:
        return 0.0
    return min(start_s * 2.0 ** min(failures - 1, 64), max_s)


class Sightings:
    """The table of mDNS dial targets; see the module docstring."""

    def __init__(self, *, cap: int = MAX_TARGETS, ttl_s: float = SIGHTING_TTL_S,
                 backoff_start_s: float = BACKOFF_START_S, backoff_max_s: float = BACKOFF_MAX_S,
                 burst: int = DIAL_BURST, dials_per_s: float = DIALS_PER_S, rng: random.Random | None = None) -> None:
        if cap < 1 or burst < 1 or dials_per_s <= 0 or ttl_s <= 0 or backoff_start_s <= 0:
            raise ValueError("cap, burst, dials_per_s, ttl_s and backoff_start_s must be positive")
        self.cap = cap
        self.ttl_s = ttl_s
        self.backoff_start_s = backoff_start_s
        self.backoff_max_s = backoff_max_s
        self.burst = burst
        self.dials_per_s = dials_per_s
        self._rng = rng or random.Random()
        self._targets: dict[Key, Target] = {}
        self._tokens = float(burst)
        self._tokens_at: float | None = None
        self.counters = {"seen": 0, "over_cap": 0, "evicted": 0, "withdrawn": 0, "expired": 0, "dials": 0,
                         "dial_failures": 0}

    # ----- events -------------------------------------------------------------------------------
    def seen(self, name: str, host: str, port: int, node_id: str, member: bool, now: float) -> bool:
        """mDNS resolved `name` to host:port (again); False when it was not kept (table full)."""
        self.expire(now)
        key = (name, host, port)
        self.counters["seen"] += 1
        t = self._targets.get(key)
        if t is not None:
            t.expires_at = now + self.ttl_s
            t.node_id, t.member = node_id, member
            return True
        if len(self._targets) >= self.cap:
            victim = self._victim() if member else None
            if victim is None:
                self.counters["over_cap"] += 1
                return False
            del self._targets[victim.key]
            self.counters["evicted"] += 1
        self._targets[key] = Target(key, node_id, member, expires_at=now + self.ttl_s, next_dial_at=now)
        return True

    def withdrawn(self, name: str) -> int:
        """mDNS says `name` is gone: forget its addresses (a dial under way is not cut)."""
        gone = [k for k in self._targets if k[0] == name]
        for k in gone:
            del self._targets[k]
        self.counters["withdrawn"] += len(gone)
        return len(gone)

    def expire(self, now: float) -> None:
        """Forget sightings not seen again within the TTL."""
        gone = [k for k, t in self._targets.items() if t.expires_at <= now]
        for k in gone:
            del self._targets[k]
        self.counters["expired"] += len(gone)

    def dialled(self, key: Key, linked: bool, now: float) -> None:
        """A dial of `key` ended: `linked` if a link came up (it may have ended since)."""
        t = self._targets.get(key)
        if t is None or not t.dialling:
            return  # withdrawn or expired meanwhile
        t.dialling = False
        if linked:
            t.failures = 0
            t.next_dial_at = now + REDIAL_AFTER_LINK_S
            return
        t.failures += 1
        self.counters["dial_failures"] += 1
        jitter = JITTER_LOW + (JITTER_HIGH - JITTER_LOW) * self._rng.random()
        t.next_dial_at = now + backoff_s(t.failures, self.backoff_start_s, self.backoff_max_s) * jitter

    # ----- decisions ----------------------------------------------------------------------------
    def due(self, now: float) -> list[Target]:
        """Targets to dial now (each marked as being dialled until `dialled` is called)."""
        self.expire(now)
        self._refill(now)
        ready = [t for t in self._targets.values() if not t.dialling and t.next_dial_at <= now]
        ready.sort(key=lambda t: (not t.member, t.next_dial_at, t.key))
        out = []
        for t in ready:
            if self._tokens < 1.0:
                break
            self._tokens -= 1.0
            t.dialling = True
            t.dials += 1
            self.counters["dials"] += 1
            out.append(t)
        return out

    def next_deadline(self, now: float) -> float | None:
        """When `due` may have something new (an expiry or a dial), None if never by itself."""
        times = [t.expires_at for t in self._targets.values()]
        waiting = [t.next_dial_at for t in self._targets.values() if not t.dialling]
        if waiting:
            self._refill(now)
            token_at = now + max(0.0, 1.0 - self._tokens) / self.dials_per_s
            times.append(max(min(waiting), token_at))
        return min(times, default=None)

    def targets(self) -> list[Target]:
        return sorted(self._targets.values(), key=lambda t: t.key)

    def names(self) -> list[str]:
        return sorted({k[0] for k in self._targets})

    def status(self) -> dict:
        return {"targets": len(self._targets), "cap": self.cap,
                "dialling": sum(t.dialling for t in self._targets.values()), **self.counters}

    # ----- helpers ------------------------------------------------------------------------------
    def _refill(self, now: float) -> None:
        if self._tokens_at is not None and now > self._tokens_at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._tokens_at) * self.dials_per_s)
        if self._tokens_at is None or now > self._tokens_at:
            self._tokens_at = now

    def _victim(self) -> Target | None:
        """The non-member sighting a member's may replace: the one failing most, not being dialled."""
        others = [t for t in self._targets.values() if not t.member and not t.dialling]
        return max(others, key=lambda t: (t.failures, t.key), default=None)
