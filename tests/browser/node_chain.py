"""Three real `meshmeet run` processes in a chain on loopback: HQ -> relay hall -> end hall.

Static peers only (--no-mdns), so the tree is exactly that chain. The waits are hang guards.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nodeproc import NodeProcess, make_commune, meshmeet, stop_all, wait_for


def media(node: NodeProcess) -> dict:
    return node.status()["media"]


def api_post(node: NodeProcess, name: str, args: dict) -> dict:
    req = urllib.request.Request(f"{node.url}/api/{name}", method="POST", data=json.dumps(args).encode(),
                                 headers=node.token_header())
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@contextmanager
def node_chain(base: Path) -> Iterator[tuple[NodeProcess, NodeProcess, NodeProcess]]:
    """Start HQ, join two halls, chain them, wait for the tree and the source beacons."""
    hq_dir, invites = make_commune(base, 2)
    nodes: list[NodeProcess] = []
    try:
        hq = NodeProcess(hq_dir, mdns=False)
        nodes.append(hq)
        for d, code in invites:
            meshmeet("join", "--data-dir", str(d), code, "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
        relay = NodeProcess(invites[0][0], "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)
        nodes.append(relay)
        end = NodeProcess(invites[1][0], "--peer", f"127.0.0.1:{relay.mesh_port}", mdns=False)
        nodes.append(end)
        wait_for(lambda: end.status()["tree"]["parent"] == relay.node_id and relay.status()["tree"]["parent"] == hq.node_id
                 and end.status()["tree"]["root"] == hq.node_id, "the chain HQ - relay - end")
        wait_for(lambda: media(end)["source_link"] == relay.node_id and media(relay)["source_link"] == hq.node_id,
                 "source beacons from HQ")
        yield hq, relay, end
    finally:
        stop_all(nodes)
