"""Sans-IO parser for RAK3172 RUI3 AT output, and the P2P command strings.

`AtParser.feed(bytes)` returns events: command results (OK / *_ERROR), value lines, received
packets (+EVT:RXP2P:rssi:snr:hex), TX done, and Garbage for anything else. It must never raise
on modem bytes, never hold more than MAX_LINE_BYTES of an unterminated line, and never do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINE_BYTES = 1200  # a 255 B payload is 510 hex digits plus the event prefix
ERROR_WORDS = ("AT_ERROR", "AT_PARAM_ERROR", "AT_BUSY_ERROR", "AT_TEST_PARAM_OVERFLOW",
               "AT_NO_CLASSB_ENABLE", "AT_NO_NETWORK_JOINED", "AT_RX_ERROR", "AT_COMMAND_NOT_FOUND")
PRECV_CONTINUOUS = 65534  # RUI3: keep receiving, sending still allowed
BW_KHZ = (125, 250, 500)


@dataclass(frozen=True)
class AtOk:
    pass


@dataclass(frozen=True)
class AtError:
    word: str


@dataclass(frozen=True)
class AtValue:
    line: str


@dataclass(frozen=True)
class RxPacket:
    rssi: int
    snr: int
    data: bytes


@dataclass(frozen=True)
class TxDone:
    pass


@dataclass(frozen=True)
class Garbage:
    data: bytes


AtEvent = AtOk | AtError | AtValue | RxPacket | TxDone | Garbage


def parse_line(raw: bytes) -> AtEvent:
    try:
        line = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return Garbage(raw)
    if not line.isprintable():
        return Garbage(raw)
    if line == "OK":
        return AtOk()
    if line in ERROR_WORDS:
        return AtError(line)
    if line.startswith("+EVT:TXP2P"):
        return TxDone()
    if line.startswith("+EVT:RXP2P:"):
        parts = line.split(":")
        if len(parts) != 5:
            return Garbage(raw)
        try:
            rssi, snr = int(parts[2]), int(parts[3])
            data = bytes.fromhex(parts[4])
        except ValueError:
            return Garbage(raw)
        if not data or len(data) > 255:
            return Garbage(raw)
        return RxPacket(rssi, snr, data)
    if line.startswith("+EVT:"):
        return AtValue(line)
    return AtValue(line)


class AtParser:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[AtEvent]:
        events: list[AtEvent] = []
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            raw = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if self._skipping:
                self._skipping = False
                continue
            if raw.strip(b"\r"):
                events.append(parse_line(raw.rstrip(b"\r")))
        if len(self._buf) > MAX_LINE_BYTES:
            events.append(Garbage(bytes(self._buf[:64])))
            self._buf.clear()
            self._skipping = True  # drop the rest of this over-long line
        return events


@dataclass(frozen=True)
class P2PSettings:
    """RUI3 AT+P2P=freq:sf:bw:cr:preamble:power (cr 0..3 = 4/5..4/8, bw in kHz)."""

    freq_hz: int
    sf: int
    bw_khz: int
    cr: int
    preamble: int
    power_dbm: int

    def command(self) -> str:
        return (f"AT+P2P={self.freq_hz}:{self.sf}:{self.bw_khz}:{self.cr}:"
                f"{self.preamble}:{self.power_dbm}")

    @classmethod
    def parse(cls, value: str) -> "P2PSettings":
        """Parse 'AT+P2P=...' or the bare 'f:sf:bw:cr:pre:pw' read-back. Raises ValueError."""
        if "=" in value:
            value = value.split("=", 1)[1]
        parts = value.split(":")
        if len(parts) != 6:
            raise ValueError("AT+P2P needs 6 fields")
        f, sf, bw, cr, pre, pw = (int(p) for p in parts)
        return cls(f, sf, bw, cr, pre, pw)


def psend_command(data: bytes) -> str:
    return "AT+PSEND=" + data.hex().upper()
