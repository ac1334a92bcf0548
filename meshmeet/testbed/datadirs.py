"""The testbed's data dirs, made the way an operator would: through the real `meshmeet` CLI.

`prepare_data_dirs` runs `init` for the first node (HQ, or the highest priority), `invite` for
every other host, then starts a temporary HQ on loopback in the root namespace and runs every
`join` against it in parallel; it merges HQ's signed roster into each hall's (as gossip would
have once HQ reached it) and writes each host's config.toml (static peers = its emulator proxies,
keepalive from the links' detect_s, no mDNS). Dirs that already hold a config are kept. This
module must never start a process other than the CLI and that temporary HQ (its own children, on
loopback), and never leave the temporary HQ running.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from .. import config as config_mod
from ..config import NodeConfig, parse_host_port
from ..membership.datadir import load_roster, save_roster
from .netns import TestbedError
from .plan import HTTP_HOST, HTTP_PORT, MESH_PORT, Plan

START_GUARD_S = 60.0
JOIN_GUARD_S = 90.0
JOIN_RETRIES = 3           # a join HQ refused (admission: 0.5 joins/s) is tried again, one at a time
JOIN_RETRY_PAUSE_S = 2.5
INVITE_EXPIRES = "1d"


class DataDirs:
    """Where each host's data dir is (`data_dir(node)`), how to run the CLI, where logs go."""

    def __init__(self, plan: Plan, data_dir: Callable[[str], Path], log_path: Callable[[str], Path],
                 python: str, env: dict[str, str]) -> None:
        self.plan = plan
        self.data_dir = data_dir
        self.log_path = log_path
        self.python = python
        self.env = env

    def cli(self, *args: str, timeout: float = JOIN_GUARD_S) -> str:
        argv = [self.python, "-m", "meshmeet", *args]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env)
        except subprocess.TimeoutExpired:
            raise TestbedError(f"lệnh quá lâu: meshmeet {args[0]}", f"meshmeet {args[0]} timed out") from None
        if proc.returncode != 0:
            raise TestbedError(f"meshmeet {args[0]} lỗi: {proc.stderr.strip()}", f"meshmeet {args[0]} failed: {proc.stderr.strip()}")
        return proc.stdout

    def _first_node(self) -> str:
        hqs = [h for h in self.plan.hosts if h.role == "hq"]
        return (hqs or sorted(self.plan.hosts, key=lambda h: -h.priority))[0].node

    def prepare(self) -> dict[str, str]:
        """Create every node's data dir (skipped when it exists); node id (hex) -> scenario node."""
        first = self._first_node()
        hq_dir = self.data_dir(first)
        if not (hq_dir / config_mod.CONFIG_FILE).exists():
            self.cli("init", "--data-dir", str(hq_dir), "--commune", f"Testbed {self.plan.run}", "--site", first)
        pending = [h for h in self.plan.hosts if h.node != first and not (self.data_dir(h.node) / config_mod.CONFIG_FILE).exists()]
        codes = {}
        for host in pending:
            role = "hall" if host.role == "backup" else host.role
            args = ["invite", "--data-dir", str(hq_dir), "--site", host.node, "--role", role,
                    "--priority", str(host.priority), "--expires", INVITE_EXPIRES, "--address", "127.0.0.1:1"]
            if host.role == "backup":
                args.append("--backup")
            codes[host.node] = self.cli(*args).split()[0]
        if codes:
            self._join_all(hq_dir, codes)
            self._share_roster(hq_dir)
        for host in self.plan.hosts:
            cfg = NodeConfig(
                listen=parse_host_port(f"0.0.0.0:{MESH_PORT}"), http=parse_host_port(f"{HTTP_HOST}:{HTTP_PORT}"),
                peers=tuple(parse_host_port(p) for p in host.peers), mdns=False, keepalive_s=host.keepalive_s,
            )
            config_mod.save(self.data_dir(host.node), cfg)
        roster = json.loads(self.cli("roster", "--data-dir", str(hq_dir), "--json"))
        return {m["node_id"]: m["site"] for m in roster["members"]}

    def _share_roster(self, hq_dir: Path) -> None:
        """Give every node the whole signed roster, as gossip would have once HQ reached it.

        Halls that joined in parallel each hold the roster as it was when they joined; two of them
        that only meet each other (a chain) would refuse each other's handshake. Merging HQ's
        entries (admin-signed, verified on merge) is what the running node does with roster.bin."""
        full = load_roster(hq_dir)
        for host in self.plan.hosts:
            d = self.data_dir(host.node)
            if d == hq_dir:
                continue
            theirs = load_roster(d)
            if theirs.merge(full.entries() + full.pending_claims()):
                save_roster(d, theirs)

    def _join_all(self, hq_dir: Path, codes: dict[str, str]) -> None:
        """Run a temporary HQ on loopback (root namespace) and join every hall to it, in parallel."""
        log = open(self.log_path("prepare-hq"), "ab")
        hq = subprocess.Popen(
            [self.python, "-m", "meshmeet", "run", "--data-dir", str(hq_dir), "--listen", "127.0.0.1:0",
             "--http", "127.0.0.1:0", "--no-mdns"], stdout=log, stderr=log, env=self.env)
        try:
            port = _wait_run_file(hq_dir, hq)["mesh_port"]
            joins = {
                node: subprocess.Popen(
                    [self.python, "-m", "meshmeet", "join", "--data-dir", str(self.data_dir(node)), code,
                     "--via", f"127.0.0.1:{port}", "--no-mdns"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
                for node, code in codes.items()
            }
            failed = {node: err for node, proc in joins.items() if (err := _finish(proc))}
            for node in list(failed):  # HQ's admission lets in 0.5 joins/s: a big commune retries, one by one
                for _ in range(JOIN_RETRIES):
                    time.sleep(JOIN_RETRY_PAUSE_S)
                    proc = subprocess.Popen(
                        [self.python, "-m", "meshmeet", "join", "--data-dir", str(self.data_dir(node)), codes[node],
                         "--via", f"127.0.0.1:{port}", "--no-mdns"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
                    if not (err := _finish(proc)):
                        del failed[node]
                        break
                    failed[node] = err
            for node, err in failed.items():
                raise TestbedError(f"{node} không gia nhập được: {err.strip()}", f"{node} could not join: {err.strip()}")
        finally:
            hq.send_signal(signal.SIGTERM)
            try:
                hq.wait(timeout=30)
            except subprocess.TimeoutExpired:
                hq.kill()
                hq.wait()
            log.close()
            # A node that exits removes its run file; make sure a killed one left none behind.
            (hq_dir / "run" / "node.json").unlink(missing_ok=True)


def _wait_run_file(data_dir: Path, proc: subprocess.Popen) -> dict:
    deadline = time.monotonic() + START_GUARD_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TestbedError("nút tạm thời đã dừng", f"temporary node in {data_dir} exited ({proc.returncode})")
        try:
            info = json.loads((data_dir / "run" / "node.json").read_text())
            if info.get("pid") == proc.pid and info.get("mesh_port"):
                return info
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise TestbedError("nút tạm thời không khởi động", f"temporary node in {data_dir} did not start")


def _finish(proc: subprocess.Popen) -> str:
    """Wait for a `meshmeet join`; its error output, or "" when it joined."""
    try:
        _, err = proc.communicate(timeout=JOIN_GUARD_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return "timed out"
    return (err or "failed") if proc.returncode != 0 else ""
