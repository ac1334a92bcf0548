"""The packet-level link emulator's trio driver: a forwarder between two TUN devices.

It creates TUN device DEV_A inside namespace NS_A and DEV_B inside NS_B (each from a thread that
entered that namespace), then moves every IP packet read from one to the other through the sans-IO
PacketLink core (packetcore.py), writing each when the core says it is due. Addresses and link state
are set by the caller (`ip -n NS addr add ... dev DEV`), once both devices exist. A control socket
(unix, JSON lines) reports counters and CPU time and changes the profile live:
  {"op": "stats"} | {"op": "profile", "spec": "C"}   ->   {"ok": true, "profile": ..., "stats": ...}
Every timing decision is the core's; this module only reads, sleeps and writes. It must never parse
the packets it carries nor keep running once a device is gone.

Run: python -m meshmeet.testbed.packetlink NS_A:DEV_A NS_B:DEV_B --profile C [--seed 1] [--control PATH]
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
import time
from pathlib import Path

import trio

from ..errors import MeshmeetError
from .netns import in_netns
from .packetcore import AB, BA, PacketLink
from .profiles import LinkProfile, parse_profile, profile_spec
from .tun import open_tun

log = logging.getLogger(__name__)

READ_BYTES = 65536
MAX_READS_PER_WAKE = 256
CONTROL_LINE_BYTES = 4096
CONTROL_TIMEOUT_S = 5.0
CONTROL_MODE = 0o600


class Forwarder:
    """Two TUN fds and one PacketLink; `run()` forwards until cancelled."""

    def __init__(self, fd_a: int, fd_b: int, profile: LinkProfile, seed: int | str = 0) -> None:
        self.fds = {AB: (fd_a, fd_b), BA: (fd_b, fd_a)}   # direction -> (read from, write to)
        self.profile = profile
        self.core = PacketLink(profile.forward, profile.back, seed)
        self.write_errors = 0
        self._wake = trio.Event()

    def set_profile(self, profile: LinkProfile) -> None:
        self.profile = profile
        self.core.reshape(profile.forward, profile.back)

    def stats(self) -> dict:
        usage = os.times()
        return {"profile": profile_spec(self.profile), "dirs": self.core.stats(), "write_errors": self.write_errors,
                "cpu_s": round(usage.user + usage.system, 3), "pid": os.getpid()}

    async def _reader(self, direction: str) -> None:
        fd = self.fds[direction][0]
        while True:
            await trio.lowlevel.wait_readable(fd)
            now = trio.current_time()
            for _ in range(MAX_READS_PER_WAKE):
                try:
                    packet = os.read(fd, READ_BYTES)
                except BlockingIOError:
                    break
                if not packet:
                    return
                self.core.offer(direction, packet, now)
            self._wake.set()

    async def _writer(self) -> None:
        while True:
            now = trio.current_time()
            for direction, (_, out_fd) in self.fds.items():
                for packet in self.core.pop_due(direction, now):
                    try:
                        os.write(out_fd, packet)
                    except OSError as e:   # device down (a cut link): the packet is lost, as on a cable
                        if e.errno not in (errno.EIO, errno.EAGAIN, errno.ENOBUFS, errno.EINVAL):
                            raise
                        self.write_errors += 1
            self._wake = trio.Event()
            due = self.core.next_due()
            with trio.move_on_at(due if due is not None else float("inf")):
                await self._wake.wait()

    async def _serve_control(self, path: Path) -> None:
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        path.unlink(missing_ok=True)
        await sock.bind(str(path))
        os.chmod(path, CONTROL_MODE)   # only root may reshape the link
        sock.listen(8)
        async with trio.open_nursery() as nursery:
            while True:
                conn, _ = await sock.accept()
                nursery.start_soon(self._control_conn, trio.SocketStream(conn))

    async def _control_conn(self, stream: trio.SocketStream) -> None:
        async with stream:
            with trio.move_on_after(CONTROL_TIMEOUT_S):
                buf = b""
                while b"\n" not in buf and len(buf) < CONTROL_LINE_BYTES:
                    data = await stream.receive_some(CONTROL_LINE_BYTES)
                    if not data:
                        return
                    buf += data
                await stream.send_all(json.dumps(self.control(buf.split(b"\n", 1)[0])).encode() + b"\n")

    def control(self, line: bytes) -> dict:
        """One control request (a JSON object) -> its answer; a bad request gets ok=false and changes nothing."""
        try:
            req = json.loads(line)
            if not isinstance(req, dict) or req.get("op") not in ("stats", "profile"):
                raise ValueError("expected {\"op\": \"stats\"|\"profile\", ...}")
            if req["op"] == "profile":
                self.set_profile(parse_profile(req.get("spec")))
                self._wake.set()
        except (ValueError, RecursionError, MeshmeetError) as e:
            return {"ok": False, "error": str(e)[:300]}
        return {"ok": True, **self.stats()}

    async def run(self, control: Path | None = None) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reader, AB)
            nursery.start_soon(self._reader, BA)
            nursery.start_soon(self._writer)
            if control is not None:
                nursery.start_soon(self._serve_control, control)


def _end(text: str) -> tuple[str, str]:
    ns, sep, dev = text.partition(":")
    if not sep or not ns or not dev:
        raise argparse.ArgumentTypeError(f"expected NETNS:DEV, got {text!r}")
    return ns, dev


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="packetlink", description=__doc__.splitlines()[0])
    parser.add_argument("a", type=_end, help="NETNS:DEV of side a")
    parser.add_argument("b", type=_end, help="NETNS:DEV of side b")
    parser.add_argument("--profile", default="A", help="preset A-E or key=value,... (see profiles.py)")
    parser.add_argument("--seed", default=str(time.time_ns()))
    parser.add_argument("--control", default=None, help="unix socket path for stats and live profile changes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s packetlink %(message)s")
    try:
        profile = parse_profile(args.profile)
        fd_a = in_netns(args.a[0], open_tun, args.a[1])
        fd_b = in_netns(args.b[0], open_tun, args.b[1])
    except (MeshmeetError, OSError, ValueError) as e:
        print(f"packetlink: {e}", file=sys.stderr)
        return 2
    log.info("forwarding %s:%s <-> %s:%s, profile %s", *args.a, *args.b, profile_spec(profile))
    try:
        trio.run(Forwarder(fd_a, fd_b, profile, args.seed).run, Path(args.control) if args.control else None)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
