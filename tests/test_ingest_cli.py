"""`meshmeet ingest` as an operator meets it, against one real HQ node: `stop` says what it
stopped and clears the last error from `status`; a protocol this PyAV/FFmpeg build lacks (SRT
here) is refused at once with a bilingual error, while a dead URL of a protocol it has keeps
retrying as designed."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

pytest.importorskip("av")

from nodeproc import NodeProcess, make_commune, meshmeet, wait_for  # noqa: E402
from test_cli import one_line_error  # noqa: E402


@pytest.fixture(scope="module")
def hq(tmp_path_factory):
    hq_dir, _ = make_commune(tmp_path_factory.mktemp("ingest-cli"), 0)
    (hq_dir / "webapp.toml").write_text('https = "off"\n', encoding="utf-8")
    (hq_dir / "citizens.toml").write_text('listen = "off"\n', encoding="utf-8")
    node = NodeProcess(hq_dir, mdns=False)
    try:
        yield node
    finally:
        try:
            meshmeet("ingest", "stop", "--data-dir", str(hq_dir), check=False)
        finally:
            node.stop()


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ingest_status(data_dir: Path) -> dict:
    return json.loads(meshmeet("ingest", "status", "--data-dir", str(data_dir), "--json").stdout)


def test_stop_says_what_it_stopped_and_clears_the_error(hq):
    d = str(hq.data_dir)
    port = dead_port()
    meshmeet("ingest", f"rtmp://127.0.0.1:{port}/live/secret-key", "--data-dir", d)
    wait_for(lambda: ingest_status(hq.data_dir)["error"], "the refused source's error", proc=hq)

    out = meshmeet("ingest", "stop", "--data-dir", d).stdout
    assert f"Đã dừng tiếp sóng rtmp://127.0.0.1:{port}/live/" in out and "stopped relaying" in out
    assert "secret-key" not in out
    st = ingest_status(hq.data_dir)
    assert st["state"] == "idle" and st["error"] is None and st["source"] is None
    text = meshmeet("ingest", "status", "--data-dir", d).stdout
    assert "từ chối" not in text and "refused" not in text

    again = meshmeet("ingest", "stop", "--data-dir", d).stdout
    assert "Không có gì đang tiếp sóng" in again and "nothing was being relayed" in again
