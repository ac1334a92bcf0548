"""The certificate exchange on the mesh (service 0x70): a hall's CSR up to HQ, the certificate back.

Each message is msgpack: `[1, requester, csr]` (request), `[2, requester, cert, ca]` (issued) or
`[3, requester, vi, en]` (refused), requester being the hall's node id; at most
MAX_CERT_MESSAGE_BYTES. `decode_cert_message` turns anything else into CertMessageError. This
module must never sign, read files or do I/O: node/webapp_service.py does, with web/tls.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from ..errors import MeshmeetError

MAX_CERT_MESSAGE_BYTES = 8192
KIND_REQUEST = 1
KIND_ISSUED = 2
KIND_REFUSED = 3


class CertMessageError(MeshmeetError):
    """A certificate-exchange message that is not one."""


@dataclass(frozen=True)
class CertRequest:
    requester: str  # node id of the hall that wants a certificate
    csr: bytes


@dataclass(frozen=True)
class CertIssued:
    requester: str
    cert: bytes
    ca: bytes


@dataclass(frozen=True)
class CertRefused:
    requester: str
    vi: str
    en: str


CertMessage = CertRequest | CertIssued | CertRefused


def encode_cert_message(msg: CertMessage) -> bytes:
    if isinstance(msg, CertRequest):
        return msgpack.packb([KIND_REQUEST, msg.requester, msg.csr])
    if isinstance(msg, CertIssued):
        return msgpack.packb([KIND_ISSUED, msg.requester, msg.cert, msg.ca])
    return msgpack.packb([KIND_REFUSED, msg.requester, msg.vi, msg.en])


def decode_cert_message(body: bytes) -> CertMessage:
    """Bytes from a link -> a message; CertMessageError for anything else."""
    bad = CertMessageError("Thông điệp chứng chỉ hỏng", "malformed certificate message")
    if len(body) > MAX_CERT_MESSAGE_BYTES:
        raise bad
    try:
        items = msgpack.unpackb(body, raw=False, strict_map_key=True, max_bin_len=MAX_CERT_MESSAGE_BYTES,
                                max_str_len=1024, max_array_len=8, max_map_len=0)
    except Exception:  # noqa: BLE001 - msgpack raises many kinds on hostile bytes
        raise bad from None
    if not isinstance(items, list) or len(items) < 3 or not isinstance(items[1], str) or len(items[1]) > 128:
        raise bad
    kind = items[0]
    if kind == KIND_REQUEST and len(items) == 3 and isinstance(items[2], bytes):
        return CertRequest(items[1], items[2])
    if kind == KIND_ISSUED and len(items) == 4 and isinstance(items[2], bytes) and isinstance(items[3], bytes):
        return CertIssued(items[1], items[2], items[3])
    if kind == KIND_REFUSED and len(items) == 4 and isinstance(items[2], str) and isinstance(items[3], str):
        return CertRefused(items[1], items[2], items[3])
    raise bad
