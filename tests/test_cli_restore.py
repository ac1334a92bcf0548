"""`meshmeet admin restore` ends by printing the exact command that starts the restored HQ node:
`--data-dir` when the restore went to a directory other than the default, none when it is the
default, and a `--peer` for each share-holding hall it reached (checked by parsing the printed
line with the real argument parser, and by the data dir that command would use)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from meshmeet.cli import build_parser
from meshmeet.cli_recovery import next_step
from meshmeet.data_home import resolve_data_dir
from nodeproc import make_commune, meshmeet

PASSPHRASE = "ba con mèo trèo cây cau\n"


def _restore(backup: Path, *data_dir: str, env: dict | None = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "meshmeet", "admin", "restore", "--from", str(backup),
                           "--passphrase-stdin", *data_dir], input=PASSPHRASE, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    return lines[[i for i, line in enumerate(lines) if "next, run:" in line][0] + 1].strip()


def _as_run_args(command: str, env: dict):
    words = shlex.split(command)
    at = words.index("run")
    assert words[at - 1].endswith("meshmeet"), command  # meshmeet, .venv/bin/meshmeet or python -m meshmeet
    args = build_parser().parse_args(words[at:])
    return args, resolve_data_dir(args.data_dir, env=env)


def test_restore_prints_the_exact_run_command(tmp_path):
    hq, _ = make_commune(tmp_path, 0)
    backup = tmp_path / "hq-backup.mmb"
    meshmeet_in = subprocess.run([sys.executable, "-m", "meshmeet", "admin", "backup", "--data-dir", str(hq), "--out",
                                  str(backup), "--passphrase-stdin"], input=PASSPHRASE, capture_output=True, text=True)
    assert meshmeet_in.returncode == 0, meshmeet_in.stderr
    env = {**os.environ, "MESHMEET_DATA_DIR": str(tmp_path / "default-dir")}

    elsewhere = tmp_path / "new hq"  # a space: the printed path must survive the shell
    command = _restore(backup, "--data-dir", str(elsewhere), env=env)
    args, used = _as_run_args(command, env)
    assert args.command == "run" and used == elsewhere and "--data-dir" in command
    assert not args.peer

    command = _restore(backup, env=env)  # to the default data dir: no --data-dir to type
    args, used = _as_run_args(command, env)
    assert used == tmp_path / "default-dir" and "--data-dir" not in command
    assert meshmeet("roster", "--data-dir", str(used)).returncode == 0


def test_next_step_names_the_share_holders_and_the_installed_service(tmp_path):
    command = next_step(tmp_path / "hq", ["10.0.0.21:7733", "10.0.0.22:7733"], unit_file=tmp_path / "none")
    args, _ = _as_run_args(command, {})
    assert args.peer == ["10.0.0.21:7733", "10.0.0.22:7733"] and args.data_dir == tmp_path / "hq"
    unit = tmp_path / "meshmeet.service"
    unit.write_text("[Service]\n")
    assert next_step(Path("/var/lib/meshmeet"), [], unit_file=unit) == "sudo systemctl enable --now meshmeet"
