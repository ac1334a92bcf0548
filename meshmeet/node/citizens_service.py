"""The resident feedback page's node plugin: its API handlers, the contact book and its retention.

Provides `citizen_submit` (one, checked here: the CLI), `citizen_submit_page` (the page's checked
forms, many per call: one group commit each), `citizen_lookup`, `citizen_board`, `citizen_wall`
(what the page and the TV may read), `feedback_hide` and `citizen_inbox` (chair or the local CLI:
web/app/policy.py), and mounts the page (web/citizens_page.py). The page's calls are LOCAL_ONLY
for browsers: only the page's own routes reach them, after the form checks and rate limits.
Contacts go into the node's contact book and, sealed to HQ, into the replicated row; every hour
contacts older than the retention are deleted here (HQ's too). This module must never put a contact in a reply to a page
or a TV, and never touch the store outside the sync service's lock.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import TYPE_CHECKING, Any, Callable

import trio

from ..citizens import codes
from ..config import host_port_or_off
from ..meeting import citizens as ops
from ..citizens.contacts import ContactBook
from ..citizens.form import MAX_NAME_CHARS, MAX_TEXT_CHARS, FeedbackForm, FormError, clean_phone, clean_text
from ..citizens.sealed import Contact, Sealer, unseal
from ..citizens.settings import read_settings
from ..store.diskfull import DiskFull
from ..meeting.errors import NotFound
from ..store.errors import AuthorityError, SyncError
from ..api.contract import ApiError
from ..web.citizens_page import PageOptions, ResidentSite, make_page_setup
from ..api.state_args import arg_bool, arg_id, arg_str, not_found
from .provides import Provides

if TYPE_CHECKING:
    from .node import Node
    from .sync_service import SyncService

log = logging.getLogger(__name__)

PURGE_EVERY_S = 3600.0
DAY_S = 86_400.0
MAX_BATCH_FORMS = 256  # the page's batcher sends at most 64 (web/call_batch.py)


class CitizensService:
    def __init__(self, node: "Node", *, sync: "SyncService") -> None:
        self.node = node
        self._svc = sync
        self.settings = read_settings(node.data_dir)
        self.book = ContactBook(node.data_dir)
        self.submitted = 0
        self.purged = 0
        self.groups = 0  # group commits (submitted / groups: submissions per signed batch)
        self._sealer = Sealer()
        self.site = ResidentSite()
        listen = self.settings.listen if node.cfg.residents is None else host_port_or_off(node.cfg.residents, what="--residents")
        self._page_setup = make_page_setup(PageOptions(limits=self.settings.limits, listen=listen), self.site)

    def provides(self) -> Provides:
        return Provides(apis={
            "citizen_submit": self.submit, "citizen_submit_page": self.submit_page, "citizen_lookup": self.lookup,
            "citizen_board": self.board,
            "citizen_wall": self.wall, "feedback_hide": self.hide, "citizen_inbox": self.inbox,
        }, web_setups=(self._page_setup,), status={"citizens": self.status})

    @property
    def _sync(self) -> "SyncService":
        return self._svc

    async def _write(self, tables: set[str], fn: Callable[[Any], Any]) -> Any:
        svc = self._sync
        async with svc.lock:
            svc.check_writable(trio.current_time())
            try:
                result = fn(svc.store)
            except DiskFull:
                svc.note_disk_full(trio.current_time())
                raise
            except AuthorityError as e:
                raise ApiError(403, "not_authorised", e.vi, e.en) from None
            except NotFound as e:
                raise ApiError(404, "not_found", e.vi, e.en) from None
            except SyncError as e:
                raise ApiError(400, "bad_request", e.vi, e.en) from None
            svc.local_changed(trio.current_time(), tables=tables)
            return result

    def _hq_keys(self) -> dict[str, bytes]:
        return {m.node_id: m.public_key for m in self.node.roster.members() if m.role == "hq"}

    async def submit(self, args: dict) -> dict:
        """One submission by the API (the local CLI); checked here, as every argument of a call is."""
        try:
            text = clean_text(arg_str(args, "text", max_chars=MAX_TEXT_CHARS * 4) or "", "text", MAX_TEXT_CHARS,
                              multiline=True)
            name = clean_text(arg_str(args, "name", required=False) or "", "name", MAX_NAME_CHARS, multiline=False)
            phone = clean_phone(arg_str(args, "phone", required=False) or "")
        except FormError as e:
            raise ApiError(e.status, e.code, e.vi, e.en) from None
        source = arg_str(args, "source", required=False, choices=("hall_page", "zalo")) or "hall_page"
        zalo_user = arg_str(args, "zalo_user_id", required=False, max_chars=64) if source == "zalo" else None
        (outcome,) = await self._submit_all([(text, source, Contact(name or None, phone, zalo_user))])
        if isinstance(outcome, ApiError):
            raise outcome
        return outcome

    async def submit_page(self, args: dict) -> dict:
        """The resident page's submissions, many per call (web/citizens_page.py through
        web/call_batch.py): each a FeedbackForm, which only citizens/form.py's `parse_form` makes,
        after the whole check of the form; so the JSON of an /api call (dicts) is refused here.
        {"results": [{"id", "code"} or ApiError, one per form, in order]}."""
        forms = page_forms(args)
        return {"results": await self._submit_all([(f.text, "hall_page", Contact(f.name, f.phone)) for f in forms])}

    async def _submit_all(self, entries: list[tuple[str, str, Contact]]) -> list[dict | ApiError]:
        """Checked submissions into the store in one group commit (meeting/citizens.py
        `submit_each`: one signed batch; only a change the law refuses fails alone), their
        contacts sealed to HQ into the rows and kept in the contact book."""
        hq, now = self._hq_keys(), trio.current_time()
        outcomes: list[dict | ApiError | None] = [None] * len(entries)
        rows: list[tuple[int, str, str, bytes | None]] = []
        for i, (text, source, contact) in enumerate(entries):
            try:
                sealed = None if contact.empty() else self._sealer.seal(contact, hq, now)
            except ValueError:  # more HQ keys than the column's bound holds
                outcomes[i] = ApiError(500, "contact_too_large", "Không niêm phong được thông tin liên hệ",
                                       "the contact could not be sealed (too many HQ keys)")
                continue
            rows.append((i, text, source, sealed))
        if rows:
            self.groups += 1
            try:
                written = await self._write({"feedback"}, lambda st: ops.submit_each(st, [r[1:] for r in rows]))
            except DiskFull as e:
                written = [ApiError(507, "disk_full", e.vi, e.en)] * len(rows)
            except ApiError as e:
                written = [e] * len(rows)
            kept = []
            for (i, *_), got in zip(rows, written):
                if isinstance(got, ApiError):
                    outcomes[i] = got
                elif isinstance(got, SyncError):
                    outcomes[i] = _refused(got)
                else:
                    fid, code = got
                    outcomes[i] = {"id": fid, "code": codes.show(code)}
                    self.submitted += 1
                    if not entries[i][2].empty():
                        kept.append((fid, entries[i][2], time.time()))
            self._keep_contacts(kept)
        return outcomes  # type: ignore[return-value]  # every entry has its outcome now

    def _keep_contacts(self, kept: list[tuple[str, Contact, float]]) -> None:
        """The hall's own copy of the contacts just written. Their rows are committed and hold the
        contacts sealed to HQ, so a failure here is logged, not reported as a lost submission."""
        if not kept:
            return
        try:
            self.book.put_many(kept)
        except (sqlite3.Error, OSError) as e:
            log.error("citizens: %d contacts not kept in the contact book (%s); HQ holds them sealed", len(kept), e)

    async def lookup(self, args: dict) -> dict:
        code = codes.read_code(arg_str(args, "code", max_chars=32) or "")
        if code is None:
            raise ApiError(400, "bad_code", "Mã tra cứu gồm 8 ký tự, ví dụ 7KQ2-M9XD",
                           "a short code has 8 characters, e.g. 7KQ2-M9XD")
        svc = self._sync
        async with svc.lock:
            found = ops.lookup(svc.store, code)
        if found is None:
            not_found("ý kiến có mã", "feedback with code", codes.show(code))
        return found

    async def board(self, args: dict) -> dict:
        svc = self._sync
        async with svc.lock:
            return ops.board(svc.store, time.time())

    async def wall(self, args: dict) -> dict:
        svc = self._sync
        async with svc.lock:
            return {"feedback": ops.wall(svc.store)}

    async def hide(self, args: dict) -> dict:
        fid = arg_id(args, "feedback_id")
        hidden = arg_bool(args, "hidden", True)
        await self._write({"feedback_moderation"}, lambda st: ops.set_hidden(st, fid, hidden))
        return {"feedback_id": fid, "hidden": hidden}

    async def inbox(self, args: dict) -> dict:
        """HQ's inbox of residents' feedback with their contacts (opened here, within the retention)."""
        svc = self._sync
        async with svc.lock:
            rows = ops.inbox_rows(svc.store)
        cutoff = time.time() - self.settings.retention_days * DAY_S
        out = []
        for r in rows:
            blob = r.pop("contact", None)
            contact = self.book.get(r["id"])
            if contact is None and blob and (r["at"] or 0.0) >= cutoff:
                contact = unseal(blob, self.node.key.node_id, self.node.key.signing_key)
                if contact is not None:
                    self.book.put(r["id"], contact, r["at"] or time.time())
            r.pop("code", None)
            member = self.node.roster.member_by_node_id(r["node"])
            out.append({**r, "site": member.site if member else "",
                        "contact": None if contact is None else
                        {"name": contact.name, "phone": contact.phone, "zalo": contact.zalo_user_id is not None}})
        return {"feedback": out}

    def status(self) -> dict:
        return {"submitted": self.submitted, "groups": self.groups, "contacts_purged": self.purged,
                "retention_days": self.settings.retention_days, "residents_port": self.site.port,
                "residents_error": self.site.error}

    def purge_now(self) -> int:
        n = self.book.purge(time.time() - self.settings.retention_days * DAY_S)
        self.purged += n
        return n

    async def run(self) -> None:
        await self._purge_loop()

    async def _purge_loop(self) -> None:
        try:
            while True:
                n = self.purge_now()
                if n:
                    log.info("citizens: deleted %d contacts past the %g-day retention", n,
                             self.settings.retention_days)
                await trio.sleep(PURGE_EVERY_S)
        finally:
            self.book.close()


def _refused(e: SyncError) -> ApiError:
    """A change the law refused, as the page's error (as `_write` maps it)."""
    if isinstance(e, AuthorityError):
        return ApiError(403, "not_authorised", e.vi, e.en)
    return ApiError(400, "bad_request", e.vi, e.en)


def page_forms(args: dict) -> list[FeedbackForm]:
    """The forms of a `citizen_submit_page` call: 1..MAX_BATCH_FORMS FeedbackForms, else a 400."""
    forms = args.get("items")
    if (not isinstance(forms, list) or not 1 <= len(forms) <= MAX_BATCH_FORMS
            or not all(type(f) is FeedbackForm for f in forms)):
        raise ApiError(400, "bad_request", "Chỉ trang /y-kien gửi được ý kiến theo lô",
                       "only the /y-kien page's own route sends feedback in batches")
    return forms
