"""The contract between the web gateway and the node's API handlers.

The node answers browser requests through one callable, ``api(name, args) -> dict``. This
module defines that callable's type, the error it raises (``ApiError``: an HTTP status, a
machine-readable code and a bilingual message), the JSON shape of every error response, and
``dispatch_table`` to build the callable from a mapping of named handlers.

It is pure: it must never import trio, asyncio or aiohttp, and never do I/O, so both sides of
the bridge can use it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..errors import MeshmeetError

ApiCall = Callable[[str, dict], Awaitable[dict]]
"""The node's API: ``await api(name, args)`` returns a JSON-able dict or raises ApiError."""

ApiHandler = Callable[[dict], Awaitable[dict]]
"""One named handler inside a dispatch table."""

API_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
"""Names the gateway will route to ``api``; anything else is 404 without asking the node."""

READ_APIS = frozenset({
    "status", "meetings", "meeting", "docs", "doc_readiness", "doc", "doc_chunk", "announcements",
    "feedback_list", "speak_queue", "state", "roster", "webapp_info", "slide_state", "citizen_wall", "citizen_board",
    "citizen_inbox", "zalo_status", "release_versions",
})
"""Calls that only read: the only ones a ``GET`` may make. Every other name changes something and
must come as ``POST`` (a GET is what an ``<img src=>`` on any web page can send)."""


def is_read_call(name: str, args: dict) -> bool:
    """True for a call that changes nothing: READ_APIS, and ``floor`` / ``ingest`` asking only for the status."""
    if name in ("floor", "ingest"):
        return args.get("action", "status") == "status"
    return name in READ_APIS


class ApiError(MeshmeetError):
    """An API failure the browser should see: HTTP status, short code, Vietnamese and English."""

    def __init__(self, status: int, code: str, vi: str, en: str) -> None:
        super().__init__(vi, en)
        if not 400 <= status <= 599:
            raise ValueError(f"ApiError status must be 4xx or 5xx, got {status}")
        self.status = status
        self.code = code

    def to_json(self) -> dict[str, Any]:
        """The response body for this error."""
        return error_body(self.code, self.vi, self.en)


def error_body(code: str, vi: str, en: str) -> dict[str, Any]:
    """The JSON shape of every error response: ``{"error": {"code", "vi", "en"}}``."""
    return {"error": {"code": code, "vi": vi, "en": en}}


def unknown_api(name: str) -> ApiError:
    """The 404 for an API name nobody handles."""
    return ApiError(
        404,
        "unknown_api",
        f"Không có chức năng API tên “{name}”",
        f"no API function named “{name}”",
    )


def method_not_allowed(name: str) -> ApiError:
    """The 405 for a GET of a call that changes state."""
    return ApiError(
        405,
        "use_post",
        f"“{name}” thay đổi dữ liệu nên phải gửi bằng POST (không dùng GET)",
        f"“{name}” changes state, so it must be sent with POST (not GET)",
    )


def internal_error() -> ApiError:
    """The 500 shown when a handler failed in a way it did not describe (details go to the log)."""
    return ApiError(500, "internal", "Lỗi nội bộ của nút, xem nhật ký", "internal error in the node, see the log")


def node_stopping() -> ApiError:
    """The 503 shown while the node is shutting down or its core is gone."""
    return ApiError(503, "node_stopping", "Nút đang dừng, hãy thử lại sau", "the node is stopping, try again later")


def dispatch_table(handlers: Mapping[str, ApiHandler]) -> ApiCall:
    """Build ``api(name, args)`` from named handlers; unknown names raise a 404 ApiError."""
    table = dict(handlers)
    for name in table:
        if not API_NAME_RE.match(name):
            raise ValueError(f"API name {name!r} does not match {API_NAME_RE.pattern}")

    async def api(name: str, args: dict) -> dict:
        handler = table.get(name)
        if handler is None:
            raise unknown_api(name)
        return await handler(args)

    return api
