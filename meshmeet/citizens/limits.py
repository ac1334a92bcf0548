"""Rate limits for the resident page: token buckets per device, per client address and per hall.

A bucket holds `burst` tokens and refills `per_s` tokens a second; a request takes one from every
bucket it names or from none (all-or-nothing), so a refused request costs nothing. At most
`max_keys` keys are remembered (the least recently used are forgotten first: a forgotten key is a
full bucket, which only ever lets a request through that a fresh device would get anyway). Pure and
clock-free (`now` in seconds is passed in); this module must never import aiohttp or trio.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

MAX_KEYS = 4096


@dataclass(frozen=True)
class Rate:
    burst: float
    per_s: float


@dataclass
class Buckets:
    """One rate over many keys."""

    rate: Rate
    max_keys: int = MAX_KEYS
    _state: "OrderedDict[str, tuple[float, float]]" = field(default_factory=OrderedDict)  # key -> (tokens, at)

    def tokens(self, key: str, now: float) -> float:
        tokens, at = self._state.get(key, (self.rate.burst, now))
        return min(self.rate.burst, tokens + max(0.0, now - at) * self.rate.per_s)

    def wait_s(self, key: str, now: float) -> float:
        """Seconds until `key` has one token (0: now)."""
        have = self.tokens(key, now)
        return 0.0 if have >= 1.0 else (1.0 - have) / self.rate.per_s

    def take(self, key: str, now: float) -> None:
        self._state[key] = (self.tokens(key, now) - 1.0, now)
        self._state.move_to_end(key)
        while len(self._state) > self.max_keys:
            self._state.popitem(last=False)

    def __len__(self) -> int:
        return len(self._state)


def take_all(now: float, *pairs: tuple[Buckets, str]) -> float:
    """Take one token from each (buckets, key) when every one has it: returns 0. Otherwise takes
    nothing and returns the seconds to wait (the longest of those short)."""
    wait = max((b.wait_s(k, now) for b, k in pairs), default=0.0)
    if wait > 0.0:
        return wait
    for b, k in pairs:
        b.take(k, now)
    return 0.0


@dataclass(frozen=True)
class PageLimits:
    """The page's defaults: a phone sends 3 at once then one a minute; one address (a phone that
    clears its cookie) 6 then one a minute; a hall 60 then one every 2 s; a reply lookup 10 then
    one every 6 s per address (a code is 40 bits: guessing one takes ~10^11 lookups)."""

    device: Rate = Rate(3, 1 / 60)
    address: Rate = Rate(6, 1 / 60)
    hall: Rate = Rate(60, 1 / 2)
    lookup: Rate = Rate(10, 1 / 6)


@dataclass
class PageLimiter:
    limits: PageLimits = field(default_factory=PageLimits)
    device: Buckets = field(init=False)
    address: Buckets = field(init=False)
    hall: Buckets = field(init=False)
    lookup: Buckets = field(init=False)

    def __post_init__(self) -> None:
        self.device = Buckets(self.limits.device)
        self.address = Buckets(self.limits.address)
        self.hall = Buckets(self.limits.hall)
        self.lookup = Buckets(self.limits.lookup)

    def submit(self, device: str, address: str, now: float) -> float:
        return take_all(now, (self.device, device), (self.address, address), (self.hall, "hall"))

    def look_up(self, address: str, now: float) -> float:
        return take_all(now, (self.lookup, address))
