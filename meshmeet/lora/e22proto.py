"""Sans-IO pieces of the Ebyte E22-900T22 UART protocol: registers and transparent framing.

Config mode (M0=0, M1=1, 9600 8N1): `C0 addr len data` writes registers (saved), `C1 addr len`
reads them, the module answers `C1 addr len data`, and `FF FF FF` for a bad command. Registers
00H ADDH, 01H ADDL, 02H NETID, 03H REG0 (UART baud, parity, air rate), 04H REG1 (sub-packet size,
ambient RSSI, power), 05H REG2 channel (f = 850.125 + CH MHz), 06H REG3 (RSSI byte, fixed
point, relay, LBT, WOR), 07H-08H CRYPT (write only). In transparent mode the module sends what
it gets; we prefix each frame with one length byte so the receiving side can find frame ends.
This module must never do I/O and never raise anything but E22Error on module bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MeshmeetError

BASE_MHZ_900 = 850.125
MAX_CHANNEL = 80  # 850.125 + 80 = 930.125 MHz, top of the E22-900T22 range
WRITE, READ = 0xC0, 0xC1
ERROR_REPLY = b"\xff\xff\xff"
READABLE_REGS = 7  # 00H..06H; CRYPT (07H, 08H) reads back as zero / is write-only
AIR_RATE_BPS = {0: 300, 1: 1200, 2: 2400, 3: 4800, 4: 9600, 5: 19200, 6: 38400, 7: 62500}
UART_BAUD = {0: 1200, 1: 2400, 2: 4800, 3: 9600, 4: 19200, 5: 38400, 6: 57600, 7: 115200}
SUB_PACKET_BYTES = {0: 240, 1: 128, 2: 64, 3: 32}
POWER_DBM = {0: 22, 1: 17, 2: 13, 3: 10}
MAX_FRAME_BYTES = 239  # 240 B sub-packet minus our length byte


class E22Error(MeshmeetError):
    def __init__(self, en: str) -> None:
        super().__init__(f"Mô-đun E22 trả lời sai: {en}", f"E22 module answered wrongly: {en}")


@dataclass(frozen=True)
class E22Settings:
    addr: int = 0xFFFF
    netid: int = 0
    uart_baud: int = 9600
    air_rate_bps: int = 2400
    sub_packet_bytes: int = 240
    power_dbm: int = 10
    channel: int = 71
    rssi_byte: bool = False
    fixed_point: bool = False
    lbt: bool = True

    @property
    def freq_mhz(self) -> float:
        return round(BASE_MHZ_900 + self.channel, 3)

    def registers(self) -> bytes:
        """Registers 00H..06H."""
        inv = lambda table, v: {b: a for a, b in table.items()}[v]  # noqa: E731
        reg0 = (inv(UART_BAUD, self.uart_baud) << 5) | inv(AIR_RATE_BPS, self.air_rate_bps)
        reg1 = (inv(SUB_PACKET_BYTES, self.sub_packet_bytes) << 6) | inv(POWER_DBM, self.power_dbm)
        if not 0 <= self.channel <= MAX_CHANNEL:
            raise ValueError("E22 channel out of range")
        reg3 = (0x80 if self.rssi_byte else 0) | (0x40 if self.fixed_point else 0) | (0x10 if self.lbt else 0)
        return bytes([self.addr >> 8, self.addr & 0xFF, self.netid, reg0, reg1, self.channel, reg3])

    @classmethod
    def from_registers(cls, regs: bytes) -> "E22Settings":
        if len(regs) < READABLE_REGS:
            raise E22Error("short register read")
        if regs[5] > MAX_CHANNEL:
            raise E22Error(f"channel {regs[5]} out of range")
        return cls(
            addr=(regs[0] << 8) | regs[1], netid=regs[2], uart_baud=UART_BAUD[regs[3] >> 5],
            air_rate_bps=AIR_RATE_BPS[regs[3] & 7], sub_packet_bytes=SUB_PACKET_BYTES[regs[4] >> 6],
            power_dbm=POWER_DBM[regs[4] & 3], channel=regs[5], rssi_byte=bool(regs[6] & 0x80),
            fixed_point=bool(regs[6] & 0x40), lbt=bool(regs[6] & 0x10),
        )


def write_command(settings: E22Settings) -> bytes:
    regs = settings.registers()
    return bytes([WRITE, 0x00, len(regs)]) + regs


def read_command() -> bytes:
    return bytes([READ, 0x00, READABLE_REGS])


def parse_reply(data: bytes) -> E22Settings:
    """Parse a C1 00 07 <regs> reply (to a read or a write)."""
    if data.startswith(ERROR_REPLY):
        raise E22Error("FF FF FF (command refused)")
    if len(data) < 3 + READABLE_REGS or data[0] != READ or data[1] != 0 or data[2] != READABLE_REGS:
        raise E22Error("unexpected reply " + data[:12].hex())
    return E22Settings.from_registers(data[3 : 3 + READABLE_REGS])


def frame_for_air(frame: bytes) -> bytes:
    if not 0 < len(frame) <= MAX_FRAME_BYTES:
        raise ValueError("frame does not fit one E22 sub-packet")
    return bytes([len(frame)]) + frame


class TransparentDeframer:
    """Splits the transparent-mode UART stream back into length-prefixed frames.

    A length of 0 is impossible, so it is skipped as noise; anything else is trusted and a bad
    frame is rejected later by its tag. `reset()` is called on a read gap to resynchronise.
    """

    def __init__(self, rssi_byte: bool = False) -> None:
        self._buf = bytearray()
        self._extra = 1 if rssi_byte else 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while self._buf:
            n = self._buf[0]
            if n == 0:
                del self._buf[0]
                continue
            if len(self._buf) < 1 + n + self._extra:
                break
            out.append(bytes(self._buf[1 : 1 + n]))
            del self._buf[: 1 + n + self._extra]
        return out

    def reset(self) -> None:
        self._buf.clear()

    @property
    def pending(self) -> int:
        return len(self._buf)
