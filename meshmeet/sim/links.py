"""Simulated links: what one cable between two simulated nodes does to a message, and what it carried.

A `SimLink` serialises each direction at the link's bandwidth, adds its delay, keeps order (FIFO),
and turns a loss into a delay (the link layer retransmits) or, with the scenario's drop_lost, into
a drop. A cut raises its generation (what was in flight is lost with the cable) and the ends notice
after the link's detect_s. Each direction counts its messages and its control, broadcast and
steady-state control bytes for the report. This module must never read a clock (`now` is passed
in), never use randomness other than the generator it is handed, and never look at the tree.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from .scenario import LinkSpec

RETRANSMIT_MIN_S = 0.2       # a lost message is resent by the link (TCP, LoRa acks) after about this much


@dataclass
class Direction:
    """One direction of a link: when it is free again, the last arrival, and what it carried."""

    busy_until: float = 0.0
    last_arrival: float = 0.0
    bytes_control: int = 0
    bytes_broadcast: int = 0
    messages: int = 0
    steady_control: int = 0


@dataclass
class SimLink:
    """One scenario link: physical state (`phys_up`), whether its ends see it (`connected`), and a
    generation that changes whenever messages in flight must no longer arrive."""

    spec: LinkSpec
    phys_up: bool = True
    connected: bool = False
    generation: int = 0
    down_notice_at: float | None = None
    dirs: dict[str, Direction] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: LinkSpec) -> SimLink:
        return cls(spec, dirs={spec.a: Direction(), spec.b: Direction()})

    def cut(self, now: float) -> float | None:
        """The cable is cut: when its ends will notice (None: they were not connected)."""
        self.phys_up = False
        self.generation += 1           # what was in flight is lost with the cable
        if not self.connected:
            return None
        self.down_notice_at = now + self.spec.detect_s
        return self.down_notice_at

    def mend(self, now: float) -> float:
        """The cable is back: when its ends may connect again (not before they noticed the cut)."""
        self.phys_up = True
        notice = self.down_notice_at
        return notice if notice is not None and notice > now else now

    def open(self) -> None:
        """Both ends see the link up."""
        self.connected = True
        self.generation += 1
        self.down_notice_at = None

    def close(self) -> None:
        """Both ends see the link down; messages in flight are lost."""
        self.connected = False
        self.generation += 1
        self.down_notice_at = None

    def transmit(self, src: str, size: int, now: float, *, control: bool, steady: bool,
                 rng: random.Random, drop_lost: bool) -> float | None:
        """Count `size` bytes sent from `src` at `now`; when they arrive, or None when they are lost.

        `control`: tree messages (else broadcast payload); `steady`: sent in a steady period."""
        direction = self.dirs[src]
        direction.messages += 1
        if control:
            direction.bytes_control += size
            if steady:
                direction.steady_control += size
        else:
            direction.bytes_broadcast += size
        if not self.phys_up:
            return None                  # sent into a cut nobody has noticed yet
        spec = self.spec
        start = max(now, direction.busy_until)
        direction.busy_until = start + size * 8 / spec.bandwidth_bps
        arrival = direction.busy_until + spec.delay_s
        if spec.loss > 0 and rng.random() < spec.loss:
            if drop_lost:
                return None
            arrival += RETRANSMIT_MIN_S + 4 * spec.delay_s
        arrival = max(arrival, direction.last_arrival)   # links are FIFO
        direction.last_arrival = arrival
        return arrival

    def load(self, steady_minutes: float) -> dict[str, Any]:
        """This link's row of the report's link-load table."""
        a, b = self.spec.a, self.spec.b
        da, db = self.dirs[a], self.dirs[b]
        steady = da.steady_control + db.steady_control
        return {
            "a": a, "b": b, "kind": self.spec.kind,
            "bytes_a_to_b": da.bytes_control + da.bytes_broadcast,
            "bytes_b_to_a": db.bytes_control + db.bytes_broadcast,
            "control_bytes": da.bytes_control + db.bytes_control,
            "broadcast_bytes": da.bytes_broadcast + db.bytes_broadcast,
            "messages": da.messages + db.messages,
            "steady_control_bytes_per_min": round(steady / steady_minutes, 1) if steady_minutes > 0 else None,
        }
