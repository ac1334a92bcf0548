"""The node's side of voices 1 and 2 (the chair interjecting, the extra site): owned by MediaService.

Keeps the relay's voice sources true (voice 1: the tree parent, or this node's presenter at the
root; voice 2: the link the extra site's signed beacons arrive on, or the presenter there), tells
the relay which tree links know voices (capabilities feature "voices/1"), labels this node's own
presenter audio with the voice it may speak (`as_voice`), floods voice grants and beacons to the
links that know voices, and serves the `floor` API's `allow` / `disallow`. The sans-IO rules are
in meshmeet/media/voices.py and relay_voices.py; this module must never decide who may speak
itself, never send a voice message to a peer that has not said it knows voices, and never let a
hall's presenter speak a voice the floor and the grant do not give it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ..media import chunk as C
from ..media.voices import (LOCAL, VOICE_CHAIR, VOICE_EXTRA, ExtraVoice, VoiceBeacon, VoiceError,
                            VoiceGrant, VoiceUpdate, as_voice, encode_role, my_voice, owners, parse, voice_of)
from ..wire import services

if TYPE_CHECKING:
    from .media_service import MediaService

log = logging.getLogger(__name__)

ROLE_REPEAT_S = 5.0  # the role is published again this often (a restarted hub learns it)

KnowsVoices = Callable[[str], bool]


class MediaVoices:
    def __init__(self, media: "MediaService", knows_voices: KnowsVoices | None) -> None:
        self.m = media
        node = media.node
        self.knows = knows_voices or (lambda peer: False)
        self.extra = ExtraVoice(node.key, node.roster.commune_id, media._may_grant,
                                lambda n: node.roster.public_key_of(n),
                                counter_start=int(time.time()))
        self._voice_links: set[str] = set()
        self._owners: tuple = (None, None, None)
        self.counters = {"voice_refused": 0, "voice_chunks_sent": 0, "presenter_voice": None}
        self._next_role = 0.0

    # ---- who speaks what --------------------------------------------------------------------
    def owners(self) -> tuple:
        root = self.m.root()
        return owners(self.m.floor.holder(root), root, self.extra.extra)

    def mine(self) -> int | None:
        root = self.m.root()
        return my_voice(self.m.node.key.node_id, self.m.floor.holder(root), root, self.extra.extra)

    def sync(self, now: float) -> None:
        """Every pass: voice sources, which links know voices, grants to new voice links."""
        relay, me = self.m.relay, self.m.node.key.node_id
        for peer in self.m._tree_links:
            on = bool(self.knows(peer))
            relay.set_link_voices(peer, on, now)
            if on and peer not in self._voice_links:
                grant = self.extra.current_grant_bytes()
                if grant is not None:
                    self.m.node.send(peer, services.MEDIA, grant)
            (self._voice_links.add if on else self._voice_links.discard)(peer)
        self._voice_links &= self.m._tree_links
        own = self.owners()
        parent = self.m.tree.parent() if self.m.tree is not None else None
        chair_src = None if own[VOICE_CHAIR] is None else (LOCAL if own[VOICE_CHAIR] == me else parent)
        extra_src = None if own[VOICE_EXTRA] is None else self.extra.source_link
        for voice, src in ((VOICE_CHAIR, chair_src), (VOICE_EXTRA, extra_src)):
            relay.set_voice_source(voice, src, new_origin=own[voice] != self._owners[voice])
        if own != self._owners:
            log.info("voices: %s", [self.m._site(n) for n in own])
            self._owners = own
            self.m._inject_presenter_configs(now)
            self.publish_role()

    def publish_role(self) -> None:
        """Tell this node's hall pages which voice the site speaks (the TV page captures then)."""
        self.m._publish(encode_role(self.mine(), self.m.root() == self.m.node.key.node_id))

    # ---- from links ---------------------------------------------------------------------------
    def on_message(self, peer: str, body: bytes, now: float) -> None:
        try:
            msg = parse(body)
            if isinstance(msg, VoiceGrant):
                upd = self.extra.receive_grant(msg)
            else:
                assert isinstance(msg, VoiceBeacon)
                upd = self.extra.receive_beacon(peer, msg, now)
        except VoiceError as e:
            self.counters["voice_refused"] += 1
            log.warning("voice message from %s refused: %s", peer, e.en)
            return
        self._after(upd, exclude=peer, body=body, now=now)

    def _after(self, upd: VoiceUpdate, *, exclude: str | None, body: bytes, now: float) -> None:
        if upd.forward or exclude is None:
            self.flood(body, exclude=exclude)
        if upd.extra_changed or upd.source_changed:
            self.sync(now)
        self.m._kick()

    def flood(self, body: bytes, *, exclude: str | None = None) -> None:
        for peer in self._voice_links:
            if peer != exclude:
                self.m.node.send(peer, services.MEDIA, body)

    def link_gone(self, peer: str) -> None:
        self._voice_links.discard(peer)
        self.extra.link_gone(peer)

    def beacon(self, now: float) -> float | None:
        """The extra voice's beacon when due; the role again now and then (the hub may have restarted)."""
        body = self.extra.beacon_due(now)
        if body is not None:
            self.flood(body)
        if now >= self._next_role:
            self._next_role = now + ROLE_REPEAT_S
            self.publish_role()
        return min(self._next_role, self.extra.next_beacon_at() or math.inf)

    # ---- this node's presenter ----------------------------------------------------------------
    def from_presenter(self, data: bytes, now: float) -> bool:
        """Audio of this node's presenter while it speaks voice 1 or 2: relayed as that voice.
        False when the presenter may not speak (the caller counts it refused)."""
        voice = self.mine()
        if not voice or voice_of(data) is None:
            return False
        self.counters["presenter_voice"] = voice
        if data[0] == C.KIND_CHUNK:
            self.counters["voice_chunks_sent"] += 1
        self.m._send_out(self.m.relay.receive(LOCAL, as_voice(data, voice), now))
        self.m._publish_accepted()
        return True

    def presenter_configs(self) -> list[bytes]:
        """The presenter's audio config as the voice it speaks now (sent again on a change)."""
        voice = self.mine()
        if not voice:
            return []
        cfg = self.m._presenter_configs.get((C.TRACK_AUDIO, 0))
        return [as_voice(cfg, voice)] if cfg is not None else []

    # ---- the API ------------------------------------------------------------------------------
    def allow(self, extra: str) -> None:
        """The `floor` API's allow (a member's node id) / disallow (""); the caller checked who asks."""
        now = trio.current_time()
        body, upd = self.extra.issue(extra)
        log.info("voices: extra voice %s", self.m._site(extra) if extra else "withdrawn")
        self._after(upd, exclude=None, body=body, now=now)

    def status(self) -> dict:
        own = self.owners()
        return {**self.extra.status(), "extra_site": self.m._site(self.extra.extra or None),
                "speakers": [{"voice": v, "node": n, "site": self.m._site(n)} for v, n in enumerate(own) if n],
                "mine": self.mine(), "links": sorted(self._voice_links),
                "refused_in_relay": self.m.relay.voices_refused, **self.counters}


def is_voice_audio(body: bytes) -> bool:
    """Audio of voice 1 or 2 (the relay checks it against that voice's own source link)."""
    try:
        return bool(voice_of(body))
    except C.MediaFormatError:
        return False
