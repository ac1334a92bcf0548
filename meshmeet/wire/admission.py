"""Admission control for listeners, sans-IO: per-source token buckets and connection counts.

``PendingSet`` keeps the connections not yet authenticated, oldest first, in two stages (silent,
then speaking) and, at its cap, drops the oldest silent one (else the oldest speaking one) to make
room, so an idle flood cannot crowd out a peer that is already handshaking.
``SourceRateLimiter`` answers "may this source start one more expensive thing now?" with a token
bucket per source address (refill ``rate_per_s``, capacity ``burst``); the link listener asks it
before a stranger can make the node sign a handshake reply or check a join request.
``ConnectionCounter`` keeps how many connections each source (and all sources) hold open, so a
listener can refuse the one too many before spending anything on it.

Both take the time as an argument and hold a bounded amount of state (at most ``max_sources``
entries). This module must never read a clock, touch a socket or await.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

MAX_SOURCES = 4096
IPV6_SOURCE_PREFIX = 64  # one IPv6 host usually owns a whole /64: count it as one source


def source_key(address: str) -> str:
    """The key a peer address is counted under: the IPv4 address, or the IPv6 /64 it is in."""
    host = address.strip("[]")
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_SOURCE_PREFIX}", strict=False))
    return str(ip)


@dataclass
class _Bucket:
    tokens: float
    at: float


class SourceRateLimiter:
    """Token buckets per source: each `allow` that returns True spends one token."""

    def __init__(self, rate_per_s: float, burst: int, max_sources: int = MAX_SOURCES) -> None:
        if rate_per_s <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate_per_s must be > 0, burst and max_sources >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_sources = max_sources
        self.refused = 0
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, source: str, now: float) -> bool:
        """True (and one token spent) when `source` may go ahead at `now`; False when over its rate."""
        bucket = self._buckets.pop(source, None)
        if bucket is None:
            self._make_room(now)
            bucket = _Bucket(float(self.burst), now)
        elapsed = max(0.0, now - bucket.at)
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
        bucket.at = max(bucket.at, now)
        self._buckets[source] = bucket  # most recently used last
        if bucket.tokens < 1.0:
            self.refused += 1
            return False
        bucket.tokens -= 1.0
        return True

    def wait_s(self, source: str, now: float) -> float:
        """Seconds from `now` until `source` has a token (0.0 when it has one now); spends nothing."""
        bucket = self._buckets.get(source)
        if bucket is None:
            return 0.0
        tokens = min(float(self.burst), bucket.tokens + max(0.0, now - bucket.at) * self.rate_per_s)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate_per_s

    def tracked(self) -> int:
        return len(self._buckets)

    def _make_room(self, now: float) -> None:
        if len(self._buckets) < self.max_sources:
            return
        full_after_s = self.burst / self.rate_per_s
        for key in [k for k, b in self._buckets.items() if now - b.at >= full_after_s]:
            del self._buckets[key]  # refilled: forgetting it changes nothing
        while len(self._buckets) >= self.max_sources:
            self._buckets.popitem(last=False)  # least recently used


class ConnectionCounter:
    """Open connections per source and in total, with a cap on each."""

    def __init__(self, max_total: int, max_per_source: int) -> None:
        if max_total < 1 or max_per_source < 1:
            raise ValueError("caps must be >= 1")
        self.max_total = max_total
        self.max_per_source = max_per_source
        self.total = 0
        self.refused = 0
        self._by_source: dict[str, int] = {}

    def can_open(self, source: str) -> bool:
        """Whether one more connection from `source` fits (nothing is counted)."""
        return self.total < self.max_total and self._by_source.get(source, 0) < self.max_per_source

    def source_full(self, source: str) -> bool:
        return self._by_source.get(source, 0) >= self.max_per_source

    def open(self, source: str) -> bool:
        """Count a new connection from `source`; False (not counted) when a cap is reached."""
        if not self.can_open(source):
            self.refused += 1
            return False
        self.total += 1
        self._by_source[source] = self._by_source.get(source, 0) + 1
        return True

    def close(self, source: str) -> None:
        """Forget one connection from `source` (one that `open` counted)."""
        count = self._by_source.get(source, 0)
        if count <= 0:
            raise ValueError(f"no open connection from {source}")
        if count == 1:
            del self._by_source[source]
        else:
            self._by_source[source] = count - 1
        self.total -= 1

    def count(self, source: str) -> int:
        return self._by_source.get(source, 0)


class PendingSet:
    """Unauthenticated connections by key, each with the callable that drops it."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self.dropped = 0
        self._silent: OrderedDict[Hashable, Callable[[], object]] = OrderedDict()
        self._speaking: OrderedDict[Hashable, Callable[[], object]] = OrderedDict()

    def add(self, key: Hashable, drop: Callable[[], object]) -> None:
        """A new, silent connection; at the cap the oldest silent (else speaking) one is dropped first."""
        while len(self) >= self.max_entries:
            _, oldest = (self._silent or self._speaking).popitem(last=False)
            self.dropped += 1
            oldest()
        self._silent[key] = drop

    def spoke(self, key: Hashable) -> None:
        """The connection sent something worth answering: drop it only after every silent one."""
        drop = self._silent.pop(key, None)
        if drop is not None:
            self._speaking[key] = drop

    def remove(self, key: Hashable) -> None:
        """Authenticated or closed: no longer pending (unknown keys are ignored)."""
        self._silent.pop(key, None)
        self._speaking.pop(key, None)

    def silent(self) -> int:
        return len(self._silent)

    def __len__(self) -> int:
        return len(self._silent) + len(self._speaking)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._silent or key in self._speaking
