"""The commune's local certificate authority and each node's HTTPS certificate (x509, `cryptography`).

HQ creates the commune CA once (DIR/ca.key 0600 + DIR/ca.crt): an ECDSA P-256 root limited by
X.509 name constraints to mDNS names (``.local``), ``localhost`` and private/CGNAT addresses, so a
leaked CA key cannot impersonate any site on the internet. Each node holds its own TLS key
(DIR/tls/node.key, 0600) and a leaf certificate for its mDNS name and LAN addresses, signed by the
CA: HQ signs its own directly; a hall sends a certificate request (CSR) to HQ over the mesh and
HQ signs it (``sign_request``), restricted to names the constraints allow.

This module does pure certificate work and file writes in a data dir. It must never open sockets,
never import aiohttp or trio, and never let the CA key leave DIR/ca.key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import MeshmeetError
from ..private_file import write_private

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.crt"
TLS_DIR = "tls"
NODE_KEY_FILE = "node.key"
NODE_CERT_FILE = "node.crt"
CRL_FILE = "crl.pem"  # written by web/crl.py
CA_VALID_DAYS = 20 * 365
LEAF_VALID_DAYS = 825
RENEW_BEFORE_DAYS = 60
MAX_CSR_BYTES = 4096
MAX_SAN_ENTRIES = 16
PRIVATE_NETS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16",
              "fd00::/8", "fe80::/10", "::1/128")
)
PERMITTED_DNS = ("local", "localhost")


class TlsError(MeshmeetError):
    """A certificate could not be made, read or accepted."""


@dataclass(frozen=True)
class NodeNames:
    """What a node's certificate names: DNS names and IP addresses."""

    dns: tuple[str, ...]
    ips: tuple[str, ...]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, data)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.stat().st_mode & 0o077:
        raise TlsError(f"Tệp khoá {path} cho phép người khác đọc; hãy chạy chmod 600 {path}",
                       f"key file {path} is readable by others; run chmod 600 {path}")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"Tệp khoá {path} không phải khoá EC", f"key file {path} is not an EC key")
    return key


def _constraints() -> x509.NameConstraints:
    permitted: list[x509.GeneralName] = [x509.DNSName(d) for d in PERMITTED_DNS]
    permitted += [x509.IPAddress(n) for n in PRIVATE_NETS]
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None)


def create_ca(data_dir: Path, commune: str) -> x509.Certificate:
    """Make DIR/ca.key (0600) and DIR/ca.crt for `commune`; refuses to overwrite an existing CA."""
    key_path, cert_path = data_dir / CA_KEY_FILE, data_dir / CA_CERT_FILE
    if key_path.exists() or cert_path.exists():
        raise TlsError(f"Đã có CA của xã trong {data_dir}", f"a commune CA already exists in {data_dir}")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, (commune or "meshmeet")[:64]),
        x509.NameAttribute(NameOID.COMMON_NAME, f"meshmeet CA {commune}"[:64]),
    ])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(_constraints(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert


def has_ca_key(data_dir: Path) -> bool:
    return (data_dir / CA_KEY_FILE).exists()


def load_ca_cert(data_dir: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate((data_dir / CA_CERT_FILE).read_bytes())
    except (OSError, ValueError):
        return None


def allowed_name(name: str) -> bool:
    """True for a DNS name or IP address the CA's name constraints permit."""
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        labels = name.lower().rstrip(".").split(".")
        ok = all(0 < len(lb) <= 63 and lb.replace("-", "").isalnum() and lb.isascii() for lb in labels)
        return ok and len(name) <= 253 and (labels == ["localhost"] or (len(labels) >= 2 and labels[-1] == "local"))
    return any(ip.version == n.version and ip in n for n in PRIVATE_NETS)


def node_names(hostname: str, addresses: list[str]) -> NodeNames:
    """The names a node's certificate should carry: `host.local`, localhost and its allowed addresses."""
    label = "".join(c if c.isalnum() or c == "-" else "-" for c in hostname.split(".")[0].lower()).strip("-") or "meshmeet"
    dns = tuple(dict.fromkeys([f"{label}.local", "localhost"]))
    ips = tuple(dict.fromkeys(a for a in ["127.0.0.1", *addresses] if allowed_name(a)))[:MAX_SAN_ENTRIES - len(dns)]
    return NodeNames(dns=dns, ips=ips)


def lan_addresses() -> list[str]:
    """This machine's IPv4 addresses as far as the socket API tells (no netlink, no subprocess)."""
    found: list[str] = []
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.append(str(info[4][0]))
    except OSError:
        pass
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the default-route address
            found.append(s.getsockname()[0])
    except OSError:
        pass
    return list(dict.fromkeys(a for a in found if not a.startswith("127.")))


def _san(names: NodeNames) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = [x509.DNSName(d) for d in names.dns]
    entries += [x509.IPAddress(ipaddress.ip_address(a)) for a in names.ips]
    return x509.SubjectAlternativeName(entries)


def _sign_leaf(data_dir: Path, public_key, names: NodeNames, subject: str) -> x509.Certificate:
    ca_cert = load_ca_cert(data_dir)
    if ca_cert is None or not has_ca_key(data_dir):
        raise TlsError("Nút này không giữ khoá CA của xã", "this node does not hold the commune CA key")
    ca_key = _load_key(data_dir / CA_KEY_FILE)
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject[:64] or "meshmeet")]))
        .issuer_name(ca_cert.subject).public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=LEAF_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)  # client too: a node may present it to another node's web app
        .add_extension(_san(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def node_key(data_dir: Path) -> ec.EllipticCurvePrivateKey:
    """This node's TLS key (DIR/tls/node.key), made on first use."""
    path = data_dir / TLS_DIR / NODE_KEY_FILE
    if path.exists():
        return _load_key(path)
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(path, _key_pem(key))
    return key


def load_node_cert(data_dir: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate((data_dir / TLS_DIR / NODE_CERT_FILE).read_bytes())
    except (OSError, ValueError):
        return None


def cert_names(cert: x509.Certificate) -> NodeNames:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return NodeNames((), ())
    return NodeNames(tuple(san.get_values_for_type(x509.DNSName)),
                     tuple(str(a) for a in san.get_values_for_type(x509.IPAddress)))


def cert_is_current(data_dir: Path, names: NodeNames) -> bool:
    """A node certificate exists, chains to our CA, covers `names` and is not close to expiry."""
    cert, ca = load_node_cert(data_dir), load_ca_cert(data_dir)
    if cert is None or ca is None or cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - InvalidSignature and friends
        return False
    have = cert_names(cert)
    fresh = cert.not_valid_after_utc - _now() > dt.timedelta(days=RENEW_BEFORE_DAYS)
    return fresh and set(names.dns) <= set(have.dns) and set(names.ips) <= set(have.ips)


def issue_own_cert(data_dir: Path, names: NodeNames, subject: str) -> x509.Certificate:
    """HQ: sign this node's own certificate with the commune CA and store it."""
    cert = _sign_leaf(data_dir, node_key(data_dir).public_key(), names, subject)
    _write_public(data_dir / TLS_DIR / NODE_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM))
    return cert


def make_request(data_dir: Path, names: NodeNames, subject: str) -> bytes:
    """A hall: a DER certificate request for this node's key and names."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject[:64] or "meshmeet")]))
        .add_extension(_san(names), critical=False)
        .sign(node_key(data_dir), hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


def sign_request(data_dir: Path, csr_der: bytes, subject: str) -> bytes:
    """HQ: check a hall's DER request and return a DER certificate for the names the CA allows.

    The subject is set by HQ (the roster's site name), never taken from the request. Names outside
    the constraints are dropped; a request with none left, or malformed, raises TlsError.
    """
    if len(csr_der) > MAX_CSR_BYTES:
        raise TlsError("Yêu cầu chứng chỉ quá lớn", "certificate request too large")
    try:
        csr = x509.load_der_x509_csr(csr_der)
        valid = csr.is_signature_valid
        names = cert_names_from_csr(csr)
        public_key = csr.public_key()
    except (ValueError, TypeError) as e:
        raise TlsError(f"Yêu cầu chứng chỉ hỏng: {e}", f"malformed certificate request: {e}") from None
    if not valid:
        raise TlsError("Chữ ký của yêu cầu chứng chỉ sai", "certificate request signature is invalid")
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise TlsError("Yêu cầu chứng chỉ phải dùng khoá EC", "certificate request must use an EC key")
    keep = NodeNames(tuple(d for d in names.dns if allowed_name(d))[:4],
                     tuple(a for a in names.ips if allowed_name(a))[:MAX_SAN_ENTRIES - 4])
    if not keep.dns and not keep.ips:
        raise TlsError("Yêu cầu chứng chỉ không có tên hợp lệ", "certificate request names nothing allowed")
    return _sign_leaf(data_dir, public_key, keep, subject).public_bytes(serialization.Encoding.DER)


def cert_names_from_csr(csr: x509.CertificateSigningRequest) -> NodeNames:
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return NodeNames((), ())
    return NodeNames(tuple(san.get_values_for_type(x509.DNSName)),
                     tuple(str(a) for a in san.get_values_for_type(x509.IPAddress)))


def accept_issued(data_dir: Path, cert_der: bytes, ca_der: bytes) -> x509.Certificate:
    """A hall: store a certificate HQ issued, after checking it is for our key and signed by `ca_der`."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        ca = x509.load_der_x509_certificate(ca_der)
        cert.verify_directly_issued_by(ca)
    except Exception as e:  # noqa: BLE001 - ValueError, InvalidSignature, TypeError
        raise TlsError(f"Chứng chỉ nhận được không hợp lệ: {e}", f"received certificate is invalid: {e}") from None
    ours = node_key(data_dir).public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    theirs = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if ours != theirs:
        raise TlsError("Chứng chỉ nhận được không khớp khoá của nút", "received certificate is not for this node's key")
    known = load_ca_cert(data_dir)
    if known is not None and known != ca:
        raise TlsError("CA gửi đến khác CA của xã đã biết", "received CA differs from the known commune CA")
    _write_public(data_dir / CA_CERT_FILE, ca.public_bytes(serialization.Encoding.PEM))
    _write_public(data_dir / TLS_DIR / NODE_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM))
    return cert


def ca_der(data_dir: Path) -> bytes | None:
    ca = load_ca_cert(data_dir)
    return None if ca is None else ca.public_bytes(serialization.Encoding.DER)


def ca_fingerprint(data_dir: Path) -> str | None:
    """SHA-256 of the CA certificate, as colon-separated hex (to compare on the tablet)."""
    ca = load_ca_cert(data_dir)
    return None if ca is None else ca.fingerprint(hashes.SHA256()).hex(":").upper()


def server_context(data_dir: Path) -> ssl.SSLContext:
    """A TLS server context from this node's key and certificate (chain includes the CA).

    A client may present a certificate (browsers need not): one that does not chain to the
    commune CA, or that the commune CRL (DIR/tls/crl.pem, web/crl.py) revokes, fails the handshake.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    refresh_context(ctx, data_dir)
    return ctx


def refresh_context(ctx: ssl.SSLContext, data_dir: Path) -> None:
    """(Re)load the node certificate, the commune CA and the CRL into `ctx`: new connections use them.

    CRLs only grow and each new one has a later lastUpdate, which OpenSSL prefers among the CRLs of
    one issuer in its store, so adding the new CRL to the same store is enough.
    """
    ctx.load_cert_chain(data_dir / TLS_DIR / NODE_CERT_FILE, data_dir / TLS_DIR / NODE_KEY_FILE)
    if (data_dir / CA_CERT_FILE).exists():
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cafile=str(data_dir / CA_CERT_FILE))
        crl_path = data_dir / TLS_DIR / CRL_FILE
        if crl_path.exists():
            ctx.load_verify_locations(cafile=str(crl_path))
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
