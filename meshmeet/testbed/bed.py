"""The Testbed: a scenario built as real hosts, driven through faults, observed, torn down.

`prepare()` creates every data dir through the real CLI (datadirs.py: init, invite, and join
over loopback to a temporary HQ process, then each config.toml). `up()` builds the namespaces and links (plan.py),
starts one link emulator per namespace, one packet forwarder per profiled link (tunlink.py) and one
`meshmeet run` per namespace, and records their pids in WORK/state.json so a later command (or
`down` after a crash) can find them. Faults: `set_link`, `stop_node`, `start_node`, `set_profile`
(a packet link's profile, live; `link_stats` reads its counters). Observation: `trees()` polls every
node's /api/status inside its namespace; `wait_whole()` times how long until the tree is whole and
stays so.
This module must never start or signal a process outside its namespaces (the temporary HQ of
`prepare` is its own child on loopback) and never assert on timing: it measures and reports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import meshmeet

from . import netns
from .converge import Verdict, check_tree, components
from .datadirs import START_GUARD_S, DataDirs
from .netns import TestbedError
from .plan import HTTP_HOST, HTTP_PORT, Plan, link_commands, setup_commands
from .profiles import LinkProfile, parse_profile, profile_spec
from .tunlink import control, start_tun_link

STATE_FILE = "state.json"
POLL_S = 0.1
STABLE_S = 1.0
HANG_GUARD_S = 120.0


@dataclass(frozen=True)
class Measurement:
    """How long the tree took to become whole (and stay so for STABLE_S) after an event."""

    label: str
    seconds: float | None     # None: not whole before the hang guard
    verdict: Verdict          # the last verdict seen
    polls: int


def _source_root() -> str:
    return str(Path(meshmeet.__file__).resolve().parents[1])


class Testbed:
    __test__ = False  # not a pytest test class

    def __init__(self, plan: Plan, work_dir: Path, python: str = sys.executable) -> None:
        self.plan = plan
        self.work = Path(work_dir)
        self.python = python
        self.env = {**os.environ, "PYTHONPATH": _source_root() + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.procs: dict[str, subprocess.Popen] = {}     # node -> its `meshmeet run` (this process's children)
        self.emulators: dict[str, subprocess.Popen] = {}
        self.forwarders: dict[int, subprocess.Popen] = {}   # link index -> its packet forwarder
        self.pids: dict[str, int] = {}                   # what state.json records (also from earlier commands)
        self.stopped: set[str] = set()
        self.cut: set[frozenset[str]] = set()
        self.ids: dict[str, str] = {}                    # node id (hex) -> scenario node
        self._load_state()

    # ----- paths and state -----------------------------------------------------------------------

    def data_dir(self, node: str) -> Path:
        return self.work / "data" / self.plan.host(node).netns.removeprefix(self.plan.prefix)

    def log_path(self, name: str) -> Path:
        return self.work / "logs" / f"{name}.log"

    def _load_state(self) -> None:
        try:
            state = json.loads((self.work / STATE_FILE).read_text())
        except (OSError, ValueError):
            return
        if state.get("run") != self.plan.run:
            return
        self.pids = {k: int(v) for k, v in state.get("pids", {}).items()}
        self.stopped = set(state.get("stopped", []))
        self.cut = {frozenset(pair) for pair in state.get("cut", [])}
        self.ids = dict(state.get("ids", {}))

    def _save_state(self) -> None:
        state = {"run": self.plan.run, "prefix": self.plan.prefix, "pids": self.pids, "stopped": sorted(self.stopped),
                 "cut": [sorted(pair) for pair in self.cut], "ids": self.ids}
        tmp = self.work / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.work / STATE_FILE)

    # ----- data dirs (datadirs.py) --------------------------------------------------------------

    def prepare(self) -> None:
        """Create every node's data dir through the real CLI (skipped when they already exist)."""
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        self.ids = DataDirs(self.plan, self.data_dir, self.log_path, self.python, self.env).prepare()

    # ----- up / down -----------------------------------------------------------------------------

    def up(self) -> None:
        """Build namespaces and links, start emulators and nodes (prepare() first if needed)."""
        if not self.ids:
            self.prepare()
        netns.cleanup(self.plan.prefix)
        self.pids, self.stopped, self.cut = {}, set(), set()
        try:
            for argv in setup_commands(self.plan):
                netns.run(argv)
            for link in self.plan.links:
                if link.packet is not None:
                    proc = start_tun_link(link.packet, self.python, self.env, self.log_path(f"packetlink-{link.index}"))
                    self.forwarders[link.index] = proc
                    self.pids[f"packetlink:{link.index}"] = proc.pid
            for host in self.plan.hosts:
                if host.routes:
                    self._start_emulator(host.node)
            for host in self.plan.hosts:
                self.start_node(host.node)
        except BaseException:
            self.down()
            raise
        self._save_state()

    def _spawn(self, name: str, netns_name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.log_path(name), "ab")
        try:
            return subprocess.Popen(["ip", "netns", "exec", netns_name, self.python, *argv], stdout=log, stderr=log,
                                    env=self.env, start_new_session=True)
        finally:
            log.close()

    def _start_emulator(self, node: str) -> None:
        host = self.plan.host(node)
        argv = ["-m", "meshmeet.testbed.emulator"] + [f"--route={r}" for r in host.routes]
        proc = self._spawn(f"emulator-{node}", host.netns, argv)
        self.emulators[node] = proc
        self.pids[f"emulator:{node}"] = proc.pid

    def start_node(self, node: str) -> None:
        host = self.plan.host(node)
        old = self.procs.get(node)
        if old is not None and old.poll() is None:
            raise TestbedError(f"{node} đang chạy", f"{node} is already running")
        proc = self._spawn(f"node-{node}", host.netns, ["-m", "meshmeet", "run", "--data-dir", str(self.data_dir(node))])
        self.procs[node] = proc
        self.pids[f"node:{node}"] = proc.pid
        self.stopped.discard(node)
        self._save_state()

    def stop_node(self, node: str, sig: int = signal.SIGKILL) -> None:
        """Stop a node's process (SIGKILL by default: a crash; its sockets close at once)."""
        host = self.plan.host(node)
        pid = self.pids.get(f"node:{node}")
        if pid is None or pid not in netns.pids_in(host.netns):
            raise TestbedError(f"{node} không chạy", f"{node} is not running")
        os.kill(pid, sig)
        proc = self.procs.get(node)
        if proc is not None:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        else:
            deadline = time.monotonic() + 30
            while pid in netns.pids_in(host.netns) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.stopped.add(node)
        self._save_state()

    def set_link(self, a: str, b: str, up: bool) -> None:
        for argv in link_commands(self.plan, a, b, up):
            netns.run(argv)
        pair = frozenset((a, b))
        (self.cut.discard if up else self.cut.add)(pair)
        self._save_state()

    def set_profile(self, a: str, b: str, spec: str) -> dict:
        """Change a packet link's profile live (`forward` then shapes a -> b); its forwarder's stats."""
        link = self.plan.link(a, b)
        if link.packet is None:
            raise TestbedError(f"liên kết {a}~{b} không có hồ sơ gói tin (dùng --profile khi up)",
                               f"link {a}~{b} is not a packet link (give it --profile at up)")
        if (self.plan.host(a).netns, self.plan.host(b).netns) != (link.packet.ns_a, link.packet.ns_b):
            p = parse_profile(spec)
            spec = profile_spec(LinkProfile(p.name + "'", p.back, p.forward))   # the forwarder's a is b here
        return control(link.packet.control, {"op": "profile", "spec": spec})

    def link_stats(self, a: str, b: str) -> dict:
        """A packet link's forwarder counters (per direction) and CPU seconds."""
        link = self.plan.link(a, b)
        if link.packet is None:
            raise TestbedError(f"liên kết {a}~{b} không có hồ sơ gói tin", f"link {a}~{b} is not a packet link")
        return control(link.packet.control, {"op": "stats"})

    def down(self) -> list[str]:
        """Kill everything inside this run's namespaces and delete them (works after any crash)."""
        removed = netns.cleanup(self.plan.prefix)
        for proc in [*self.procs.values(), *self.emulators.values(), *self.forwarders.values()]:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()
        self.emulators.clear()
        self.forwarders.clear()
        (self.work / STATE_FILE).unlink(missing_ok=True)
        return removed

    # ----- observation ---------------------------------------------------------------------------

    def running(self) -> list[str]:
        return [h.node for h in self.plan.hosts if h.node not in self.stopped]

    def up_links(self) -> set[frozenset[str]]:
        return {frozenset((l.a, l.b)) for l in self.plan.links} - self.cut

    def api(self, node: str, name: str, body: dict | None = None) -> dict:
        """Call a node's JSON API (/api/NAME) from inside its namespace, with its local API token."""
        from ..api_token import TOKEN_HEADER, read_token

        token = read_token(self.data_dir(node))
        return netns.http_json(self.plan.host(node).netns, f"http://{HTTP_HOST}:{HTTP_PORT}/api/{name}", body,
                               {TOKEN_HEADER: token} if token else None)

    def status(self, node: str) -> dict:
        return self.api(node, "status")

    def wait_api(self, node: str, guard_s: float = START_GUARD_S) -> float | None:
        """Seconds until `node`'s API answers (a hang guard, not a limit); None if it never does."""
        started = time.monotonic()
        while time.monotonic() - started < guard_s:
            try:
                self.status(node)
                return round(time.monotonic() - started, 3)
            except (OSError, ValueError):
                time.sleep(0.05)
        return None

    def _tree_of(self, node: str) -> dict | None:
        try:
            tree = self.status(node)["tree"]
        except (OSError, ValueError, KeyError):
            return None
        name = self.ids.get
        return {
            "root": name(tree.get("root"), tree.get("root")),
            "parent": None if tree.get("parent") is None else name(tree["parent"], tree["parent"]),
            "children": [name(c, c) for c in tree.get("children") or []],
            "briefing": tree.get("briefing"),
        }

    def trees(self) -> dict[str, dict | None]:
        """Every running node's tree (node names instead of ids), polled in parallel."""
        nodes = self.running()
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(nodes)))) as pool:
            return dict(zip(nodes, pool.map(self._tree_of, nodes)))

    def expected_roots(self) -> dict[str, str]:
        """The root each running node should end up with: the unique highest priority in its part."""
        out = {}
        for part in components(set(self.running()), self.up_links()):
            best = max(self.plan.host(n).priority for n in part)
            tops = [n for n in part if self.plan.host(n).priority == best]
            if len(tops) == 1:
                out.update({n: tops[0] for n in part})
        return out

    def wait_whole(self, label: str, since: float | None = None, guard_s: float = HANG_GUARD_S,
                   stable_s: float = STABLE_S, expected: dict[str, str] | None = None,
                   parents: dict[str, str | None] | None = None) -> Measurement:
        """Poll until the tree is whole for `stable_s`; seconds from `since` (default: now) to whole.

        `expected` (node -> root) defaults to expected_roots(); pass {} to check agreement only.
        `parents` (node -> parent) also requires those nodes to have these parents (a tree shape)."""
        since = time.monotonic() if since is None else since
        whole_since: float | None = None
        polls, verdict = 0, Verdict(False, "not polled")
        expected = self.expected_roots() if expected is None else expected
        up_links = self.up_links()
        while time.monotonic() - since < guard_s:
            trees = self.trees()
            observed = time.monotonic()   # the state was seen by now at the latest
            polls += 1
            verdict = check_tree(trees, up_links, expected)
            if verdict.whole and parents:
                wrong = [n for n, p in parents.items() if (trees.get(n) or {}).get("parent", "?") != p]
                if wrong:
                    verdict = Verdict(False, f"not yet the expected parents: {', '.join(sorted(wrong))}")
            if not verdict.whole:
                whole_since = None
            else:
                whole_since = observed if whole_since is None else whole_since
                if observed - whole_since >= stable_s:
                    return Measurement(label, round(whole_since - since, 3), verdict, polls)
            time.sleep(POLL_S)
        return Measurement(label, None, verdict, polls)
