"""Up to three live voices at once (sans-IO): who owns each voice, and the extra voice's grant and beacons.

A *voice* is one Opus stream with its own sequence numbers; the audio track's layer field names
it (docs/protocol/media.md, "Voices"):

  0  the floor holder (the tree root without a grant): today's single source, with its video
  1  the chair (the tree root) while another site holds the floor: it interjects without taking
     the floor back; its chunks come down the tree, so every node's source for it is its parent
  2  the extra voice: one more site the chair allows (a signed *voice grant*); its source link is
     found by its *voice beacons*, signed by that site's own node key

Two messages on the media service (0x40), sent only to peers whose capabilities name FEATURE:

* 0x14 voice grant `[seq, extra node id or "", granter, signature]`: Ed25519 by the granter over
  VOICE_GRANT_CONTEXT + commune id + msgpack([seq, extra, granter]); the same authority as floor
  grants (HQ or a backup site); the highest (seq, granter) wins; flooded along the tree.
* 0x15 voice beacon `[seq, node, counter, signature]`: by the extra voice's own node over
  VOICE_BEACON_CONTEXT + commune id + msgpack([seq, node, counter]), once a second. A node takes
  the link a beacon first arrives on as the source of voice 2, only for the node the grant names
  and only with a counter above the last one it took (replays and loops are dropped).

This module never does I/O, reads a clock, or raises anything but VoiceError on hostile bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgpack

from meshmeet.errors import MeshmeetError
from meshmeet.media import chunk as C
from meshmeet.media.floor import MAX_SEQ, counter_is_new, is_node_id, is_u32
from meshmeet.membership.identity import KeyPair, verify

VOICE_FLOOR, VOICE_CHAIR, VOICE_EXTRA = 0, 1, 2
FEATURE = "voices/1"  # capabilities feature: this peer takes voices 1 and 2 and the kinds below
KIND_VOICE_GRANT = 0x14
KIND_VOICE_BEACON = 0x15
KIND_VOICE_ROLE = 0x16  # node -> its own web gateway only, never on a link: which voice this site speaks
ROLE_NONE = 0xFF
ROLE_ROOT = 0x01  # flags: this site is the tree root (the chair, who speaks through /present)
VOICE_KINDS = frozenset({KIND_VOICE_GRANT, KIND_VOICE_BEACON})
VOICE_GRANT_CONTEXT = b"meshmeet-voice-v1"
VOICE_BEACON_CONTEXT = b"meshmeet-voice-beacon-v1"
VOICE_BEACON_S = 1.0
MAX_VOICE_BYTES = 256
SIGNATURE_BYTES = 64
LOCAL = "presenter"  # the source "link" of a voice this node speaks itself


class VoiceError(MeshmeetError):
    """A voice message could not be parsed, or does not carry the authority it claims."""

    def __init__(self, en: str) -> None:
        super().__init__("Lệnh cho thêm giọng nói không hợp lệ", en)


# ---- the wire: which voice an audio message is -----------------------------------------------
def voice_of(data: bytes) -> int | None:
    """The voice of an audio chunk or decoder config (0..2); None for anything else (video,
    requests, padding). Raises MediaFormatError for a malformed stream byte."""
    if len(data) < 2 or data[0] not in (C.KIND_CHUNK, C.KIND_CONFIG) or data[1] >> 6 != C.TRACK_AUDIO:
        return None
    voice = (data[1] >> 4) & 3
    if voice >= C.MAX_VOICES or data[1] & 0x0D:
        raise C.MediaFormatError("bad audio stream byte")
    return voice


def as_voice(data: bytes, voice: int) -> bytes:
    """The same audio chunk or config as voice `voice` (done once, at the voice's origin node)."""
    if voice_of(data) is None or not 0 <= voice < C.MAX_VOICES:
        raise ValueError("not an audio message, or no such voice")
    return data[:1] + bytes(((data[1] & 0xCF) | (voice << 4),)) + data[2:]


def owners(holder: str, root: str, extra: str) -> tuple[str, str | None, str | None]:
    """Who speaks each voice: the holder; the root unless it holds the floor; the extra site
    unless it already speaks as one of those."""
    chair = root if root != holder else None
    return holder, chair, extra if extra and extra not in (holder, root) else None


def my_voice(me: str, holder: str, root: str, extra: str) -> int | None:
    """Which voice this node's own presenter speaks in (None: it is not allowed to speak)."""
    for voice, node in enumerate(owners(holder, root, extra)):
        if node == me:
            return voice
    return None


def encode_role(voice: int | None, root: bool) -> bytes:
    """`0x16 || voice (0..2, 0xFF none) || flags` for this node's own hall pages."""
    return bytes((KIND_VOICE_ROLE, ROLE_NONE if voice is None else voice, ROLE_ROOT if root else 0))


def parse_role(data: bytes) -> tuple[int | None, bool]:
    if len(data) != 3 or data[0] != KIND_VOICE_ROLE or (data[1] >= C.MAX_VOICES and data[1] != ROLE_NONE) or data[2] & ~ROLE_ROOT:
        raise VoiceError("bad voice role")
    return (None if data[1] == ROLE_NONE else data[1]), bool(data[2] & ROLE_ROOT)


# ---- voice grants and beacons --------------------------------------------------------------
@dataclass(frozen=True)
class VoiceGrant:
    seq: int  # u32; a newer grant has a greater (seq, granter)
    extra: str  # node id of the extra voice, or "" (none)
    granter: str
    signature: bytes


@dataclass(frozen=True)
class VoiceBeacon:
    seq: int  # the voice grant the extra voice speaks under
    node: str
    counter: int  # u32, grows with every beacon of this node
    signature: bytes


def _signed(context: bytes, commune_id: bytes, fields: list) -> bytes:
    return context + commune_id + msgpack.packb(fields)


def make_grant(key: KeyPair, commune_id: bytes, seq: int, extra: str) -> VoiceGrant:
    if not is_u32(seq) or not is_node_id(extra, empty_ok=True):
        raise ValueError("bad voice grant fields")
    return VoiceGrant(seq, extra, key.node_id, key.sign(_signed(VOICE_GRANT_CONTEXT, commune_id, [seq, extra, key.node_id])))


def make_beacon(key: KeyPair, commune_id: bytes, seq: int, counter: int) -> VoiceBeacon:
    return VoiceBeacon(seq, key.node_id, counter,
                       key.sign(_signed(VOICE_BEACON_CONTEXT, commune_id, [seq, key.node_id, counter])))


def encode(m: VoiceGrant | VoiceBeacon) -> bytes:
    if isinstance(m, VoiceGrant):
        return bytes((KIND_VOICE_GRANT,)) + msgpack.packb([m.seq, m.extra, m.granter, m.signature])
    return bytes((KIND_VOICE_BEACON,)) + msgpack.packb([m.seq, m.node, m.counter, m.signature])


def parse(data: bytes) -> VoiceGrant | VoiceBeacon:
    """Parse a voice grant or beacon. Raises VoiceError, never anything else."""
    if not data or data[0] not in VOICE_KINDS:
        raise VoiceError("not a voice message")
    if len(data) > MAX_VOICE_BYTES:
        raise VoiceError("voice message too large")
    try:
        obj = msgpack.unpackb(data[1:], raw=False, strict_map_key=True, use_list=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, UnicodeDecodeError, TypeError) as e:
        raise VoiceError(f"voice message is not msgpack: {e}") from None
    if not isinstance(obj, list) or len(obj) != 4:
        raise VoiceError("voice message must be a list of 4 fields")
    seq, who, third, sig = obj
    if not isinstance(sig, bytes) or len(sig) != SIGNATURE_BYTES:
        raise VoiceError("voice message signature must be 64 bytes")
    if data[0] == KIND_VOICE_GRANT:
        if not is_u32(seq) or not is_node_id(who, empty_ok=True) or not is_node_id(third):
            raise VoiceError("bad voice grant fields")
        return VoiceGrant(seq, who, third, sig)
    if not is_u32(seq) or not is_node_id(who) or not is_u32(third):
        raise VoiceError("bad voice beacon fields")
    return VoiceBeacon(seq, who, third, sig)


@dataclass(frozen=True)
class VoiceUpdate:
    """What a message changed: flood it on; the extra voice's site or its source link moved."""

    forward: bool = False
    extra_changed: bool = False
    source_changed: bool = False


KeyOf = Callable[[str], bytes | None]


class ExtraVoice:
    """The extra voice as this node sees it: the grant it holds, the link towards that site.

    `authority(node_id)`: the public key of a node allowed to grant (else None);
    `member_key(node_id)`: any roster member's public key (else None);
    `counter_start`: where this node's own beacon counter starts (the driver gives the wall
    clock's seconds, so a restarted node's beacons are still newer than before)."""

    def __init__(self, key: KeyPair, commune_id: bytes, authority: KeyOf, member_key: KeyOf,
                 counter_start: int = 0) -> None:
        self._key = key
        self.me = key.node_id
        self._commune_id = commune_id
        self._authority = authority
        self._member_key = member_key
        self.grant: VoiceGrant | None = None
        self.source_link: str | None = None
        self._last: tuple[int, float] | None = None  # (counter, when) of the last beacon taken
        self._counter = counter_start & MAX_SEQ
        self._next_beacon = 0.0
        self.refused = 0

    @property
    def seq(self) -> int:
        return self.grant.seq if self.grant else 0

    @property
    def extra(self) -> str:
        return self.grant.extra if self.grant else ""

    def issue(self, extra: str) -> tuple[bytes, VoiceUpdate]:
        """A new grant by this node (the caller checked it may grant)."""
        g = make_grant(self._key, self._commune_id, min(MAX_SEQ, self.seq + 1), extra)
        return encode(g), self._take(g)

    def receive_grant(self, g: VoiceGrant) -> VoiceUpdate:
        """A grant from a link. VoiceError when its granter lacks authority or it is forged."""
        if self.grant is not None and (g.seq, g.granter) <= (self.grant.seq, self.grant.granter):
            return VoiceUpdate()
        key = self._authority(g.granter)
        if key is None or not verify(key, _signed(VOICE_GRANT_CONTEXT, self._commune_id, [g.seq, g.extra, g.granter]),
                                     g.signature):
            self.refused += 1
            raise VoiceError(f"voice grant by {g.granter}: no authority or a bad signature")
        upd = self._take(g)
        return VoiceUpdate(forward=True, extra_changed=upd.extra_changed, source_changed=upd.source_changed)

    def _take(self, g: VoiceGrant) -> VoiceUpdate:
        changed = g.extra != self.extra
        self.grant = g
        old = self.source_link
        if changed:
            self._last = None
            self.source_link = LOCAL if g.extra == self.me else None
            self._next_beacon = 0.0
        return VoiceUpdate(extra_changed=changed, source_changed=self.source_link != old)

    def current_grant_bytes(self) -> bytes | None:
        return encode(self.grant) if self.grant else None

    def beacon_due(self, now: float) -> bytes | None:
        """This node's next beacon while it is the extra voice (call at `next_beacon_at`)."""
        if self.extra != self.me or now < self._next_beacon:
            return None
        self._next_beacon = now + VOICE_BEACON_S
        self._counter = (self._counter + 1) & MAX_SEQ
        return encode(make_beacon(self._key, self._commune_id, self.seq, self._counter))

    def next_beacon_at(self) -> float | None:
        return self._next_beacon if self.extra == self.me else None

    def receive_beacon(self, link: str, b: VoiceBeacon, now: float) -> VoiceUpdate:
        """A beacon from `link`. VoiceError for a forged one; a stale or repeated one is ignored."""
        if b.seq != self.seq or b.node != self.extra or b.node == self.me:
            return VoiceUpdate()
        if not counter_is_new(self._last, b.counter, now):
            return VoiceUpdate()  # seen (a loop while the tree re-forms), or replayed
        key = self._member_key(b.node)
        if key is None or not verify(key, _signed(VOICE_BEACON_CONTEXT, self._commune_id, [b.seq, b.node, b.counter]),
                                     b.signature):
            self.refused += 1
            raise VoiceError(f"voice beacon for {b.node} does not verify")
        self._last = (b.counter, now)
        changed = self.source_link != link
        self.source_link = link
        return VoiceUpdate(forward=True, source_changed=changed)

    def link_gone(self, link: str) -> VoiceUpdate:
        if self.source_link == link:
            self.source_link = None
            return VoiceUpdate(source_changed=True)
        return VoiceUpdate()

    def status(self) -> dict:
        return {"extra": self.extra or None, "seq": self.seq, "source_link": self.source_link, "refused": self.refused}
