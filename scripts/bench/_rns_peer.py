"""One end of the Reticulum (rns) baseline for scripts/bench/links.py, run as its own process.

`server`: a Reticulum instance with one TCPServerInterface on 127.0.0.1 and a destination that
accepts links, echoes every link packet and accepts every resource. `client`: a Reticulum
instance with one TCPClientInterface to that server; it measures link setup (time, bytes and
flights on the TCP socket), the round trip of 16 B echo packets and 1 MB resource transfers,
then prints one line `RESULT {json}`. Every wait is bounded; a figure that could not be taken is
null with the reason in "notes". This script must never listen or connect anywhere but
127.0.0.1, never enable AutoInterface or a shared instance, and never outlive its budget.

Bytes are counted at the TCP level: the client's interface socket is wrapped in a counter of
what `sendall` wrote and `recv` returned (the HDLC-framed bytes on the wire, both directions of
the one TCP connection), so no proxy adds latency to the round trips being measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def measure_setups(destination, counter: CountingSocket, count: int, deadline: float, notes: list[str]) -> dict:
    times_ms, sizes, flights_seen = [], [], []
    for _ in range(count):
        if time.monotonic() + SETUP_TIMEOUT_S > deadline:
            notes.append(f"rns setup: stopped after {len(times_ms)} of {count} links (time budget)")
            break
        time.sleep(QUIET_S)
        counter.record()
        link, elapsed = open_link(destination, SETUP_TIMEOUT_S)
        flights = counter.flights()
        if link is None:
            notes.append(f"rns setup: a link did not establish within {SETUP_TIMEOUT_S} s")
            continue
        times_ms.append(elapsed * 1000.0)
        sizes.append(sum(n for _, n in flights))
        flights_seen.append(flights)
        close_link(link)
    return {
        "setup_ms": median(times_ms),
        "setup_bytes": median(sizes),
        "setup_round_trips": median([len(f) / 2 for f in flights_seen]),
        "setup_flights_bytes": [n for _, n in flights_seen[0]] if flights_seen else None,
        "setup_samples": len(times_ms),
    }


def measure_rtt(link: RNS.Link, counter: CountingSocket, count: int, size: int, deadline: float, notes: list[str]) -> dict:
    replies: list[bytes] = []
    got = threading.Event()

    def on_packet(message: bytes, packet) -> None:
        replies.append(message)
        got.set()

    link.set_packet_callback(on_packet)
    samples = []
    time.sleep(QUIET_S)
    before = counter.total()
    for _ in range(count):
        if time.monotonic() + RTT_TIMEOUT_S > deadline:
            notes.append(f"rns rtt: stopped after {len(samples)} of {count} echoes (time budget)")
            break
        payload = os.urandom(size)
        got.clear()
        start = time.perf_counter()
        RNS.Packet(link, payload).send()
        if not got.wait(RTT_TIMEOUT_S):
            notes.append(f"rns rtt: an echo did not come back within {RTT_TIMEOUT_S} s")
            break
        samples.append((time.perf_counter() - start) * 1000.0)
    wire = counter.total() - before
    return {
        "rtt_ms": median(samples),
        "rtt_samples": len(samples),
        "overhead_bytes_per_msg": (wire / (2 * len(samples)) - size) if samples else None,
    }


def measure_resource(link: RNS.Link, counter: CountingSocket, size: int, runs: int, deadline: float, timeout_s: float,
                     notes: list[str]) -> dict:
    data = os.urandom(size)
    rates, wire = [], []
    for _ in range(runs):
        remaining = deadline - time.monotonic()
        if remaining < 1.0:
            notes.append(f"rns resource: stopped after {len(rates)} of {runs} transfers (time budget)")
            break
        done = threading.Event()
        time.sleep(QUIET_S)
        before = counter.total()
        start = time.perf_counter()
        resource = RNS.Resource(data, link, auto_compress=False, callback=lambda _r: done.set())
        finished = done.wait(min(timeout_s, remaining))
        elapsed = time.perf_counter() - start
        if not finished:
            notes.append(f"rns resource: {size} B not transferred within {min(timeout_s, remaining):.0f} s")
            resource.cancel()
            break
        if resource.status != RNS.Resource.COMPLETE:
            notes.append(f"rns resource: transfer ended with status {resource.status}")
            break
        rates.append(size * 8 / elapsed / 1e6)
        wire.append(counter.total() - before)
    return {"mbit_s_1mb": median(rates), "resource_runs": len(rates), "resource_wire_bytes": median(wire)}


def run_client(configdir: Path, port: int, dest_hex: str, args: argparse.Namespace) -> None:
    started = time.monotonic()
    deadline = started + args.budget_s
    exit_when_parent_goes(args.budget_s + 5.0)
    notes: list[str] = []
    result: dict = {"version": RNS.__version__ if hasattr(RNS, "__version__") else None, "notes": notes}
    try:
        write_config(configdir, "client", port)
        start_reticulum(configdir)
        counter = wrap_client_socket(time.monotonic() + PATH_TIMEOUT_S)
        dest_hash = bytes.fromhex(dest_hex)
        wait_for_path(dest_hash, time.monotonic() + PATH_TIMEOUT_S)
        identity = RNS.Identity.recall(dest_hash)
        destination = RNS.Destination(identity, RNS.Destination.OUT, RNS.Destination.SINGLE, APP_NAME, ASPECT)
        result["ready_s"] = time.monotonic() - started
        result.update(measure_setups(destination, counter, args.setups, deadline, notes))
        link, _ = open_link(destination, SETUP_TIMEOUT_S)
        if link is None:
            raise TimeoutError("could not open the link for round trips and transfers")
        result.update(measure_rtt(link, counter, args.rtts, args.message_bytes, deadline, notes))
        result.update(
            measure_resource(link, counter, args.resource_bytes, args.resource_runs, deadline, args.resource_timeout_s, notes)
        )
        link.teardown()
    except Exception as e:  # report what we have; the bench must still print its table
        notes.append(f"rns client: {type(e).__name__}: {e}")
    print("RESULT " + json.dumps(result), flush=True)
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("--configdir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dest", help="client: hex hash of the server's destination")
    parser.add_argument("--budget-s", type=float, default=60.0)
    parser.add_argument("--setups", type=int, default=20)
    parser.add_argument("--rtts", type=int, default=200)
    parser.add_argument("--message-bytes", type=int, default=16)
    parser.add_argument("--resource-bytes", type=int, default=1_000_000)
    parser.add_argument("--resource-runs", type=int, default=3)
    parser.add_argument("--resource-timeout-s", type=float, default=30.0)
    args = parser.parse_args()
    if args.role == "server":
        run_server(args.configdir, args.port, args.budget_s)
    else:
        run_client(args.configdir, args.port, args.dest, args)


if __name__ == "__main__":
    main()
