"""Opening a TUN device (a network interface whose IP packets a process reads and writes).

`open_tun(name)` creates the interface in the calling thread's network namespace and returns a
non-blocking file descriptor (no packet-info header: each read is one IP packet). Linux
/dev/net/tun with the TUNSETIFF ioctl; no extra package. The interface lives as long as the
descriptor is open. This module must never configure addresses or routes (plan commands do).
"""

from __future__ import annotations

import fcntl
import os
import struct

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFNAMSIZ = 16


def open_tun(name: str) -> int:
    """Create TUN interface `name` here (this thread's namespace); a non-blocking fd to it."""
    raw = name.encode()
    if not 0 < len(raw) < IFNAMSIZ:
        raise ValueError(f"interface name {name!r} must be 1-15 bytes")
    fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", raw, IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd
