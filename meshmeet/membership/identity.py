"""Identities: Ed25519 key files, node ids and commune ids.

A node's identity is an Ed25519 key pair stored as a 32-byte seed in a file readable only
by its owner (0600). The commune is identified by its admin public key. This module must
never write a key file with loose permissions, and never load one that has them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from nacl.signing import SigningKey, VerifyKey

from ..errors import ConfigError

KEY_FILE_MODE = 0o600
SEED_BYTES = 32
NODE_ID_BYTES = 8
COMMUNE_ID_BYTES = 16


def node_id_of(public_key: bytes) -> str:
    """The printable id of a node: 16 hex digits of BLAKE2b-64 over its Ed25519 public key."""
    return hashlib.blake2b(public_key, digest_size=NODE_ID_BYTES, person=b"meshmeet-node").hexdigest()


def commune_id_of(admin_public_key: bytes) -> bytes:
    """The commune id: BLAKE2b-128 over the commune admin's Ed25519 public key."""
    return hashlib.blake2b(admin_public_key, digest_size=COMMUNE_ID_BYTES, person=b"meshmeet-commune").digest()


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key pair with its derived names."""

    signing_key: SigningKey

    @cached_property  # both are asked for on every signed batch and link frame: derive them once
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @cached_property
    def node_id(self) -> str:
        return node_id_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """A detached 64-byte signature."""
        return self.signing_key.sign(message).signature

    @classmethod
    def generate(cls) -> "KeyPair":
        return cls(SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> "KeyPair":
        return cls(SigningKey(seed))


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` by `public_key`."""
    try:
        VerifyKey(public_key).verify(message, signature)
        return True
    except Exception:  # nacl raises BadSignatureError, ValueError or TypeError on junk
        return False


def save_key(path: Path, key: KeyPair) -> None:
    """Write the key's seed to `path` with mode 0600, atomically; never overwrite."""
    if path.exists():
        raise ConfigError(f"Tệp khóa đã tồn tại: {path}", f"key file already exists: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_FILE_MODE)
    try:
        os.fchmod(fd, KEY_FILE_MODE)
        os.write(fd, bytes(key.signing_key).hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_key(path: Path) -> KeyPair:
    """Read a key file, refusing one that other users can read or that is malformed."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"Không tìm thấy tệp khóa {path}", f"key file not found: {path}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"Tệp khóa {path} để người khác đọc được; chạy: chmod 600 {path}",
            f"key file {path} is readable by others; fix with: chmod 600 {path}",
        )
    try:
        seed = bytes.fromhex(path.read_text().strip())
    except (ValueError, UnicodeDecodeError):
        seed = b""
    if len(seed) != SEED_BYTES:
        raise ConfigError(f"Tệp khóa {path} bị hỏng", f"key file {path} is corrupt")
    return KeyPair.from_seed(seed)
