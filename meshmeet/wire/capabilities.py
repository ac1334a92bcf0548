"""Capabilities: which formats a node accepts, told to each link peer once after the handshake.

Service 0x90 carries one message, `msgpack {"sw": str, "fmt": {name: [int, ...]}, "feat": [str, ...]}`
(docs/protocol.md, "Compatibility"). A node of a release without it (0.1.0) drops the message as
an unknown service, and sends none; such a peer is taken to accept exactly LEGACY, what 0.1.0
accepts. A sender uses a format version only if `accepts(peer, name, version)`. Unknown keys,
names and features are ignored (a newer peer may add them). This module is sans-IO: it must
never touch sockets or clocks, and never raise anything but CapabilityError on hostile bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

MAX_MESSAGE_BYTES = 2048
MAX_NAME_CHARS = 32
MAX_VERSIONS = 64
MAX_FEATURES = 64


class CapabilityError(ValueError):
    """A capabilities message that is not one."""


@dataclass(frozen=True)
class Capabilities:
    software: str
    formats: dict[str, frozenset[int]] = field(default_factory=dict)
    features: frozenset[str] = frozenset()

    def accepts(self, name: str, version: int) -> bool:
        return version in self.formats.get(name, frozenset())

    def highest_common(self, other: "Capabilities", name: str) -> int | None:
        both = self.formats.get(name, frozenset()) & other.formats.get(name, frozenset())
        return max(both) if both else None


# What a node of release 0.1.0 (no capabilities message) accepts: link v1, sync protocol v1, batch
# formats 2 and 3, store schema up to 5 (unknown tables' rows are refused, their batches kept and
# relayed), media message kinds 1-6, datagram offer v1, LoRa frame kinds 1-7.
LEGACY = Capabilities(
    software="0.1.0",
    formats={"link": frozenset({1}), "sync": frozenset({1}), "batch": frozenset({2, 3}),
             "schema": frozenset(range(1, 6)), "media": frozenset(range(1, 7)), "datagram": frozenset({1}),
             "lora": frozenset(range(1, 8))},
)


def encode(c: Capabilities) -> bytes:
    return msgpack.packb({"sw": c.software, "fmt": {k: sorted(v) for k, v in sorted(c.formats.items())},
                          "feat": sorted(c.features)}, use_bin_type=True)


def decode(data: bytes) -> Capabilities:
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_MESSAGE_BYTES:
        raise CapabilityError("capabilities too large")
    try:
        obj = msgpack.unpackb(bytes(data), raw=False, use_list=True, strict_map_key=True)
    except Exception:  # msgpack raises many kinds on junk
        raise CapabilityError("not msgpack") from None
    if not isinstance(obj, dict):
        raise CapabilityError("not a map")
    sw, fmt, feat = obj.get("sw"), obj.get("fmt", {}), obj.get("feat", [])
    if not isinstance(sw, str) or not 0 < len(sw) <= MAX_NAME_CHARS:
        raise CapabilityError("bad software version")
    if not isinstance(fmt, dict) or len(fmt) > MAX_VERSIONS or not isinstance(feat, list) or len(feat) > MAX_FEATURES:
        raise CapabilityError("bad formats or features")
    formats: dict[str, frozenset[int]] = {}
    for name, versions in fmt.items():
        if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or not isinstance(versions, list) \
                or len(versions) > MAX_VERSIONS \
                or not all(type(v) is int and 0 <= v < 1 << 16 for v in versions):
            raise CapabilityError("bad format entry")
        formats[name] = frozenset(versions)
    if not all(isinstance(f, str) and len(f) <= MAX_NAME_CHARS for f in feat):
        raise CapabilityError("bad feature")
    return Capabilities(sw, formats, frozenset(feat))
