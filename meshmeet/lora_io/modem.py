"""What every LoRa modem driver offers the link loop, and the driver-level error.

This module must never contain a model's protocol; see rak3172.py and e22.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..errors import MeshmeetError
from ..lora.airtime import LoraParams


class ModemError(MeshmeetError):
    """The modem did not answer, answered garbage, or refused a setting."""


def no_answer(what: str) -> ModemError:
    return ModemError(f"Modem không trả lời ({what})", f"modem did not answer ({what})")


@dataclass(frozen=True)
class Received:
    data: bytes
    rssi: int | None = None
    snr: int | None = None


class Modem(Protocol):
    mtu_bytes: int
    extra_air_bytes: int
    params: LoraParams
    garbage: int

    async def send(self, frame: bytes) -> None: ...

    async def recv(self) -> Received: ...
