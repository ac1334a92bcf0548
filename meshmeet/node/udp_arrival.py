"""When a UDP datagram reached this machine: the kernel's receive timestamp, on the trio clock.

A datagram's one-way delay (meshmeet/media/datagram_stats.py) must be the path's, not this
process's. Stamped when the process reads it, a datagram that waited in the socket buffer while the
node was busy or descheduled (a loaded box: 0.2-0.45 s between two media steps was seen with two
Chromiums and three nodes on two cores) looks like a path queue longer than the playout budget, and
the relay then drops the link's media for up to 2 s (relay_feedback.py, "flush"): the voices test's
sequence gaps of 20 to 180 frames. With SO_TIMESTAMP the kernel stamps each datagram as it arrives
(wall clock, microseconds); `arrival` turns that into the trio clock by the age the wall clock gives
it now. A stamp that is missing, in the future, or older than MAX_AGE_S (the wall clock stepped)
is ignored: the datagram counts as arriving now, as without this module.

This module must never read or send on the socket itself nor decide anything about media.
"""

from __future__ import annotations

import socket
import struct

SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)  # Linux (asm-generic and x86): 29; CPython 3.11 lacks the name
ANCILLARY_BYTES = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 64
MAX_AGE_S = 5.0  # a datagram older than this in the socket buffer: the wall clock stepped, not a stall
_TIMEVAL = struct.Struct("@ll")


def enable(sock: socket.socket) -> bool:
    """Ask the kernel to stamp each datagram `sock` receives; False where it cannot."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
    except (OSError, AttributeError):
        return False
    return hasattr(sock, "recvmsg")


def arrival(ancillary: list[tuple[int, int, bytes]], now: float, wall_now: float) -> float:
    """The trio-clock time the datagram arrived, from recvmsg's ancillary data (`now`: the trio
    clock, `wall_now`: time.time(), both read just after recvmsg returned)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP and len(data) >= _TIMEVAL.size:
            sec, usec = _TIMEVAL.unpack_from(data)
            age = wall_now - (sec + usec / 1e6)
            if 0.0 <= age <= MAX_AGE_S:
                return now - age
    return now
