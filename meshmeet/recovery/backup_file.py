"""The backup file: HQ's secrets (hqsecrets.py) encrypted under a passphrase.

KDF: Argon2id (pynacl's `nacl.pwhash.argon2id`, libsodium), opslimit 3 / memlimit 256 MiB by
default (libsodium's MODERATE: about a second and 256 MiB here, fits a 2 GB Pi). Argon2id rather
than scrypt: it is the password-hashing competition winner and RFC 9106's first choice, memory-hard
and resistant to side channels, and libsodium's implementation is the one pynacl already ships; the
cost parameters travel in the file so they can be raised later. Cipher: XChaCha20-Poly1305 (IETF)
with the file header as associated data, so changing the commune id or the KDF costs breaks it.

File: msgpack map {"v": 1, "kdf": "argon2id13", "ops", "mem", "salt" (16 B), "commune" (16 B),
"made_at", "nonce" (24 B), "ct"} after the 8-byte magic b"MMBKUP1\\n" (docs/protocol/recovery.md).
It must never write the secrets unencrypted, never accept KDF costs beyond MAX_MEM_BYTES (a crafted
file must not exhaust memory), and never tell a wrong passphrase apart from a damaged file.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
import nacl.exceptions
import nacl.pwhash
import nacl.utils
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)

from ..errors import ConfigError
from .hqsecrets import HqSecrets

MAGIC = b"MMBKUP1\n"
KDF_NAME = "argon2id13"
DEFAULT_OPS = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
DEFAULT_MEM_BYTES = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
MIN_OPS = nacl.pwhash.argon2id.OPSLIMIT_MIN
MAX_OPS = 64
MIN_MEM_BYTES = nacl.pwhash.argon2id.MEMLIMIT_MIN
MAX_MEM_BYTES = 1024 * 1024 * 1024
SALT_BYTES = nacl.pwhash.argon2id.SALTBYTES  # 16
NONCE_BYTES = 24
KEY_BYTES = 32
MIN_PASSPHRASE_CHARS = 12
MAX_FILE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class KdfCost:
    ops: int = DEFAULT_OPS
    mem: int = DEFAULT_MEM_BYTES


def _bad() -> ConfigError:
    return ConfigError("Tệp sao lưu hỏng hoặc sai mật khẩu", "backup file is damaged or the passphrase is wrong")


def derive_key(passphrase: str, salt: bytes, cost: KdfCost) -> bytes:
    return nacl.pwhash.argon2id.kdf(KEY_BYTES, passphrase.encode("utf-8"), salt, opslimit=cost.ops, memlimit=cost.mem)


def _header(cost: KdfCost, salt: bytes, commune: bytes, made_at: int) -> dict:
    return {"v": 1, "kdf": KDF_NAME, "ops": cost.ops, "mem": cost.mem, "salt": salt, "commune": commune, "made_at": made_at}


def _aad(header: dict) -> bytes:
    return MAGIC + msgpack.packb(header, use_bin_type=True)


def check_passphrase(passphrase: str) -> None:
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise ConfigError(f"Mật khẩu sao lưu cần ít nhất {MIN_PASSPHRASE_CHARS} ký tự (nên dùng vài từ)",
                          f"the backup passphrase needs at least {MIN_PASSPHRASE_CHARS} characters (use a few words)")


def seal(secrets: HqSecrets, passphrase: str, cost: KdfCost = KdfCost(), salt: bytes | None = None,
         nonce: bytes | None = None) -> bytes:
    """The backup file's bytes (salt and nonce random unless given: test vectors)."""
    check_passphrase(passphrase)
    salt = nacl.utils.random(SALT_BYTES) if salt is None else salt
    nonce = nacl.utils.random(NONCE_BYTES) if nonce is None else nonce
    header = _header(cost, salt, secrets.commune_id, secrets.made_at)
    ct = crypto_aead_xchacha20poly1305_ietf_encrypt(secrets.to_bytes(), _aad(header), nonce,
                                                     derive_key(passphrase, salt, cost))
    return MAGIC + msgpack.packb({**header, "nonce": nonce, "ct": ct}, use_bin_type=True)


def read_header(data: bytes) -> dict:
    """The file's public header (commune id, made_at, KDF costs); ConfigError when it is not a backup file."""
    if len(data) > MAX_FILE_BYTES or not data.startswith(MAGIC):
        raise ConfigError("Đây không phải tệp sao lưu meshmeet", "this is not a meshmeet backup file")
    try:
        d = msgpack.unpackb(data[len(MAGIC):], raw=False)
    except Exception:  # msgpack raises several types on junk
        raise _bad() from None
    ok = (isinstance(d, dict) and d.get("v") == 1 and d.get("kdf") == KDF_NAME
          and type(d.get("ops")) is int and MIN_OPS <= d["ops"] <= MAX_OPS
          and type(d.get("mem")) is int and MIN_MEM_BYTES <= d["mem"] <= MAX_MEM_BYTES
          and type(d.get("salt")) is bytes and len(d["salt"]) == SALT_BYTES
          and type(d.get("commune")) is bytes and len(d["commune"]) == 16
          and type(d.get("made_at")) is int
          and type(d.get("nonce")) is bytes and len(d["nonce"]) == NONCE_BYTES and type(d.get("ct")) is bytes)
    if not ok:
        raise _bad()
    return d


def open_file(data: bytes, passphrase: str) -> HqSecrets:
    """The secrets in a backup file; ConfigError for a wrong passphrase or any damage."""
    d = read_header(data)
    header = _header(KdfCost(d["ops"], d["mem"]), d["salt"], d["commune"], d["made_at"])
    key = derive_key(passphrase, d["salt"], KdfCost(d["ops"], d["mem"]))
    try:
        plain = crypto_aead_xchacha20poly1305_ietf_decrypt(d["ct"], _aad(header), d["nonce"], key)
    except nacl.exceptions.CryptoError:
        raise _bad() from None
    secrets = HqSecrets.from_bytes(plain)
    if secrets.commune_id != d["commune"]:
        raise _bad()
    return secrets
