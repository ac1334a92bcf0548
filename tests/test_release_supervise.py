"""`meshmeet supervise` waiting while the node runs (issue 16: an idle supervisor must sleep in the
kernel, not poll): a real child process's exit is seen, a switch the node asks for in state.json is
seen whether or not the file was read before. Waits are hang guards, never performance limits."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from meshmeet.release.layout import INSTALLED_MARK, Layout
from meshmeet.release.supervise import ChildWatch, Supervisor

HANG_GUARD_S = 60.0


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_child_watch_sees_a_running_child_and_its_exit() -> None:
    child = sleeper()
    try:
        with ChildWatch(child) as watch:
            assert watch.wait(0.05) is False
            assert child.poll() is None
            threading.Timer(0.2, child.terminate).start()
            assert watch.wait(HANG_GUARD_S) is True  # woken by the exit, not by the guard
            assert child.returncode is not None
            assert watch.wait(HANG_GUARD_S) is True  # already reaped
        with ChildWatch(child) as watch:  # made after the exit
            assert watch.wait(HANG_GUARD_S) is True
    finally:
        child.kill()
        child.wait()


def test_a_switch_asked_for_after_quiet_reads_is_taken(tmp_path: Path) -> None:
    lay = Layout(tmp_path / "root")
    lay.root.mkdir()
    lay.update_state(event="idle")  # a state.json with nothing pending: read once, then only stat'ed
    (lay.versions / "0.9.9").mkdir(parents=True)
    (lay.versions / "0.9.9" / INSTALLED_MARK).write_text("0.9.9")
    sup = Supervisor(lay.root, tmp_path / "data", [])
    switched: list[tuple[str, str]] = []
    sup._switch = lambda old, new: switched.append((old, new)) or True  # the switch itself is test_release_nodes'
    sup.child = sleeper()
    try:
        def ask() -> None:
            time.sleep(0.6)  # a few quiet polls first
            lay.update_state(pending="0.9.9", event="installed 0.9.9")
        threading.Thread(target=ask, daemon=True).start()
        guard = threading.Timer(HANG_GUARD_S, lambda: setattr(sup, "stopping", True))
        guard.start()
        assert sup._wait_or_switch("0.1.0") is True
        guard.cancel()
        assert switched == [("0.1.0", "0.9.9")]
    finally:
        sup.child.kill()
        sup.child.wait()
