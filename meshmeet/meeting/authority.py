"""Who may set which column of which replicated table, and which values it may hold: as data.

The row level (which roles may write a table at all; which column names the writing node) is
in schema.TableSpec. This module adds, per table and per column, the roles that may set the
column and the values it may hold (an inclusive numeric range for every number, a set of
choices, "the writer's own node id"), and which tables name their owner in the row id
(`NAMESPACED`: a meeting made by a hall has an id ending in "-<hall node id>"; only that hall and
HQ may change it). rules.py compiles it into the check every replica runs on every change,
local or received; `markdown_table` renders it for docs/state.md (a test keeps them equal).
State that a change alone cannot show (was the motion open, is the count within the hall's
check-in) is decided when counting, from replicated rows only (tally.py).
This module must never read a database, a clock or the roster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..store.chunks import CHUNK_BYTES, MAX_DOCUMENT_BYTES
from ..store.schema import TABLES

ANY = frozenset({"hq", "hall", "relay"})
HQ = frozenset({"hq"})
HQ_HALL = frozenset({"hq", "hall"})

MAX_PEOPLE = 100_000          # a head count or a ballot count: no commune hall holds more
MAX_POSITION = 1_000_000      # an agenda item's position
MAX_TIME_S = 10_000_000_000.0  # Unix seconds (year 2286); times are >= 0
MAX_CHUNK_BYTES = 16 * CHUNK_BYTES
MAX_MEMBER_CHARS = 64         # a member's name in a ballot's voter key ("@name")
MAX_SLIDE_PAGE = 10_000       # a slide show's page number (1-based; 0 ends the show)
NODE_ID_HEX = 16
NAMESPACE_SEP = "-"
_NODE_ID = re.compile(r"[0-9a-f]{16}")

MEETING_STATES = frozenset({"scheduled", "started", "ended"})
AGENDA_STATES = frozenset({"pending", "current", "done", "skipped"})
MOTION_STATES = frozenset({"open", "closed"})
MOTION_RULES = frozenset({"majority", "two-thirds"})
BALLOT_CHOICES = frozenset({"yes", "no", "abstain"})
FEEDBACK_SOURCES = frozenset({"node", "hall_page", "zalo"})
MAX_FEEDBACK_CHARS = 4000     # the API's bound (node/state_args.py); the hall page's is 1,000
MAX_SEALED_BYTES = 1024       # citizens/sealed.py
SHORT_CODE_CHARS = 8          # citizens/codes.py
SHORT_CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SPEAK_STATES = frozenset({"waiting", "withdrawn", "speaking", "done"})
HALL_SPEAK_STATES = frozenset({"waiting", "withdrawn"})
# Where a node's update stands (meshmeet/node/release_service.py, docs/release.md).
UPDATE_STATES = frozenset({"running", "fetching", "installed", "switching", "rolled_back", "refused", "failed"})


@dataclass(frozen=True)
class Col:
    """What may be written into one column: by whom, and which values (None is always allowed
    unless `required`; a number must lie in [low, high] and be finite)."""

    roles: frozenset[str]
    low: int | float | None = None
    high: int | float | None = None
    choices: frozenset[str] | None = None
    hall_choices: frozenset[str] | None = None  # narrower choices for a writer that is not HQ
    self_only: bool = False  # the value must be the writing node's id
    required: bool = False
    hex_chars: int | None = None  # exactly this many lowercase hex digits
    max_len: int | None = None  # at most this many characters (text) or bytes (blob)
    alphabet: str | None = None  # every character from this set
    note: str = ""


_TIME = dict(low=0.0, high=MAX_TIME_S)

# Per table, per column (every value column of schema.TABLES, checked by a test).
COLUMNS: dict[str, dict[str, Col]] = {
    "roster_entries": {"blob": Col(ANY, required=True, note="signed by the commune admin inside")},
    "meetings": {
        "title": Col(HQ_HALL), "starts": Col(HQ_HALL), "location": Col(HQ_HALL),
        "status": Col(HQ, choices=MEETING_STATES),
        "created_by": Col(HQ_HALL, self_only=True),
    },
    "agenda_items": {
        "meeting_id": Col(HQ), "position": Col(HQ, low=0, high=MAX_POSITION), "title": Col(HQ),
        "status": Col(HQ, choices=AGENDA_STATES, note="`current` marks the meeting's current item"),
    },
    "documents": {
        "meeting_id": Col(HQ), "name": Col(HQ), "size": Col(HQ, low=0, high=MAX_DOCUMENT_BYTES),
        "sha256": Col(HQ, hex_chars=64), "chunk_bytes": Col(HQ, low=1, high=MAX_CHUNK_BYTES), "chunks": Col(HQ),
    },
    "attendance": {
        "meeting_id": Col(HQ_HALL), "node": Col(HQ_HALL, self_only=True),
        "present": Col(HQ_HALL, low=0, high=MAX_PEOPLE, required=True), "at": Col(HQ_HALL, **_TIME),
    },
    "motions": {
        "meeting_id": Col(HQ), "title": Col(HQ), "rule": Col(HQ, choices=MOTION_RULES),
        "status": Col(HQ, choices=MOTION_STATES),
        "result": Col(HQ, note="the close record: counts and the ballots counted (tally.py)"),
    },
    "ballots": {
        "choice": Col(HQ_HALL, choices=BALLOT_CHOICES, required=True, note="`#choice` voter: this choice"),
        "count": Col(HQ_HALL, low=1, high=MAX_PEOPLE, required=True, note="`@member` voter: 1"),
        "at": Col(HQ_HALL, **_TIME),
    },
    "announcements": {"text": Col(HQ), "urgent": Col(HQ, low=0, high=1), "at": Col(HQ, **_TIME),
                      "zalo": Col(HQ, low=0, high=1, note="1: the Zalo bridge sends it to the OA's followers")},
    "feedback": {"node": Col(HQ_HALL, self_only=True), "meeting_id": Col(HQ_HALL),
                 "text": Col(HQ_HALL, max_len=MAX_FEEDBACK_CHARS), "at": Col(HQ_HALL, **_TIME),
                 "source": Col(HQ_HALL, choices=FEEDBACK_SOURCES),
                 "code": Col(HQ_HALL, max_len=SHORT_CODE_CHARS, alphabet=SHORT_CODE_ALPHABET,
                             note="the resident's short code"),
                 "contact": Col(HQ_HALL, max_len=MAX_SEALED_BYTES, note="sealed to HQ; never plain text")},
    "replies": {"feedback_id": Col(HQ), "node": Col(HQ, self_only=True), "text": Col(HQ), "at": Col(HQ, **_TIME)},
    "chat": {"meeting_id": Col(HQ_HALL), "node": Col(HQ_HALL, self_only=True), "text": Col(HQ_HALL),
             "at": Col(HQ_HALL, **_TIME)},
    "speaking_queue": {
        "state": Col(HQ_HALL, choices=SPEAK_STATES, hall_choices=HALL_SPEAK_STATES),
        "requested_at": Col(HQ_HALL, **_TIME),
    },
    "feedback_moderation": {"hidden": Col(HQ_HALL, low=0, high=1, required=True)},
    "doc_holdings": {"sha256": Col(ANY, required=True, hex_chars=64), "at": Col(ANY, **_TIME)},
    "slides": {"doc_id": Col(HQ, required=True), "page": Col(HQ, low=0, high=MAX_SLIDE_PAGE, required=True,
                                                            note="0 ends the show"),
               "at": Col(HQ, required=True, **_TIME)},
    "node_versions": {"version": Col(ANY, required=True), "state": Col(ANY, choices=UPDATE_STATES),
                      "detail": Col(ANY), "at": Col(ANY, **_TIME)},
}

# Tables whose row id names the node that owns the row: a writer other than HQ may write only
# rows whose id ends in "-<its node id>"; HQ may write any (its own meetings have plain ids).
NAMESPACED: dict[str, str] = {"meetings": "id", "feedback_moderation": "feedback_id"}

# What each table's rows mean for authority beyond the columns (for the docs table).
STATE_NOTES: dict[str, str] = {
    "meetings": "a hall changes only meetings it created (id ends in `-<its node id>`); status only HQ",
    "agenda_items": "current item = `status` `current`, so HQ only",
    "motions": "HQ opens (`open`) and closes (`closed` + close record)",
    "ballots": "one per (motion, node, voter); counts only if in HQ's close record (closed motion) "
               "or the motion is open, and within the node's check-in (tally.py)",
    "speaking_queue": "a hall only for itself, `waiting`/`withdrawn`; HQ for anyone",
    "attendance": "a node's head count is its latest check-in",
    "slides": "the newest row (by `at`, then id) among a meeting's documents is the page every TV shows",
    "feedback": "a resident's feedback from a hall page has an id `…-<hall node id>`",
    "feedback_moderation": "a hall hides only feedback it received (id ends in `-<its node id>`)",
}


def namespace_of(row_id: str) -> str | None:
    """The node id a namespaced row id ends with ("<random>-<node id>"), else None (HQ's)."""
    head, sep, tail = row_id.rpartition(NAMESPACE_SEP)
    return tail if sep and head and _NODE_ID.fullmatch(tail) else None


def namespaced_id(random_hex: str, node_id: str) -> str:
    """The id of a row owned by `node_id` (its random part first, so LoRa's short refs differ)."""
    return f"{random_hex}{NAMESPACE_SEP}{node_id}"


def _roles(roles: frozenset[str]) -> str:
    return ", ".join(r for r in ("hq", "hall", "relay") if r in roles)


def _values(c: Col) -> str:
    parts = []
    if c.low is not None:
        lo = f"{c.low:g}" if isinstance(c.low, float) else f"{c.low:,}"
        hi = f"{c.high:g}" if isinstance(c.high, float) else f"{c.high:,}"
        parts.append(f"{lo}..{hi}")
    if c.choices is not None:
        parts.append("/".join(sorted(c.choices)))
        if c.hall_choices is not None:
            parts.append("not HQ: " + "/".join(sorted(c.hall_choices)))
    if c.self_only:
        parts.append("= writer's node id")
    if c.hex_chars:
        parts.append(f"{c.hex_chars} hex digits")
    if c.max_len is not None:
        parts.append(f"at most {c.max_len:,} long")
    if c.alphabet is not None:
        parts.append("Crockford base 32")
    if c.required:
        parts.append("required")
    if c.note:
        parts.append(c.note)
    return "; ".join(parts) or "any"


def markdown_table() -> str:
    """The authority table of docs/state.md, rendered from this data and schema.TABLES."""
    lines = ["| table | rows: who creates / owns | column: who may set it: values | under which state |",
             "|---|---|---|---|"]
    for spec in TABLES:
        if spec.owner is not None:
            own = f"`{spec.owner}` = writer" + (" (HQ: anyone)" if spec.hq_may_write_for_others else "")
        elif spec.name in NAMESPACED:
            own = "HQ any; a hall only ids `…-<its node id>`"
        else:
            own = "any row"
        kind = "add-only" if spec.kind == "addonly" else "LWW; delete: HQ"
        cols = "<br>".join(f"`{n}`: {_roles(c.roles)}: {_values(c)}" for n, c in COLUMNS[spec.name].items())
        lines.append(f"| {spec.name} ({kind}) | {_roles(spec.writers)}; {own} | {cols} | "
                     f"{STATE_NOTES.get(spec.name, 'any')} |")
    return "\n".join(lines)
