"""The node's slide show plugin: the chair's page turns in, the page in view out to this hall's TV.

API (docs/api.md): `slide_show` {doc_id, page} (chair: writes one replicated page turn; the store
refuses any node but HQ), `slide_state` (what this hall's TV should show: the page, this node's
copy of the document — percent held —, and the image URL once the page can be drawn),
`slide_page` {doc_id, page} (for the web route: renders from this node's own copy, in a child
process, into DIR/slides/; 409 with the percent while the copy is incomplete).

The page in view is the newest replicated turn (state.py), unless a LoRa SLIDE from an
authority arrived later while IP was down (the radio core checks the sender is HQ); a newer
replicated turn replaces it. Every change is published on gateway topic "slides" and, as a slide
record, on the media topic, so the hall's recording holds it at its time. After a turn this node
renders that page (and the next ones) at once, so the TV's request finds it cached.
This module must never write the store except through `state.show` (HQ's own turns), never
open a PDF itself (render.py's child does), and never block the trio thread on file I/O.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ..store.diskfull import DiskFull
from ..lora.messages import Message
from ..lora.messages import Slide as LoraSlide
from ..lora.statewatch import short_ref
from ..meeting.authority import MAX_SLIDE_PAGE
from ..store.errors import AuthorityError, SyncError
from ..api.contract import ApiError
from ..api.state_args import arg_id, arg_int
from . import record, state
from .render import RenderFailed, Renderer
from ..web.slides_routes import slides_web_setup
from ..node.provides import Provides

if TYPE_CHECKING:
    from ..node.lora_service import LoraService
    from ..node.node import Node
    from ..node.sync_service import SyncService

log = logging.getLogger(__name__)

TOPIC = "slides"
CACHE_DIR = "slides"
LOADING_POLL_S = 0.5  # while this node's copy of the shown document is incomplete: progress updates
IDLE_POLL_S = 5.0


class SlidesService:
    """See the module docstring."""

    def __init__(self, node: "Node", *, sync: "SyncService", lora: "LoraService | None" = None) -> None:
        self.node = node
        self.sync = sync
        self.lora = lora
        self.renderer = Renderer(Path(node.data_dir) / CACHE_DIR)
        self._dirty = trio.Event()
        self._lora: state.Slide | None = None  # a turn that came by LoRa, newer than the store's
        self._lora_turn = 0
        self._lora_pending: LoraSlide | None = None
        self._store_newest: str | None = None
        self._shown: dict[str, Any] | None = None
        self._prerender: trio.MemorySendChannel | None = None
        self.lora_turns = 0

    def provides(self) -> Provides:
        return Provides(apis={"slide_show": self.api_show, "slide_state": self.api_state, "slide_page": self.api_page},
                        status={"slides": self.status}, web_setups=(slides_web_setup(),))

    def _sync(self) -> Any:
        return self.sync

    # ----- inputs ----------------------------------------------------------------------------
    def _on_tables(self, tables: list[str]) -> None:
        if "slides" in tables or "documents" in tables:
            self._dirty.set()

    def _on_lora(self, source: int, message: Message) -> None:
        """A SLIDE from LoRa (its sender's authority was checked by the radio core); resolved in the loop."""
        if isinstance(message, LoraSlide) and message.turn > self._lora_turn:
            self._lora_turn = message.turn
            self._lora_pending = message
            self._dirty.set()

    def _resolve_lora(self, store: Any) -> None:
        message, self._lora_pending = self._lora_pending, None
        if message is None:
            return
        docs = [d["id"] for d in store.rows("documents") if short_ref(d["id"]) == message.doc]
        if len(docs) != 1:
            log.warning("slides: LoRa turn names document ref %08x, which this node does not know", message.doc)
            return
        self._lora = state.Slide(docs[0], message.page, time.time(), via="lora")
        self.lora_turns += 1

    # ----- the loop --------------------------------------------------------------------------
    async def run(self) -> None:
        sync = self._sync()
        if sync is None:
            log.info("slides: no sync service, slide show off")
            return
        sync.on_tables_changed(self._on_tables)
        if self.lora is not None:
            self.lora.on_message(self._on_lora)
        send, recv = trio.open_memory_channel[tuple[str, str, int, int]](8)
        self._prerender = send
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._prerenderer, recv)
            while True:
                self._dirty = trio.Event()
                shown = await self._current_json()
                if shown != self._shown:
                    self._publish(shown)
                loading = bool(shown.get("document")) and not shown["document"]["complete"]
                with trio.move_on_after(LOADING_POLL_S if loading else IDLE_POLL_S):
                    await self._dirty.wait()

    def _publish(self, shown: dict[str, Any]) -> None:
        before = (self._shown or {}).get("slide") or {}
        was_whole = bool(((self._shown or {}).get("document") or {}).get("complete"))
        self._shown = shown
        gw = self.node.gateway
        if gw is None:
            return
        gw.try_publish(TOPIC, {"type": "slide", **shown})
        slide = shown.get("slide")
        if not slide:
            return
        turned = (slide["doc_id"], slide["page"]) != (before.get("doc_id"), before.get("page"))
        if turned:
            from ..web.media_routes import MEDIA_TOPIC  # the hub records it with the meeting's media
            gw.try_publish(MEDIA_TOPIC, record.encode_record(slide["doc_id"], slide["page"]))
        doc = shown.get("document")
        if (turned or not was_whole) and doc and doc["complete"] and slide["page"] > 0 and self._prerender is not None:
            try:  # the page (and the rest of the deck) ready before the TV asks
                self._prerender.send_nowait((slide["doc_id"], doc["sha256"], doc["size"], slide["page"]))
            except trio.WouldBlock:
                pass

    async def _prerenderer(self, recv: trio.MemoryReceiveChannel) -> None:
        async for doc_id, sha, size, page in recv:
            try:
                await self.renderer.page(sha, size, self._pdf_writer(doc_id), page)
                await self.renderer.fill(sha, self._pdf_writer(doc_id))  # the whole deck, in the background
            except (RenderFailed, SyncError, OSError) as e:
                log.info("slides: page %d of %s not rendered: %s", page, doc_id, e)

    async def _current_json(self) -> dict[str, Any]:
        sync = self._sync()
        async with sync.lock:
            slides = sync.store.rows("slides")
            newest = max(slides, key=lambda r: (r.get("at") or 0.0, r["id"])) if slides else None
            if newest is not None and newest["id"] != self._store_newest:
                self._store_newest = newest["id"]
                self._lora = None  # a newer replicated turn replaces one that came by LoRa
            self._resolve_lora(sync.store)
            slide = self._lora or (state.Slide(newest["doc_id"], newest["page"], newest["at"] or 0.0, newest["id"])
                                   if newest else None)
            doc = self._doc_json(sync, slide.doc_id) if slide else None
        out: dict[str, Any] = {"slide": slide.as_json() if slide else None, "document": doc, "image": None}
        if slide and doc and slide.page > 0:
            out["image"] = f"/app/slides/{slide.doc_id}/{slide.page}.png"
            pages = self.renderer.known_pages(doc["sha256"])
            doc["pages"] = pages
        return out

    @staticmethod
    def _doc_json(sync: Any, doc_id: str) -> dict[str, Any] | None:
        row = sync.store.get("documents", doc_id)
        if row is None:
            return None
        held, total = sync.store.document_progress(doc_id)
        return {"id": doc_id, "meeting_id": row["meeting_id"], "name": row["name"], "size": row["size"] or 0,
                "sha256": row["sha256"], "chunks_held": held, "chunks_total": total, "complete": held == total,
                "percent": 100 if total == 0 else int(100 * held / total)}

    def _pdf_writer(self, doc_id: str):
        async def write(path: Path) -> None:
            sync = self._sync()
            tmp = path.with_suffix(".part")
            async with await trio.open_file(tmp, "wb") as f:
                async with sync.lock:
                    pieces = list(sync.store.read_document(doc_id))  # SyncError if incomplete
                for piece in pieces:
                    await f.write(piece)
            await trio.Path(tmp).replace(path)
        return write

    # ----- API -------------------------------------------------------------------------------
    async def api_show(self, args: dict) -> dict:
        doc_id = arg_id(args, "doc_id")
        page = arg_int(args, "page", high=MAX_SLIDE_PAGE)
        sync = self._sync()
        if sync is None:
            raise ApiError(503, "no_sync", "Nút chưa có dữ liệu cuộc họp", "this node has no meeting state")
        async with sync.lock:
            sync.check_writable(trio.current_time())
            try:
                row_id = state.show(sync.store, doc_id, page, time.time())
            except DiskFull:
                sync.note_disk_full(trio.current_time())
                raise
            except AuthorityError as e:
                raise ApiError(403, "not_authorised", e.vi, e.en) from None
            except SyncError as e:
                raise ApiError(404 if sync.store.get("documents", doc_id) is None else 400, "bad_request",
                               e.vi, e.en) from None
            sync.local_changed(trio.current_time(), tables={"slides"})
        self._dirty.set()
        if self.lora is not None:
            self.lora.mirror.poke()  # with no IP link up, the turn goes over LoRa now, not at the next tick
        return {"id": row_id, "doc_id": doc_id, "page": page}

    async def api_state(self, args: dict) -> dict:
        if self._sync() is None:
            return {"slide": None, "document": None, "image": None}
        return await self._current_json()

    async def api_page(self, args: dict) -> dict:
        doc_id = arg_id(args, "doc_id")
        page = arg_int(args, "page", low=1, high=MAX_SLIDE_PAGE)
        sync = self._sync()
        if sync is None:
            raise ApiError(503, "no_sync", "Nút chưa có dữ liệu cuộc họp", "this node has no meeting state")
        async with sync.lock:
            doc = self._doc_json(sync, doc_id)
        if doc is None:
            raise ApiError(404, "not_found", f"Không tìm thấy tài liệu {doc_id}", f"no such document: {doc_id}")
        if not doc["complete"]:
            raise ApiError(409, "doc_loading", f"Đang tải tài liệu {doc['percent']} %",
                           f"loading the document {doc['percent']} %")
        try:
            got = await self.renderer.page(doc["sha256"], doc["size"], self._pdf_writer(doc_id), page)
        except RenderFailed as e:
            raise ApiError(422, "cannot_render", e.vi, e.en) from None
        return {"path": str(got.path), "pages": got.pages, "doc_sha256": doc["sha256"]}

    def status(self) -> dict:
        slide = (self._shown or {}).get("slide")
        return {"slide": slide, "renders": self.renderer.runs, "render_failures": self.renderer.crashes,
                "cache_hits": self.renderer.hits, "lora_turns": self.lora_turns}
