"""What a revocation means for a running node: which seats and node keys it shuts out.

`meshmeet revoke SITE` (HQ, admin key) adds an admin-signed Revocation entry to the roster
(datadir.revoke_seat); gossip carries it to every node. From the entries a node newly accepted,
this module names the node ids whose links must close now; the LoRa key (node/lora_key.py) and
the HTTPS revocation list (node/cert_revocation.py) react to the same entries. It also resolves
the SITE an operator types to a seat. Pure functions over a Roster: it must never do I/O, and
never treat a seat as revoked without an accepted Revocation entry.
"""

from __future__ import annotations

from typing import Iterable

from ..errors import ConfigError
from .identity import node_id_of
from .roster import Entry, Revocation, Roster, Seat


def revocations_in(entries: Iterable[Entry]) -> list[Revocation]:
    """The revocation entries among `entries`."""
    return [e for e in entries if isinstance(e, Revocation)]


def revoked_node_ids(roster: Roster, short_ids: Iterable[int]) -> list[str]:
    """The node ids that had claimed these (revoked) seats, every claim on every seat of that id."""
    out: list[str] = []
    for sid in short_ids:
        claim = roster.claim(sid)
        if claim is not None:
            out.append(node_id_of(claim.node_public_key))
    return list(dict.fromkeys(out))


def find_seat(roster: Roster, text: str) -> Seat:
    """The seat an operator means by SITE: its exact site name, or `#N` / `N` for short id N."""
    key = text.strip()
    sid = key[1:] if key.startswith("#") else key
    if sid.isdigit():
        seat = roster.seat(int(sid))
        if seat is not None:
            return seat
    matches = [s for s in (roster.seat(m) for m in range(1, roster.next_short_id())) if s is not None and s.site == key]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        ids = ", ".join(f"#{s.short_id}" for s in matches)
        raise ConfigError(f"Có nhiều chỗ tên {key!r} ({ids}); hãy ghi số chỗ, ví dụ #{matches[0].short_id}",
                          f"several seats are named {key!r} ({ids}); give the seat number, e.g. #{matches[0].short_id}")
    raise ConfigError(f"Không có điểm nào tên {key!r} (xem: meshmeet roster)",
                      f"no site named {key!r} (see: meshmeet roster)")
