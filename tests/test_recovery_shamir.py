"""Shamir over GF(256): field laws, any k of n shares give the secret back, k-1 shares say nothing
(a share byte is uniform whatever the secret), and bad share sets are refused cleanly."""

from __future__ import annotations

import collections
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.recovery.shamir import Share, ShamirError, combine, gf_div, gf_mul, split

byte = st.integers(0, 255)


@given(byte, byte, byte)
def test_field_laws(a, b, c):
    assert gf_mul(a, b) == gf_mul(b, a)
    assert gf_mul(a, gf_mul(b, c)) == gf_mul(gf_mul(a, b), c)
    assert gf_mul(a, b ^ c) == gf_mul(a, b) ^ gf_mul(a, c)
    if b:
        assert gf_mul(gf_div(a, b), b) == a


def test_known_products():
    assert gf_mul(0x57, 0x83) == 0xC1  # FIPS-197 section 4.2
    assert gf_mul(0x57, 0x13) == 0xFE


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=0, max_size=64), st.integers(1, 7), st.integers(0, 5), st.randoms(use_true_random=False))
def test_any_k_shares_give_the_secret(secret, k, extra, rnd):
    n = k + extra
    shares = split(secret, k, n)
    picks = rnd.sample(shares, k)
    assert combine(picks) == secret
    assert combine(rnd.sample(shares, rnd.randint(k, n))) == secret  # more than k also works


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=16), st.integers(2, 5))
def test_fewer_than_k_shares_give_something_else(secret, k):
    shares = split(secret + b"\x00" * 16, k, k)  # 17+ bytes: a wrong answer matching by chance is ~2^-136
    assert combine(shares[: k - 1]) != secret + b"\x00" * 16


def test_single_share_byte_is_uniform_whatever_the_secret():
    """For k >= 2 the distribution of one share byte must not depend on the secret: chi-squared
    over 256 bins, for two very different secrets, stays far below the 1-in-a-million threshold."""
    for secret in (b"\x00", b"\xff"):
        counts = collections.Counter(split(secret, 3, 5)[1].data[0] for _ in range(25600))
        expected = 25600 / 256
        chi2 = sum((counts.get(v, 0) - expected) ** 2 / expected for v in range(256))
        assert chi2 < 375, chi2  # df=255: p = 1e-6 at ~375


def test_two_shares_of_three_of_five_are_independent_of_the_secret():
    """Exhaustive over the polynomial's randomness for a 1-byte secret: with k=3, every pair of
    share values at x=1, x=2 appears exactly once per secret (so k-1 shares reveal nothing)."""
    for secret in (0, 0xA5):
        seen = collections.Counter()
        for c1, c2 in itertools.product(range(256), repeat=2):
            coeff = iter([bytes([c1]), bytes([c2])])
            s = split(bytes([secret]), 3, 5, random_bytes=lambda n: next(coeff))
            seen[(s[0].data[0], s[1].data[0])] += 1
        assert len(seen) == 65536 and set(seen.values()) == {1}


@pytest.mark.parametrize("bad", ["empty", "repeat", "lengths", "zero_x", "k_gt_n"])
def test_bad_share_sets_refused(bad):
    shares = split(b"secret", 2, 3)
    with pytest.raises(ShamirError):
        if bad == "empty":
            combine([])
        elif bad == "repeat":
            combine([shares[0], shares[0]])
        elif bad == "lengths":
            combine([shares[0], Share(shares[1].x, shares[1].data[:-1])])
        elif bad == "zero_x":
            combine([Share(0, shares[0].data), shares[1]])
        else:
            split(b"x", 4, 3)


def test_k_equals_one_is_the_secret_itself():
    assert all(s.data == b"abc" for s in split(b"abc", 1, 3))
