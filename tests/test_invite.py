"""Invite codes: round trip, damage detection, forged signatures, QR text."""

from __future__ import annotations

import base64

import msgpack
import pytest
import segno
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.membership.identity import KeyPair
from meshmeet.membership.invite import (
    INVITE_PREFIX,
    InviteError,
    _checksum,
    decode_invite,
    encode_invite,
    invite_qr_text,
    make_invite,
    parse_address,
)
from meshmeet.membership.roster_entries import make_seat

NOW = 1_700_000_000
ADMIN = KeyPair.generate()
ENROL = KeyPair.generate()
SEAT = make_seat(ADMIN, short_id=7, site="Thôn Xuân Tiên", role="hall", enrolment_public_key=ENROL.public_key,
                 expires_at=NOW + 7 * 86400, issued_at=NOW)
INVITE = make_invite(ADMIN.public_key, SEAT, ENROL, ["192.168.1.10:7400", "[fe80::1]:7400"])
CODE = encode_invite(INVITE)
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def test_round_trip_and_forgiving_input() -> None:
    assert CODE.startswith(INVITE_PREFIX) and "=" not in CODE and CODE == CODE.strip()
    assert all(c in ALPHABET for c in CODE[len(INVITE_PREFIX):])  # URL-safe and QR-alphanumeric
    got = decode_invite(CODE)
    assert got == INVITE
    assert got.seat.raw == SEAT.raw  # the seat is rebuilt byte-exact, signature and all
    assert got.enrolment_key().public_key == ENROL.public_key
    assert decode_invite("  " + CODE[:40].lower() + "\n" + CODE[40:] + " ") == INVITE


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_single_typo_says_damaged(data: st.DataObject) -> None:
    pos = data.draw(st.integers(len(INVITE_PREFIX), len(CODE) - 1))
    new = data.draw(st.sampled_from(ALPHABET + "018-=").filter(lambda c: c != CODE[pos]))
    typo = CODE[:pos] + new + CODE[pos + 1:]
    with pytest.raises(InviteError) as err:
        decode_invite(typo)
    assert "damaged" in err.value.en or "layout" in err.value.en


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=500))
def test_junk_gives_invite_error_only(junk: str) -> None:
    with pytest.raises(InviteError):
        decode_invite(junk)
    with pytest.raises(InviteError):
        decode_invite(INVITE_PREFIX + junk)


def _recode(fields: list) -> str:
    payload = msgpack.packb(fields, use_bin_type=True)
    return INVITE_PREFIX + base64.b32encode(payload + _checksum(payload)).decode().rstrip("=")


def _fields() -> list:
    blob = base64.b32decode(CODE[len(INVITE_PREFIX):] + "=" * (-len(CODE[len(INVITE_PREFIX):]) % 8))
    return msgpack.unpackb(blob[:-4], raw=False)


def test_a_well_formed_code_with_a_forged_seat_is_refused() -> None:
    f = _fields()
    f[3] = "Thôn Giả"  # change the site name, keep the admin signature
    with pytest.raises(InviteError, match="signature"):
        decode_invite(_recode(f))
    f = _fields()
    f[10] = bytes(32)  # a different enrolment seed than the seat names
    with pytest.raises(InviteError, match="signature"):
        decode_invite(_recode(f))


def test_other_versions_and_prefixes() -> None:
    f = _fields()
    f[0] = 2
    with pytest.raises(InviteError, match="version"):
        decode_invite(_recode(f))
    with pytest.raises(InviteError, match="not a meshmeet invite"):
        decode_invite("https://example.invalid/" + CODE)


def test_make_invite_checks_its_pieces() -> None:
    with pytest.raises(InviteError):
        make_invite(ADMIN.public_key, SEAT, KeyPair.generate(), ["h:1"])
    with pytest.raises(InviteError):
        make_invite(ADMIN.public_key, SEAT, ENROL, [])
    with pytest.raises(InviteError):
        make_invite(ADMIN.public_key, SEAT, ENROL, ["no-port"])


def test_parse_address() -> None:
    assert parse_address("10.0.0.1:7400") == ("10.0.0.1", 7400)
    assert parse_address("[fe80::1]:7400") == ("fe80::1", 7400)
    for bad in ("host", ":7400", "host:0", "host:99999", "host:x"):
        with pytest.raises(InviteError):
            parse_address(bad)


def test_qr_text_is_segno_compact_terminal_output_of_the_code() -> None:
    text = invite_qr_text(CODE)
    lines = text.splitlines()
    assert len(lines) > 20 and len({len(line) for line in lines}) == 1
    assert set(text) <= set("█▀▄ \n")
    qr = segno.make(CODE, error="m")
    assert qr.mode == "alphanumeric"  # base32 keeps the QR small
    width = qr.symbol_size(border=4)[0]
    assert len(lines[0]) == width and len(lines) == (width + 1) // 2
