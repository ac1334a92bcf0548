"""How the relay judges a link from its own queue (sans-IO, part of relay.py): when it is
congested, when it may climb, and the moves along the quality ladder.

`QueueRules` is mixed into MediaRelay. Each tick, `_judge` looks at one link: a datagram link's
receiver reports decide first (relay_feedback.py); otherwise the age of the oldest queued message
(or a browser player's lag) is the congestion signal. Over DOWNGRADE_QUEUE_MS (confirmed) the
link sheds to the level its drain rate carries, or at audio-only asks the source for less audio
(audio_rate.py); steady for its backoff, it probes with padding (probe.py) and climbs when the
next level fits. Failed probes and quick relapses double the backoff.

It uses MediaRelay's state (`_links`, `_rates`, `_audio_rate`, `audio_deadline_s`) and its
`_request_for_level`. It must never do I/O, read a clock, or touch a link's queues beyond
clearing stale video on a downgrade.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from meshmeet.media import chunk as C
from meshmeet.media.audio_rate import AudioLoad, fec_percent, plan_audio
from meshmeet.media.ladder import AUDIO_LEVEL, KEYFRAME_HOL_MAX_S, LEVELS, UPGRADE_HEADROOM
from meshmeet.media.probe import PROBE_S, PaddingProbe
from meshmeet.media.relay_feedback import FEEDBACK_BACKOFF_MAX_S
from meshmeet.media.relay_link import UPGRADE_STEADY_S

if TYPE_CHECKING:
    from meshmeet.media.relay_link import Outgoing, RelayLink

log = logging.getLogger(__name__)

DOWNGRADE_QUEUE_MS = 150.0  # a head-of-queue older than this means the link is congested...
DOWNGRADE_CONFIRM_S = 0.05  # ...when it still is this much later (a process stall drains at once)
STEADY_QUEUE_MS = 60.0  # below this the link counts as steady
URGENT_QUEUE_SHARE = 0.6  # audio-only and queued this share of the budget: ask for less audio sooner
DOWNGRADE_HOLD_S = 0.3  # after a downgrade, let the queue drain before judging again
UPGRADE_BACKOFF_MAX_S = 3.0  # failed probes double the wait up to this (datagram links: relay_feedback.py)


class QueueRules:
    """Mixed into MediaRelay: see the module docstring."""

    _links: dict[str, Any]
    _rates: Any
    _audio_rate: Any
    audio_deadline_s: float

    def _queue_ms(self, lk: RelayLink, now: float) -> float:
        """Queue delay: the oldest queued message's age, or a browser player's lag if longer. A
        paced datagram link allows its video a keyframe's wait (the pacer, not congestion)."""
        heads = [q[0][0] for q in (lk.audio, lk.video) if q]
        if lk.pacer is not None and lk.video:
            heads = [t for t in (lk.audio[0][0] if lk.audio else None,
                                 lk.video[0][0] + KEYFRAME_HOL_MAX_S) if t is not None]
        queued = max(0.0, (now - min(heads)) * 1000) if heads else 0.0
        return max(queued, lk.player.lag_s(now) * 1000)

    def _audio_load(self, lk: RelayLink) -> AudioLoad:
        return AudioLoad(self._rates.audio_bps(), self._rates.audio_messages_per_s(), lk.framing_bytes)

    def _level_bps(self, lk: RelayLink, level: int) -> float:
        return self._rates.link_bps(level, simulcast=lk.simulcast, framing_bytes=lk.framing_bytes)

    def _fits(self, lk: RelayLink, level: int, est: float) -> bool:
        return self._rates.fits(level, est, simulcast=lk.simulcast, framing_bytes=lk.framing_bytes)

    def _judge(self, lk: RelayLink, now: float) -> list[Outgoing]:
        fb = self._active_feedback(lk, now)
        if fb is not None and self._young_wide_area(lk, fb):
            # before its first audio: a datagram link of unknown room beyond a LAN starts at
            # audio-only and climbs as its reports allow (a narrow path, profile E, would otherwise
            # start with a flood of video in its modem queue)
            return self._set_level(lk, AUDIO_LEVEL, now)
        self._audio_rate.set_fec(lk.id, fec_percent(fb.loss) if fb is not None else 0)
        fb_est = fb.estimate_bps if fb is not None else None
        if fb is not None and fb_est is not None:
            acted = self._judge_feedback(lk, fb, now)
            fb_est = self._video_estimate(fb)
            if acted is not None:
                return acted
        qms = self._queue_ms(lk, now)
        est = lk.drain.estimate(now) if fb_est is None else fb_est
        if fb is not None and fb_est is None:
            # a datagram link whose reports gave no estimate yet: UDP takes whatever is sent, so
            # what the relay sent says nothing of the path (it once 'passed' a 358 kbit/s probe on
            # 32 kbit/s); only a probe that reports saw clean climbs it (`_young_probe_done`)
            est = 0.0
        if qms <= STEADY_QUEUE_MS:
            lk.congested_since = None
        elif lk.congested_since is None:
            lk.congested_since = now - qms / 1000  # the head has waited since then
        if qms <= DOWNGRADE_QUEUE_MS:
            lk.over_since = None
        elif lk.over_since is None:
            lk.over_since = now
        if qms > DOWNGRADE_QUEUE_MS and now >= lk.hold_until and now - lk.over_since >= DOWNGRADE_CONFIRM_S:
            if lk.probe is not None:
                self._end_probe(lk, now, ok=False)
            if lk.level < AUDIO_LEVEL:
                return self._downgrade(lk, lk.drain.rate_since(lk.congested_since, now), now)
            self._squeeze_audio(lk, lk.drain.rate_since(lk.congested_since, now), now,
                                urgent=qms > URGENT_QUEUE_SHARE * self.audio_deadline_s * 1000)
            return []
        if qms > STEADY_QUEUE_MS:
            lk.steady_since = now
            if lk.probe is not None:
                self._end_probe(lk, now, ok=False)
            return []
        if lk.probe is not None:
            achieved = lk.probe.achieved_bps(now)
            if achieved is not None and fb is not None and fb_est is None:
                return self._young_probe_done(lk, fb, achieved, now)
            if achieved is not None and fb is not None and fb_est is not None:
                # padding has stopped; a report about packets sent at the probe's end decides
                if fb.last_report_at is not None and fb.last_report_at >= lk.probe.started_at + PROBE_S + fb.rtt_s:
                    return self._feedback_probe_done(lk, fb, achieved, now)
                return []  # wait for a report that saw the probe
            if achieved is not None:
                ok = lk.probe.passed(achieved)
                if ok:
                    lk.drain.estimate_bps = max(lk.drain.estimate_bps, achieved)
                    ok = self._fits(lk, lk.level - 1, lk.drain.estimate_bps / UPGRADE_HEADROOM)
                self._end_probe(lk, now, ok=ok)
                if ok:
                    return self._set_level(lk, lk.level - 1, now)
            return []
        if lk.level > lk.best_level and now - lk.steady_since >= lk.backoff_s:
            target = self._level_bps(lk, lk.level - 1)
            if target <= 0 or (LEVELS[lk.level - 1].layer is not None and target <= self._level_bps(lk, AUDIO_LEVEL)):
                return []  # no video is flowing: nothing to climb to
            if est > 0 and self._fits(lk, lk.level - 1, est):
                return self._set_level(lk, lk.level - 1, now)
            probe_bps = target / UPGRADE_HEADROOM
            if fb is not None and fb.estimate_bps is None:
                if not self._young_may_probe(lk, now):
                    return []  # let the audio show a path narrower than itself first
                probe_bps = self._young_probe_bps(lk, probe_bps, now)
            if fb is not None and fb.estimate_bps is not None:
                # a datagram link: room for its audio redundancy too; in steps (a queue beyond costs audio delay)
                probe_bps = self._feedback_probe_bps(lk, fb, fb_est, probe_bps)
            lk.probe = PaddingProbe(probe_bps, now)
        return []

    def _backoff_max(self, lk: RelayLink, now: float) -> float:
        """Datagram links whose reports gave an estimate back off longer (their probes fill the path)."""
        fb = self._active_feedback(lk, now)
        return FEEDBACK_BACKOFF_MAX_S if fb is not None and fb.estimate_bps is not None else UPGRADE_BACKOFF_MAX_S

    def _end_probe(self, lk: RelayLink, now: float, *, ok: bool) -> None:
        lk.probe = None
        lk.steady_since = now
        if not ok:
            lk.backoff_s = min(self._backoff_max(lk, now), lk.backoff_s * 2)

    def _downgrade(self, lk: RelayLink, est: float, now: float) -> list[Outgoing]:
        new = lk.level + 1
        if est > 0:
            new = AUDIO_LEVEL
            for i in range(lk.level + 1, AUDIO_LEVEL):
                if self._fits(lk, i, est):
                    new = i
                    break
        if now - lk.last_change < 3 * UPGRADE_BACKOFF_MAX_S:
            lk.backoff_s = min(self._backoff_max(lk, now), lk.backoff_s * 2)  # the last upgrade failed
        lk.video.clear()  # stale; the decoder restarts at a keyframe of the new layer
        # (a chunk cut mid-way is dropped by the receiver when the next first piece comes)
        lk.sending.clear()
        lk.hold_until = now + DOWNGRADE_HOLD_S
        if est > 0:
            lk.drain.estimate_bps = est
        log.debug("link %s: %s -> %s (queue, estimate %.0f bit/s)", lk.id, LEVELS[lk.level].name, LEVELS[new].name, est)
        out = self._set_level(lk, new, now)
        if new == AUDIO_LEVEL:
            if self._active_feedback(lk, now) is not None and est > 0:
                self._audio_rate.plan(lk.id, plan_audio(est, self._audio_load(lk)))
            else:
                self._squeeze_audio(lk, est, now)
        return out

    def _squeeze_audio(self, lk: RelayLink, drain_bps: float, now: float, *, urgent: bool = False) -> None:
        """`lk` is at audio-only and congested: audio_rate.py decides whether to want less audio."""
        self._audio_rate.squeeze(lk.id, drain_bps, self._audio_load(lk), now, urgent=urgent)

    def _set_level(self, lk: RelayLink, level: int, now: float) -> list[Outgoing]:
        if level < lk.level and now - lk.last_change > 10 * UPGRADE_BACKOFF_MAX_S:
            lk.backoff_s = UPGRADE_STEADY_S  # it held for long: be quick to climb again
        lk.level = level
        if level < AUDIO_LEVEL:
            self._audio_rate.video_fits(lk.id)  # audio at the source's own preset again
        lk.last_change = now
        lk.steady_since = now
        return self._request_for_level(lk, now)

    def process_stalled(self, since: float, now: float) -> None:
        """The driver was due at `since` and runs only at `now`: audio queued since then waited
        for it, not for its link (whatever was queued before keeps its time), and counts from now."""
        for lk in self._links.values():
            i = len(lk.audio)
            while i and lk.audio[i - 1][0] >= since:
                i -= 1
                lk.audio[i] = (now, lk.audio[i][1])

    def _trim_audio(self, lk: RelayLink, now: float) -> None:
        """The audio deadline: chunks older than the playout budget are dropped (configs stay)."""
        kept = []
        while lk.audio and now - lk.audio[0][0] > self.audio_deadline_s:
            item = lk.audio.popleft()
            if item[1][0] == C.KIND_CHUNK:
                lk.dropped_audio += 1
            else:
                kept.append(item)
        lk.audio.extendleft(reversed(kept))

    def take_max_audio_wait_ms(self, link: str) -> float:
        """The longest audio wait on `link` since the last call (then starts over)."""
        lk = self._links[link]
        w, lk.max_audio_wait_s = lk.max_audio_wait_s, 0.0
        return round(w * 1000, 1)
