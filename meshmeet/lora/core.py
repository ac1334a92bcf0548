"""The sans-IO LoRa node: flood, dedupe, fragments, acks with retries, and the airtime budget.

Feed it bytes from the modem with `receive(data, now)`, ask `next_transmit(now)` for the next
frame the radio may send, call `handle_timers(now)` at `next_deadline(now)`. Sending a message
queues its frames by priority (alerts, then control and acks, then tallies and attendance, then
beacons and digests); a frame leaves only when it fits the rolling airtime budget, so the core
never transmits past it. This module must never do I/O, sleep or read a clock: `now` is passed
in (seconds, monotonic), and randomness (flood jitter) comes from the `rng` handed in.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Callable, Container, Mapping

from ..errors import MeshmeetError
from .airtime import AirtimeBudget, LoraParams, time_on_air_s
from .fragment import Reassembler, split
from .frames import MAX_COUNTER, MAX_HOPS, Frame, FrameError, FrameKeys, decode_frame, encode_frame
from .events import Acked, AirtimeReport, Delivered, Event, GaveUp
from .messages import (
    ACKED_KINDS, BROADCAST, PRIORITY_OF, Ack, Kind, Message, MessageError, Priority,
    decode_message, encode_message, kind_of,
)
from .replay import ReplayWindow

log = logging.getLogger(__name__)

DEFAULT_HOP_LIMIT = 6
DEFAULT_MAX_RETRIES = 4
MAX_QUEUE_FRAMES = 256
RETRY_BACKOFF = 1.5
MAX_DELIVERED_REMEMBERED = 4096
AUTHORITY_KINDS = frozenset({Kind.ALERT, Kind.CONTROL, Kind.SLIDE})


@dataclass(frozen=True)
class LoraPeers:
    """What the roster tells the LoRa core: Ed25519 keys by short id, and who may alert/control.

    Both may be live views of the roster (the node passes mappings that look members up)."""

    public_keys: Mapping[int, bytes]
    authorities: Container[int]


@dataclass(frozen=True)
class CoreConfig:
    my_id: int
    params: LoraParams
    budget_s_per_hour: float
    mtu_bytes: int
    extra_air_bytes: int = 0  # bytes the driver adds on the air (E22 length prefix)
    hop_limit: int = DEFAULT_HOP_LIMIT
    max_retries: int = DEFAULT_MAX_RETRIES
    ack_timeout_s: float | None = None  # None: derived from hop limit and frame airtime
    forward_jitter_s: float | None = None  # None: two MTU-frame airtimes
    listen_guard_s: float | None = None  # None: one MTU-frame airtime

    def frame_airtime_s(self, frame_bytes: int) -> float:
        return time_on_air_s(frame_bytes + self.extra_air_bytes, self.params)

    @property
    def jitter_s(self) -> float:
        if self.forward_jitter_s is not None:
            return self.forward_jitter_s
        return 2 * self.frame_airtime_s(self.mtu_bytes)

    @property
    def guard_s(self) -> float:
        """After hearing a frame, stay quiet 1-2 guards: its sender may be draining a queue back to
        back, and a half-duplex radio that talks then cannot hear it (no carrier sense over AT)."""
        if self.listen_guard_s is not None:
            return self.listen_guard_s
        return self.frame_airtime_s(self.mtu_bytes)

    @property
    def base_ack_timeout_s(self) -> float:
        if self.ack_timeout_s is not None:
            return self.ack_timeout_s
        per_hop = self.frame_airtime_s(self.mtu_bytes) * 2 + self.jitter_s
        return 2 * self.hop_limit * per_hop + 5.0


@dataclass(frozen=True)
class Heard:
    """The last new, authentic frame from a source: when, and how many relays it went through
    (0: heard directly; beacons are never relayed, so a beacon always means a neighbour)."""

    at: float
    relays: int


@dataclass
class _Out:
    priority: int
    seq: int
    not_before: float
    data: bytes
    airtime_s: float
    arms_msg: int | None = None  # own message id whose ack timer starts when this frame leaves


@dataclass
class _Pending:
    message: Message
    dest: int
    expect: set[int]
    timeout_s: float
    retries: int = 0
    deadline: float | None = None
    acked_by: set[int] = field(default_factory=set)


class LoraCore:
    def __init__(
        self,
        config: CoreConfig,
        keys: FrameKeys,
        peers: LoraPeers,
        *,
        sign: Callable[[bytes], bytes] | None,
        verify: Callable[[bytes, bytes, bytes], bool],
        next_counter: int = 0,
        rng: random.Random | None = None,
        replay_state: dict[int, tuple[int, int]] | None = None,
    ) -> None:
        if not 0 <= config.hop_limit <= MAX_HOPS:
            raise ValueError("hop limit out of range")
        self.config = config
        self._keys = keys
        self._peers = peers
        self._sign = sign
        self._verify = verify
        self._counter = next_counter
        self._rng = rng or random.Random(config.my_id)
        self._replay = ReplayWindow(replay_state)
        self._reassembler = Reassembler()
        self._budget = AirtimeBudget(config.budget_s_per_hour)
        self._queue: list[_Out] = []
        self._seq = 0
        self._busy_until = float("-inf")
        self._quiet_until = float("-inf")
        self._pending: dict[int, _Pending] = {}
        self._delivered: OrderedDict[tuple[int, int], None] = OrderedDict()
        self.frames_sent = 0
        self.airtime_sent_s = 0.0
        self.heard: dict[int, Heard] = {}
        self.stats: dict[str, int] = {k: 0 for k in (
            "received", "forged", "duplicate", "bad_message", "unauthorized", "forwarded", "dropped_queue_full", "dropped_over_budget",
        )}

    # -- state to persist --------------------------------------------------------------
    @property
    def next_counter(self) -> int:
        """Persist this (with a margin) before transmitting: counters must never repeat."""
        return self._counter

    def replay_state(self) -> dict[int, tuple[int, int]]:
        return self._replay.export()

    def set_keys(self, keys: FrameKeys) -> None:
        """Switch to a new commune LoRa key (frames already queued keep the old one)."""
        self._keys = keys

    # -- sending ---------------------------------------------------------------------------
    def send(self, message: Message, now: float, *, dest: int = BROADCAST,
             ack_from: frozenset[int] | None = None) -> int:
        """Queue a message; returns its id. Acked kinds are retried until `ack_from` (default:
        dest when unicast, nobody when broadcast) have acked, or retries run out."""
        kind = kind_of(message)
        msg_id = self._counter
        self._enqueue_message(message, kind, msg_id, dest, ref=None, now=now)
        if kind in ACKED_KINDS:
            expect = set(ack_from) if ack_from is not None else ({dest} if dest != BROADCAST else set())
            expect.discard(self.config.my_id)
            if expect:
                self._pending[msg_id] = _Pending(message, dest, expect, self.config.base_ack_timeout_s)
        return msg_id

    def _enqueue_message(self, message: Message, kind: Kind, msg_id: int, dest: int,
                         ref: int | None, now: float, not_before: float | None = None) -> None:
        plaintext = encode_message(message, source=self.config.my_id, msg_id=msg_id, dest=dest,
                                   ref=ref, sign=self._sign)
        chunks = split(plaintext, self.config.mtu_bytes)
        first = self._counter
        if first + len(chunks) - 1 > MAX_COUNTER:
            raise MeshmeetError("Hết bộ đếm khung LoRa: cần khóa LoRa mới cho xã",
                                "LoRa frame counter exhausted: the commune needs a new LoRa key")
        self._counter += len(chunks)
        hops = 0 if kind is Kind.BEACON else self.config.hop_limit
        last = len(chunks) - 1
        for i, chunk in enumerate(chunks):
            frame = Frame(int(kind), hops, self.config.my_id, first + i, chunk, None if last == 0 else (i, last))
            self._push(PRIORITY_OF[kind], now if not_before is None else not_before,
                       encode_frame(frame, self._keys), msg_id if i == last else None)

    def _push(self, priority: int, not_before: float, data: bytes, arms: int | None = None) -> None:
        airtime = self.config.frame_airtime_s(len(data))
        if airtime > self._budget.budget_s:  # could never be sent: do not let it block the queue
            self.stats["dropped_over_budget"] += 1
            return
        if len(self._queue) >= MAX_QUEUE_FRAMES:
            worst = max(self._queue, key=lambda o: (o.priority, o.seq))
            if worst.priority <= priority:
                self.stats["dropped_queue_full"] += 1
                return
            self._queue.remove(worst)
            self.stats["dropped_queue_full"] += 1
        self._seq += 1
        self._queue.append(_Out(priority, self._seq, not_before, data, airtime, arms))

    # -- receiving -------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> list[Event]:
        """Handle one frame from the modem. Forged, replayed and malformed frames are dropped."""
        guard = self.config.guard_s
        self._quiet_until = max(self._quiet_until, now + guard * self._rng.uniform(1.0, 2.0))
        try:
            frame = decode_frame(data, self._keys)
        except FrameError:
            self.stats["forged"] += 1
            return []
        if frame.source == self.config.my_id or not self._replay.check_and_mark(frame.source, frame.counter):
            self.stats["duplicate"] += 1
            return []
        self.stats["received"] += 1
        try:
            kind = Kind(frame.kind)
        except ValueError:
            self.stats["bad_message"] += 1
            return []
        relays = 0 if kind is Kind.BEACON else max(0, self.config.hop_limit - frame.hops)
        self.heard[frame.source] = Heard(now, relays)
        done = self._reassembler.add(frame, now)
        env = None
        if done is not None:
            first, plaintext = done
            try:
                env = decode_message(kind, plaintext, source=frame.source, first_counter=first,
                                     public_key_of=self._peers.public_keys.get, verify=self._verify)
            except MessageError:
                self.stats["bad_message"] += 1
        # Flood onwards, except a message addressed to this node (nobody beyond us needs it).
        if frame.hops > 0 and kind is not Kind.BEACON and not (env is not None and env.dest == self.config.my_id):
            relay = encode_frame(replace(frame, hops=frame.hops - 1), self._keys)
            self._push(PRIORITY_OF[kind], now + self._rng.uniform(0, self.config.jitter_s), relay)
            self.stats["forwarded"] += 1
        if env is None:
            return []
        if kind in AUTHORITY_KINDS and frame.source not in self._peers.authorities:
            self.stats["unauthorized"] += 1
            return []
        msg_id = first if env.ref is None else env.ref
        if isinstance(env.message, Ack):
            return self._on_ack(env.message, frame.source, env.dest)
        if env.dest not in (self.config.my_id, BROADCAST):
            return []
        events: list[Event] = []
        key = (frame.source, msg_id)
        if key not in self._delivered:
            self._delivered[key] = None
            if len(self._delivered) > MAX_DELIVERED_REMEMBERED:
                self._delivered.popitem(last=False)
            events.append(Delivered(frame.source, msg_id, env.dest, env.message))
        if kind in ACKED_KINDS:
            ack = Ack(frame.source, msg_id)
            # jittered like a forward, so acks from neighbours do not collide with the flood
            self._enqueue_message(ack, Kind.ACK, self._counter, frame.source, None, now,
                                  not_before=now + self._rng.uniform(0, self.config.jitter_s))
        return events

    def _on_ack(self, ack: Ack, by: int, dest: int) -> list[Event]:
        if dest != self.config.my_id or ack.of_source != self.config.my_id:
            return []
        p = self._pending.get(ack.of_id)
        if p is None or by in p.acked_by:
            return []
        p.acked_by.add(by)
        p.expect.discard(by)
        if not p.expect:
            del self._pending[ack.of_id]
        return [Acked(ack.of_id, by)]

    # -- transmitting ----------------------------------------------------------------------
    def _head(self, now: float) -> _Out | None:
        ready = [o for o in self._queue if o.not_before <= now]
        return min(ready, key=lambda o: (o.priority, o.seq), default=None)

    def next_transmit(self, now: float) -> bytes | None:
        """The next frame to put on the air now, or None (radio busy, nothing ready, no budget)."""
        if now < self._busy_until or now < self._quiet_until:
            return None
        head = self._head(now)
        if head is None or not self._budget.can_send(head.airtime_s, now):
            return None
        self._budget.record(head.airtime_s, now)
        self._queue.remove(head)
        self._busy_until = now + head.airtime_s
        self.frames_sent += 1
        self.airtime_sent_s += head.airtime_s
        if head.arms_msg is not None and head.arms_msg in self._pending:
            p = self._pending[head.arms_msg]
            # randomised so that two sources retrying on the same schedule do not collide forever
            p.deadline = now + head.airtime_s + p.timeout_s * self._rng.uniform(1.0, 1.5)
        return head.data

    # -- timers ----------------------------------------------------------------------------
    def handle_timers(self, now: float) -> list[Event]:
        """Retry unacked messages whose timer ran out; give up after max_retries; expire fragments."""
        self._reassembler.expire(now)
        events: list[Event] = []
        for msg_id, p in list(self._pending.items()):
            if p.deadline is None or p.deadline > now:
                continue
            if p.retries >= self.config.max_retries:
                del self._pending[msg_id]
                events.append(GaveUp(msg_id, frozenset(p.expect)))
                continue
            p.retries += 1
            p.timeout_s *= RETRY_BACKOFF
            p.deadline = None
            self._enqueue_message(p.message, kind_of(p.message), msg_id, p.dest, ref=msg_id, now=now)
        return events

    def next_deadline(self, now: float) -> float | None:
        """When to call handle_timers / next_transmit again (absolute time), or None."""
        times: list[float] = []
        head = self._head(now)
        if head is not None:
            fit = self._budget.earliest_fit(head.airtime_s, now)
            if fit is not None:
                times.append(max(fit, self._busy_until, self._quiet_until))
        later = [o.not_before for o in self._queue if o.not_before > now]
        if later:
            times.append(max(min(later), self._busy_until, self._quiet_until))
        times += [p.deadline for p in self._pending.values() if p.deadline is not None]
        expiry = self._reassembler.next_expiry()
        if expiry is not None:
            times.append(expiry)
        return min(times, default=None)

    # -- reports ---------------------------------------------------------------------------
    def airtime_report(self, now: float) -> AirtimeReport:
        queued = {p.name.lower(): 0 for p in Priority}
        for o in self._queue:
            queued[Priority(o.priority).name.lower()] += 1
        return AirtimeReport(self._budget.budget_s, self._budget.used_s(now), queued,
                             self.frames_sent, self.airtime_sent_s)

    def budget_ledger(self, now: float) -> list[tuple[float, float]]:
        return [(u.start, u.airtime_s) for u in self._budget.uses(now)]

    @property
    def pending(self) -> dict[int, frozenset[int]]:
        """Own messages still waiting for acks: msg_id -> who has not acked yet."""
        return {m: frozenset(p.expect) for m, p in self._pending.items()}
