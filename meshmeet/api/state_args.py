"""Argument checks for the node's state API handlers (state_api.py, state_documents.py).

Each check reads one named argument from a request's argument dict and returns it, or raises
ApiError 400 "bad_request" with a Vietnamese-then-English message naming the argument. GET query
arguments arrive as strings, so integer and boolean checks also accept their decimal and
"true"/"false"/"1"/"0" spellings. The 404/403 helpers build the matching ApiError the same way.
This module must never touch the store, the node or any I/O: it only inspects values and raises.
"""

from __future__ import annotations

import re
from typing import NoReturn

from .contract import ApiError

MAX_TITLE_CHARS = 500
MAX_TEXT_CHARS = 4000
MAX_ID_CHARS = 128
MAX_COUNT = 1_000_000
MEETING_STATES = ("scheduled", "started", "ended")
AGENDA_STATES = ("pending", "current", "done", "skipped")
SPEAK_STATES = ("waiting", "withdrawn")


def bad(name: str, vi: str, en: str) -> NoReturn:
    raise ApiError(400, "bad_request", f"Tham số “{name}”: {vi}", f"argument “{name}”: {en}")


def not_found(what_vi: str, what_en: str, key: object) -> NoReturn:
    raise ApiError(404, "not_found", f"Không tìm thấy {what_vi} {key}", f"no such {what_en}: {key}")


def forbidden(vi: str, en: str) -> NoReturn:
    raise ApiError(403, "not_authorised", vi, en)


def arg_str(args: dict, name: str, *, required: bool = True, max_chars: int = MAX_TITLE_CHARS,
            choices: tuple[str, ...] | None = None) -> str | None:
    value = args.get(name)
    if value is None:
        if required:
            bad(name, "bắt buộc", "is required")
        return None
    if not isinstance(value, str):
        bad(name, "phải là chuỗi", "must be a string")
    if required and not value.strip():
        bad(name, "không được để trống", "must not be empty")
    if len(value) > max_chars:
        bad(name, f"dài quá {max_chars} ký tự", f"longer than {max_chars} characters")
    if choices is not None and value not in choices:
        bad(name, "phải là " + " | ".join(choices), "must be " + " | ".join(choices))
    return value


def arg_id(args: dict, name: str, *, required: bool = True) -> str | None:
    return arg_str(args, name, required=required, max_chars=MAX_ID_CHARS)


def arg_int(args: dict, name: str, *, required: bool = True, low: int = 0, high: int = MAX_COUNT) -> int | None:
    value = args.get(name)
    if value is None:
        if required:
            bad(name, "bắt buộc", "is required")
        return None
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value.strip()):
        value = int(value.strip())  # GET query arguments are strings
    if type(value) is not int:
        bad(name, "phải là số nguyên", "must be an integer")
    if not low <= value <= high:
        bad(name, f"phải trong khoảng {low}..{high}", f"must be within {low}..{high}")
    return value


def arg_bool(args: dict, name: str, default: bool = False) -> bool:
    value = args.get(name, default)
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
        value = value.lower() in ("true", "1")
    if type(value) is not bool:
        bad(name, "phải là true hoặc false", "must be true or false")
    return value


__all__ = ["bad", "not_found", "forbidden", "arg_str", "arg_id", "arg_int", "arg_bool",
           "MAX_TITLE_CHARS", "MAX_TEXT_CHARS", "MAX_ID_CHARS", "MAX_COUNT",
           "MEETING_STATES", "AGENDA_STATES", "SPEAK_STATES"]
