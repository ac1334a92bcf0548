"""The commune CA's certificate revocation list (CRL): which node certificates no web app accepts.

HQ records the serial of every certificate it signs against the seat it signed it for
(DIR/tls/issued.json). When a seat is revoked, HQ signs a CRL with the commune CA key listing the
serials of every certificate it issued to a revoked seat; the CRL travels to every node
(node/cert_revocation.py) and each node's HTTPS listener checks client certificates against it
in the TLS handshake (tls.server_context). A CRL, not short-lived certificates: it takes effect
as soon as it arrives (seconds, like the roster entry), needs no renewal round trip to HQ for
halls that may be cut off for weeks, and OpenSSL checks it in the handshake itself.

This module does pure certificate work and file writes in a data dir. It must never open
sockets, never import aiohttp or trio, never accept a CRL not signed by the commune CA, and never
replace a CRL by one with a lower or equal CRL number.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from . import tls

ISSUED_FILE = "issued.json"
CRL_FILE = tls.CRL_FILE
CRL_VALID_DAYS = tls.CA_VALID_DAYS  # no periodic re-signing: halls may not hear from HQ for weeks
MAX_CRL_BYTES = 64 * 1024


def _issued_path(data_dir: Path) -> Path:
    return Path(data_dir) / tls.TLS_DIR / ISSUED_FILE


def issued(data_dir: Path) -> dict[int, int]:
    """HQ: serial -> seat short id of every certificate signed here (empty if none recorded)."""
    try:
        raw = json.loads(_issued_path(data_dir).read_text())
        return {int(k): int(v) for k, v in raw.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def record_issued(data_dir: Path, cert: x509.Certificate, short_id: int) -> None:
    """HQ: remember that `cert` was signed for seat `short_id`."""
    table = issued(data_dir)
    table[cert.serial_number] = short_id
    tls._write_private(_issued_path(data_dir), json.dumps({str(k): v for k, v in sorted(table.items())}).encode())


def load_crl(data_dir: Path) -> x509.CertificateRevocationList | None:
    try:
        return x509.load_pem_x509_crl((Path(data_dir) / tls.TLS_DIR / CRL_FILE).read_bytes())
    except (OSError, ValueError):
        return None


def crl_number(crl: x509.CertificateRevocationList | None) -> int:
    if crl is None:
        return -1
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return -1


def make_crl(data_dir: Path, revoked_short_ids: set[int] | tuple[int, ...], now: dt.datetime | None = None) -> bytes:
    """HQ: a DER CRL listing every certificate issued to these seats, numbered above the current one."""
    ca_cert = tls.load_ca_cert(data_dir)
    if ca_cert is None or not tls.has_ca_key(data_dir):
        raise tls.TlsError("Nút này không giữ khoá CA của xã", "this node does not hold the commune CA key")
    ca_key = tls._load_key(Path(data_dir) / tls.CA_KEY_FILE)
    now = now or tls._now()
    current = load_crl(data_dir)
    number = max(crl_number(current) + 1, int(now.timestamp()))
    last = now - dt.timedelta(minutes=5)
    if current is not None:  # strictly later than the CRL it replaces (OpenSSL keeps the newest)
        last = max(last, current.last_update_utc + dt.timedelta(seconds=1))
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(last)
        .next_update(now + dt.timedelta(days=CRL_VALID_DAYS))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    revoked = set(revoked_short_ids)
    for serial, sid in sorted(issued(data_dir).items()):
        if sid in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def check_crl(data_dir: Path, der: bytes) -> x509.CertificateRevocationList:
    """A CRL that parses and is signed by this commune's CA; TlsError otherwise."""
    ca = tls.load_ca_cert(data_dir)
    if ca is None:
        raise tls.TlsError("Chưa có CA của xã để kiểm tra danh sách thu hồi", "no commune CA to check the CRL against")
    if len(der) > MAX_CRL_BYTES:
        raise tls.TlsError("Danh sách thu hồi chứng chỉ quá lớn", "certificate revocation list too large")
    try:
        crl = x509.load_der_x509_crl(der)
        ok = crl.issuer == ca.subject and crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (ValueError, TypeError) as e:
        raise tls.TlsError(f"Danh sách thu hồi chứng chỉ hỏng: {e}", f"malformed certificate revocation list: {e}") from None
    if not ok:
        raise tls.TlsError("Danh sách thu hồi không do CA của xã ký", "revocation list is not signed by the commune CA")
    if crl_number(crl) < 0:
        raise tls.TlsError("Danh sách thu hồi thiếu số thứ tự", "revocation list has no CRL number")
    return crl


def store_if_newer(data_dir: Path, der: bytes) -> bool:
    """Check `der` and keep it when its number beats the stored CRL's; True when stored."""
    crl = check_crl(data_dir, der)
    if crl_number(crl) <= crl_number(load_crl(data_dir)):
        return False
    tls._write_public(Path(data_dir) / tls.TLS_DIR / CRL_FILE, crl.public_bytes(serialization.Encoding.PEM))
    return True


def crl_der(data_dir: Path) -> bytes | None:
    crl = load_crl(data_dir)
    return None if crl is None else crl.public_bytes(serialization.Encoding.DER)


def revoked_serials(data_dir: Path) -> set[int]:
    crl = load_crl(data_dir)
    return set() if crl is None else {r.serial_number for r in crl}
