"""What a new operator sees when a command cannot do its job: a one-line bilingual error and a
non-zero exit, never a Python traceback (the node's web port already taken by another program; a
backup written to a USB stick that is not mounted); and a second node on one machine, which needs
only its own ports given on the command line (--https, --residents) and is told which port is taken
and which option changes it."""

from __future__ import annotations

import socket

import pytest

from meshmeet.errors import MeshmeetError

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_second_node_on_one_machine_with_its_own_https_and_residents_ports(tmp_path):
    import urllib.request

    from nodeproc import NodeProcess, stop_all, wait_for

    nodes = []
    try:
        ports = {}
        for name in ("a", "b"):
            hq, _ = make_commune(tmp_path / name, 0)
            https, residents = _free_port(), _free_port()
            node = NodeProcess(hq, "--https", f"127.0.0.1:{https}", "--residents", f"127.0.0.1:{residents}", mdns=False)
            nodes.append(node)
            ports[name] = (https, residents)
        for node, (https, residents) in zip(nodes, ports.values()):
            st = wait_for(lambda: (s := node.status())["webapp"]["https"] and s, "HTTPS up", proc=node)
            assert st["webapp"]["https"].endswith(f":{https}") and st["citizens"]["residents_port"] == residents
            with urllib.request.urlopen(f"http://127.0.0.1:{residents}/y-kien", timeout=30) as resp:
                assert resp.status == 200
        second = nodes.pop()
        second.stop()
        taken = ports["a"][0]  # the first node's HTTPS port, named on the command line: refused before starting
        proc = meshmeet("run", "--data-dir", str(second.data_dir), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                        "--no-mdns", "--https", f"127.0.0.1:{taken}", check=False)
        line = one_line_error(proc)
        assert f"Cổng {taken}" in line and f"port {taken}" in line and "--https HOST:PORT" in line
    finally:
        stop_all(nodes)


def test_a_taken_default_web_port_is_a_warning_naming_the_port_and_option(tmp_path, capsys):
    from meshmeet.cli_ports import check_web_ports
    from meshmeet.config import NodeConfig

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "citizens.toml").write_text(f'listen = "127.0.0.1:{port}"\n', encoding="utf-8")
        (tmp_path / "webapp.toml").write_text('https = "off"\n', encoding="utf-8")
        check_web_ports(tmp_path, NodeConfig())  # from the file: the node still starts, with a warning
        err = capsys.readouterr().err
        assert f"Cổng {port}" in err and f"port {port}" in err and "--residents HOST:PORT" in err
        assert "citizens.toml" in err
        with pytest.raises(MeshmeetError, match=f"port {port}.*--residents"):
            check_web_ports(tmp_path, NodeConfig().with_overrides(residents=f"127.0.0.1:{port}"))
