"""Which input protocols this machine's PyAV/FFmpeg build has, so that `meshmeet ingest srt://…`
on a build without SRT fails at once with a clear error instead of retrying forever.

PyAV has no call for it; FFmpeg's own `avio_enum_protocols` is read through ctypes from the
libavformat PyAV loaded. Run as `python -m meshmeet.ingest.protocols` (prints a JSON list, or
null when the list cannot be read) by node/ingest_service.py, once per node: FFmpeg is loaded in
that child only, never in the node process. This module must never open a source or a socket.
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path


def _mapped_libraries() -> list[str]:
    """Paths of the shared objects mapped into this process, libavformat first."""
    paths: list[str] = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                parts = line.rstrip("\n").split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith("/") and parts[5] not in paths:
                    paths.append(parts[5])
    except OSError:
        return []
    return sorted((p for p in paths if ".so" in Path(p).name), key=lambda p: "avformat" not in Path(p).name)


def input_protocols() -> list[str] | None:
    """FFmpeg's input protocol names as PyAV's build has them; None if they cannot be read."""
    import av  # noqa: F401 - loads libavformat

    for path in _mapped_libraries():
        try:
            enum = ctypes.CDLL(path).avio_enum_protocols
        except (OSError, AttributeError):
            continue
        enum.restype = ctypes.c_char_p
        enum.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
        opaque = ctypes.c_void_p(None)
        names: list[str] = []
        while (name := enum(ctypes.byref(opaque), 0)) is not None:
            names.append(name.decode("ascii", "replace"))
        return names
    return None


if __name__ == "__main__":
    json.dump(input_protocols(), sys.stdout)
    sys.stdout.write("\n")
