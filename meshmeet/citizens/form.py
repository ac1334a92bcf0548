"""The resident feedback form (/y-kien): bytes of a request body in, a checked FeedbackForm or a
FormError (Vietnamese first, English second) out.

Text is NFC-normalised (a phone may send Vietnamese as base letter + combining marks), trimmed and
bounded; HTML, control and bidirectional-override characters and stacks of combining marks are
refused, never cleaned up silently; the honeypot field must stay empty. Text made only of characters
those checks have nothing to say about (nearly all text) is recognised by one compiled pattern
built from the Unicode database, and skips the per-character loop. Pure functions: this module
must never do I/O, read a clock or keep state, and never return text it has not checked.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass

MAX_BODY_BYTES = 8 * 1024        # a form of 1,000 Vietnamese characters percent-encoded is ~6 KiB
MAX_TEXT_CHARS = 1000
MIN_TEXT_CHARS = 2
MAX_NAME_CHARS = 80
MIN_PHONE_DIGITS = 9
MAX_PHONE_DIGITS = 15
MAX_COMBINING_RUN = 3            # Vietnamese needs at most 2 marks on a letter (ệ = e + ̂ + ̣)
HONEYPOT_FIELD = "website"       # hidden from people by CSS; bots fill it
FIELDS = frozenset({"text", "name", "phone", HONEYPOT_FIELD})

# "<" before any letter (not only ASCII: "<À" too), "/", "!" or "?"; an &entity;
_HTML = re.compile(r"<\s*(?:[^\W\d_]|[/!?])|&[A-Za-z#][A-Za-z0-9]{0,30};")
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_PHONE_CHARS = re.compile(r"[0-9+ .()\-]+")
_PHONE_MARKS = str.maketrans("", "", "+ .()-")  # what _PHONE_CHARS allows besides digits
# where the characters the per-character checks let through without a word are looked for, so that
# text made only of them (nearly all: Vietnamese, punctuation, emoji) skips that loop
_QUIET_BLOCKS = ((0x20, 0x24F), (0x1E00, 0x1EFF), (0x2000, 0x2BFF), (0x3000, 0x303F), (0x1F000, 0x1FAFF))


@dataclass(frozen=True)
class FormError(Exception):
    """Why the form was refused: an HTTP status, a stable code, the field, and the bilingual text."""

    status: int
    code: str
    field: str
    vi: str
    en: str


@dataclass(frozen=True)
class FeedbackForm:
    """A checked submission: text is NFC, 2..1000 characters; name/phone None when not given."""

    text: str
    name: str | None
    phone: str | None  # digits only, a leading + kept


def _err(code: str, field: str, vi: str, en: str, status: int = 400) -> FormError:
    return FormError(status, code, field, vi, en)


TOO_LARGE = _err("too_large", "", f"Nội dung gửi lên quá lớn (tối đa {MAX_BODY_BYTES // 1024} KB)",
                 f"request body too large (at most {MAX_BODY_BYTES // 1024} KB)", 413)
BAD_ENCODING = _err("bad_encoding", "", "Biểu mẫu gửi lên không đọc được", "the form could not be read")
BOT = _err("honeypot", HONEYPOT_FIELD, "Không gửi được ý kiến", "feedback not accepted")


def _quiet(ch: str) -> bool:
    """Nothing for the per-character checks to say: no control, format, surrogate, private-use,
    unassigned or bidirectional character, and no combining mark."""
    return ch not in _BIDI and unicodedata.category(ch)[0] not in "CM"


@functools.lru_cache(maxsize=2)
def _all_quiet(multiline: bool) -> re.Pattern:
    """A pattern matching text made only of quiet characters of _QUIET_BLOCKS (and newline and tab
    when `multiline`), built once from this Python's Unicode database."""
    spans: list[tuple[int, int]] = []
    for lo, hi in _QUIET_BLOCKS:
        for cp in range(lo, hi + 1):
            if _quiet(chr(cp)):
                if spans and spans[-1][1] == cp - 1:
                    spans[-1] = (spans[-1][0], cp)
                else:
                    spans.append((cp, cp))
    cls = "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in spans)
    return re.compile(f"[{cls}{chr(10) + chr(9) if multiline else ''}]*")


def clean_text(raw: str, field: str, max_chars: int, *, multiline: bool) -> str:
    """NFC, trimmed, checked; FormError naming `field` when it holds what the page refuses."""
    text = unicodedata.normalize("NFC", raw).strip()
    if len(text) > max_chars:
        raise _err("too_long", field, f"Quá dài: tối đa {max_chars} ký tự (đang có {len(text)})",
                   f"too long: at most {max_chars} characters (got {len(text)})")
    run = 0
    for ch in "" if _all_quiet(multiline).fullmatch(text) else text:  # the loop finds nothing in quiet text
        cat = unicodedata.category(ch)
        if ch in _BIDI or (cat in ("Cc", "Cf", "Cs", "Co", "Cn") and not (multiline and ch in "\n\t")
                           and ch != "\u200d"):  # ZWJ joins emoji sequences
            raise _err("bad_char", field, "Có ký tự điều khiển hoặc ký tự ẩn không được phép",
                       "contains a control or invisible character that is not allowed")
        run = run + 1 if cat.startswith("M") else 0
        if run > MAX_COMBINING_RUN:
            raise _err("stacked_marks", field, "Chữ bị chồng quá nhiều dấu", "too many accent marks stacked on a letter")
    if _HTML.search(text):
        raise _err("html", field, "Không được chứa mã HTML (dấu < hoặc mã &...;)",
                   "must not contain HTML (a < tag or an &entity;)")
    if not multiline and "\n" in text:
        raise _err("bad_char", field, "Chỉ được viết trên một dòng", "must be a single line")
    return text


def clean_phone(raw: str) -> str | None:
    raw = unicodedata.normalize("NFKC", raw).strip()
    if not raw:
        return None
    if not _PHONE_CHARS.fullmatch(raw):
        raise _err("bad_phone", "phone", "Số điện thoại chỉ gồm chữ số (có thể có dấu + ở đầu)",
                   "a phone number is digits only (a leading + allowed)")
    digits = raw.translate(_PHONE_MARKS)  # only digits and these are left after the check above
    if not MIN_PHONE_DIGITS <= len(digits) <= MAX_PHONE_DIGITS or "+" in raw[1:]:
        raise _err("bad_phone", "phone", f"Số điện thoại phải có {MIN_PHONE_DIGITS}–{MAX_PHONE_DIGITS} chữ số",
                   f"a phone number has {MIN_PHONE_DIGITS}–{MAX_PHONE_DIGITS} digits")
    return ("+" if raw.startswith("+") else "") + digits


def parse_fields(body: bytes) -> dict[str, str]:
    """application/x-www-form-urlencoded bytes -> {field: value} for the known fields (UTF-8 strict;
    a field twice, an unknown field or a body over MAX_BODY_BYTES is refused)."""
    if len(body) > MAX_BODY_BYTES:
        raise TOO_LARGE
    try:
        text = body.decode("ascii")
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                                       encoding="utf-8", errors="strict", max_num_fields=len(FIELDS))
    except (UnicodeDecodeError, ValueError):
        raise BAD_ENCODING from None
    out: dict[str, str] = {}
    for name, value in pairs:
        if name not in FIELDS or name in out:
            raise BAD_ENCODING
        out[name] = value
    return out


def parse_form(body: bytes) -> FeedbackForm:
    """The whole check of one submission (see the module docstring)."""
    fields = parse_fields(body)
    if fields.get(HONEYPOT_FIELD, ""):
        raise BOT
    text = clean_text(fields.get("text", ""), "text", MAX_TEXT_CHARS, multiline=True)
    if len(text) < MIN_TEXT_CHARS:
        raise _err("empty", "text", "Hãy viết ý kiến của bạn", "write your feedback")
    name = clean_text(fields.get("name", ""), "name", MAX_NAME_CHARS, multiline=False) or None
    return FeedbackForm(text=text, name=name, phone=clean_phone(fields.get("phone", "")))
