"""The LoRa service's read-only view of the sync store: meeting state to mirror, alerts' announcements.

Every WATCH_S it reads the meeting rows under the sync lock and hands them to
`lora/statewatch.py`, which says what changed. While no IP link is up (and the modem is) it sends
those changes through the service's `send`: HQ broadcasts meeting control acked by every other
member; a hall sends its own tally and attendance to the lowest HQ short id. For alerts it says
whether sync already brought an announcement and which recent urgent announcement an alert's text
stands for. This module must never write to the sync store, decide itself what changed, or send
anything while an IP link is up.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

import trio

from ..lora.messages import Slide
from ..lora.requests import message_json
from ..meeting import queries
from ..lora.statewatch import RefIndex, StateRows, StateWatch, control_messages, hall_messages

if TYPE_CHECKING:
    from .node import Node
    from .ports import StateReader

log = logging.getLogger(__name__)

WATCH_S = 3.0  # how often the sync store is read to mirror meeting state over LoRa
SLIDE_REPEAT_S = 2.0  # a page turn is sent once more after this long if it is still the newest (see run)
ALERT_MATCH_S = 60.0  # an urgent announcement this recent with the alert's text is the one it mirrors

Send = Callable[..., int]  # LoraService.send(message, *, dest=BROADCAST, ack_from=None) -> msg_id


class LoraStateMirror:
    """Reads the replicated store through `StateReader` (never writes it) on behalf of the LoRa service."""

    def __init__(self, node: "Node", *, send: Send, others: Callable[[], frozenset[int]],
                 modem_up: Callable[[], bool], state: "StateReader | None" = None) -> None:
        self._node = node
        self._state = state
        self._send = send
        self._others = others
        self._modem_up = modem_up
        self.watch = StateWatch()
        self.refs = RefIndex()  # maps refs received over LoRa back to local sync ids
        self.mirrored = 0  # state messages queued on LoRa because no IP link was up
        self._poke = trio.Event()
        self._repeat: tuple[float, Slide] | None = None  # (when, page turn) to send once more

    def poke(self) -> None:
        """Read the store now rather than at the next WATCH_S tick (a page turn should not wait)."""
        self._poke.set()

    def already_synced(self, table: str, row_id: str) -> bool:
        """Whether sync already brought this row (False when the store is busy: better shown twice)."""
        if self._state is None:
            return False
        return bool(self._state.read_nowait(lambda store: store.get(table, row_id) is not None))

    async def announcement_for(self, text: str) -> bytes:
        """The id of the urgent announcement just made with this text (state_api makes it, then
        calls lora_alert with the text only), or b"" when there is none."""
        if self._state is None:
            return b""
        since = time.time() - ALERT_MATCH_S
        rows = await self._state.read(lambda store: queries.urgent_announcements_since(store, text, since))
        if not rows:
            return b""
        newest = max(rows, key=lambda r: (r["at"] or 0.0, r["id"]))["id"]
        try:
            return bytes.fromhex(newest)
        except ValueError:
            return b""

    def _read_rows(self, store: Any) -> StateRows:
        def rows(table: str) -> tuple:
            return tuple(store.rows(table))
        return StateRows(rows("meetings"), rows("agenda_items"), rows("motions"), rows("attendance"), rows("ballots"),
                         rows("slides"))

    def _hq_short_ids(self) -> frozenset[int]:
        me = self._node.me.short_id
        return frozenset(m.short_id for m in self._node.roster.members() if m.role == "hq" and m.short_id != me)

    async def run(self) -> None:
        """Every WATCH_S: read the meeting state; while no IP link is up, send what changed."""
        while True:
            wait_s = WATCH_S if self._repeat is None else max(0.0, min(WATCH_S, self._repeat[0] - trio.current_time()))
            with trio.move_on_after(wait_s):
                await self._poke.wait()
            self._poke = trio.Event()
            self._repeat_slide()
            if self._state is None:
                continue
            rows = await self._state.read(self._read_rows)
            self.refs.learn([m["id"] for m in rows.meetings] + [m["id"] for m in rows.motions])
            me = self._node.me
            authority = me.role == "hq"
            current = control_messages(rows) if authority else hall_messages(me.node_id, rows)
            offline = not self._node.links.up_peers()
            if offline and not self._modem_up():
                continue  # keep the changes until the modem is up
            for message in self.watch.update(current, send=offline):
                if authority:
                    self._send(message, ack_from=self._others())
                else:
                    hq = self._hq_short_ids()
                    if not hq:
                        break
                    dest = min(hq)
                    self._send(message, dest=dest, ack_from=frozenset({dest}))
                self.mirrored += 1
                log.info("lora: no IP link: sent %s", message_json(message))
                if authority and isinstance(message, Slide):
                    self._repeat = (trio.current_time() + SLIDE_REPEAT_S, message)

    def _repeat_slide(self) -> None:
        """A page turn goes out twice, SLIDE_REPEAT_S apart, unless a newer turn replaced it: one
        lost frame (a collision with a beacon or an ack) would otherwise leave the TVs on the old
        page until the acknowledgement timeout (~15 s at hop limit 6) brings a retry. Receivers
        ignore a turn they already have (the `turn` counter), so the copy changes nothing there."""
        if self._repeat is None or trio.current_time() < self._repeat[0]:
            return
        _, message = self._repeat
        self._repeat = None
        if self.watch.known.get(("slide", "")) == message and not self._node.links.up_peers() and self._modem_up():
            self._send(message, ack_from=self._others())
            self.mirrored += 1
