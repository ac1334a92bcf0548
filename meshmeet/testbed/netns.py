"""Running the testbed's system commands: `ip`/`tc`/`iptables`, namespaces, and HTTP inside them.

`run` executes one argument list and turns a failure into TestbedError (the command and its
stderr named). `cleanup(prefix)` removes every namespace whose name starts with `prefix`, first
killing the processes inside it (by their ids, from `ip netns pids`), so a `down` works after any
crash. `http_json(netns, url)` fetches a URL from inside a namespace by moving one short-lived
thread into it (setns), which keeps node APIs on their namespace's loopback. This module must
never touch a namespace outside the prefix it was given, nor signal a process it did not find
inside such a namespace.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from ..errors import MeshmeetError
from .plan import NETNS_PREFIX

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
COMMAND_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 5.0
KILL_GRACE_S = 3.0


class TestbedError(MeshmeetError):
    """The testbed could not be built, changed or torn down."""

    __test__ = False  # not a pytest test class
    exit_code = 1

    def __init__(self, vi: str, en: str) -> None:
        super().__init__(f"Testbed: {vi}", f"testbed: {en}")


def missing_requirements() -> str | None:
    """Why the testbed cannot run here (None when it can): root, ip, tc, iptables."""
    if os.geteuid() != 0:
        return "the testbed needs root (network namespaces)"
    for tool in ("ip", "tc", "iptables"):
        if shutil.which(tool) is None:
            return f"the testbed needs `{tool}` (scripts/install-system-deps.sh installs it)"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.setns  # noqa: B018 - probe
    except (OSError, AttributeError):
        return "this libc has no setns()"
    return None


def run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TestbedError(f"lệnh thất bại: {' '.join(argv)} ({e})", f"command failed: {' '.join(argv)} ({e})") from None
    if check and proc.returncode != 0:
        err = proc.stderr.strip().splitlines()[-1:] or [""]
        raise TestbedError(f"lệnh thất bại: {' '.join(argv)}: {err[0]}", f"command failed: {' '.join(argv)}: {err[0]}")
    return proc


def list_netns(prefix: str) -> list[str]:
    """Namespaces whose name starts with `prefix` (which must start with mm-)."""
    if not prefix.startswith(NETNS_PREFIX):
        raise TestbedError("tiền tố không thuộc testbed", f"prefix {prefix!r} is not a testbed prefix")
    out = run(["ip", "netns", "list"], check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return sorted(n for n in names if n.startswith(prefix))


def pids_in(netns: str) -> list[int]:
    out = run(["ip", "netns", "pids", netns], check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def cleanup(prefix: str) -> list[str]:
    """Kill every process inside the namespaces named `prefix*`, then delete them (and their veths)."""
    names = list_netns(prefix)
    pids = [pid for ns in names for pid in pids_in(ns)]
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_S
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    _signal_all([p for p in pids if _alive(p)], signal.SIGKILL)
    for ns in names:
        run(["ip", "netns", "del", ns], check=False)
    return names


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def in_netns(netns: str, fn, *args):
    """Call fn(*args) on a fresh thread that has entered network namespace `netns`; return its result."""
    result: dict = {}

    def body() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(NETNS_DIR / netns, "rb") as f:
                if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {netns} failed")
            result["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed back to the caller's thread
            result["error"] = e

    thread = threading.Thread(target=body, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def _get_json(url: str, body: dict | None, headers: dict[str, str] | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
        return json.loads(resp.read())


def http_json(netns: str, url: str, body: dict | None = None, headers: dict[str, str] | None = None) -> dict:
    """GET (or POST `body` to) a JSON URL as seen from inside `netns`."""
    return in_netns(netns, _get_json, url, body, headers)
