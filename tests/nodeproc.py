"""Test helpers: real `meshmeet` processes on loopback, and polling their status API.

Waits here are hang guards (generous deadlines that only stop a broken test from running
forever), never performance limits.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

HANG_GUARD_S = 90.0
LOOPBACK = "127.0.0.1"


def meshmeet(*args: str, check: bool = True, timeout: float = HANG_GUARD_S) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "meshmeet", *args], capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"meshmeet {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


class NodeProcess:
    """One `meshmeet run` child process."""

    def __init__(self, data_dir: Path, *extra: str, mdns: bool = True, log_path: Path | None = None,
                 clock_offset_s: float = 0.0) -> None:
        self.data_dir = Path(data_dir)
        args = ["run", "--data-dir", str(data_dir), "--listen", f"{LOOPBACK}:0", "--http", f"{LOOPBACK}:0"]
        args += ["--mdns-interface", LOOPBACK] if mdns else ["--no-mdns"]
        args += list(extra)
        self.log_path = log_path or self.data_dir / "test-node.log"
        self.log = open(self.log_path, "ab")
        cmd = [sys.executable, "-m", "meshmeet"]
        if clock_offset_s:  # a machine whose wall clock is wrong: time.time() shifted for the whole process
            cmd = [sys.executable, "-c", "import sys, time; real = time.time; "
                   f"time.time = lambda: real() + {float(clock_offset_s)!r}; "
                   "from meshmeet.cli import main; sys.exit(main(sys.argv[1:]))"]
        self.proc = subprocess.Popen([*cmd, *args], stdout=self.log, stderr=self.log)
        self.info = wait_for(lambda: _run_info(self.data_dir, self.proc.pid), f"{data_dir} to start", proc=self)

    @property
    def url(self) -> str:
        return self.info["http"]

    @property
    def mesh_port(self) -> int:
        return int(self.info["mesh_port"])

    @property
    def node_id(self) -> str:
        return self.info["node_id"]

    def token_header(self) -> dict[str, str]:
        """The node's local API token header, as the meshmeet CLI sends it (chair calls need it)."""
        from meshmeet.api_token import TOKEN_HEADER, read_token

        token = read_token(self.data_dir)
        return {} if token is None else {TOKEN_HEADER: token}

    def status(self) -> dict:
        with urllib.request.urlopen(self.url + "/api/status", timeout=10) as resp:
            return json.loads(resp.read())

    def link_states(self) -> dict[str, str]:
        return {link["peer"]: link["state"] for link in self.status()["links"]}

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.data_dir} did not stop within 30 s after signal {sig}")
        self.log.close()
        return self.proc.returncode

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def _run_info(data_dir: Path, pid: int) -> dict | None:
    try:
        info = json.loads((data_dir / "run" / "node.json").read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("pid") == pid and info.get("http") else None


def wait_for(predicate, what: str, *, timeout: float = HANG_GUARD_S, proc: NodeProcess | None = None):
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"node exited ({proc.proc.returncode}) while waiting for {what}:\n{proc.output()}")
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - the node may not be serving yet
            last_error = e
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error})")


def make_commune(base: Path, halls: int, commune: str = "Xã Thử") -> tuple[Path, list[tuple[Path, str]]]:
    """An HQ data dir and `halls` invite codes (not yet joined)."""
    hq = base / "hq"
    meshmeet("init", "--data-dir", str(hq), "--commune", commune, "--site", "UBND xã")
    invites = []
    for i in range(1, halls + 1):
        code = meshmeet("invite", "--data-dir", str(hq), "--site", f"Thôn {i}", "--address", "127.0.0.1:1").stdout.strip()
        invites.append((base / f"hall{i}", code))
    return hq, invites


def join(hall_dir: Path, code: str, via: NodeProcess) -> None:
    """`meshmeet join` of one hall through a running member's mesh port (`--via`, no mDNS)."""
    meshmeet("join", "--data-dir", str(hall_dir), code, "--via", f"{LOOPBACK}:{via.mesh_port}", "--no-mdns")


def start_commune(base: Path, halls: int, nodes: list | None = None, *,
                  prepare: Callable[[Path], None] | None = None) -> tuple[NodeProcess, list[NodeProcess]]:
    """HQ + `halls` halls joined via --peer: the commune most node tests start from.

    Makes the data dirs (`make_commune`: HQ "UBND xã" in base/hq, halls "Thôn 1".."Thôn N" in
    base/hall1..base/hallN), starts HQ without
    mDNS, joins every hall through HQ's mesh port (`join`), then starts each hall with HQ as its
    only static peer (`--peer`, no mDNS): a star with HQ at the centre, found without discovery.
    `prepare(data_dir)`, if given, runs on each data dir just before its node first starts (HQ's
    after init, a hall's after its join), e.g. to write webapp.toml or a chair PIN. Each process is
    appended to `nodes` as soon as it runs, so the caller's `finally: stop_all(nodes)` stops them
    even when a later one fails to start. Returns once every process has written its run file; it
    does not wait for links to come up (wait_for what the test needs).
    """
    nodes = [] if nodes is None else nodes
    hq_dir, invites = make_commune(base, halls)
    if prepare is not None:
        prepare(hq_dir)
    hq = NodeProcess(hq_dir, mdns=False)
    nodes.append(hq)
    started = []
    for hall_dir, code in invites:
        join(hall_dir, code, via=hq)
    for hall_dir, _ in invites:
        if prepare is not None:
            prepare(hall_dir)
        hall = NodeProcess(hall_dir, "--peer", f"{LOOPBACK}:{hq.mesh_port}", mdns=False)
        nodes.append(hall)
        started.append(hall)
    return hq, started


def stop_all(nodes) -> None:
    for node in nodes:
        try:
            node.stop()
        except Exception:  # noqa: BLE001
            pass
