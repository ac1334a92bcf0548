"""Two real `meshmeet run` processes for the web app tests: HQ (chair PIN set) and one hall.

Both serve HTTPS on 127.0.0.1 with an OS-chosen port (DIR/webapp.toml). Static peers only. The
waits are hang guards.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nodeproc import NodeProcess, meshmeet, start_commune, stop_all, wait_for

CHAIR_PIN = "246810"


def set_pin(data_dir: Path, pin: str = CHAIR_PIN) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meshmeet", "chair-pin", "--data-dir", str(data_dir), "--pin-stdin"],
                          input=pin + "\n", capture_output=True, text=True, timeout=60)


def get_json(url: str, *, context: ssl.SSLContext | None = None) -> dict:
    with urllib.request.urlopen(url, timeout=10, context=context) as resp:
        return json.loads(resp.read())


def webapp(node: NodeProcess) -> dict:
    return node.status()["webapp"]


@contextmanager
def hq_and_hall(base: Path) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    nodes: list[NodeProcess] = []

    def prepare(d: Path) -> None:
        (d / "webapp.toml").write_text('https = "127.0.0.1:0"\n')
        if d == base / "hq":
            assert set_pin(d).returncode == 0

    try:
        hq, (hall,) = start_commune(base, 1, nodes, prepare=prepare)
        wait_for(lambda: hall.link_states().get(hq.node_id) == "up", "the hall's link to HQ", proc=hall)
        wait_for(lambda: webapp(hall)["https"], "the hall's HTTPS listener (certificate from HQ)", proc=hall)
        yield hq, hall
    finally:
        stop_all(nodes)
