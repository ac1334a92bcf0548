"""The relay's rules for voices 1 and 2 (mixed into MediaRelay; sans-IO).

Voice 0 is the floor holder's audio and travels exactly as before (relay.py: `source`). Voices 1
(the chair) and 2 (the extra voice) each have their own source link, set by the driver from what
the floor, the tree and the voice beacons say (`set_voice_source`): a voice's chunks and configs
are taken only from that link (anything else is counted in `voices_refused` and dropped: a hall
that is not allowed cannot inject a voice, a relay cannot send another node's voice back up) and
are queued in the audio queue of every other link that knows voices (`set_link_voices`: a peer
whose capabilities name "voices/1", every browser). So a voice enters at its origin node and
spreads along the tree away from it, never back. They count in the links' audio load (the ladder
keeps them at the audio-only level, like voice 0), face the same audio deadline and the same
repeat filter (per voice: the stream byte is part of the key).

With `voices_follow_source` (the web gateway's hub, fed by its node) every voice comes from the
source link. This module must never do I/O, read a clock, or raise anything but MediaFormatError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshmeet.media import chunk as C
from meshmeet.media.relay_link import queue_config
from meshmeet.media.voices import voice_of

if TYPE_CHECKING:
    from meshmeet.media.relay_link import Outgoing, RelayLink


class VoiceRules:
    """Mixin for MediaRelay: needs `_links`, `_rates`, `_accepted`, `source`, `_repeated_audio`."""

    voices_follow_source: bool
    voices_refused: int
    _voice_src: dict[int, str]
    _voice_configs: dict[int, bytes]

    def _init_voices(self, follow_source: bool) -> None:
        self.voices_follow_source = follow_source
        self.voices_refused = 0  # voice chunks and configs from a link that is not that voice's source
        self._voice_src = {}
        self._voice_configs = {}

    def set_voice_source(self, voice: int, link: str | None, *, new_origin: bool = False) -> None:
        """Voice 1 or 2 now comes from `link` (None: nowhere). `new_origin`: another site speaks
        it now, so its cached decoder config is forgotten."""
        if link is None:
            self._voice_src.pop(voice, None)
        else:
            self._voice_src[voice] = link
        if new_origin:
            self._voice_configs.pop(voice, None)
            for lk in self._links.values():  # type: ignore[attr-defined]
                lk.configs_sent.pop(("voice", voice), None)

    def voice_source(self, voice: int) -> str | None:
        return self.source if self.voices_follow_source else self._voice_src.get(voice)  # type: ignore[attr-defined]

    def set_link_voices(self, link: str, on: bool, now: float) -> None:
        """Whether `link`'s peer knows voices 1 and 2 (its capabilities arrived after link up)."""
        lk = self._links.get(link)  # type: ignore[attr-defined]
        if lk is None or lk.voices == on:
            return
        lk.voices = on
        if on:
            self._late_voice_configs(lk, now)

    def _late_voice_configs(self, lk: "RelayLink", now: float) -> None:
        if lk.voices:  # a late joiner: each voice's decoder config first
            for voice in sorted(self._voice_configs):
                queue_config(lk, ("voice", voice), self._voice_configs[voice], now)

    def _receive_voice(self, link: str, data: bytes, voice: int, now: float) -> list["Outgoing"]:
        if link != self.voice_source(voice):
            self.voices_refused += 1
            return []
        if data[0] == C.KIND_CONFIG:
            C.parse(data)
            self._voice_configs[voice] = bytes(data)
        else:
            C.peek_chunk(data)
            if self._repeated_audio(data):  # type: ignore[attr-defined]
                self.audio_repeats += 1  # type: ignore[attr-defined]
                return []
            self.chunks_in += 1  # type: ignore[attr-defined]
            self._rates.add_audio(len(data), now)  # type: ignore[attr-defined]
        if self._accepted is not None:  # type: ignore[attr-defined]
            self._accepted.append(bytes(data))  # type: ignore[attr-defined]
        for lk in self._links.values():  # type: ignore[attr-defined]
            if lk.id != link and lk.voices:
                if data[0] == C.KIND_CONFIG:
                    queue_config(lk, ("voice", voice), data, now)
                else:
                    lk.audio.append((now, data))
        return []


def is_extra_voice(data: bytes) -> bool:
    """An audio chunk or config of voice 1 or 2 (MediaFormatError for a bad stream byte)."""
    return bool(voice_of(data))
