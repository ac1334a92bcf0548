"""Updates over the mesh with real processes: HQ and two halls, each run by `meshmeet supervise`
from its own release root. A release published at HQ reaches the halls as documents, is
verified, installed beside the running version and switched to; a build that does not start is
never switched to, and one that starts but never serves is rolled back by the supervisor's
health check; a release signed by a member's key and a replayed old release are refused and
nothing is installed. Waits are hang guards, never performance limits."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from meshmeet import __version__
from meshmeet.membership.identity import load_key
from meshmeet.release.devbundle import make_source_bundle
from meshmeet.release.manifest import sign_manifest
from nodeproc import make_commune, meshmeet, wait_for
from releaseproc import SupervisedNode

pytestmark = pytest.mark.slow

NEXT = "0.1.1"  # > meshmeet.__version__ in this tree (a "fake newer version")


def _next(version: str, step: int) -> str:
    parts = [int(p) for p in version.split(".")]
    parts[-1] += step
    return ".".join(map(str, parts))


def api(node: SupervisedNode, name: str, args: dict) -> tuple[int, dict]:
    from meshmeet.api_token import TOKEN_HEADER, read_token

    req = urllib.request.Request(f"{node.url}/api/{name}", data=json.dumps(args).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          TOKEN_HEADER: read_token(node.data_dir) or ""})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


HEALTH_TIMEOUT_S = 30.0  # a hanging build costs this per node (a healthy one is up in a few seconds)


def commune(tmp_path: Path, halls: int) -> list[SupervisedNode]:
    hq_dir, invites = make_commune(tmp_path, halls)
    hq = SupervisedNode(hq_dir, tmp_path / "root-hq", health_timeout_s=HEALTH_TIMEOUT_S)
    hq.wait_up()
    nodes = [hq]
    for i, (d, code) in enumerate(invites):
        meshmeet("join", "--data-dir", str(d), code, "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
        nodes.append(SupervisedNode(d, tmp_path / f"root-hall{i + 1}", peers=[hq.mesh_port],
                                    health_timeout_s=HEALTH_TIMEOUT_S))
    for n in nodes[1:]:
        n.wait_up()
    return nodes


def running(nodes: list[SupervisedNode], version: str) -> bool:
    return all(n.release()["version"] == version and n.state_file().get("trying") is None for n in nodes)


def test_release_reaches_every_node_and_a_broken_one_is_rolled_back(tmp_path: Path) -> None:
    assert __version__ < NEXT
    nodes = commune(tmp_path, 2)
    hq = nodes[0]
    try:
        bundle = make_source_bundle(tmp_path / "next.tar", NEXT)
        meshmeet("release", "publish", str(bundle), "--data-dir", str(hq.data_dir), "--version", NEXT)
        wait_for(lambda: running(nodes, NEXT), f"every node on {NEXT}", timeout=240)
        for n in nodes:
            st = n.state_file()
            assert st["highest"] == NEXT and st["previous"] == __version__
            assert Path(n.root / "current").resolve().name == NEXT
        # Every node's version is replicated to HQ (node_versions), as the map and `release versions` show.
        wait_for(lambda: len([r for r in json.loads(meshmeet("release", "versions", "--data-dir", str(hq.data_dir),
                                                             "--json").stdout) if r["version"] == NEXT
                               and r["state"] == "running"]) == 3, "HQ sees all three nodes on the new version")
        # A broken build: it installs, the nodes switch, it does not come up, each supervisor rolls back.
        broken = _next(NEXT, 1)
        make_source_bundle(tmp_path / "broken.tar", broken, broken=True)
        meshmeet("release", "publish", str(tmp_path / "broken.tar"), "--data-dir", str(hq.data_dir), "--version", broken)
        wait_for(lambda: all(n.state_file().get("rolled_back") == broken for n in nodes), "rollback everywhere",
                 timeout=240)
        wait_for(lambda: running(nodes, NEXT), f"every node back on {NEXT}")
        for n in nodes:
            assert broken in n.state_file()["bad"]
        # the node restarted on the old version reports the rollback once it has read the state file
        wait_for(lambda: all(n.release()["state"] == "rolled_back" for n in nodes), "rolled_back in every status")
        # A build that starts but never serves: the supervisors switch to it, the health check fails
        # within its bound, and they go back to the previous version by themselves (a real restart).
        hanging = _next(NEXT, 2)
        make_source_bundle(tmp_path / "hangs.tar", hanging, hangs=True)
        meshmeet("release", "publish", str(tmp_path / "hangs.tar"), "--data-dir", str(hq.data_dir), "--version", hanging)
        wait_for(lambda: all(n.state_file().get("rolled_back") == hanging for n in nodes), "rollback after the switch",
                 timeout=300)
        wait_for(lambda: running(nodes, NEXT), f"every node back on {NEXT} again", timeout=180)
        for n in nodes:
            st = n.state_file()
            assert {broken, hanging} <= set(st["bad"]) and any("unhealthy" in e["event"] for e in st["events"])
        # the updated nodes told each other their capabilities (service 0xA0)
        wait_for(lambda: [p["software"] for p in hq.status()["peer_versions"].values()] == [NEXT, NEXT],
                 "HQ knows both halls' capabilities")
        # ... and, both naming feature swarm/1, announce their chunks to each other (sync/swarm.py)
        wait_for(lambda: [p["swarm"] for p in hq.status()["sync"]["peers"].values()] == [True, True],
                 "the swarm on between HQ and both halls")
    finally:
        for n in nodes:
            n.stop()


def test_member_signed_tampered_and_replayed_releases_install_nothing(tmp_path: Path) -> None:
    nodes = commune(tmp_path, 1)
    hq, hall = nodes
    try:
        bundle = make_source_bundle(tmp_path / "b.tar", NEXT)
        data = bundle.read_bytes()
        sha = hashlib.sha256(data).digest()
        # 0. Without the node's local token (a web page, another local user): refused before anything.
        req = urllib.request.Request(f"{hq.url}/api/release_publish", method="POST",
                                     data=json.dumps({"path": str(bundle), "manifest": ""}).encode(),
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == 403 and json.loads(e.value.read())["error"]["code"] == "local_only"
        # 1. Signed by a member (the hall's node key), not the admin key: HQ's node refuses to publish.
        member = load_key(hall.data_dir / "node.key")
        m = sign_manifest(member, NEXT, sha, len(data), 1_800_000_000)
        status, body = api(hq, "release_publish", {"path": str(bundle), "manifest": base64.b64encode(m).decode()})
        assert status == 400 and "admin" in body["error"]["en"], body
        # 2. The right signature over another bundle (the bytes tampered after signing): refused.
        admin = load_key(hq.data_dir / "admin.key")
        m = sign_manifest(admin, NEXT, hashlib.sha256(data + b"x").digest(), len(data), 1_800_000_000)
        status, body = api(hq, "release_publish", {"path": str(bundle), "manifest": base64.b64encode(m).decode()})
        assert status == 400 and "tampered" in body["error"]["en"], body
        # 3. A replayed old release (signed once, older than what every node runs): refused as a downgrade.
        older = "0.0.9"
        old = make_source_bundle(tmp_path / "old.tar", older)
        meshmeet("release", "publish", str(old), "--data-dir", str(hq.data_dir), "--version", older)
        wait_for(lambda: all(any("downgrade" in r for r in n.release()["refused"]) for n in nodes),
                 "the replayed release refused at HQ and at the hall")
        for n in nodes:
            assert n.release()["version"] == __version__ and n.release()["installed"] == [__version__]
            assert n.state_file().get("pending") is None
    finally:
        for n in nodes:
            n.stop()
