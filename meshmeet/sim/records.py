"""What a simulator run records for its report: one `Window` per scenario event, one record per broadcast.

Plain data filled in by the simulator (sim/network.py) and read by sim/report.py and the tree
benchmark. This module must never compute anything from the simulation itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Window:
    """What happened between one event (or the start) and the next."""

    at: float
    label: str
    converged_at: float | None = None
    converged_after_s: float | None = None
    root: str | None = None
    roots: int = 0
    depth: int = 0
    unreachable: list[str] = field(default_factory=list)
    messages: int = 0
    changes: int = 0


@dataclass
class BroadcastRecord:
    """One broadcast of the workload: who sent it when, who should get it, who did (and how often)."""

    source: str
    sent_at: float
    expected: frozenset[str]
    stable: bool
    received: set[str] = field(default_factory=set)
    duplicates: int = 0
