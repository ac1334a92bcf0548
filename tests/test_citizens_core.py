"""Issue 17, the sans-IO core of the resident page: the form parser (Hypothesis: never crashes,
never returns text it would refuse, NFC), short codes, rate limits, sealed contacts and the contact
book's retention; and the law at merge for what a hall may write (attacker's batches first)."""

from __future__ import annotations

import os
import stat
import unicodedata
import urllib.parse
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from meshmeet.citizens import codes
from meshmeet.meeting import citizens as ops
from meshmeet.citizens.contacts import ContactBook
from meshmeet.citizens.form import (MAX_BODY_BYTES, MAX_TEXT_CHARS, FeedbackForm, FormError, clean_text,
                                    parse_form)
from meshmeet.citizens.limits import Buckets, PageLimiter, PageLimits, Rate
from meshmeet.citizens import form as form_mod
from meshmeet.citizens.sealed import MAX_USES, ROTATE_S, Contact, Sealer, seal, seal_v2, unseal
from meshmeet.store.batch import OP_UPSERT
from meshmeet.store.errors import AuthorityError, SyncError
from meshmeet.store.schema import specs_for

from test_authority import HALL1, HALL2, HQ, RELAY, STRANGER as HQ2, logged, mk, signed  # HQ2: a second HQ key
from conftest import doc_json_blocks

SPECS = specs_for(6)


def form(**fields: str) -> bytes:
    return urllib.parse.urlencode(fields).encode()


def refused(body: bytes) -> FormError:
    with pytest.raises(FormError) as e:
        parse_form(body)
    assert e.value.vi and e.value.en
    return e.value


# ----- the form --------------------------------------------------------------------------------

def test_form_accepts_vietnamese_emoji_and_normalises_to_nfc() -> None:
    nfd = unicodedata.normalize("NFD", "Nghị quyết về đường liên thôn 👍🏽 ❤️ 👨‍👩‍👧")
    got = parse_form(form(text="  " + nfd + "\n", name="Nguyễn Văn A", phone="+84 912-345-678", website=""))
    assert got == FeedbackForm(unicodedata.normalize("NFC", nfd), "Nguyễn Văn A", "+84912345678")
    assert unicodedata.is_normalized("NFC", got.text) and got.text != nfd


@pytest.mark.parametrize("text, code", [
    ("<script>alert(1)</script>", "html"), ("xin <img src=x onerror=alert(1)>", "html"),
    ("a &lt;b&gt;", "html"), ("</b>", "html"), ("<!-- x -->", "html"),
    ("e" + "\u0301" * 5, "stacked_marks"), ("abc\u202edef", "bad_char"), ("ab\x00cd", "bad_char"),
    ("ab\x1bcd", "bad_char"), (" ", "empty"), ("x" * (MAX_TEXT_CHARS + 1), "too_long"),
])
def test_form_refuses_hostile_text_with_a_clear_error(text: str, code: str) -> None:
    e = refused(form(text=text))
    assert e.code == code and e.field == "text" and e.status == 400


def test_form_allows_what_is_not_html() -> None:
    assert parse_form(form(text="3 < 5 và 5 > 3; A&B")).text == "3 < 5 và 5 > 3; A&B"


def test_form_refuses_the_honeypot_size_encoding_and_unknown_fields() -> None:
    assert refused(form(text="xin chào", website="http://spam.example")).code == "honeypot"
    big = refused(b"text=" + b"a" * (1024 * 1024))
    assert big.status == 413 and big.code == "too_large"
    assert refused(b"text=%ff%fe").code == "bad_encoding"
    assert refused("text=ý".encode()).code == "bad_encoding"  # raw UTF-8 is not form encoding
    assert refused(form(text="ok ok", admin="1")).code == "bad_encoding"
    assert refused(b"text=ab&text=cd").code == "bad_encoding"
    assert refused(form(text="ok ok", phone="12ab")).code == "bad_phone"
    assert refused(form(text="ok ok", phone="123")).code == "bad_phone"
    assert refused(form(text="ok ok", name="A\nB")).field == "name"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=MAX_BODY_BYTES + 64))
def test_form_parser_never_crashes_on_any_bytes(body: bytes) -> None:
    try:
        parse_form(body)
    except FormError as e:
        assert e.status in (400, 413) and e.vi and e.en


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=1200), st.text(max_size=100), st.text(max_size=24))
def test_what_the_form_accepts_is_clean_and_stable(text: str, name: str, phone: str) -> None:
    try:
        got = parse_form(form(text=text, name=name, phone=phone))
    except FormError as e:
        assert e.field in ("text", "name", "phone", "") and e.vi and e.en
        return
    assert unicodedata.is_normalized("NFC", got.text) and MAX_TEXT_CHARS >= len(got.text) >= 2
    assert "<" not in got.text or not any(got.text[i + 1:i + 2].isalpha() for i, c in enumerate(got.text) if c == "<")
    # Checking it again changes nothing: what is stored is what a second check accepts.
    assert clean_text(got.text, "text", MAX_TEXT_CHARS, multiline=True) == got.text
    again = parse_form(form(text=got.text, name=got.name or "", phone=got.phone or ""))
    assert again == got


def test_the_quiet_fast_path_takes_exactly_the_characters_the_loop_lets_pass() -> None:
    for multiline in (True, False):
        quiet = form_mod._all_quiet(multiline)
        for cp in [*range(0, 0x3100), *range(0xFE00, 0xFF00), *range(0x1F000, 0x1FB00), 0xE000, 0x10FFFF]:
            ch = chr(cp)
            loop_passes = (multiline and ch in "\n\t") or form_mod._quiet(ch)
            if quiet.fullmatch(ch):
                assert loop_passes, hex(cp)
            if not loop_passes:
                assert not quiet.fullmatch(ch), hex(cp)
    assert form_mod._all_quiet(False).fullmatch("Đề nghị xã sửa đường 🙏 — số 5")  # the common case is fast


_HOSTILE = st.sampled_from("aêệ\u0301\u0323\u202e\u2066\u200d\u200b\u00ad\x00\x85\n\t<&#;/🙏\ue000\U000e0001 ")


@settings(max_examples=300, deadline=None)
@given(st.text(st.one_of(_HOSTILE, st.characters()), max_size=40), st.booleans())
def test_clean_text_gives_the_same_answer_with_and_without_the_fast_path(text: str, multiline: bool) -> None:
    def outcome() -> object:
        try:
            return clean_text(text, "text", 30, multiline=multiline)
        except FormError as e:
            return e.code
    fast = outcome()
    real = form_mod._all_quiet
    form_mod._all_quiet = lambda multiline: __import__("re").compile("(?!)")  # the loop on every text
    try:
        assert outcome() == fast
    finally:
        form_mod._all_quiet = real


# ----- short codes and limits ------------------------------------------------------------------

@given(st.binary(min_size=5, max_size=5))
def test_short_codes_read_back_forgivingly(raw: bytes) -> None:
    code = codes.make_code(raw)
    assert len(code) == 8 and set(code) <= set(codes.ALPHABET)
    typed = codes.show(code).lower().replace("0", "o").replace("1", "l")
    assert codes.read_code(typed) == code == codes.read_code(" " + codes.show(code) + " ")


@given(st.text(max_size=40))
def test_read_code_never_crashes(text: str) -> None:
    got = codes.read_code(text)
    assert got is None or (len(got) == 8 and set(got) <= set(codes.ALPHABET))


def test_rate_limits_per_device_address_and_hall_take_all_or_nothing() -> None:
    lim = PageLimiter(PageLimits(device=Rate(2, 1 / 60), address=Rate(3, 1 / 60), hall=Rate(4, 1.0)))
    assert lim.submit("d1", "10.0.0.5", 0.0) == 0 and lim.submit("d1", "10.0.0.5", 0.0) == 0
    wait = lim.submit("d1", "10.0.0.5", 0.0)
    assert 59 < wait <= 60  # the device waits a minute
    assert lim.submit("d2", "10.0.0.5", 0.0) == 0  # a new cookie, same phone: the address bucket
    assert lim.submit("d3", "10.0.0.5", 0.0) > 0
    assert lim.address.tokens("10.0.0.5", 0.0) < 1 and lim.device.tokens("d3", 0.0) == 2  # nothing taken
    assert lim.submit("d4", "10.0.0.6", 0.0) == 0
    assert lim.submit("d5", "10.0.0.7", 0.0) > 0  # the hall's 4 are used up
    assert lim.submit("d5", "10.0.0.7", 1.0) == 0


def test_buckets_forget_the_least_recent_key_first() -> None:
    b = Buckets(Rate(1, 0.001), max_keys=3)
    for k in "abcd":
        b.take(k, 0.0)
    assert len(b) == 3 and b.tokens("a", 0.0) == 1 and b.tokens("d", 0.0) == 0


# ----- sealed contacts and the contact book ----------------------------------------------------

def test_a_contact_is_sealed_to_hq_only() -> None:
    contact = Contact("Bà Lan", "0912345678", None)
    blob = seal(contact, {HQ.node_id: HQ.public_key})
    assert b"0912345678" not in blob and "Bà Lan".encode() not in blob
    assert unseal(blob, HQ.node_id, HQ.signing_key) == contact
    assert unseal(blob, HALL1.node_id, HALL1.signing_key) is None
    assert unseal(blob, HQ.node_id, HALL1.signing_key) is None  # a hall pretending to be HQ
    assert unseal(os.urandom(80), HQ.node_id, HQ.signing_key) is None


def test_a_contact_sealed_v2_opens_only_at_hq_and_its_ephemeral_key_is_replaced() -> None:
    contact = Contact("Bà Lan", "0912345678", "zalo-1")
    sealer = Sealer()
    hqs = {HQ.node_id: HQ.public_key, HQ2.node_id: HQ2.public_key}
    a, b = sealer.seal(contact, hqs, 100.0), sealer.seal(contact, hqs, 101.0)
    for blob in (a, b):
        assert b"0912345678" not in blob and "Bà Lan".encode() not in blob
        assert unseal(blob, HQ.node_id, HQ.signing_key) == contact
        assert unseal(blob, HQ2.node_id, HQ2.signing_key) == contact
        assert unseal(blob, HALL1.node_id, HALL1.signing_key) is None
        assert unseal(blob, HQ.node_id, HALL1.signing_key) is None  # a hall pretending to be HQ
    top_a, top_b = msgpack.unpackb(a), msgpack.unpackb(b)
    assert top_a[0] == top_b[0] == 2 and top_a[1] == top_b[1]  # one ephemeral key within ROTATE_S ...
    assert top_a[2][0][1][:24] != top_b[2][0][1][:24]  # ... and a fresh nonce per contact
    later = msgpack.unpackb(sealer.seal(contact, hqs, 101.0 + ROTATE_S))
    assert later[1] != top_a[1] and sealer.keys_made == 2  # replaced after ROTATE_S
    counted = Sealer(max_uses=3)
    eph = {msgpack.unpackb(counted.seal(contact, hqs, 5.0))[1] for _ in range(3 * 2)}
    assert len(eph) == 2 and counted.keys_made == 2 and MAX_USES >= 1000


def test_a_tampered_or_foreign_v2_contact_opens_to_nothing() -> None:
    blob = Sealer().seal(Contact(phone="0912345678"), {HQ.node_id: HQ.public_key}, 0.0)
    _, eph, [[nid, box]] = msgpack.unpackb(blob)
    for bad in ([2, eph, [[nid, box[:-1] + bytes([box[-1] ^ 1])]]], [2, bytes(32), [[nid, box]]],
                [2, eph[:31], [[nid, box]]], [2, eph, [[nid, box[:20]]]], [2, "x" * 32, [[nid, box]]],
                [2, eph, [[nid, "text"]]], [2, eph, []], [2, eph], [3, eph, [[nid, box]]], [2, eph, [[nid]]]):
        assert unseal(msgpack.packb(bad), HQ.node_id, HQ.signing_key) is None, bad


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.integers(-3, 3) | st.binary(max_size=80) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4), max_leaves=12))
def test_unseal_never_crashes_on_any_structure(tree: object) -> None:
    assert unseal(msgpack.packb(tree), HQ.node_id, HQ.signing_key) is None


def test_sealed_contact_vectors_from_the_doc() -> None:

    from nacl.bindings import crypto_box
    from nacl.public import PrivateKey
    from meshmeet.membership.identity import KeyPair

    v = doc_json_blocks("protocol/citizens.md", "citizens-contact-vectors")[0]
    hq = KeyPair.from_seed(bytes.fromhex(v["hq_seed"]))
    assert hq.node_id == v["hq_node_id"]
    contact = Contact(*v["contact"])
    eph, nonce = PrivateKey(bytes.fromhex(v["ephemeral_secret"])), bytes.fromhex(v["nonce"])
    blob = seal_v2(contact, {hq.node_id: hq.public_key}, eph, lambda: nonce)
    assert blob.hex() == v["v2"]
    # the same bytes from the documented construction, libsodium's crypto_box_easy called directly
    hq_x = bytes(hq.signing_key.verify_key.to_curve25519_public_key())
    plain = msgpack.packb(v["contact"])
    assert msgpack.unpackb(blob) == [2, bytes(eph.public_key),
                                     [[hq.node_id, nonce + crypto_box(plain, nonce, hq_x, bytes(eph))]]]
    for version in ("v1", "v2"):
        assert unseal(bytes.fromhex(v[version]), hq.node_id, hq.signing_key) == contact
        assert unseal(bytes.fromhex(v[version]), hq.node_id, HALL1.signing_key) is None


def test_contact_book_is_0600_and_forgets_after_the_retention(tmp_path: Path) -> None:
    book = ContactBook(tmp_path)
    assert stat.S_IMODE((tmp_path / "contacts.sqlite").stat().st_mode) == 0o600
    book.put("old", Contact(phone="0900000001"), 1000.0)
    book.put("new", Contact(phone="0900000002"), 5000.0)
    assert book.purge(before=2000.0) == 1
    assert book.get("old") is None and book.get("new").phone == "0900000002"
    book.close()
    assert b"0900000001" not in (tmp_path / "contacts.sqlite").read_bytes()  # secure_delete overwrote it


# ----- the law at merge ------------------------------------------------------------------------

def col(table: str, name: str) -> int:
    return [c.name for c in SPECS[table].columns].index(name)


def feedback_values(node: str, **over) -> dict:
    v = {"node": node, "meeting_id": None, "text": "ý kiến", "at": 1_800_000_000.0, "source": "hall_page",
         "code": "7KQ2M9XD", "contact": None, **over}
    return {col("feedback", k): x for k, x in v.items()}


@pytest.mark.parametrize("over", [
    {"contact": "0912345678"},            # a phone number in plain text in the replicated row
    {"contact": b"x" * 1025},             # more than a sealed contact can be
    {"code": "7kq2m9xd"}, {"code": "7KQ2M9XDX"}, {"code": "ILOU1234"},
    {"text": "x" * 4001}, {"source": "tv"},
])
def test_a_hall_cannot_write_malformed_resident_feedback(over: dict) -> None:
    hq = mk(HQ)
    batch = signed(HALL1, 1, [(SPECS["feedback"].tid, OP_UPSERT, ("a1-" + HALL1.node_id,),
                               feedback_values(HALL1.node_id, **over))])
    hq.apply([batch])
    assert hq.rows("feedback") == [] and hq.counters.rejected_changes == 1


def test_a_hall_hides_only_feedback_it_received_and_relays_none() -> None:
    hq, hall1 = mk(HQ), mk(HALL1)
    own = "0123456789abcdef-" + HALL1.node_id
    other = "0123456789abcdef-" + HALL2.node_id
    tid = SPECS["feedback_moderation"].tid
    attack = signed(HALL1, 1, [(tid, OP_UPSERT, (other,), {0: 1}), (tid, OP_UPSERT, ("0123456789abcdef",), {0: 1}),
                               (tid, OP_UPSERT, (own,), {0: 1})])
    relay = signed(RELAY, 1, [(tid, OP_UPSERT, (own,), {0: 0})])
    hq.apply([attack, relay])
    assert [r["feedback_id"] for r in hq.rows("feedback_moderation")] == [own]
    assert hq.counters.rejected_changes == 3
    with pytest.raises(AuthorityError):
        hall1.write("feedback_moderation", other, {"hidden": 1})


def test_ops_round_trip_and_a_v5_rows_without_the_new_columns_still_merge() -> None:
    hq, hall = mk(HQ), mk(HALL1)
    fid, code = ops.submit(hall, "Xin sửa đèn đường", "hall_page", seal(Contact(phone="0912345678"),
                                                                          {HQ.node_id: HQ.public_key}))
    assert fid.endswith("-" + HALL1.node_id)
    old = signed(HALL2, 1, [(SPECS["feedback"].tid, OP_UPSERT, ("f2",),
                             {0: HALL2.node_id, 1: None, 2: "từ nút cũ", 3: 1.0})])  # a v5 node's row
    hq.apply(logged(hall) + [old])
    assert hq.get("feedback", "f2")["source"] is None and hq.counters.rejected_changes == 0
    assert ops.lookup(hq, code)["text"] == "Xin sửa đèn đường"
    assert [w["id"] for w in ops.wall(hq)] == [fid]
    ops.set_hidden(hq, fid, True)
    assert ops.wall(hq) == []
    with pytest.raises(SyncError):
        ops.set_hidden(hq, "nope", True)
