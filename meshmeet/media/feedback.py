"""One datagram link's rate estimate from its receiver reports, in the spirit of GCC (sans-IO).

On a datagram (UDP) tree link the receiving node reports every ~200-500 ms: the share of packets
lost, the interarrival jitter, the queueing delay it sees (one-way delay minus the minimum seen
recently: the "delay trend") and the round-trip time. What the network does decides, not a model
of it:

- overuse: the queueing delay is above OVERUSE_DELAY_S + OVERUSE_JITTER_FACTOR x jitter and not
  falling, in OVERUSE_CONFIRM_REPORTS reports in a row (one jitter spike decides nothing), or
  OVERUSE_SURE_DELAY_S above that in one report. The
  estimate drops to DECREASE_FACTOR x what was sent, less what the queue grew by: a queue whose
  delay rises by `slope` seconds per second while we send S drains at S / (1 + slope);
- after a decrease, reports still describe packets sent before it: overuse lowers the estimate
  again only after the RTT plus the queueing delay then seen plus DECREASE_SETTLE_S;
- loss above LOSS_DECREASE_FRACTION, in the latest report and smoothed, with overuse (a full
  modem queue drops), or smoothed loss above LOSS_SEVERE_FRACTION whatever the delay
  (a policer): the estimate drops to what got through, S x (1 - loss), at once. Random loss
  without queueing (radio; a report on a narrow link counts few packets, so one loss reads as
  10-25 %) does not lower the rate: it is repaired by FEC and redundancy instead;
- until reports first show congestion the estimate is unknown (None): the link is not limited by
  it, and climbs by the relay's padding probes as before;
- steady (no overuse, low loss, INCREASE_AFTER_S since the last decrease): the estimate grows by
  INCREASE_PER_S per second, never past INCREASE_CAP_FACTOR x what was really sent; a padding probe
  that went through clean (relay.py, probe.py) raises it to what the probe carried.
- reports that stop for FEEDBACK_STALE_S leave the link to the relay's queue-delay rules.

The relay (relay.py) owns one LinkFeedback per link that gets reports, tells it with each report
what the link sent (its drain meter), and turns the estimate into ladder moves and audio encoding requests. This module only keeps
the books of one link; it must never choose a quality level, encode bytes, do I/O or read a clock,
and never raises on bad report values (they are refused and counted by the caller).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FEEDBACK_STALE_S = 2.0  # no report for this long: the link is judged by its relay queue again
OVERUSE_DELAY_S = 0.05  # queueing delay above this (plus jitter, below) may be overuse
OVERUSE_JITTER_FACTOR = 2.0  # ...jitter alone moves the delay by about this many jitters
DELAY_FALLING_S = 0.005  # a report whose queueing delay fell by more than this is draining
OVERUSE_CONFIRM_REPORTS = 2  # reports in a row that must show overuse (~0.4-1 s)...
OVERUSE_SURE_DELAY_S = 0.15  # ...or one whose queueing delay is this much above the threshold (no jitter does that)
DECREASE_FACTOR = 0.85  # overuse: the estimate drops to this share of what the link drained
DECREASE_SETTLE_S = 0.25  # after a decrease, overuse lowers it again only after the RTT, the queue seen and this
LOSS_DECREASE_FRACTION = 0.10  # loss above this with a high queueing delay: a full queue drops
LOSS_SEVERE_FRACTION = 0.25  # smoothed loss above this lowers the estimate whatever the delay (a policer)
INCREASE_PER_S = 0.08  # steady: multiplicative growth per second
INCREASE_AFTER_S = 1.0  # ...only this long after the last decrease
INCREASE_CAP_FACTOR = 1.5  # never grow past this multiple of what the link really sent
LOSS_EWMA_WEIGHT = 0.2  # smoothing of the reported loss (a report counts few packets on a narrow link)
MAX_SLOPE_GAP_S = 2.0  # the delay slope is read only between reports at most this far apart
MIN_ESTIMATE_BPS = 8_000.0  # below anything useful: the floor of the estimate
APP_LIMITED_CLEAN_S = 10.0  # pinned at its cap this long with nothing high: the sender, not the path, limits it
APP_LIMITED_SHARE = 0.9  # ...pinned = at least this share of the cap
MAX_RTT_S = 60.0
MAX_DELAY_S = 60.0


@dataclass
class LinkFeedback:
    """Receiver reports of one link, and the rate estimate they give (`estimate_bps`)."""

    estimate_bps: float | None = None  # None until reports first show congestion: no limit known
    loss: float = 0.0  # smoothed loss fraction
    last_loss: float = 0.0  # loss in the latest report
    jitter_s: float = 0.0
    delay_s: float = 0.0  # queueing delay in the latest report
    rtt_s: float = 0.0
    overuse: bool = False  # the latest report confirmed overuse
    last_report_at: float | None = None
    last_decrease_at: float = -math.inf
    last_high_at: float = -math.inf  # latest report with the delay above threshold or heavy loss
    last_random_loss_at: float = -math.inf  # latest report with loss but no high delay
    last_sent_bps: float = 0.0  # what the link sent, as of the latest report
    reports: int = 0
    min_rtt_s: float = math.inf  # the lowest round trip reported (a loaded machine delays some reports)
    _over_count: int = 0
    _settle_until: float = -math.inf

    # ---- reports -------------------------------------------------------------------------------
    def report(self, now: float, loss_fraction: float, jitter_s: float, delay_trend_s: float,
               rtt_s: float, sent_bps: float) -> bool:
        """One receiver report, with what the link sent over the last second (`sent_bps`, its
        framing included); False (and nothing changes) if a value is not a finite number in range."""
        vals = (now, loss_fraction, jitter_s, delay_trend_s, rtt_s, sent_bps)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in vals):
            return False
        if not (0.0 <= loss_fraction <= 1.0 and 0.0 <= jitter_s <= MAX_DELAY_S
                and 0.0 <= delay_trend_s <= MAX_DELAY_S and 0.0 <= rtt_s <= MAX_RTT_S):
            return False
        if self.last_report_at is not None and now < self.last_report_at or sent_bps < 0:
            return False  # out of order
        sent = sent_bps
        self.last_sent_bps = sent
        prev_at, prev_delay = self.last_report_at, self.delay_s
        gap = None if prev_at is None else now - prev_at
        self.loss = (1 - LOSS_EWMA_WEIGHT) * self.loss + LOSS_EWMA_WEIGHT * loss_fraction
        self.last_loss, self.jitter_s, self.delay_s, self.rtt_s = loss_fraction, jitter_s, delay_trend_s, rtt_s
        self.last_report_at = now
        self.reports += 1
        if rtt_s > 0:
            self.min_rtt_s = min(self.min_rtt_s, rtt_s)

        threshold = OVERUSE_DELAY_S + OVERUSE_JITTER_FACTOR * jitter_s
        falling = gap is not None and delay_trend_s < prev_delay - DELAY_FALLING_S
        high = delay_trend_s > threshold
        self._over_count = self._over_count + 1 if high and not falling else 0
        sure = high and not falling and delay_trend_s > threshold + OVERUSE_SURE_DELAY_S
        self.overuse = self._over_count >= OVERUSE_CONFIRM_REPORTS or sure
        settled = now >= self._settle_until  # reports now describe what was sent after the last decrease
        over = self.overuse and settled
        heavy_loss = loss_fraction > LOSS_DECREASE_FRACTION and (
            (over and self.loss > LOSS_DECREASE_FRACTION) or self.loss > LOSS_SEVERE_FRACTION)
        if high or heavy_loss:
            self.last_high_at = now
        elif loss_fraction > 0:
            self.last_random_loss_at = now  # loss without a queue: radio, not our own congestion

        known = self.estimate_bps
        est = math.inf if known is None else known
        if heavy_loss:
            est = min(est * (1 - 0.5 * loss_fraction), max(sent * (1 - loss_fraction), MIN_ESTIMATE_BPS))
        if over:
            slope = 0.0
            if gap is not None and 0 < gap <= MAX_SLOPE_GAP_S:
                slope = max(0.0, (delay_trend_s - prev_delay) / gap)
            est = min(est, DECREASE_FACTOR * sent / (1 + slope))
            self._over_count = 0  # the next decrease needs overuse confirmed again
        if known is None or est < known:
            if math.isfinite(est):  # the first decrease makes the estimate known
                self.estimate_bps = max(MIN_ESTIMATE_BPS, est)
                self.last_decrease_at = now
                self._settle_until = now + rtt_s + delay_trend_s + DECREASE_SETTLE_S
        elif (not high and not heavy_loss and gap is not None
              and now - self.last_decrease_at >= INCREASE_AFTER_S):
            cap = INCREASE_CAP_FACTOR * sent
            if self.estimate_bps < cap:
                grown = self.estimate_bps * (1 + INCREASE_PER_S * min(gap, MAX_SLOPE_GAP_S))
                self.estimate_bps = min(cap, grown)
        return True

    def forget_estimate(self) -> None:
        """Back to no known estimate (what the reports said was not about the media)."""
        self.estimate_bps = None
        self.last_decrease_at = -math.inf
        self._settle_until = -math.inf

    def probe_passed(self, achieved_bps: float) -> None:
        """A padding probe carried `achieved_bps` with clean reports: the link carries that much."""
        if self.estimate_bps is not None and math.isfinite(achieved_bps):
            self.estimate_bps = max(self.estimate_bps, achieved_bps)

    def own_probe_failed(self, now: float, estimate_before_bps: float) -> None:
        """Our padding probe made the queue: the estimate before it stands, and the reports about
        packets sent while it ran (until the queue it made has drained) lower nothing."""
        if self.estimate_bps is not None:
            self.estimate_bps = max(self.estimate_bps, estimate_before_bps)
        self._settle_until = max(self._settle_until, now + self.rtt_s + self.delay_s + DECREASE_SETTLE_S)
        self._over_count = 0

    # ---- judgement ------------------------------------------------------------------------------
    def active(self, now: float) -> bool:
        """Reports are arriving (the link is judged by them)."""
        return self.last_report_at is not None and now - self.last_report_at <= FEEDBACK_STALE_S

    def clean_since(self, t: float) -> bool:
        """No report since `t` showed a high delay or heavy loss."""
        return self.last_high_at < t

    def app_limited(self, now: float) -> bool:
        """The estimate is only what the sender offered: pinned near its cap (a multiple of what was
        sent) with nothing high and no decrease for APP_LIMITED_CLEAN_S. One false overuse (jitter)
        on an audio-only link would otherwise keep a 1 Mbit/s path looking like 30 kbit/s for good,
        since the estimate never grows past what the audio sends."""
        if self.estimate_bps is None or not self.active(now):
            return False
        pinned = self.estimate_bps >= APP_LIMITED_SHARE * INCREASE_CAP_FACTOR * self.last_sent_bps
        return (pinned and now - self.last_high_at >= APP_LIMITED_CLEAN_S
                and now - self.last_decrease_at >= APP_LIMITED_CLEAN_S)

    def steady(self, now: float) -> bool:
        """Good for climbing: active, nothing high in the latest report, no decrease for a while."""
        return (self.active(now) and self.last_high_at != self.last_report_at
                and now - self.last_decrease_at >= INCREASE_AFTER_S)
