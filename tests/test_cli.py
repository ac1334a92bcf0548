"""The `meshmeet` command as an operator meets it: output, one-line bilingual errors, exit codes."""

from __future__ import annotations

import json
import os
import time
import tomllib


from nodeproc import NodeProcess, make_commune, meshmeet


def one_line_error(proc) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("meshmeet:")]
    assert len(lines) == 1, proc.stderr  # progress lines ("... contacting") may come before it
    assert " / " in lines[0], "errors carry Vietnamese and English"
    return lines[0]


def test_python_dash_m_and_help():
    out = meshmeet("--help")
    for command in ("init", "invite", "join", "run", "status", "demo", "config"):
        assert command in out.stdout


def test_config_example_is_valid_commented_toml():
    text = meshmeet("config", "--example").stdout
    doc = tomllib.loads(text)
    assert doc["network"]["http"] == "127.0.0.1:8080"
    assert text.count("#") > 5


def test_init_invite_roster(tmp_path):
    hq = tmp_path / "hq"
    out = meshmeet("init", "--data-dir", str(hq), "--commune", "Xã Triệu Sơn", "--site", "UBND xã")
    assert "Xã Triệu Sơn" in out.stdout
    assert (hq / "node.key").stat().st_mode & 0o777 == 0o600
    assert (hq / "admin.key").stat().st_mode & 0o777 == 0o600
    inv = meshmeet("invite", "--data-dir", str(hq), "--site", "Thôn Xuân Tiên", "--qr")
    code = inv.stdout.splitlines()[0]
    assert code.startswith("MM1-")
    assert "█" in inv.stdout or "▀" in inv.stdout  # the terminal QR code
    roster = json.loads(meshmeet("roster", "--data-dir", str(hq), "--json").stdout)
    assert [m["site"] for m in roster["members"]] == ["UBND xã"]
    assert [s["site"] for s in roster["open_seats"]] == ["Thôn Xuân Tiên"]
    again = meshmeet("init", "--data-dir", str(hq), "--commune", "X", "--site", "Y", check=False)
    one_line_error(again)
    twice = one_line_error(meshmeet("invite", "--data-dir", str(hq), "--site", "Thôn Xuân Tiên", check=False))
    assert "đã có mã mời đang chờ" in twice and "already has a pending invite" in twice
    assert 'meshmeet revoke "#2"' in twice
    roster = json.loads(meshmeet("roster", "--data-dir", str(hq), "--json").stdout)
    assert [s["site"] for s in roster["open_seats"]] == ["Thôn Xuân Tiên"]  # still one seat for the site


def test_status_without_a_running_node(tmp_path):
    hq, _ = make_commune(tmp_path, 0)
    line = one_line_error(meshmeet("status", "--data-dir", str(hq), "--json", check=False))
    assert "không chạy" in line and "no node is running" in line


def test_refuses_key_readable_by_others(tmp_path):
    hq, _ = make_commune(tmp_path, 0)
    os.chmod(hq / "node.key", 0o644)
    proc = meshmeet("run", "--data-dir", str(hq), "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0", check=False)
    line = one_line_error(proc)
    assert "chmod 600" in line
    assert proc.returncode == 2


def test_corrupt_config_and_corrupt_roster(tmp_path):
    hq, _ = make_commune(tmp_path, 0)
    (hq / "config.toml").write_text("[network\nlisten = ")
    assert "config" in one_line_error(meshmeet("run", "--data-dir", str(hq), check=False))
    (hq / "config.toml").write_text('[network]\nlisten = "nowhere"\n')
    assert "listen" in one_line_error(meshmeet("run", "--data-dir", str(hq), check=False))
    (hq / "config.toml").unlink()
    (hq / "roster.bin").write_bytes(b"\x00garbage")
    one_line_error(meshmeet("run", "--data-dir", str(hq), check=False))


def test_damaged_expired_and_foreign_invites(tmp_path):
    hq, invites = make_commune(tmp_path, 1)
    _, code = invites[0]
    damaged = code[:-3] + ("AAA" if code[-3:] != "AAA" else "BBB")
    assert "damaged" in one_line_error(meshmeet("join", "--data-dir", str(tmp_path / "h"), damaged, "--no-mdns", check=False))
    short = meshmeet("invite", "--data-dir", str(hq), "--site", "Thôn Hết Hạn", "--expires", "1s").stdout.splitlines()[0]
    time.sleep(1.5)
    assert "expired" in one_line_error(meshmeet("join", "--data-dir", str(tmp_path / "e"), short, "--no-mdns", check=False))
    # An invite of another commune, taken to a member of ours.
    other_hq, other_invites = make_commune(tmp_path / "other", 1, commune="Xã Khác")
    node = NodeProcess(hq, mdns=False)
    try:
        proc = meshmeet(
            "join", "--data-dir", str(tmp_path / "f"), other_invites[0][1], "--via", f"127.0.0.1:{node.mesh_port}",
            "--no-mdns", check=False,
        )
        assert "commune" in one_line_error(proc)
        assert not (tmp_path / "f" / "roster.bin").exists()
    finally:
        node.stop()


def test_unreachable_members(tmp_path):
    _, invites = make_commune(tmp_path, 1)
    line = one_line_error(meshmeet("join", "--data-dir", str(tmp_path / "h"), invites[0][1], "--no-mdns", check=False))
    assert "--via" in line
