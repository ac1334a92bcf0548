"""The node's page renderer: PDF pages to PNG files in a cache, by a child process under limits.

`Renderer.page(sha256, pdf_writer, page)` answers with the cached PNG of that page (rendered at
WIDTH_PX) or renders it — and the next PREFETCH_PAGES, so the chair's next turn is a cache hit —
with one run of `python -m meshmeet.slides.child` (child.py: address-space, CPU and file-size
limits, no core dump) under a deadline of RENDER_DEADLINE_S. One render runs at a time per node.
A document is rendered from its own file DIR/slides/<sha256>/doc.pdf, which the caller writes
from the store once (the content is immutable: it is named by its hash). What the child says is
checked (it is as untrusted as the PDF), and a failure is remembered per document in meta.json
so a PDF that crashes its renderer is not rendered again and again. This module must never open a
PDF in the node's own process, or write outside its cache directory.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

import trio

from .child import page_file

log = logging.getLogger(__name__)

WIDTH_PX = 1280  # a hall TV is 1280x720 or 1920x1080: sharp enough, ~5 ms per page here
PREFETCH_PAGES = 2
FILL_BATCH_PAGES = 24  # background rendering of a whole deck: pages per child run (an on-demand page waits <= one run)
MAX_FILL_PAGES = 300   # decks longer than this are rendered on demand only (plus PREFETCH_PAGES)
RENDER_DEADLINE_S = 30.0  # the child is killed after this long (a PDF made to hang pdfium)
MAX_PDF_BYTES = 64 << 20  # larger documents are not shown as slides (the store allows 200 MiB)
MAX_PAGES = 2000
MAX_CHILD_OUTPUT_BYTES = 64 << 10
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
PDF_FILE = "doc.pdf"
META_FILE = "meta.json"


class RenderFailed(Exception):
    """The document cannot be shown as slides (not a PDF, too big, too many pages, renderer died)."""

    def __init__(self, vi: str, en: str) -> None:
        super().__init__(en)
        self.vi = vi
        self.en = en


@dataclass(frozen=True)
class Rendered:
    path: Path
    pages: int  # pages in the document


WritePdf = Callable[[Path], Awaitable[None]]  # writes the document's bytes to the given path


class Renderer:
    """The cache DIR/slides/<sha256>/{doc.pdf, meta.json, pN-wW.png} and the child that fills it."""

    def __init__(self, cache_dir: Path, *, python: str = sys.executable, width: int = WIDTH_PX) -> None:
        self.cache_dir = Path(cache_dir)
        self.python = python
        self.width = width
        self._lock = trio.Lock()
        self.runs = 0
        self.crashes = 0
        self.hits = 0

    def _dir(self, sha256: str) -> Path:
        if not SHA256_RE.match(sha256):
            raise ValueError("not a sha256")
        return self.cache_dir / sha256

    def _meta(self, sha256: str) -> dict:
        try:
            meta = json.loads((self._dir(sha256) / META_FILE).read_text())
            return meta if isinstance(meta, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_meta(self, sha256: str, meta: dict) -> None:
        path = self._dir(sha256) / META_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, path)

    def cached(self, sha256: str, page: int) -> Rendered | None:
        meta = self._meta(sha256)
        path = Path(page_file(str(self._dir(sha256)), page, self.width))
        if path.is_file() and isinstance(meta.get("pages"), int):
            return Rendered(path, meta["pages"])
        return None

    def known_pages(self, sha256: str) -> int | None:
        pages = self._meta(sha256).get("pages")
        return pages if isinstance(pages, int) and not self._meta(sha256).get("error") else None

    async def page(self, sha256: str, size: int, write_pdf: WritePdf, page: int) -> Rendered:
        """The PNG of `page` (1-based) of the document with this content hash; RenderFailed if not."""
        hit = self.cached(sha256, page)
        if hit is not None:
            self.hits += 1
            return hit
        if size > MAX_PDF_BYTES:
            raise RenderFailed(f"Tài liệu quá lớn để trình chiếu (tối đa {MAX_PDF_BYTES >> 20} MiB)",
                               f"the document is too large to show (at most {MAX_PDF_BYTES >> 20} MiB)")
        async with self._lock:
            hit = self.cached(sha256, page)
            if hit is not None:
                self.hits += 1
                return hit
            meta = self._meta(sha256)
            if meta.get("error"):
                raise RenderFailed(meta.get("vi") or "Không hiển thị được tài liệu này", meta["error"])
            if isinstance(meta.get("pages"), int) and not 1 <= page <= meta["pages"]:
                raise RenderFailed(f"Tài liệu chỉ có {meta['pages']} trang", f"the document has {meta['pages']} pages")
            d = self._dir(sha256)
            d.mkdir(parents=True, exist_ok=True)
            pdf = d / PDF_FILE
            if not pdf.is_file():
                await write_pdf(pdf)
            meta = await self._run(sha256, pdf, list(range(page, page + 1 + PREFETCH_PAGES)))
            hit = self.cached(sha256, page)
        if hit is not None:
            return hit
        if meta.get("error"):
            raise RenderFailed(meta.get("vi") or "Không hiển thị được tài liệu này", meta["error"])
        raise RenderFailed(f"Tài liệu chỉ có {meta.get('pages')} trang", f"the document has {meta.get('pages')} pages")

    async def fill(self, sha256: str, write_pdf: WritePdf) -> int:
        """Render every page not cached yet, FILL_BATCH_PAGES per child run (call after `page`
        succeeded once, so the page count is known); the chair's turns then never wait for a
        render. Returns how many pages were rendered."""
        pages = self.known_pages(sha256)
        if pages is None or pages > MAX_FILL_PAGES:
            return 0
        done = 0
        missing = [p for p in range(1, pages + 1) if self.cached(sha256, p) is None]
        for start in range(0, len(missing), FILL_BATCH_PAGES):
            batch = [p for p in missing[start:start + FILL_BATCH_PAGES] if self.cached(sha256, p) is None]
            if not batch:
                continue
            async with self._lock:
                meta = await self._run(sha256, self._dir(sha256) / PDF_FILE, batch)
            if meta.get("error") and not meta.get("done"):
                break
            done += len(batch)
        return done

    async def _run(self, sha256: str, pdf: Path, pages: list[int]) -> dict:
        spec = {"pdf": str(pdf), "out": str(pdf.parent), "pages": pages, "width": self.width, "max_pages": MAX_PAGES}
        self.runs += 1
        proc = None
        with trio.move_on_after(RENDER_DEADLINE_S):
            proc = await trio.run_process([self.python, "-m", "meshmeet.slides.child", json.dumps(spec)],
                                          capture_stdout=True, capture_stderr=True, check=False,
                                          env={**os.environ, "PYTHONPATH": _package_root()})
        meta: dict
        if proc is None or proc.returncode != 0:
            self.crashes += 1
            why = "timed out" if proc is None else f"exit status {proc.returncode}"
            tail = b"" if proc is None else proc.stderr[-300:]
            log.warning("slides: renderer for %s failed (%s): %s", sha256[:12], why, tail.decode(errors="replace"))
            meta = {"error": f"the renderer failed on this PDF ({why})",
                    "vi": "Không hiển thị được tài liệu này (trình dựng trang bị lỗi)"}
        else:
            meta = _parse_child(proc.stdout)
            if meta.get("error") and not meta.get("done"):
                meta["vi"] = "Tài liệu không phải PDF hợp lệ hoặc vượt giới hạn trang"
            else:
                meta.pop("error", None)  # one bad page: the others still show
        self._write_meta(sha256, {k: v for k, v in meta.items() if k in ("pages", "error", "vi")})
        return meta


def _parse_child(out: bytes) -> dict:
    """The child's one JSON line, checked field by field (the child is as untrusted as the PDF)."""
    try:
        obj = json.loads(out[-MAX_CHILD_OUTPUT_BYTES:].decode().strip().splitlines()[-1])
    except (ValueError, IndexError, UnicodeDecodeError):
        return {"error": "the renderer said nothing readable", "vi": "Không hiển thị được tài liệu này"}
    if not isinstance(obj, dict):
        return {"error": "the renderer said nothing readable", "vi": "Không hiển thị được tài liệu này"}
    pages = obj.get("pages")
    done = obj.get("done")
    err = obj.get("error")
    return {"pages": pages if type(pages) is int and 0 <= pages <= 1 << 20 else 0,
            "done": [p for p in done if type(p) is int] if isinstance(done, list) else [],
            "error": str(err)[:300] if err else None}


def _package_root() -> str:
    """The directory holding the meshmeet package (so the child imports this very code)."""
    root = str(Path(__file__).resolve().parents[2])
    extra = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{extra}" if extra else root
