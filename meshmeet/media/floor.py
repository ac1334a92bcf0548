"""Who holds the floor (whose presenter is the media source) and which link leads to them (sans-IO).

Two messages travel on the media service (0x40) next to the media kinds of chunk.py:

* 0x10 floor grant: `[seq, holder, granter, signature]` (msgpack). Signed by the granter's node
  key over FLOOR_CONTEXT + commune id + `[seq, holder, granter]`. `holder` "" releases the floor
  (the tree root's presenter speaks again). Every node checks the granter's authority against the
  roster (`authority(node_id)` gives the public key of a node allowed to grant, else None),
  keeps the grant with the highest (seq, granter), and floods new grants along the tree.
* 0x17 signed source beacon: `[seq, holder, counter, signature]`, Ed25519 by the holder's own
  node key over SOURCE_BEACON_CONTEXT + commune id + msgpack([seq, holder, counter]). The holder
  floods one every SOURCE_BEACON_S along the tree; the link a beacon for the current floor
  arrives on is the link towards the holder, i.e. the only link this node takes voice-0 media
  from. A beacon is taken only with a counter above the last one taken (or after
  BEACON_FORGET_S without one: a restarted holder), so replays and loops are dropped; the
  counter starts at the wall clock's seconds (the driver's `counter_start`).
* 0x11 source beacon: `[seq, holder, counter]`, the same without a signature: what the previous
  release speaks. Sent only to, and taken only from, peers that do not name FEATURE (the rolling
  upgrade's open window: such a neighbour can still point this node's source at itself). An
  unsigned beacon never blocks a signed one (their counters are compared separately).

0x12 (source reset) never crosses a link: the node hands it to its own web gateway when the
holder changes, so the browsers' relay forgets the old source's decoder configs.

This module never does I/O, reads a clock or raises anything but FloorError on hostile bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgpack

from meshmeet.errors import MeshmeetError
from meshmeet.membership.identity import KeyPair, verify

KIND_FLOOR = 0x10
KIND_SOURCE_BEACON = 0x11
KIND_SOURCE_RESET = 0x12
KIND_SIGNED_BEACON = 0x17
FLOOR_KINDS = frozenset({KIND_FLOOR, KIND_SOURCE_BEACON, KIND_SIGNED_BEACON})
FEATURE = "floor-beacons/2"  # capabilities feature: this peer sends and takes only 0x17 beacons
FLOOR_CONTEXT = b"meshmeet-floor-v1"
SOURCE_BEACON_CONTEXT = b"meshmeet-source-beacon-v1"
SOURCE_BEACON_S = 1.0
BEACON_FORGET_S = 10.0  # no beacon taken from the holder for this long: the next counter is taken as new
MAX_FLOOR_BYTES = 256
MAX_SEQ = 0xFFFFFFFF
NODE_ID_CHARS = 16
SIGNATURE_BYTES = 64
LOCAL = "presenter"  # the source "link" when this node holds the floor

SOURCE_RESET = bytes((KIND_SOURCE_RESET,))


class FloorError(MeshmeetError):
    """A floor message could not be parsed, or its granter lacks the authority."""

    def __init__(self, en: str) -> None:
        super().__init__("Lệnh trao quyền phát biểu không hợp lệ", en)


@dataclass(frozen=True)
class FloorGrant:
    seq: int  # u32; a newer grant has a greater (seq, granter)
    holder: str  # node id, or "" for "back to the tree root"
    granter: str  # node id of the signer
    signature: bytes


@dataclass(frozen=True)
class SourceBeacon:
    seq: int  # the grant this holder speaks under (0 before any grant)
    holder: str
    counter: int  # u32, grows with every beacon of this holder (replays and loops are dropped)
    signature: bytes = b""  # 64 bytes (kind 0x17), or b"" (kind 0x11, from a peer of the previous release)


def is_node_id(x: object, *, empty_ok: bool = False) -> bool:
    """A 16-hex-digit node id (or "" where `empty_ok`): checked where control messages enter."""
    if not isinstance(x, str):
        return False
    if x == "" and empty_ok:
        return True
    return len(x) == NODE_ID_CHARS and all(c in "0123456789abcdef" for c in x)


def _signed_bytes(commune_id: bytes, seq: int, holder: str, granter: str) -> bytes:
    return FLOOR_CONTEXT + commune_id + msgpack.packb([seq, holder, granter])


def make_grant(key: KeyPair, commune_id: bytes, seq: int, holder: str) -> FloorGrant:
    if not 0 <= seq <= MAX_SEQ or not is_node_id(holder, empty_ok=True):
        raise ValueError("bad floor grant fields")
    granter = key.node_id
    return FloorGrant(seq, holder, granter, key.sign(_signed_bytes(commune_id, seq, holder, granter)))


def encode_grant(g: FloorGrant) -> bytes:
    return bytes((KIND_FLOOR,)) + msgpack.packb([g.seq, g.holder, g.granter, g.signature])


def counter_is_new(last: tuple[int, float] | None, counter: int, now: float) -> bool:
    """A signed beacon's counter against the last one taken, `(counter, when)`: newer, or the last
    is BEACON_FORGET_S old (a restarted sender). The replay and loop rule of every beacon kind."""
    return last is None or counter > last[0] or now - last[1] >= BEACON_FORGET_S


def _beacon_bytes(commune_id: bytes, seq: int, holder: str, counter: int) -> bytes:
    return SOURCE_BEACON_CONTEXT + commune_id + msgpack.packb([seq, holder, counter])


def make_beacon(key: KeyPair, commune_id: bytes, seq: int, counter: int) -> SourceBeacon:
    if not is_u32(seq) or not is_u32(counter):
        raise ValueError("bad source beacon fields")
    return SourceBeacon(seq, key.node_id, counter, key.sign(_beacon_bytes(commune_id, seq, key.node_id, counter)))


def encode_beacon(b: SourceBeacon) -> bytes:
    """The unsigned 0x11 form (for peers of the previous release), signed or not."""
    return bytes((KIND_SOURCE_BEACON,)) + msgpack.packb([b.seq, b.holder, b.counter])


def encode_signed_beacon(b: SourceBeacon) -> bytes:
    """The 0x17 form; only a beacon that carries its holder's signature has one."""
    if len(b.signature) != SIGNATURE_BYTES:
        raise ValueError("an unsigned beacon has no signed form")
    return bytes((KIND_SIGNED_BEACON,)) + msgpack.packb([b.seq, b.holder, b.counter, b.signature])


def for_peer(body: bytes, signs: bool) -> bytes | None:
    """What a tree neighbour gets of a floor message being flooded: a grant as it is; a beacon, to
    a peer that names FEATURE, the holder's signed bytes unchanged (a relay cannot sign: an
    unsigned beacon has nothing for it, None), to a peer of the previous release the 0x11 form.
    `body` was parsed (or made) by this node; FloorError otherwise."""
    if not body or body[0] not in (KIND_SOURCE_BEACON, KIND_SIGNED_BEACON):
        return body
    if signs:
        return body if body[0] == KIND_SIGNED_BEACON else None
    b = parse(body)
    assert isinstance(b, SourceBeacon)
    return encode_beacon(b)


def _unpack(data: bytes) -> list:
    if len(data) > MAX_FLOOR_BYTES:
        raise FloorError("floor message too large")
    try:
        obj = msgpack.unpackb(data[1:], raw=False, strict_map_key=True, use_list=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, UnicodeDecodeError, TypeError) as e:
        raise FloorError(f"floor message is not msgpack: {e}") from None
    if not isinstance(obj, list):
        raise FloorError("floor message must be a list")
    return obj


def is_u32(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= MAX_SEQ


def parse(data: bytes) -> FloorGrant | SourceBeacon:
    """Parse a floor grant or source beacon. Raises FloorError, never anything else."""
    if not data or data[0] not in FLOOR_KINDS:
        raise FloorError("not a floor message")
    obj = _unpack(data)
    if data[0] == KIND_FLOOR:
        if len(obj) != 4:
            raise FloorError("floor grant must have 4 fields")
        seq, holder, granter, sig = obj
        if not is_u32(seq) or not is_node_id(holder, empty_ok=True) or not is_node_id(granter):
            raise FloorError("bad floor grant fields")
        if not isinstance(sig, bytes) or len(sig) != SIGNATURE_BYTES:
            raise FloorError("floor grant signature must be 64 bytes")
        return FloorGrant(seq, holder, granter, sig)
    if data[0] == KIND_SIGNED_BEACON:
        if len(obj) != 4:
            raise FloorError("signed source beacon must have 4 fields")
        seq, holder, counter, sig = obj
        if not isinstance(sig, bytes) or len(sig) != SIGNATURE_BYTES:
            raise FloorError("source beacon signature must be 64 bytes")
    else:
        if len(obj) != 3:
            raise FloorError("source beacon must have 3 fields")
        seq, holder, counter = obj
        sig = b""
    if not is_u32(seq) or not is_node_id(holder) or not is_u32(counter):
        raise FloorError("bad source beacon fields")
    return SourceBeacon(seq, holder, counter, sig)


@dataclass(frozen=True)
class FloorUpdate:
    """What a message changed: forward it (flood on), and/or the holder or source link moved."""

    forward: bool = False
    holder_changed: bool = False
    source_changed: bool = False


Authority = Callable[[str], bytes | None]


class Floor:
    """The floor as this node sees it. `root` (the tree root's node id) is passed in where needed.

    `authority(node_id)`: the public key of a node allowed to grant (else None);
    `key`: this node's key (it signs its beacons while it holds the floor);
    `member_key(node_id)`: any roster member's public key (else None: its beacons are refused);
    `counter_start`: where this node's beacon counter starts (the driver gives the wall clock's
    seconds, so a restarted holder's beacons are still newer than before)."""

    def __init__(self, key: KeyPair, commune_id: bytes, authority: Authority, member_key: Authority,
                 counter_start: int = 0) -> None:
        self._key = key
        self.me = key.node_id
        self._commune_id = commune_id
        self._authority = authority
        self._member_key = member_key
        self.grant: FloorGrant | None = None
        self.source_link: str | None = None
        self._source_holder: str | None = None
        self._last_signed: tuple[int, float] | None = None  # (counter, when) of the last signed beacon taken
        self._last_any: tuple[int, float] | None = None  # the same for any beacon, signed or not
        self._counter = counter_start & MAX_SEQ
        self._next_beacon = 0.0
        self.refused = 0
        self.unsigned_taken = 0

    @property
    def seq(self) -> int:
        return self.grant.seq if self.grant else 0

    def holder(self, root: str) -> str:
        return self.grant.holder if self.grant and self.grant.holder else root

    def holds(self, root: str) -> bool:
        return self.holder(root) == self.me

    # ---- grants --------------------------------------------------------------------------
    def issue(self, key: KeyPair, holder: str, root: str) -> tuple[bytes, FloorUpdate]:
        """A new grant by this node (the caller checked it may grant); applied here at once."""
        g = make_grant(key, self._commune_id, min(MAX_SEQ, self.seq + 1), holder)
        before = self.holder(root)
        self.grant = g
        return encode_grant(g), self._after_holder_change(before, root)

    def receive_grant(self, g: FloorGrant, root: str) -> FloorUpdate:
        """A grant from a link (already parsed). FloorError when its granter lacks authority."""
        if self.grant is not None and (g.seq, g.granter) <= (self.grant.seq, self.grant.granter):
            return FloorUpdate()
        key = self._authority(g.granter)
        if key is None:
            self.refused += 1
            raise FloorError(f"{g.granter} may not grant the floor")
        if not verify(key, _signed_bytes(self._commune_id, g.seq, g.holder, g.granter), g.signature):
            self.refused += 1
            raise FloorError("floor grant signature does not verify")
        before = self.holder(root)
        self.grant = g
        upd = self._after_holder_change(before, root)
        return FloorUpdate(forward=True, holder_changed=upd.holder_changed, source_changed=upd.source_changed)

    def root_changed(self, root: str) -> FloorUpdate:
        """Call when the tree root moves: without a grant, the root holds the floor."""
        return self._after_holder_change(self._source_holder, root)

    def _after_holder_change(self, before: str | None, root: str) -> FloorUpdate:
        now_holder = self.holder(root)
        if now_holder == before and self._source_holder == now_holder:
            return FloorUpdate()
        self._source_holder = now_holder
        self._last_signed = self._last_any = None  # a new holder's counters start afresh
        old_link = self.source_link
        self.source_link = LOCAL if now_holder == self.me else None
        self._next_beacon = 0.0  # a new holder announces itself at once
        return FloorUpdate(holder_changed=now_holder != before, source_changed=self.source_link != old_link)

    def current_grant_bytes(self) -> bytes | None:
        """For a new tree neighbour: the grant we hold (None before any grant)."""
        return encode_grant(self.grant) if self.grant else None

    # ---- beacons -------------------------------------------------------------------------
    def beacon_due(self, root: str, now: float) -> bytes | None:
        """The holder's next beacon (signed, kind 0x17) when one is due (call at `next_beacon_at`);
        `encode_beacon(parse(...))` is its 0x11 form for peers of the previous release."""
        if not self.holds(root) or now < self._next_beacon:
            return None
        self._next_beacon = now + SOURCE_BEACON_S
        self._counter = (self._counter + 1) & MAX_SEQ
        return encode_signed_beacon(make_beacon(self._key, self._commune_id, self.seq, self._counter))

    def next_beacon_at(self, root: str) -> float | None:
        return self._next_beacon if self.holds(root) else None

    def receive(self, link: str, msg: FloorGrant | SourceBeacon, root: str, now: float, *, signed_only: bool) -> FloorUpdate:
        """A parsed floor message from `link` (`signed_only`: that peer names FEATURE)."""
        if isinstance(msg, FloorGrant):
            return self.receive_grant(msg, root)
        return self.receive_beacon(link, msg, root, now, signed_only=signed_only)

    def receive_beacon(self, link: str, b: SourceBeacon, root: str, now: float, *, signed_only: bool) -> FloorUpdate:
        """A beacon from `link` (`signed_only`: that peer names FEATURE). FloorError for a forged
        one, or an unsigned one where only signed ones count; a stale or repeated one is ignored."""
        if signed_only and not b.signature:
            self.refused += 1
            raise FloorError("unsigned source beacon from a peer that signs them")
        if b.seq != self.seq or b.holder != self.holder(root) or b.holder == self.me:
            return FloorUpdate()
        last = self._last_signed if b.signature else self._last_any
        if not counter_is_new(last, b.counter, now):
            return FloorUpdate()  # seen (a loop while the tree re-forms), or replayed
        if b.signature:
            key = self._member_key(b.holder)
            if key is None or not verify(key, _beacon_bytes(self._commune_id, b.seq, b.holder, b.counter), b.signature):
                self.refused += 1
                raise FloorError(f"source beacon for {b.holder} does not verify")
            self._last_signed = (b.counter, now)
        else:
            self.unsigned_taken += 1  # the rolling upgrade's open window, in use
        if counter_is_new(self._last_any, b.counter, now):
            self._last_any = (b.counter, now)
        changed = self.source_link != link
        self.source_link = link
        return FloorUpdate(forward=True, source_changed=changed)

    def link_gone(self, link: str) -> FloorUpdate:
        if self.source_link == link:
            self.source_link = None
            return FloorUpdate(source_changed=True)
        return FloorUpdate()

    def status(self, root: str) -> dict:
        return {"holder": self.holder(root), "seq": self.seq, "granted_by": self.grant.granter if self.grant else None,
                "source_link": self.source_link, "refused": self.refused, "unsigned_taken": self.unsigned_taken}
