"""Release manifests: what HQ signs when it publishes a bundle, and the checks every node makes.

A manifest names one bundle (version, SHA-256, size) and is signed by the commune admin key.
It travels as a small document beside the bundle (docs/release.md has the byte layout and a
test vector). `check_manifest` refuses, with a bilingual reason, anything not signed by an
accepted key, malformed, or not newer than what the node runs or has ever installed (a
replayed old release is a downgrade). This module is sans-IO: it must never read files, the
clock or the network, and never raise anything but ReleaseError on hostile bytes.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Iterable

import msgpack

from ..membership.identity import KeyPair, verify

FORMAT = 1
SIGN_DOMAIN = b"meshmeet/release/1"
SIGNATURE_BYTES = 64
KEY_BYTES = 32
SHA256_BYTES = 32
MAX_MANIFEST_BYTES = 1024
MAX_BUNDLE_BYTES = 200 * 1024 * 1024  # a bundle travels as a document: the document limit
MANIFEST_SUFFIX = ".manifest"
RELEASE_MEETING = "release"  # the documents' meeting id that carries releases
_VERSION_RE = re.compile(r"^(0|[1-9][0-9]{0,5})(\.(0|[1-9][0-9]{0,5})){1,3}$")


class ReleaseError(Exception):
    """A release refused; `vi` and `en` say why (Vietnamese first)."""

    def __init__(self, vi: str, en: str, code: str = "refused") -> None:
        super().__init__(en)
        self.vi, self.en, self.code = vi, en, code

    def __str__(self) -> str:
        return f"{self.vi} / {self.en}"


@dataclass(frozen=True)
class Manifest:
    """The signed facts about one bundle."""

    version: str
    sha256: bytes
    size: int
    signer: bytes
    issued_at: int
    not_before: int = 0  # do not restart into it before this Unix time (the chair's choice)

    @property
    def key(self) -> tuple[int, ...]:
        return version_key(self.version)


def version_key(version: str) -> tuple[int, ...]:
    """`"0.2.10"` -> (0, 2, 10, 0): versions compare as tuples of numbers; ReleaseError if malformed."""
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise ReleaseError(f"Số phiên bản không hợp lệ: {version!r}", f"malformed version: {version!r}",
                           "malformed")
    parts = tuple(int(p) for p in version.split("."))
    return parts + (0,) * (4 - len(parts))


def body_bytes(m: Manifest) -> bytes:
    """The signed body: msgpack [format, version, sha256, size, signer, issued_at, not_before]."""
    return msgpack.packb([FORMAT, m.version, m.sha256, m.size, m.signer, m.issued_at, m.not_before],
                         use_bin_type=True)


def sign_manifest(key: KeyPair, version: str, sha256: bytes, size: int, issued_at: int,
                  not_before: int = 0) -> bytes:
    """The manifest file's bytes: msgpack [body, signature] (signature over SIGN_DOMAIN || body)."""
    version_key(version)
    if len(sha256) != SHA256_BYTES or not 0 < size <= MAX_BUNDLE_BYTES:
        raise ReleaseError("Gói không hợp lệ (kích thước hoặc mã băm)", "bad bundle size or hash", "malformed")
    m = Manifest(version, sha256, size, key.public_key, int(issued_at), int(not_before))
    body = body_bytes(m)
    return msgpack.packb([body, key.sign(SIGN_DOMAIN + body)], use_bin_type=True)


def parse_manifest(data: bytes) -> tuple[Manifest, bytes, bytes]:
    """(manifest, body, signature) from a manifest file; ReleaseError on any malformation.
    The signature is NOT checked here (check_manifest does)."""
    bad = ReleaseError("Tệp mô tả phiên bản bị hỏng", "malformed release manifest", "malformed")
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_MANIFEST_BYTES:
        raise bad
    try:
        outer = msgpack.unpackb(bytes(data), raw=False, use_list=False)
        if type(outer) is not tuple or len(outer) != 2:
            raise bad
        body, sig = outer
        if not isinstance(body, bytes) or not isinstance(sig, bytes) or len(sig) != SIGNATURE_BYTES:
            raise bad
        inner = msgpack.unpackb(body, raw=False, use_list=False)
    except ReleaseError:
        raise
    except Exception:  # msgpack raises many kinds on junk: all mean "malformed"
        raise bad from None
    if type(inner) is not tuple or len(inner) != 7 or inner[0] != FORMAT or type(inner[0]) is not int:
        raise bad
    _, version, sha, size, signer, issued_at, not_before = inner
    if not isinstance(version, str) or not isinstance(sha, bytes) or len(sha) != SHA256_BYTES \
            or type(size) is not int or not 0 < size <= MAX_BUNDLE_BYTES \
            or not isinstance(signer, bytes) or len(signer) != KEY_BYTES \
            or type(issued_at) is not int or type(not_before) is not int or issued_at < 0 or not_before < 0:
        raise bad
    version_key(version)
    if body_bytes(Manifest(version, sha, size, signer, issued_at, not_before)) != body:
        raise bad  # not the canonical encoding: one body, one meaning
    return Manifest(version, sha, size, signer, issued_at, not_before), body, sig


def check_manifest(data: bytes, accepted_keys: Iterable[bytes], running: str,
                   highest_installed: str | None = None, refused: Iterable[str] = ()) -> Manifest:
    """The manifest if this node should take it; ReleaseError (with `code`) otherwise:
    `malformed`, `not_admin` (signer not an accepted key), `bad_signature`, `downgrade`
    (not newer than `running` or than `highest_installed`: a replayed old release), `refused`
    (a version this node already rolled back from)."""
    m, body, sig = parse_manifest(data)
    if m.signer not in set(accepted_keys):
        raise ReleaseError("Phiên bản không do khóa quản trị xã ký: không cài",
                           "release not signed by the commune admin key: not installed", "not_admin")
    if not verify(m.signer, SIGN_DOMAIN + body, sig):
        raise ReleaseError("Chữ ký phiên bản sai: không cài", "bad release signature: not installed",
                           "bad_signature")
    floor = max(version_key(running), version_key(highest_installed) if highest_installed else (0,))
    if m.key <= floor:
        raise ReleaseError(f"Phiên bản {m.version} không mới hơn bản đang dùng: không hạ cấp",
                           f"release {m.version} is not newer than this node's: no downgrade", "downgrade")
    if m.version in set(refused):
        raise ReleaseError(f"Phiên bản {m.version} đã bị trả lại vì không chạy được",
                           f"release {m.version} was rolled back here before: not retried", "rolled_back")
    return m


def check_bundle(m: Manifest, size: int, sha256: bytes) -> None:
    """The bundle's bytes are the ones the manifest names; ReleaseError `tampered` otherwise."""
    if size != m.size or not hmac.compare_digest(sha256, m.sha256):
        raise ReleaseError("Gói cài đặt không khớp chữ ký (bị sửa hoặc hỏng): không cài",
                           "bundle does not match its signed manifest (tampered or corrupt): not installed",
                           "tampered")
