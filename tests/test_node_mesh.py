"""Real `meshmeet run` processes on loopback: mDNS discovery, membership, hostile bytes, kill -9."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

from nodeproc import NodeProcess, make_commune, meshmeet, stop_all, wait_for

pytestmark = pytest.mark.slow


def all_up(node: NodeProcess, peers: list[str]) -> bool:
    states = node.link_states()
    return all(states.get(p) == "up" for p in peers)


def start_commune(tmp_path, nodes: list) -> tuple[NodeProcess, list[NodeProcess], list]:
    """HQ running, two halls joined through it and running (all with mDNS on 127.0.0.1)."""
    hq_dir, invites = make_commune(tmp_path, 2)
    hq = NodeProcess(hq_dir)
    nodes.append(hq)
    for hall_dir, code in invites:
        meshmeet("join", "--data-dir", str(hall_dir), code, "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
    halls = [NodeProcess(d) for d, _ in invites]
    nodes += halls
    return hq, halls, invites


def test_three_nodes_find_each_other_by_mdns_and_keep_strangers_out(tmp_path):
    nodes = []
    try:
        hq, halls, _ = start_commune(tmp_path, nodes)
        hq_dir = hq.data_dir
        ids = [n.node_id for n in nodes]
        for n in nodes:  # no --peer anywhere: mDNS alone
            wait_for(lambda n=n: all_up(n, [i for i in ids if i != n.node_id]), f"{n.data_dir} links up")

        # A node of another commune, pointed straight at HQ, gets no link.
        other_hq, _ = make_commune(tmp_path / "other", 0, commune="Xã Khác")
        stranger = NodeProcess(other_hq, "--peer", f"127.0.0.1:{hq.mesh_port}")
        nodes.append(stranger)
        # A node whose key is not on our roster: it joined a copy of HQ that nobody else knows.
        fork = tmp_path / "hq-fork"
        shutil.copytree(hq_dir, fork, ignore=shutil.ignore_patterns("run", "*.log"))
        fork_node = NodeProcess(fork, mdns=False)
        code = meshmeet("invite", "--data-dir", str(fork), "--site", "Thôn Lạ", "--address", f"127.0.0.1:{fork_node.mesh_port}").stdout.strip()
        meshmeet("join", "--data-dir", str(tmp_path / "rogue"), code, "--no-mdns")
        fork_node.stop()
        rogue = NodeProcess(tmp_path / "rogue", "--peer", f"127.0.0.1:{hq.mesh_port}")
        nodes.append(rogue)

        # Hostile bytes at HQ's mesh port.
        for payload in (os.urandom(5000), b"\x01" + os.urandom(36), b"\x4a" + os.urandom(100), b"\x00" * 70000):
            with socket.create_connection(("127.0.0.1", hq.mesh_port)) as s:
                try:
                    s.sendall(payload)
                except OSError:
                    pass

        wait_for(lambda: hq.status()["refused_links"] >= 2, "HQ to refuse the stranger and the rogue")
        status = hq.status()
        peers = {link["peer"]: link for link in status["links"]}
        assert stranger.node_id not in peers or peers[stranger.node_id]["state"] != "up"
        assert rogue.node_id not in peers or peers[rogue.node_id]["state"] != "up"
        assert all(peers[i]["state"] == "up" for i in ids[1:])
        assert all(peers[i]["links_opened"] == 1 for i in ids[1:]), "existing links were disturbed"
        assert "not on roster" in hq.output() and "different commune" in stranger.output() + hq.output()
    finally:
        stop_all(nodes)


def test_kill9_marks_down_and_relinks(tmp_path):
    nodes = []
    try:
        hq, (h1, h2), invites = start_commune(tmp_path, nodes)
        wait_for(lambda: all_up(hq, [h1.node_id, h2.node_id]) and all_up(h1, [h2.node_id]), "mesh up")
        h2.kill9()
        wait_for(lambda: hq.link_states()[h2.node_id] == "down" and h1.link_states()[h2.node_id] == "down", "down")
        assert hq.link_states()[h1.node_id] == "up"
        h2b = NodeProcess(invites[1][0])
        nodes.append(h2b)
        wait_for(lambda: all_up(hq, [h2b.node_id]) and all_up(h1, [h2b.node_id]), "re-linked")
    finally:
        stop_all(nodes)


def test_join_through_a_hall_with_hq_stopped_and_invite_is_single_use(tmp_path):
    hq_dir, invites = make_commune(tmp_path, 2)
    nodes = []
    try:
        hq = NodeProcess(hq_dir, mdns=False)
        (h1_dir, code1), (h2_dir, code2) = invites
        meshmeet("join", "--data-dir", str(h1_dir), code1, "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
        h1 = NodeProcess(h1_dir, "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)
        nodes.append(h1)
        wait_for(lambda: all_up(hq, [h1.node_id]), "hall 1 linked")
        assert hq.stop() == 0
        # HQ is down: hall 2 joins through hall 1 (its seat reached hall 1 with the roster).
        out = meshmeet("join", "--data-dir", str(h2_dir), code2, "--via", f"127.0.0.1:{h1.mesh_port}", "--no-mdns")
        assert "Thôn 2" in out.stdout
        # A second use of the same invite, by another machine, is refused with a clear line.
        again = meshmeet("join", "--data-dir", str(tmp_path / "thief"), code2, "--via", f"127.0.0.1:{h1.mesh_port}", "--no-mdns", check=False)
        assert again.returncode != 0
        assert "Traceback" not in again.stderr
        assert len([x for x in again.stderr.splitlines() if x.startswith("meshmeet:")]) == 1, again.stderr
        h2 = NodeProcess(h2_dir, "--peer", f"127.0.0.1:{h1.mesh_port}", mdns=False)
        nodes.append(h2)
        wait_for(lambda: all_up(h1, [h2.node_id]), "hall 2 linked to hall 1")
    finally:
        stop_all(nodes)


def test_sigterm_and_sigint_exit_cleanly(tmp_path):
    hq_dir, _ = make_commune(tmp_path, 0)
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        node = NodeProcess(hq_dir)
        node.status()
        assert node.stop(sig) == 0, node.output()
        assert "Traceback" not in node.output()
        assert not (hq_dir / "run" / "node.json").exists()
