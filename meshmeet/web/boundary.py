"""Who may talk to the gateway at all: the Host allow-list and the Origin check.

A browser on the hall's LAN may have any web page open. Two checks keep those pages out:
- ``host_allowed``: the ``Host`` a request names must be an IP literal, ``localhost``, or one of
  the node's own names (its certificate names and ``[network] allowed_hosts`` in config.toml).
  A DNS-rebinding page (``evil.example`` made to resolve to the node) names its own host and is
  refused, for reads as much as for changes (as Syncthing and Jupyter do).
- ``origin_allowed``: a WebSocket upgrade or a state-changing request that a browser made says
  where it comes from (``Origin``, else Fetch Metadata ``Sec-Fetch-Site``); it must be this very
  origin (scheme, host and port), never another site, another port or the opaque ``null``.
  Requests without either header are not from a browser page (the CLI, tests, curl).

Pure functions over header strings (the parsers' answers memoised, bounded); this module must
never import aiohttp and never do I/O.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Collection

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
MAX_HOST_CHARS = 300
HOSTS_REMEMBERED = 256  # answers of the pure parsers kept (a request pays ~4 IP parses otherwise)
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$")
CROSS_FETCH_SITES = frozenset({"cross-site", "same-site"})
"""Fetch Metadata values that mean "another page made this request" (same-site: another port)."""


@functools.lru_cache(maxsize=HOSTS_REMEMBERED)
def split_host(value: str | None) -> tuple[str, int | None] | None:
    """``name``, ``name:port``, ``v4:port``, ``[v6]:port`` -> (lower-case name or IP, port);
    None for anything malformed (empty, bad port, bad characters, a bare v6 without brackets).
    Remembered for the last HOSTS_REMEMBERED values (every request names one or two of a few)."""
    if not value or len(value) > MAX_HOST_CHARS:
        return None
    value = value.strip().lower()
    port: int | None = None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
        if not _is_ip(name) or ":" not in name:
            return None
        if rest:
            if not rest.startswith(":"):
                return None
            port = _port(rest[1:])
            if port is None:
                return None
        return name, port
    name, sep, port_text = value.partition(":")
    if sep:
        port = _port(port_text)
        if port is None:
            return None
    name = name[:-1] if name.endswith(".") else name
    if not (_is_ip(name) or HOSTNAME_RE.match(name)):
        return None
    return name, port


def _port(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 5 or not 0 < int(text) <= 65535:
        return None
    return int(text)


@functools.lru_cache(maxsize=HOSTS_REMEMBERED)
def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(host: str | None, names: Collection[str]) -> bool:
    """True when ``host`` (a Host header) is an IP literal, a localhost name, or in ``names``."""
    parsed = split_host(host)
    if parsed is None:
        return False
    name = parsed[0]
    if _is_ip(name) or name in LOCAL_NAMES or name.endswith(".localhost"):
        return True
    return name in {n.lower().rstrip(".") for n in names}


def _origin_parts(origin: str) -> tuple[str, str, int] | None:
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or scheme not in DEFAULT_PORTS or "/" in rest.rstrip("/"):
        return None
    parsed = split_host(rest.rstrip("/"))
    if parsed is None:
        return None
    return scheme, parsed[0], parsed[1] or DEFAULT_PORTS[scheme]


def origin_allowed(origin: str | None, fetch_site: str | None, host: str | None, scheme: str) -> bool:
    """May a browser page with this ``Origin``/``Sec-Fetch-Site`` change state or open a socket on
    ``scheme://host``? Only the same origin may; no browser header at all means no page asked."""
    if fetch_site is not None and fetch_site.strip().lower() in CROSS_FETCH_SITES:
        return False
    if origin is None:
        return True
    theirs = _origin_parts(origin)
    ours = split_host(host)
    if theirs is None or ours is None or scheme.lower() not in DEFAULT_PORTS:
        return False  # includes Origin: null (sandboxed frames, file: pages, redirects)
    return theirs == (scheme.lower(), ours[0], ours[1] or DEFAULT_PORTS[scheme.lower()])
