"""The aiohttp side of the web gateway: the HTTP/WebSocket app and the topic fan-out hub.

``build_app`` makes the aiohttp Application: ``GET /api/status``, a JSON dispatcher
``GET|POST /api/{name}`` that asks the node through an ``api_call`` coroutine (GET only for the
calls that just read: a state change by GET is 405), WebSocket ``/ws/{topic}`` that subscribes a
browser to a hub topic and forwards what the browser sends when that topic has a check that
accepts it (anything else closes that one socket), plus whatever routes and static directories
other parts pass in. Every request passes the boundary first (boundary.py): a Host the node does
not answer to is 421, a cross-origin WebSocket upgrade or state change is 403. The topic fan-out (``Hub``) is
hub.py's.

Everything here runs on the gateway's asyncio thread. This module must never import trio or
touch the node's state: the bridge hands it an ``api_call`` and an ``inbound`` sender, and
those are the only ways out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import WSCloseCode, WSMsgType, web

from . import boundary
from .hub import Hub, Payload
from ..api.contract import API_NAME_RE, ApiCall, ApiError, error_body, internal_error, is_read_call, method_not_allowed, unknown_api

log = logging.getLogger(__name__)

MAX_JSON_BODY_BYTES = 1024 * 1024
WS_MAX_MSG_BYTES = 1024 * 1024
WS_HEARTBEAT_S = 20.0
TOPIC_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

InboundSend = Callable[[str, Payload], Awaitable[None]]
"""Forwards one browser message ``(topic, payload)`` towards the node; waits for credit."""

InboundCheck = Callable[[Payload], bool]
"""Says whether one browser message on a topic is well-formed (types, sizes, ranges)."""


@dataclass(frozen=True)
class GatewayContext:
    """What a routes factory gets to build its handlers with."""

    api_call: ApiCall
    hub: Hub
    inbound: InboundSend | None
    # Called with the AppRunner once the gateway listens on HTTP: a setup adds more sites here
    # (the HTTPS listener), through aiohttp's public runner/site API.
    on_serving: list[Callable[[web.AppRunner], Awaitable[None]]] = field(default_factory=list)
    # Host names (besides IP literals and localhost) the gateway answers to: setups add the node's names.
    allowed_hosts: set[str] = field(default_factory=set)
    # Topics browsers may send on over /ws/{topic}, each with its message check; others are refused.
    inbound_checks: dict[str, InboundCheck] = field(default_factory=dict)


RoutesFactory = Callable[[GatewayContext], Iterable[web.AbstractRouteDef]]
"""Returns extra routes (pages, media) built with the context."""

AppSetup = Callable[[web.Application, GatewayContext], None]
"""Mounts anything on the app (routes, static dirs, on_startup/on_cleanup hooks, hub sinks)."""

HUB_KEY = web.AppKey("meshmeet_hub", Hub)
CONTEXT_KEY = web.AppKey("meshmeet_context", GatewayContext)


def json_error(status: int, code: str, vi: str, en: str) -> web.Response:
    return web.json_response(error_body(code, vi, en), status=status, dumps=_dumps)


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False)


_HTTP_REASONS_VI = {
    404: "Không tìm thấy",
    405: "Phương thức HTTP không được phép ở đây",
    413: "Nội dung gửi lên quá lớn",
}


@web.middleware
async def _errors_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """ApiError -> its JSON; unexpected exceptions -> logged 500 JSON; /api/ HTTP errors as JSON."""
    try:
        return await handler(request)
    except ApiError as e:
        return web.json_response(e.to_json(), status=e.status, dumps=_dumps)
    except web.HTTPException as e:
        if request.path.startswith("/api/") and e.status >= 400:
            vi = _HTTP_REASONS_VI.get(e.status, "Yêu cầu không thực hiện được")
            return json_error(e.status, f"http_{e.status}", vi, e.reason)
        raise
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        err = internal_error()
        return web.json_response(err.to_json(), status=err.status, dumps=_dumps)


def _boundary(context: GatewayContext) -> Callable:
    """The first check on every request: Host allow-list, then Origin for upgrades and changes."""

    @web.middleware
    async def check(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if not boundary.host_allowed(request.headers.get("Host"), context.allowed_hosts):
            log.debug("refused %s %s for Host %r", request.method, request.path, request.headers.get("Host", "")[:80])
            raise ApiError(421, "bad_host", "Nút này không phục vụ tên máy chủ đó (hãy dùng địa chỉ IP hoặc tên của nút)",
                           "this node does not answer to that host name (use its IP address or its own name)")
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if (upgrade or request.method not in SAFE_METHODS) and not boundary.origin_allowed(
                request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"), request.host, request.scheme):
            log.debug("refused cross-origin %s %s from %r", request.method, request.path, request.headers.get("Origin", "")[:80])
            raise ApiError(403, "cross_origin", "Yêu cầu từ trang web khác bị từ chối", "request from another web site refused")
        return await handler(request)

    return check


async def _read_capped(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "body_too_large",
        f"Nội dung gửi lên quá lớn (tối đa {limit} byte)",
        f"request body too large (at most {limit} bytes)",
    )


def _bad_json(detail: str) -> ApiError:
    return ApiError(400, "bad_json", f"Nội dung không phải JSON hợp lệ: {detail}", f"request body is not valid JSON: {detail}")


def parse_json_args(raw: bytes) -> dict:
    """A POST body -> API args: empty means {}, otherwise a JSON object; else ApiError 400."""
    if not raw.strip():
        return {}
    try:
        args = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _bad_json("not UTF-8") from None
    except json.JSONDecodeError as e:
        raise _bad_json(f"{e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise _bad_json("nested too deeply") from None
    if not isinstance(args, dict):
        raise ApiError(400, "bad_json", "Nội dung JSON phải là một đối tượng {…}", "the JSON body must be an object {…}")
    return args


async def _api_args(request: web.Request) -> dict:
    if request.method == "GET":
        return dict(request.query)
    return parse_json_args(await _read_capped(request, MAX_JSON_BODY_BYTES))


def _api_handler(api_call: ApiCall) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        name = request.match_info.get("name", "status")
        if not API_NAME_RE.match(name):
            raise unknown_api(name)
        if request.method == "GET" and not is_read_call(name, dict(request.query)):
            err = method_not_allowed(name)
            return web.json_response(err.to_json(), status=err.status, dumps=_dumps, headers={"Allow": "POST"})
        args = await _api_args(request)
        result = await api_call(name, args)
        if not isinstance(result, dict):
            log.error("API %s returned %s, not a dict", name, type(result).__name__)
            raise internal_error()
        return web.json_response(result, dumps=_dumps)

    return handle


def _ws_handler(context: GatewayContext) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    hub, inbound = context.hub, context.inbound

    async def handle(request: web.Request) -> web.StreamResponse:
        topic = request.match_info["topic"]
        if not TOPIC_RE.match(topic):
            return json_error(404, "unknown_topic", f"Tên kênh không hợp lệ: “{topic}”", f"invalid topic name: “{topic}”")
        ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S, max_msg_size=WS_MAX_MSG_BYTES)
        await ws.prepare(request)
        sub = hub.subscribe(topic, ws)
        pump = asyncio.get_running_loop().create_task(sub.pump())
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                check = context.inbound_checks.get(topic)
                if check is None or not _accepts(check, msg.data):
                    log.info("closing a browser socket on %s: message refused", topic)
                    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"message refused")
                    break
                if inbound is not None:
                    await inbound(topic, msg.data)
        except ConnectionError:
            log.debug("inbound closed while a browser on %s was sending", topic)
        finally:
            hub.unsubscribe(sub)
            pump.cancel()
            if not ws.closed:
                await ws.close()
            await asyncio.gather(pump, return_exceptions=True)
        return ws

    return handle


def _accepts(check: InboundCheck, data: Payload) -> bool:
    try:
        return check(data) is True
    except Exception:  # noqa: BLE001 - a check that trips on hostile input refuses it
        log.exception("inbound check failed")
        return False


def build_app(
    api_call: ApiCall,
    hub: Hub,
    *,
    inbound: InboundSend | None = None,
    routes_factory: RoutesFactory | None = None,
    static_dirs: Mapping[str, Path] | None = None,
    app_setup: AppSetup | Iterable[AppSetup] | None = None,
) -> web.Application:
    """The gateway's aiohttp Application (build it on the loop that will serve it).

    Other parts extend it without editing this module: ``routes_factory`` returns routes,
    ``static_dirs`` maps URL prefixes to directories, and ``app_setup`` (one or several) may
    mount anything on the app, on the gateway thread, after the core routes.
    """
    context = GatewayContext(api_call=api_call, hub=hub, inbound=inbound)
    app = web.Application(middlewares=[_errors_middleware, _boundary(context)])
    app[HUB_KEY] = hub
    app[CONTEXT_KEY] = context
    api = _api_handler(api_call)
    app.router.add_get("/api/status", api)
    app.router.add_route("GET", "/api/{name}", api)
    app.router.add_route("POST", "/api/{name}", api)
    app.router.add_get("/ws/{topic}", _ws_handler(context))
    if routes_factory is not None:
        app.router.add_routes(list(routes_factory(context)))
    for prefix, directory in (static_dirs or {}).items():
        app.router.add_static(prefix, Path(directory))
    setups = [] if app_setup is None else [app_setup] if callable(app_setup) else list(app_setup)
    for setup in setups:
        setup(app, context)

    async def close_websockets(_app: web.Application) -> None:
        await hub.close_all(WSCloseCode.GOING_AWAY)

    app.on_shutdown.append(close_websockets)
    return app
