"""Two nodes that dial each other keep one link, and the dialer whose link lost stops redialing.

Both ends of a hall pair usually know each other (configured peers, mDNS), so both dial. The
handshake keeps the link dialed by the smaller short id and refuses the other as a duplicate.
The refused dialer used to count that as a failed dial and redial with backoff, every ~4-6 s
forever: a full handshake on the weak link each time (seen in the weak-link bench's logs). Real
LinkManagers on loopback TCP, the real handshake."""

from __future__ import annotations

import trio

from meshmeet.node.links import LinkManager
from meshmeet.wire.testing import TEST_COMMUNE_ID, TestRoster

WATCH_S = 7.0  # > BACKOFF_MAX_S x 1.5: a redialing loop shows at least one more handshake


def manager(roster: TestRoster, short_id: int) -> LinkManager:
    return LinkManager(me=roster.members[short_id], my_short_id=short_id, commune_id=TEST_COMMUNE_ID,
                       lookup=roster.lookup, site_of=lambda node_id: node_id[:4], on_message=lambda p, m: None)


def test_a_refused_duplicate_dial_is_not_redialed_while_the_other_link_is_up() -> None:
    async def main() -> None:
        roster = TestRoster()
        for short_id in (1, 2):
            roster.add(short_id)
        a, b = manager(roster, 1), manager(roster, 2)
        async with trio.open_nursery() as nursery:
            port_a = await nursery.start(a.run, "127.0.0.1", 0)
            port_b = await nursery.start(b.run, "127.0.0.1", 0)
            a.add_target("127.0.0.1", port_b)
            with trio.fail_after(30):  # hang guard
                while not (a.up_peers() and b.up_peers()):
                    await trio.sleep(0.05)
            b.add_target("127.0.0.1", port_a)  # refused as a duplicate: a's link (short id 1) is kept
            await trio.sleep(1.0)
            handshakes_before = a.admission()["accepted_connections"]
            opened_before = (a.peers[roster.members[2].node_id].links_opened, b.peers[roster.members[1].node_id].links_opened)
            await trio.sleep(WATCH_S)
            assert a.up_peers() == [roster.members[2].node_id]
            assert b.up_peers() == [roster.members[1].node_id]
            extra = a.admission()["accepted_connections"] - handshakes_before
            assert extra == 0, f"b dialed a {extra} more times while their link was up"
            opened_after = (a.peers[roster.members[2].node_id].links_opened, b.peers[roster.members[1].node_id].links_opened)
            assert opened_after == opened_before, "the kept link was replaced"
            nursery.cancel_scope.cancel()

    trio.run(main)
