"""How a motion's ballots are counted: the one function every reader uses (API, CLI, minutes,
TV, LoRa tally messages), decided only from replicated rows, so every replica that holds the
same rows counts the same.

- A node's head count is its latest check-in for the meeting (by `at`, then id).
- While the motion is open, a ballot counts if it is well formed and its node's counted
  ballots, taken in (at, voter) order, stay within that node's head count; the ballot that
  would pass it, and every later one of that node, is `over_checkin`.
- When HQ closes the motion it writes the close record (the motion's `result`: the counts,
  `present`, `counted` = {node: [voter, ...]}, the ballots it counted, and `over`, those it held
  beyond a check-in). From then on exactly the ballots listed in `counted` count, everywhere,
  with the head count frozen in the record; those in `over` stay `over_checkin`, and every
  other ballot is `late`: cast after the close, or still on its way (a partition) when HQ closed. Late ballots stay stored and are listed in `uncounted` with their reason. A
  close record without `counted` (written before this rule) is counted as if open.
This module must never read the store, the roster or a clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from .authority import BALLOT_CHOICES, MAX_PEOPLE

CHOICES = ("yes", "no", "abstain")
Row = Mapping[str, Any]


def head_counts(checkins: Iterable[Row]) -> dict[str, int]:
    """Present per node: its latest check-in (by `at`, then id); malformed rows are skipped."""
    latest: dict[str, tuple[float, str, int]] = {}
    for row in checkins:
        present, node = row.get("present"), row.get("node")
        if type(present) is not int or not 0 <= present <= MAX_PEOPLE or type(node) is not str:
            continue
        at = row.get("at")
        mark = (at if isinstance(at, (int, float)) and at == at else 0.0, str(row.get("id")), present)
        if node not in latest or mark > latest[node]:
            latest[node] = mark
    return {node: mark[2] for node, mark in latest.items()}


def close_record(motion: Row) -> dict[str, Any] | None:
    """The close record of a closed motion whose `result` lists the ballots counted, else None."""
    if motion.get("status") != "closed" or not isinstance(motion.get("result"), str):
        return None
    try:
        record = json.loads(motion["result"])
    except ValueError:
        return None
    counted = record.get("counted") if isinstance(record, dict) else None
    if not isinstance(counted, dict) or not all(isinstance(v, list) for v in counted.values()):
        return None
    return record


def _well_formed(ballot: Row) -> bool:
    count = ballot.get("count")
    return ballot.get("choice") in BALLOT_CHOICES and type(count) is int and 1 <= count <= MAX_PEOPLE


def _order(ballot: Row) -> tuple:
    at = ballot.get("at")
    return (at if isinstance(at, (int, float)) and at == at else 0.0, str(ballot.get("voter")))


def count_motion(motion: Row, ballots: Iterable[Row], present: Mapping[str, int]) -> dict[str, Any]:
    """The tally of one motion from its ballot rows and the head counts of its meeting.

    Returns yes/no/abstain, turnout, present, quorum, passed, rule, closed, `per_node` ({node:
    {choice: count}} of counted ballots), `counted` and `over` ({node: [voter]}, what a close
    record lists) and `uncounted` (every other ballot with its `reason`: late, over_checkin or
    invalid).
    """
    record = close_record(motion)
    listed = {node: set(voters) for node, voters in record["counted"].items()} if record else None
    over_listed = record.get("over") if record and isinstance(record.get("over"), dict) else {}
    if record is not None and type(record.get("present")) is int:
        total_present = record["present"]
    else:
        total_present = sum(present.values())
    by_node: dict[str, list[Row]] = {}
    for b in ballots:
        by_node.setdefault(str(b.get("node")), []).append(b)
    counts = dict.fromkeys(CHOICES, 0)
    per_node: dict[str, dict[str, int]] = {}
    counted: dict[str, list[str]] = {}
    uncounted: list[dict[str, Any]] = []
    for node in sorted(by_node):
        room = present.get(node, 0)
        full = False
        for b in sorted(by_node[node], key=_order):
            reason = None
            if not _well_formed(b):
                reason = "invalid"
            elif listed is not None:
                if b.get("voter") not in listed.get(node, ()):
                    reason = "over_checkin" if b.get("voter") in (over_listed.get(node) or ()) else "late"
            elif full or b["count"] > room:
                full, reason = True, "over_checkin"
            else:
                room -= b["count"]
            if reason is not None:
                uncounted.append({"node": node, "voter": b.get("voter"), "choice": b.get("choice"),
                                  "count": b.get("count"), "at": b.get("at"), "reason": reason})
                continue
            counts[b["choice"]] += b["count"]
            per_node.setdefault(node, dict.fromkeys(CHOICES, 0))[b["choice"]] += b["count"]
            counted.setdefault(node, []).append(str(b.get("voter")))
    over: dict[str, list[str]] = {}
    for u in uncounted:
        if u["reason"] == "over_checkin":
            over.setdefault(u["node"], []).append(str(u["voter"]))
    turnout = sum(counts.values())
    rule = motion.get("rule")
    base = max(total_present, turnout)
    quorum = turnout * 2 > total_present
    passed = counts["yes"] * 2 > base if rule == "majority" else counts["yes"] * 3 >= base * 2 > 0
    return {**counts, "turnout": turnout, "present": total_present, "quorum": quorum,
            "passed": bool(passed) and quorum, "rule": rule, "closed": record is not None,
            "per_node": per_node, "counted": {n: sorted(v) for n, v in counted.items()},
            "over": {n: sorted(v) for n, v in over.items()}, "uncounted": uncounted}


def record_of(result: Mapping[str, Any]) -> str:
    """The close record HQ writes into the motion's `result` (canonical JSON)."""
    keep = ("yes", "no", "abstain", "turnout", "present", "quorum", "passed", "rule", "counted", "over")
    return json.dumps({k: result[k] for k in keep}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
