"""Receiver reports from browser players: what a hall page decoded, checked, and its lag (sans-IO).

Each hall player page sends its node, about once a second over its media WebSocket, one JSON
text message (docs/protocol/media.md, "Player reports"):

  {"type":"report","audioSeq":S,"audioTsUs":T,"decoded":N,"underruns":U,"bufferMs":B,
   "targetMs":G,"jitterMs":J,"missing":M}

`parse_player_report` checks it strictly (only these keys, types and ranges; at most
MAX_REPORT_BYTES); the gateway closes the socket of a page that sends anything else.
`PlayerLag` turns reports into the player's lag: the capture timestamp of the newest audio chunk
handed to its socket minus the newest one it decoded, in two reports in a row. A browser that stopped reading (a stalled
renderer: its data sits in kernel buffers the relay cannot see) shows a growing lag, and so does
one that stops reporting; the relay counts that lag as queue delay, so the ladder sheds it.
This module must never do I/O, read a clock, or raise anything but PlayerReportError.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from meshmeet.errors import MeshmeetError
from meshmeet.media.chunk import KIND_CHUNK, MAX_TIMESTAMP_US

MAX_REPORT_BYTES = 512
MAX_COUNT = 2**53 - 1  # JavaScript's largest exact integer
MAX_MS = 60_000.0
PLAYER_LAG_SLACK_S = 0.5  # normal lag (stats every 100 ms, decode, a loaded host's scheduling) is not congestion
PLAYER_REPORT_STALE_S = 3.0  # a player that reported and then fell silent this long: its silence is lag
MAX_PLAUSIBLE_LAG_S = 30.0  # above this the timestamps are from two different streams (a new source)
_KEYS = {"type", "audioSeq", "audioTsUs", "decoded", "underruns", "bufferMs", "targetMs", "jitterMs", "missing"}


class PlayerReportError(MeshmeetError):
    """A player report that is not what the protocol says."""

    def __init__(self, en: str) -> None:
        super().__init__("Báo cáo của trình phát không hợp lệ", en)


@dataclass(frozen=True)
class PlayerReport:
    audio_seq: int | None  # sequence number of the latest audio chunk received (u32)
    audio_ts_us: int | None  # capture timestamp of the latest decoded audio frame
    decoded: int  # audio frames decoded since the page opened
    underruns: int  # playout underruns since the page opened
    buffer_ms: float  # audio buffered in the playout worklet now
    target_ms: float  # the jitter buffer's target now
    jitter_ms: float  # measured interarrival jitter
    missing: int  # audio chunks never received (sum of sequence gaps)


def _int(d: dict, key: str, hi: int, *, nullable: bool = False) -> int | None:
    v = d[key]
    if v is None and nullable:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
        raise PlayerReportError(f"{key} must be an integer in 0..{hi}")
    return v


def _ms(d: dict, key: str) -> float:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= MAX_MS:
        raise PlayerReportError(f"{key} must be a number of ms in 0..{MAX_MS:.0f}")
    return float(v)


def parse_player_report(text: str | bytes) -> PlayerReport:
    """One report as the page sent it. PlayerReportError for anything else."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    if len(text) > MAX_REPORT_BYTES:
        raise PlayerReportError("report too long")
    try:
        d = json.loads(text)
    except (ValueError, RecursionError):
        raise PlayerReportError("report is not JSON") from None
    if not isinstance(d, dict) or set(d) != _KEYS or d["type"] != "report":
        raise PlayerReportError("report must be an object with exactly the report keys")
    return PlayerReport(_int(d, "audioSeq", 0xFFFFFFFF, nullable=True),
                        _int(d, "audioTsUs", MAX_TIMESTAMP_US, nullable=True),
                        _int(d, "decoded", MAX_COUNT), _int(d, "underruns", MAX_COUNT),
                        _ms(d, "bufferMs"), _ms(d, "targetMs"), _ms(d, "jitterMs"), _int(d, "missing", MAX_COUNT))


def chunk_timestamp_us(data: bytes) -> int | None:
    """The capture timestamp of a chunk (kind 0x01, header checked by the relay), else None."""
    if len(data) < 12 or data[0] != KIND_CHUNK:
        return None
    return (data[11] << 32) | int.from_bytes(data[7:11], "big")


class PlayerLag:
    """One browser link: the newest audio handed to it, and what its player last said it decoded."""

    def __init__(self) -> None:
        self.sent_ts_us: int | None = None  # capture timestamp of the newest audio chunk popped for it
        self.reported_at: float | None = None
        self._lag_s = 0.0  # the smaller of the last two reports' lags: one late report decides nothing
        self._last_lag_s = 0.0

    def sent(self, chunk: bytes) -> None:
        ts = chunk_timestamp_us(chunk)
        if ts is not None:
            self.sent_ts_us = ts

    def report(self, now: float, decoded_ts_us: int | None) -> None:
        self.reported_at = now
        lag = 0.0
        if decoded_ts_us is not None and self.sent_ts_us is not None:
            lag = (self.sent_ts_us - decoded_ts_us) / 1e6
            lag = lag if 0.0 <= lag <= MAX_PLAUSIBLE_LAG_S else 0.0
        self._lag_s, self._last_lag_s = min(lag, self._last_lag_s), lag

    def lag_s(self, now: float) -> float:
        """The lag beyond PLAYER_LAG_SLACK_S (0 for a page that never reported: an older page or a
        test client); a page silent for PLAYER_REPORT_STALE_S counts its silence as lag."""
        if self.reported_at is None:
            return 0.0
        lag = self._lag_s
        silent = now - self.reported_at
        if silent > PLAYER_REPORT_STALE_S:
            lag = max(lag, silent)
        return max(0.0, lag - PLAYER_LAG_SLACK_S)
