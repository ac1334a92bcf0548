"""One end of the Reticulum (rns) baseline for scripts/bench/links.py, run as its own process.

`server`: a Reticulum instance with one TCPServerInterface on 127.0.0.1 and a destination that
accepts links, echoes every link packet and accepts every resource. `client`: a Reticulum
instance with one TCPClientInterface to that server, which takes commands on stdin (so the bench
can interleave its blocks with meshmeet's and raw TCP's, under the same machine load) and
answers each with one `RESULT {json}` line of raw samples: link setups (time, bytes and flights
on the TCP socket), round trips of echoed link packets, resource transfers. Every wait is
bounded and a failure is answered with {"error": ...}. This script must never listen or connect
anywhere but 127.0.0.1, never enable AutoInterface or a shared instance, and never outlive its
budget (or, for the server, its parent: it leaves when stdin closes).

Bytes are counted at the TCP level: the client's interface socket is wrapped in a counter of
what `sendall` wrote and `recv` returned (the HDLC-framed bytes on the wire, both directions of
the one TCP connection), so no proxy adds latency to the round trips being measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import RNS

APP_NAME = "meshmeetbench"
ASPECT = "echo"
PATH_TIMEOUT_S = 20.0
PATH_RETRY_S = 2.0
SETUP_TIMEOUT_S = 5.0
RTT_TIMEOUT_S = 2.0
QUIET_S = 0.05
TEARDOWN_WAIT_S = 1.0


def write_config(configdir: Path, interface: str, port: int) -> None:
    """A Reticulum config with exactly one TCP interface on 127.0.0.1 and nothing shared."""
    if interface == "server":
        block = (
            "  [[Bench TCP Server]]\n    type = TCPServerInterface\n    enabled = yes\n"
            f"    listen_ip = 127.0.0.1\n    listen_port = {port}\n"
        )
    else:
        block = (
            "  [[Bench TCP Client]]\n    type = TCPClientInterface\n    enabled = yes\n"
            f"    target_host = 127.0.0.1\n    target_port = {port}\n"
        )
    configdir.mkdir(parents=True, exist_ok=True)
    (configdir / "config").write_text(
        "[reticulum]\n  enable_transport = False\n  share_instance = No\n  panic_on_interface_error = No\n"
        "\n[logging]\n  loglevel = 2\n\n"
        "[interfaces]\n  [[Default Interface]]\n    type = AutoInterface\n    enabled = no\n\n" + block
    )


def log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def start_reticulum(configdir: Path) -> RNS.Reticulum:
    return RNS.Reticulum(str(configdir), loglevel=RNS.LOG_WARNING, logdest=log_to_stderr)


def exit_when_parent_goes(budget_s: float) -> None:
    """Leave when stdin closes (the bench ended) or the budget runs out, whichever comes first."""

    def watch_stdin() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    timer = threading.Timer(budget_s, lambda: os._exit(3))
    timer.daemon = True
    timer.start()


# ----- server ------------------------------------------------------------------------------


def run_server(configdir: Path, port: int, budget_s: float) -> None:
    exit_when_parent_goes(budget_s)
    write_config(configdir, "server", port)
    start_reticulum(configdir)
    identity = RNS.Identity()
    destination = RNS.Destination(identity, RNS.Destination.IN, RNS.Destination.SINGLE, APP_NAME, ASPECT)

    def on_link(link: RNS.Link) -> None:
        link.set_packet_callback(lambda message, packet: RNS.Packet(link, message).send())
        link.set_resource_strategy(RNS.Link.ACCEPT_ALL)

    destination.set_link_established_callback(on_link)
    destination.announce()
    print("READY " + destination.hash.hex(), flush=True)
    threading.Event().wait()


# ----- client ------------------------------------------------------------------------------


class CountingSocket:
    """Wraps the interface's socket: counts bytes written and read, and records flights."""

    def __init__(self, sock) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self.tx = 0
        self.rx = 0
        self._flights: list[list] | None = None  # [direction, bytes] runs while recording

    def recv(self, size: int, *args) -> bytes:
        data = self._sock.recv(size, *args)
        self._count("rx", len(data))
        return data

    def sendall(self, data, *args) -> None:
        # Count first: once the bytes are out, the reply can be read (and counted) by the
        # reader thread before sendall returns here, which would misorder the flights.
        self._count("tx", len(data))
        self._sock.sendall(data, *args)

    def _count(self, direction: str, n: int) -> None:
        if n == 0:
            return
        with self._lock:
            if direction == "tx":
                self.tx += n
            else:
                self.rx += n
            if self._flights is not None:
                if self._flights and self._flights[-1][0] == direction:
                    self._flights[-1][1] += n
                else:
                    self._flights.append([direction, n])

    def total(self) -> int:
        with self._lock:
            return self.tx + self.rx

    def record(self) -> None:
        with self._lock:
            self._flights = []

    def flights(self) -> list[list]:
        with self._lock:
            out, self._flights = self._flights or [], None
            return out

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def wrap_client_socket(deadline: float) -> CountingSocket:
    while time.monotonic() < deadline:
        for interface in RNS.Transport.interfaces:
            if type(interface).__name__ == "TCPClientInterface" and getattr(interface, "socket", None) is not None:
                counter = CountingSocket(interface.socket)
                interface.socket = counter
                return counter
        time.sleep(0.02)
    raise TimeoutError("the TCP client interface did not connect")


def wait_for_path(dest_hash: bytes, deadline: float) -> None:
    next_request = 0.0
    while not RNS.Transport.has_path(dest_hash):
        now = time.monotonic()
        if now >= deadline:
            raise TimeoutError("no path to the echo destination")
        if now >= next_request:
            RNS.Transport.request_path(dest_hash)
            next_request = now + PATH_RETRY_S
        time.sleep(0.01)


def open_link(destination: RNS.Destination, timeout_s: float) -> tuple[RNS.Link | None, float]:
    established = threading.Event()
    start = time.perf_counter()
    link = RNS.Link(destination, established_callback=lambda _link: established.set())
    if not established.wait(timeout_s):
        link.teardown()
        return None, time.perf_counter() - start
    return link, time.perf_counter() - start


def close_link(link: RNS.Link) -> None:
    closed = threading.Event()
    link.set_link_closed_callback(lambda _link: closed.set())
    link.teardown()
    closed.wait(TEARDOWN_WAIT_S)
    time.sleep(QUIET_S)  # let the close packet clear the socket before the next measurement


def measure_setups(destination: RNS.Destination, counter: CountingSocket, count: int) -> dict:
    """Open and close `count` links: time until the initiator may send, bytes and flights of each."""
    out: dict = {"setup_ms": [], "setup_bytes": [], "setup_flights": []}
    for _ in range(count):
        time.sleep(QUIET_S)
        counter.record()
        link, elapsed = open_link(destination, SETUP_TIMEOUT_S)
        flights = counter.flights()
        if link is None:
            out["error"] = f"a link did not establish within {SETUP_TIMEOUT_S} s"
            break
        out["setup_ms"].append(elapsed * 1000.0)
        out["setup_bytes"].append(sum(n for _, n in flights))
        out["setup_flights"].append([n for _, n in flights])
        close_link(link)
    return out


def measure_rtt(link: RNS.Link, counter: CountingSocket, count: int, size: int) -> dict:
    """Echo `count` packets of `size` B, one at a time; each round trip and the bytes they moved.

    The next packet goes out from the packet callback itself (Reticulum's reader thread), so no
    hand-over to another thread is timed: the best case Reticulum's API allows.
    """
    out: dict = {"rtt_ms": [], "wire_bytes": 0}
    samples = out["rtt_ms"]
    current = {"payload": b"", "start": 0.0}
    done = threading.Event()
    lock = threading.Lock()

    def send_next() -> None:
        current["payload"] = os.urandom(size)
        current["start"] = time.perf_counter()
        RNS.Packet(link, current["payload"]).send()

    def on_packet(message: bytes, packet) -> None:
        with lock:
            if done.is_set():
                return
            if message != current["payload"]:
                out["error"] = "an echo came back different"
                done.set()
                return
            samples.append((time.perf_counter() - current["start"]) * 1000.0)
            if len(samples) >= count:
                done.set()
                return
            send_next()

    link.set_packet_callback(on_packet)
    time.sleep(QUIET_S)
    before = counter.total()
    with lock:
        send_next()
    seen = -1
    while not done.wait(RTT_TIMEOUT_S):
        with lock:
            if len(samples) == seen:
                out["error"] = f"an echo did not come back within {RTT_TIMEOUT_S} s"
                done.set()
            seen = len(samples)
    with lock:
        out["wire_bytes"] = counter.total() - before
        return out


def measure_resource(link: RNS.Link, counter: CountingSocket, size: int, timeout_s: float) -> dict:
    """Send `size` random bytes as one RNS.Resource (no compression); seconds until it is proven."""
    data = os.urandom(size)
    done = threading.Event()
    time.sleep(QUIET_S)
    before = counter.total()
    start = time.perf_counter()
    resource = RNS.Resource(data, link, auto_compress=False, callback=lambda _resource: done.set())
    finished = done.wait(timeout_s)
    elapsed = time.perf_counter() - start
    if not finished:
        resource.cancel()
        return {"error": f"{size} B not transferred within {timeout_s:.0f} s"}
    if resource.status != RNS.Resource.COMPLETE:
        return {"error": f"the transfer ended with status {resource.status}"}
    return {"seconds": elapsed, "wire_bytes": counter.total() - before}


def reply(tag: str, body: dict) -> None:
    print(f"{tag} {json.dumps(body)}", flush=True)


def run_client(configdir: Path, port: int, dest_hex: str, budget_s: float) -> None:
    """Connect, find the path, answer READY; then run commands from stdin until EOF or `quit`.

    Commands (one line each, one `RESULT {json}` line back): `setup N`, `rtt N SIZE`,
    `resource SIZE TIMEOUT_S`.
    """
    started = time.monotonic()
    timer = threading.Timer(budget_s, lambda: os._exit(3))
    timer.daemon = True
    timer.start()
    try:
        write_config(configdir, "client", port)
        start_reticulum(configdir)
        counter = wrap_client_socket(time.monotonic() + PATH_TIMEOUT_S)
        dest_hash = bytes.fromhex(dest_hex)
        wait_for_path(dest_hash, time.monotonic() + PATH_TIMEOUT_S)
        identity = RNS.Identity.recall(dest_hash)
        destination = RNS.Destination(identity, RNS.Destination.OUT, RNS.Destination.SINGLE, APP_NAME, ASPECT)
    except Exception as e:
        reply("FAILED", {"error": f"{type(e).__name__}: {e}"})
        os._exit(1)
    reply("READY", {"ready_s": time.monotonic() - started})
    link: RNS.Link | None = None
    for line in sys.stdin:
        command, *args = line.split() or [""]
        try:
            if command == "setup":
                result = measure_setups(destination, counter, int(args[0]))
            elif command in ("rtt", "resource"):
                if link is None or link.status != RNS.Link.ACTIVE:
                    link, _ = open_link(destination, SETUP_TIMEOUT_S)
                if link is None:
                    result = {"error": "could not open a link"}
                elif command == "rtt":
                    result = measure_rtt(link, counter, int(args[0]), int(args[1]))
                else:
                    result = measure_resource(link, counter, int(args[0]), float(args[1]))
            elif command == "quit":
                break
            else:
                result = {"error": f"unknown command {command!r}"}
        except Exception as e:  # report it; the bench decides what to do
            result = {"error": f"{type(e).__name__}: {e}"}
        reply("RESULT", result)
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("--configdir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dest", help="client: hex hash of the server's destination")
    parser.add_argument("--budget-s", type=float, default=60.0, help="leave after this long, whatever happens")
    args = parser.parse_args()
    if args.role == "server":
        run_server(args.configdir, args.port, args.budget_s)
    else:
        run_client(args.configdir, args.port, args.dest, args.budget_s)


if __name__ == "__main__":
    main()
