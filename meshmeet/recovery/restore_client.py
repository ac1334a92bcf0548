"""A restoring HQ machine collecting k shares from halls' mesh ports (first byte R; recovery/shares.py).

It makes a one-time X25519 key, shows its code, and asks each given hall again every POLL_S until
k halls whose operators confirmed that code have answered with a share sealed to it; then it
rebuilds HQ's secrets (Shamir) and checks them against the bundle check the shares carry. Runs
under trio; it must never write anything to disk (the caller installs the result) and never use a
share that does not open with its one-time key or belongs to another bundle.
"""

from __future__ import annotations

from typing import Callable

import trio
from nacl.public import PrivateKey

from ..errors import MeshmeetError
from . import shares as sh
from .hqsecrets import HqSecrets
from .shamir import ShamirError, combine

POLL_S = 2.0
CONNECT_TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 64 * 1024
ANY_COMMUNE = sh.ANY_COMMUNE


class RestoreError(MeshmeetError):
    """Shares that do not rebuild HQ's secrets."""


async def ask_once(host: str, port: int, commune: bytes, one_time: PrivateKey) -> tuple[str, sh.ShareRecord | None]:
    """One ask to one hall: (state, the opened record when released)."""
    with trio.fail_after(CONNECT_TIMEOUT_S):
        stream = await trio.open_tcp_stream(host, port)
    async with stream:
        with trio.fail_after(CONNECT_TIMEOUT_S):
            await stream.send_all(sh.encode_ask(commune, bytes(one_time.public_key)))
            data = b""
            while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
                more = await stream.receive_some(MAX_ANSWER_BYTES)
                if not more:
                    break
                data += more
                if len(data) > MAX_ANSWER_BYTES:
                    raise sh.ShareError("Trả lời quá lớn", "answer too large")
    if len(data) < 4:
        raise sh.ShareError("Nút ngắt kết nối", "the node closed the connection")
    state, sealed = sh.decode_answer(data[4:4 + int.from_bytes(data[:4], "big")])
    if state != sh.STATE_RELEASED:
        return state, None
    return state, sh.open_sealed(sealed, bytes(one_time.public_key), bytes(one_time))


def rebuild(records: list[sh.ShareRecord]) -> HqSecrets:
    """HQ's secrets from k records of one bundle; RestoreError when they do not fit together."""
    if not records:
        raise RestoreError("Chưa có mảnh nào", "no shares yet")
    first = records[0]
    same = [r for r in records if r.check == first.check and r.commune == first.commune]
    if len(same) < first.k:
        raise RestoreError(f"Cần {first.k} mảnh của cùng một bản sao lưu, mới có {len(same)}",
                           f"need {first.k} shares of one backup, have {len(same)}")
    try:
        secret = combine([r.share for r in same[: first.k]])
    except ShamirError as e:
        raise RestoreError(e.vi, e.en) from None
    secrets = HqSecrets.from_bytes(secret)
    if secrets.check() != first.check or secrets.commune_id != first.commune:
        raise RestoreError("Các mảnh không ghép được thành bản sao lưu", "the shares do not rebuild the backup")
    return secrets


async def collect(addresses: list[tuple[str, int]], one_time: PrivateKey, commune: bytes = ANY_COMMUNE,
                  progress: Callable[[str], None] = lambda text: None) -> HqSecrets:
    """Ask every address until k released shares of one bundle are in; then rebuild."""
    got: dict[tuple[str, int], sh.ShareRecord] = {}
    last: dict[tuple[str, int], str] = {}
    while True:
        for addr in addresses:
            if addr in got:
                continue
            try:
                state, record = await ask_once(addr[0], addr[1], commune, one_time)
            except (OSError, trio.TooSlowError, sh.ShareError) as e:
                state, record = f"error: {getattr(e, 'en', e)}", None
            if record is not None:
                got[addr] = record
                progress(f"{addr[0]}:{addr[1]}: mảnh {record.share.x}/{record.n} (cần {record.k}) / share received")
            elif last.get(addr) != state:
                progress(f"{addr[0]}:{addr[1]}: {state}")
            last[addr] = state
            records = list(got.values())
            if records and len({r.share.x for r in records if r.check == records[0].check}) >= records[0].k:
                return rebuild(records)
        await trio.sleep(POLL_S)
