"""When to (re)start the ingest worker, and what to tell the chair: a sans-IO state machine.

States: `idle` (no ingest), `starting` (worker spawned, nothing decoded yet), `live` (media
flows), `retrying` (the worker ended: the upstream dropped, or failed to open; it is started again
after a backoff of 1 s doubling to 30 s, 1 s again after a run that stayed live ≥ 10 s; a
listening ingest waits for its encoder again after 0.5 s). The last error keeps its Vietnamese and
English text for status, the CLI and /chair. Each spawn gets the next config generation (so
players reconfigure) and a timestamp base after the last chunk seen (timestamps never go back).
Pure: time comes in as `now`; this module must never spawn, sleep or read a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from .source import IngestSource

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
LISTEN_RESTART_S = 0.5
STABLE_S = 10.0  # a run live this long resets the backoff
LIVE_QUIET_S = 3.0  # no media from the worker this long: not live any more
TS_GAP_US = 1_000_000  # the next run's timestamps start this far after the last chunk's
GENERATION_FIRST = 100  # away from the browser presenter's 1, 2, …: a switch always reconfigures players


@dataclass(frozen=True)
class Spawn:
    """Start a worker with this spec (worker.py's SPEC JSON)."""

    spec: dict


class Supervisor:
    def __init__(self) -> None:
        self.source: IngestSource | None = None
        self.state = "idle"
        self.error: dict | None = None
        self.restarts = 0
        self.runs = 0
        self._next_spawn_at: float | None = None
        self._backoff = BACKOFF_MIN_S
        self._generation = GENERATION_FIRST - 1
        self._last_ts_us = -TS_GAP_US
        self._run_live_at: float | None = None
        self._media_at = -1e18
        self.info: dict = {}
        self.stats: dict = {}
        self.chunks = 0

    # ----- commands ------------------------------------------------------------------------
    def start(self, source: IngestSource, now: float) -> None:
        self.source, self.state, self.error = source, "starting", None
        self.restarts, self._backoff, self.info, self.stats = 0, BACKOFF_MIN_S, {}, {}
        self._next_spawn_at = now

    def stop(self) -> IngestSource | None:
        """Stop (the last run's error and stream info go with it); returns what was being relayed."""
        stopped = self.source
        self.source, self.state, self._next_spawn_at = None, "idle", None
        self.error, self.info, self.stats = None, {}, {}
        return stopped

    # ----- events from the driver -------------------------------------------------------------
    def poll(self, now: float) -> Spawn | None:
        """A Spawn when a worker should start now (the driver has none running)."""
        if self.source is None or self._next_spawn_at is None or now < self._next_spawn_at:
            return None
        self._next_spawn_at = None
        self._generation = (self._generation + 1) & 0xFF
        self.runs += 1
        self._run_live_at = None
        if self.state == "retrying":
            self.restarts += 1
        self.state = "starting" if self.state != "retrying" else "retrying"
        return Spawn({"source": self.source.to_json(), "generation": self._generation,
                      "ts_base_us": self._last_ts_us + TS_GAP_US})

    def next_spawn_at(self) -> float | None:
        return self._next_spawn_at

    def on_media(self, ts_us: int | None, now: float) -> None:
        """A media message from the worker (ts_us: a chunk's timestamp, None for a config)."""
        self._media_at = now
        if ts_us is not None:
            self.chunks += 1
            self._last_ts_us = max(self._last_ts_us, ts_us)
        if self._run_live_at is None:
            self._run_live_at = now
        if self.source is not None and self.state != "live":
            self.state, self.error = "live", None

    def on_status(self, event: dict, now: float) -> None:
        kind = event.get("event")
        if self.source is None:  # a stopped worker's last words: nothing to show any more
            return
        if kind == "opened":
            self.info = {k: event.get(k) for k in ("video", "audio", "codec", "first_source_s", "ts_base_us")}
        elif kind == "stats":
            self.stats = {k: v for k, v in event.items() if k != "event"}
        elif kind == "error":
            self.error = {k: str(event.get(k, "")) for k in ("code", "vi", "en", "detail")}
        elif kind == "ended":
            self.error = {"code": "ended", "vi": "Nguồn đã ngừng phát; đang chờ nguồn trở lại",
                          "en": "the source stopped; waiting for it to return", "detail": str(event.get("detail", ""))}

    def on_exit(self, now: float, pusher_refused: bool = False) -> None:
        """The worker process ended (for any reason). `pusher_refused`: the stream-key gate refused a
        pusher during this run (FFmpeg had its handshake, then lost it): wait for the encoder again."""
        if self.source is None:
            self.state = "idle"
            return
        stable = self._run_live_at is not None and now - self._run_live_at >= STABLE_S
        if stable:
            self._backoff = BACKOFF_MIN_S
        refused = pusher_refused and self.source.listen and self._run_live_at is None
        if refused:
            self.error = {"code": "pusher_refused", "vi": "Đã từ chối một luồng đẩy tới không đúng khoá; đang chờ bộ mã hoá",
                          "en": "refused a push without the stream key; waiting for the encoder", "detail": ""}
        delay = LISTEN_RESTART_S if self.source.listen and (stable or self._run_live_at is not None or refused) \
            else self._backoff
        if not stable:
            self._backoff = min(BACKOFF_MAX_S, self._backoff * 2)
        self.state = "retrying"
        self._next_spawn_at = now + delay

    def live(self, now: float) -> bool:
        """Media came from the worker recently: it, not the browser presenter, is the local source."""
        return self.state == "live" and now - self._media_at < LIVE_QUIET_S

    def status(self, now: float) -> dict:
        return {"state": self.state if self.state != "live" or self.live(now) else "stalled",
                "source": self.source.shown if self.source else None,
                "listen": self.source.listen if self.source else None,
                "error": self.error, "restarts": self.restarts, "chunks": self.chunks,
                "generation": self._generation if self.runs else None,
                "next_try_in_s": (round(max(0.0, self._next_spawn_at - now), 1)
                                  if self._next_spawn_at is not None and self.state == "retrying" else None),
                **self.info, "worker": self.stats}
