"""Which changes of the replicated meeting state to mirror over LoRa while no IP path exists.

Sans-IO: the node reads rows of the sync store (read-only) and hands them here; this module says
which LoRa messages describe them (HQ: meeting control; a hall: its own attendance and vote
tally) and, remembering what it last described per subject, which of them are new. While IP is
up the node feeds it too, with `send=False`, so only what changed since IP went away goes over
the air. Sync ids (16 hex digits) travel as their first 32 bits (`short_ref`); the receiver maps
them back with `RefIndex`. This module must never read the store, send, or read a clock.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..meeting.tally import count_motion, head_counts
from .messages import MAX_SLIDE_PAGE, Attendance, Control, ControlAction, Message, Slide, Tally

REF_HEX_DIGITS = 8  # a sync id's first 32 bits name it on LoRa
CHOICES = ("yes", "no", "abstain")

Row = Mapping[str, Any]
Subject = tuple[str, str]  # (what, sync id), e.g. ("meeting", "0011223344556677")


def short_ref(row_id: str) -> int:
    """A sync id as a u32 for LoRa: its first 8 hex digits (CRC-32 for ids that are not hex)."""
    try:
        return int(row_id[:REF_HEX_DIGITS], 16) if len(row_id) >= REF_HEX_DIGITS else zlib.crc32(row_id.encode())
    except ValueError:
        return zlib.crc32(row_id.encode())


@dataclass(frozen=True)
class StateRows:
    """The rows the watch needs, as read from the store."""

    meetings: tuple[Row, ...] = ()
    agenda_items: tuple[Row, ...] = ()
    motions: tuple[Row, ...] = ()
    attendance: tuple[Row, ...] = ()
    ballots: tuple[Row, ...] = ()
    slides: tuple[Row, ...] = ()


def _live_meetings(rows: StateRows) -> dict[str, Row]:
    return {m["id"]: m for m in rows.meetings if m.get("status") in ("started", "ended")}


def control_messages(rows: StateRows) -> dict[Subject, Message]:
    """HQ's view: meeting started/ended, the current agenda item, motions open/closed."""
    out: dict[Subject, Message] = {}
    live = _live_meetings(rows)
    for mid, meeting in sorted(live.items()):
        action = ControlAction.STARTED if meeting["status"] == "started" else ControlAction.ENDED
        out[("meeting", mid)] = Control(short_ref(mid), action)
    for item in sorted(rows.agenda_items, key=lambda r: r["id"]):
        mid = item.get("meeting_id")
        if item.get("status") == "current" and mid in live and live[mid]["status"] == "started":
            position = item.get("position")
            out[("item", mid)] = Control(short_ref(mid), ControlAction.AGENDA_ITEM,
                                         position if type(position) is int and 0 <= position < 1 << 32 else 0)
    for motion in sorted(rows.motions, key=lambda r: r["id"]):
        mid = motion.get("meeting_id")
        if mid in live and motion.get("status") in ("open", "closed"):
            action = ControlAction.VOTE_OPEN if motion["status"] == "open" else ControlAction.VOTE_CLOSED
            out[("motion", motion["id"])] = Control(short_ref(mid), action, short_ref(motion["id"]))
    slide = slide_message(rows.slides)
    if slide is not None:
        out[("slide", "")] = slide
    return out


def slide_message(slides: Iterable[Row]) -> Slide | None:
    """HQ's newest page turn (meshmeet/slides/state.py) as a LoRa SLIDE: the document's short ref,
    the page, and the number of turns so far (a receiver never goes back to an older turn)."""
    rows = [r for r in slides if isinstance(r.get("doc_id"), str) and type(r.get("page")) is int
            and 0 <= r["page"] <= MAX_SLIDE_PAGE]
    if not rows:
        return None
    newest = max(rows, key=lambda r: (r.get("at") or 0.0, str(r.get("id"))))
    return Slide(short_ref(newest["doc_id"]), newest["page"], min(len(rows), (1 << 32) - 1))


def hall_messages(node_id: str, rows: StateRows) -> dict[Subject, Message]:
    """A hall's view: its latest check-in and its own vote tally per motion, for started meetings."""
    out: dict[Subject, Message] = {}
    started = {mid for mid, m in _live_meetings(rows).items() if m["status"] == "started"}
    latest: dict[str, tuple[float, str, int]] = {}
    for row in rows.attendance:
        mid = row.get("meeting_id")
        if row.get("node") != node_id or mid not in started or type(row.get("present")) is not int:
            continue
        mark = (row.get("at") or 0.0, row["id"], row["present"])
        if mid not in latest or mark > latest[mid]:
            latest[mid] = mark
    for mid, mark in sorted(latest.items()):
        out[("attendance", mid)] = Attendance(short_ref(mid), min(mark[2], (1 << 32) - 1), 0)
    motions = {m["id"]: m for m in rows.motions if m.get("meeting_id") in started}
    mine: dict[str, list[Row]] = {}
    for ballot in rows.ballots:
        if ballot.get("node") == node_id and ballot.get("motion_id") in motions:
            mine.setdefault(ballot["motion_id"], []).append(ballot)
    for motion_id, ballots in sorted(mine.items()):
        mid = motions[motion_id]["meeting_id"]
        # Counted as every reader counts (meeting/tally.py): late or over-check-in ballots are not sent.
        present = head_counts(r for r in rows.attendance if r.get("meeting_id") == mid)
        per = count_motion(motions[motion_id], ballots, present)["per_node"].get(node_id, dict.fromkeys(CHOICES, 0))
        out[("tally", motion_id)] = Tally(short_ref(mid), short_ref(motion_id),
                                          *(min(per[c], (1 << 32) - 1) for c in CHOICES))
    return out


@dataclass
class StateWatch:
    """Remembers the last message per subject; returns only subjects whose message changed."""

    known: dict[Subject, Message] = field(default_factory=dict)

    def update(self, current: Mapping[Subject, Message], *, send: bool) -> list[Message]:
        """The messages to send now (none when `send` is False: IP carries the change)."""
        changed = [msg for subject, msg in current.items() if self.known.get(subject) != msg]
        self.known = dict(current)
        return changed if send else []


@dataclass
class RefIndex:
    """Maps LoRa refs back to the local sync ids of meetings and motions (for status)."""

    ids: dict[int, str] = field(default_factory=dict)

    def learn(self, row_ids: Iterable[str]) -> None:
        self.ids = {short_ref(i): i for i in row_ids}

    def resolve(self, message: Message) -> dict[str, str]:
        out: dict[str, str] = {}
        if isinstance(message, (Control, Tally, Attendance)) and message.meeting in self.ids:
            out["meeting_id"] = self.ids[message.meeting]
        ref = message.item if isinstance(message, Tally) else (
            message.item if isinstance(message, Control) and message.action in (
                ControlAction.VOTE_OPEN, ControlAction.VOTE_CLOSED) else None)
        if ref is not None and ref in self.ids:
            out["motion_id"] = self.ids[ref]
        return out
