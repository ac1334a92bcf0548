"""The document part of the node's state API: doc_add, docs, doc_readiness, doc, doc_chunk.

doc_add imports a file the operator hands over (a web upload, or a path outside the data dir:
doc_source.py opens it and refuses keys, devices, /proc and links) into the replicated store
(chunked and hashed by meshmeet.meeting.meetings.add_document, in a worker thread, with progress in
SyncService.adding);
the other handlers describe documents, report per-site readiness from the replicated holdings,
and hand out one stored chunk at a time as base64. Routes and answers are in docs/api.md; the
handlers are registered by StateApi (state_api.py), whose lock-and-publish plumbing they share.
This module must never write SQL, never bypass the store's change capture, never touch the
store outside the service lock, and never open a path except through doc_source.
"""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ..meeting import meetings as m
from ..store.chunks import MAX_DOCUMENT_BYTES, parse_hashes
from ..store.errors import AuthorityError, SyncError
from .contract import ApiError
from .doc_source import SourceRefused, open_operator_file, open_upload
from .state_args import arg_id, arg_int, arg_str, bad, forbidden

if TYPE_CHECKING:
    from .state_api import StateApi

log = logging.getLogger(__name__)


class DocumentApi:
    """The document handlers; `state` gives the node, the sync service and the lookup helpers."""

    def __init__(self, state: "StateApi") -> None:
        self.state = state
        self.node = state.node
        self.svc = state.svc
        self.store = state.store

    def _may_write(self, table: str) -> bool:
        return self.node.me.role in self.store.specs[table].writers

    async def doc_add(self, args: dict) -> dict:
        mid = arg_id(args, "meeting_id")
        upload = arg_str(args, "upload", required=False, max_chars=64)
        raw_path = arg_str(args, "path", required=upload is None, max_chars=4096)
        name = arg_str(args, "name", required=False)
        if upload is not None and raw_path is not None:
            bad("path", "không dùng cùng lúc với “upload”", "cannot be given together with “upload”")
        try:
            if upload is not None:
                f, size = open_upload(self.node.data_dir, upload)
            else:
                assert raw_path is not None
                f, size = open_operator_file(self.node.data_dir, raw_path)
        except SourceRefused as e:
            bad("upload" if upload is not None else "path", e.vi, e.en)
        try:
            return await self._import(mid, f, size, name or (upload or Path(raw_path or "").name))
        finally:
            f.close()

    async def _import(self, mid: str, f: Any, size: int, display: str) -> dict:
        if size > MAX_DOCUMENT_BYTES:
            raise ApiError(413, "too_large", "Tài liệu quá lớn (tối đa 200 MB)", "document too large (200 MB at most)")
        if not self._may_write("documents"):
            forbidden("Chỉ trung tâm (HQ) được thêm tài liệu", "only HQ may add documents")
        async with self.svc.lock:
            self.state.need_meeting(mid)
            progress = {"meeting_id": mid, "name": display, "size": size, "bytes_done": 0,
                        "started": time.time()}
            self.svc.adding = progress

            def run() -> str:
                return m.add_document(self.store, mid, _Counting(f, progress), display)

            try:
                doc = await self.svc.in_thread(run)
            except AuthorityError as e:
                raise ApiError(403, "not_authorised", e.vi, e.en) from None
            except SyncError as e:
                raise ApiError(400, "bad_request", e.vi, e.en) from None
            except OSError as e:
                bad("path", f"không đọc được tệp ({e.strerror})", f"cannot read the file ({e.strerror})")
            finally:
                self.svc.adding = None
            self.svc.check_holdings(trio.current_time(), all_documents=True)
            self.svc.local_changed(trio.current_time(), tables={"documents"})
            row = self.store.get("documents", doc)
        log.info("document %s (%s, %d bytes) added to meeting %s", doc, display, row["size"], mid)
        return {"id": doc, "name": row["name"], "sha256": row["sha256"], "size": row["size"],
                "chunks_total": len(parse_hashes(row["chunks"]))}

    async def docs(self, args: dict) -> dict:
        mid = arg_id(args, "meeting_id")
        async with self.svc.lock:
            self.state.need_meeting(mid)
            return {"documents": m.documents(self.store, mid)}

    async def doc_readiness(self, args: dict) -> dict:
        """Per roster site: ready true/false/null from the replicated holdings (see docs/api.md)."""
        mid = arg_id(args, "meeting_id")
        members = self.node.roster.members()
        async with self.svc.lock:
            self.state.need_meeting(mid)
            docs = m.documents(self.store, mid)
            per_node = m.readiness(self.store, mid, [x.node_id for x in members])
        up = set(self.node.links.up_peers())
        sites = []
        for member in members:
            me = member.node_id == self.node.key.node_id
            sites.append({"node": member.node_id, "site": member.site, "role": member.role,
                          "linked": me or member.node_id in up, **per_node[member.node_id]})
        mine = all(d["chunks_held"] == d["chunks_total"] for d in docs)
        return {"meeting_id": mid, "documents": len(docs), "sites": sites,
                "this_node": {"ready": mine, "held": sum(d["chunks_held"] for d in docs),
                              "total": sum(d["chunks_total"] for d in docs)}}

    def _doc_json(self, doc_id: str) -> dict[str, Any]:
        row = self.state.need("documents", doc_id, "tài liệu", "document")
        held, total = self.store.document_progress(doc_id)
        return {"id": doc_id, "meeting_id": row["meeting_id"], "name": row["name"], "size": row["size"],
                "sha256": row["sha256"], "chunk_bytes": row["chunk_bytes"], "chunks_held": held,
                "chunks_total": total, "complete": held == total}

    async def doc(self, args: dict) -> dict:
        """One document's description and how much of it this node holds."""
        doc_id = arg_id(args, "id")
        async with self.svc.lock:
            return {"document": self._doc_json(doc_id)}

    async def doc_chunk(self, args: dict) -> dict:
        """One stored chunk of a document, base64; 409 while this node does not hold it yet."""
        doc_id = arg_id(args, "id")
        index = arg_int(args, "index", high=MAX_DOCUMENT_BYTES)
        async with self.svc.lock:
            row = self.state.need("documents", doc_id, "tài liệu", "document")
            hashes = parse_hashes(row["chunks"])
            if index >= len(hashes):
                bad("index", f"tài liệu chỉ có {len(hashes)} phần (0..{len(hashes) - 1})",
                    f"the document has {len(hashes)} chunks (0..{len(hashes) - 1})")
            data = self.store.get_chunk(hashes[index])
        if data is None:
            raise ApiError(409, "chunk_missing", f"Điểm này chưa nhận phần {index} của tài liệu; hãy chờ tải xong",
                           f"this node does not hold chunk {index} of the document yet; wait for the download")
        return {"id": doc_id, "index": index, "count": len(hashes), "chunk_sha256": hashes[index].hex(),
                "bytes": len(data), "data": base64.b64encode(data).decode("ascii")}


class _Counting:
    """A read-only file wrapper that records how many bytes were read (import progress)."""

    def __init__(self, f: Any, progress: dict[str, Any]) -> None:
        self._f = f
        self._progress = progress
        self.name = f.name

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._progress["bytes_done"] += len(data)
        return data


__all__ = ["DocumentApi"]
