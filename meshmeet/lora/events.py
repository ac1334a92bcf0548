"""What a LoraCore reports: delivered messages, acks, give-ups, and its airtime use.

This module must never hold behaviour: only the shapes core.py returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import Message


@dataclass(frozen=True)
class Delivered:
    """A message for this node (or broadcast), delivered once per (source, msg_id)."""

    source: int
    msg_id: int
    dest: int
    message: Message


@dataclass(frozen=True)
class Acked:
    msg_id: int
    by: int


@dataclass(frozen=True)
class GaveUp:
    msg_id: int
    missing: frozenset[int]


Event = Delivered | Acked | GaveUp


@dataclass(frozen=True)
class AirtimeReport:
    budget_s_per_hour: float
    used_s: float
    queued: dict[str, int]
    frames_sent: int
    airtime_sent_s: float

    def as_dict(self) -> dict:
        return {
            "budget_s_per_hour": round(self.budget_s_per_hour, 3),
            "used_s": round(self.used_s, 3),
            "queued": dict(self.queued),
            "frames_sent": self.frames_sent,
            "airtime_sent_s": round(self.airtime_sent_s, 3),
        }
