"""Putting a packet-level emulated link between two namespaces, and talking to its forwarder.

A `TunLinkPlan` (plan.py) says which two namespaces, device names and /30 addresses, which profile, and the
forwarder's own namespace (`mid`, under the run's prefix so that `netns.cleanup` kills the forwarder
and removes it). `start_tun_link` creates `mid`, starts `python -m meshmeet.testbed.packetlink` in
it, waits (hang guard) until both TUN devices exist, then adds the addresses and sets them up.
`control(path, request)` sends one JSON request to a running forwarder (stats, live profile change).
This module must never touch a namespace it was not given, nor leave a forwarder running when
starting it failed.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

from . import netns
from .netns import TestbedError
from .plan import TunLinkPlan
from .profiles import parse_profile

START_GUARD_S = 30.0
CONTROL_TIMEOUT_S = 10.0


def _has_dev(ns: str, dev: str) -> bool:
    return netns.run(["ip", "-n", ns, "link", "show", "dev", dev], check=False).returncode == 0


def start_tun_link(link: TunLinkPlan, python: str, env: dict, log_path: Path) -> subprocess.Popen:
    """Create `mid`, start the forwarder in it, wait for its devices, address them. Returns the process."""
    parse_profile(link.profile)   # a bad profile fails here, before anything is built
    netns.run(["ip", "netns", "add", link.mid])
    link.control.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(["ip", "netns", "exec", link.mid, python, *link.forwarder_argv()],
                                stdout=log, stderr=log, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + START_GUARD_S
        while not (_has_dev(link.ns_a, link.dev) and _has_dev(link.ns_b, link.dev) and link.control.exists()):
            if proc.poll() is not None:
                raise TestbedError("bộ chuyển tiếp gói đã dừng", f"packet forwarder exited ({proc.returncode}); see {log_path}")
            if time.monotonic() > deadline:
                raise TestbedError("bộ chuyển tiếp gói không khởi động", f"packet forwarder did not start; see {log_path}")
            time.sleep(0.05)
        for argv in link.address_commands():
            netns.run(argv)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def control(path: Path, request: dict, timeout_s: float = CONTROL_TIMEOUT_S) -> dict:
    """One request to a forwarder's control socket; TestbedError if it does not answer or refuses."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout_s)
            s.connect(str(path))
            s.sendall(json.dumps(request).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                data = s.recv(65536)
                if not data:
                    break
                buf += data
        answer = json.loads(buf)
    except (OSError, ValueError) as e:
        raise TestbedError(f"bộ chuyển tiếp gói không trả lời ({path})", f"packet forwarder at {path} did not answer: {e}") from None
    if not answer.get("ok"):
        raise TestbedError(f"bộ chuyển tiếp gói từ chối: {answer.get('error')}", f"packet forwarder refused: {answer.get('error')}")
    return answer
