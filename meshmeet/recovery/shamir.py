"""Shamir secret sharing over GF(256), byte by byte (the field of AES: x^8 + x^4 + x^3 + x + 1).

Each byte of the secret is the constant term of its own random polynomial of degree k-1; share i
holds the polynomial values at x = i (1..n). Any k shares give the secret back by Lagrange
interpolation at 0; fewer than k say nothing about it (each share byte is uniform whatever the
secret). pynacl has no Shamir and no small well-kept library fits our byte layout, so it is here,
with Hypothesis properties in tests/test_recovery_shamir.py.

Pure functions; the only randomness is `secrets.token_bytes` (or the `random_bytes` passed in).
It must never use a non-cryptographic random source, or accept shares that disagree in length or
repeat an x.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Callable, Iterable

from ..errors import MeshmeetError

MAX_SHARES = 255
_POLY = 0x11B


def _tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    exp, log = [0] * 512, [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x ^= (x << 1) ^ (_POLY if x & 0x80 else 0)  # multiply by the generator 3
        x &= 0xFF
    for i in range(255, 512):
        exp[i] = exp[i - 255]
    return tuple(exp), tuple(log)


_EXP, _LOG = _tables()  # constant tables, computed once


class ShamirError(MeshmeetError):
    """Shares that cannot give a secret back (too few, mixed lengths, repeated x)."""


def gf_mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def gf_div(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("division by zero in GF(256)")
    if a == 0:
        return 0
    return _EXP[_LOG[a] - _LOG[b] + 255]


@dataclass(frozen=True)
class Share:
    x: int  # 1..255
    data: bytes


def split(secret: bytes, k: int, n: int, random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> list[Share]:
    """n shares of `secret`, any k of which give it back (1 <= k <= n <= 255)."""
    if not 1 <= k <= n <= MAX_SHARES:
        raise ShamirError(f"Cần 1 ≤ k ≤ n ≤ {MAX_SHARES} (k={k}, n={n})", f"need 1 <= k <= n <= {MAX_SHARES} (k={k}, n={n})")
    coeffs = [random_bytes(len(secret)) for _ in range(k - 1)]  # coefficient j of every byte's polynomial
    out = []
    for x in range(1, n + 1):
        data = bytearray(len(secret))
        for i, s in enumerate(secret):
            y = 0
            for c in reversed(coeffs):  # Horner: ((c_{k-1} x + c_{k-2}) x + ...) x + s
                y = gf_mul(y, x) ^ c[i]
            data[i] = gf_mul(y, x) ^ s if coeffs else s
        out.append(Share(x, bytes(data)))
    return out


def combine(shares: Iterable[Share]) -> bytes:
    """The secret from k (or more: all must lie on the polynomials) shares, by interpolation at 0."""
    shares = list(shares)
    if not shares:
        raise ShamirError("Không có mảnh nào", "no shares")
    xs = [s.x for s in shares]
    if len(set(xs)) != len(xs) or not all(1 <= x <= MAX_SHARES for x in xs):
        raise ShamirError("Các mảnh trùng nhau hoặc sai số thứ tự", "shares repeat or have an invalid x")
    size = len(shares[0].data)
    if any(len(s.data) != size for s in shares):
        raise ShamirError("Các mảnh không cùng độ dài", "shares differ in length")
    weights = []
    for j, xj in enumerate(xs):  # Lagrange basis at 0: prod_{m != j} x_m / (x_m - x_j); minus is xor
        w = 1
        for m, xm in enumerate(xs):
            if m != j:
                w = gf_mul(w, gf_div(xm, xm ^ xj))
        weights.append(w)
    out = bytearray(size)
    for w, share in zip(weights, shares):
        for i, y in enumerate(share.data):
            out[i] ^= gf_mul(w, y)
    return bytes(out)
