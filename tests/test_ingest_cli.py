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


def test_a_protocol_this_build_lacks_fails_at_once_others_keep_retrying(hq):
    from meshmeet.ingest.protocols import input_protocols

    have = input_protocols()
    assert have is not None and "rtmp" in have and "tcp" in have
    if "srt" in have:
        pytest.skip("this PyAV build has SRT")
    d = str(hq.data_dir)
    line = one_line_error(meshmeet("ingest", "srt://127.0.0.1:9000?streamid=x", "--data-dir", d, check=False))
    assert "không có giao thức srt" in line and "has no srt protocol" in line
    st = ingest_status(hq.data_dir)
    assert st["state"] == "idle" and st["source"] is None  # nothing started, nothing retries

    meshmeet("ingest", f"rtmp://127.0.0.1:{dead_port()}/live/x", "--data-dir", d)  # a protocol it has: retries
    st = wait_for(lambda: (s := ingest_status(hq.data_dir))["state"] == "retrying" and s, "a retry", proc=hq)
    assert st["error"]["code"] == "refused"
    meshmeet("ingest", "stop", "--data-dir", d)
