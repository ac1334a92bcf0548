"""Test helper: a node run by `meshmeet supervise` (real processes), with fixed loopback ports so
its peers find it again after it restarts into another version."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from nodeproc import LOOPBACK, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class SupervisedNode:
    def __init__(self, data_dir: Path, root: Path, *, peers: list[int] = (), health_timeout_s: float = 60.0,
                 mesh_port: int | None = None) -> None:
        self.data_dir, self.root = Path(data_dir), Path(root)
        self.mesh_port = mesh_port or free_port()
        self.http_port = free_port()
        run_args = ["--listen", f"{LOOPBACK}:{self.mesh_port}", "--http", f"{LOOPBACK}:{self.http_port}", "--no-mdns"]
        for p in peers:
            run_args += ["--peer", f"{LOOPBACK}:{p}"]
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-supervise.log"
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshmeet", "supervise", "--root", str(root), "--data-dir", str(data_dir),
             "--health-timeout", str(health_timeout_s), "--", *run_args], stdout=self.log, stderr=self.log)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    def status(self) -> dict:
        with urllib.request.urlopen(self.url + "/api/status", timeout=10) as resp:
            return json.loads(resp.read())

    def release(self) -> dict:
        return self.status()["release"]

    def state_file(self) -> dict:
        try:
            return json.loads((self.root / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait_up(self) -> None:
        wait_for(lambda: self.proc.poll() is None and self.status(), f"{self.data_dir} supervised node up")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")
