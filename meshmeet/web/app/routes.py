"""The hall web app's aiohttp side: pages, chair login/sessions, tablet pairing, document upload and download,
CA download, minutes, the API guard (the node's local API token for the CLI, else the chair session
for chair calls, a paired device for the hall's own calls once a device PIN is set; loopback alone
grants nothing) and the HTTPS listener, mounted on the gateway app
by `make_setup`.

Pages are static HTML+JS (static/) that talk to the node's JSON API and /ws/state. Node state is
reached only through the gateway's `api_call` (including the web app service's `webapp_info`); this module
must never import trio, never read the store, and never render user text as HTML.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import mimetypes
import os
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import segno
from aiohttp import web

from ... import api_token
from .. import tls
from ...api.contract import ApiError
from ..gateway import GatewayContext
from . import auth, devices, policy
from .https import HttpsListener
from .minutes import minutes_record, record_hash

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
COOKIE = "mm_chair"
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_LOGIN_BYTES = 1024
UPLOAD_DIR = "uploads"
DOC_NAME_MAX_CHARS = 200
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; "
       "frame-src 'self'; media-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'")
PAGE_HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin"}
# Documents shown inline as they are; anything else (HTML, SVG, scripts ...) is sandboxed.
INLINE_SAFE_TYPES = ("application/pdf", "text/plain", "image/png", "image/jpeg", "image/gif", "image/webp",
                     "audio/", "video/")
DOC_CSP_SANDBOX = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
PAGES = {"/": "index.html", "/tv": "tv.html", "/hall": "tv.html", "/tablet": "tablet.html", "/chair": "chair.html", "/ca": "ca.html"}


@dataclass(frozen=True)
class WebappOptions:
    """What the node tells the web app when it builds it."""

    data_dir: Path
    https_host: str | None  # None: no HTTPS listener
    https_port: int
    local_token: str | None = None  # DIR/run/api-token: the CLI's authority; None: nobody has it
    allowed_hosts: tuple[str, ...] = ()  # the node's own names, for the gateway's Host check


@dataclass
class WebappShared:
    """Written on the web thread, read by the node's WebappService (plain attributes only)."""

    https: HttpsListener | None = None
    loop: asyncio.AbstractEventLoop | None = None
    uploads: int = 0
    logins_refused: int = 0


@dataclass
class _Access:
    sessions: auth.Sessions = field(default_factory=auth.Sessions)
    limit: auth.RateLimit = field(default_factory=auth.RateLimit)
    pin_seen: str | None = None


def _err(status: int, code: str, vi: str, en: str) -> ApiError:
    return ApiError(status, code, vi, en)


def _doc_headers(doc: dict) -> dict[str, str]:
    """Content-Type from the name, inline with the name (RFC 6266/5987), ETag from the content hash."""
    name = str(doc.get("name") or "document")
    ctype = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    headers = {"Content-Type": ctype, "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-cache",
               "Content-Disposition": f'inline; filename="{ascii_name}"; filename*=UTF-8\'\'{urllib.parse.quote(name)}',
               "ETag": f'"{doc["sha256"]}"', "Referrer-Policy": "same-origin"}
    if not ctype.startswith(INLINE_SAFE_TYPES):
        headers["Content-Security-Policy"] = DOC_CSP_SANDBOX
    return headers


def make_setup(opts: WebappOptions, shared: WebappShared) -> Callable[[web.Application, GatewayContext], None]:
    """The gateway hook (node.web_setups) that mounts the web app."""

    def setup(app: web.Application, ctx: GatewayContext) -> None:
        _WebApp(ctx, opts, shared).mount(app)

    return setup


class _WebApp:
    """The web app's request handlers, one named method each; `mount` routes them."""

    def __init__(self, ctx: GatewayContext, opts: WebappOptions, shared: WebappShared) -> None:
        self.ctx, self.opts, self.shared = ctx, opts, shared
        self.access = _Access()
        self.devices = devices.DeviceBook(opts.data_dir)
        self.clock = time.monotonic

    def is_chair(self, request: web.Request) -> bool:
        try:
            current = auth.read_pin_hash(self.opts.data_dir)
        except auth.PinError:
            current = None
        if current != self.access.pin_seen:  # PIN changed or removed: everyone logs in again
            self.access.sessions.end_all()
            self.access.pin_seen = current
        return current is not None and self.access.sessions.valid(request.cookies.get(COOKIE), self.clock())

    def local_tool(self, request: web.Request) -> bool:
        """The request carries the node's local API token (the meshmeet CLI); a wrong one is 401."""
        given = request.headers.get(api_token.TOKEN_HEADER)
        if given is None:
            return False
        if not api_token.token_matches(self.opts.local_token, given):
            raise _err(401, "bad_token", "Mã khoá cục bộ của nút không đúng (nút đã khởi động lại? hãy chạy lại lệnh)",
                       "wrong local API token (did the node restart? run the command again)")
        return True

    @web.middleware
    async def guard(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path.startswith("/api/") and not self.local_tool(request):
            name = request.path[len("/api/"):]
            if name in policy.LOCAL_ONLY_APIS:
                raise _err(403, "local_only",
                           f"Chỉ lệnh meshmeet trên máy của nút (người dùng chạy nút) mới gọi được “{name}”; "
                           "từ trình duyệt hãy dùng trang chủ toạ",
                           f"only the meshmeet command on the node's computer (as the node's user) may call “{name}”; "
                           "from a browser use the chair console")
            if policy.needs_chair(name, request.method, request.query) and not self.is_chair(request):
                raise _err(401, "chair_login", "Cần đăng nhập chủ toạ (mã PIN) cho thao tác này",
                           "this action needs the chair login (PIN)")
            if name in policy.DEVICE_APIS and not self.is_paired(request):
                raise _err(401, "device_pairing", "Máy này chưa được ghép với điểm họp: nhập mã PIN thiết bị trên "
                           "trang máy tính bảng", "this device is not paired with the site: enter the device PIN on "
                           "the tablet page")
        elif request.path == policy.PRESENT_SOCKET and not self.is_paired(request):
            raise _err(401, "device_pairing", "Máy này chưa được ghép với điểm họp: không phát biểu, trình bày được từ "
                       "đây (ghép ở trang máy tính bảng, hoặc đăng nhập chủ toạ)", "this device is not paired with the "
                       "site: it may not speak or present from here (pair on the tablet page, or log in as the chair)")
        return await handler(request)

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / PAGES[request.path], headers=PAGE_HEADERS)

    async def minutes_page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "minutes.html", headers=PAGE_HEADERS)

    async def session(self, request: web.Request) -> web.Response:
        info = await self.ctx.api_call("webapp_info", {})
        try:
            pin_set = auth.read_pin_hash(self.opts.data_dir) is not None
        except auth.PinError:
            pin_set = False
        try:
            device = {"required": self.devices.required(), "paired": self.is_paired(request)}
        except (auth.PinError, ApiError):
            device = {"required": True, "paired": False}
        return web.json_response({**info, "chair": self.is_chair(request), "pin_set": pin_set, "device": device})

    async def login(self, request: web.Request) -> web.Response:
        info = await self.ctx.api_call("webapp_info", {})
        if not info.get("can_chair"):
            raise _err(403, "not_hq", "Bàn chủ toạ chỉ mở ở trụ sở xã (hoặc điểm dự phòng)",
                       "the chair console only works at the commune HQ (or a backup site)")
        try:
            stored = auth.read_pin_hash(self.opts.data_dir)
        except auth.PinError as e:
            raise _err(500, "pin_file", e.vi, e.en) from None
        if stored is None:
            raise _err(409, "no_pin", f"Chưa đặt mã PIN chủ toạ. Trên máy trụ sở chạy: meshmeet chair-pin --data-dir {self.opts.data_dir}",
                       f"no chair PIN is set. On the HQ computer run: meshmeet chair-pin --data-dir {self.opts.data_dir}")
        client = await self._check_pin(request, lambda pin: auth.verify_pin(pin, stored))
        self.access.limit.succeeded(client)
        self.access.pin_seen = stored
        token = self.access.sessions.create(self.clock())
        resp = web.json_response({"ok": True, "expires_s": self.access.sessions.lifetime_s})
        resp.set_cookie(COOKIE, token, max_age=int(self.access.sessions.lifetime_s), httponly=True,
                        samesite="Strict", secure=request.secure, path="/")
        return resp

    async def _check_pin(self, request: web.Request, check: Callable[[str], bool]) -> str:
        """Read {"pin"} from the body and check it (scrypt, off the loop) within the per-client
        wrong-PIN limit; the client's address when right, else the error to answer."""
        if request.content_length is not None and request.content_length > MAX_LOGIN_BYTES:
            raise _err(413, "body_too_large", "Nội dung gửi lên quá lớn", "request body too large")
        raw = await request.content.read(MAX_LOGIN_BYTES + 1)
        try:
            pin = json.loads(raw or b"{}").get("pin")
        except (ValueError, AttributeError):
            pin = None
        if not isinstance(pin, str) or len(raw) > MAX_LOGIN_BYTES:
            raise _err(400, "bad_pin", "Hãy nhập mã PIN (chỉ gồm chữ số)", "enter the PIN (digits only)")
        client = request.remote or "?"  # per client only: others' failures never lock this one out
        wait = self.access.limit.wait_s(client, self.clock())
        if wait > 0:
            self.shared.logins_refused += 1
            raise _err(429, "too_many_tries", f"Nhập sai quá nhiều lần; thử lại sau {int(wait) + 1} giây",
                       f"too many wrong PINs; try again in {int(wait) + 1} s")
        self.access.limit.failed(client, self.clock())  # counted before checking: parallel guesses queue behind it
        ok = await asyncio.get_running_loop().run_in_executor(None, check, pin)
        if not ok:
            self.shared.logins_refused += 1
            raise _err(401, "wrong_pin", "Mã PIN không đúng", "wrong PIN")
        return client

    def is_paired(self, request: web.Request) -> bool:
        """A hall device call may go: no device PIN is set, or this browser is paired, or is the chair's."""
        try:
            if not self.devices.required():
                return True
            return self.devices.paired(request.cookies.get(devices.COOKIE)) or self.is_chair(request)
        except auth.PinError as e:
            raise _err(500, "pin_file", e.vi, e.en) from None

    async def pair(self, request: web.Request) -> web.Response:
        """A tablet pairs with this site by its device PIN (devices.py)."""
        try:
            required = self.devices.required()
        except auth.PinError as e:
            raise _err(500, "pin_file", e.vi, e.en) from None
        if not required:
            raise _err(409, "no_device_pin", "Điểm này chưa đặt mã PIN thiết bị: máy tính bảng không cần ghép "
                       f"(đặt mã: meshmeet device-pin --data-dir {self.opts.data_dir})",
                       "this site has no device PIN: tablets need no pairing "
                       f"(set one: meshmeet device-pin --data-dir {self.opts.data_dir})")
        client = await self._check_pin(request, self.devices.check_pin)
        self.access.limit.succeeded(client)
        token = await asyncio.get_running_loop().run_in_executor(None, self.devices.pair)
        resp = web.json_response({"ok": True, "paired": True})
        resp.set_cookie(devices.COOKIE, token, max_age=devices.COOKIE_MAX_AGE_S, httponly=True, samesite="Strict",
                        secure=request.secure, path="/")
        return resp

    async def logout(self, request: web.Request) -> web.Response:
        self.access.sessions.end(request.cookies.get(COOKIE))
        resp = web.json_response({"ok": True})
        resp.del_cookie(COOKIE, path="/")
        return resp

    async def upload(self, request: web.Request) -> web.Response:
        if not self.is_chair(request):
            raise _err(401, "chair_login", "Cần đăng nhập chủ toạ để tải tài liệu lên", "uploading documents needs the chair login")
        meeting_id = request.query.get("meeting_id", "")
        if not ID_RE.match(meeting_id):
            raise _err(400, "bad_meeting", "Thiếu hoặc sai mã cuộc họp", "missing or invalid meeting id")
        name = os.path.basename(request.query.get("name", "").replace("\\", "/")).strip()
        if not name or len(name) > DOC_NAME_MAX_CHARS or any(ord(c) < 32 for c in name):
            raise _err(400, "bad_name", f"Tên tài liệu phải có 1–{DOC_NAME_MAX_CHARS} ký tự",
                       f"document name must be 1–{DOC_NAME_MAX_CHARS} characters")
        if request.content_length is not None and request.content_length > MAX_UPLOAD_BYTES:
            raise _err(413, "file_too_large", "Tài liệu quá lớn (tối đa 200 MB)", "document too large (at most 200 MB)")
        folder = self.opts.data_dir / UPLOAD_DIR
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / f"{os.urandom(8).hex()}.part"
        try:
            total = 0
            with open(path, "wb") as f:
                async for chunk in request.content.iter_chunked(256 * 1024):
                    total += len(chunk)
                    if total > MAX_UPLOAD_BYTES:
                        raise _err(413, "file_too_large", "Tài liệu quá lớn (tối đa 200 MB)", "document too large (at most 200 MB)")
                    f.write(chunk)
            if total == 0:
                raise _err(400, "empty_file", "Tài liệu rỗng", "the document is empty")
            result = await self.ctx.api_call("doc_add", {"meeting_id": meeting_id, "upload": path.name, "name": name})
        finally:
            path.unlink(missing_ok=True)
        self.shared.uploads += 1
        return web.json_response(result)

    async def ca_cert(self, request: web.Request) -> web.Response:
        der = tls.ca_der(self.opts.data_dir)
        if der is None:
            raise _err(404, "no_ca", "Nút này chưa có chứng chỉ CA của xã", "this node has no commune CA certificate yet")
        return web.Response(body=der, content_type="application/x-x509-ca-cert",
                            headers={"Content-Disposition": 'attachment; filename="meshmeet-ca.crt"'})

    async def ca_qr(self, request: web.Request) -> web.Response:
        info = await self.ctx.api_call("webapp_info", {})
        target = (info.get("tablet_url") or "") + "/ca"
        out = io.BytesIO()
        segno.make(target, error="m").save(out, kind="svg", scale=6, border=2, dark="#000", light="#fff", xmldecl=False)
        return web.Response(body=out.getvalue(), content_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    async def minutes_json(self, request: web.Request) -> web.Response:
        meeting_id = request.match_info["id"]
        if not ID_RE.match(meeting_id):
            raise _err(400, "bad_meeting", "Sai mã cuộc họp", "invalid meeting id")
        meeting = await self.ctx.api_call("meeting", {"id": meeting_id})
        announcements = (await self.ctx.api_call("announcements", {})).get("announcements") or []
        info = await self.ctx.api_call("webapp_info", {})
        record = minutes_record(meeting, announcements, info.get("sites") or {})
        return web.json_response({"record": record, "sha256": record_hash(record), "site": info.get("site")},
                                 dumps=lambda o: json.dumps(o, ensure_ascii=False))

    async def document(self, request: web.Request) -> web.StreamResponse:
        doc_id = request.match_info["id"]
        if not ID_RE.match(doc_id):
            raise _err(400, "bad_document", "Sai mã tài liệu", "invalid document id")
        doc = (await self.ctx.api_call("doc", {"id": doc_id}))["document"]
        if not doc["complete"]:
            held, total = doc["chunks_held"], doc["chunks_total"]
            raise _err(409, "doc_incomplete",
                       f"Tài liệu chưa tải xong về điểm này ({held}/{total} phần); hãy thử lại sau",
                       f"the document has not fully arrived here yet ({held}/{total} chunks); try again later")
        resp = web.StreamResponse(headers=_doc_headers(doc))
        resp.content_length = doc["size"]
        if request.headers.get("If-None-Match") == resp.headers["ETag"]:
            return web.Response(status=304, headers={"ETag": resp.headers["ETag"]})
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        for index in range(doc["chunks_total"]):
            try:
                piece = await self.ctx.api_call("doc_chunk", {"id": doc_id, "index": index})
            except ApiError as e:  # headers are gone: all we can do is cut the download short
                log.warning("document %s: chunk %d unavailable mid-download (%s)", doc_id, index, e.en)
                if request.transport is not None:
                    request.transport.close()
                return resp
            await resp.write(base64.b64decode(piece["data"]))
        await resp.write_eof()
        return resp

    def mount(self, app: web.Application) -> None:
        """Routes, the access guard, and the HTTPS listener when one is configured."""
        self.ctx.allowed_hosts.update(self.opts.allowed_hosts)
        app.middlewares.append(self.guard)
        for path in PAGES:
            app.router.add_get(path, self.page)
        app.router.add_get("/app/doc/{id}", self.document)
        app.router.add_get("/minutes/{id}", self.minutes_page)
        app.router.add_get("/app/session", self.session)
        app.router.add_post("/app/login", self.login)
        app.router.add_post("/app/logout", self.logout)
        app.router.add_post("/app/pair", self.pair)
        app.router.add_post("/app/upload", self.upload)
        app.router.add_get("/app/ca.crt", self.ca_cert)
        app.router.add_get("/app/ca-qr.svg", self.ca_qr)
        app.router.add_get("/app/minutes/{id}.json", self.minutes_json)
        app.router.add_static("/app/static/", STATIC_DIR)

        if self.opts.https_host is not None:
            listener = HttpsListener(self.opts.data_dir, self.opts.https_host, self.opts.https_port)
            self.shared.https = listener
            app.on_startup.append(self._note_loop)
            self.ctx.on_serving.append(listener.attach)

    async def _note_loop(self, _app: web.Application) -> None:
        """The gateway's loop, for the node's WebappService to reach the HTTPS listener."""
        self.shared.loop = asyncio.get_running_loop()
