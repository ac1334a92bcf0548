"""Who may write what, and which changes are well formed: decided from the change alone.

Every node runs the same checks on every change, local or received, using only the change
and the origin's roster role, so that all nodes accept exactly the same changes whatever
order they arrive in. The rules are data: table level in schema.TableSpec (writers, owner
column), column level and namespaced row ids in authority.py; this module compiles them per
table id. This module must never read the database or the clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .authority import COLUMNS, MAX_MEMBER_CHARS, NAMESPACED, Col, namespace_of
from ..store.batch import OP_DELETE
from ..store.errors import Rejection
from ..store.schema import ADDONLY, LWW, TableSpec

MAX_KEY_CHARS = 128
MAX_VALUE_BYTES = 32 * 1024  # a document row of 200 MB lists 800 chunk names: 25,600 bytes
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


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
BAD_VOTER = _bad("Phiếu tổng của điểm cầu là #<lựa chọn> đúng lựa chọn đó; "
                 "phiếu của một người là @<tên> với số lượng 1",
                 "a hall's tally ballot is #<choice> for that choice; a member's is @<name> with count 1")
BAD_RULE = _bad("Quy tắc biểu quyết phải là majority hoặc two-thirds", "motion rule must be majority or two-thirds")
BAD_PRESENT = _bad("Số người có mặt phải >= 0", "present count must be >= 0")
NOT_OWNER = _deny("Một điểm cầu chỉ được ghi dữ liệu của chính mình", "a node may only write its own rows here")
HALL_QUEUE = _deny("Điểm cầu chỉ được xin phát biểu hoặc rút lại", "a hall may only ask for or withdraw its turn")
BAD_HOLDING = _bad("Bản ghi tài liệu đã nhận phải có SHA-256 (64 chữ số hex)",
                   "a document holding names the document's SHA-256 (64 hex digits)")
ONLY_HQ_DELETES = _deny("Chỉ trung tâm (HQ) được xóa", "only HQ may delete")
NOT_YOUR_ROW = _deny("Điểm cầu chỉ được sửa mục do chính mình tạo", "a hall may only change what it created itself")

_ROLE_VI = {"hq": "trung tâm (HQ)", "hall": "điểm cầu", "relay": "trạm chuyển tiếp"}
_TABLE_VI = {
    "roster_entries": "danh sách thành viên", "meetings": "cuộc họp", "agenda_items": "chương trình họp",
    "documents": "tài liệu", "attendance": "điểm danh", "motions": "biểu quyết", "ballots": "phiếu",
    "announcements": "thông báo", "feedback": "ý kiến", "replies": "trả lời ý kiến", "chat": "trò chuyện",
    "speaking_queue": "lượt phát biểu", "doc_holdings": "tài liệu đã nhận đủ",
    "feedback_moderation": "ẩn ý kiến khỏi TV",
    "node_versions": "phiên bản của nút",
}


def _role_denied(role: str, table: str) -> Rejection:
    return _deny(f"Vai trò {_ROLE_VI.get(role, role)} không được thay đổi {_TABLE_VI.get(table, table)}",
                 f"role {role!r} may not change {table}")


def _column_denied(role: str, table: str, column: str) -> Rejection:
    return _deny(f"Vai trò {_ROLE_VI.get(role, role)} không được thay đổi cột {column} của "
                 f"{_TABLE_VI.get(table, table)}", f"role {role!r} may not change {table}.{column}")


_NONE = type(None)
_ALLOWED = {str: frozenset({str, _NONE}), int: frozenset({int, _NONE}), float: frozenset({float, int, _NONE}),
            bytes: frozenset({bytes, _NONE})}
_STR_ONLY = frozenset({str})
_HEX = frozenset("0123456789abcdef")
SHA256_HEX_CHARS = 64


@dataclass(frozen=True)
class _ColCheck:
    """One column's rule compiled, with its ready-made rejections."""

    name: str
    col: Col
    out_of_range: Rejection
    not_a_choice: Rejection
    missing: Rejection

    def value_rejection(self, role: str, origin: str, value: object) -> Rejection | None:
        """None when `value` (of an allowed type) may be written here by `role`/`origin`."""
        c = self.col
        if value is None:
            return self.missing if c.required else None
        if c.choices is not None:
            allowed = c.hall_choices if role != "hq" and c.hall_choices is not None else c.choices
            if value not in allowed:
                return self.not_a_choice
        if c.low is not None and not c.low <= value <= c.high:  # type: ignore[operator]  # NaN fails too
            return self.out_of_range
        if c.self_only and value != origin:
            return NOT_OWNER
        if c.hex_chars is not None and (len(value) != c.hex_chars or not set(value) <= _HEX):  # type: ignore[arg-type]
            return self.not_a_choice
        if c.max_len is not None and len(value) > c.max_len:  # type: ignore[arg-type]
            return self.out_of_range
        if c.alphabet is not None and (type(value) is not str or not set(value) <= set(c.alphabet)):
            return self.not_a_choice
        return None


def _compile(spec: TableSpec, index: int) -> _ColCheck:
    column = spec.columns[index].name
    c = COLUMNS[spec.name][column]
    where_vi, where_en = f"cột {column} của {_TABLE_VI.get(spec.name, spec.name)}", f"{spec.name}.{column}"
    out = _bad(f"Giá trị {where_vi} phải trong khoảng {c.low}..{c.high}",
               f"{where_en} must be within {c.low}..{c.high}")
    if spec.name == "ballots":
        choice = missing = BAD_CHOICE
        out = _bad(f"Số phiếu phải trong khoảng {c.low}..{c.high}",
                   f"a ballot's count must be within {c.low}..{c.high}")
    elif spec.name == "motions" and column == "rule":
        choice = missing = BAD_RULE
    elif spec.name == "attendance" and column == "present":
        missing = BAD_PRESENT
        out = _bad(f"Số người có mặt phải trong khoảng {c.low}..{c.high}",
                   f"present count must be within {c.low}..{c.high}")
        choice = BAD_PRESENT
    elif spec.name == "speaking_queue" and column == "state":
        choice = missing = HALL_QUEUE
    elif spec.name == "doc_holdings" and column == "sha256":
        choice = missing = BAD_HOLDING
    elif c.max_len is not None:
        out = _bad(f"Giá trị {where_vi} dài tối đa {c.max_len}", f"{where_en} is at most {c.max_len} long")
        choice = _bad(f"Giá trị {where_vi} có ký tự không hợp lệ", f"{where_en} holds characters it may not")
        missing = _bad(f"Thiếu giá trị {where_vi}", f"{where_en} is required")
    else:
        allowed = "|".join(sorted(c.choices)) if c.choices else f"{c.hex_chars} chữ số hex / hex digits"
        choice = _bad(f"Giá trị {where_vi} phải là {allowed}", f"{where_en} must be {allowed}")
        missing = _bad(f"Thiếu giá trị {where_vi}", f"{where_en} is required")
    return _ColCheck(column, c, out, choice, missing)


def _fits(c: Col, role: str, origin: str, column: list) -> bool:
    """Column-wise: True only when every value of `column` passes `_ColCheck.value_rejection`."""
    values = column if None not in column else [v for v in column if v is not None]
    if len(values) != len(column) and c.required:
        return False
    if not values:
        return True
    if c.choices is not None:
        allowed = c.hall_choices if role != "hq" and c.hall_choices is not None else c.choices
        if not set(values) <= allowed:
            return False
    if c.low is not None:
        # sum() is finite only when no value is NaN or infinite; then min/max give the range.
        if (float in set(map(type, values)) and not math.isfinite(sum(values))) \
                or min(values) < c.low or max(values) > c.high:
            return False
    if c.self_only and set(values) != {origin}:
        return False
    return c.hex_chars is None and c.max_len is None and c.alphabet is None


class Rules:
    """The checks for one schema version, precomputed per table id."""

    def __init__(self, specs: dict[str, TableSpec]) -> None:
        self.by_tid = {s.tid: s for s in specs.values()}
        self._types = {s.tid: tuple(c.type for c in s.columns) for s in specs.values()}
        self._col = {s.tid: {c.name: i for i, c in enumerate(s.columns)} for s in specs.values()}
        # Per table: column index -> the Python types a value may have there.
        self._allowed = {s.tid: {i: _ALLOWED[c.type] for i, c in enumerate(s.columns)} for s in specs.values()}
        # Per table: column index -> its authority rule (authority.COLUMNS).
        self._checks = {s.tid: [_compile(s, i) for i in range(len(s.columns))] for s in specs.values()}
        # Per namespaced table: the index of the key part that names the owning node.
        self._namespaced = {s.tid: s.pk.index(NAMESPACED[s.name]) for s in specs.values() if s.name in NAMESPACED}
        # Per add-only table: the columns every row names (those it had when it was made; a row
        # from a node of an older schema leaves the later ones out, and they read as None).
        self._base = {s.tid: {i for i, c in enumerate(s.columns) if c.since <= s.since} for s in specs.values()}
        self._ballots = next((s.tid for s in specs.values() if s.name == "ballots"), None)
        self._needs_table_check = {self._ballots, *(s.tid for s in specs.values() if s.name == "doc_holdings")}

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
        if spec.kind == ADDONLY and not self._base[tid] <= values.keys():
            return WHOLE_ROW
        allowed = self._allowed[tid]
        checks = self._checks[tid]
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
            rule = checks[idx]
            if role not in rule.col.roles:
                return _column_denied(role, spec.name, rule.name)
            rejection = rule.value_rejection(role, origin, value)
            if rejection is not None:
                return rejection
        if spec.owner is not None:
            if spec.owner in spec.pk:
                owner = key[spec.pk.index(spec.owner)]
            else:
                owner = values.get(self._col[tid][spec.owner])
            if owner != origin and not (role == "hq" and spec.hq_may_write_for_others):
                return NOT_OWNER
        part = self._namespaced.get(tid)
        if part is not None and role != "hq" and namespace_of(key[part]) != origin:
            return NOT_YOUR_ROW
        if tid == self._ballots:
            return _ballot_check(key, values)
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
        checks = self._checks[tid]
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
            rule = checks[idx].col
            if role not in rule.roles or not _fits(rule, role, origin, column):
                return False
        if spec.owner is not None and not (role == "hq" and spec.hq_may_write_for_others):
            if spec.owner in spec.pk:
                owners = key_columns[spec.pk.index(spec.owner)]
            else:
                owners = columns.get(self._col[tid][spec.owner], ())
            if not owners or set(owners) != {origin}:
                return False
        part = self._namespaced.get(tid)
        if part is not None and role != "hq" and any(namespace_of(k) != origin for k in key_columns[part]):
            return False
        return True


def _ballot_check(key: tuple, values: dict) -> Rejection | None:
    """A ballot's voter key agrees with its values: "#<choice>" for that choice (a hall's tally
    for one choice) or "@<member name>" with count 1 (ballots: choice 0, count 1)."""
    voter = key[2]
    if voter[:1] == "#":
        return None if voter[1:] == values[0] else BAD_VOTER
    if voter[:1] == "@" and 1 < len(voter) <= 1 + MAX_MEMBER_CHARS:
        return None if values[1] == 1 else BAD_VOTER
    return BAD_VOTER
