"""The ingest worker: a child process that pulls (or receives) the upstream conference with FFmpeg
(PyAV), re-encodes it with MeshEncoder and writes media messages to its stdout (pipe.py framing).

Run as `python -m meshmeet.ingest.worker SPEC_JSON` by meshmeet/node/ingest_service.py only. SPEC:
`{"source": IngestSource.to_json(), "generation": u8, "ts_base_us": int, "codec": "vp8"|"h264"|null}`.
Status events (pipe STATUS frames): `opened` (what the source carries, and the clock mapping: chunk
timestamp = ts_base_us + (source time − first_source_s) × 10^6), `stats` every second, `error`
(code + Vietnamese and English text) before exiting 2, `ended` before exiting 0 (the upstream
stopped). stdin carries keyframe and audio rate requests; stdin closing (the node died) ends the
worker at once. Live sources: when the worker falls behind the live edge by more than 0.5 s (a packet
it did not have to wait for, on a loaded host), video frames are decoded but not encoded until it is
within 0.2 s again; audio is always encoded. HLS is paced to real time instead.

Why a process and not a thread: FFmpeg parses bytes from a server we do not control, and a crash
in it (or in libvpx) must not take the node down; a blocking FFmpeg call (a listen socket, a dead
server) cannot be cancelled from trio, but a process can be killed; decoding and encoding are
CPU-bound and would hold the GIL between PyAV calls, stalling the node's trio and aiohttp threads;
and FFmpeg's memory goes back to the system when the process ends.
This module must never touch node state or the network other than through FFmpeg and its pipes.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import socket
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import av

from . import pipe
from .mesh_encoder import MeshEncoder
from .source import IngestSource

STATS_S = 1.0
OPEN_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 10.0  # no packet for this long: the upstream is gone (exit, the node restarts us)
EXIT_ERROR = 2
LATE_SKIP_S = 0.5  # video this far behind the live edge is not encoded (audio is) until it is back
LATE_RESUME_S = 0.2  # within this of the live edge
WAITED_S = 0.003  # a packet we had to wait this long for was read at the live edge (not from a backlog)

ERRORS = {  # code -> (vi, en)
    "refused": ("Nguồn từ chối kết nối (sai địa chỉ hoặc cổng, hoặc máy phát chưa chạy)",
                "the source refused the connection (wrong address or port, or the encoder is not running)"),
    "not_found": ("Không tìm thấy luồng tại địa chỉ này", "no stream at this address"),
    "timeout": ("Nguồn không trả lời (quá thời gian chờ)", "the source did not answer (timed out)"),
    "dns": ("Không tìm thấy tên máy chủ nguồn", "the source host name could not be resolved"),
    "bad_data": ("Dữ liệu nhận được không phải luồng âm thanh/hình ảnh đọc được",
                 "what arrived is not an audio/video stream that can be read"),
    "no_media": ("Luồng không có âm thanh lẫn hình ảnh", "the stream carries neither audio nor video"),
    "address_in_use": ("Cổng nhận đang bị chương trình khác dùng", "the listen port is in use by another program"),
    "denied": ("Nguồn từ chối quyền truy cập (sai khóa hoặc mật khẩu)", "the source denied access (wrong key or password)"),
    "unsupported": ("Bản FFmpeg đi kèm PyAV trên máy này không hỗ trợ giao thức này (ví dụ SRT)",
                    "the FFmpeg build bundled with PyAV on this machine does not support this protocol (e.g. SRT)"),
    "other": ("Lỗi khi đọc nguồn", "error while reading the source"),
}


def classify(exc: BaseException) -> str:
    """An FFmpeg/OS error -> one of ERRORS' codes."""
    num = getattr(exc, "errno", None)
    text = str(exc).lower()
    if "protocol not found" in text or num == errno.ENOPROTOOPT:
        return "unsupported"
    if num == errno.ECONNREFUSED or "connection refused" in text:
        return "refused"
    if num == errno.EADDRINUSE or "address already in use" in text:
        return "address_in_use"
    if num in (errno.ETIMEDOUT,) or "immediate exit" in text or "timed out" in text:
        return "timeout"
    if "name or service not known" in text or "resolve" in text or num == errno.EHOSTUNREACH:
        return "dns" if "resol" in text or "name or service" in text else "refused"
    if num in (errno.EACCES, errno.EPERM) or "401" in text or "403" in text or "forbidden" in text or "unauthor" in text:
        return "denied"
    if num == errno.ENOENT or "404" in text or "not found" in text:
        return "not_found"
    if isinstance(exc, av.error.InvalidDataError) or "invalid data" in text:
        return "bad_data"
    return "other"


class Out:
    """The stdout pipe; one writer lock (the main loop and the stats timer both write)."""

    def __init__(self, fd: int = 1) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]

    def media(self, msg: bytes) -> None:
        self.write(pipe.encode(pipe.MEDIA, msg))

    def status(self, event: dict) -> None:
        self.write(pipe.encode_status(event))


def _stdin_loop(requests: "queue.SimpleQueue[bytes]") -> None:
    reader = pipe.FrameReader()
    while True:
        data = os.read(0, 4096)
        if not data:
            os._exit(0)  # the node is gone: so are we
        try:
            for fr in reader.feed(data):
                if fr.type == pipe.MEDIA:
                    requests.put(fr.body)
        except pipe.PipeError:
            os._exit(EXIT_ERROR)


def fail(out: Out, code: str, exc: BaseException | None = None) -> int:
    vi, en = ERRORS[code]
    out.status({"event": "error", "code": code, "vi": vi, "en": en, "detail": str(exc)[:300] if exc else ""})
    return EXIT_ERROR


def run(spec: dict[str, Any], out: Out) -> int:
    src = IngestSource.from_json(spec["source"])
    requests: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    threading.Thread(target=_stdin_loop, args=(requests,), daemon=True, name="ingest-stdin").start()
    enc = MeshEncoder(generation=int(spec.get("generation", 1)), codec=spec.get("codec"))
    out.status({"event": "opening", "source": src.shown, "codec": enc.codec})
    host = urlsplit(src.url).hostname
    if not src.listen and host:
        try:  # FFmpeg says only "I/O error" for a name that does not resolve
            socket.getaddrinfo(host, None)
        except (socket.gaierror, UnicodeError) as e:
            return fail(out, "dns", e)
    try:
        container = av.open(src.url, mode="r", format=src.format, options=dict(src.options),
                            timeout=(None if src.listen else OPEN_TIMEOUT_S, READ_TIMEOUT_S))
    except Exception as e:  # noqa: BLE001 (FFmpeg's errors come as many classes)
        return fail(out, classify(e), e)
    streams = [s for s in container.streams if s.type in ("audio", "video")]
    vstreams = [s for s in streams if s.type == "video"][:1]
    astreams = [s for s in streams if s.type == "audio"][:1]
    if not vstreams and not astreams:
        return fail(out, "no_media")
    for s in vstreams + astreams:
        s.thread_count = 1  # frame threads add frames of delay and fight for 2 cores
    ts_base_us = int(spec.get("ts_base_us", 0))
    first_s: float | None = None
    pace = src.format == "hls"  # HLS hands over whole segments at once: play them out in real time
    wall0: float | None = None
    last_stats = time.monotonic()
    cpu0 = time.process_time()
    info = {"event": "opened", "source": src.shown, "codec": enc.codec,
            "video": (f"{vstreams[0].codec_context.name} {vstreams[0].codec_context.width}x{vstreams[0].codec_context.height}"
                      if vstreams else None),
            "audio": (f"{astreams[0].codec_context.name} {astreams[0].codec_context.sample_rate} Hz" if astreams else None),
            "ts_base_us": ts_base_us}
    opened_sent = False
    edge: float | None = None  # (wall − source time) of the last frame read at the live edge
    late = False
    late_skipped = 0
    try:
        packets = container.demux(*(vstreams + astreams))
        while True:
            before = time.monotonic()
            packet = next(packets, None)
            if packet is None:
                break
            at_edge = time.monotonic() - before >= WAITED_S  # it was not waiting in a buffer
            while not requests.empty():
                enc.request(requests.get())
            for frame in packet.decode():
                t = frame.time
                if t is None:
                    continue
                if first_s is None:
                    first_s = t
                    wall0 = time.monotonic()
                    out.status({**info, "first_source_s": first_s})
                    opened_sent = True
                ts_us = ts_base_us + max(0, round((t - first_s) * 1_000_000))
                if pace and wall0 is not None:
                    ahead = wall0 + (t - first_s) - time.monotonic()
                    if ahead > 0:
                        time.sleep(min(ahead, 1.0))
                behind = time.monotonic() - t
                if edge is None or at_edge or behind < edge:  # a slow source moves the edge, a backlog does not
                    edge = behind
                lag = behind - edge
                late = lag > LATE_SKIP_S or (late and lag > LATE_RESUME_S)
                if packet.stream.type == "video":
                    if late and not pace:  # a loaded host: catch up by not encoding video
                        late_skipped += 1
                        continue
                    msgs = enc.video(frame, ts_us)
                else:
                    msgs = enc.audio(frame, ts_us)
                for m in msgs:
                    out.media(m)
            now = time.monotonic()
            if now - last_stats >= STATS_S:
                last_stats = now
                out.status({"event": "stats", "cpu_s": round(time.process_time() - cpu0, 3),
                            "audio_kbps": enc.audio_encoding[0], "video_late_skipped": late_skipped,
                            "lag_s": round(lag, 3) if edge is not None else None, **enc.counters})
    except (av.error.EOFError, EOFError):
        pass
    except Exception as e:  # noqa: BLE001
        if not opened_sent:
            return fail(out, classify(e), e)
        out.status({"event": "ended", "detail": str(e)[:300]})  # the upstream dropped mid-stream
        return 0
    out.status({"event": "ended", "detail": "end of stream"})
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Out()
    try:
        spec = json.loads(argv[0])
    except (IndexError, ValueError):
        out.status({"event": "error", "code": "other", "vi": "Thiếu cấu hình", "en": "no spec", "detail": ""})
        return EXIT_ERROR
    av.logging.set_level(av.logging.ERROR)
    return run(spec, out)


if __name__ == "__main__":
    sys.exit(main())
