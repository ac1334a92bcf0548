"""The Zalo OA bridge's trio driver: moves the outbox to the OA and the OA's messages in.

Active only where `meshmeet zalo setup` wrote DIR/zalo.toml (HQ usually; a hall with 4G may be the
gateway). Every second: (1) queue what the store asks for: announcements marked `zalo` (a
broadcast, expanded into one promotion per follower) and the chair's replies to feedback that
came from Zalo (a customer-service message to that resident); (2) keep the access token fresh
(refreshed 5 minutes before it expires, or when the OA says it is invalid; a refused refresh
token is a bilingual alert on /chair and sending stops until a new setup); (3) send what is due,
one request at a time, each marked `sending` on disk first, so a crash or a cut link leaves an
`unsure` item that is looked up in the resident's conversation before any second send; (4) take
residents' messages in (webhook events, else polling the recent conversations) and write each
once as feedback (its id is derived from the OA's message id). HTTP is stdlib urllib in a worker
thread (no client library needed for five endpoints). This module must never send a token or a
user id anywhere but the OA, and never put a user id in the replicated store unsealed.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import trio

from ..meeting import citizens as ops
from ..citizens.contacts import ContactBook
from ..citizens.sealed import Contact, seal
from ..citizens.settings import read_settings
from ..errors import MeshmeetError
from ..api.contract import ApiError
from ..web.zalo_routes import make_webhook_setup
from ..zalo import api
from ..zalo.creds import ZaloCreds, read_creds
from ..zalo.outbox import Item, Outbox
from ..zalo.webhook import WebhookError, verify
from ..api.state_args import arg_str
from .provides import Provides

if TYPE_CHECKING:
    from .node import Node
    from .sync_service import SyncService

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 15.0
TICK_S = 1.0
REFRESH_EARLY_S = 300.0
CS_WINDOW_S = 7 * 86_400.0   # the OA may answer a resident within 7 days of their last message
MARK_CHARS = 6
DAY_S = 86_400.0
ALERT_REFRESH = ("Mã làm mới (refresh token) của Zalo OA đã hết hạn hoặc bị thu hồi: cầu nối Zalo đã dừng gửi. "
                 "Hãy chạy lại: meshmeet zalo setup",
                 "The Zalo OA refresh token has expired or was revoked: the Zalo bridge stopped sending. "
                 "Run again: meshmeet zalo setup")


def mark_of(key: str) -> str:
    """The reference a sent message carries, to find it in the conversation after an unsure send."""
    return hashlib.sha256(key.encode()).hexdigest()[:MARK_CHARS].upper()


def with_mark(text: str, key: str) -> str:
    return f"{text}\n\nMã tin: {mark_of(key)}"


class Offline(Exception):
    """No answer from the OA: the request may or may not have arrived (`maybe_sent`)."""

    def __init__(self, reason: str, maybe_sent: bool) -> None:
        super().__init__(reason)
        self.maybe_sent = maybe_sent


def _http(req: api.Request) -> tuple[int, bytes]:
    r = urllib.request.Request(req.url, data=req.body, headers=req.headers, method=req.method)
    try:
        with urllib.request.urlopen(r, timeout=HTTP_TIMEOUT_S) as resp:
            return resp.status, resp.read(api.MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as e:
        return e.code, e.read(api.MAX_RESPONSE_BYTES + 1)
    except urllib.error.URLError as e:
        refused = isinstance(e.reason, (ConnectionRefusedError, socket.gaierror))
        raise Offline(str(e.reason), maybe_sent=not refused) from None
    except (ConnectionError, TimeoutError, socket.timeout, OSError) as e:  # reset or cut mid-answer
        raise Offline(str(e), maybe_sent=True) from None


class ZaloService:
    def __init__(self, node: "Node", *, sync: "SyncService") -> None:
        self.node = node
        self._svc = sync
        self.creds: ZaloCreds | None = None
        self.error: str | None = None
        try:
            self.creds = read_creds(node.data_dir)
        except MeshmeetError as e:
            self.error = e.en
            log.error("zalo: %s", e.en)
        self.alert: tuple[str, str] | None = None
        self.online: bool | None = None
        self.sent_total = 0
        self.inbound_total = 0
        self._wake = trio.Event()
        if self.creds is None:
            return
        self.box = Outbox(node.data_dir)
        self.book = ContactBook(node.data_dir)
        self.retention_days = read_settings(node.data_dir).retention_days
        self._next_poll = 0.0
        self._next_purge = 0.0
        self._offline_until = 0.0
        if self.box.token("setup_refresh_token") != self.creds.refresh_token:  # a new setup wins
            self.box.set_tokens({"setup_refresh_token": self.creds.refresh_token,
                                 "refresh_token": self.creds.refresh_token, "access_token": "", "expires_at": "0"})

    def provides(self) -> Provides:
        """`zalo_status` and status["zalo"]; once set up, `zalo_retry`, `zalo_webhook` and the webhook route."""
        own = Provides(apis={"zalo_status": self.status_api}, status={"zalo": self.status})
        if self.creds is None:
            return own
        return own + Provides(apis={"zalo_retry": self.retry_api, "zalo_webhook": self.webhook_api},
                              web_setups=(make_webhook_setup(),))

    # ----- status and API -----------------------------------------------------------------------
    def status(self) -> dict:
        if self.creds is None:
            return {"configured": False, "error": self.error}
        return {"configured": True, "online": self.online, "alert": None if self.alert is None else
                {"vi": self.alert[0], "en": self.alert[1]}, "counts": self.box.counts(),
                "sent": self.sent_total, "taken_in": self.inbound_total, "webhook": self.creds.webhook}

    async def status_api(self, args: dict) -> dict:
        out = self.status()
        if self.creds is not None:
            out["items"] = [{"key": i.key, "kind": i.kind, "title": i.title, "text": i.text[:200], "state": i.state,
                             "attempts": i.attempts, "oa_message_id": i.oa_message_id, "error": i.error}
                            for i in self.box.items()]
        return out

    async def retry_api(self, args: dict) -> dict:
        key = arg_str(args, "key", max_chars=200)
        if not self.box.requeue(key, time.time()):
            raise ApiError(409, "not_failed", "Chỉ gửi lại được tin đã thất bại", "only a failed item can be sent again")
        self._wake.set()
        return {"key": key, "state": "queued"}

    async def webhook_api(self, args: dict) -> dict:
        body = base64.b64decode(arg_str(args, "body_b64", max_chars=200_000) or "", validate=True)
        try:
            event = verify(self.creds.app_id, self.creds.oa_secret_key, body, args.get("signature"), time.time())
        except WebhookError as e:
            raise ApiError(e.status, "bad_event", e.vi, e.en) from None
        if event is not None and self.box.take_in(event.message_id, event.user_id, event.text, event.time_ms):
            self._wake.set()
        return {"ok": True}

    # ----- the loop -----------------------------------------------------------------------------
    async def run(self) -> None:
        if self.creds is None:
            await trio.sleep_forever()
        try:
            while True:
                try:
                    await self.step()
                except (MeshmeetError, ApiError) as e:
                    log.warning("zalo: %s", getattr(e, "en", e))
                with trio.move_on_after(TICK_S):
                    await self._wake.wait()
                self._wake = trio.Event()
        finally:
            self.box.close()
            self.book.close()

    async def step(self) -> None:
        now = time.time()
        await self._collect(now)
        await self._store_inbound()
        if now >= self._next_purge:
            self._purge(now)
        if self.alert is not None or now < self._offline_until:
            return
        try:
            for item in self.box.due(now):
                await self._process(item)
            if not self.creds.webhook and time.time() >= self._next_poll:
                await self._poll()
                self._next_poll = time.time() + self.creds.poll_s
            self.online = True
        except Offline as e:
            self.online = False
            self._offline_until = time.time() + 2.0
            log.info("zalo: OA unreachable (%s); will try again", e)
        await self._store_inbound()

    def _purge(self, now: float) -> None:
        self._next_purge = now + 3600.0
        cutoff = now - self.retention_days * DAY_S
        n = self.box.forget_users_before(int(cutoff * 1000))
        if n:
            log.info("zalo: forgot %d Zalo user ids past the retention", n)

    async def _call(self, make) -> api.Outcome:
        """One API call with the current token; an invalid token is refreshed and the call made again."""
        for _ in range(2):
            token = await self._token()
            if token is None:
                raise Offline("no access token", maybe_sent=False)
            status, body = await trio.to_thread.run_sync(_http, make(token), abandon_on_cancel=True)
            outcome = api.judge(status, body)
            if not isinstance(outcome, api.TokenInvalid):
                return outcome
            self.box.set_tokens({"access_token": "", "expires_at": "0"})
        return api.Failed(-216, "access token refused after a refresh")

    async def _token(self) -> str | None:
        access = self.box.token("access_token") or ""
        if access and float(self.box.token("expires_at") or 0) - REFRESH_EARLY_S > time.time():
            return access
        c = self.creds
        req = api.refresh_request(c.oauth_base, c.app_id, c.app_secret, self.box.token("refresh_token") or c.refresh_token)
        try:
            status, body = await trio.to_thread.run_sync(_http, req, abandon_on_cancel=True)
        except Offline as e:
            raise Offline(e.args[0], maybe_sent=False) from None
        got = api.judge_refresh(status, body, time.time())
        if isinstance(got, api.Tokens):
            self.box.set_tokens({"access_token": got.access_token, "refresh_token": got.refresh_token,
                                 "expires_at": str(got.expires_at)})
            log.info("zalo: access token refreshed")
            return got.access_token
        if isinstance(got, api.RefreshRejected):
            self.alert = ALERT_REFRESH
            log.error("zalo: refresh token refused (%s %s)", got.code, got.message)
            return None
        raise Offline(got.reason, maybe_sent=False)

    async def _process(self, item: Item) -> None:
        c, now = self.creds, time.time()
        if item.kind == "broadcast":
            await self._expand(item)
            return
        if item.state == "unsure" and await self._already_sent(item):
            return
        self.box.sending(item.key, now)
        if item.kind == "cs":
            def make(t: str) -> api.Request:
                return api.cs_request(c.api_base, t, item.user_id or "", with_mark(item.text, item.key))
        else:
            def make(t: str) -> api.Request:
                return api.promotion_request(c.api_base, t, item.user_id or "", item.title, with_mark(item.text, item.key))
        try:
            outcome = await self._call(make)
        except Offline as e:
            self.box.retry(item.key, f"offline: {e}", 0.0, time.time(), unsure=e.maybe_sent, retry_max_s=c.retry_max_s)
            raise
        now = time.time()
        if isinstance(outcome, api.Ok):
            self.box.sent(item.key, api.message_id_of(outcome.data), now)
            self.sent_total += 1
        elif isinstance(outcome, api.Retry):
            # A 5xx or a malformed answer may come after the OA took the message: look before resending.
            self.box.retry(item.key, outcome.reason, outcome.after_s, now, unsure=outcome.code is None,
                           retry_max_s=c.retry_max_s)
        else:
            self.box.failed(item.key, f"{outcome.code}: {outcome.message}", now)

    async def _already_sent(self, item: Item) -> bool:
        """Is the message of an unsure item in the resident's conversation? Then record it as sent."""
        c = self.creds
        outcome = await self._call(lambda t: api.conversation_request(c.api_base, t, item.user_id or ""))
        if not isinstance(outcome, api.Ok):
            raise Offline(f"conversation lookup: {getattr(outcome, 'reason', outcome)}", maybe_sent=False)
        mark = mark_of(item.key)
        for m in api.chat_messages(outcome.data):
            if not m.from_user and mark in m.text:
                self.box.sent(item.key, m.message_id, time.time())
                self.sent_total += 1
                return True
        self.box.retry(item.key, "not found in the conversation: sending again", 0.0, time.time(), unsure=False,
                       retry_max_s=c.retry_max_s)
        return False

    async def _expand(self, item: Item) -> None:
        """A broadcast becomes one promotion per follower (each with its own key), then is done."""
        c, offset, users = self.creds, 0, []
        while True:
            outcome = await self._call(lambda t: api.followers_request(c.api_base, t, offset))
            if isinstance(outcome, api.Failed):
                self.box.failed(item.key, f"{outcome.code}: {outcome.message}", time.time())
                return
            if not isinstance(outcome, api.Ok):
                self.box.retry(item.key, outcome.reason, outcome.after_s, time.time(), unsure=False,
                               retry_max_s=c.retry_max_s)
                return
            page, total = api.follower_ids(outcome.data)
            users += page
            offset += api.PAGE_COUNT
            if not page or offset >= total:
                break
        now = time.time()
        for uid in dict.fromkeys(users):
            self.box.enqueue(f"{item.key}:{uid}", "promotion", uid, item.title, item.text, now)
        self.box.sent(item.key, None, now)

    async def _poll(self) -> None:
        """Residents' messages by polling: the recent conversations, then each new one in full."""
        c = self.creds
        outcome = await self._call(lambda t: api.recent_chats_request(c.api_base, t))
        if not isinstance(outcome, api.Ok):
            return
        users = {m.user_id for m in api.chat_messages(outcome.data) if m.from_user}
        for uid in sorted(users):
            got = await self._call(lambda t: api.conversation_request(c.api_base, t, uid))
            if isinstance(got, api.Ok):
                for m in api.chat_messages(got.data):
                    if m.from_user and self.box.take_in(m.message_id, m.user_id, m.text, m.time_ms):
                        self.inbound_total += 1

    # ----- the store side -----------------------------------------------------------------------
    def _sync(self) -> "SyncService":
        return self._svc

    async def _collect(self, now: float) -> None:
        svc = self._sync()
        if svc is None:
            return
        async with svc.lock:
            anns = ops.zalo_announcements(svc.store)
            replies = ops.replies_to_zalo(svc.store, self.node.key.node_id)
        for a in anns:
            self.box.enqueue(f"ann:{a['id']}", "broadcast", None, "Thông báo của xã", a["text"], now)
        for r in replies:
            key = f"reply:{r['id']}"
            if self.box.has(key):
                continue
            contact = self.book.get(r["feedback_id"])
            if contact is None or contact.zalo_user_id is None:
                continue  # taken in at another node: that node's bridge answers it
            self.box.enqueue(key, "cs", contact.zalo_user_id, "", r["text"], now)
            last = self.box.db.execute("SELECT max(time_ms) FROM inbox WHERE user_id = ?",
                                       (contact.zalo_user_id,)).fetchone()[0]
            if last is not None and now - last / 1000.0 > CS_WINDOW_S:
                self.box.failed(key, "ngoài 7 ngày kể từ tin cuối của người dân / outside the 7-day window", now)

    async def _store_inbound(self) -> None:
        pending = self.box.unstored()
        svc = self._sync()
        if not pending or svc is None:
            return
        hq = {m.node_id: m.public_key for m in self.node.roster.members() if m.role == "hq"}
        async with svc.lock:
            for mid, uid, text, _t in pending:
                contact = Contact(zalo_user_id=uid)
                row_random = hashlib.sha256(b"zalo:" + mid.encode()).hexdigest()[:16]
                clean = " ".join(text.split())[:4000] or "(tin nhắn trống)"
                fid, _code = ops.submit(svc.store, clean, "zalo", seal(contact, hq), row_random=row_random)
                self.book.put(fid, contact, time.time())
                self.box.stored(mid, fid)
            svc.local_changed(trio.current_time(), tables={"feedback"})


__all__ = ["ZaloService", "mark_of", "with_mark"]
