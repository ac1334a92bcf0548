"""The start gate: a new version, started by the supervisor while the old one still runs, loads
its code and then waits here, so the switch costs only the old node's shutdown and the new one's
binding of its ports (not Python's imports, several seconds on a busy box).

`meshmeet run` calls `wait_at_gate()` after building its Node (everything imported) and before
running it. With MESHMEET_START_GATE=PATH set it writes PATH.ready and waits until PATH exists
(the supervisor creates it once the old node has exited), or returns False on SIGTERM/SIGINT.
Without the variable it returns True at once. This module must never touch the data dir.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

GATE_ENV = "MESHMEET_START_GATE"
POLL_S = 0.05


def wait_at_gate() -> bool:
    gate = os.environ.get(GATE_ENV)
    if not gate:
        return True
    stop = []
    previous = {s: signal.signal(s, lambda *_: stop.append(1)) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        Path(gate + ".ready").write_text(str(os.getpid()))
        while not stop and not os.path.exists(gate):
            time.sleep(POLL_S)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return not stop
