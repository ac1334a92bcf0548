"""How the relay treats a datagram link whose receiver reports arrive (sans-IO, part of relay.py).

`FeedbackRules` is mixed into MediaRelay (relay.py owns the links, their queues and the ladder):
it takes each report (`link_feedback`) into the link's LinkFeedback (feedback.py) and, while
reports arrive, lets them judge the link instead of its relay queue: shed the levels the estimate
cannot carry, plan the audio the source should send (audio_rate.py), pace the link at the
estimate (bursts wait in the relay, where audio goes first), drop its media while the path holds a
queue longer than the playout budget (flush), size padding probes in steps and decide them from
reports that saw them, and tell the datagram driver how many earlier audio chunks to repeat
(`audio_redundancy`). Rules and figures: docs/protocol/media.md, "Audio on weak links".

It uses MediaRelay's state and helpers (`_links`, `_rates`, `_audio_rate`, `audio_deadline_s`,
`_level_bps`, `_fits`, `_downgrade`, `_set_level`, `_end_probe`, `_audio_load`). It must never do
I/O, read a clock, or change a link that gets no reports.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from meshmeet.media import chunk as C
from meshmeet.media.audio_rate import plan_audio
from meshmeet.media.feedback import APP_LIMITED_CLEAN_S, MIN_ESTIMATE_BPS, LinkFeedback
from meshmeet.media.ladder import AUDIO_LEVEL, UPGRADE_HEADROOM
from meshmeet.media.linkmodel import RateCap
from meshmeet.media.probe import PROBE_S

if TYPE_CHECKING:
    from meshmeet.media.relay_link import Outgoing, RelayLink

log = logging.getLogger(__name__)

FIRST_AUDIO_DECREASE = 0.5  # a link at audio-only whose first reports show congestion: estimate at most this x sent
FLUSH_MAX_S = 2.0  # a datagram link's reported queue beyond the budget: its media is dropped this long at most
REDUNDANCY_LOSS = (0.0, 0.02)  # smoothed loss from which a datagram link sends 1, 2 earlier audio frames again
# (2 from 2 %: with one copy, 3 % random loss loses p^2 ~ 0.09 % of the frames, 4 of 1,500 in a 60 s row on C,
# as many as the UDP + redundancy baseline or more; a second copy, where it fits, makes it p^3)
# (one copy always, where it fits: random 4G loss comes before any report can show it, as the
# UDP + redundancy baseline of scripts/bench/weaklink.py does; a copy costs ~17 kbit/s)...
SECOND_COPY_AFTER_LOSS_S = 20.0  # ...and 2 while a report in this long showed loss without a queue
# (random loss: a full modem queue's drops come with high delay), in the room the level leaves (video is
# not shed for it; on an app-limited path the copies probe the room as the first does): at 1 % (profile B)
# a report counts ~12 datagrams, so the smoothed loss sits under 2 % most of the time, and two losses
# in a row then lost a frame (B's audio-only rows: 1-2 frames in 3,000 in 6 runs of 7, under the
# baseline's one copy; with two, a frame needs three in a row). Still only where the copy fits
REDUNDANCY_YOUNG_LOSS = (0.01, 0.08)  # ...but on a link whose room is not known yet, only as loss shows
REDUNDANCY_KNOWN_AFTER_S = 3.0  # audio has flowed this long without congestion: room enough for a copy
# (counted from the first audio chunk, not in reports: a link's keepalive probes bring reports long
# before any media, and a copy from the first frame on doubled E's audio to ~65 kbit/s on 32)
COPY_PROBE_WAIT_MAX_S = 160.0  # audio copies probing an app-limited estimate: the longest clean wait after failures
COPY_PROBE_PASS_S = 5.0  # ...copies flowing this long without a queue: the path carries them (the wait resets)
FEEDBACK_BACKOFF_MAX_S = 30.0  # failed probes double the wait up to this (a failed probe fills the path's queue)
FEEDBACK_PROBE_FACTOR = (1.25, 2.0)  # a datagram link probes at this multiple of its estimate: the
# low end after a failed probe, x1.5 after each clean one...
FEEDBACK_PROBE_EXTRA_BPS = 32_000.0  # ...and at most the low end of it plus this (a wide link's probe queues little)
FEEDBACK_STEP_WAIT_S = 1.0  # after a clean probe, the next step is tried this soon
YOUNG_LAN_RTT_S = 0.1  # a datagram link whose reports give a round trip at least this long starts at audio-only
# (C, D, E: 160-300 ms; B's 80 ms and a LAN start with video as before: a full run with 20 ms here had
# B climb for 12 s, its probes queueing in B's 400 ms buffer, p95 245 ms against 12 ms)
YOUNG_LAN_REPORTS = 3  # ...the lowest of at least this many (one report's RTT on a loaded machine says little)
YOUNG_PROBE_FACTOR = 1.5  # a young link's first probe: at most this multiple of what it sends (E: ~45 kbit/s
# for 0.6 s queues ~0.25 s in a 32 kbit/s modem, and the reports then give the estimate)...
YOUNG_STEP_FACTOR = 3.0  # ...each clean one: the next at this multiple of what it carried (A-D: video in ~3 steps)
YOUNG_STEP_WAIT_S = 0.3  # ...this soon
YOUNG_PACE_FACTOR = 1.5  # a young link beyond a LAN is paced at this x its level's measured rate (keyframe bursts)
YOUNG_PROBE_AFTER_S = 1.0  # a datagram link without an estimate probes for video only after this much
# media: audio alone overfills a path narrower than itself (E: 16 kbit/s Opus in 20 ms datagrams is
# ~44 kbit/s on the wire) and so gives the estimate within ~1 s, before a probe floods its queue


class FeedbackRules:
    """Mixed into MediaRelay: see the module docstring."""

    _links: dict[str, Any]
    _rates: Any
    _audio_rate: Any
    audio_deadline_s: float
    feedback_refused: int

    def link_feedback(self, link: str, now: float, loss_fraction: float, jitter_s: float,
                      delay_trend_s: float, rtt_s: float) -> None:
        """A receiver report for datagram link `link` (every ~200-500 ms): loss share, interarrival
        jitter, queueing delay (one-way delay minus its recent minimum), RTT, all in seconds.
        Ladder moves and audio requests follow at the next tick(). Values out of range are
        refused and counted (`feedback_refused`); an unknown link is ignored."""
        lk = self._links.get(link)
        if lk is None:
            return
        if lk.feedback is None:
            lk.feedback = LinkFeedback()
        sent = lk.drain.sent_bps(now) if isinstance(now, (int, float)) and math.isfinite(now) else 0.0
        unknown = lk.feedback.estimate_bps is None
        if not lk.feedback.report(now, loss_fraction, jitter_s, delay_trend_s, rtt_s, sent):
            self.feedback_refused += 1
        elif unknown and lk.feedback.estimate_bps is not None and lk.level == AUDIO_LEVEL and lk.media_since is not None:
            # the first congestion a link shows, with audio alone on it: the path is narrower than
            # the audio, and its modem queue fills while the request for less audio travels; asking
            # at once for what half of it carries drains that queue within ~1 s (E: 16 kbit/s in
            # 20 ms datagrams is ~44 kbit/s on 32), and the estimate climbs back if that was too little
            lk.feedback.estimate_bps = max(MIN_ESTIMATE_BPS, min(lk.feedback.estimate_bps, FIRST_AUDIO_DECREASE * sent))
        elif lk.media_since is None:
            # no audio sent on the link yet: its reports are about keepalive probes, and one delay
            # spike among them set the estimate to the 8 kbit/s floor before the meeting began
            lk.feedback.forget_estimate()

    def set_path_rtt(self, link: str, rtt_s: float | None) -> None:
        """The driver's lowest round trip for `link`'s path (young-link rules below) (the kernel's TCP min RTT), or None."""
        lk = self._links.get(link)
        if lk is not None:
            lk.path_rtt_s = rtt_s

    def set_link_framing(self, link: str, framing_bytes: int) -> None:
        """What `link` adds per message (a datagram link's headers): counted in all its rates."""
        lk = self._links.get(link)
        if lk is not None and 0 <= framing_bytes <= 1500:
            lk.framing_bytes = framing_bytes

    def audio_redundancy(self, link: str, now: float) -> int:
        """How many earlier audio frames a datagram driver should repeat with each audio frame on
        `link` (RFC 2198-style; 0..2): as its reports show loss, and only while the link's
        estimate has room for the copies on top of its level (or the estimate is only what the sender
        offered: `LinkFeedback.app_limited`)."""
        lk = self._links.get(link)
        fb = lk.feedback if lk is not None else None
        if fb is None or not fb.active(now):
            return 0
        depth = self._wanted_redundancy(fb)
        young = lk.media_since is None or now - lk.media_since < REDUNDANCY_KNOWN_AFTER_S
        second = 0  # the second copy after recent random loss, where it fits
        if fb.estimate_bps is None and young and not self._lan_like(lk, fb):
            depth = sum(fb.loss >= x for x in REDUNDANCY_YOUNG_LOSS)  # a new link beyond a LAN: it may be narrow
        elif depth and now - fb.last_random_loss_at <= SECOND_COPY_AFTER_LOSS_S:
            second = len(REDUNDANCY_LOSS)
        wanted, depth = depth, max(depth, second)
        copy_bps = self._copy_bps()
        if depth and fb.estimate_bps is not None and copy_bps > 0:
            if not self._copy_probe(lk, fb, now):
                room = UPGRADE_HEADROOM * fb.estimate_bps - self._level_bps(lk, lk.level)
                depth = min(depth, max(0, int(room // copy_bps)))
            elif lk.copy_probe_wait_s > APP_LIMITED_CLEAN_S:
                # an app-limited estimate: the copies probe the path's room, the second one too
                # unless a copy probe queued lately (a narrow lossy path then probes with one)
                depth = wanted
        return depth

    @staticmethod
    def _copy_probe(lk: RelayLink, fb: LinkFeedback, now: float) -> bool:
        """Whether copies may flow beyond the estimate's room now: an app-limited estimate says
        nothing of the room, so the copies probe it (a path that cannot carry them shows overuse,
        which makes the estimate binding again). A probe that made the path queue doubles the clean
        time the next one waits for (COPY_PROBE_WAIT_MAX_S at most): on a 32 kbit/s modem one every
        ~12 s held the audio ~250 ms each time (profile E). One clean for COPY_PROBE_PASS_S resets it."""
        if lk.copy_probe_at is not None:
            if fb.last_high_at >= lk.copy_probe_at:  # the path queued while the copies flowed
                lk.copy_probe_wait_s = min(COPY_PROBE_WAIT_MAX_S, 2 * lk.copy_probe_wait_s)
                lk.copy_probe_at = None
            elif now - lk.copy_probe_at >= COPY_PROBE_PASS_S:
                lk.copy_probe_wait_s = APP_LIMITED_CLEAN_S
        limited = fb.app_limited(now) and now - fb.last_high_at >= lk.copy_probe_wait_s
        if limited and lk.copy_probe_at is None:
            lk.copy_probe_at = now
        elif not limited:
            lk.copy_probe_at = None
        return limited

    @staticmethod
    def _wanted_redundancy(fb: LinkFeedback) -> int:
        """The copies video must leave room for (the smoothed loss's); audio_redundancy may add a
        second one after recent loss where the level leaves room."""
        return sum(fb.loss >= x for x in REDUNDANCY_LOSS)

    def _copy_bps(self) -> float:
        """What one redundant copy of the audio stream costs: the chunks and a 2 B length each."""
        return self._rates.audio_bps() + self._rates.audio_messages_per_s() * 2 * 8

    def _pacer(self, lk: RelayLink, now: float) -> RateCap | None:
        """A datagram link whose reports gave an estimate is paced at it (at a probe's rate while
        one runs), so that bursts (keyframes) wait in this relay, where audio goes first, and not
        in the path's queue, where audio would wait behind them."""
        fb = self._active_feedback(lk, now)
        if fb is None or (fb.estimate_bps is None and self._lan_like(lk, fb)):
            lk.pacer = None
            return None
        if fb.estimate_bps is None:
            # a young link beyond a LAN: its room is not known, but a keyframe sent as one burst
            # waits in its bottleneck's queue with the audio behind it (profile C, 1 Mbit/s: ~30 KB
            # of keyframes every 2 s held the hall page's audio 300 ms); at YOUNG_PACE_FACTOR x
            # what its level measures, the burst waits here instead, where audio goes first
            rate = YOUNG_PACE_FACTOR * self._level_bps(lk, lk.level)
        else:
            rate = fb.estimate_bps
        rate = max(rate, MIN_ESTIMATE_BPS, lk.probe.target_bps if lk.probe is not None else 0.0)
        if lk.pacer is None:
            lk.pacer = RateCap(rate, lk.framing_bytes)
        lk.pacer.rate_bps, lk.pacer.framing_bytes = rate, lk.framing_bytes
        return lk.pacer

    def _flush(self, lk: RelayLink) -> None:
        """Drop queued media for a link whose path holds a queue longer than the playout budget:
        whatever goes in now comes out late, and sending nothing drains that queue (configs stay)."""
        kept = [item for item in lk.audio if item[1][0] != C.KIND_CHUNK]
        lk.dropped_audio += len(lk.audio) - len(kept)
        lk.audio.clear()
        lk.audio.extend(kept)
        lk.video.clear()
        lk.sending.clear()  # video restarts at a keyframe

    def _active_feedback(self, lk: RelayLink, now: float) -> LinkFeedback | None:
        fb = lk.feedback
        return fb if fb is not None and fb.active(now) else None

    def _video_estimate(self, fb: LinkFeedback) -> float:
        """The estimate the ladder's levels must fit: audio redundancy comes before video."""
        assert fb.estimate_bps is not None
        return max(0.0, fb.estimate_bps - self._wanted_redundancy(fb) * self._copy_bps() / UPGRADE_HEADROOM)

    def _judge_feedback(self, lk: RelayLink, fb: LinkFeedback, now: float) -> list[Outgoing] | None:
        """A datagram link whose reports gave an estimate: shed what it cannot carry, plan its
        audio; None to go on with the queue-delay rules."""
        assert fb.estimate_bps is not None
        if lk.level == AUDIO_LEVEL:
            self._audio_rate.plan(lk.id, plan_audio(fb.estimate_bps, self._audio_load(lk)))
        if (fb.delay_s > self.audio_deadline_s and fb.last_report_at is not None
                and fb.last_report_at >= lk.flush_blocked_until):
            # the path's own queue (a modem's) is longer than the playout budget: stop feeding it
            flush_s = min(FLUSH_MAX_S, fb.delay_s - self.audio_deadline_s / 2)
            lk.flush_until = now + flush_s
            lk.flush_blocked_until = now + flush_s + fb.delay_s + fb.rtt_s
            log.debug("link %s: path queue %.0f ms: dropping its media for %.0f ms", lk.id, fb.delay_s * 1000, flush_s * 1000)
        if not fb.steady(now):
            lk.steady_since = now
        if lk.probe is not None and not fb.clean_since(lk.probe.started_at):
            # our own probe filled the queue: back to the estimate before it, and let it drain
            fb.own_probe_failed(now, lk.probe_from_bps)
            self._end_probe(lk, now, ok=False)
            lk.probe_factor = FEEDBACK_PROBE_FACTOR[0]
        est = self._video_estimate(fb)
        if lk.level < AUDIO_LEVEL and now >= lk.hold_until and self._level_bps(lk, lk.level) > est:
            if lk.probe is not None:
                self._end_probe(lk, now, ok=False)
            log.debug("link %s: reports give %.0f bit/s, below its level", lk.id, est)
            return self._downgrade(lk, est, now)
        return None

    def _feedback_probe_done(self, lk: RelayLink, fb: LinkFeedback, achieved: float, now: float) -> list[Outgoing]:
        """A probe on a datagram link ended with a report that saw it: clean reports raise the estimate."""
        probe = lk.probe
        assert probe is not None
        ok = probe.passed(achieved) and fb.clean_since(probe.started_at)
        lk.probe = None
        lk.steady_since = now
        if not ok:
            lk.backoff_s = min(FEEDBACK_BACKOFF_MAX_S, lk.backoff_s * 2)
            lk.probe_factor = FEEDBACK_PROBE_FACTOR[0]
            return []
        fb.probe_passed(achieved)
        lk.backoff_s = FEEDBACK_STEP_WAIT_S  # the link carried more: try the next step soon
        lk.probe_factor = min(FEEDBACK_PROBE_FACTOR[1], lk.probe_factor * 1.5)
        # a clean probe at (about) the next level's full rate, its headroom included, carried it
        redundancy_bps = self._wanted_redundancy(fb) * self._copy_bps()
        full = probe.target_bps >= 0.95 * (self._level_bps(lk, lk.level - 1) + redundancy_bps) / UPGRADE_HEADROOM
        if self._fits(lk, lk.level - 1, self._video_estimate(fb) / (UPGRADE_HEADROOM if full else 1.0)):
            return self._set_level(lk, lk.level - 1, now)
        return []  # a step on the way (a probe asks for probe_factor x the estimate at most)

    @staticmethod
    def _young_wide_area(lk: "RelayLink", fb: LinkFeedback) -> bool:
        """A datagram link above audio-only, no audio sent on it yet, no estimate, whose path has a
        round trip beyond a LAN's (YOUNG_LAN_RTT_S): it should start at audio-only. The path's round
        trip is the driver's kernel figure (`set_path_rtt`) where it gives one: the reports' own RTT
        includes how late each node's loop ran, 100 ms and more on loopback on a loaded machine."""
        if lk.level >= AUDIO_LEVEL or lk.media_since is not None or fb.estimate_bps is not None:
            return False
        if lk.path_rtt_s is not None:
            return lk.path_rtt_s >= YOUNG_LAN_RTT_S
        return fb.reports >= YOUNG_LAN_REPORTS and math.isfinite(fb.min_rtt_s) and fb.min_rtt_s >= YOUNG_LAN_RTT_S

    @staticmethod
    def _lan_like(lk: "RelayLink", fb: LinkFeedback) -> bool:
        """A path whose round trip is under YOUNG_LAN_RTT_S (the kernel's figure, else the reports'
        lowest of at least YOUNG_LAN_REPORTS): it starts with video, so a ~17 kbit/s audio copy from
        its first frame is nothing to it (profile B lost 4 of 3,000 frames to 1 % loss in the 3 s a
        copy waited; the UDP + redundancy baseline lost none)."""
        if lk.path_rtt_s is not None:
            return lk.path_rtt_s < YOUNG_LAN_RTT_S
        return fb.reports >= YOUNG_LAN_REPORTS and fb.min_rtt_s < YOUNG_LAN_RTT_S

    def _young(self, lk: "RelayLink", now: float) -> bool:
        """A datagram link (reports arrive) whose room is not known yet (no estimate)."""
        fb = self._active_feedback(lk, now)
        return fb is not None and fb.estimate_bps is None

    def _young_probe_bps(self, lk: "RelayLink", level_probe_bps: float, now: float) -> float:
        """A young link's probe: the next level, but at most YOUNG_PROBE_FACTOR x what it sends (a
        full-level probe, ~180 kbit/s for 0.6 s, overfilled a 32 kbit/s modem queue by 1.5 s)."""
        if lk.young_carried_bps > 0:   # after a clean step: YOUNG_STEP_FACTOR x what it carried
            return min(level_probe_bps, YOUNG_STEP_FACTOR * lk.young_carried_bps)
        return min(level_probe_bps, YOUNG_PROBE_FACTOR * max(lk.drain.sent_bps(now), MIN_ESTIMATE_BPS))

    def _young_may_probe(self, lk: "RelayLink", now: float) -> bool:
        """A datagram link whose reports gave no estimate yet may probe for video: media has
        flowed on it for YOUNG_PROBE_AFTER_S (its audio had the time to show a narrow path)."""
        return lk.media_since is not None and now - lk.media_since >= YOUNG_PROBE_AFTER_S

    def _young_probe_done(self, lk: "RelayLink", fb: LinkFeedback, achieved: float, now: float) -> list[Outgoing]:
        """A probe on a datagram link without an estimate has stopped: a report about packets sent
        at its end decides (what the relay sent is no measure: UDP takes anything). Clean (no
        high delay, no heavy loss since it started): one level up; else the probe failed."""
        probe = lk.probe
        assert probe is not None
        if fb.last_report_at is None or fb.last_report_at < probe.started_at + PROBE_S + fb.rtt_s:
            return []  # wait for a report that saw the probe
        ok = probe.passed(achieved) and fb.clean_since(probe.started_at)
        full = probe.target_bps >= 0.95 * self._level_bps(lk, lk.level - 1) / UPGRADE_HEADROOM
        self._end_probe(lk, now, ok=ok)
        if ok and not full:
            # a step: the path carried this much without a queue; the next step soon, and bigger
            lk.young_carried_bps = max(lk.young_carried_bps, achieved)
            lk.backoff_s = YOUNG_STEP_WAIT_S
            return []
        return self._set_level(lk, lk.level - 1, now) if ok else []

    def _feedback_probe_bps(self, lk: "RelayLink", fb: LinkFeedback, video_est: float, level_probe_bps: float) -> float:
        """A datagram link's probe: the next level and its audio redundancy, in bounded steps."""
        assert fb.estimate_bps is not None
        lk.probe_from_bps = fb.estimate_bps
        return min(level_probe_bps + fb.estimate_bps - video_est, lk.probe_factor * fb.estimate_bps,
                   FEEDBACK_PROBE_FACTOR[0] * fb.estimate_bps + FEEDBACK_PROBE_EXTRA_BPS)

