"""The hall web app's aiohttp side: pages, chair login/sessions, document upload and download,
CA download, minutes, the API guard (the node's local API token for the CLI, else the chair session
for chair calls; loopback alone grants nothing) and the HTTPS listener, mounted on the gateway app
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
from . import auth, policy
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
        _mount(app, ctx, opts, shared)

    return setup


def _mount(app: web.Application, ctx: GatewayContext, opts: WebappOptions, shared: WebappShared) -> None:
    access = _Access()
    clock = time.monotonic
    ctx.allowed_hosts.update(opts.allowed_hosts)

    def is_chair(request: web.Request) -> bool:
        try:
            current = auth.read_pin_hash(opts.data_dir)
        except auth.PinError:
            current = None
        if current != access.pin_seen:  # PIN changed or removed: everyone logs in again
            access.sessions.end_all()
            access.pin_seen = current
        return current is not None and access.sessions.valid(request.cookies.get(COOKIE), clock())

    def local_tool(request: web.Request) -> bool:
        """The request carries the node's local API token (the meshmeet CLI); a wrong one is 401."""
        given = request.headers.get(api_token.TOKEN_HEADER)
        if given is None:
            return False
        if not api_token.token_matches(opts.local_token, given):
            raise _err(401, "bad_token", "Mã khoá cục bộ của nút không đúng (nút đã khởi động lại? hãy chạy lại lệnh)",
                       "wrong local API token (did the node restart? run the command again)")
        return True

    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path.startswith("/api/") and not local_tool(request):
            name = request.path[len("/api/"):]
            if name in policy.LOCAL_ONLY_APIS:
                raise _err(403, "local_only",
                           f"Chỉ lệnh meshmeet trên máy của nút (người dùng chạy nút) mới gọi được “{name}”; "
                           "từ trình duyệt hãy dùng trang chủ toạ",
                           f"only the meshmeet command on the node's computer (as the node's user) may call “{name}”; "
                           "from a browser use the chair console")
            if policy.needs_chair(name, request.method, request.query) and not is_chair(request):
                raise _err(401, "chair_login", "Cần đăng nhập chủ toạ (mã PIN) cho thao tác này",
                           "this action needs the chair login (PIN)")
        return await handler(request)

    app.middlewares.append(guard)

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / PAGES[request.path], headers=PAGE_HEADERS)

    async def minutes_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "minutes.html", headers=PAGE_HEADERS)

    async def session(request: web.Request) -> web.Response:
        info = await ctx.api_call("webapp_info", {})
        try:
            pin_set = auth.read_pin_hash(opts.data_dir) is not None
        except auth.PinError:
            pin_set = False
        return web.json_response({**info, "chair": is_chair(request), "pin_set": pin_set})

    async def login(request: web.Request) -> web.Response:
        info = await ctx.api_call("webapp_info", {})
        if not info.get("can_chair"):
            raise _err(403, "not_hq", "Bàn chủ toạ chỉ mở ở trụ sở xã (hoặc điểm dự phòng)",
                       "the chair console only works at the commune HQ (or a backup site)")
        try:
            stored = auth.read_pin_hash(opts.data_dir)
        except auth.PinError as e:
            raise _err(500, "pin_file", e.vi, e.en) from None
        if stored is None:
            raise _err(409, "no_pin", f"Chưa đặt mã PIN chủ toạ. Trên máy trụ sở chạy: meshmeet chair-pin --data-dir {opts.data_dir}",
                       f"no chair PIN is set. On the HQ computer run: meshmeet chair-pin --data-dir {opts.data_dir}")
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
        wait = access.limit.wait_s(client, clock())
        if wait > 0:
            shared.logins_refused += 1
            raise _err(429, "too_many_tries", f"Nhập sai quá nhiều lần; thử lại sau {int(wait) + 1} giây",
                       f"too many wrong PINs; try again in {int(wait) + 1} s")
        access.limit.failed(client, clock())  # counted before checking: parallel guesses queue behind it
        ok = await asyncio.get_running_loop().run_in_executor(None, auth.verify_pin, pin, stored)
        if not ok:
            shared.logins_refused += 1
            raise _err(401, "wrong_pin", "Mã PIN không đúng", "wrong PIN")
        access.limit.succeeded(client)
        access.pin_seen = stored
        token = access.sessions.create(clock())
        resp = web.json_response({"ok": True, "expires_s": access.sessions.lifetime_s})
        resp.set_cookie(COOKIE, token, max_age=int(access.sessions.lifetime_s), httponly=True,
                        samesite="Strict", secure=request.secure, path="/")
        return resp

    async def logout(request: web.Request) -> web.Response:
        access.sessions.end(request.cookies.get(COOKIE))
        resp = web.json_response({"ok": True})
        resp.del_cookie(COOKIE, path="/")
        return resp

    async def upload(request: web.Request) -> web.Response:
        if not is_chair(request):
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
        folder = opts.data_dir / UPLOAD_DIR
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
            result = await ctx.api_call("doc_add", {"meeting_id": meeting_id, "upload": path.name, "name": name})
        finally:
            path.unlink(missing_ok=True)
        shared.uploads += 1
        return web.json_response(result)

    async def ca_cert(request: web.Request) -> web.Response:
        der = tls.ca_der(opts.data_dir)
        if der is None:
            raise _err(404, "no_ca", "Nút này chưa có chứng chỉ CA của xã", "this node has no commune CA certificate yet")
        return web.Response(body=der, content_type="application/x-x509-ca-cert",
                            headers={"Content-Disposition": 'attachment; filename="meshmeet-ca.crt"'})

    async def ca_qr(request: web.Request) -> web.Response:
        info = await ctx.api_call("webapp_info", {})
        target = (info.get("tablet_url") or "") + "/ca"
        out = io.BytesIO()
        segno.make(target, error="m").save(out, kind="svg", scale=6, border=2, dark="#000", light="#fff", xmldecl=False)
        return web.Response(body=out.getvalue(), content_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    async def minutes_json(request: web.Request) -> web.Response:
        meeting_id = request.match_info["id"]
        if not ID_RE.match(meeting_id):
            raise _err(400, "bad_meeting", "Sai mã cuộc họp", "invalid meeting id")
        meeting = await ctx.api_call("meeting", {"id": meeting_id})
        announcements = (await ctx.api_call("announcements", {})).get("announcements") or []
        info = await ctx.api_call("webapp_info", {})
        record = minutes_record(meeting, announcements, info.get("sites") or {})
        return web.json_response({"record": record, "sha256": record_hash(record), "site": info.get("site")},
                                 dumps=lambda o: json.dumps(o, ensure_ascii=False))

    async def document(request: web.Request) -> web.StreamResponse:
        doc_id = request.match_info["id"]
        if not ID_RE.match(doc_id):
            raise _err(400, "bad_document", "Sai mã tài liệu", "invalid document id")
        doc = (await ctx.api_call("doc", {"id": doc_id}))["document"]
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
                piece = await ctx.api_call("doc_chunk", {"id": doc_id, "index": index})
            except ApiError as e:  # headers are gone: all we can do is cut the download short
                log.warning("document %s: chunk %d unavailable mid-download (%s)", doc_id, index, e.en)
                if request.transport is not None:
                    request.transport.close()
                return resp
            await resp.write(base64.b64decode(piece["data"]))
        await resp.write_eof()
        return resp

    for path in PAGES:
        app.router.add_get(path, page)
    app.router.add_get("/app/doc/{id}", document)
    app.router.add_get("/minutes/{id}", minutes_page)
    app.router.add_get("/app/session", session)
    app.router.add_post("/app/login", login)
    app.router.add_post("/app/logout", logout)
    app.router.add_post("/app/upload", upload)
    app.router.add_get("/app/ca.crt", ca_cert)
    app.router.add_get("/app/ca-qr.svg", ca_qr)
    app.router.add_get("/app/minutes/{id}.json", minutes_json)
    app.router.add_static("/app/static/", STATIC_DIR)

    if opts.https_host is not None:
        listener = HttpsListener(opts.data_dir, opts.https_host, opts.https_port)
        shared.https = listener

        async def start(_app: web.Application) -> None:
            shared.loop = asyncio.get_running_loop()

        app.on_startup.append(start)
        ctx.on_serving.append(listener.attach)
