"""What the `meshmeet` command does when the program reading its output goes away
(`meshmeet invite ... --qr | head -1`): end quietly, as `yes | head -1` does, instead of a
Python BrokenPipeError traceback.

The recipe is Python's own ("Note on SIGPIPE" in the `signal` docs): catch BrokenPipeError, point
stdout at /dev/null so the flush at interpreter exit cannot fail again, and exit. The status is
128 + SIGPIPE (141), what a shell reports for any writer that a closed pipe ended, so `set -o
pipefail` scripts see the usual value. SIGPIPE itself stays ignored (Python's default): the node's
sockets must get EPIPE, not kill the process. This module must never hide a BrokenPipeError that
did not come from our own standard streams (a socket's is re-raised).
"""

from __future__ import annotations

import os
import select
import signal
import sys

EXIT_SIGPIPE = 128 + signal.SIGPIPE


def _reader_gone(fd: int) -> bool:
    """The pipe on `fd` has no reader left (poll reports POLLERR on such a write end)."""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & select.POLLERR for _fd, ev in poller.poll(0))
    except (OSError, ValueError):
        return False


def stdout_reader_gone() -> bool:
    """True when stdout (or stderr) is a pipe whose reader has closed it."""
    return any(_reader_gone(fd) for fd in (1, 2))


def quiet_exit() -> int:
    """Point the closed standard streams at /dev/null and return the exit status to use."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            if _reader_gone(fd):
                os.dup2(devnull, fd)
    finally:
        os.close(devnull)
    return EXIT_SIGPIPE


def flush_stdout() -> None:
    """Flush inside the command's try block, so a closed reader shows up there, not at exit."""
    sys.stdout.flush()
