"""Updates over the mesh, on the node: publish a signed release (HQ), fetch it as documents,
verify it, install it beside the running version and ask the supervisor to switch.

A release is two documents under the meeting id `release` (manifest.RELEASE_MEETING): the
signed manifest and the bundle. They replicate and their chunks travel exactly as meeting
documents do (content-addressed, resumable, one peer per chunk, behind live media), so halls
fetch from each other. Whenever a table it reads changes (WAKE_TABLES), and at least every CHECK_S
while a release is under way (IDLE_CHECK_S when none is), this service looks for the newest manifest
held whole that check_manifest accepts; once its bundle is whole it is hashed against the manifest, installed
by release/layout.py (only when the node runs under `meshmeet supervise`, i.e. MESHMEET_RELEASE_ROOT
is set), and, when no meeting is started and the manifest's not_before has passed, the node
writes `pending` and stops itself so the supervisor starts the new version. The node's version
and update state are written to the replicated `node_versions` table. This module must never
install anything it has not verified, and never restart during a started meeting.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from .. import __version__
from ..release.layout import ROOT_ENV, Layout
from ..release.manifest import (MANIFEST_SUFFIX, MAX_MANIFEST_BYTES, RELEASE_MEETING, Manifest, ReleaseError,
                                check_bundle, check_manifest, parse_manifest)
from ..meeting import meetings, queries
from ..store.chunks import parse_hashes
from ..store.errors import SyncError
from ..api.contract import ApiError
from ..api.doc_source import SourceRefused, open_operator_file
from .provides import Provides

if TYPE_CHECKING:
    from .node import Node
    from .sync_service import SyncService

log = logging.getLogger(__name__)

CHECK_S = 2.0  # a release under way: look again this often anyway (links, the clock, the supervisor's file)
IDLE_CHECK_S = 30.0  # no release to install: a change to WAKE_TABLES wakes the service before this
WAKE_TABLES = frozenset({"documents", "doc_holdings", "node_versions", "meetings"})  # what _step reads
SERVE_PEERS_MAX_S = 600.0  # wait at most this long for linked peers to hold the bundle before restarting
SWITCH_WAIT_S = 180.0  # after writing `pending`: the supervisor stops this node well before


class ReleaseService:
    def __init__(self, node: "Node", sync: "SyncService | None" = None) -> None:
        """`sync`: the store's owner; a release is published into it and read from it under its
        lock, as the state API's handlers do."""
        self.node = node
        self.sync = sync
        root = os.environ.get(ROOT_ENV)
        self.layout = Layout(Path(root)) if root else None
        self.state = "running"
        self.detail = ""
        self.target: Manifest | None = None
        self.refused: dict[str, str] = {}  # manifest doc id -> reason (en)
        self._written: tuple[str, str] | None = None
        self.nodes: dict[str, dict[str, Any]] = {}  # node id -> its node_versions row (for the map)
        self._installed_at = 0.0
        self._wake = trio.Event()

    def provides(self) -> Provides:
        return Provides(status={"release": self.status},
                        apis={"release_publish": self._api_publish, "release_versions": self._api_versions})

    # ----- status ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": __version__, "state": self.state, "detail": self.detail,
                               "managed": self.layout is not None,
                               "target": self.target.version if self.target else None,
                               "refused": sorted(set(self.refused.values())), "nodes": self.nodes}
        if self.layout is not None:
            st = self.layout.state()
            out.update(root=str(self.layout.root), installed=self.layout.installed(),
                       rolled_back=st.get("rolled_back"), bad=st.get("bad", []))
        return out

    async def _api_versions(self, args: dict) -> dict:
        """Every node's version and update state, from the replicated node_versions table."""
        if self.sync is None:
            return {"nodes": []}
        async with self.sync.lock:
            rows = self.sync.store.rows("node_versions")
        return {"nodes": rows}

    # ----- publish (HQ) ---------------------------------------------------------------------
    async def _api_publish(self, args: dict) -> dict:
        if self.sync is None or self.node.me.role != "hq":
            raise ApiError(403, "not_authorised", "Chỉ trung tâm (HQ) được phát hành phiên bản",
                           "only HQ may publish a release")
        try:
            manifest_bytes = base64.b64decode(str(args.get("manifest", "")), validate=True)
            m, _, _ = parse_manifest(manifest_bytes)
            check_manifest(manifest_bytes, [self.node.roster.admin_public_key], running="0.0")
            f, size = open_operator_file(self.node.data_dir, str(args.get("path", "")))
        except (ValueError, ReleaseError, SourceRefused) as e:
            vi, en = (e.vi, e.en) if hasattr(e, "vi") else ("Tệp mô tả không đọc được", "manifest is not base64")
            raise ApiError(400, "bad_request", vi, en) from None
        with f:
            def run() -> str:
                whole = hashlib.sha256()
                for block in iter(lambda: f.read(1 << 20), b""):
                    whole.update(block)
                check_bundle(m, size, whole.digest())
                f.seek(0)
                _add_release_document(self.sync.store, f"meshmeet-{m.version}-bundle.tar", f)
                import io
                return _add_release_document(self.sync.store, f"meshmeet-{m.version}{MANIFEST_SUFFIX}",
                                             io.BytesIO(manifest_bytes))

            async with self.sync.lock:
                try:
                    doc = await self.sync.in_thread(run)
                except ReleaseError as e:
                    raise ApiError(400, "bad_request", e.vi, e.en) from None
                self.sync.check_holdings(trio.current_time(), all_documents=True)
                self.sync.local_changed(trio.current_time(), tables={"documents"})
        log.info("release %s published (%d bytes)", m.version, size)
        return {"version": m.version, "manifest_doc": doc, "size": size, "sha256": m.sha256.hex()}

    # ----- the loop -------------------------------------------------------------------------
    async def run(self) -> None:
        if self.sync is None:
            return
        self.sync.on_tables_changed(self._tables_changed)
        if self.layout is not None:
            st = self.layout.state()
            if st.get("rolled_back") and st.get("rolled_back") not in self.refused.values():
                self.state, self.detail = "rolled_back", st["rolled_back"]
        while True:
            self._wake = trio.Event()  # a change from here on wakes the wait below at once
            try:
                await self._step()
            except (SyncError, OSError, ReleaseError) as e:
                self._set("failed", getattr(e, "en", str(e)))
                log.warning("release: %s", getattr(e, "en", e))
            await self._record()
            idle = self.target is None and self.state in ("running", "rolled_back")
            with trio.move_on_after(IDLE_CHECK_S if idle else CHECK_S):
                await self._wake.wait()

    def _tables_changed(self, tables: list[str]) -> None:
        """The store changed (called with its lock held: only sets the event)."""
        if WAKE_TABLES.intersection(tables):
            self._wake.set()

    def _set(self, state: str, detail: str = "") -> None:
        if (state, detail) != (self.state, self.detail):
            log.info("release: %s %s", state, detail)
        self.state, self.detail = state, detail

    async def _record(self) -> None:
        """Write this node's version and update state once per change (node_versions)."""
        now = (self.state, "" if self.state == "fetching" else self.detail)  # not every chunk
        if now == self._written or self.sync is None:
            return
        async with self.sync.lock:
            try:
                self.sync.store.write("node_versions", self.node.key.node_id, {
                    "version": __version__, "state": self.state, "detail": self.detail[:200], "at": time.time()})
            except Exception as e:  # not on the roster yet, disk full...: try again next round
                log.debug("release: state not recorded: %s", e)
                return
            self.sync.local_changed(trio.current_time(), tables={"node_versions"})
        self._written = now

    async def _step(self) -> None:
        assert self.sync is not None
        store = self.sync.store
        st = self.layout.state() if self.layout else {}
        async with self.sync.lock:
            self.nodes = {r["node"]: {"version": r["version"], "state": r["state"], "detail": r["detail"]}
                          for r in store.rows("node_versions")}
            docs = queries.documents_of(store, RELEASE_MEETING)
            best: tuple[Manifest, dict] | None = None
            for doc in docs:
                if not doc["name"].endswith(MANIFEST_SUFFIX) or doc["size"] > MAX_MANIFEST_BYTES:
                    continue
                held, total = store.document_progress(doc["id"])
                if held < total:
                    continue
                data = b"".join(store.read_document(doc["id"]))
                try:
                    m = check_manifest(data, [self.node.roster.admin_public_key], __version__,
                                       st.get("highest"), st.get("bad", []))
                except ReleaseError as e:
                    if e.code == "downgrade" and parse_manifest(data)[0].version == __version__:
                        continue  # the release this node runs: nothing to do
                    if doc["id"] not in self.refused:
                        log.warning("release manifest %s refused: %s", doc["name"], e.en)
                    self.refused[doc["id"]] = e.en
                    continue
                if best is None or m.key > best[0].key:
                    best = (m, doc)
            if best is None:
                if self.state not in ("rolled_back",):
                    self._set("running")
                self.target = None
                return
            m = best[0]
            self.target = m
            bundle = next((d for d in docs if d["sha256"] == m.sha256.hex() and d["size"] == m.size
                           and not d["name"].endswith(MANIFEST_SUFFIX)), None)
            if bundle is None:
                self._set("fetching", f"{m.version}: waiting for the bundle's entry")
                return
            held, total = store.document_progress(bundle["id"])
            if held < total:
                self._set("fetching", f"{m.version}: {held}/{total} chunks")
                return
            if self.layout is None:
                self._set("fetching", f"{m.version}: held; not installed (node not run by `meshmeet supervise`)")
                return
            self.layout.mark(m.version, "held")
            if m.version in self.layout.installed():
                incoming = None
            else:
                incoming = self.layout.root / "incoming" / f"{m.version}.tar"
                incoming.parent.mkdir(parents=True, exist_ok=True)
                digest = await self.sync.in_thread(lambda: _write_document(store, bundle["id"], incoming))
        if incoming is not None:
            try:
                check_bundle(m, incoming.stat().st_size, digest)
                self.layout.mark(m.version, "verified")
                await trio.to_thread.run_sync(self.layout.install, m.version, incoming)
                self.layout.mark(m.version, "installed")
            except ReleaseError as e:
                self.refused[bundle["id"]] = e.en
                self.layout.update_state(bad=sorted(set(st.get("bad", [])) | {m.version}),
                                         event=f"{m.version} refused: {e.en}")
                self._set("refused", f"{m.version}: {e.en}")
                return
            finally:
                incoming.unlink(missing_ok=True)
        if self.state != "installed":
            self._installed_at = time.monotonic()
        self._set("installed", m.version)
        await self._maybe_switch(m, bundle["id"])

    async def _maybe_switch(self, m: Manifest, bundle_id: str) -> None:
        """Restart into `m` when no meeting is started, its not_before has passed, and every linked
        peer holds the bundle (so a restart never cuts a neighbour off mid-transfer; at most
        SERVE_PEERS_MAX_S, so a silent peer cannot hold the update back)."""
        assert self.sync is not None and self.layout is not None
        async with self.sync.lock:
            live = queries.started_meetings(self.sync.store)
            holders = queries.holders(self.sync.store, bundle_id)
        lacking = [p for p in self.node.links.up_peers() if p not in holders]
        if lacking and time.monotonic() - self._installed_at < SERVE_PEERS_MAX_S:
            self.detail = f"{m.version}: {len(lacking)} linked peer(s) still fetching it"
            return
        if live:
            self.detail = f"{m.version}: waiting for the meeting to end"
            return
        if time.time() < m.not_before:
            self.detail = f"{m.version}: restart at {time.strftime('%Y-%m-%d %H:%M', time.localtime(m.not_before))}"
            return
        up = sum(1 for link in self.node.links.snapshot() if link.get("state") == "up")
        self.layout.update_state(pending=m.version, links_before=up, event=f"restart into {m.version} requested")
        self.layout.mark(m.version, "requested")
        self._set("switching", m.version)
        await self._record()
        # The supervisor starts the new version at its gate and then stops this node; if it has not
        # within SWITCH_WAIT_S (an older supervisor), stop by ourselves and let it switch on exit.
        waited = 0.0
        while waited < SWITCH_WAIT_S:
            await trio.sleep(0.5)
            waited += 0.5
            st = self.layout.state()
            if st.get("pending") != m.version:  # the supervisor gave up on it (it did not start)
                if m.version in st.get("bad", []):
                    self._set("rolled_back", m.version)
                    await self._record()
                return
        log.info("release: stopping to restart into %s", m.version)
        os.kill(os.getpid(), signal.SIGTERM)


def _add_release_document(store, name: str, stream) -> str:
    """A release file as a document under the release meeting id (which is no meeting row), any size."""
    return meetings.store_document(store, RELEASE_MEETING, stream, name, max_bytes=None)


def _write_document(store, doc_id: str, path: Path) -> bytes:
    """Write a whole document to `path`; its SHA-256."""
    whole = hashlib.sha256()
    with open(path, "wb") as out:
        for data in store.read_document(doc_id):
            whole.update(data)
            out.write(data)
    return whole.digest()


__all__ = ["ReleaseService", "parse_hashes"]
