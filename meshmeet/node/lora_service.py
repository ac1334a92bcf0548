"""The LoRa part of the node: the modem link, alerts, and status["lora"].

Holds the commune LoRa key (`node/lora_key.py`: made by HQ, shared over the encrypted links,
DIR/lora.key) whether or not [lora] is configured. When it is, this module opens the modem
through its driver, runs LoraLink with `node/lora_persistence.py` keeping the frame-counter mark
(on disk before any frame that needs it leaves), the replay window and the recent alerts with their
acks, sends beacons, serves the `lora_alert` and `lora_send` APIs, and publishes received alerts
to browsers (topics "alerts" and "lora"). An alert may mirror a sync announcement
(its id travels with it): the hall records the id (`received_alert_ids`) and does not show an
alert whose announcement sync already brought. While no IP link is up, `node/lora_mirror.py`
mirrors meeting state over LoRa through `send`. This module must never write to the sync store,
decide what the sans-IO core decides (priority, budget, retries, dedupe), or let a frame leave
whose counter mark is not on disk.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import trio

from ..config import LoraSettings
from ..errors import MeshmeetError
from ..membership.identity import verify
from ..lora_io.check import LoraConfig
from ..lora.core import CoreConfig, LoraCore, LoraPeers
from ..lora.events import Acked, Delivered, Event, GaveUp
from ..lora.frames import FrameKeys
from ..lora.keyshare import KeyOffer
from ..lora_io.link import LoraLink
from ..lora.messages import BROADCAST, Alert, Beacon, Kind, Message, kind_of
from ..lora.requests import RequestError, message_json, parse_alert_text, parse_announcement_id, parse_send
from ..lora_io.setup import StartedModem, radio_plan, start_modem
from ..api.contract import ApiError
from ..wire import services
from .lora_key import CommuneLoraKey
from .lora_mirror import LoraStateMirror
from .lora_persistence import LoraPersistence
from .lora_roster import Authorities, RosterKeys
from .provides import Provides

if TYPE_CHECKING:
    from .node import Node
    from .ports import StateReader

log = logging.getLogger(__name__)

REOPEN_S = 10.0  # wait before reopening a modem that failed or vanished
RECENT_MESSAGES = 50
PUBLISH_QUEUE = 64
ROLE_BYTE = {"hq": 0, "hall": 1, "relay": 2}


class LoraService:
    """Owns the commune LoRa key and, when configured, the modem, LoraCore and LoraLink.

    Provides: service byte LORA (key offers), the `lora_alert` and `lora_send` APIs (`api_alert`
    is also handed to the state API), status["lora"]. Needs: the node's links, roster and
    gateway; the replicated state (`StateReader`, optional) to mirror meetings over LoRa."""

    def __init__(self, node: "Node", *, state: "StateReader | None" = None) -> None:
        self.node = node
        self.settings: LoraSettings | None = getattr(node.cfg, "lora", None)
        self.dir = Path(node.data_dir)
        self.core: LoraCore | None = None
        self.lora_key = CommuneLoraKey(node, on_new_key=self._on_new_key)
        self.state = "off" if self.settings is None else ("starting" if self.offer else "waiting_key")
        self.error: MeshmeetError | None = None
        self.link: LoraLink | None = None
        self.modem: StartedModem | None = None
        self.saved = LoraPersistence(self.dir, lambda: self.core, self._counter_not_saved)
        self.alerts = self.saved.alerts
        self.received: deque[dict] = deque(maxlen=RECENT_MESSAGES)
        self._listeners: list[Callable[[int, Message], None]] = []  # (source short id, message) for other parts
        self._publish_send, self._publish_recv = trio.open_memory_channel[tuple[str, dict]](PUBLISH_QUEUE)
        self._rng = random.Random()
        self._session_scope: trio.CancelScope | None = None
        self.mirror = LoraStateMirror(node, send=self.send, others=self._others,
                                      modem_up=lambda: self.core is not None and self.link is not None,
                                      state=state)

    def on_message(self, listener: Callable[[int, Message], None]) -> None:
        """`listener(source short id, message)` for every LoRa message this node takes in."""
        self._listeners.append(listener)

    def provides(self) -> Provides:
        key = self.lora_key  # the commune key's offers travel on IP links (node/lora_key.py)
        return Provides(services={services.LORA: key.on_offer}, link_listeners=(key.on_link_change,),
                        roster_listeners=(key.on_roster,), status={"lora": self.status},
                        apis={"lora_alert": self.api_alert, "lora_send": self._api_send})

    # ----- the commune LoRa key (node/lora_key.py) --------------------------------------------

    @property
    def offer(self) -> KeyOffer | None:
        """The signed commune key offer held here, or None until HQ's reaches this node."""
        return self.lora_key.offer

    def _on_new_key(self, offer: KeyOffer) -> None:
        if self.core is not None:
            self.core.set_keys(FrameKeys.derive(offer.key))

    # ----- persisted counter mark and replay window (node/lora_persistence.py) ----------------

    def _counter_not_saved(self, error: MeshmeetError) -> None:
        """The disk refused a counter mark: stop the modem session (the frame never leaves)."""
        self._fail(error)
        if self._session_scope is not None:
            self._session_scope.cancel()

    # ----- running the modem -------------------------------------------------------------------

    def _lora_config(self) -> LoraConfig:
        s = self.settings
        assert s is not None
        return LoraConfig(port=s.port, model=s.model, region=s.region, role=s.role or self.node.me.role,
                          preset=s.preset, freq_hz=s.freq_hz, power_dbm=s.power_dbm, e22_channel=s.e22_channel)

    async def run(self) -> None:
        if self.settings is None:
            return
        if self.saved.error is not None:
            self.state, self.error = "error", self.saved.error
            log.error("lora: %s", self.saved.error.en)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.saved.run)
            nursery.start_soon(self._publisher)
            nursery.start_soon(self._beacons)
            nursery.start_soon(self.mirror.run)
            while True:
                await self.lora_key.ready.wait()
                await self._session()
                await trio.sleep(REOPEN_S)

    async def _session(self) -> None:
        config = self._lora_config()
        self.state = "starting"
        try:
            plan = radio_plan(config)
            async with trio.open_nursery() as nursery:
                self._session_scope = nursery.cancel_scope

                def gone() -> None:
                    self.error = MeshmeetError("Mất kết nối modem LoRa", "the LoRa modem went away")
                    nursery.cancel_scope.cancel()

                try:
                    self.modem = await start_modem(config, plan, nursery, on_gone=gone)
                except (MeshmeetError, OSError) as e:
                    self._fail(e)
                    nursery.cancel_scope.cancel()
                    return
                core = self._core_for(self.modem, plan.budget_s_per_hour)
                self.link = LoraLink(core, self.modem.driver, self._on_event, before_transmit=self.saved.before_transmit)
                self.state, self.error = "up", None
                log.info("lora: %s on %s up (short id %d, budget %.1f s/h)", config.model, config.port,
                         self.node.me.short_id, plan.budget_s_per_hour)
                await self.link.run()
        except MeshmeetError as e:  # radio plan: unknown region/preset/role
            self._fail(e)
        finally:
            self.link = None
            self._session_scope = None
            if self.modem is not None:
                with trio.CancelScope(shield=True):
                    await self.modem.port.aclose()
                self.modem = None
            if self.state == "up":
                self.state = "down"
                log.warning("lora: modem link ended: %s", self.error.en if self.error else "closed")

    def _fail(self, e: Exception) -> None:
        self.state = "error"
        self.error = e if isinstance(e, MeshmeetError) else MeshmeetError(f"Lỗi modem: {e}", f"modem error: {e}")
        log.warning("lora: %s", self.error.en)

    def _core_for(self, modem: StartedModem, budget_s: float) -> LoraCore:
        driver = modem.driver
        config = CoreConfig(self.node.me.short_id, driver.params, budget_s, driver.mtu_bytes,
                            extra_air_bytes=driver.extra_air_bytes)
        old = self.core
        if old is not None and old.config == config:
            return old
        reservation = self.saved.reservation
        assert self.offer is not None and reservation is not None
        self.core = LoraCore(
            config, FrameKeys.derive(self.offer.key), LoraPeers(RosterKeys(self.node), Authorities(self.node)),
            sign=self.node.key.sign, verify=verify,
            next_counter=max(reservation.resume_at, old.next_counter if old else 0),
            replay_state=old.replay_state() if old else self.saved.replay,
        )
        return self.core

    async def _beacons(self) -> None:
        assert self.settings is not None
        while True:
            if self.link is not None:
                self.link.send(Beacon(ROLE_BYTE.get(self.node.me.role, 1)))
                await trio.sleep(self.settings.beacon_s * self._rng.uniform(0.9, 1.1))
            else:
                await trio.sleep(1.0)

    # ----- events from the core ----------------------------------------------------------------

    def _site(self, short_id: int) -> str:
        member = self.node.roster.member_by_short_id(short_id)
        return member.site if member else f"#{short_id}"

    def _publish(self, topic: str, payload: dict) -> None:
        try:
            self._publish_send.send_nowait((topic, payload))
        except trio.WouldBlock:
            log.warning("lora: browser queue full; %s message not shown", topic)

    async def _publisher(self) -> None:
        async for topic, payload in self._publish_recv:
            if self.node.gateway is not None:
                await self.node.gateway.publish(topic, payload)

    def _changed(self, alerts: bool = False) -> None:
        self.saved.changed(alerts)

    def _on_event(self, event: Event) -> None:
        me = self.node.me.short_id
        if isinstance(event, Delivered):
            self._changed()
            message = event.message
            if isinstance(message, Alert):
                aid = message.ref.hex()
                record = self.alerts.received(event.source, event.msg_id, message.text, message.issued_at, time.time(),
                                              announcement_id=aid)
                if record is not None:
                    self._changed(alerts=True)
                    if aid and self.mirror.already_synced("announcements", aid):
                        log.info("lora: alert from %s already here by sync (announcement %s)",
                                 self._site(event.source), aid)
                        return
                    log.warning("lora: ALERT from %s: %s", self._site(event.source), message.text)
                    self._publish("alerts", record.as_json(self._site))
                return
            if isinstance(message, Beacon):
                return
            entry = {"source": event.source, "site": self._site(event.source), "msg_id": event.msg_id,
                     "at": time.time(), **message_json(message), **self.mirror.refs.resolve(message)}
            self.received.append(entry)
            self._publish("lora", entry)
            for listener in self._listeners:
                try:
                    listener(event.source, message)
                except Exception:  # one listener's bug must not stop LoRa
                    log.exception("lora listener failed")
        elif isinstance(event, Acked):
            if self.alerts.acked(me, event.msg_id, event.by) is not None:
                self._changed(alerts=True)
        elif isinstance(event, GaveUp):
            if self.alerts.gave_up(me, event.msg_id, event.missing) is not None:
                self._changed(alerts=True)
            log.warning("lora: message %d gave up waiting for %s", event.msg_id,
                        ", ".join(self._site(s) for s in sorted(event.missing)))

    @property
    def received_alert_ids(self) -> list[str]:
        """Announcement ids whose alert was shown here from LoRa: pages showing announcements
        that arrive later by sync skip these (they were already on screen)."""
        return self.alerts.announcement_ids()

    # ----- sending -----------------------------------------------------------------------------

    def _others(self) -> frozenset[int]:
        me = self.node.me.short_id
        return frozenset(m.short_id for m in self.node.roster.members() if m.short_id != me)

    def send(self, message: Message, *, dest: int = BROADCAST, ack_from: frozenset[int] | None = None) -> int:
        """Queue a message on LoRa for other parts of the node; returns its message id."""
        if self.core is None:
            raise ApiError(503, "lora_unavailable", "LoRa chưa sẵn sàng (chưa có modem hoặc khóa)",
                           "LoRa is not ready (no modem or no key yet)")
        msg_id = self.core.send(message, trio.current_time(), dest=dest, ack_from=ack_from)
        if self.link is not None:
            self.link.wake()
        self._changed()
        return msg_id

    async def api_alert(self, args: dict) -> dict:
        me = self.node.me
        if not (me.role == "hq" or me.backup):
            raise ApiError(403, "not_authorised", "Chỉ trụ sở được phát cảnh báo khẩn",
                           "only HQ may send an urgent alert")
        try:
            text = parse_alert_text(args)
            ref = parse_announcement_id(args) or await self.mirror.announcement_for(text)
        except RequestError as e:
            raise ApiError(400, "bad_request", e.vi, e.en) from None
        expect = self._others()
        issued_at = int(time.time())
        msg_id = self.send(Alert(text, issued_at, ref), ack_from=expect)
        record = self.alerts.sent(me.short_id, msg_id, text, issued_at, expect, time.time(), announcement_id=ref.hex())
        self._changed(alerts=True)
        return record.as_json(self._site)

    async def _api_send(self, args: dict) -> dict:
        try:
            req = parse_send(args)
        except RequestError as e:
            raise ApiError(400, "bad_request", e.vi, e.en) from None
        kind = kind_of(req.message)
        if kind is Kind.CONTROL and self.node.me.short_id not in Authorities(self.node):
            raise ApiError(403, "not_authorised", "Chỉ trụ sở được điều khiển cuộc họp qua LoRa",
                           "only HQ may send meeting control over LoRa")
        ack_from = req.ack_from
        if req.ack and ack_from is None and req.dest == BROADCAST:
            ack_from = self._others()
        if not req.ack:
            ack_from = frozenset()
        msg_id = self.send(req.message, dest=req.dest, ack_from=ack_from)
        return {"msg_id": msg_id, "dest": req.dest, **message_json(req.message)}

    # ----- status ------------------------------------------------------------------------------

    def _links(self) -> list[dict]:
        if self.core is None or self.settings is None:
            return []
        now = trio.current_time()
        timeout_s = 3 * self.settings.beacon_s + 30.0
        out = []
        for short_id, heard in sorted(self.core.heard.items()):
            member = self.node.roster.member_by_short_id(short_id)
            out.append({
                "peer": member.node_id if member else f"#{short_id}",
                "site": member.site if member else "",
                "short_id": short_id,
                "transport": "lora",
                "control_only": True,  # alerts, control, tallies; never the tree or media
                "state": "up" if now - heard.at <= timeout_s else "down",
                "rtt_ms": None,
                "relays": heard.relays,
                "heard_s_ago": round(now - heard.at, 1),
            })
        return out

    def status(self) -> dict:
        out: dict = {
            "enabled": self.settings is not None,
            "key": "ok" if self.offer else "missing",
            "state": self.state,
        }
        if self.error is not None:
            out["error"] = {"vi": self.error.vi, "en": self.error.en}
        if self.settings is None:
            return out
        out.update({"model": self.settings.model, "port": self.settings.port, "short_id": self.node.me.short_id})
        if self.core is not None:
            now = trio.current_time()
            report = self.core.airtime_report(now)
            airtime = report.as_dict()
            airtime["remaining_s"] = round(max(0.0, report.budget_s_per_hour - report.used_s), 3)
            out["airtime"] = airtime
            out["pending"] = {str(m): sorted(who) for m, who in self.core.pending.items()}
            out["stats"] = dict(self.core.stats)
        out["links"] = self._links()
        out["alerts"] = [r.as_json(self._site) for r in self.alerts.records]
        out["received"] = list(self.received)
        out["received_alert_ids"] = self.received_alert_ids
        out["mirrored"] = self.mirror.mirrored
        return out
