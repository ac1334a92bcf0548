"""The resident feedback page (/y-kien): the page, its three JSON routes and the QR code the hall TV
shows, on the gateway and on the residents' own listener.

The residents' listener (DIR/citizens.toml `listen`, default 0.0.0.0:8088, plain HTTP: phones do
not trust the commune CA) is a separate aiohttp app on the gateway's guarded loop that has the
/y-kien routes and nothing else: no /api, no /ws, no other page, so a phone on the hall's Wi-Fi
cannot reach any other API through it. Its requests pass the same Host and Origin checks.

A resident's phone on the hall's Wi-Fi, no login: GET /y-kien (the page; sets a random device
cookie), GET /y-kien/bang (today's announcements and agenda), POST /y-kien/gui (the form:
citizens/form.py checks it, citizens/limits.py limits it per device, per address and per hall, and
the checked form goes to the node with the others that came meanwhile: web/call_batch.py),
GET /y-kien/tra-loi?ma=CODE (HQ's reply by short code, limited per address), GET /y-kien/qr.svg.
These routes call only the `citizen_*` node calls, which browsers cannot reach through /api
(web/app/policy.py LOCAL_ONLY_APIS); the page's CSP lets its script talk to nothing else. This
module must never import trio, never render user text as HTML and never return a contact.
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import segno
from aiohttp import web

from ..citizens import codes
from ..citizens.form import MAX_BODY_BYTES, FormError, parse_form
from ..citizens.limits import PageLimiter, PageLimits
from . import boundary
from ..api.contract import ApiError
from .call_batch import CallBatcher
from .gateway import GatewayContext

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "citizens_static"
DEVICE_COOKIE = "mm_dev"
DEVICE_COOKIE_S = 365 * 86_400
DEVICE_RE = re.compile(r"(?:^|;)\s*" + DEVICE_COOKIE + r"=([A-Za-z0-9_-]{22})\s*(?:;|$)")  # in the Cookie header
FORM_TYPE = "application/x-www-form-urlencoded"
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SUBMIT_CALL = "citizen_submit_page"  # FeedbackForms in batches (node/citizens_service.py)
HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True)
class PageOptions:
    limits: PageLimits = field(default_factory=PageLimits)
    clock: Callable[[], float] = time.monotonic
    listen: tuple[str, int] | None = None  # the residents' own listener; None: none


@dataclass
class ResidentSite:
    """Written on the web thread: where the residents' listener listens (None: it does not)."""

    port: int | None = None
    error: str | None = None


def _json(body: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(text=json.dumps(body, ensure_ascii=False), status=status, content_type="application/json",
                        headers={**HEADERS, **(headers or {})})


def _error(status: int, code: str, vi: str, en: str, field_name: str = "", headers: dict | None = None) -> web.Response:
    return _json({"error": {"code": code, "vi": vi, "en": en, "field": field_name}}, status, headers)


def _too_many(wait_s: float) -> web.Response:
    s = int(wait_s) + 1
    return _error(429, "rate_limited", f"Bạn gửi quá nhanh; hãy thử lại sau {s} giây",
                  f"too many requests; try again in {s} s", headers={"Retry-After": str(s)})


def make_page_setup(opts: PageOptions, site: ResidentSite) -> Callable[[web.Application, GatewayContext], None]:
    def setup(app: web.Application, ctx: GatewayContext) -> None:
        limiter = PageLimiter(opts.limits)  # one set of buckets for both listeners
        submissions = CallBatcher(ctx.api_call, SUBMIT_CALL)  # and one batch of submissions
        _mount(app.router, ctx, opts, limiter, submissions, site)
        if opts.listen is None:
            return
        residents = web.Application(middlewares=[_boundary(ctx)], client_max_size=MAX_BODY_BYTES * 2)
        _mount(residents.router, ctx, opts, limiter, submissions, site)
        runner = web.AppRunner(residents, access_log=None, handler_cancellation=True)

        async def start(_gateway: web.AppRunner) -> None:
            await runner.setup()
            host, port = opts.listen
            try:
                await web.TCPSite(runner, host, port, reuse_address=True).start()
            except OSError as e:
                site.error = f"cannot listen on {host}:{port}: {e.strerror or e}"
                log.warning("residents' page: %s", site.error)
                return
            site.port = runner.addresses[0][1]
            log.info("residents' page on http://%s:%d/y-kien", host, site.port)

        async def stop(_app: web.Application) -> None:
            await runner.cleanup()

        ctx.on_serving.append(start)
        app.on_cleanup.append(stop)

    return setup


def _boundary(ctx: GatewayContext) -> Callable:
    """The gateway's Host and Origin checks (web/boundary.py), for the residents' listener."""

    @web.middleware
    async def check(request: web.Request, handler: Callable) -> web.StreamResponse:
        if not boundary.host_allowed(request.headers.get("Host"), ctx.allowed_hosts):
            return _error(421, "wrong_host", "Địa chỉ không đúng", "misdirected request")
        if request.method not in ("GET", "HEAD") and not boundary.origin_allowed(
                request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"), request.headers.get("Host"),
                request.scheme):
            return _error(403, "cross_origin", "Yêu cầu từ trang khác bị từ chối", "cross-origin request refused")
        return await handler(request)

    return check


def _mount(router: web.UrlDispatcher, ctx: GatewayContext, opts: PageOptions, limiter: PageLimiter,
           submissions: CallBatcher, site: ResidentSite) -> None:

    def device_of(request: web.Request) -> str:
        """The device cookie (22 URL-safe characters, as `page` sets it), else ""."""
        found = DEVICE_RE.search(request.headers.get("Cookie", ""))
        return found.group(1) if found else ""

    async def page(request: web.Request) -> web.StreamResponse:
        resp = web.FileResponse(STATIC / "y-kien.html", headers=HEADERS)
        if not device_of(request):
            resp.set_cookie(DEVICE_COOKIE, secrets.token_urlsafe(16), max_age=DEVICE_COOKIE_S, httponly=True,
                            samesite="Strict", secure=request.secure, path="/y-kien")
        return resp

    async def call(name: str, args: dict) -> web.Response:
        try:
            return _json(await ctx.api_call(name, args))
        except ApiError as e:
            return _error(e.status, e.code, e.vi, e.en)

    async def submit(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _error(413, "too_large", f"Nội dung gửi lên quá lớn (tối đa {MAX_BODY_BYTES // 1024} KB)",
                          f"request body too large (at most {MAX_BODY_BYTES // 1024} KB)")
        if request.content_type != FORM_TYPE:
            return _error(415, "bad_type", "Hãy gửi bằng biểu mẫu của trang", "send it with the page's form")
        body = await request.content.read(MAX_BODY_BYTES + 1)
        try:
            form = parse_form(body)
        except FormError as e:
            return _error(e.status, e.code, e.vi, e.en, e.field)
        device = device_of(request)
        if not device:
            return _error(400, "no_cookie", "Hãy mở lại trang /y-kien rồi gửi", "open /y-kien again, then send")
        wait = limiter.submit(device, request.remote or "?", opts.clock())
        if wait > 0:
            return _too_many(wait)
        try:  # the checked form itself goes to the node, with the others sent meanwhile
            return _json(await submissions.call(form))
        except ApiError as e:
            return _error(e.status, e.code, e.vi, e.en)

    async def reply(request: web.Request) -> web.Response:
        code = codes.read_code(request.query.get("ma", "")[:32])
        if code is None:
            return _error(400, "bad_code", "Mã tra cứu gồm 8 ký tự, ví dụ 7KQ2-M9XD",
                          "a short code has 8 characters, e.g. 7KQ2-M9XD", "ma")
        wait = limiter.look_up(request.remote or "?", opts.clock())
        if wait > 0:
            return _too_many(wait)
        return await call("citizen_lookup", {"code": code})

    async def board(request: web.Request) -> web.Response:
        return await call("citizen_board", {})

    async def qr(request: web.Request) -> web.Response:
        out = io.BytesIO()
        segno.make(await _page_url(request, ctx, site), error="m").save(
            out, kind="svg", scale=6, border=2, dark="#000", light="#fff", xmldecl=False)
        return web.Response(body=out.getvalue(), content_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    async def url(request: web.Request) -> web.Response:
        return _json({"url": await _page_url(request, ctx, site)})

    router.add_get("/y-kien", page)
    router.add_post("/y-kien/gui", submit)
    router.add_get("/y-kien/tra-loi", reply)
    router.add_get("/y-kien/bang", board)
    router.add_get("/y-kien/qr.svg", qr)
    router.add_get("/y-kien/url", url)
    router.add_static("/y-kien/static/", STATIC)


async def _page_url(request: web.Request, ctx: GatewayContext, site: ResidentSite) -> str:
    """The address a phone on the hall's Wi-Fi opens: the residents' listener when it runs (plain
    HTTP), else this very origin; a loopback host (the TV on the node itself) becomes the node's
    LAN address."""
    host = request.url.host or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        try:
            info = await ctx.api_call("webapp_info", {})
        except ApiError:
            info = {}
        lan = urllib.parse.urlsplit(info.get("tablet_url") or "").hostname
        if lan:
            host = lan
    port, scheme = request.url.port, request.scheme
    if site.port is not None:
        port, scheme = site.port, "http"
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}{'' if port in (None, 80, 443) else f':{port}'}/y-kien"
