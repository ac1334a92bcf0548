"""The topic fan-out hub of the web gateway: one published message to every browser on its topic.

``Hub`` fans one published message out to every subscriber of its topic; a slow browser only
loses its own oldest messages (policy ``drop_oldest``, the default) or is disconnected (policy
``disconnect``), and never slows the publisher or other browsers. Runs on the gateway's asyncio
thread; this module must never import trio, block, or let one browser's queue grow without bound.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import json
import logging
from collections.abc import Callable

from aiohttp import WSCloseCode, web

log = logging.getLogger("meshmeet.web.gateway")

CLIENT_QUEUE_MESSAGES = 256

Payload = bytes | str
"""An encoded hub message: bytes go out as binary frames, str as text frames."""


class SlowClientPolicy(enum.Enum):
    """What the hub does when a browser's queue is full."""

    DROP_OLDEST = "drop_oldest"
    DISCONNECT = "disconnect"


def encode_payload(payload: bytes | bytearray | memoryview | str | dict) -> Payload:
    """Encode once per message (never per browser): dict -> compact JSON text, bytes stay bytes."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    if isinstance(payload, str):
        return payload
    if isinstance(payload, dict):
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    raise TypeError(f"hub payload must be bytes, str or dict, not {type(payload).__name__}")


class Subscriber:
    """One browser on one topic: a bounded queue and the task that drains it into the socket."""

    def __init__(self, topic: str, ws: web.WebSocketResponse, queue_max: int, policy: SlowClientPolicy) -> None:
        self.topic = topic
        self.ws = ws
        self.dropped = 0
        self._policy = policy
        self._queue: collections.deque[Payload] = collections.deque(maxlen=queue_max)
        self._ready = asyncio.Event()
        self._closing = False

    def offer(self, data: Payload) -> None:
        """Queue one message without waiting; apply the slow-client policy when full."""
        if self._closing:
            return
        if len(self._queue) == self._queue.maxlen:
            if self._policy is SlowClientPolicy.DISCONNECT:
                self._closing = True
                log.info("disconnecting slow client on topic %s", self.topic)
                asyncio.get_running_loop().create_task(
                    self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow")
                )
                return
            self.dropped += 1  # deque(maxlen) drops the oldest on append
        self._queue.append(data)
        self._ready.set()

    async def pump(self) -> None:
        """Send queued messages in order until the socket closes."""
        queue = self._queue
        ws = self.ws
        while not ws.closed:
            await self._ready.wait()
            self._ready.clear()
            while queue and not ws.closed:
                data = queue.popleft()
                if isinstance(data, bytes):
                    await ws.send_bytes(data)
                else:
                    await ws.send_str(data)


class Hub:
    """Topics -> subscribers. ``publish`` is synchronous and never waits on any browser."""

    def __init__(
        self,
        *,
        client_queue_messages: int = CLIENT_QUEUE_MESSAGES,
        policy: SlowClientPolicy = SlowClientPolicy.DROP_OLDEST,
    ) -> None:
        self._topics: dict[str, set[Subscriber]] = {}
        self._sinks: dict[str, list[Callable[[Payload], None]]] = {}
        self._queue_max = client_queue_messages
        self._policy = policy

    def subscribe(self, topic: str, ws: web.WebSocketResponse) -> Subscriber:
        sub = Subscriber(topic, ws, self._queue_max, self._policy)
        self._topics.setdefault(topic, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._topics.get(sub.topic)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._topics[sub.topic]

    def add_sink(self, topic: str, sink: Callable[[Payload], None]) -> None:
        """Also hand every message on ``topic`` to ``sink`` (sync, must not block), e.g. a media relay."""
        self._sinks.setdefault(topic, []).append(sink)

    def publish(self, topic: str, data: Payload) -> int:
        """Give an encoded message to the sinks and subscribers of ``topic``; return how many."""
        sinks = self._sinks.get(topic, ())
        for sink in sinks:
            try:
                sink(data)
            except Exception:  # noqa: BLE001 - a broken sink must not starve the browsers
                log.exception("hub sink for topic %s failed", topic)
        subs = self._topics.get(topic)
        if not subs:
            return len(sinks)
        for sub in tuple(subs):
            sub.offer(data)
        return len(subs) + len(sinks)

    def subscriber_count(self, topic: str | None = None) -> int:
        if topic is not None:
            return len(self._topics.get(topic, ()))
        return sum(len(s) for s in self._topics.values())

    def dropped(self, topic: str | None = None) -> int:
        """Messages dropped so far for the current subscribers (of ``topic``, or all)."""
        groups = [self._topics.get(topic, set())] if topic is not None else list(self._topics.values())
        return sum(sub.dropped for subs in groups for sub in subs)

    async def close_all(self, code: int = WSCloseCode.GOING_AWAY, message: bytes = b"server shutdown") -> None:
        """Close every subscribed WebSocket (1001 by default), e.g. from ``on_shutdown``."""
        subs = [sub for subs in self._topics.values() for sub in subs]
        await asyncio.gather(*(sub.ws.close(code=code, message=message) for sub in subs), return_exceptions=True)
