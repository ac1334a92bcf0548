"""LinkConnection: one end of an encrypted link as a sans-IO state machine (h11-style).

Feed it received bytes and the time; it returns events, bytes to send and its next timer
deadline. It runs the handshake (handshake.py), then frames (frames.py), answers pings,
sends keepalive pings, measures RTT, declares a silent peer dead and closes cleanly.
It must never read a clock, touch a socket, await, or let hostile input raise anything:
bad input becomes ConnectionClosed(error=True), and after that all input is ignored.
"""

from __future__ import annotations

import logging

from ..membership.identity import KeyPair
from .events import (
    CLEAN_CODES,
    CloseCode,
    ConnectionClosed,
    Event,
    HandshakeComplete,
    MessageReceived,
    Peer,
    Role,
    RttSample,
    State,
    reason_of,
)
from .frames import MAX_FRAME_BYTES, FrameError, FrameOpener, FrameSealer, FrameType
from .handshake import (
    MSG1_BYTES,
    MSG2_BYTES,
    MSG3_BYTES,
    HandshakeError,
    InitiatorHandshake,
    Lookup,
    ResponderHandshake,
)

log = logging.getLogger(__name__)

KEEPALIVE_S = 5.0
DEAD_AFTER_KEEPALIVES = 3
HANDSHAKE_TIMEOUT_S = 10.0
PING_TOKEN_BYTES = 4
MAX_CLOSE_TEXT_BYTES = 120
RTT_SMOOTHING = 1 / 8  # weight of a new sample in the smoothed RTT (as TCP's SRTT)


class LinkStateError(RuntimeError):
    """The caller used the connection in a state that does not allow it (a bug in the driver)."""


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class LinkConnection:
    """One end of a link. Not thread-safe; one driver task feeds it."""

    def __init__(
        self,
        *,
        role: Role,
        me: KeyPair,
        my_short_id: int,
        commune_id: bytes,
        lookup: Lookup,
        now: float,
        keepalive_s: float = KEEPALIVE_S,
        dead_after_s: float | None = None,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
        ephemeral_secret: bytes | None = None,
        expected_peer: int | None = None,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        if keepalive_s <= 0 or handshake_timeout_s <= 0:
            raise ValueError("timers must be positive")
        if not 1 <= max_frame_bytes <= MAX_FRAME_BYTES:
            raise ValueError(f"max_frame_bytes must be within 1..{MAX_FRAME_BYTES}")
        self.role = role
        self.keepalive_s = keepalive_s
        self.dead_after_s = DEAD_AFTER_KEEPALIVES * keepalive_s if dead_after_s is None else dead_after_s
        self.max_frame_bytes = max_frame_bytes
        self._handshake: InitiatorHandshake | ResponderHandshake
        if role is Role.INITIATOR:
            self._handshake = InitiatorHandshake(
                me=me,
                my_short_id=my_short_id,
                commune_id=commune_id,
                lookup=lookup,
                ephemeral_secret=ephemeral_secret,
                expected_peer=expected_peer,
            )
        else:
            self._handshake = ResponderHandshake(
                me=me, my_short_id=my_short_id, commune_id=commune_id, lookup=lookup, ephemeral_secret=ephemeral_secret
            )
        self.state = State.HANDSHAKING
        self.peer: Peer | None = None
        self.rtt_s: float | None = None
        self.smoothed_rtt_s: float | None = None
        self.bytes_received = 0
        self.bytes_sent = 0
        self.messages_received = 0
        self.messages_sent = 0
        self._started = role is Role.RESPONDER
        self._awaiting = MSG1_BYTES if role is Role.RESPONDER else MSG2_BYTES
        self._handshake_deadline = now + handshake_timeout_s
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._sealer: FrameSealer | None = None
        self._opener: FrameOpener | None = None
        self._last_received = now
        self._next_ping_at = now
        self._ping_token = 0
        self._ping_sent_at: float | None = None

    # ----- inputs -------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Initiator: queue msg1. Responder: nothing to do (it speaks second)."""
        if self.role is Role.RESPONDER:
            return
        if self._started:
            raise LinkStateError("start() called twice")
        self._started = True
        assert isinstance(self._handshake, InitiatorHandshake)
        self._queue(self._handshake.msg1)

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Bytes from the peer (b"" means end of stream); the events they complete."""
        if self.state is State.CLOSED:
            return []
        self.bytes_received += len(data)
        events: list[Event] = []
        try:
            if not self._started:
                raise _Refused(CloseCode.PROTOCOL_ERROR, "data before start")
            if not data:
                raise _Refused(CloseCode.CONNECTION_LOST, self._eof_reason())
            self._last_received = now
            self._inbox += data
            self._process(events, now)
        except (_Refused, HandshakeError, FrameError) as refusal:
            events.append(self._fail(refusal.code, refusal.reason))
        return events

    def handle_timer(self, now: float) -> list[Event]:
        """Run whatever timers are due at `now` (safe to call at any time)."""
        if self.state is State.HANDSHAKING and now >= self._handshake_deadline:
            return [self._fail(CloseCode.HANDSHAKE_TIMEOUT, "handshake timeout")]
        if self.state is not State.ESTABLISHED:
            return []
        if now - self._last_received >= self.dead_after_s:
            return [self._fail(CloseCode.TIMEOUT, "peer not responding")]
        if self._ping_sent_at is None and now >= self._next_ping_at:
            self._ping_token = (self._ping_token + 1) & 0xFFFFFFFF
            self._ping_sent_at = now
            self._next_ping_at = now + self.keepalive_s
            self._send_frame(FrameType.PING, self._ping_token.to_bytes(PING_TOKEN_BYTES, "big"))
        return []

    def next_deadline(self) -> float | None:
        """When handle_timer must next be called, or None once closed."""
        if self.state is State.HANDSHAKING:
            return self._handshake_deadline
        if self.state is State.CLOSED:
            return None
        dead_at = self._last_received + self.dead_after_s
        if self._ping_sent_at is None:
            return min(dead_at, self._next_ping_at)
        return dead_at

    def send_message(self, payload: bytes, now: float) -> bool:
        """Queue one application message. False (dropped) if the link is already closed.

        Raises ValueError if the payload does not fit in one frame (callers chunk), and
        LinkStateError before the handshake has completed.
        """
        if self.state is State.CLOSED:
            return False
        if self.state is not State.ESTABLISHED:
            raise LinkStateError("the handshake has not completed")
        self._send_frame(FrameType.DATA, payload)
        self.messages_sent += 1
        return True

    def close(self, reason: str, now: float, code: int = CloseCode.NORMAL) -> list[Event]:
        """End the link: queue a close frame (if established); the event for the local side."""
        if self.state is State.CLOSED:
            return []
        if not 0 <= code <= 0xFF:
            raise ValueError("close code must fit in a byte")
        self._send_close(code, reason)
        self.state = State.CLOSED
        return [ConnectionClosed(reason=reason, code=code, by_peer=False, error=code not in CLEAN_CODES)]

    def has_data_to_send(self) -> bool:
        """Whether data_to_send() would return bytes."""
        return bool(self._outbox)

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call."""
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    # ----- internals ----------------------------------------------------------------------

    def _process(self, events: list[Event], now: float) -> None:
        while self.state is not State.CLOSED:
            if self.state is State.HANDSHAKING:
                if len(self._inbox) < self._awaiting:
                    return
                message = bytes(self._inbox[: self._awaiting])
                del self._inbox[: self._awaiting]
                self._advance_handshake(message, events, now)
                continue
            assert self._opener is not None
            frame = self._opener.open_next(self._inbox)
            if frame is None:
                return
            self._on_frame(frame[0], frame[1], events, now)

    def _advance_handshake(self, message: bytes, events: list[Event], now: float) -> None:
        hs = self._handshake
        if isinstance(hs, ResponderHandshake):
            if self._awaiting == MSG1_BYTES:
                self._queue(hs.on_msg1(message))
                self._awaiting = MSG3_BYTES
                return
            result = hs.on_msg3(message)
        else:
            msg3, result = hs.on_msg2(message)
            self._queue(msg3)
        self.peer = result.peer
        self._sealer = FrameSealer(result.keys.send_key, self.max_frame_bytes)
        self._opener = FrameOpener(result.keys.recv_key, self.max_frame_bytes)
        self.state = State.ESTABLISHED
        self._last_received = now
        self._next_ping_at = now + self.keepalive_s
        log.debug("link established with %s (short id %d)", result.peer.node_id, result.peer.short_id)
        events.append(
            HandshakeComplete(
                peer_short_id=result.peer.short_id,
                peer_public_key=result.peer.public_key,
                peer_node_id=result.peer.node_id,
            )
        )

    def _on_frame(self, frame_type: int, body: bytes, events: list[Event], now: float) -> None:
        if frame_type == FrameType.DATA:
            self.messages_received += 1
            events.append(MessageReceived(payload=body))
        elif frame_type == FrameType.PING:
            if len(body) != PING_TOKEN_BYTES:
                raise _Refused(CloseCode.PROTOCOL_ERROR, "malformed ping")
            self._send_frame(FrameType.PONG, body)
        elif frame_type == FrameType.PONG:
            if len(body) != PING_TOKEN_BYTES:
                raise _Refused(CloseCode.PROTOCOL_ERROR, "malformed pong")
            token = int.from_bytes(body, "big")
            if self._ping_sent_at is not None and token == self._ping_token:
                rtt = max(0.0, now - self._ping_sent_at)
                self._ping_sent_at = None
                self.rtt_s = rtt
                if self.smoothed_rtt_s is None:
                    self.smoothed_rtt_s = rtt
                else:
                    self.smoothed_rtt_s += RTT_SMOOTHING * (rtt - self.smoothed_rtt_s)
                events.append(RttSample(rtt_s=rtt, smoothed_rtt_s=self.smoothed_rtt_s))
        elif frame_type == FrameType.CLOSE:
            if not body:
                raise _Refused(CloseCode.PROTOCOL_ERROR, "malformed close")
            code = body[0]
            text = body[1:].decode("utf-8", errors="replace") or reason_of(code)
            self.state = State.CLOSED
            events.append(ConnectionClosed(reason=text, code=code, by_peer=True, error=code not in CLEAN_CODES))
        else:
            raise _Refused(CloseCode.PROTOCOL_ERROR, f"unknown frame type {frame_type}")

    def _eof_reason(self) -> str:
        if self.state is State.HANDSHAKING:
            return "connection lost during handshake"
        if self._inbox:
            return "truncated frame"
        return "connection lost"

    def _fail(self, code: int, reason: str) -> ConnectionClosed:
        log.info("link %s: closing, %s", self.peer.node_id if self.peer else "(handshake)", reason)
        if code != CloseCode.CONNECTION_LOST:
            self._send_close(code, reason)
        self.state = State.CLOSED
        self._inbox.clear()
        return ConnectionClosed(reason=reason, code=code, by_peer=code == CloseCode.CONNECTION_LOST, error=True)

    def _send_close(self, code: int, reason: str) -> None:
        if self.state is not State.ESTABLISHED:
            return
        text = reason.encode("utf-8")[:MAX_CLOSE_TEXT_BYTES].decode("utf-8", errors="ignore").encode("utf-8")
        self._send_frame(FrameType.CLOSE, bytes((code,)) + text)

    def _send_frame(self, frame_type: int, body: bytes) -> None:
        assert self._sealer is not None
        self._queue(self._sealer.seal(frame_type, body))

    def _queue(self, data: bytes) -> None:
        self._outbox += data
        self.bytes_sent += len(data)
