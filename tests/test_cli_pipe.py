"""`meshmeet ... | head -1`: a command whose reader went away ends quietly with the status a shell
gives any writer a closed pipe ended (141), never a BrokenPipeError traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from meshmeet.cli_pipe import EXIT_SIGPIPE
from nodeproc import make_commune

NOISE = ("Traceback", "BrokenPipe", "Exception ignored")


@pytest.mark.parametrize("command", [["invite", "--site", "Thôn Xuân Tiên", "--qr"], ["roster"]])
def test_output_into_a_closed_pipe_ends_quietly(tmp_path, command):
    hq, _ = make_commune(tmp_path, 0)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte: deterministic, unlike a race with head
    try:
        proc = subprocess.run([sys.executable, "-m", "meshmeet", command[0], "--data-dir", str(hq), *command[1:]],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert not any(n in proc.stderr for n in NOISE), proc.stderr
    assert proc.returncode == EXIT_SIGPIPE == 141


def test_invite_qr_through_head_gives_the_code_and_no_traceback(tmp_path):
    hq, _ = make_commune(tmp_path, 0)
    script = (f'set -o pipefail; "{sys.executable}" -m meshmeet invite --data-dir "{hq}" --site "Thôn 1" --qr'
              ' --address 127.0.0.1:1 | head -1')
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith("MM1-") and proc.stdout.count("\n") == 1
    assert not any(n in proc.stderr for n in NOISE), proc.stderr
    assert proc.returncode in (0, EXIT_SIGPIPE)  # 0 when the whole code and QR fit in the pipe before head left
