"""What a node service provides, stated as one value, and the one place it is put on the node.

Each part of the node (the Node itself and every service) returns a `Provides` from `provides()`:
the link messages it handles (service byte -> handler), the mesh-port first bytes it answers (the
join "J", HQ recovery "R"), its API names, its status keys, its link and roster listeners, its web
gateway setups, the browser topics it reads, and `fronts`: a topic another service provides whose
messages it sees first and passes on by calling that service's named method (the ingest holds the
presenter's way in while it is the source). `register` (called by compose.py) puts them all on the
node's dispatch tables in the order given, which is the start order (link listeners run in it), and
refuses a second claim on a service byte, first byte, API name, status key, topic or front, naming
both claimants, before it writes anything. This module must never build a service or hold state;
no other module writes the node's dispatch tables (tests/test_layering.py reads the source for it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Awaitable, Callable, Iterable, Mapping, Protocol

from ..api.contract import ApiHandler

ServiceHandler = Callable[[str, bytes], None]  # (peer node id, the message after its service byte)
FirstByteHandler = Callable[[Any, bytes], Awaitable[None]]  # (the accepted trio stream, its first bytes)
StatusFn = Callable[[], object]  # status()[key]
LinkListener = Callable[[str, bool], None]  # (peer node id, up)
RosterListener = Callable[[list], None]  # (the roster entries just added)
InboundHandler = Callable[[object], Awaitable[None]]  # a browser's message on a topic (through the bridge)
WebSetup = Callable[..., object]  # app_setup(app, ctx), run on the web gateway's thread


class RegistrationClash(Exception):
    """Two parts of the node claim the same key: the node is not assembled."""


# keyed fields: what a claim is called in an error, and the node table it goes to
_KEYED = {
    "services": (lambda k: f"service byte 0x{k:02x}", lambda node: node.services),
    "first_bytes": (lambda k: f"first byte 0x{k:02x}", lambda node: node.links.first_byte_handlers),
    "apis": (lambda k: f"API {k!r}", lambda node: node.api_handlers),
    "status": (lambda k: f"status key {k!r}", lambda node: node.status_extras),
    "topics": (lambda k: f"topic {k!r}", lambda node: node.inbound_handlers),
}
_LISTS = {
    "link_listeners": lambda node: node.link_listeners,
    "roster_listeners": lambda node: node.roster_listeners,
    "web_setups": lambda node: node.web_setups,
}


@dataclass(frozen=True)
class Provides:
    """What one part of the node provides (every field optional; see the module docstring)."""

    services: Mapping[int, ServiceHandler] = field(default_factory=dict)
    first_bytes: Mapping[int, FirstByteHandler] = field(default_factory=dict)
    apis: Mapping[str, ApiHandler] = field(default_factory=dict)
    status: Mapping[str, StatusFn] = field(default_factory=dict)
    topics: Mapping[str, InboundHandler] = field(default_factory=dict)
    fronts: Mapping[str, InboundHandler] = field(default_factory=dict)
    link_listeners: tuple[LinkListener, ...] = ()
    roster_listeners: tuple[RosterListener, ...] = ()
    web_setups: tuple[WebSetup, ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):  # read-only copies: what was stated is what gets registered
            value = getattr(self, f.name)
            frozen = MappingProxyType(dict(value)) if f.name in _KEYED or f.name == "fronts" else tuple(value)
            object.__setattr__(self, f.name, frozen)

    def __add__(self, other: "Provides") -> "Provides":
        """Both together (a service and the parts it owns); the same key twice is refused."""
        merged: dict[str, Any] = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, Mapping):
                if twice := set(mine) & set(theirs):
                    label = _KEYED[f.name][0] if f.name in _KEYED else (lambda k: f"front on topic {k!r}")
                    raise RegistrationClash(f"{label(sorted(twice)[0])} is claimed twice by one service")
                merged[f.name] = {**mine, **theirs}
            else:
                merged[f.name] = mine + theirs
        return Provides(**merged)


class Provider(Protocol):
    """A part of the node that states what it provides."""

    def provides(self) -> Provides: ...


def register(node: Any, providers: Iterable[Provider]) -> None:
    """Put what each of `providers` provides on `node`'s dispatch tables, in the order given.

    Every claim is checked before anything is written: a clash raises `RegistrationClash` naming
    the key and both claimants, and leaves the node's tables as they were."""
    owners: dict[tuple[str, object], str] = {}
    stated: list[Provides] = []
    for provider in providers:
        name = type(provider).__name__
        given = provider.provides()
        for kind, (label, table) in _KEYED.items():
            for key in getattr(given, kind):
                if (kind, key) in owners:
                    raise RegistrationClash(f"{label(key)} is claimed by both {owners[kind, key]} and {name}")
                if key in table(node):
                    raise RegistrationClash(f"{label(key)} claimed by {name} is already on the node (written "
                                            "outside registration)")
                owners[kind, key] = name
        for topic in given.fronts:
            if ("topics", topic) not in owners:
                raise RegistrationClash(f"{name} fronts topic {topic!r}, but no service provides it (the one "
                                        "that does must be registered before)")
            if ("fronts", topic) in owners:
                raise RegistrationClash(f"topic {topic!r} is fronted by both {owners['fronts', topic]} and {name}")
            owners["fronts", topic] = name
        stated.append(given)
    for given in stated:
        _install(node, given)


def _install(node: Any, given: Provides) -> None:
    """Write one checked `Provides` on the node (a table is touched only when there is something for it)."""
    for kind, (_, table) in _KEYED.items():
        if entries := getattr(given, kind):
            table(node).update(entries)
    if given.fronts:
        node.inbound_handlers.update(given.fronts)  # the front receives the topic; it calls the owner's method
    for kind, table in _LISTS.items():
        if entries := getattr(given, kind):
            table(node).extend(entries)
