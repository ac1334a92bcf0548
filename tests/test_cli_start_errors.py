"""What a new operator sees when a command cannot do its job: a one-line bilingual error and a
non-zero exit, never a Python traceback (the node's web port already taken by another program; a
backup written to a USB stick that is not mounted)."""

from __future__ import annotations

import socket

from nodeproc import make_commune, meshmeet
from test_cli import one_line_error


def test_run_with_the_web_port_taken_says_so_and_how_to_change_it(tmp_path):
    hq, _ = make_commune(tmp_path, 0)
    (hq / "webapp.toml").write_text('https = "off"\n', encoding="utf-8")  # only the port under test
    (hq / "citizens.toml").write_text('listen = "off"\n', encoding="utf-8")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = meshmeet("run", "--data-dir", str(hq), "--listen", "127.0.0.1:0", "--http", f"127.0.0.1:{port}",
                        "--no-mdns", check=False)
    line = one_line_error(proc)  # the error raised inside trio's nursery, unwrapped from its ExceptionGroup
    assert f"Cổng {port}" in line and "đang bận" in line and f"port {port}" in line
    assert "--http" in line


def test_backup_to_a_missing_directory_is_refused_before_the_passphrase(tmp_path):
    hq, _ = make_commune(tmp_path, 0)
    out = tmp_path / "usb-not-mounted" / "hq-backup.mmb"
    proc = meshmeet("admin", "backup", "--data-dir", str(hq), "--out", str(out), "--passphrase-stdin", check=False)
    line = one_line_error(proc)
    assert "Không có thư mục" in line and "no directory" in line
    assert "passphrase" not in proc.stderr.lower().replace(line.lower(), "")  # never asked for it
    assert not out.parent.exists()
