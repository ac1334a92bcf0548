"""Rolling upgrades with real processes: a commune where one hall still runs the previous release
(built from git: the commit before issue 16's work, its own PYTHONPATH) sits between HQ and a
hall of this release, and a whole meeting goes through it: agenda, check-ins and ballots from
both kinds of hall, HQ's close. Everything replicates both ways, no link is closed over a
format, the old hall relays this release's node_versions rows it cannot read itself, and the
capabilities message is ignored by the old node and read by the new ones.
Waits are hang guards, never performance limits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import io
from pathlib import Path

import pytest

from meshmeet import __version__
from nodeproc import LOOPBACK, NodeProcess, _run_info, make_commune, meshmeet, stop_all, wait_for

pytestmark = pytest.mark.slow

PREVIOUS_RELEASE = "b6d82cd"  # main before issue 16 (meshmeet 0.1.0 without capabilities or releases)
REPO = Path(__file__).resolve().parents[1]


def previous_release(dest: Path) -> Path:
    """The previous release's source tree, from git (skip when this is not a git checkout)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the git history to build the previous release")
    data = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", PREVIOUS_RELEASE, "meshmeet"],
                          capture_output=True, check=True, timeout=120).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


class OldNode(NodeProcess):
    """A `meshmeet run` of the previous release (its own tree on PYTHONPATH; -P: not this tree)."""

    def __init__(self, data_dir: Path, old_tree: Path, *extra: str) -> None:
        self.data_dir = Path(data_dir)
        self.log_path = self.data_dir / "test-node.log"
        self.log = open(self.log_path, "ab")
        args = ["run", "--data-dir", str(data_dir), "--listen", f"{LOOPBACK}:0", "--http", f"{LOOPBACK}:0",
                "--no-mdns", *extra]
        self.proc = subprocess.Popen(old_cmd(old_tree, *args), stdout=self.log, stderr=self.log,
                                     env=dict(os.environ, PYTHONPATH=str(old_tree)))
        self.info = wait_for(lambda: _run_info(self.data_dir, self.proc.pid), f"{data_dir} to start", proc=self)


def old_cmd(old_tree: Path, *args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "meshmeet", *args]


def old_meshmeet(old_tree: Path, *args: str) -> str:
    proc = subprocess.run(old_cmd(old_tree, *args), capture_output=True, text=True, timeout=90,
                          env=dict(os.environ, PYTHONPATH=str(old_tree)))
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def tables(node: NodeProcess, names: tuple[str, ...]) -> dict:
    with __import__("urllib.request").request.urlopen(
            __import__("urllib.request").request.Request(f"{node.url}/api/state?format=json",
                                                          headers=node.token_header()), timeout=30) as r:
        body = json.loads(r.read())
    state = body.get("state", body)
    return {n: state.get(n) for n in names}


MEETING_TABLES = ("meetings", "agenda_items", "motions", "ballots", "attendance")


def test_previous_release_hall_in_the_middle_of_a_meeting(tmp_path: Path) -> None:
    old_tree = previous_release(tmp_path / "previous")
    assert 'version__ = "0.1.0"' in (old_tree / "meshmeet" / "__init__.py").read_text()
    assert not (old_tree / "meshmeet" / "wire" / "capabilities.py").exists()
    hq_dir, invites = make_commune(tmp_path, 2)
    nodes: list[NodeProcess] = []
    try:
        hq = NodeProcess(hq_dir, mdns=False)
        nodes.append(hq)
        (a_dir, a_code), (b_dir, b_code) = invites
        old_meshmeet(old_tree, "join", "--data-dir", str(a_dir), a_code, "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
        old = OldNode(a_dir, old_tree, "--peer", f"127.0.0.1:{hq.mesh_port}")
        nodes.append(old)
        meshmeet("join", "--data-dir", str(b_dir), b_code, "--via", f"127.0.0.1:{old.mesh_port}", "--no-mdns")
        new = NodeProcess(b_dir, "--peer", f"127.0.0.1:{old.mesh_port}", mdns=False)  # only through the old hall
        nodes.append(new)
        wait_for(lambda: all(any(l["state"] == "up" for l in n.status()["links"]) for n in nodes), "links up")

        d = str(hq.data_dir)
        mid = meshmeet("meeting", "create", "--data-dir", d, "--title", "Họp hai phiên bản").stdout.strip()
        meshmeet("agenda", "add", mid, "--data-dir", d, "--title", "Nâng cấp phần mềm")
        motion = meshmeet("motion", "open", mid, "--data-dir", d, "--title", "Đồng ý nâng cấp").stdout.strip().split()[0]
        wait_for(lambda: old.status()["sync"]["digest"] and
                 any(r["id"] == motion for r in (tables(old, ("motions",))["motions"] or [])), "motion at the old hall")
        old_meshmeet(old_tree, "checkin", mid, "--present", "12", "--data-dir", str(a_dir))
        old_meshmeet(old_tree, "vote", motion, "yes", "--count", "10", "--data-dir", str(a_dir))
        wait_for(lambda: any(r["id"] == motion for r in (tables(new, ("motions",))["motions"] or [])),
                 "motion at the new hall (through the old one)")
        meshmeet("checkin", mid, "--present", "8", "--data-dir", str(b_dir))
        meshmeet("vote", motion, "no", "--count", "3", "--data-dir", str(b_dir))

        def same_meeting() -> bool:
            views = [tables(n, MEETING_TABLES) for n in nodes]
            return all(v == views[0] for v in views) and len(views[0]["ballots"] or []) == 2 \
                and len(views[0]["attendance"] or []) == 2
        wait_for(same_meeting, "agenda, check-ins and ballots equal at all three nodes")
        # a document travels through the old hall: HQ never sends it a HAVE (kind 7 would close the link)
        doc_file = tmp_path / "tai-lieu.bin"
        doc_file.write_bytes(os.urandom(1 << 20))  # 4 chunks
        meshmeet("doc", "add", mid, str(doc_file), "--data-dir", d)

        def new_hall_holds_it() -> bool:
            docs = json.loads(meshmeet("doc", "list", mid, "--data-dir", str(b_dir), "--json").stdout)
            return bool(docs) and all(x["chunks_held"] == x["chunks_total"] == 4 for x in docs)
        wait_for(new_hall_holds_it, "the document at the new hall, through the old one")
        assert [p["swarm"] for p in hq.status()["sync"]["peers"].values()] == [False]
        result = json.loads(meshmeet("motion", "close", motion, "--data-dir", d, "--json").stdout)
        assert (result["yes"], result["no"], result["present"]) == (10, 3, 20)
        wait_for(same_meeting, "the close replicated to both halls")
        assert all(r.get("status") == "closed" for r in tables(old, ("motions",))["motions"])

        # no link closed over a format; the old hall refused the new table's rows but relayed them
        for n in nodes:
            assert n.status()["sync"]["protocol_violations"] == 0
        wait_for(lambda: {r["node"] for r in json.loads(meshmeet("release", "versions", "--data-dir", d,
                                                                   "--json").stdout)} >= {new.node_id, hq.node_id},
                 "the new hall's node_versions row at HQ, relayed by the old hall")
        # capabilities: the new nodes know each other's and take the old hall as the previous release
        assert hq.status()["peer_versions"] == {}  # HQ's only peer is the old hall: it sent none
        assert "peer_versions" not in old.status()
        assert new.status()["peer_versions"] == {}  # and so is the new hall's only peer
        assert all(l["state"] == "up" for l in old.status()["links"])  # 0xA0 was dropped, not fatal
        # floor source beacons: HQ signs them (0x17) but sends the old hall the 0x11 form it knows, the
        # old hall takes it and passes it on, and the new hall takes the unsigned form from its old
        # peer (the rolling upgrade's open window): voice 0's source at both halls is towards HQ
        wait_for(lambda: old.status()["media"]["floor"]["source_link"] == hq.node_id and
                 new.status()["media"]["floor"]["source_link"] == old.node_id, "voice-0 sources through the old hall")
        assert new.status()["media"]["floor"]["unsigned_taken"] > 0
        assert old.status()["media"]["counters"]["format_errors"] == 0  # no 0x17 reached it
        assert all(n.status()["media"]["counters"]["floor_refused"] == 0 for n in nodes)
        assert hq.status()["release"]["version"] == __version__
    finally:
        stop_all(nodes)
