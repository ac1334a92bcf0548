"""Link benchmark on loopback: meshmeet links vs raw TCP (no crypto) vs Reticulum, in one run.

Measures, for each: link setup (time and bytes on the wire, median of 20), the round trip of a
16 B message (median of 200) and the throughput of 1 MB and 50 MB transfers (Reticulum: 1 MB).

Every side runs as two processes on 127.0.0.1, as two nodes would:
- meshmeet: a real LinkConnection at each end, the responder in a child process
  (`links.py --serve`), both driven by trio with the same calls as meshmeet/node/links.py
  (receive_some of RECEIVE_BYTES, receive_data, data_to_send, send_all after every call; one
  send_all per message; bulk data in messages of MAX_MESSAGE_BYTES). Setup time runs from the
  dial (TCP connect included) until the initiator may send; setup bytes and flights are counted
  on the initiator's socket, both directions, until both ends have HandshakeComplete (the
  responder sends nothing after msg2). Transfer time runs until the receiver has the last byte
  (it reports its CLOCK_MONOTONIC time, shared by both processes).
- raw TCP: the same driver and processes with a u16 length prefix instead of the link core.
- Reticulum (`rns`): scripts/bench/_rns_peer.py, a TCP server and a TCP client interface,
  bytes counted on the client's TCP socket; 1 MB as an RNS.Resource, 16 B as link packets echoed.
Round trips are timed alike on all three: the echo server answers from its receive handler, and
the client sends each next message from the handler that received the previous reply.

The three are measured in interleaved blocks (5 setups, 50 round trips, one transfer each in
turn), so a load spike from other work on the shared machine hits every side of a ratio alike.
Takes about 10 s; at most about two minutes if Reticulum hangs (its figures are then null, with
the reason in "notes").
It must never be run in a loop on the shared machine, and never listen or connect anywhere
but 127.0.0.1.

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
import shutil
import socket
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

from meshmeet.node.link import RECEIVE_BYTES
from meshmeet.wire import (
    MAX_MESSAGE_BYTES,
    CloseCode,
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
RNS_TRANSFER_RUNS = 5
CHUNK_BYTES = MAX_MESSAGE_BYTES  # the largest message one link frame carries
PLAIN_LENGTH_BYTES = 2
BENCH_KEEPALIVE_S = 3600.0  # no keepalive pings inside the measurements
STEP_TIMEOUT_S = 30.0  # any single meshmeet/raw TCP step; far above what it needs
RNS_READY_TIMEOUT_S = 20.0
RNS_BUDGET_S = 100.0  # everything Reticulum does, from its start; then its figures stay null
CHILD_EXIT_TIMEOUT_S = 5.0
RNS_TRANSFER_TIMEOUT_S = 30.0
BLOCKS = 4  # measurements interleave meshmeet, raw TCP and Reticulum in this many blocks
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
            return [ConnectionClosed(reason="connection lost", code=CloseCode.CONNECTION_LOST, by_peer=True, error=True)]
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


# ----- the initiator side: meshmeet and raw TCP -----------------------------------------------


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def quantiles(values: list[float]) -> list[float] | None:
    """The 10th and 90th percentiles, to show the spread behind a median."""
    if len(values) < 2:
        return None
    deciles = statistics.quantiles(values, n=10)
    return [round(deciles[0], 3), round(deciles[-1], 3)]


@dataclass
class Samples:
    """Raw samples of one side, gathered over the interleaved blocks."""

    setup_ms: list[float] = field(default_factory=list)
    tcp_connect_ms: list[float] = field(default_factory=list)
    setup_bytes: list[float] = field(default_factory=list)
    setup_flights: list[list[int]] = field(default_factory=list)
    rtt_ms: list[float] = field(default_factory=list)
    rtt_wire_bytes: int = 0
    mbit_s_1mb: list[float] = field(default_factory=list)
    mbit_s_50mb: list[float] = field(default_factory=list)
    transfer_wire_bytes_1mb: list[float] = field(default_factory=list)

    def summary(self, with_setup_bytes: bool) -> dict:
        out = {"setup_ms": median(self.setup_ms)}
        if self.tcp_connect_ms:
            out["tcp_connect_ms"] = median(self.tcp_connect_ms)
        if with_setup_bytes:
            out["setup_bytes"] = median(self.setup_bytes)
            out["setup_round_trips"] = median([len(f) / 2 for f in self.setup_flights])
            out["setup_flights_bytes"] = self.setup_flights[0] if self.setup_flights else None
        out["rtt_ms"] = median(self.rtt_ms)
        out["rtt_ms_p10_p90"] = quantiles(self.rtt_ms)
        out["overhead_bytes_per_msg"] = (
            self.rtt_wire_bytes / (2 * len(self.rtt_ms)) - MESSAGE_BYTES if self.rtt_ms else None
        )
        out["mbit_s_1mb"] = median(self.mbit_s_1mb)
        if self.mbit_s_50mb:
            out["mbit_s_50mb"] = median(self.mbit_s_50mb)
        out["samples"] = {"setup": len(self.setup_ms), "rtt": len(self.rtt_ms), "1mb": len(self.mbit_s_1mb),
                          "50mb": len(self.mbit_s_50mb)}
        return out


class Dialer:
    """Opens links to the responder process and runs their endpoints in one nursery."""

    def __init__(self, nursery: trio.Nursery, port: int, roster: TestRoster | None) -> None:
        self.nursery = nursery
        self.port = port
        self.roster = roster
        self.samples = Samples()
        self.replies_send, self.replies_receive = trio.open_memory_channel[bytes](1)
        self._echo_link: Endpoint | None = None

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

    async def setups(self, count: int) -> None:
        for _ in range(count):
            with trio.fail_after(STEP_TIMEOUT_S):
                endpoint, scope, connected_s, ready_s = await self.open()
                setup = Wire(list(endpoint.wire.events))
                await endpoint.send(CMD_ECHO)  # prove that the responder is established too
                await self.echo(endpoint, b"x")
                scope.cancel()
            self.samples.setup_ms.append(ready_s * 1000.0)
            self.samples.tcp_connect_ms.append(connected_s * 1000.0)
            self.samples.setup_bytes.append(setup.total())
            self.samples.setup_flights.append([n for _, n in _runs(setup.events)])

    async def round_trips(self, count: int) -> None:
        """Echo `count` 16 B messages, one at a time, on one long-lived link.

        Each next message goes out from the reply's handler in the read loop, as Reticulum's is
        sent from its packet callback: both sides are timed the same way, with no task hop.
        """
        with trio.fail_after(STEP_TIMEOUT_S):
            if self._echo_link is None:
                self._echo_link, _, _, _ = await self.open()
                await self._echo_link.send(CMD_ECHO)
            endpoint = self._echo_link
            samples: list[float] = []
            current = {"payload": b"", "start": 0.0}
            done = trio.Event()

            async def send_next() -> None:
                current["payload"] = os.urandom(MESSAGE_BYTES)
                current["start"] = time.perf_counter()
                await endpoint.send(current["payload"])

            async def on_reply(payload: bytes) -> None:
                samples.append((time.perf_counter() - current["start"]) * 1000.0)
                if payload != current["payload"]:
                    raise RuntimeError("the echo came back different")
                if len(samples) < count:
                    await send_next()
                else:
                    done.set()

            before = endpoint.wire.total()
            endpoint.on_message = on_reply
            await send_next()
            await done.wait()
            endpoint.on_message = self.replies_send.send
            self.samples.rtt_ms += samples
            self.samples.rtt_wire_bytes += endpoint.wire.total() - before

    async def transfer(self, total: int, chunk: bytes) -> float:
        """Send `total` bytes as messages of up to CHUNK_BYTES; Mbit/s until the receiver has them all."""
        sizes = [CHUNK_BYTES] * (total // CHUNK_BYTES) + ([total % CHUNK_BYTES] if total % CHUNK_BYTES else [])
        with trio.fail_after(STEP_TIMEOUT_S):
            endpoint, scope, _, _ = await self.open()
            await endpoint.send(CMD_SINK + total.to_bytes(8, "big"))
            before = endpoint.wire.total()
            start = time.monotonic()
            for size in sizes:
                await endpoint.send(chunk if size == CHUNK_BYTES else chunk[:size])
            reply = await self.replies_receive.receive()
            wire_bytes = endpoint.wire.total() - before
            scope.cancel()
        if reply[:1] != REPLY_DONE:
            raise RuntimeError("the sink did not confirm the transfer")
        (finished,) = struct.unpack(">d", reply[1:9])
        rate = total * 8 / (finished - start) / 1e6
        if total == SMALL_TRANSFER_BYTES:
            self.samples.mbit_s_1mb.append(rate)
            self.samples.transfer_wire_bytes_1mb.append(wire_bytes)
        else:
            self.samples.mbit_s_50mb.append(rate)
        return rate


def _runs(events: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Consecutive events in the same direction merged: the flights."""
    out: list[tuple[str, int]] = []
    for direction, n in events:
        if out and out[-1][0] == direction:
            out[-1] = (direction, out[-1][1] + n)
        else:
            out.append((direction, n))
    return out


async def start_responder() -> tuple[trio.Process, int, int]:
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


# ----- Reticulum, in two child processes -------------------------------------------------------


def free_port() -> int:
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
    with trio.move_on_after(CHILD_EXIT_TIMEOUT_S):
        await process.wait()
        return
    process.kill()
    await process.wait()


def tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


class RnsPeer:
    """The Reticulum server and client processes; the client runs one command at a time.

    Once anything fails or the budget is spent, `alive` turns False, the reason goes to `notes`,
    and every later command is skipped (its figures stay null).
    """

    def __init__(self, notes: list[str]) -> None:
        self.notes = notes
        self.samples = Samples()
        self.version: str | None = None
        self.alive = False
        self.deadline = 0.0
        self._tmp = Path(tempfile.mkdtemp(prefix="meshmeet-bench-rns-"))
        self._server: trio.Process | None = None
        self._client: trio.Process | None = None
        self._buffer = bytearray()
        self._logs: list = []  # the children's stderr files, closed in stop()

    async def start(self) -> None:
        self.deadline = trio.current_time() + RNS_BUDGET_S
        if importlib.util.find_spec("RNS") is None:
            self.notes.append("rns is not installed (pip install rns); Reticulum figures are null")
            return
        self.version = importlib.metadata.version("rns")
        peer = str(Path(__file__).with_name("_rns_peer.py"))
        port = free_port()
        common = ["--port", str(port), "--budget-s", str(RNS_BUDGET_S + 10)]
        self._server = await trio.lowlevel.open_process(
            [sys.executable, peer, "server", "--configdir", str(self._tmp / "server"), *common],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log("server.err"),
        )
        dest = None
        with trio.move_on_after(RNS_READY_TIMEOUT_S):
            dest = await read_line_with(self._server.stdout, b"READY ", bytearray())
        if not dest:
            self.notes.append(f"rns server did not start: {tail(self._tmp / 'server.err')}")
            return
        self._client = await trio.lowlevel.open_process(
            [sys.executable, peer, "client", "--configdir", str(self._tmp / "client"), "--dest", dest.decode(), *common],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log("client.err"),
        )
        line = None
        with trio.move_on_after(RNS_READY_TIMEOUT_S * 2):  # its socket, then the path
            line = await self._read_reply()
        if line is None or not line.startswith(b"READY "):
            self.notes.append(f"rns client did not get ready: {(line or b'').decode()} {tail(self._tmp / 'client.err')}")
            return
        self.alive = True

    def _log(self, name: str):
        handle = open(self._tmp / name, "wb")
        self._logs.append(handle)
        return handle

    async def _read_reply(self) -> bytes | None:
        assert self._client is not None and self._client.stdout is not None
        while b"\n" not in self._buffer:
            data = await self._client.stdout.receive_some(65536)
            if not data:
                return None
            self._buffer += data
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer[:] = rest
        return line

    async def command(self, line: str, timeout_s: float) -> dict | None:
        """One command's result, or None (and the peer is dead) on error, timeout or budget."""
        if not self.alive:
            return None
        assert self._client is not None and self._client.stdin is not None
        reply = None
        with trio.move_on_at(min(trio.current_time() + timeout_s, self.deadline)):
            await self._client.stdin.send_all(line.encode() + b"\n")
            reply = await self._read_reply()
        if reply is None or not reply.startswith(b"RESULT "):
            why = "timed out or hit the time budget" if reply is None else reply.decode(errors="replace")
            self.notes.append(f"rns `{line}`: {why}; Reticulum stopped there {tail(self._tmp / 'client.err')}")
            self.alive = False
            return None
        result = json.loads(reply[len("RESULT "):])
        if "error" in result:
            self.notes.append(f"rns `{line}`: {result['error']}; Reticulum stopped there")
            self.alive = False
        return result

    async def setups(self, count: int) -> None:
        result = await self.command(f"setup {count}", 10 + count * 1.5)
        if result:
            self.samples.setup_ms += result["setup_ms"]
            self.samples.setup_bytes += result["setup_bytes"]
            self.samples.setup_flights += result["setup_flights"]

    async def round_trips(self, count: int) -> None:
        result = await self.command(f"rtt {count} {MESSAGE_BYTES}", 10 + count * 0.1)
        if result and result["rtt_ms"]:
            self.samples.rtt_ms += result["rtt_ms"]
            self.samples.rtt_wire_bytes += result["wire_bytes"]

    async def transfer(self, total: int) -> None:
        result = await self.command(f"resource {total} {RNS_TRANSFER_TIMEOUT_S}", RNS_TRANSFER_TIMEOUT_S + 5)
        if result and "seconds" in result:
            self.samples.mbit_s_1mb.append(total * 8 / result["seconds"] / 1e6)
            self.samples.transfer_wire_bytes_1mb.append(result["wire_bytes"])

    def summary(self) -> dict:
        out = self.samples.summary(with_setup_bytes=True)
        out["version"] = self.version
        out["resource_wire_bytes_1mb"] = median(self.samples.transfer_wire_bytes_1mb)
        return out

    async def stop(self) -> None:
        with trio.CancelScope(shield=True):
            for process in (self._client, self._server):
                if process is not None:
                    await stop(process)
        for handle in self._logs:
            handle.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


# ----- the run: every measurement in interleaved blocks ----------------------------------------


async def measure_all(notes: list[str]) -> tuple[dict, dict, dict]:
    """meshmeet, raw TCP and Reticulum, block by block, so each block of the three sees the same load."""
    chunk = os.urandom(CHUNK_BYTES)
    rns = RnsPeer(notes)
    async with trio.open_nursery() as nursery:
        responder, meshmeet_port, raw_port = await start_responder()
        try:
            ours = Dialer(nursery, meshmeet_port, bench_roster())
            raw = Dialer(nursery, raw_port, None)
            await rns.start()
            for _ in range(BLOCKS):
                await ours.setups(SETUPS // BLOCKS)
                await raw.setups(SETUPS // BLOCKS)
                await rns.setups(SETUPS // BLOCKS)
            for _ in range(BLOCKS):
                await ours.round_trips(ROUND_TRIPS // BLOCKS)
                await raw.round_trips(ROUND_TRIPS // BLOCKS)
                await rns.round_trips(ROUND_TRIPS // BLOCKS)
            for run in range(SMALL_TRANSFER_RUNS):
                await ours.transfer(SMALL_TRANSFER_BYTES, chunk)
                await raw.transfer(SMALL_TRANSFER_BYTES, chunk)
                if run < RNS_TRANSFER_RUNS:
                    await rns.transfer(SMALL_TRANSFER_BYTES)
            for _ in range(LARGE_TRANSFER_RUNS):
                await ours.transfer(LARGE_TRANSFER_BYTES, chunk)
                await raw.transfer(LARGE_TRANSFER_BYTES, chunk)
            nursery.cancel_scope.cancel()  # the long-lived echo links
        finally:
            with trio.CancelScope(shield=True):
                await rns.stop()
                await stop(responder)
    return ours.samples.summary(with_setup_bytes=True), raw.samples.summary(with_setup_bytes=False), rns.summary()


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
    if isinstance(value, list):
        return "-".join(fmt(v) for v in value)
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def ratio(a, b) -> str:
    return "-" if a is None or isinstance(a, list) or b is None or b == 0 else f"{a / b:.2f}x"


def print_table(result: dict) -> None:
    ours, raw, rns = result["meshmeet"], result["raw_tcp"], result["rns"]
    rows = [
        ("setup time, ms (meshmeet, raw: incl. TCP connect)", "setup_ms"),
        ("setup bytes on the wire, both ways", "setup_bytes"),
        ("setup round trips", "setup_round_trips"),
        ("overhead per message, B", "overhead_bytes_per_msg"),
        (f"round trip of {MESSAGE_BYTES} B, ms", "rtt_ms"),
        ("  its 10th-90th percentile, ms", "rtt_ms_p10_p90"),
        ("throughput 1 MB, Mbit/s", "mbit_s_1mb"),
        ("throughput 50 MB, Mbit/s", "mbit_s_50mb"),
    ]
    print(f"{'median of each':52} {'meshmeet':>10} {'raw TCP':>10} {'Reticulum':>10} {'mm/raw':>8} {'mm/rns':>8}")
    for name, key in rows:
        a, b, c = ours.get(key), raw.get(key), rns.get(key)
        ratios = (ratio(a, b), ratio(a, c)) if key != "rtt_ms_p10_p90" else ("", "")
        print(f"{name:52} {fmt(a):>10} {fmt(b):>10} {fmt(c):>10} {ratios[0]:>8} {ratios[1]:>8}")
    print(f"\nmeshmeet setup without the TCP connect: {fmt(ours['setup_ms'] - ours['tcp_connect_ms'])} ms "
          f"(the initiator may send; the responder is established half a round trip later)")
    print(f"Reticulum {rns.get('version') or '(not run)'}: setup flights {rns.get('setup_flights_bytes')} B, "
          f"1 MB resource moved {fmt(rns.get('resource_wire_bytes_1mb'))} B on the wire")
    print("\ngoals:")
    for name, g in result["goals"].items():
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[g["pass"]]
        print(f"  {verdict}  {name:28} {fmt(g['value']):>10}  (goal {g['target']}; bound {fmt(g['bound'])})")
    print("round trips: each next message is sent from the handler of the previous reply, on all three.")
    for note in result["notes"]:
        print(f"note: {note}")
    print(f"\n{result['elapsed_s']:.1f} s on {os.cpu_count()} cores, load {result['load_avg_1m']:.2f}")


async def run_all() -> dict:
    started = time.perf_counter()
    notes: list[str] = []
    ours, raw, rns = await measure_all(notes)
    result = {"meshmeet": rounded(ours), "raw_tcp": rounded(raw), "rns": rounded(rns)}
    result["goals"] = goals(result["meshmeet"], result["raw_tcp"], result["rns"])
    result["notes"] = notes
    result["rns"]["notes"] = notes
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
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
