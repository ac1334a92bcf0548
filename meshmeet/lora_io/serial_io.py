"""Open a serial port with pyserial and hand its fd to trio as an FdStream (VMIN=1).

pyserial configures the tty (baud, 8N1, raw); we then set VMIN=1/VTIME=0 so an idle read
blocks instead of returning b"" (which would look like end of file), and wrap a dup of the fd in
`trio.lowlevel.FdStream`. This module must never read or write modem bytes itself.
"""

from __future__ import annotations

import os
import termios
from dataclasses import dataclass

import serial
import trio

from ..errors import MeshmeetError


def set_vmin1(fd: int) -> None:
    attrs = termios.tcgetattr(fd)
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


@dataclass
class SerialPort:
    serial: serial.Serial
    stream: trio.lowlevel.FdStream

    async def aclose(self) -> None:
        await self.stream.aclose()
        self.serial.close()

    def set_baud(self, baud: int) -> None:
        """Change speed (E22 config mode is 9600); pyserial resets VMIN, so set it again."""
        self.serial.baudrate = baud
        set_vmin1(self.serial.fd)


def open_serial(port: str, baud: int) -> SerialPort:
    try:
        ser = serial.Serial(port, baud, timeout=None, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as e:
        raise MeshmeetError(f"Không mở được cổng {port}: {e}", f"cannot open serial port {port}: {e}") from None
    set_vmin1(ser.fd)
    return SerialPort(ser, trio.lowlevel.FdStream(os.dup(ser.fd)))
