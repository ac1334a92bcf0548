"""The recording a hub writes while it relays: which file, and a file every player can start.

`LiveRecording` appends what the media hub relayed to DIR/recordings/NAME.mmrec (NAME asked of
`name()` at every check: the node's started meeting). A new file begins with the latest decoder
config of each stream and the page on the TVs (the slide record), so it decodes from its first
chunk; configs alone write no file (a node that only hears the holder's config repeats records
nothing). About once a second (RECORDING_CHECK_S) it checks that its file is still the one on disk:
recording sync may have replaced it with a neighbour's longer copy, and writing goes on into that
one. This module must never rewrite what was recorded, read a clock (`now` is passed in), or
import trio or aiohttp.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from ..media import chunk as C
from .recorder import Recorder

log = logging.getLogger(__name__)

RECORDING_CHECK_S = 1.0  # how often the recorder checks that its file is still the one on disk


class LiveRecording:
    """What one hub records into `recordings_dir`."""

    def __init__(self, recordings_dir: Path, name: Callable[[], str]) -> None:
        self.recordings_dir = recordings_dir
        self._name = name
        self.recorder: Recorder | None = None
        self._recording_name: str | None = None
        # stream byte -> latest (config, arrival): a new recording file starts with these
        self._last_configs: dict[int, tuple[bytes, float]] = {}
        self._last_slide: bytes | None = None  # the slide record a new file starts with
        self._checked_at = -1e18

    @property
    def name(self) -> str:
        """The name of the recording being written (or about to be)."""
        return self._recording_name or self._name()

    def add(self, data: bytes, now: float) -> None:
        """A relayed media message. Configs wait in memory until a chunk comes; the file is
        reopened if recording sync replaced it meanwhile."""
        if data[:1] != bytes((C.KIND_CHUNK,)):
            if data[:1] == bytes((C.KIND_CONFIG,)) and len(data) > 1:
                self._last_configs[data[1]] = (data, now)
            if self.recorder is not None:
                self.recorder.add(data, now)
            return
        if self.recorder is None or now - self._checked_at >= RECORDING_CHECK_S:
            self._open(now)
            assert self.recorder is not None
        self.recorder.add(data, now)

    def add_slide(self, data: bytes, now: float) -> None:
        """The page on the TVs (a slide record): into the open file, and at the start of the next."""
        self._last_slide = data
        if self.recorder is not None:
            self.recorder.add(data, now)

    def sync(self, now: float) -> None:
        """Call about once a second: the tail of a meeting reaches the disk (and recording sync)."""
        if self.recorder is not None:
            self.recorder.idle_sync(now)

    def _open(self, now: float) -> None:
        name = self._name()
        path = self.recordings_dir / f"{name}.mmrec"
        self._checked_at = now
        if self.recorder is not None:
            if name == self._recording_name:
                try:
                    if os.stat(path).st_ino == os.fstat(self.recorder.fileno()).st_ino:
                        return
                except OSError:
                    pass
                log.info("recording %s was replaced (fetched from a neighbour): appending to the new file", path.name)
            else:
                log.info("recording now goes to %s (another meeting started)", path.name)
            self.recorder.close()
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        f = open(path, "ab")  # noqa: SIM115 (kept open)
        self.recorder = Recorder(f, now)
        if name != self._recording_name:  # a new file (not one recording sync replaced): decodable from its start
            for cfg, at in sorted(self._last_configs.values(), key=lambda x: x[1]):
                self.recorder.add(cfg, at)
            if self._last_slide is not None:
                self.recorder.add(self._last_slide, now)
        self._recording_name = name

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
