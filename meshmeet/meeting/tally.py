"""How a motion's ballots are counted: the one function every reader uses (API, CLI, minutes,
TV, LoRa tally messages), decided only from replicated rows, so every replica that holds the
same rows counts the same.

- A node's head count is its latest check-in for the meeting (by `at`, then id).
- While the motion is open, a ballot counts if it is well formed and its node's counted
  ballots, taken in (at, voter) order, stay within that node's head count; the ballot that
  would pass it, and every later one of that node, is `over_checkin`.
- When HQ closes the motion it writes the close record (the motion's `result`: the counts,
  `present`, `counted` = {node: {voter: [choice, count]}}, the ballots it counted, and `over`,
  those it held beyond a check-in). From then on exactly what `counted` lists counts,
  everywhere, with the head count frozen in the record; ballots in `over` stay `over_checkin`,
  a listed ballot whose row now says otherwise is `changed`, and every other ballot is `late`:
  cast after the close, or still on its way (a partition) when HQ closed. Uncounted ballots
  stay stored and are listed in `uncounted` with their reason. A close record without
  `counted` (written before schema v5) is counted as if open.
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
    if not isinstance(counted, dict) or not all(isinstance(v, dict) for v in counted.values()):
        return None
    return record


def _entry(value: Any) -> tuple[str, int] | None:
    """A close record's [choice, count] for one ballot, if well formed."""
    if isinstance(value, list) and len(value) == 2 and value[0] in BALLOT_CHOICES \
            and type(value[1]) is int and 1 <= value[1] <= MAX_PEOPLE:
        return value[0], value[1]
    return None


def _well_formed(ballot: Row) -> bool:
    count = ballot.get("count")
    return ballot.get("choice") in BALLOT_CHOICES and type(count) is int and 1 <= count <= MAX_PEOPLE


def _order(ballot: Row) -> tuple:
    at = ballot.get("at")
    return (at if isinstance(at, (int, float)) and at == at else 0.0, str(ballot.get("voter")))


def count_motion(motion: Row, ballots: Iterable[Row], present: Mapping[str, int]) -> dict[str, Any]:
    """The tally of one motion from its ballot rows and the head counts of its meeting.

    Returns yes/no/abstain, turnout, present, quorum, passed, rule, closed, `per_node` ({node:
    {choice: count}} of counted ballots), `counted` ({node: {voter: [choice, count]}}) and
    `over` ({node: [voter]}), what a close record lists, and `uncounted`: every other ballot
    row with its `reason`: late, over_checkin, invalid, or changed (a row that no longer says
    what HQ counted at the close: only its own origin can make one, by re-adding the key with an
    earlier clock; the close record's numbers still count).
    """
    record = close_record(motion)
    counts = dict.fromkeys(CHOICES, 0)
    per_node: dict[str, dict[str, int]] = {}
    counted: dict[str, dict[str, list]] = {}
    uncounted: list[dict[str, Any]] = []

    def count(node: str, voter: str, choice: str, n: int) -> None:
        counts[choice] += n
        per_node.setdefault(node, dict.fromkeys(CHOICES, 0))[choice] += n
        counted.setdefault(node, {})[voter] = [choice, n]

    def skip(b: Row, reason: str) -> None:
        uncounted.append({"node": str(b.get("node")), "voter": b.get("voter"), "choice": b.get("choice"),
                          "count": b.get("count"), "at": b.get("at"), "reason": reason})

    by_node: dict[str, list[Row]] = {}
    for b in ballots:
        by_node.setdefault(str(b.get("node")), []).append(b)
    if record is not None:  # closed: exactly what HQ counted, whatever arrived since
        total_present = record["present"] if type(record.get("present")) is int else sum(present.values())
        over_listed = record.get("over") if isinstance(record.get("over"), dict) else {}
        for node in sorted(record["counted"]):
            for voter, value in sorted(record["counted"][node].items()):
                entry = _entry(value)
                if entry is not None:
                    count(str(node), str(voter), *entry)
        for node in sorted(by_node):
            listed = record["counted"].get(node) or {}
            for b in sorted(by_node[node], key=_order):
                entry = _entry(listed.get(b.get("voter")))
                if entry is None:
                    skip(b, "invalid" if not _well_formed(b) else
                         "over_checkin" if b.get("voter") in (over_listed.get(node) or ()) else "late")
                elif entry != (b.get("choice"), b.get("count")):
                    skip(b, "changed")
    else:  # open (or closed before v5): within each node's check-in, in (at, voter) order
        total_present = sum(present.values())
        for node in sorted(by_node):
            room, full = present.get(node, 0), False
            for b in sorted(by_node[node], key=_order):
                if not _well_formed(b):
                    skip(b, "invalid")
                elif full or b["count"] > room:
                    full = True
                    skip(b, "over_checkin")
                else:
                    room -= b["count"]
                    count(node, str(b.get("voter")), b["choice"], b["count"])
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
            "per_node": per_node, "counted": counted, "over": {n: sorted(v) for n, v in over.items()},
            "uncounted": uncounted}


def record_of(result: Mapping[str, Any]) -> str:
    """The close record HQ writes into the motion's `result` (canonical JSON)."""
    keep = ("yes", "no", "abstain", "turnout", "present", "quorum", "passed", "rule", "counted", "over")
    return json.dumps({k: result[k] for k in keep}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
