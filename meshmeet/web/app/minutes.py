"""The minutes (biên bản) of one meeting as a canonical record and its hash.

Built only from replicated state (meeting, agenda, attendance, motions, announcements) so every
hall that holds the same state computes the same bytes and the same SHA-256. Local facts (document
download progress, link state) are left out on purpose. Pure: this module must never do I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

MOTION_RESULT_KEYS = ("yes", "no", "abstain", "turnout", "present", "quorum", "quorum_met", "passed", "result", "rule")


def _result(motion: Mapping[str, Any]) -> dict[str, Any]:
    raw = motion.get("result")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = {"result": raw}
    source: Mapping[str, Any] = raw if isinstance(raw, Mapping) else motion.get("tally") or {}
    return {k: source[k] for k in MOTION_RESULT_KEYS if k in source}


def _uncounted(motion: Mapping[str, Any], site_of: Mapping[str, str]) -> list[dict[str, Any]]:
    """Ballots kept but not counted (late, beyond a check-in: meeting/tally.py), by site."""
    tally = motion.get("tally")
    rows = tally.get("uncounted") if isinstance(tally, Mapping) else None
    out = [{"site": site_of.get(str(u.get("node"))) or str(u.get("node")), "voter": u.get("voter"),
            "choice": u.get("choice"), "count": u.get("count"), "reason": u.get("reason")}
           for u in rows or () if isinstance(u, Mapping)]
    return sorted(out, key=lambda u: json.dumps(u, sort_keys=True, default=str))


def _motion(x: Mapping[str, Any], site_of: Mapping[str, str]) -> dict[str, Any]:
    out = {"title": x.get("title"), "rule": x.get("rule"), "status": x.get("status"), "result": _result(x)}
    uncounted = _uncounted(x, site_of)
    if uncounted:  # only then, so minutes without such ballots keep their record (and hash)
        out["uncounted"] = uncounted
    return out


def minutes_record(meeting: Mapping[str, Any], announcements: list[Mapping[str, Any]],
                   site_of: Mapping[str, str]) -> dict[str, Any]:
    """The record from a `meeting` API answer, the `announcements` list and node id -> site names."""
    m = meeting.get("meeting") or {}
    agenda = sorted(meeting.get("agenda") or [], key=lambda a: (a.get("position") or 0, str(a.get("id"))))
    per_hall = (meeting.get("attendance") or {}).get("per_hall") or []
    if isinstance(per_hall, Mapping):  # {node: present}
        per_hall = [{"node": k, "present": v} for k, v in per_hall.items()]
    attendance: dict[str, int] = {}
    for row in per_hall:
        if isinstance(row, Mapping) and type(row.get("present")) is int:
            node = str(row.get("node"))
            attendance[site_of.get(node) or str(row.get("site") or node)] = row["present"]
    attendance = dict(sorted(attendance.items()))
    motions = sorted(meeting.get("motions") or [], key=lambda x: str(x.get("id")))
    return {
        "meeting": {k: m.get(k) for k in ("id", "title", "starts", "status")},
        "agenda": [{"title": a.get("title"), "status": a.get("status")} for a in agenda],
        "attendance": {"per_hall": attendance, "total": sum(attendance.values())},
        "motions": [_motion(x, site_of) for x in motions],
        "announcements": [{"text": a.get("text"), "urgent": bool(a.get("urgent"))}
                          for a in sorted(announcements, key=lambda a: (a.get("at") or 0, str(a.get("id"))))],
    }


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the record's canonical JSON (sorted keys, UTF-8, no spaces)."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
