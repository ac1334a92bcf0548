"""Who may write what, and which changes are well formed: decided from the change alone.

Every node runs the same checks on every change, local or received, using only the change
and the origin's roster role, so that all nodes accept exactly the same changes whatever
order they arrive in. This module must never read the database or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from .batch import OP_DELETE
from .schema import ADDONLY, LWW, TableSpec

MAX_KEY_CHARS = 128
MAX_VALUE_BYTES = 32 * 1024  # a document row of 200 MB lists 800 chunk names: 25,600 bytes
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
BALLOT_CHOICES = frozenset({"yes", "no", "abstain"})
HALL_QUEUE_STATES = frozenset({"waiting", "withdrawn"})
MOTION_RULES = frozenset({"majority", "two-thirds"})


@dataclass(frozen=True)
class Rejection:
    """Why a change is refused; `authority` tells a missing right from a malformed change."""

    authority: bool
    vi: str
    en: str


def _deny(vi: str, en: str) -> Rejection:
    return Rejection(True, vi, en)


def _bad(vi: str, en: str) -> Rejection:
    return Rejection(False, vi, en)


NOT_ON_ROSTER = _deny("Nút này không có trong danh sách thành viên", "this node is not on the roster")
UNKNOWN_TABLE = _bad("Bảng dữ liệu không tồn tại", "unknown table")
BAD_KEY = _bad("Khóa không hợp lệ", "malformed key")
EMPTY = _bad("Thay đổi không có giá trị", "change carries no values")
WHOLE_ROW = _bad("Bản ghi chỉ-thêm phải ghi đủ mọi cột", "add-only rows must be written whole")
UNKNOWN_COLUMN = _bad("Cột không tồn tại", "unknown column")
BAD_VALUE = _bad("Giá trị sai kiểu hoặc quá lớn", "value of the wrong type or too large")
DELETE_VALUES = _bad("Lệnh xóa không được kèm giá trị", "a delete carries no values")
NO_DELETE_ADDONLY = _bad("Bảng chỉ-thêm không cho xóa", "rows of an add-only table cannot be deleted")
BAD_CHOICE = _bad("Phiếu phải là yes/no/abstain với số lượng >= 1", "a ballot is yes/no/abstain with count >= 1")
BAD_RULE = _bad("Quy tắc biểu quyết phải là majority hoặc two-thirds", "motion rule must be majority or two-thirds")
BAD_PRESENT = _bad("Số người có mặt phải >= 0", "present count must be >= 0")
NOT_OWNER = _deny("Một điểm cầu chỉ được ghi dữ liệu của chính mình", "a node may only write its own rows here")
HALL_QUEUE = _deny("Điểm cầu chỉ được xin phát biểu hoặc rút lại", "a hall may only ask for or withdraw its turn")
BAD_HOLDING = _bad("Bản ghi tài liệu đã nhận phải có SHA-256 (64 chữ số hex)",
                   "a document holding names the document's SHA-256 (64 hex digits)")
ONLY_HQ_DELETES = _deny("Chỉ trung tâm (HQ) được xóa", "only HQ may delete")

_ROLE_VI = {"hq": "trung tâm (HQ)", "hall": "điểm cầu", "relay": "trạm chuyển tiếp"}
_TABLE_VI = {
    "roster_entries": "danh sách thành viên", "meetings": "cuộc họp", "agenda_items": "chương trình họp",
    "documents": "tài liệu", "attendance": "điểm danh", "motions": "biểu quyết", "ballots": "phiếu",
    "announcements": "thông báo", "feedback": "ý kiến", "replies": "trả lời ý kiến", "chat": "trò chuyện",
    "speaking_queue": "lượt phát biểu", "doc_holdings": "tài liệu đã nhận đủ",
}


def _role_denied(role: str, table: str) -> Rejection:
    return _deny(f"Vai trò {_ROLE_VI.get(role, role)} không được thay đổi {_TABLE_VI.get(table, table)}",
                 f"role {role!r} may not change {table}")


_NONE = type(None)
_ALLOWED = {str: frozenset({str, _NONE}), int: frozenset({int, _NONE}), float: frozenset({float, int, _NONE}),
            bytes: frozenset({bytes, _NONE})}
_STR_ONLY = frozenset({str})
_TABLE_CHECKED = frozenset({"ballots", "motions", "attendance", "speaking_queue", "doc_holdings"})
_HEX = frozenset("0123456789abcdef")
SHA256_HEX_CHARS = 64


class Rules:
    """The checks for one schema version, precomputed per table id."""

    def __init__(self, specs: dict[str, TableSpec]) -> None:
        self.by_tid = {s.tid: s for s in specs.values()}
        self._types = {s.tid: tuple(c.type for c in s.columns) for s in specs.values()}
        self._col = {s.tid: {c.name: i for i, c in enumerate(s.columns)} for s in specs.values()}
        # Per table: column index -> the Python types a value may have there.
        self._allowed = {s.tid: {i: _ALLOWED[c.type] for i, c in enumerate(s.columns)} for s in specs.values()}
        self._needs_table_check = {s.tid for s in specs.values() if s.name in _TABLE_CHECKED}

    def check(self, role: str | None, origin: str, tid: int, op: int, key: tuple, values: dict) -> Rejection | None:
        """None when the change may be applied, else why not."""
        spec = self.by_tid.get(tid)
        if spec is None:
            return UNKNOWN_TABLE
        if role is None:
            return NOT_ON_ROSTER
        if role not in spec.writers:
            return _role_denied(role, spec.name)
        if len(key) != len(spec.pk):
            return BAD_KEY
        for part in key:
            if type(part) is not str or not 0 < len(part) <= MAX_KEY_CHARS:
                return BAD_KEY
        types = self._types[tid]
        if op == OP_DELETE:
            if spec.kind != LWW:
                return NO_DELETE_ADDONLY
            if values:
                return DELETE_VALUES
            if role != "hq":
                return ONLY_HQ_DELETES
            return None
        if op != 0:
            return BAD_KEY
        if not values:
            return EMPTY
        if spec.kind == ADDONLY and len(values) != len(types):
            return WHOLE_ROW
        allowed = self._allowed[tid]
        for idx, value in values.items():
            if type(idx) is not int:
                return UNKNOWN_COLUMN
            ok = allowed.get(idx)
            if ok is None:
                return UNKNOWN_COLUMN
            t = type(value)
            if t not in ok:
                return BAD_VALUE
            if t is str or t is bytes:
                if len(value) > MAX_VALUE_BYTES:
                    return BAD_VALUE
            elif t is int and not INT64_MIN <= value <= INT64_MAX:
                return BAD_VALUE
        if spec.owner is not None:
            if spec.owner in spec.pk:
                owner = key[spec.pk.index(spec.owner)]
            else:
                owner = values.get(self._col[tid][spec.owner])
            if owner != origin and not (role == "hq" and spec.hq_may_write_for_others):
                return NOT_OWNER
        if tid in self._needs_table_check:
            return self._table_check(spec, role, values)
        return None

    def run_passes(self, role: str | None, origin: str, tid: int, op: int, key_columns: tuple,
                   columns: dict) -> bool:
        """True only when every change of a run would pass `check` (checked column-wise).

        False means "not sure": the caller then checks the run change by change, so this may
        be stricter than `check` but never more lenient.
        """
        spec = self.by_tid.get(tid)
        if spec is None or role is None or role not in spec.writers or op != 0 or not columns:
            return False
        if tid in self._needs_table_check or len(key_columns) != len(spec.pk):
            return False
        for column in key_columns:
            if set(map(type, column)) != _STR_ONLY or "" in column \
                    or max(map(len, column)) > MAX_KEY_CHARS:
                return False
        allowed = self._allowed[tid]
        if spec.kind == ADDONLY and len(columns) != len(allowed):
            return False
        for idx, column in columns.items():
            ok = allowed.get(idx) if type(idx) is int else None
            if ok is None:
                return False
            types = set(map(type, column))
            if not types <= ok:
                return False
            if str in types or bytes in types:
                sized = column if _NONE not in types else [v for v in column if v is not None]
                if max(map(len, sized)) > MAX_VALUE_BYTES:
                    return False
            elif int in types:
                ints = column if _NONE not in types and float not in types else [v for v in column if type(v) is int]
                if min(ints) < INT64_MIN or max(ints) > INT64_MAX:
                    return False
        if spec.owner is not None and not (role == "hq" and spec.hq_may_write_for_others):
            if spec.owner in spec.pk:
                owners = key_columns[spec.pk.index(spec.owner)]
            else:
                owners = columns.get(self._col[tid][spec.owner], ())
            if not owners or set(owners) != {origin}:
                return False
        return True

    def _table_check(self, spec: TableSpec, role: str, values: dict) -> Rejection | None:
        col = self._col[spec.tid]
        if spec.name == "ballots":
            count = values[col["count"]]
            if values[col["choice"]] not in BALLOT_CHOICES or type(count) is not int or count < 1:
                return BAD_CHOICE
        elif spec.name == "motions" and col["rule"] in values:
            if values[col["rule"]] not in MOTION_RULES:
                return BAD_RULE
        elif spec.name == "attendance":
            present = values[col["present"]]
            if type(present) is not int or present < 0:
                return BAD_PRESENT
        elif spec.name == "speaking_queue" and role != "hq":
            if values.get(col["state"], "waiting") not in HALL_QUEUE_STATES:
                return HALL_QUEUE
        elif spec.name == "doc_holdings":
            digest = values[col["sha256"]]
            if type(digest) is not str or len(digest) != SHA256_HEX_CHARS or not set(digest) <= _HEX:
                return BAD_HOLDING
        return None
