"""The Zalo OA emulator as a child process (tests/zalo_oa_emulator.py) and an HQ node bridged to it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from nodeproc import HANG_GUARD_S, wait_for

EMULATOR = Path(__file__).resolve().parent / "zalo_oa_emulator.py"
APP_ID, APP_SECRET, OA_SECRET, REFRESH = "3141592653589", "app-secret-xyz", "oa-secret-key-abc", "first-refresh-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OaEmulator:
    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.state = base / "oa-state.sqlite"
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = open(base / "oa-emulator.log", "ab")

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(EMULATOR), "--port", str(self.port), "--state", str(self.state),
                                      "--app-id", APP_ID, "--app-secret", APP_SECRET, "--refresh-token", REFRESH],
                                     stdout=self.log, stderr=self.log)
        wait_for(lambda: self._up(), "the OA emulator to listen")

    def _up(self) -> bool:
        try:
            self.sent()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=HANG_GUARD_S)

    def ctl(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(self.url + "/_ctl/" + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def sent(self) -> dict:
        with urllib.request.urlopen(self.url + "/_ctl/sent", timeout=10) as r:
            return json.loads(r.read())


def zalo_setup(data_dir: Path, oa: OaEmulator, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meshmeet", "zalo", "setup", "--data-dir", str(data_dir),
                           "--app-id", APP_ID, "--secrets-stdin", "--api-base", oa.url, "--oauth-base", oa.url,
                           "--poll-s", "1", "--retry-max-s", "2", *extra],
                          input=f"{APP_SECRET}\n{OA_SECRET}\n{REFRESH}\n", capture_output=True, text=True, timeout=60)
