"""The trio driver for the ingest: `meshmeet ingest URL` / the chair's "Tiếp sóng hội nghị cấp trên".

Runs meshmeet/ingest/worker.py as a child process (why a process: see that module), moves its
media messages into the node through the very way the browser presenter's messages come in
(MediaService.from_browsers, so the floor decides exactly as for /present: at a node that
does not hold the floor they are refused), and the keyframe and audio rate requests meant for the
local presenter to the worker's stdin (MediaService.add_local_tap). While the ingest is live it is
this site's presenter: chunks from a /present page are held back (counted) and that page's last
decoder configs are handed on when the ingest stops, so the chair's camera takes over cleanly.
meshmeet/ingest/supervisor.py decides restarts and what status says. Adds the `ingest` API
(start, stop, status; HQ or a backup site only) and "ingest" to status. Needs: the MediaService
(constructed before it in node/compose.py) for its presenter way in and `local_taps`; it fronts the
"media_up" topic MediaService provides (node/provides.py), holding /present's chunks while live.

This module must never parse media itself beyond peeking at a chunk's timestamp, decode
anything, or let a worker's failure reach the node (a bad pipe frame kills that worker only).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import TYPE_CHECKING

import trio

from ..ingest import pipe
from ..ingest.source import SourceError, behind_gate, parse_source
from ..ingest.stream_key import stream_key
from ..ingest.supervisor import Spawn, Supervisor
from ..media import chunk as C
from ..api.contract import ApiError
from ..web.media_routes import UP_TOPIC
from .ingest_gate import GateCounters, serve_gate
from .provides import Provides

if TYPE_CHECKING:
    from .media_service import MediaService
    from .node import Node

log = logging.getLogger(__name__)

READ_BYTES = 65536
TO_WORKER_QUEUE = 64  # requests waiting for the worker's stdin; more are dropped (they repeat)
KILL_WAIT_S = 2.0
PROTOCOLS_PROBE_S = 30.0  # hang guard for the child that lists FFmpeg's protocols


class IngestService:
    """Owns at most one ingest worker; see the module docstring."""

    def __init__(self, node: "Node", *, media: "MediaService") -> None:
        self.node = node
        self.sup = Supervisor()
        self._up = media.from_browsers  # the presenter's way in: what /present's messages go through
        media.add_local_tap(self._to_worker)
        self._wake = trio.Event()
        self._to_worker_send, self._to_worker_recv = trio.open_memory_channel[bytes](TO_WORKER_QUEUE)
        self._browser_configs: dict[bytes, bytes] = {}  # stream byte -> /present's latest config
        self._was_live = False
        self._cancel: trio.CancelScope | None = None
        self._protocols: frozenset[str] | None = None
        self._protocols_asked = False
        self._nursery: trio.Nursery | None = None
        self._gate_scope: trio.CancelScope | None = None
        self._gate: GateCounters | None = None
        self._gate_done = trio.Event()
        self.counters = {"presenter_held": 0, "worker_pipe_errors": 0, "requests_to_worker": 0,
                         "requests_dropped": 0}

    def provides(self) -> Provides:
        """The `ingest` API, status["ingest"], and a front on MediaService's topic "media_up": browsers'
        messages come here first and go on to MediaService.from_browsers unless held."""
        return Provides(apis={"ingest": self._api}, status={"ingest": self.status},
                        fronts={UP_TOPIC: self._from_browsers})

    # ----- the presenter's way in --------------------------------------------------------------
    async def _from_browsers(self, data: object) -> None:
        """What /present and the hall pages send: held back while the ingest is the source."""
        if isinstance(data, (bytes, bytearray)) and data[:1] in (bytes((C.KIND_CHUNK,)), bytes((C.KIND_CONFIG,))):
            if data[:1] == bytes((C.KIND_CONFIG,)) and len(data) > 1:
                self._browser_configs[bytes(data[1:2])] = bytes(data)
            if self.sup.live(trio.current_time()):
                self.counters["presenter_held"] += 1
                return
        await self._up(data)

    def _to_worker(self, data: bytes) -> None:
        """A request the relay sends to the local presenter (keyframe, audio rate)."""
        if self.sup.source is None:
            return
        try:
            self._to_worker_send.send_nowait(data)
            self.counters["requests_to_worker"] += 1
        except trio.WouldBlock:
            self.counters["requests_dropped"] += 1

    # ----- API ---------------------------------------------------------------------------------
    async def _api(self, args: dict) -> dict:
        action = args.get("action", "status")
        if action not in ("start", "stop", "status"):
            raise ApiError(400, "bad_action", "Cần action là start, stop hoặc status", "action must be start, stop or status")
        if action != "status":
            me = self.node.me
            if me.role != "hq" and not me.backup:
                raise ApiError(403, "not_authorised", "Chỉ trụ sở (hoặc điểm dự phòng) được tiếp sóng hội nghị cấp trên",
                               "only HQ (or a backup site) may relay an upstream conference")
        if action == "start":
            listen = args.get("listen")
            protocol, bind = str(args.get("protocol", "rtmp")), str(args.get("bind", "0.0.0.0"))
            try:
                src = parse_source(url=args.get("url") if listen is None else None, listen=listen,
                                   protocol=protocol, bind=bind, protocols=await self._input_protocols())
                key = stream_key(self.node.data_dir, args.get("key")) if src.listen else None
            except SourceError as e:
                raise ApiError(400, "bad_source", e.vi, e.en) from None
            await self._stop_gate()
            await self._stop_worker()
            if key is not None:
                inner = _free_loopback_port()
                try:
                    await self._start_gate(protocol, bind, listen, inner, key)
                except OSError as e:
                    self.sup.stop()
                    raise ApiError(400, "port_busy", f"Không nghe được trên {bind}:{listen} ({e.strerror or e})",
                                   f"cannot listen on {bind}:{listen} ({e.strerror or e})") from None
                src = behind_gate(src, inner)
            self.sup.start(src, trio.current_time())
            log.info("ingest: starting from %s", src.shown)
            self._wake.set()
            if key is not None:
                # only here, to the chair or the CLI that started it: never in the open status
                return {**self.status(), "push": {"path": f"/live/{key}", "key": key, "port": listen,
                                                  "protocol": protocol}}
        elif action == "stop":
            stopped = self.sup.stop()
            await self._stop_gate()
            await self._stop_worker()
            log.info("ingest: stopped %s", stopped.shown if stopped else "(nothing was running)")
            return {**self.status(), "stopped": stopped.shown if stopped else None}
        return self.status()

    def status(self) -> dict:
        out = {**self.sup.status(trio.current_time()), "counters": dict(self.counters)}
        if self._gate is not None:
            out["gate"] = self._gate.as_dict()
        return out

    # ----- the stream-key gate on a listening ingest's port ----------------------------------------
    async def _start_gate(self, protocol: str, bind: str, port: int, inner: int, key: str) -> None:
        assert self._nursery is not None, "run() has not started"
        counters = GateCounters()

        scope, done = trio.CancelScope(), trio.Event()

        async def gate(task_status=trio.TASK_STATUS_IGNORED) -> None:
            try:
                with scope:
                    await serve_gate(protocol, bind, port, inner, key, counters, task_status=task_status)
            finally:
                done.set()

        await self._nursery.start(gate)
        self._gate, self._gate_scope, self._gate_done = counters, scope, done

    async def _stop_gate(self) -> None:
        """Close the gate's listener (and the encoders it relays) before anything binds the port again."""
        if self._gate_scope is not None:
            self._gate_scope.cancel()
            await self._gate_done.wait()
        self._gate = self._gate_scope = None

    async def _input_protocols(self) -> frozenset[str] | None:
        """The FFmpeg build's input protocols, asked once of a child (ingest/protocols.py); None:
        unknown (then a missing protocol shows as the worker's 'unsupported' error)."""
        if not self._protocols_asked:
            self._protocols_asked = True
            cmd = [sys.executable, "-m", "meshmeet.ingest.protocols"]
            with trio.move_on_after(PROTOCOLS_PROBE_S):
                try:
                    done = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True)
                    names = json.loads(done.stdout)
                    if isinstance(names, list):
                        self._protocols = frozenset(str(n) for n in names)
                except (OSError, subprocess.CalledProcessError, ValueError) as e:
                    log.warning("ingest: cannot list FFmpeg's protocols (%s); not checked before a start", e)
        return self._protocols

    # ----- the worker ----------------------------------------------------------------------------
    async def _stop_worker(self) -> None:
        if self._cancel is not None:
            self._cancel.cancel()
        while self._cancel is not None:
            await trio.sleep(0.01)

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._loop()

    async def _loop(self) -> None:
        while True:
            now = trio.current_time()
            spawn = self.sup.poll(now)
            if spawn is not None:
                gate = self._gate
                refused_before = gate.refused if gate is not None else 0
                await self._run_worker(spawn)
                self.sup.on_exit(trio.current_time(), pusher_refused=gate is not None and gate.refused > refused_before)
                await self._check_handover()
                continue
            await self._check_handover()
            self._wake = trio.Event()
            at = self.sup.next_spawn_at()
            with trio.move_on_at(at if at is not None else now + 1.0):
                await self._wake.wait()

    async def _check_handover(self) -> None:
        """The ingest stopped being the source: hand /present's configs on (its page may be live)."""
        live = self.sup.live(trio.current_time())
        if self._was_live and not live:
            for cfg in self._browser_configs.values():
                await self._up(cfg)
        self._was_live = live

    async def _run_worker(self, spawn: Spawn) -> None:
        cmd = [sys.executable, "-m", "meshmeet.ingest.worker", json.dumps(spawn.spec)]
        with trio.CancelScope() as scope:
            self._cancel = scope
            try:
                proc = await trio.lowlevel.open_process(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            except OSError as e:
                self.sup.on_status({"event": "error", "code": "other", "vi": "Không chạy được tiến trình tiếp sóng",
                                    "en": "could not start the ingest process", "detail": str(e)}, trio.current_time())
                self._cancel = None
                return
            log.info("ingest: worker %d started (generation %s)", proc.pid, spawn.spec["generation"])
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._feed_worker, proc)
                    await self._read_worker(proc)
                    nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    await self._reap(proc)
        self._cancel = None

    async def _reap(self, proc: trio.Process) -> None:
        if proc.returncode is None:
            proc.kill()
        with trio.move_on_after(KILL_WAIT_S):
            await proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with trio.move_on_after(0.1):
                    await stream.aclose()
        log.info("ingest: worker %d ended (%s)", proc.pid, proc.returncode)

    async def _feed_worker(self, proc: trio.Process) -> None:
        assert proc.stdin is not None
        async for data in self._to_worker_recv:
            try:
                await proc.stdin.send_all(pipe.encode(pipe.MEDIA, data))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _read_worker(self, proc: trio.Process) -> None:
        assert proc.stdout is not None
        reader = pipe.FrameReader()
        while True:
            data = await proc.stdout.receive_some(READ_BYTES)
            if not data:
                return
            try:
                frames = reader.feed(data)
                for fr in frames:
                    await self._from_worker(fr)
            except (pipe.PipeError, C.MediaFormatError) as e:
                self.counters["worker_pipe_errors"] += 1
                log.warning("ingest: worker sent something malformed (%s): stopping it", e)
                return

    async def _from_worker(self, fr: pipe.Frame) -> None:
        now = trio.current_time()
        if fr.type == pipe.STATUS:
            event = fr.status()
            if event.get("event") in ("error", "ended", "opened"):
                log.info("ingest: %s", {k: v for k, v in event.items() if k != "vi"})
            self.sup.on_status(event, now)
            return
        kind = C.peek_kind(fr.body)
        if kind in (C.KIND_CHUNK, C.KIND_CONFIG):
            msg = C.parse(fr.body)
            self.sup.on_media(msg.timestamp_us if isinstance(msg, C.Chunk) else None, now)
        else:
            raise C.MediaFormatError(f"kind {kind} from the ingest worker")
        self._was_live = True
        await self._up(fr.body)


def _free_loopback_port() -> int:
    """A free TCP port on 127.0.0.1 for FFmpeg to listen on behind the gate."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
