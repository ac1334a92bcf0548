"""Small private files of the LoRa part in the data dir, written atomically (tmp, fsync, rename).

Used for DIR/lora.key (the signed key offer), DIR/lora-state.json (counter mark and replay window)
and DIR/lora-alerts.json (recent alerts with their acks). This module must never write a file
readable by others, and never leave a half-written file where the real one should be.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FILE_MODE = 0o600
KEY_FILE = "lora.key"
STATE_FILE = "lora-state.json"
ALERTS_FILE = "lora-alerts.json"


def write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def read_json(path: Path) -> object | None:
    """The parsed file, or None when it is missing or unreadable (the caller starts fresh)."""
    data = read_bytes(path)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def write_json(path: Path, obj: object) -> None:
    write_private(path, json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())


def state_to_json(reserved: int, replay: dict[int, tuple[int, int]]) -> dict:
    return {"reserved": reserved, "replay": {str(s): [h, format(bits, "x")] for s, (h, bits) in replay.items()}}


def state_from_json(obj: object) -> tuple[int, dict[int, tuple[int, int]]]:
    """(counter mark, replay window) from lora-state.json; ValueError when it is not that shape."""
    if not isinstance(obj, dict) or type(obj.get("reserved")) is not int or obj["reserved"] < 0:
        raise ValueError("bad LoRa state file")
    replay: dict[int, tuple[int, int]] = {}
    raw = obj.get("replay", {})
    if not isinstance(raw, dict):
        raise ValueError("bad replay table")
    for source, value in raw.items():
        if not (isinstance(value, list) and len(value) == 2 and type(value[0]) is int and isinstance(value[1], str)):
            raise ValueError("bad replay entry")
        replay[int(source)] = (value[0], int(value[1], 16))
    return obj["reserved"], replay
