"""Slides (issue 15, part 3): who may turn the page, what travels, and the renderer's limits.

Attacker first: a hall's key signing a page turn is refused where it is made, at HQ and at the
other hall (the replicated merge is the law), and a hall's SLIDE over LoRa is dropped by the
radio core. Then the parsers under Hypothesis, and the renderer child on broken PDFs and a
renderer that crashes (real child processes).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import sys
import zlib
from pathlib import Path

import msgpack
import pytest
import trio
from hypothesis import given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from pdfmake import broken_pdfs, make_pdf, page_colour  # noqa: E402
from test_authority import HALL1, HALL2, HQ, T0, logged, mk, signed  # noqa: E402
from test_lora_helpers import make_cores  # noqa: E402

from meshmeet.membership.identity import verify
from meshmeet.lora.messages import Kind, MessageError, Slide as LoraSlide, decode_message, encode_message
from meshmeet.lora.statewatch import StateRows, StateWatch, control_messages, short_ref, slide_message
from meshmeet.slides import record, state
from meshmeet.slides.render import RenderFailed, Renderer
from meshmeet.meeting import meetings as m
from meshmeet.store.batch import OP_UPSERT
from meshmeet.store.errors import AuthorityError
from meshmeet.store.schema import specs_for

SLIDES_TID = specs_for(6)["slides"].tid


def hq_with_deck(pages: int = 5):
    hq = mk(HQ)
    mid = m.create_meeting(hq, "Họp toàn xã")
    doc = m.add_document(hq, mid, __import__("io").BytesIO(make_pdf(pages)), name="deck.pdf")
    return hq, mid, doc


# ------------------------------------------------------------------ attacker first
def test_a_halls_page_turn_is_refused_where_made_at_hq_and_at_the_other_hall() -> None:
    hq, mid, doc = hq_with_deck()
    state.show(hq, doc, 2, T0)
    hall, other = mk(HALL1), mk(HALL2)
    hall.apply(logged(hq))
    other.apply(logged(hq))
    with pytest.raises(AuthorityError):  # the hall's own store refuses it
        state.show(hall, doc, 4, T0 + 1)
    # A protocol-aware hall signs the change itself, newer than HQ's turn.
    cols = [c.name for c in specs_for(6)["slides"].columns]
    attack = signed(HALL1, 1, [(SLIDES_TID, OP_UPSERT, ("evil0000evil0000",),
                                {cols.index("doc_id"): doc, cols.index("page"): 4, cols.index("at"): T0 + 60})])
    for replica in (hq, other):
        report = replica.apply([attack])
        assert report.rejected_changes == 1
        now = state.current(replica.rows("slides"), replica.rows("documents"), mid)
        assert now is not None and (now.doc_id, now.page) == (doc, 2)
        assert replica.get("slides", "evil0000evil0000") is None


def test_a_halls_slide_over_lora_is_dropped_by_the_radio_core() -> None:
    cores, _ = make_cores([1, 2, 3], authorities=(1,))
    cores[3].send(LoraSlide(0x1234, 4, 99), 0.0)  # node 3: on the roster, not HQ
    forged = cores[3].next_transmit(0.0)
    assert cores[2].receive(forged, 1.0) == []
    assert cores[2].stats["unauthorized"] == 1
    cores[1].send(LoraSlide(0x1234, 4, 1), 2.0)  # HQ's own turn arrives
    events = cores[2].receive(cores[1].next_transmit(2.0), 3.0)
    assert [e.message for e in events if hasattr(e, "message")] == [LoraSlide(0x1234, 4, 1)]


# ------------------------------------------------------------------ the page in view
def test_newest_turn_of_the_meetings_documents_is_shown_and_history_is_in_order() -> None:
    hq, mid, doc = hq_with_deck()
    other_mid = m.create_meeting(hq, "Họp khác")
    other_doc = m.add_document(hq, other_mid, __import__("io").BytesIO(make_pdf(2)), name="x.pdf")
    for i, page in enumerate((1, 2, 3, 2)):
        state.show(hq, doc, page, T0 + i)
    state.show(hq, other_doc, 1, T0 + 10)
    now = state.current(hq.rows("slides"), hq.rows("documents"), mid)
    assert (now.doc_id, now.page) == (doc, 2)
    assert [s.page for s in state.history(hq.rows("slides"), hq.rows("documents"), mid)] == [1, 2, 3, 2]
    with pytest.raises(m.SyncError):
        state.show(hq, "nosuchdoc", 1, T0)
    with pytest.raises(m.SyncError):
        state.show(hq, doc, 10_001, T0)


def test_lora_mirror_describes_hqs_newest_turn_and_only_changes_are_sent() -> None:
    hq, mid, doc = hq_with_deck()
    watch = StateWatch()
    state.show(hq, doc, 1, T0)
    rows = StateRows(slides=tuple(hq.rows("slides")))
    assert watch.update(control_messages(rows), send=False) == []
    state.show(hq, doc, 2, T0 + 1)
    sent = watch.update(control_messages(StateRows(slides=tuple(hq.rows("slides")))), send=True)
    assert sent == [LoraSlide(short_ref(doc), 2, 2)]
    assert slide_message([]) is None


def test_a_slide_message_is_small_on_the_air() -> None:
    body = encode_message(LoraSlide(0xFFFFFFFF, 10_000, 100_000), source=1, msg_id=5, dest=0xFFFF, ref=None, sign=None)
    assert len(body) <= 24  # + 14 B frame overhead: one LoRa frame of < 40 B
    env = decode_message(int(Kind.SLIDE), body, source=1, first_counter=5, public_key_of={}.get, verify=verify)
    assert env.message == LoraSlide(0xFFFFFFFF, 10_000, 100_000)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(-2, 1 << 40), st.text(max_size=4), st.binary(max_size=4), st.none()),
                max_size=5))
def test_hostile_slide_fields_give_message_error_or_a_valid_slide(fields) -> None:
    body = msgpack.packb([0xFFFF, None, fields], use_bin_type=True)
    try:
        env = decode_message(int(Kind.SLIDE), body, source=1, first_counter=0, public_key_of={}.get, verify=verify)
    except MessageError:
        return
    s = env.message
    assert isinstance(s, LoraSlide) and 0 <= s.page <= 0xFFFF and 0 <= s.doc < 1 << 32 and 0 <= s.turn < 1 << 32


# ------------------------------------------------------------------ the slide record (recordings)
@given(st.from_regex(record.DOC_ID_RE, fullmatch=True), st.integers(0, 10_000))
def test_slide_record_round_trips(doc_id, page) -> None:
    data = record.encode_record(doc_id, page)
    assert len(data) <= record.MAX_RECORD_BYTES
    assert record.parse_record(data) == (doc_id, page)


@settings(max_examples=500)
@given(st.binary(max_size=120))
def test_hostile_slide_records_give_slide_error(data) -> None:
    try:
        doc_id, page = record.parse_record(bytes([record.KIND_SLIDE_RECORD]) + data)
    except record.SlideError:
        return
    assert record.DOC_ID_RE.match(doc_id) and 0 <= page <= 10_000


# ------------------------------------------------------------------ the renderer (real child processes)
def _png_pixels(png: bytes) -> tuple[int, int, bytes]:
    """Decode our own filter-0 RGB PNG (to compare with pdfium's pixels)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    w = h = 0
    while pos < len(png):
        (n,) = struct.unpack(">I", png[pos:pos + 4])
        kind, body = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    rows = [raw[r * (3 * w + 1) + 1:(r + 1) * (3 * w + 1)] for r in range(h)]
    return w, h, b"".join(rows)


def _render(tmp_path: Path, pdf: bytes, page: int, **kw):
    renderer = Renderer(tmp_path / "cache", **kw)
    sha = hashlib.sha256(pdf).hexdigest()

    async def write(path: Path) -> None:
        path.write_bytes(pdf)

    async def main():
        return await renderer.page(sha, len(pdf), write, page)
    return renderer, trio.run(main)


def test_rendered_page_is_pdfiums_pixels_and_next_pages_are_prefetched(tmp_path: Path) -> None:
    import pypdfium2 as pdfium

    pdf = make_pdf(5)
    renderer, got = _render(tmp_path, pdf, 2)
    assert got.pages == 5 and renderer.runs == 1
    w, h, pixels = _png_pixels(got.path.read_bytes())
    page = pdfium.PdfDocument(pdf)[1]
    bitmap = page.render(scale=1280 / page.get_width(), rev_byteorder=True)
    assert (w, h) == (bitmap.width, bitmap.height) == (1280, 720)
    expect = b"".join(bytes(bitmap.buffer[r * bitmap.stride:r * bitmap.stride + 3 * w]) for r in range(h))
    assert pixels == expect
    r, g, b = (round(c * 255) for c in page_colour(2))
    assert abs(pixels[0] - r) <= 1 and abs(pixels[1] - g) <= 1 and abs(pixels[2] - b) <= 1
    assert renderer.cached(hashlib.sha256(pdf).hexdigest(), 3) is not None  # prefetched with page 2


@pytest.mark.parametrize("name", sorted(broken_pdfs()))
def test_broken_pdfs_give_a_clear_error_or_a_page_never_a_crash(tmp_path: Path, name: str) -> None:
    pdf = broken_pdfs()[name]
    try:
        renderer, got = _render(tmp_path, pdf, 1)
    except RenderFailed as e:
        assert e.vi and e.en
        return
    assert got.path.is_file() and got.pages >= 1


def test_a_renderer_that_crashes_is_reported_once_and_not_run_again(tmp_path: Path) -> None:
    crasher = tmp_path / "crash.sh"
    crasher.write_text("#!/bin/sh\nkill -SEGV $$\n")
    os.chmod(crasher, 0o755)
    pdf = make_pdf(3)
    renderer = Renderer(tmp_path / "cache", python=str(crasher))
    sha = hashlib.sha256(pdf).hexdigest()

    async def write(path: Path) -> None:
        path.write_bytes(pdf)

    async def main():
        for _ in range(3):
            with pytest.raises(RenderFailed) as e:
                await renderer.page(sha, len(pdf), write, 1)
            assert "renderer failed" in e.value.en and e.value.vi
    trio.run(main)
    assert renderer.runs == 1 and renderer.crashes == 1


def test_too_large_a_document_is_refused_before_any_render(tmp_path: Path) -> None:
    renderer = Renderer(tmp_path / "cache")

    async def write(path: Path) -> None:
        raise AssertionError("must not be written")

    async def main():
        with pytest.raises(RenderFailed):
            await renderer.page("ab" * 32, 65 << 20, write, 1)
    trio.run(main)
    assert renderer.runs == 0


# ------------------------------------------------------------------ test vectors in the docs
DOCS = Path(__file__).resolve().parents[1] / "docs"


def _hex_after(text: str, marker: str) -> bytes:
    found = re.search(re.escape(marker) + r"\s*`([0-9a-f ]+)`", text)
    assert found, marker
    return bytes.fromhex(found.group(1))


def test_lora_slide_vector_in_protocol_doc() -> None:
    text = (DOCS / "protocol" / "lora.md").read_text().replace("\n", " ")
    plain = _hex_after(text, "as plaintext")
    env = decode_message(int(Kind.SLIDE), plain, source=1, first_counter=5, public_key_of={}.get, verify=verify)
    assert env.message == LoraSlide(0x1A2B3C4D, 3, 7) and env.dest == 0xFFFF and env.ref is None
    assert encode_message(env.message, source=1, msg_id=5, dest=0xFFFF, ref=None, sign=None) == plain


def test_slide_record_vector_in_slides_doc() -> None:
    text = (DOCS / "slides.md").read_text().replace("\n", " ")
    data = _hex_after(text, "page 2 =")
    assert record.parse_record(data) == ("deck01", 2) and record.encode_record("deck01", 2) == data


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=200),
                 st.dictionaries(st.sampled_from(["pages", "done", "error", "x"]),
                                 st.one_of(st.integers(-5, 1 << 40), st.text(max_size=5), st.lists(st.integers(), max_size=3),
                                           st.none(), st.floats()), max_size=4).map(lambda d: __import__("json").dumps(d).encode())))
def test_whatever_the_child_prints_the_parent_reads_a_checked_result(out) -> None:
    from meshmeet.slides.render import _parse_child

    got = _parse_child(out)
    assert set(got) <= {"pages", "done", "error", "vi"}
    if "pages" in got:
        assert type(got["pages"]) is int and 0 <= got["pages"] <= 1 << 20
        assert all(type(p) is int for p in got["done"])
    else:
        assert got["error"] and got["vi"]
