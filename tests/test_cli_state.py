"""The state CLI (meshmeet meeting/agenda/doc/checkin/motion/vote/announce/feedback/state).

Without a node every command says so in one line and exits 3; with a real HQ node the
commands print ids, tables and JSON that match what the API holds.
"""

from __future__ import annotations

import json

import pytest

from meshmeet.cli import build_parser, main
from nodeproc import NodeProcess, meshmeet

COMMANDS = [
    ["meeting", "create", "--title", "Họp"], ["meeting", "list"], ["agenda", "add", "M", "--title", "t"],
    ["doc", "list", "M"], ["checkin", "M", "--present", "3"], ["motion", "open", "M", "--title", "t"],
    ["motion", "close", "X"], ["vote", "X", "yes", "--count", "2"], ["announce", "Chú ý", "--urgent"],
    ["feedback", "Ý kiến"], ["feedback", "reply", "F", "Trả lời"], ["state", "--digest"], ["state", "--json"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_without_a_node_each_command_says_so_in_one_line(argv, tmp_path, capsys):
    assert main([*argv, "--data-dir", str(tmp_path)]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no node is running" in err and "không chạy" in err


def test_doc_add_of_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["doc", "add", "M", str(tmp_path / "nope.pdf"), "--data-dir", str(tmp_path)]) == 1
    assert "no such file" in capsys.readouterr().err


def test_feedback_reply_needs_an_id_and_a_text(tmp_path, capsys):
    assert main(["feedback", "reply", "F", "a", "b", "--data-dir", str(tmp_path)]) == 1
    assert "usage: meshmeet feedback reply" in capsys.readouterr().err


def test_parser_rejects_bad_choices():
    parser = build_parser()
    for argv in (["vote", "X", "maybe", "--data-dir", "d"], ["motion", "open", "M", "--title", "t", "--rule", "all",
                                                                "--data-dir", "d"], ["state", "--data-dir", "d"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)


@pytest.mark.slow
def test_commands_against_a_running_hq(tmp_path):
    hq_dir = tmp_path / "hq"
    meshmeet("init", "--data-dir", str(hq_dir), "--commune", "Xã Thử", "--site", "UBND xã")
    hq = NodeProcess(hq_dir, mdns=False)
    d = ["--data-dir", str(hq_dir)]
    try:
        mid = meshmeet("meeting", "create", "--title", "Họp HĐND", "--starts", "2025-07-01T08:00", *d).stdout.strip()
        listed = json.loads(meshmeet("meeting", "list", "--json", *d).stdout)
        assert [(x["id"], x["title"], x["status"]) for x in listed] == [(mid, "Họp HĐND", "scheduled")]
        assert mid in meshmeet("meeting", "list", *d).stdout
        f = tmp_path / "to-trinh.txt"
        f.write_text("Tờ trình số 1\n" * 1000)
        doc = meshmeet("doc", "add", mid, str(f), "--name", "Tờ trình", *d).stdout.strip()
        table = meshmeet("doc", "list", mid, *d).stdout
        assert doc in table and "1/1 chunks" in table and "Tờ trình" in table
        meshmeet("checkin", mid, "--present", "9", *d)
        motion = meshmeet("motion", "open", mid, "--title", "Sửa quy chế", "--rule", "two-thirds", *d).stdout.strip()
        meshmeet("vote", motion, "yes", "--count", "5", *d)
        meshmeet("vote", motion, "no", "--count", "3", *d)
        again = meshmeet("vote", motion, "yes", "--count", "1", *d, check=False)
        assert again.returncode == 1 and "already" in again.stderr
        closed = meshmeet("motion", "close", motion, *d).stdout
        assert "NOT PASSED" in closed and "turnout 8" in closed and "9" in closed  # 5 < 2/3 of 9
        assert meshmeet("announce", "Họp lúc 8 giờ", "--urgent", *d).stdout.strip()
        fb = meshmeet("feedback", "Câu", "hỏi", "của", "dân", *d).stdout.strip()
        meshmeet("feedback", "reply", fb, "Đã trả lời", *d)
        dump = json.loads(meshmeet("state", "--json", *d).stdout)
        assert [x["text"] for x in dump["feedback"]] == ["Câu hỏi của dân"]
        assert [x["text"] for x in dump["replies"]] == ["Đã trả lời"]
        assert json.loads(dump["motions"][0]["result"])["passed"] is False
        digest = meshmeet("state", "--digest", *d).stdout.strip()
        assert digest == hq.status()["sync"]["digest"] and len(digest) == 64
    finally:
        hq.stop()
