"""The run file: what a running node publishes about itself in DIR/run/node.json (ports, node id),
read by `meshmeet` commands to find it. Kept apart from node.py so a command that only needs to
find the node does not import the whole node (trio, aiohttp, media: seconds per call on a Pi).
It must never import the node or anything that runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..membership.datadir import DataDir

RUN_FILE = "node.json"


def read_run_file(data_dir: Path) -> dict | None:
    """What a running node published about itself, or None when none is running there."""
    try:
        info = json.loads((DataDir(Path(data_dir)).run / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None
