"""The trio driver for `meshmeet join`: reach any member node and claim this node's seat.

Tries the addresses in the invite, then any given with --via, then members found by mDNS, and
runs meshmeet.membership.join.JoinClient over each TCP connection until one answers. This module must never
trust an answer the JoinClient has not verified, and never leave a half-written data dir
(finish_join writes the roster only after verification).
"""

from __future__ import annotations

import logging
import os

import trio

from ..membership.datadir import MembershipSummary, PendingJoin, finish_join
from ..errors import MeshmeetError
from ..membership.invite import parse_address
from ..membership.join import NONCE_BYTES, Joined, JoinRefused
from .discovery import Discovery, Sighting

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
MDNS_SEARCH_S = 6.0
RECEIVE_BYTES = 65536


async def join_commune(
    pending: PendingJoin,
    *,
    via: list[str] = (),  # type: ignore[assignment]
    mdns: bool = True,
    mdns_interfaces: tuple[str, ...] = (),
    progress=lambda text: None,
) -> MembershipSummary:
    """Claim the invite's seat through the first member that answers; write the roster."""
    tried: list[str] = []
    refusals: list[JoinRefused] = []
    candidates = [parse_address(a) for a in (*pending.addresses, *via)]
    for host, port in candidates:
        result = await _try_member(pending, host, port, progress)
        tried.append(f"{host}:{port}")
        if isinstance(result, Joined):
            return finish_join(pending.data_dir, pending, result.roster)
        if result is not None:
            refusals.append(result)
            if result.code.name not in ("CLOSED", "TIMEOUT", "BAD_RESPONSE"):
                break  # a real answer (used, expired, foreign...): asking others will not help
    if mdns and not refusals:
        progress("tìm nút thành viên qua mDNS / searching for members with mDNS")
        for sighting in await _find_members(pending, mdns_interfaces):
            result = await _try_member(pending, sighting.host, sighting.port, progress)
            tried.append(f"{sighting.host}:{sighting.port}")
            if isinstance(result, Joined):
                return finish_join(pending.data_dir, pending, result.roster)
            if result is not None:
                refusals.append(result)
                break
    if refusals:
        r = refusals[-1]
        raise MeshmeetError(f"Gia nhập bị từ chối: {r.vi}", f"join refused: {r.en}")
    raise MeshmeetError(
        f"Không liên lạc được nút thành viên nào ({', '.join(tried) or 'không có địa chỉ'}); thử --via MÁY:CỔNG",
        f"no member node could be reached ({', '.join(tried) or 'no addresses'}); try --via HOST:PORT",
    )


async def _try_member(pending: PendingJoin, host: str, port: int, progress) -> Joined | JoinRefused | None:
    progress(f"đang liên hệ {host}:{port} / contacting {host}:{port}")
    try:
        with trio.fail_after(CONNECT_TIMEOUT_S):
            stream = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as e:
        log.info("join: %s:%d unreachable: %s", host, port, e)
        return None
    client = pending.client(os.urandom(NONCE_BYTES), trio.current_time())
    async with stream:
        try:
            await stream.send_all(client.data_to_send())
            outcome = None
            with trio.move_on_at(client.deadline):
                while outcome is None:
                    data = await stream.receive_some(RECEIVE_BYTES)
                    outcome = client.receive_data(data, trio.current_time())
            return outcome if outcome is not None else client.timeout(trio.current_time())
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
            log.info("join: %s:%d failed: %s", host, port, e)
            return None


async def _find_members(pending: PendingJoin, interfaces: tuple[str, ...]) -> list[Sighting]:
    send, receive = trio.open_memory_channel[Sighting](64)
    found: list[Sighting] = []
    discovery = Discovery(
        commune_id=pending.invite.commune_id, node_id="joining", port=None, interfaces=interfaces, sightings=send
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(discovery.run)
        with trio.move_on_after(MDNS_SEARCH_S):
            async for sighting in receive:
                found.append(sighting)
                if len(found) >= 3:
                    break
        nursery.cancel_scope.cancel()
    return found
