"""Browser test helpers: deterministic capture files, Chromium via Playwright, an aiohttp media app.

The y4m carries each frame's index as a 16-bit barcode in its top band (the hall page's probe
reads it back); the wav alternates two tones every half second. Chromium is Debian's
(/usr/bin/chromium) driven by Playwright's Python package: never `playwright install`.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import random
import shutil
import struct
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT, FPS = 640, 360, 20
BARCODE_BITS = 16
BAND_ROWS = 72
NOISE_W, NOISE_H = 96, 64
TONES_HZ = (440, 880)
TONE_S = 0.5


def browser_missing_reason() -> str | None:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        return "chromium is not installed (run scripts/install-system-deps.sh as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (run scripts/setup-venv.sh test)"
    return None


PAGE_BROWSER_ARGS = ("--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync")


def launch_page_browser(*extra_args: str):
    """Headless Debian Chromium for page tests (a module fixture yields from this); skips the test
    without Chromium or playwright."""
    reason = browser_missing_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*PAGE_BROWSER_ARGS, *extra_args])
        yield b
        b.close()


def barcode_of(index: int) -> int:
    return index & 0xFFFF


def write_y4m(path: Path, frames: int) -> None:
    """640x360 4:2:0 at 20 fps; top band = barcode of the frame index, below it a moving box."""
    bar_w = WIDTH // BARCODE_BITS
    rng = random.Random(5)
    chroma = bytes([128]) * ((WIDTH // 2) * (HEIGHT // 2))
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            code = barcode_of(i)
            row = bytearray()
            for b in range(BARCODE_BITS):
                bit = (code >> (BARCODE_BITS - 1 - b)) & 1
                row += bytes([235 if bit else 16]) * bar_w
            y = bytearray(bytes(row) * BAND_ROWS)
            body = bytearray([60]) * (WIDTH * (HEIGHT - BAND_ROWS))
            x0 = (i * 8) % (WIDTH - NOISE_W)
            noise = rng.randbytes(NOISE_W * NOISE_H)  # fresh detail every frame: a realistic bitrate
            for r in range(NOISE_H):
                off = (100 + r - BAND_ROWS) * WIDTH + x0
                body[off:off + NOISE_W] = noise[r * NOISE_W:(r + 1) * NOISE_W]
            f.write(b"FRAME\n" + bytes(y) + bytes(body) + chroma + chroma)


def write_wav(path: Path, seconds: float, rate: int = 48000) -> None:
    n = int(seconds * rate)
    samples = bytearray()
    for i in range(n):
        t = i / rate
        hz = TONES_HZ[int(t / TONE_S) % 2]
        samples += struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * t)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(samples))


def chromium_args(y4m: Path, wav: Path) -> list[str]:
    return ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={y4m}",
            f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required"]


class AppThread:
    """An aiohttp app with a MediaHub on its own asyncio loop in a thread, on 127.0.0.1."""

    def __init__(self, make_hub: Callable[[], Any]) -> None:
        self._make_hub = make_hub
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.hub: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from aiohttp import web

        from meshmeet.web.media_routes import add_media_routes

        asyncio.set_event_loop(self.loop)

        async def start() -> web.AppRunner:
            self.hub = self._make_hub()
            app = web.Application()
            add_media_routes(app, self.hub)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return runner

        self._runner = self.loop.run_until_complete(start())
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._runner.cleanup())
        self.loop.close()

    def __enter__(self) -> AppThread:
        self._thread.start()
        self._ready.wait(30)
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run fn on the app's loop and return its result."""
        async def wrap() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(10)

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(15)


# ----- shared by the browser tests (helpers, not tests) ------------------------------------------

Y4M_FRAMES = 200  # frames in the looping test video; barcodes count modulo this


def poll(page: Any, expr: str, pred: Callable[[Any], bool], timeout_s: float = 30.0, every_s: float = 0.05) -> Any:
    """Evaluate `expr` in the page until pred(value); a hang guard, not a timing assertion."""
    end = time.monotonic() + timeout_s
    while True:
        v = page.evaluate(expr)
        if pred(v) or time.monotonic() > end:
            return v
        time.sleep(every_s)


def in_order(codes: list[int], frames: int = Y4M_FRAMES) -> bool:
    """True when the decoded barcodes only ever move forward (modulo the looping video)."""
    steps = [(b - a) % frames for a, b in zip(codes, codes[1:])]
    return all(0 < s < frames // 2 for s in steps)


def tone_runs(tones: list[int]) -> list[tuple[int, int]]:
    """Detected tone frequencies as runs of (tone class, length)."""
    runs: list[tuple[int, int]] = []
    for hz in tones:
        cls = tone_class(hz)
        if runs and runs[-1][0] == cls:
            runs[-1] = (cls, runs[-1][1] + 1)
        else:
            runs.append((cls, 1))
    return runs


AUDIO_FRAME_US = 20_000  # one Opus frame as the presenter sends it
CLEAN_TONE_HZ = 60  # a frame measured within this of a tone is all that tone; a frame straddling a change
# reads ~650 Hz, and the fake capture device's glitches read 1000-3250 Hz (measured, see audio_vs_capture)


def tone_class(hz: float) -> int:
    return min(range(len(TONES_HZ)), key=lambda i: abs(TONES_HZ[i] - hz))


def audio_steps(decoded: list) -> list[int]:
    """Steps (µs) between the capture timestamps of consecutive decoded audio frames of a probe."""
    ts = [t for track, t, _ in decoded if track == 0]
    return [b - a for a, b in zip(ts, ts[1:])]


def audio_vs_capture(decoded: list, tones: list[int], captured: list) -> dict:
    """Compare, frame by frame, what a hall player decoded with what the presenter fed its encoder.

    `decoded` and `tones` are a hall probe's (audio entries and their tones in the same order);
    `captured` is the presenter's `takeTones()`: [timestamp µs, Hz] of each 20 ms frame it encoded.
    The decoder's timestamps are the chunk's less Opus's pre-skip (6.5 ms), so a decoded frame is
    matched to the captured frame nearest in time (within half a frame). Only captured frames that
    are clean tones are compared: the capture device itself glitches now and then (Chromium's fake
    audio file input: a click where it loops the wav every 10 s, and 1-2 garbled frames under
    load), and those frames, like frames straddling a tone change, are not ours to judge.
    Returns {"matched", "clean", "mismatched": [(ts, hall Hz, captured Hz)], "unmatched"}.
    """
    cap = sorted((int(t), hz) for t, hz in captured)
    cap_ts = [t for t, _ in cap]
    hall = [t for track, t, _ in decoded if track == 0]
    out: dict = {"matched": 0, "clean": 0, "mismatched": [], "unmatched": 0}
    for t, hz in zip(hall, tones):
        i = bisect.bisect_left(cap_ts, t)
        near = [j for j in (i - 1, i) if 0 <= j < len(cap)]
        j = min(near, key=lambda j: abs(cap_ts[j] - t), default=None)
        if j is None or abs(cap_ts[j] - t) >= AUDIO_FRAME_US // 2:
            out["unmatched"] += 1
            continue
        out["matched"] += 1
        chz = cap[j][1]
        if min(abs(chz - x) for x in TONES_HZ) > CLEAN_TONE_HZ:
            continue  # a straddle or a capture glitch
        out["clean"] += 1
        if tone_class(hz) != tone_class(chz):
            out["mismatched"].append((t, hz, chz))
    return out


@pytest.fixture(scope="module")
def capture_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The barcoded y4m and the two-tone wav, once per test module; skips without Chromium."""
    reason = browser_missing_reason()
    if reason:
        pytest.skip(reason)
    d = tmp_path_factory.mktemp("capture")
    write_y4m(d / "cam.y4m", Y4M_FRAMES)
    write_wav(d / "mic.wav", 10.0)
    return d / "cam.y4m", d / "mic.wav"
