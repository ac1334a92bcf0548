"""Link benchmark on loopback: meshmeet links vs raw TCP (no crypto) vs Reticulum, in one run.

Measures, for each: link setup (time and bytes on the wire, median of 20), the round trip of a
16 B message (median of 200) and the throughput of 1 MB and 50 MB transfers (Reticulum: 1 MB).

- meshmeet: two real LinkConnection ends on real TCP sockets on 127.0.0.1, driven by trio tasks
  in this process with the same calls as meshmeet/node/links.py (receive_some of RECEIVE_BYTES,
  receive_data, data_to_send, send_all after every call; one send_all per message). Setup time
  runs from the dial (TCP connect included) until the initiator may send; setup bytes count
  everything either side wrote until both have HandshakeComplete.
- raw TCP: the same driver and tasks with a u16 length prefix instead of the link core.
- Reticulum (`rns`): two processes (scripts/bench/_rns_peer.py), one TCP server and one TCP
  client interface on 127.0.0.1, bytes counted on the client's TCP socket.

The three run one after another (throughput runs of meshmeet and raw TCP alternate), so a
load spike from other work on the shared machine hits both sides of a ratio. Takes about
20-40 s; it must never be run in a loop on the shared machine, and it must never listen or
connect anywhere but 127.0.0.1.

    python scripts/bench/links.py            # table
    python scripts/bench/links.py --json     # {"meshmeet": {...}, "raw_tcp": {...}, "rns": {...}, "goals": {...}}
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import json
import math
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Protocol

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from meshmeet.node.links import RECEIVE_BYTES
from meshmeet.wire import (
    MAX_MESSAGE_BYTES,
    ConnectionClosed,
    Event,
    HandshakeComplete,
    LinkConnection,
    MessageReceived,
    Role,
)
from meshmeet.wire.testing import TEST_COMMUNE_ID, TestRoster

HOST = "127.0.0.1"
SETUPS = 20
ROUND_TRIPS = 200
MESSAGE_BYTES = 16
SMALL_TRANSFER_BYTES = 1_000_000
LARGE_TRANSFER_BYTES = 50_000_000
SMALL_TRANSFER_RUNS = 15
LARGE_TRANSFER_RUNS = 3
RNS_TRANSFER_RUNS = 3
CHUNK_BYTES = MAX_MESSAGE_BYTES  # the largest message one link frame carries
PLAIN_LENGTH_BYTES = 2
BENCH_KEEPALIVE_S = 3600.0  # no keepalive pings inside the measurements
STEP_TIMEOUT_S = 30.0  # any single meshmeet/raw TCP step; far above what it needs
RNS_READY_TIMEOUT_S = 20.0
RNS_BUDGET_S = 90.0  # the whole Reticulum client run
RNS_EXIT_TIMEOUT_S = 5.0
INITIATOR_ID, RESPONDER_ID = 1, 2
RESPONDER_LIFETIME_S = 120.0  # the responder process leaves by itself after this

GOAL_SETUP_BYTES_BELOW = 200
GOAL_SETUP_ROUND_TRIPS_MAX = 1.5
GOAL_OVERHEAD_BYTES_MAX = 21
GOAL_RTT_FRACTION_OF_RNS_MAX = 0.5
GOAL_THROUGHPUT_TIMES_RNS_MIN = 2.0
GOAL_THROUGHPUT_FRACTION_OF_RAW_MIN = 0.30


# ----- the two sans-IO cores the driver can run ------------------------------------------------


class Core(Protocol):
    def receive_data(self, data: bytes, now: float) -> list[Event]: ...
    def send_message(self, payload: bytes, now: float) -> bool: ...
    def data_to_send(self) -> bytes: ...
    def next_deadline(self) -> float | None: ...
    def handle_timer(self, now: float) -> list[Event]: ...


class PlainConnection:
    """The raw TCP baseline: u16 BE length + payload, no handshake and no crypto."""

    def __init__(self) -> None:
        self._inbox = bytearray()
        self._outbox = bytearray()

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        if not data:
            return [ConnectionClosed(reason="connection lost", code=6, by_peer=True, error=True)]
        self._inbox += data
        events: list[Event] = []
        while len(self._inbox) >= PLAIN_LENGTH_BYTES:
            total = PLAIN_LENGTH_BYTES + int.from_bytes(self._inbox[:PLAIN_LENGTH_BYTES], "big")
            if len(self._inbox) < total:
                break
            body = bytes(self._inbox[PLAIN_LENGTH_BYTES:total])
            del self._inbox[:total]
            events.append(MessageReceived(payload=body))
        return events

    def send_message(self, payload: bytes, now: float) -> bool:
        self._outbox += len(payload).to_bytes(PLAIN_LENGTH_BYTES, "big") + payload
        return True

    def data_to_send(self) -> bytes:
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    def next_deadline(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> list[Event]:
        return []


# ----- the driver ------------------------------------------------------------------------------


@dataclass
class Wire:
    """Every write to and read from one socket: (direction, bytes), for byte counts and flights."""

    events: list[tuple[str, int]] = field(default_factory=list)

    def total(self) -> int:
        return sum(n for _, n in self.events)

    def flights(self) -> int:
        runs, last = 0, None
        for direction, _ in self.events:
            if direction != last:
                runs, last = runs + 1, direction
        return runs


class Endpoint:
    """One end: a stream plus a core, fed like LinkManager feeds a LinkConnection."""

    def __init__(self, stream: trio.SocketStream, core: Core,
                 on_message: Callable[[bytes], Awaitable[None]] | None = None) -> None:
        self.stream = stream
        self.core = core
        self.wire = Wire()
        self.on_message = on_message
        self.established = trio.Event()
        self._send_lock = trio.Lock()

    async def flush(self) -> None:
        data = self.core.data_to_send()
        if data:
            self.wire.events.append(("tx", len(data)))  # before sending: the reply may come first
            async with self._send_lock:
                await self.stream.send_all(data)

    async def send(self, payload: bytes) -> None:
        self.core.send_message(payload, trio.current_time())
        await self.flush()

    async def run(self) -> None:
        while True:
            deadline = self.core.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline) as scope:
                data = await self.stream.receive_some(RECEIVE_BYTES)
            if scope.cancelled_caught:
                events = self.core.handle_timer(trio.current_time())
            else:
                if data:
                    self.wire.events.append(("rx", len(data)))
                events = self.core.receive_data(data, trio.current_time())
            await self.flush()
            for event in events:
                if isinstance(event, HandshakeComplete):
                    self.established.set()
                elif isinstance(event, MessageReceived) and self.on_message is not None:
                    await self.on_message(event.payload)
                elif isinstance(event, ConnectionClosed):
                    return


def bench_roster() -> TestRoster:
    """The same two members in both processes (TestRoster derives keys from short ids)."""
    roster = TestRoster()
    roster.add(INITIATOR_ID)
    roster.add(RESPONDER_ID)
    return roster


def meshmeet_core(roster: TestRoster, role: Role) -> LinkConnection:
    short_id = INITIATOR_ID if role is Role.INITIATOR else RESPONDER_ID
    return LinkConnection(
        role=role,
        me=roster.members[short_id],
        my_short_id=short_id,
        commune_id=TEST_COMMUNE_ID,
        lookup=roster.lookup,
        now=trio.current_time(),
        keepalive_s=BENCH_KEEPALIVE_S,
    )


# ----- the responder process (links.py --serve) ------------------------------------------------
#
# Application messages of the bench, on both kinds of link: the initiator's first message is a
# command. ECHO: send every later message back. SINK + u64 total: count later message bytes and,
# once `total` have arrived, answer DONE + the f64 time.monotonic() of the last byte (CLOCK_MONOTONIC,
# shared by both processes on this host).

CMD_ECHO = b"E"
CMD_SINK = b"S"
REPLY_DONE = b"D"


class ResponderApp:
    def __init__(self) -> None:
        self.endpoint: Endpoint | None = None
        self.mode: bytes | None = None
        self.expected = 0
        self.received = 0

    async def on_message(self, payload: bytes) -> None:
        assert self.endpoint is not None
        if self.mode is None:
            self.mode = payload[:1]
            if self.mode == CMD_SINK:
                self.expected = int.from_bytes(payload[1:9], "big")
        elif self.mode == CMD_ECHO:
            await self.endpoint.send(payload)
        else:
            self.received += len(payload)
            if self.received == self.expected:
                await self.endpoint.send(REPLY_DONE + struct.pack(">d", time.monotonic()))


async def serve_one(stream: trio.SocketStream, roster: TestRoster | None) -> None:
    app = ResponderApp()
    core = PlainConnection() if roster is None else meshmeet_core(roster, Role.RESPONDER)
    app.endpoint = Endpoint(stream, core, app.on_message)
    try:
        await app.endpoint.run()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve() -> None:
    """Answer links on two loopback ports until stdin closes (or a lifetime cap passes)."""
    roster = bench_roster()
    meshmeet_listener = (await trio.open_tcp_listeners(0, host=HOST))[0]
    raw_listener = (await trio.open_tcp_listeners(0, host=HOST))[0]
    ports = [listener.socket.getsockname()[1] for listener in (meshmeet_listener, raw_listener)]
    print(f"PORTS {ports[0]} {ports[1]}", flush=True)
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    with trio.move_on_after(RESPONDER_LIFETIME_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, functools.partial(serve_one, roster=roster), [meshmeet_listener])
            nursery.start_soon(trio.serve_listeners, functools.partial(serve_one, roster=None), [raw_listener])
            while await stdin.receive_some(1024):
                pass
            nursery.cancel_scope.cancel()


# ----- the initiator side: measurements --------------------------------------------------------


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


class Dialer:
    """Opens links to the responder process and runs their endpoints in one nursery."""

    def __init__(self, nursery: trio.Nursery, port: int, roster: TestRoster | None) -> None:
        self.nursery = nursery
        self.port = port
        self.roster = roster
        self.replies_send, self.replies_receive = trio.open_memory_channel[bytes](1)

    async def open(self) -> tuple[Endpoint, trio.CancelScope, float, float]:
        """A link that is ready to send: (endpoint, its task's scope, seconds to connect, to be ready)."""
        start = time.perf_counter()
        stream = await trio.open_tcp_stream(HOST, self.port)
        connected = time.perf_counter()
        core = PlainConnection() if self.roster is None else meshmeet_core(self.roster, Role.INITIATOR)
        endpoint = Endpoint(stream, core, self.replies_send.send)
        scope = await self.nursery.start(self._run, endpoint)
        if isinstance(core, LinkConnection):
            core.start(trio.current_time())
            await endpoint.flush()
            await endpoint.established.wait()
        ready = time.perf_counter()
        return endpoint, scope, connected - start, ready - start

    async def _run(self, endpoint: Endpoint, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            try:
                await endpoint.run()
            finally:
                await trio.aclose_forcefully(endpoint.stream)

    async def echo(self, endpoint: Endpoint, payload: bytes) -> float:
        """Seconds for one message to come back."""
        start = time.perf_counter()
        await endpoint.send(payload)
        reply = await self.replies_receive.receive()
        elapsed = time.perf_counter() - start
        if reply != payload:
            raise RuntimeError("the echo came back different")
        return elapsed


async def measure_setups(dialer: Dialer) -> dict:
    ready_ms, connect_ms, sizes, round_trips = [], [], [], []
    for _ in range(SETUPS):
        with trio.fail_after(STEP_TIMEOUT_S):
            endpoint, scope, connected_s, ready_s = await dialer.open()
            setup = Wire(list(endpoint.wire.events))
            await endpoint.send(CMD_ECHO)  # prove that the responder is established too
            await dialer.echo(endpoint, b"x")
            scope.cancel()
        ready_ms.append(ready_s * 1000.0)
        connect_ms.append(connected_s * 1000.0)
        sizes.append(setup.total())
        round_trips.append(setup.flights() / 2)
    out = {"setup_ms": median(ready_ms), "tcp_connect_ms": median(connect_ms)}
    if dialer.roster is not None:
        out.update(setup_bytes=median(sizes), setup_round_trips=median(round_trips))
    return out


async def measure_round_trips(dialer: Dialer) -> dict:
    """Echo 16 B messages; the median round trip and the wire bytes each message cost."""
    with trio.fail_after(STEP_TIMEOUT_S):
        endpoint, scope, _, _ = await dialer.open()
        await endpoint.send(CMD_ECHO)
        samples = []
        before = endpoint.wire.total()
        for _ in range(ROUND_TRIPS):
            samples.append(await dialer.echo(endpoint, os.urandom(MESSAGE_BYTES)) * 1000.0)
        wire_bytes = endpoint.wire.total() - before
        scope.cancel()
    return {"rtt_ms": median(samples), "overhead_bytes_per_msg": wire_bytes / (2 * ROUND_TRIPS) - MESSAGE_BYTES}


async def measure_transfer(dialer: Dialer, total: int, chunk: bytes) -> float:
    """Send `total` bytes as messages of up to CHUNK_BYTES; Mbit/s until the receiver has them all."""
    sizes = [CHUNK_BYTES] * (total // CHUNK_BYTES) + ([total % CHUNK_BYTES] if total % CHUNK_BYTES else [])
    with trio.fail_after(STEP_TIMEOUT_S):
        endpoint, scope, _, _ = await dialer.open()
        await endpoint.send(CMD_SINK + total.to_bytes(8, "big"))
        start = time.monotonic()
        for size in sizes:
            await endpoint.send(chunk if size == CHUNK_BYTES else chunk[:size])
        reply = await dialer.replies_receive.receive()
        scope.cancel()
    if reply[:1] != REPLY_DONE:
        raise RuntimeError("the sink did not confirm the transfer")
    (finished,) = struct.unpack(">d", reply[1:9])
    return total * 8 / (finished - start) / 1e6


async def start_responder(nursery: trio.Nursery) -> tuple[trio.Process, int, int]:
    process = await trio.lowlevel.open_process(
        [sys.executable, str(Path(__file__).resolve()), "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    line = None
    with trio.move_on_after(STEP_TIMEOUT_S):
        line = await read_line_with(process.stdout, b"PORTS ", bytearray())
    if not line:
        process.kill()
        raise RuntimeError("the responder process did not start")
    meshmeet_port, raw_port = (int(p) for p in line.split())
    return process, meshmeet_port, raw_port


async def measure_local() -> tuple[dict, dict]:
    """meshmeet and raw TCP against the responder process."""
    chunk = os.urandom(CHUNK_BYTES)
    async with trio.open_nursery() as nursery:
        process, meshmeet_port, raw_port = await start_responder(nursery)
        try:
            ours_dialer = Dialer(nursery, meshmeet_port, bench_roster())
            raw_dialer = Dialer(nursery, raw_port, None)
            meshmeet = await measure_setups(ours_dialer)
            raw = await measure_setups(raw_dialer)
            meshmeet.update(await measure_round_trips(ours_dialer))
            raw.update(await measure_round_trips(raw_dialer))
            for key, total, runs in (
                ("mbit_s_1mb", SMALL_TRANSFER_BYTES, SMALL_TRANSFER_RUNS),
                ("mbit_s_50mb", LARGE_TRANSFER_BYTES, LARGE_TRANSFER_RUNS),
            ):
                ours, theirs = [], []
                for _ in range(runs):  # alternate, so load from other work hits both
                    ours.append(await measure_transfer(ours_dialer, total, chunk))
                    theirs.append(await measure_transfer(raw_dialer, total, chunk))
                meshmeet[key], raw[key] = median(ours), median(theirs)
        finally:
            with trio.CancelScope(shield=True):
                await stop(process)
    return meshmeet, raw


# ----- Reticulum, in two child processes -------------------------------------------------------

RNS_KEYS = ("setup_ms", "setup_bytes", "rtt_ms", "mbit_s_1mb")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


async def read_line_with(stream: trio.abc.ReceiveStream, prefix: bytes, buffer: bytearray) -> bytes | None:
    """Read until a line starting with `prefix` arrives; None at end of stream."""
    while True:
        while b"\n" in buffer:
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        data = await stream.receive_some(65536)
        if not data:
            return None
        buffer += data


async def stop(process: trio.Process) -> None:
    """Close the child's stdin (it exits on EOF); kill it if it lingers."""
    if process.stdin is not None:
        with trio.move_on_after(1):
            await process.stdin.aclose()
    with trio.move_on_after(RNS_EXIT_TIMEOUT_S):
        await process.wait()
        return
    process.kill()
    await process.wait()


def tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


async def measure_rns() -> dict:
    result: dict = {key: None for key in RNS_KEYS}
    notes: list[str] = []
    result["notes"] = notes
    if importlib.util.find_spec("RNS") is None:
        notes.append("rns is not installed (pip install rns); Reticulum figures are null")
        return result
    result["version"] = importlib.metadata.version("rns")
    peer = Path(__file__).with_name("_rns_peer.py")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="meshmeet-bench-rns-") as tmp:
        tmpdir = Path(tmp)
        base = [sys.executable, str(peer)]
        with open(tmpdir / "server.err", "wb") as server_err, open(tmpdir / "client.err", "wb") as client_err:
            server = await trio.lowlevel.open_process(
                base + ["server", "--configdir", str(tmpdir / "server"), "--port", str(port),
                        "--budget-s", str(RNS_BUDGET_S + RNS_READY_TIMEOUT_S + 10)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=server_err,
            )
            client = None
            try:
                dest = None
                with trio.move_on_after(RNS_READY_TIMEOUT_S):
                    dest = await read_line_with(server.stdout, b"READY ", bytearray())
                if not dest:
                    notes.append(f"rns server did not start: {tail(tmpdir / 'server.err')}")
                    return result
                client = await trio.lowlevel.open_process(
                    base + ["client", "--configdir", str(tmpdir / "client"), "--port", str(port),
                            "--dest", dest.decode(), "--budget-s", str(RNS_BUDGET_S),
                            "--setups", str(SETUPS), "--rtts", str(ROUND_TRIPS),
                            "--message-bytes", str(MESSAGE_BYTES), "--resource-bytes", str(SMALL_TRANSFER_BYTES),
                            "--resource-runs", str(RNS_TRANSFER_RUNS)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=client_err,
                )
                line = None
                with trio.move_on_after(RNS_BUDGET_S + 10):
                    line = await read_line_with(client.stdout, b"RESULT ", bytearray())
                if not line:
                    notes.append(f"rns client gave no result: {tail(tmpdir / 'client.err')}")
                    return result
                measured = json.loads(line)
                notes.extend(measured.pop("notes", []))
                result.update(measured)
            finally:
                with trio.CancelScope(shield=True):
                    if client is not None:
                        await stop(client)
                    await stop(server)
    return result


# ----- report ----------------------------------------------------------------------------------


def goal(target: str, value: float | None, bound: float | None, ok: Callable[[float, float], bool]) -> dict:
    passed = None if value is None or bound is None else bool(ok(value, bound))
    return {"target": target, "value": value, "bound": bound, "pass": passed}


def goals(ours: dict, raw: dict, rns: dict) -> dict:
    def times(x: float | None, k: float) -> float | None:
        return None if x is None else x * k

    return {
        "setup_bytes": goal(f"< {GOAL_SETUP_BYTES_BELOW} B", ours["setup_bytes"], GOAL_SETUP_BYTES_BELOW, lambda v, b: v < b),
        "setup_round_trips": goal(f"<= {GOAL_SETUP_ROUND_TRIPS_MAX}", ours["setup_round_trips"],
                                  GOAL_SETUP_ROUND_TRIPS_MAX, lambda v, b: v <= b),
        "overhead_bytes_per_msg": goal(f"<= {GOAL_OVERHEAD_BYTES_MAX} B", ours["overhead_bytes_per_msg"],
                                       GOAL_OVERHEAD_BYTES_MAX, lambda v, b: v <= b),
        "rtt_vs_rns": goal(f"<= {GOAL_RTT_FRACTION_OF_RNS_MAX} x Reticulum's", ours["rtt_ms"],
                           times(rns.get("rtt_ms"), GOAL_RTT_FRACTION_OF_RNS_MAX), lambda v, b: v <= b),
        "throughput_1mb_vs_rns": goal(f">= {GOAL_THROUGHPUT_TIMES_RNS_MIN} x Reticulum's", ours["mbit_s_1mb"],
                                      times(rns.get("mbit_s_1mb"), GOAL_THROUGHPUT_TIMES_RNS_MIN), lambda v, b: v >= b),
        "throughput_1mb_vs_raw_tcp": goal(f">= {GOAL_THROUGHPUT_FRACTION_OF_RAW_MIN:.0%} of raw TCP", ours["mbit_s_1mb"],
                                          times(raw["mbit_s_1mb"], GOAL_THROUGHPUT_FRACTION_OF_RAW_MIN), lambda v, b: v >= b),
        "throughput_50mb_vs_raw_tcp": goal(f">= {GOAL_THROUGHPUT_FRACTION_OF_RAW_MIN:.0%} of raw TCP", ours["mbit_s_50mb"],
                                           times(raw["mbit_s_50mb"], GOAL_THROUGHPUT_FRACTION_OF_RAW_MIN), lambda v, b: v >= b),
    }


def rounded(section: dict) -> dict:
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in section.items()}


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def ratio(a, b) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def print_table(result: dict) -> None:
    ours, raw, rns = result["meshmeet"], result["raw_tcp"], result["rns"]
    rows = [
        ("setup time, ms (meshmeet, raw: incl. TCP connect)", "setup_ms"),
        ("setup bytes on the wire, both ways", "setup_bytes"),
        ("setup round trips", "setup_round_trips"),
        ("overhead per message, B", "overhead_bytes_per_msg"),
        (f"round trip of {MESSAGE_BYTES} B, ms", "rtt_ms"),
        ("throughput 1 MB, Mbit/s", "mbit_s_1mb"),
        ("throughput 50 MB, Mbit/s", "mbit_s_50mb"),
    ]
    print(f"{'median of each':52} {'meshmeet':>10} {'raw TCP':>10} {'Reticulum':>10} {'mm/raw':>8} {'mm/rns':>8}")
    for name, key in rows:
        a, b, c = ours.get(key), raw.get(key), rns.get(key)
        print(f"{name:52} {fmt(a):>10} {fmt(b):>10} {fmt(c):>10} {ratio(a, b):>8} {ratio(a, c):>8}")
    print(f"\nmeshmeet setup without the TCP connect: {fmt(ours['setup_ms'] - ours['tcp_connect_ms'])} ms "
          f"(the initiator may send; the responder is established half a round trip later)")
    print(f"Reticulum {rns.get('version') or '(not run)'}: setup flights {rns.get('setup_flights_bytes')} B, "
          f"1 MB resource moved {fmt(rns.get('resource_wire_bytes'))} B on the wire")
    print("\ngoals:")
    for name, g in result["goals"].items():
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[g["pass"]]
        print(f"  {verdict}  {name:28} {fmt(g['value']):>10}  (goal {g['target']}; bound {fmt(g['bound'])})")
    for note in result["notes"]:
        print(f"note: {note}")
    print(f"\n{result['elapsed_s']:.1f} s on {os.cpu_count()} cores, load {result['load_avg_1m']:.2f}")


async def run_all() -> dict:
    started = time.perf_counter()
    ours, raw = await measure_local()
    rns = await measure_rns()
    result = {
        "meshmeet": rounded(ours),
        "raw_tcp": rounded(raw),
        "rns": rounded(rns),
    }
    result["goals"] = goals(result["meshmeet"], result["raw_tcp"], result["rns"])
    result["notes"] = list(rns.get("notes", []))
    result["load_avg_1m"] = os.getloadavg()[0]
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the JSON result only")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the responder process
    args = parser.parse_args()
    if args.serve:
        trio.run(serve)
        return
    result = trio.run(run_all)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
