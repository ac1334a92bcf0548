"""Chair access: the PIN file (scrypt hash), expiring sessions and the per-client wrong-PIN limit.

Pure and clock-free: every method that needs time takes `now: float` (seconds). The PIN is never
stored or logged, only its scrypt hash in DIR/chair-pin (0600). This module must never import
aiohttp or trio, and never keep state outside the objects it returns.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import MeshmeetError
from ...private_file import write_private

PIN_FILE = "chair-pin"
PIN_MIN_DIGITS = 6
PIN_MAX_DIGITS = 12
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
SESSION_S = 8 * 3600.0
MAX_SESSIONS = 64
FREE_ATTEMPTS = 3
LOCKOUT_BASE_S = 5.0
LOCKOUT_MAX_S = 300.0
FORGET_S = 3600.0
MAX_CLIENTS = 4096


class PinError(MeshmeetError):
    """A PIN that cannot be set or a PIN file that cannot be read."""


def check_pin_format(pin: str) -> None:
    if not (pin.isascii() and pin.isdigit() and PIN_MIN_DIGITS <= len(pin) <= PIN_MAX_DIGITS):
        raise PinError(f"Mã PIN phải gồm {PIN_MIN_DIGITS}–{PIN_MAX_DIGITS} chữ số",
                       f"the PIN must be {PIN_MIN_DIGITS}–{PIN_MAX_DIGITS} digits")


def hash_pin(pin: str, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash` (hex) for `pin`."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_pin(pin: str, stored: str) -> bool:
    """Constant-time check of `pin` against a `hash_pin` string; False for anything malformed."""
    parts = stored.strip().split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or len(pin) > 64:
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, want = bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
        if not (2 <= n <= 2**20 and 1 <= r <= 16 and 1 <= p <= 4 and len(want) == 32):
            return False
        got = hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=64 * 1024 * 1024)
    except (ValueError, OverflowError):
        return False
    return hmac.compare_digest(got, want)


def pin_path(data_dir: Path) -> Path:
    return Path(data_dir) / PIN_FILE


def write_pin(data_dir: Path, pin: str) -> None:
    """Store the hash of `pin` in DIR/chair-pin (0600), atomically."""
    check_pin_format(pin)
    write_private(pin_path(data_dir), hash_pin(pin) + "\n")


def read_pin_hash(data_dir: Path, name: str = PIN_FILE) -> str | None:
    """The stored hash (DIR/`name`: the chair's PIN, or the devices' in devices.py), or None when no
    PIN is set; PinError when the file is unsafe."""
    text = read_private_text(Path(data_dir) / name)
    return text.strip() or None if text is not None else None


def read_private_text(path: Path) -> str | None:
    """A 0600 file's text (a PIN hash, the paired devices), None when absent; PinError when others
    may read it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise PinError(f"Tệp {path} cho phép người khác đọc; chạy chmod 600 {path}",
                       f"{path} is readable by others; run chmod 600 {path}")
    return path.read_text()


@dataclass
class Sessions:
    """Chair sessions: random tokens that expire SESSION_S after login."""

    lifetime_s: float = SESSION_S
    _expiry: dict[str, float] = field(default_factory=dict)

    def create(self, now: float) -> str:
        self._expiry = {t: e for t, e in self._expiry.items() if e > now}
        while len(self._expiry) >= MAX_SESSIONS:
            del self._expiry[min(self._expiry, key=self._expiry.__getitem__)]
        token = secrets.token_urlsafe(32)
        self._expiry[token] = now + self.lifetime_s
        return token

    def valid(self, token: str | None, now: float) -> bool:
        if not token:
            return False
        expiry = self._expiry.get(token)
        if expiry is None:
            return False
        if expiry <= now:
            del self._expiry[token]
            return False
        return True

    def end(self, token: str | None) -> None:
        self._expiry.pop(token or "", None)

    def end_all(self) -> None:
        self._expiry.clear()


@dataclass
class RateLimit:
    """Wrong-PIN limiter, per client only: after FREE_ATTEMPTS failures from one client it waits
    LOCKOUT_BASE_S, doubling per further failure up to LOCKOUT_MAX_S; a client's failures are
    forgotten FORGET_S after its last one, or when it logs in. A client with no failures of its
    own is never refused, whatever others do (a shared limit let anyone keep the chair out).
    At most MAX_CLIENTS are remembered; past that the longest-quiet ones are forgotten first."""

    max_clients: int = MAX_CLIENTS
    _fails: dict[str, tuple[int, float, float]] = field(default_factory=dict)  # client -> (failures, locked until, last)

    def _entry(self, client: str, now: float) -> tuple[int, float, float] | None:
        entry = self._fails.get(client)
        if entry is not None and now - entry[2] >= FORGET_S:
            del self._fails[client]
            return None
        return entry

    def wait_s(self, client: str, now: float) -> float:
        """Seconds before `client` may try again (0 = now)."""
        entry = self._entry(client, now)
        return 0.0 if entry is None else max(0.0, entry[1] - now)

    def failed(self, client: str, now: float) -> None:
        """Count one failure of `client` (call it before checking the PIN; `succeeded` undoes it)."""
        entry = self._entry(client, now)
        count = (entry[0] if entry else 0) + 1
        lock = 0.0 if count < FREE_ATTEMPTS else min(LOCKOUT_MAX_S, LOCKOUT_BASE_S * 2 ** min(count - FREE_ATTEMPTS, 32))
        self._fails.pop(client, None)  # re-inserted last: the dict stays ordered by last failure
        self._fails[client] = (count, now + lock, now)
        while len(self._fails) > self.max_clients:
            del self._fails[next(iter(self._fails))]

    def succeeded(self, client: str) -> None:
        self._fails.pop(client, None)

    def clients(self) -> int:
        """How many clients are remembered (bounded by max_clients)."""
        return len(self._fails)
