"""The relay's per-link records (relay.py): one outgoing link's state, its status line, and the
control messages the relay hands its driver.

Plain data: MediaRelay and its rule mixins (relay_judge.py, relay_feedback.py, relay_voices.py)
read and change these (and `queue_config` skips a config the link already has). This module must
never decide a link's quality, do I/O or read a clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from meshmeet.media.drain import DrainEstimate
from meshmeet.media.feedback import LinkFeedback
from meshmeet.media.linkmodel import RateCap
from meshmeet.media.player_report import PlayerLag
from meshmeet.media.probe import PaddingProbe
from meshmeet.media.relay_feedback import FEEDBACK_PROBE_FACTOR

UPGRADE_STEADY_S = 1.0  # steady time before probing for the next level (first try)


@dataclass(frozen=True)
class Outgoing:
    """A control message to put on `link` now (keyframe requests upstream, to the source)."""

    link: str
    data: bytes


@dataclass(frozen=True)
class LinkStats:
    peer: str
    layer: str  # "high" | "low" | "audio"
    queue_ms: float
    estimate_kbps: float
    audio_request_kbps: int | None = None  # the lower Opus bitrate asked for because of this link
    audio_frame_ms: int | None = None  # the longer Opus frames asked for because of it (None: 20 ms)
    audio_fec_percent: int = 0  # the in-band FEC asked for because of it (packet loss %, 0: none)
    audio_late_dropped: int = 0  # audio chunks dropped here for waiting past the playout budget
    feedback: bool = False  # receiver reports drive this link now (datagram link)
    loss: float = 0.0  # smoothed loss those reports give
    redundancy: int = 0  # earlier audio frames a datagram link repeats in each packet
    player_lag_ms: float = 0.0  # a browser player's lag behind what it was sent (beyond the slack)


@dataclass
class RelayLink:
    """One outgoing link's state: its queues, level, estimates and probes (owned by MediaRelay)."""

    id: str
    simulcast: bool
    level: int
    best_level: int = 0  # never climbs above this (a tablet that wants the low layer only)
    cap: RateCap | None = None
    framing_bytes: int = 0  # what the link adds to each message (counted in every rate)
    audio: deque = field(default_factory=deque)  # (t_enqueued, bytes)
    video: deque = field(default_factory=deque)  # (t_enqueued, bytes, layer, tid, piece size once cut, else 0)
    sending: dict = field(default_factory=dict)  # layer -> decoder continuity established
    eff_tid: dict = field(default_factory=dict)  # layer -> max temporal id forwarded now
    last_change: float = 0.0
    hold_until: float = 0.0
    backoff_s: float = UPGRADE_STEADY_S
    steady_since: float = 0.0
    probe: PaddingProbe | None = None  # running before an upgrade
    drain: DrainEstimate = field(default_factory=DrainEstimate)
    congested_since: float | None = None  # queue above STEADY_QUEUE_MS since then
    over_since: float | None = None  # first judge that saw the queue above DOWNGRADE_QUEUE_MS
    dropped_audio: int = 0  # late audio dropped (the audio deadline)
    feedback: LinkFeedback | None = None  # receiver reports (datagram links)
    player: PlayerLag = field(default_factory=PlayerLag)  # browser player reports
    probe_factor: float = FEEDBACK_PROBE_FACTOR[0]  # datagram links: next probe's multiple of the estimate
    probe_from_bps: float = 0.0  # datagram links: the estimate when the running probe started
    pacer: RateCap | None = None  # paces a datagram link at its feedback estimate
    flush_until: float = 0.0  # the path's own queue is late: media for it dropped until then
    flush_blocked_until: float = 0.0  # reports until then still describe what was sent before the flush
    max_audio_wait_s: float = 0.0  # longest an audio chunk waited here (diagnostics; reset by caller)
    young_carried_bps: float = 0.0  # a young datagram link: the most a clean probe of it carried
    media_since: float | None = None  # the first audio chunk sent on it (a young datagram link's probe and copies wait)
    path_rtt_s: float | None = None  # the path's lowest round trip as the driver's kernel measured it (TCP_INFO)
    voices: bool = False  # the peer takes voices 1 and 2 (relay_voices.py)
    configs_sent: dict = field(default_factory=dict)  # (track, layer) or ("voice", n) -> the config last queued


def queue_config(lk: RelayLink, key: tuple, data: bytes, now: float) -> None:
    """Queue a decoder config for `lk` unless it is the one the link was last given for `key`: the
    holder repeats its configs every few seconds for nodes that reset, and a reset node comes back
    on a new link (which gets every config); a repeat on a link that has it is ~1 KB every 5 s
    (sent as a datagram and over TCP), 250 ms of audio delay on a 32 kbit/s path."""
    if lk.configs_sent.get(key) != data:
        lk.configs_sent[key] = bytes(data)
        lk.audio.append((now, data))
