"""A hall's own devices: the device PIN and the tablets paired with it.

Once a site sets a device PIN (`meshmeet device-pin`, its scrypt hash in DIR/device-pin, 0600),
the calls a hall's tablet makes for the hall — check-in, votes, speaking requests, feedback
(policy.DEVICE_APIS) — need a paired device (or the chair's session, or the local CLI): any phone
on the hall's Wi-Fi (residents come for /y-kien) would otherwise vote for the hall. A tablet pairs
once by entering that PIN; it gets a random token in a cookie, and only the token's SHA-256 is
kept, in DIR/devices.json (0600), so pairings survive a restart. Changing or clearing the PIN
unpairs every device. Without a device PIN nothing changes (open, as before; `meshmeet doctor`
and status say so).

File I/O on two small files, no clock, no aiohttp: this module must never store a token or a PIN
in clear, and never accept a file others may read.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

from ...private_file import write_private
from . import auth

DEVICE_PIN_FILE = "device-pin"
DEVICES_FILE = "devices.json"
COOKIE = "mm_device"
COOKIE_MAX_AGE_S = 400 * 86400   # browsers cap cookie lifetimes at 400 days
MAX_DEVICES = 256                # paired devices kept; pairing one more forgets the oldest


def write_device_pin(data_dir: Path, pin: str | None) -> None:
    """Set the device PIN (6-12 digits) or, with None, clear it; either way every device is unpaired."""
    pin_file, book = Path(data_dir) / DEVICE_PIN_FILE, Path(data_dir) / DEVICES_FILE
    book.unlink(missing_ok=True)
    if pin is None:
        pin_file.unlink(missing_ok=True)
        return
    auth.check_pin_format(pin)
    write_private(pin_file, auth.hash_pin(pin) + "\n")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class DeviceBook:
    """The device PIN's hash and the paired devices' token digests, reread when the PIN changes."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)

    def pin_hash(self) -> str | None:
        """The device PIN's hash; None: no PIN, devices need no pairing. PinError: an unsafe file."""
        return auth.read_pin_hash(self.data_dir, DEVICE_PIN_FILE)

    def required(self) -> bool:
        return self.pin_hash() is not None

    def check_pin(self, pin: str) -> bool:
        stored = self.pin_hash()
        return stored is not None and auth.verify_pin(pin, stored)

    def _load(self, pin_hash: str) -> dict[str, int]:
        try:
            data = json.loads(auth.read_private_text(self.data_dir / DEVICES_FILE) or "{}")
        except ValueError:
            return {}
        if not isinstance(data, dict) or data.get("pin") != pin_hash or not isinstance(data.get("devices"), dict):
            return {}  # paired under another PIN (or damaged): nobody is paired
        return {str(k): int(v) for k, v in data["devices"].items() if isinstance(v, int)}

    def pair(self) -> str:
        """A new device token (kept as its digest, numbered in pairing order)."""
        pin_hash = self.pin_hash()
        if pin_hash is None:
            raise auth.PinError("Chưa đặt mã PIN thiết bị", "no device PIN is set")
        devices = self._load(pin_hash)
        while len(devices) >= MAX_DEVICES:
            del devices[min(devices, key=devices.__getitem__)]
        token = secrets.token_urlsafe(32)
        devices[_digest(token)] = max(devices.values(), default=0) + 1
        write_private(self.data_dir / DEVICES_FILE, json.dumps({"pin": pin_hash, "devices": devices}))
        return token

    def paired(self, token: str | None) -> bool:
        """The token belongs to a device paired under the current PIN."""
        pin_hash = self.pin_hash()
        if pin_hash is None or not token or len(token) > 128:
            return False
        return _digest(token) in self._load(pin_hash)

    def count(self) -> int:
        pin_hash = self.pin_hash()
        return len(self._load(pin_hash)) if pin_hash else 0
