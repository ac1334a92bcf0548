"""HQ recovery end to end with real `meshmeet` processes: HQ backs up its admin key to a file and
as 2-of-3 shares held by halls; HQ's data dir is deleted; a new machine rebuilds it from two
halls' shares (each hall's operator confirming the code; a third hall that is asked but does not
confirm gives nothing), and later from the file; each time the halls link to it, the meeting comes
back by sync, and a new seat and a revocation it signs reach the halls. Waits poll (hang guards
only, no time limits).

Three halls, not five: k-of-n with k < n and one asked hall holding back is what the end to end
proves (the restore needs exactly the confirmed shares, the silent hall's share is not used); 3-of-5
adds two node processes and nothing else here. Other k and n, too few shares and wrong shares are
the unit tests' (test_recovery_shamir.py, test_recovery_backup.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from nodeproc import HANG_GUARD_S, NodeProcess, meshmeet, start_commune, stop_all, wait_for

pytestmark = pytest.mark.slow

PASSPHRASE = "trâu cày ruộng sáng sớm mùa thu"


def hall_rosters_have(halls: list[NodeProcess], hq: NodeProcess) -> bool:
    digest = hq.status()["roster"]["digest"]
    return all(h.status()["roster"]["digest"] == digest for h in halls)


def meetings(d) -> list[str]:
    return [m["title"] for m in json.loads(meshmeet("meeting", "list", "--json", "--data-dir", str(d)).stdout)]


def test_hq_restored_from_two_of_three_shares_and_from_the_file(tmp_path):
    nodes: list[NodeProcess] = []
    try:
        hq, halls = start_commune(tmp_path, 3, nodes)
        hq_dir = hq.data_dir
        for h in halls:
            wait_for(lambda: h.link_states().get(hq.node_id) == "up", f"{h.data_dir.name} linked to HQ", proc=h)
        meshmeet("meeting", "create", "--title", "Họp trước sự cố", "--data-dir", str(hq_dir))
        wait_for(lambda: meetings(halls[0].data_dir) == ["Họp trước sự cố"], "the meeting reaches hall 1")

        backup = tmp_path / "hq-backup.mmb"
        out = subprocess.run(
            [sys.executable, "-m", "meshmeet", "admin", "backup", "--data-dir", str(hq_dir), "--out", str(backup),
             "--passphrase-stdin", "--shares", "2-of-3", "--holders", ",".join(f"Thôn {i}" for i in range(1, 4))],
            input=PASSPHRASE + "\n", capture_output=True, text=True, timeout=HANG_GUARD_S)
        assert out.returncode == 0, out.stderr
        assert "3/3 halls confirmed" in out.stdout and PASSPHRASE not in out.stdout
        assert backup.stat().st_mode & 0o777 == 0o600
        for h in halls:
            assert h.status()["recovery"]["holds_share"]["k"] == 2
        admin_key = (hq_dir / "admin.key").read_text()

        # The disk dies.
        hq.kill9()
        nodes.remove(hq)
        shutil.rmtree(hq_dir)

        # A new machine asks halls 1-3; halls 1 and 3 confirm the code, hall 2 does not.
        new_dir = tmp_path / "hq-new"
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshmeet", "admin", "restore", "--data-dir", str(new_dir),
             *[a for h in halls for a in ("--via", f"127.0.0.1:{h.mesh_port}")]],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            code = proc.stdout.readline().split(":")[-1].strip()
            assert len(code) == 9 and code[4] == "-"
            for h in (halls[0], halls[2]):
                wait_for(lambda: any(a["code"] == code for a in h.status()["recovery"]["asks"]),
                         f"{h.data_dir.name} sees the restore request", proc=h)
            wrong = meshmeet("admin", "release-share", "--data-dir", str(halls[0].data_dir), "--code", "AAAA-AAAA",
                             check=False)
            assert wrong.returncode != 0 and "AAAA-AAAA" in wrong.stderr  # a wrong code releases nothing
            for h in (halls[0], halls[2]):
                meshmeet("admin", "release-share", "--data-dir", str(h.data_dir), "--code", code)
            stdout, stderr = proc.communicate(timeout=HANG_GUARD_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, stderr
        assert (new_dir / "admin.key").read_text() == admin_key
        assert "halls[1]" not in stderr and any(a["code"] == code for a in halls[1].status()["recovery"]["asks"])

        def bring_up(d):
            node = NodeProcess(d, *[a for h in halls for a in ("--peer", f"127.0.0.1:{h.mesh_port}")], mdns=False)
            nodes.append(node)
            for h in halls:
                wait_for(lambda: h.link_states().get(node.node_id) == "up", f"{h.data_dir.name} links to the new HQ",
                         proc=node)
            wait_for(lambda: "Họp trước sự cố" in meetings(d), "the meeting comes back to HQ by sync", proc=node)
            return node

        hq = bring_up(new_dir)
        meshmeet("invite", "--data-dir", str(new_dir), "--site", "Thôn mới", "--address", "127.0.0.1:1")
        # The running HQ picks the new roster file up within 2 s: until then the digests agree on
        # the old roster, so wait for the seat itself at a hall, then for the digests.
        wait_for(lambda: any(s["site"] == "Thôn mới" for s in json.loads(
            meshmeet("roster", "--json", "--data-dir", str(halls[2].data_dir)).stdout)["open_seats"]),
            "the halls accept a seat the restored HQ signed", proc=hq)
        wait_for(lambda: hall_rosters_have(halls, hq), "every hall holds the restored HQ's roster", proc=hq)

        # Again from the file (a wrong passphrase first).
        hq.kill9()
        nodes.remove(hq)
        shutil.rmtree(new_dir)
        file_dir = tmp_path / "hq-file"
        bad = subprocess.run([sys.executable, "-m", "meshmeet", "admin", "restore", "--data-dir", str(file_dir),
                              "--from", str(backup), "--passphrase-stdin"], input="sai mật khẩu rồi nhé\n",
                             capture_output=True, text=True, timeout=HANG_GUARD_S)
        assert bad.returncode != 0 and "passphrase" in bad.stderr and "Traceback" not in bad.stderr
        assert not (file_dir / "admin.key").exists()
        ok = subprocess.run([sys.executable, "-m", "meshmeet", "admin", "restore", "--data-dir", str(file_dir),
                             "--from", str(backup), "--passphrase-stdin"], input=PASSPHRASE + "\n",
                            capture_output=True, text=True, timeout=HANG_GUARD_S)
        assert ok.returncode == 0, ok.stderr
        assert (file_dir / "admin.key").read_text() == admin_key
        hq = bring_up(file_dir)
        wait_for(lambda: hall_rosters_have(halls, hq), "the file-restored HQ catches up on the roster", proc=hq)
        meshmeet("revoke", "--data-dir", str(file_dir), "Thôn 3", "--yes")
        wait_for(lambda: hall_rosters_have(halls[:2], hq), "the halls accept a revocation it signed", proc=hq)
    finally:
        stop_all(nodes)
