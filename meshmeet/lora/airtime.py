"""LoRa time on air (Semtech formula) and the rolling airtime budget.

`time_on_air_s` is the Semtech SX127x/SX126x formula (AN1200.13): preamble, explicit/implicit
header, CRC, coding rate and low-data-rate optimisation. `AirtimeBudget` is a sans-IO ledger of
what a radio sent in the last hour; it refuses any transmission that would push the rolling sum
past the budget. This module must never read a clock or sleep: callers pass `now` in seconds.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

WINDOW_S = 3600.0
LDRO_SYMBOL_S = 0.016  # LDRO is mandatory when a symbol lasts longer than 16 ms


@dataclass(frozen=True)
class LoraParams:
    """Modulation settings that decide airtime. `cr` is the denominator offset: 1 = 4/5 ... 4 = 4/8."""

    sf: int = 9
    bw_hz: int = 250_000
    cr: int = 1
    preamble: int = 16
    explicit_header: bool = True
    crc: bool = True
    ldro: bool | None = None  # None: on when the symbol time exceeds 16 ms, as the modems do

    def __post_init__(self) -> None:
        if not 5 <= self.sf <= 12:
            raise ValueError(f"spreading factor out of range: {self.sf}")
        if self.bw_hz <= 0 or not 1 <= self.cr <= 4 or self.preamble < 0:
            raise ValueError("bad bandwidth, coding rate or preamble")

    @property
    def symbol_s(self) -> float:
        return (2 ** self.sf) / self.bw_hz

    @property
    def low_data_rate(self) -> bool:
        return self.symbol_s > LDRO_SYMBOL_S if self.ldro is None else self.ldro


def time_on_air_s(payload_bytes: int, p: LoraParams) -> float:
    """Seconds on air for one LoRa packet carrying `payload_bytes` bytes."""
    if payload_bytes < 0:
        raise ValueError("negative payload")
    t_sym = p.symbol_s
    de = 1 if p.low_data_rate else 0
    ih = 0 if p.explicit_header else 1
    crc = 1 if p.crc else 0
    num = 8 * payload_bytes - 4 * p.sf + 28 + 16 * crc - 20 * ih
    den = 4 * (p.sf - 2 * de)
    n_payload = 8 + max(math.ceil(num / den) * (p.cr + 4), 0)
    return (p.preamble + 4.25) * t_sym + n_payload * t_sym


@dataclass(frozen=True)
class AirtimeUse:
    start: float
    airtime_s: float


class AirtimeBudget:
    """Rolling one-hour airtime ledger. A transmission is counted whole for WINDOW_S from its start."""

    def __init__(self, budget_s_per_hour: float) -> None:
        if budget_s_per_hour <= 0:
            raise ValueError("budget must be positive")
        self.budget_s = budget_s_per_hour
        self._uses: deque[AirtimeUse] = deque()
        self._sum = 0.0

    def _expire(self, now: float) -> None:
        while self._uses and self._uses[0].start <= now - WINDOW_S:
            self._sum -= self._uses.popleft().airtime_s
        if not self._uses:
            self._sum = 0.0  # no float drift when the ledger empties

    def used_s(self, now: float) -> float:
        """Airtime counted against the window ending at `now` (a pure query: asking about a
        future time never forgets transmissions that still count today)."""
        return sum(u.airtime_s for u in self._uses if u.start > now - WINDOW_S)

    def can_send(self, airtime_s: float, now: float) -> bool:
        return self.used_s(now) + airtime_s <= self.budget_s + 1e-9

    def record(self, airtime_s: float, now: float) -> None:
        """Charge a transmission starting at `now`. Raises ValueError if it would break the budget."""
        if not self.can_send(airtime_s, now):
            raise ValueError("airtime budget exceeded")
        if self._uses and now < self._uses[-1].start:
            raise ValueError("time went backwards")
        self._expire(now)
        self._uses.append(AirtimeUse(now, airtime_s))
        self._sum += airtime_s

    def earliest_fit(self, airtime_s: float, now: float) -> float | None:
        """The first time >= now at which `airtime_s` fits, or None if it never can."""
        if airtime_s > self.budget_s:
            return None
        live = [u for u in self._uses if u.start > now - WINDOW_S]
        need = sum(u.airtime_s for u in live) + airtime_s - self.budget_s
        if need <= 1e-9:
            return now
        freed = 0.0
        for use in live:
            freed += use.airtime_s
            if freed >= need - 1e-9:
                return use.start + WINDOW_S + 1e-6
        return None  # unreachable: freeing every use always fits airtime_s <= budget

    def uses(self, now: float) -> list[AirtimeUse]:
        return [u for u in self._uses if u.start > now - WINDOW_S]
