"""The demo's banner prints commands that work as printed: run the real demo with `meshmeet` off the
PATH (as right after the Quick start), paste its status line into a shell, and it answers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nodeproc import HANG_GUARD_S

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def test_printed_status_command_runs_with_meshmeet_off_the_path(tmp_path):
    env = {**os.environ, "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    demo = subprocess.Popen([sys.executable, "-m", "meshmeet", "demo", "--halls", "1", "--http-port", "18180",
                             "--data-dir", str(tmp_path / "demo")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path)
    try:
        lines = []
        for line in demo.stdout:  # ends at the banner's last line (or EOF if the demo died)
            lines.append(line)
            if "Ctrl-C" in line:
                break
        banner = "".join(lines)
        status = re.search(r"trạng thái / status: (.+)", banner)
        assert status, banner
        command = status.group(1).strip()
        assert not command.startswith("meshmeet ")  # not on this PATH: a path or python -m
        done = subprocess.run(command, shell=True, capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=HANG_GUARD_S)
        assert done.returncode == 0, (command, done.stderr)
        assert "UBND xã" in done.stdout
        assert re.search(r"chair-pin --data-dir \S+", banner)
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()
