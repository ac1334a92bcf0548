"""The relay tree in real `meshmeet run` processes: agreement, root failover and return, briefings."""

from __future__ import annotations

import time

import pytest

from nodeproc import NodeProcess, meshmeet, stop_all, wait_for

pytestmark = pytest.mark.slow


def tree(node: NodeProcess) -> dict:
    return node.status()["tree"]


def agree(nodes: list[NodeProcess], root: str, briefing: bool = False) -> bool:
    trees = [tree(n) for n in nodes]
    return all(t["root"] == root and t["briefing"] == briefing for t in trees)


def test_root_failover_return_and_briefing(tmp_path):
    hq_dir = tmp_path / "hq"
    meshmeet("init", "--data-dir", str(hq_dir), "--commune", "Xã Cây", "--site", "UBND xã")
    codes = [
        meshmeet("invite", "--data-dir", str(hq_dir), "--site", "Thôn Dự Phòng", "--backup", "--priority", "50",
                 "--address", "127.0.0.1:1").stdout.split()[0],
        meshmeet("invite", "--data-dir", str(hq_dir), "--site", "Thôn 2", "--address", "127.0.0.1:1").stdout.split()[0],
    ]
    nodes = []
    try:
        hq = NodeProcess(hq_dir)
        nodes.append(hq)
        for i, code in enumerate(codes):
            meshmeet("join", "--data-dir", str(tmp_path / f"h{i}"), code, "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
        backup, hall = NodeProcess(tmp_path / "h0"), NodeProcess(tmp_path / "h1")
        nodes += [backup, hall]
        wait_for(lambda: agree(nodes, hq.node_id) and len(tree(hq)["children"]) == 2, "tree rooted at HQ")
        assert tree(hall)["parent"] in (hq.node_id, backup.node_id)

        # HQ stops: the remaining nodes agree on the backup (higher priority) as the next root.
        stopped_at = time.monotonic()
        assert hq.stop() == 0
        wait_for(lambda: agree([backup, hall], backup.node_id), "failover to the backup site")
        failover_s = time.monotonic() - stopped_at
        assert tree(hall)["parent"] == backup.node_id
        print(f"root failover observed after {failover_s:.2f} s (including status polling)")

        # HQ returns and takes the root back.
        hq2 = NodeProcess(hq_dir)
        nodes.append(hq2)
        wait_for(lambda: agree([hq2, backup, hall], hq2.node_id), "HQ takes the root back")

        # An emergency briefing at the backup site makes it root at once; stop hands back.
        out = meshmeet("briefing", "start", "--data-dir", str(backup.data_dir), "--json")
        assert '"briefing": true' in out.stdout
        wait_for(lambda: agree([hq2, backup, hall], backup.node_id, briefing=True), "briefing root everywhere")
        meshmeet("briefing", "stop", "--data-dir", str(backup.data_dir))
        wait_for(lambda: agree([hq2, backup, hall], hq2.node_id), "root handed back after the briefing")

        # A plain hall may not run a briefing.
        refused = meshmeet("briefing", "start", "--data-dir", str(hall.data_dir), check=False)
        assert refused.returncode != 0 and "briefing" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        stop_all(nodes)


def test_simulate_command_runs_the_shipped_commune():
    out = meshmeet("simulate", "scripts/scenarios/commune-21.toml", "--json")
    import json

    report = json.loads(out.stdout)
    assert report["loop_ever"] is False
