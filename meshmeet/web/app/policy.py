"""Which node API calls a browser may make: chair-only names, and how a local CLI call is told apart.

The store enforces authority by the node's role; this adds the chair PIN on top for requests that
come from browsers or from the LAN. Pure functions over plain values; this module must never import
aiohttp and never decide anything from request bodies beyond the API name and action.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

CHAIR_APIS = frozenset({
    "meeting_create", "meeting_update", "agenda_add", "agenda_update", "doc_add", "motion_open",
    "motion_close", "announce", "feedback_reply", "briefing", "lora_alert", "lora_send",
})
"""Calls that change the meeting for everyone: a browser needs a chair session for them."""

BROWSER_FORBIDDEN_APIS = frozenset({"doc_add", "media_test_rate_cap"})
"""Never from a browser: doc_add names a file on the node (the upload route calls it instead)."""

BROWSER_HEADERS = ("origin", "sec-fetch-site", "sec-fetch-mode", "cookie", "referer")


def is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False


def is_local_tool(remote: str | None, headers: Mapping[str, str], tls: bool) -> bool:
    """A request from a program on this machine (the meshmeet CLI), not from a browser."""
    return not tls and is_loopback(remote) and not any(h in headers for h in BROWSER_HEADERS)


def needs_chair(name: str, method: str, query: Mapping[str, str]) -> bool:
    """Chair-only: CHAIR_APIS, and `floor` unless it is a GET asking only for the status."""
    if name == "floor":
        return method != "GET" or query.get("action", "status") != "status"
    return name in CHAIR_APIS


def same_origin(origin: str | None, host: str | None) -> bool:
    """A browser's Origin header names the host it sent the request to (no cross-site posts)."""
    if origin is None:
        return True
    return host is not None and origin.split("://", 1)[-1].rstrip("/").lower() == host.lower()
