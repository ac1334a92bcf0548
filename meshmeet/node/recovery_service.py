"""HQ recovery in the node: carries sealed shares to their halls, holds this hall's share, and
releases it to a restoring machine only after the hall's operator confirms its code.

Link service RECOVERY (0x90): HQ's `meshmeet admin backup --shares` hands the node one Deliver per
holder (recovery/shares.py); every node floods a Deliver it has not seen to its other links, the
holder keeps it (DIR/recovery/share.bin, 0600, still sealed to its node key) and floods an Ack
that HQ counts. A restoring machine asks on the mesh port (first byte R) with a one-time key;
the hall records the ask and answers "wait" until its operator runs `meshmeet admin release-share`
with the code the machine shows, then answers with the share re-sealed to that one-time key.
This module must never send an unsealed share, never release without the operator's code, and
never keep more than MAX_ASKS asks.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ..recovery import shares as sh
from ..web import tls
from ..api.contract import ApiError
from ..wire import services
from .provides import Provides

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger(__name__)

SHARE_DIR = "recovery"
SHARE_FILE = "share.bin"
MAX_SEEN = 1024
MAX_ASKS = 8
ASK_TTL_S = 3600.0
RELEASE_TTL_S = 900.0
ANSWER_TIMEOUT_S = 10.0


class RecoveryService:
    def __init__(self, node: "Node") -> None:
        self.node = node
        self.path = Path(node.data_dir) / SHARE_DIR / SHARE_FILE
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self.acks: dict[str, str] = {}  # holder node id -> bundle check (hex), at HQ
        self.asks: OrderedDict[bytes, float] = OrderedDict()  # one-time key -> when asked
        self.released: dict[bytes, float] = {}  # one-time key -> release expiry

    def provides(self) -> Provides:
        return Provides(services={services.RECOVERY: self._on_message},
                        first_bytes={sh.RECOVERY_FIRST_BYTE: self._serve_ask}, status={"recovery": self.status},
                        apis={"recovery_deliver": self._api_deliver, "recovery_status": self._api_status,
                              "recovery_release": self._api_release})

    async def run(self) -> None:
        await trio.sleep_forever()

    # ----- held share ---------------------------------------------------------------------------

    def held(self) -> sh.ShareRecord | None:
        try:
            sealed = self.path.read_bytes()
            return sh.open_with_node_key(sealed, self.node.key)
        except (OSError, sh.ShareError):
            return None

    # ----- link messages --------------------------------------------------------------------------

    def _fresh(self, msg_id: bytes) -> bool:
        if msg_id in self._seen:
            return False
        self._seen[msg_id] = None
        while len(self._seen) > MAX_SEEN:
            self._seen.popitem(last=False)
        return True

    def _flood(self, body: bytes, source: str | None) -> None:
        for peer in self.node.links.up_peers():
            if peer != source and self.node.roster.member_by_node_id(peer) is not None:
                self.node.send(peer, services.RECOVERY, body)

    def _on_message(self, peer: str, body: bytes) -> None:
        try:
            msg = sh.decode_link(body)
        except sh.ShareError as e:
            log.warning("recovery: %s from %s", e.en, peer)
            return
        key = sh.msg_id_of(body)
        if not self._fresh(key):
            return
        if isinstance(msg, sh.Ack):
            if self.node.me.role == "hq":
                self.acks[msg.holder] = msg.check.hex()
            self._flood(body, peer)
            return
        if msg.to != self.node.key.node_id:
            self._flood(body, peer)
            return
        self._keep(msg.sealed)

    def _keep(self, sealed: bytes) -> None:
        try:
            record = sh.open_with_node_key(sealed, self.node.key)
        except sh.ShareError as e:
            log.warning("recovery: a share for us that we cannot open: %s", e.en)
            return
        if record.commune != self.node.roster.commune_id:
            log.warning("recovery: a share for another commune, dropped")
            return
        try:
            tls._write_private(self.path, sealed)
        except OSError as e:
            log.error("recovery: could not save our share: %s", e)
            return
        log.info("recovery: holding share %d of %d (k=%d) of HQ's backup", record.share.x, record.n, record.k)
        self._flood(sh.encode_link(sh.Ack(self.node.key.node_id, sh.msg_id_of(sealed), record.check)), None)

    # ----- the restore exchange (mesh port, first byte R) -----------------------------------------

    def _expire(self, now: float) -> None:
        for k, t in list(self.asks.items()):
            if now - t > ASK_TTL_S:
                del self.asks[k]
        for k, t in list(self.released.items()):
            if now > t:
                del self.released[k]

    async def _serve_ask(self, stream: trio.SocketStream, first: bytes) -> None:
        data, parsed = first, None
        with trio.move_on_after(ANSWER_TIMEOUT_S):
            while parsed is None:
                try:
                    parsed = sh.decode_ask(data)
                except sh.ShareError:
                    if len(data) > 256:
                        return
                    more = await stream.receive_some(256)
                    if not more:
                        return
                    data += more
        if parsed is None:
            return
        answer = self._answer(parsed[0], parsed[1], time.time())
        with trio.move_on_after(ANSWER_TIMEOUT_S):
            await stream.send_all(answer)

    def _answer(self, commune: bytes, one_time: bytes, now: float) -> bytes:
        self._expire(now)
        record = self.held()
        if record is None or commune not in (self.node.roster.commune_id, sh.ANY_COMMUNE):
            return sh.encode_answer(sh.STATE_NONE)
        if one_time in self.released:
            log.warning("recovery: share released to the restoring machine %s", sh.code_of(one_time))
            return sh.encode_answer(sh.STATE_RELEASED, sh.seal_to(one_time, record.to_bytes()))
        if one_time not in self.asks:
            self.asks[one_time] = now
            while len(self.asks) > MAX_ASKS:
                self.asks.popitem(last=False)
            log.warning("recovery: a machine asks for our share of HQ's backup, code %s; release it with "
                        "`meshmeet admin release-share --code %s` only if HQ's operator shows that code",
                        sh.code_of(one_time), sh.code_of(one_time))
        return sh.encode_answer(sh.STATE_WAIT)

    # ----- API (local CLI only: web/app/policy.py LOCAL_ONLY_APIS) --------------------------------

    async def _api_deliver(self, args: dict) -> dict:
        if self.node.me.role != "hq":
            raise ApiError(403, "not_authorised", "Chỉ trụ sở gửi mảnh sao lưu", "only HQ hands out backup shares")
        items = args.get("shares")
        if not isinstance(items, list) or not items:
            raise ApiError(400, "bad_request", "Thiếu danh sách mảnh", "missing shares")
        self.acks.clear()
        for item in items:
            try:
                to, sealed = str(item["to"]), bytes.fromhex(item["sealed"])
            except (KeyError, TypeError, ValueError):
                raise ApiError(400, "bad_request", "Mảnh không hợp lệ", "invalid share item") from None
            body = sh.encode_link(sh.Deliver(to, sealed))
            self._fresh(sh.msg_id_of(body))
            self._flood(body, None)
        return {"sent": len(items)}

    async def _api_status(self, args: dict) -> dict:
        return self.status()

    async def _api_release(self, args: dict) -> dict:
        code = str(args.get("code", "")).strip().upper()
        self._expire(time.time())
        for one_time in self.asks:
            if sh.code_of(one_time) == code:
                self.released[one_time] = time.time() + RELEASE_TTL_S
                return {"released": code}
        raise ApiError(404, "no_such_ask", f"Không có yêu cầu khôi phục nào mang mã {code}",
                       f"no restore request with code {code}")

    def status(self) -> dict:
        record = self.held()
        return {
            "holds_share": None if record is None else {"x": record.share.x, "k": record.k, "n": record.n,
                                                       "check": record.check.hex(), "made_at": record.made_at},
            "acks": dict(self.acks),
            "asks": [{"code": sh.code_of(k), "asked_at": round(t)} for k, t in self.asks.items()],
        }
