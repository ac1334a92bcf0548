"""Link cost for the relay tree: one integer per link from measured RTT, loss, capacity and metering.

The cost is what a node adds to its parent's advertised metric. It must be a positive integer so
that every hop makes a route strictly worse (the loop-freedom argument needs that). This module
must never read clocks or sockets; it only turns measurements into a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

COST_SCALE = 16                 # cost units of an ideal hop (1 ms LAN, no loss, fast, unmetered)
RTT_UNIT_S = 0.010              # every 10 ms of round trip adds one ideal hop
REF_CAPACITY_BPS = 10_000_000   # a 10 Mbit/s link adds one ideal hop; slower links add more
METERED_FACTOR = 4              # a metered (4G) link costs four times as much
MIN_CAPACITY_BPS = 1.0          # below this a link is treated as 1 bit/s
MAX_LOSS = 0.9                  # loss is clamped here so the cost stays finite
MIN_COST = 1
MAX_COST = 1 << 24              # one hop never costs more than this
COST_CHANGE_RATIO = 0.25        # a new measurement moves the cost only if it differs by more than this


@dataclass(frozen=True)
class LinkCostInputs:
    """What the link layer measured: round trip (s), loss ratio (0..1), capacity (bit/s), metered."""

    rtt_s: float = 0.001
    loss: float = 0.0
    capacity_bps: float = 100_000_000.0
    metered: bool = False


def link_cost(inputs: LinkCostInputs) -> int:
    """The cost of one hop over a link: ETX-weighted (1 + RTT/10 ms + 10 Mbit/s / capacity), x4 if metered."""
    rtt_s = inputs.rtt_s if math.isfinite(inputs.rtt_s) and inputs.rtt_s > 0 else 0.0
    loss = inputs.loss if math.isfinite(inputs.loss) else MAX_LOSS
    loss = min(max(loss, 0.0), MAX_LOSS)
    capacity = inputs.capacity_bps if math.isfinite(inputs.capacity_bps) and inputs.capacity_bps > MIN_CAPACITY_BPS else MIN_CAPACITY_BPS
    base = 1.0 + rtt_s / RTT_UNIT_S + REF_CAPACITY_BPS / capacity
    etx = 1.0 / ((1.0 - loss) ** 2)
    cost = COST_SCALE * base * etx * (METERED_FACTOR if inputs.metered else 1)
    if not math.isfinite(cost) or cost >= MAX_COST:
        return MAX_COST
    return max(round(cost), MIN_COST)


def cost_changed(old: int, new: int) -> bool:
    """Whether a re-measured cost differs enough from the one in use to be worth a route change."""
    return abs(new - old) > COST_CHANGE_RATIO * old
