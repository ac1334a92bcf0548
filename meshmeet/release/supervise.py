"""`meshmeet supervise`: run the node from ROOT/current, switch into a new version when the node
asks, and roll back by itself when the new version does not come up healthy.

The node asks for a switch by writing `pending` into ROOT/state.json (meshmeet/node/
release_service.py, once a verified release is installed and no meeting is live). The supervisor
starts the new version at its start gate (gate.py: code loaded, nothing bound), stops the old
node, points `current` at the new version and opens the gate, with `trying` set; the
new node is healthy when, within `health_timeout_s`, it answers /api/status, reports that
version, and has at least as many links up as the old one had (capped at 1, so a lone node
can update). Otherwise it is stopped, marked bad (never retried), and the previous version is
started again. A node that dies on its own is restarted after a growing pause (1 s .. 30 s).
This module must never verify releases (the node does) nor touch the data dir beyond reading
DIR/run/node.json.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from .. import __version__
from .gate import GATE_ENV
from .layout import ROOT_ENV, STATE_FILE, Layout
from .manifest import version_key

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 90.0
HEALTH_POLL_S = 0.5
STOP_GRACE_S = 30.0
CRASH_BACKOFF_MIN_S = 1.0
CRASH_BACKOFF_MAX_S = 30.0
SWITCH_POLL_S = 0.2


class Supervisor:
    def __init__(self, root: Path, data_dir: Path, run_args: list[str],
                 health_timeout_s: float = HEALTH_TIMEOUT_S) -> None:
        self.layout = Layout(root)
        self.data_dir = Path(data_dir)
        self.run_args = list(run_args)
        self.health_timeout_s = health_timeout_s
        self.child: subprocess.Popen | None = None
        self.stopping = False

    def _on_signal(self, signum, _frame) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, **{ROOT_ENV: str(self.layout.root)})
        cmd = [str(self.layout.entry_point()), "run", "--data-dir", str(self.data_dir), *self.run_args]
        log.info("supervise: starting %s (%s)", self.layout.current_version(), " ".join(cmd))
        return subprocess.Popen(cmd, env=env)

    def _stop_child(self) -> None:
        child = self.child
        if child is None or child.poll() is not None:
            return
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def healthy(self, version: str, min_links: int) -> bool:
        """Poll the child until it serves /api/status as `version` with `min_links` links up."""
        deadline = time.monotonic() + self.health_timeout_s
        while time.monotonic() < deadline and not self.stopping:
            if self.child is None or self.child.poll() is not None:
                return False
            status = _status(self.data_dir, self.child.pid)
            if status is not None:
                running = (status.get("release") or {}).get("version")
                up = sum(1 for link in status.get("links", []) if link.get("state") == "up")
                if running == version and up >= min_links:
                    return True
            time.sleep(HEALTH_POLL_S)
        return False

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        lay = self.layout
        lay.root.mkdir(parents=True, exist_ok=True)
        if lay.current_version() is None:
            lay.adopt_running(__version__)
        backoff = CRASH_BACKOFF_MIN_S
        while not self.stopping:
            version = lay.current_version()
            st = lay.state()
            if self.child is None or self.child.poll() is not None:
                self.child = self._start()
            if st.get("trying") == version:
                if self.healthy(version, min(1, int(st.get("links_before") or 0))):
                    highest = st.get("highest")
                    if not highest or version_key(version) > version_key(highest):
                        highest = version
                    lay.update_state(trying=None, highest=highest, event=f"{version} up and healthy")
                    lay.mark(version, "healthy")
                    lay.prune({version, st.get("previous") or version})
                    log.info("supervise: %s is healthy", version)
                elif not self.stopping:
                    self._stop_child()
                    self.child = None
                    self._roll_back(version, st)
                    continue
            if self._wait_or_switch(version):
                backoff = CRASH_BACKOFF_MIN_S
                continue  # the new version runs (gate open), `current` and `trying` set
            if self.stopping:
                break
            st = lay.state()
            pending = st.get("pending")
            if pending and pending != version and pending in lay.installed():  # it stopped by itself
                lay.switch(pending)
                lay.update_state(previous=version, trying=pending, pending=None,
                                 event=f"switching {version} -> {pending}")
                self.child = None
                continue
            if pending:
                lay.update_state(pending=None)
            log.warning("supervise: node exited with %s; restarting in %.0f s", self.child.returncode, backoff)
            self.child = None
            time.sleep(backoff)
            backoff = min(backoff * 2, CRASH_BACKOFF_MAX_S)
        self._stop_child()
        return 0

    def _wait_or_switch(self, version: str) -> bool:
        """Wait for the child to exit (False), or for the node to ask for a switch: then start the
        new version at its gate, stop the old one, open the gate (True)."""
        assert self.child is not None
        quiet = None  # state.json's stamp when it last held no pending switch: not parsed again until it changes
        with ChildWatch(self.child) as watch:
            while not self.stopping:
                if watch.wait(SWITCH_POLL_S):
                    return False
                stamp = _stamp(self.layout.root / STATE_FILE)
                if stamp is not None and stamp == quiet:
                    continue
                pending = self.layout.state().get("pending")
                quiet = None if pending else stamp
                if pending and pending != version and pending in self.layout.installed():
                    break
            else:
                return False
        return self._switch(version, pending)

    def _switch(self, old: str, new: str) -> bool:
        lay = self.layout
        gate = lay.root / "gate"
        for p in (gate, Path(str(gate) + ".ready")):
            p.unlink(missing_ok=True)
        env = dict(os.environ, **{ROOT_ENV: str(lay.root), GATE_ENV: str(gate)})
        cmd = [str(lay.entry_point(new)), "run", "--data-dir", str(self.data_dir), *self.run_args]
        log.info("supervise: starting %s at the gate", new)
        nxt = subprocess.Popen(cmd, env=env)
        deadline = time.monotonic() + self.health_timeout_s
        while not Path(str(gate) + ".ready").exists():
            if nxt.poll() is not None or time.monotonic() > deadline or self.stopping:
                if nxt.poll() is None:
                    nxt.kill()
                nxt.wait()
                bad = sorted(set(lay.state().get("bad", [])) | {new})
                lay.update_state(pending=None, bad=bad, rolled_back=new,
                                 event=f"{new} did not start: {old} kept running")
                log.error("supervise: %s did not start; %s keeps running", new, old)
                return False if self.child is None or self.child.poll() is not None else self._wait_or_switch(old)
            time.sleep(0.05)
        lay.mark(new, "at_gate")
        self._stop_child()  # the old node's ordinary shutdown
        lay.switch(new)
        lay.update_state(previous=old, trying=new, pending=None, event=f"switching {old} -> {new}")
        gate.write_text(new)
        lay.mark(new, "switched")
        self.child = nxt
        return True

    def _roll_back(self, version: str, st: dict) -> None:
        previous = st.get("previous")
        bad = sorted(set(st.get("bad", [])) | {version})
        log.error("supervise: %s did not come up healthy within %.0f s: rolling back to %s",
                  version, self.health_timeout_s, previous)
        if previous and previous in self.layout.installed():
            self.layout.switch(previous)
        self.layout.update_state(trying=None, pending=None, bad=bad, rolled_back=version,
                                 event=f"{version} unhealthy: rolled back to {previous}")


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class ChildWatch:
    """Waits for a child's exit asleep in the kernel, on a pidfd opened once (Linux >= 5.3; else
    Popen.wait, which polls waitpid with sleeps of at most 50 ms: ~50 wake-ups a second of an
    otherwise idle supervisor, issue 16)."""

    def __init__(self, child: subprocess.Popen) -> None:
        self.child = child
        self._fd: int | None = None
        if child.poll() is None:
            try:
                self._fd = os.pidfd_open(child.pid)
            except (AttributeError, OSError):
                pass
        self._poller = select.poll()
        if self._fd is not None:
            self._poller.register(self._fd, select.POLLIN)  # readable once the child has exited

    def wait(self, timeout_s: float) -> bool:
        """Whether the child exited within `timeout_s` (a signal may end the wait early: False)."""
        if self._fd is None:
            try:
                self.child.wait(timeout_s)
                return True
            except subprocess.TimeoutExpired:
                return False
        return bool(self._poller.poll(timeout_s * 1000.0)) and self.child.poll() is not None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ChildWatch":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _status(data_dir: Path, pid: int) -> dict | None:
    try:
        info = json.loads((data_dir / "run" / "node.json").read_text())
        if info.get("pid") != pid or not info.get("http"):
            return None
        with urllib.request.urlopen(info["http"] + "/api/status", timeout=5) as resp:
            data = json.loads(resp.read())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None
