"""Short codes a resident keeps to find HQ's reply: 8 Crockford base-32 symbols (40 random bits),
shown as XXXX-XXXX, read back forgivingly (lower case, O for 0, I/L for 1, dashes and spaces).

Pure: the random bytes come from the caller. This module must never log or store a code.
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
CODE_CHARS = 8
RANDOM_BYTES = 5
_READ = {**{c: c for c in ALPHABET}, "O": "0", "I": "1", "L": "1"}


def make_code(random5: bytes) -> str:
    """The code for 5 random bytes (canonical form, no dash)."""
    if len(random5) != RANDOM_BYTES:
        raise ValueError("a short code needs exactly 5 random bytes")
    n = int.from_bytes(random5, "big")
    return "".join(ALPHABET[(n >> (5 * i)) & 31] for i in reversed(range(CODE_CHARS)))


def show(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def read_code(text: str) -> str | None:
    """What a resident typed -> the canonical code, or None when it cannot be one."""
    if len(text) > 3 * CODE_CHARS:
        return None
    out = []
    for ch in text.upper():
        if ch in " -.":
            continue
        mapped = _READ.get(ch)
        if mapped is None:
            return None
        out.append(mapped)
    return "".join(out) if len(out) == CODE_CHARS else None
