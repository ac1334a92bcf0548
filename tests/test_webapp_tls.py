"""The commune CA and node certificates: files and modes, name constraints, a hall's request signed
by HQ, refusals, and a real TLS handshake on loopback that trusts only the commune CA."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.web import tls

NAMES = tls.NodeNames(dns=("hq-pc.local", "localhost"), ips=("127.0.0.1", "192.168.1.10"))


@pytest.fixture
def hq(tmp_path: Path) -> Path:
    d = tmp_path / "hq"
    d.mkdir()
    tls.create_ca(d, "Xã Thử")
    return d


def test_ca_files_private_key_and_constraints(hq: Path) -> None:
    assert (hq / "ca.key").stat().st_mode & 0o777 == 0o600
    ca = tls.load_ca_cert(hq)
    assert ca is not None
    nc = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    assert {g.value for g in nc.value.permitted_subtrees if isinstance(g, x509.DNSName)} == {"local", "localhost"}
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    with pytest.raises(tls.TlsError):
        tls.create_ca(hq, "again")  # never overwritten


def test_own_cert_current_until_names_change(hq: Path) -> None:
    assert not tls.cert_is_current(hq, NAMES)
    tls.issue_own_cert(hq, NAMES, "UBND xã")
    assert tls.cert_is_current(hq, NAMES)
    assert (hq / "tls" / "node.key").stat().st_mode & 0o777 == 0o600
    moved = tls.NodeNames(NAMES.dns, ("127.0.0.1", "192.168.1.77"))  # DHCP gave a new address
    assert not tls.cert_is_current(hq, moved)


def test_hall_request_signed_and_accepted(hq: Path, tmp_path: Path) -> None:
    hall = tmp_path / "hall"
    hall.mkdir()
    names = tls.NodeNames(("thon1.local", "evil.example.com"), ("10.0.0.5", "8.8.8.8"))
    der = tls.sign_request(hq, tls.make_request(hall, names, "claimed subject"), "Thôn 1")
    cert = tls.accept_issued(hall, der, tls.ca_der(hq) or b"")
    got = tls.cert_names(cert)
    assert got.dns == ("thon1.local",) and got.ips == ("10.0.0.5",)  # outside the constraints: dropped
    assert cert.subject.rfc4514_string() == "CN=Thôn 1"  # HQ names the site, not the request
    assert (hall / "ca.crt").read_bytes() == (hq / "ca.crt").read_bytes()
    assert not (hall / "ca.key").exists()


def test_hall_refuses_cert_for_another_key_or_ca(hq: Path, tmp_path: Path) -> None:
    a, b, other = tmp_path / "a", tmp_path / "b", tmp_path / "other"
    for d in (a, b, other):
        d.mkdir()
    der_for_b = tls.sign_request(hq, tls.make_request(b, NAMES, "b"), "B")
    with pytest.raises(tls.TlsError):
        tls.accept_issued(a, der_for_b, tls.ca_der(hq) or b"")
    tls.create_ca(other, "Xã Khác")
    tls.accept_issued(a, tls.sign_request(hq, tls.make_request(a, NAMES, "a"), "A"), tls.ca_der(hq) or b"")
    with pytest.raises(tls.TlsError):  # a certificate from another commune's CA
        tls.accept_issued(a, tls.sign_request(other, tls.make_request(a, NAMES, "a"), "A"), tls.ca_der(other) or b"")
    with pytest.raises(tls.TlsError):
        tls.accept_issued(a, b"junk", b"junk")


def test_request_naming_nothing_allowed_refused(hq: Path, tmp_path: Path) -> None:
    with pytest.raises(tls.TlsError) as e:
        tls.sign_request(hq, tls.make_request(tmp_path, tls.NodeNames(("bank.example.com",), ("1.1.1.1",)), "x"), "x")
    assert "allowed" in e.value.en


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600))
def test_hostile_requests_give_tls_error(data: bytes) -> None:
    d = Path(__file__).parent  # never reached: junk fails before the CA is loaded
    with pytest.raises(tls.TlsError):
        tls.sign_request(d, data, "x")


def test_hall_without_ca_key_cannot_sign(tmp_path: Path) -> None:
    with pytest.raises(tls.TlsError):
        tls.issue_own_cert(tmp_path, NAMES, "x")


@pytest.mark.parametrize("name,ok", [("hall.local", True), ("localhost", True), ("192.168.0.1", True), ("100.64.1.1", True),
                                     ("a.example.com", False), ("8.8.8.8", False), ("local", False), ("bad_name.local", False)])
def test_allowed_names(name: str, ok: bool) -> None:
    assert tls.allowed_name(name) is ok


def test_tls_handshake_trusts_commune_ca_only(hq: Path) -> None:
    tls.issue_own_cert(hq, NAMES, "UBND xã")
    server_ctx = tls.server_context(hq)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as s:
                    s.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    good = ssl.create_default_context(cafile=str(hq / "ca.crt"))
    with socket.create_connection(("127.0.0.1", port)) as raw, good.wrap_socket(raw, server_hostname="localhost") as s:
        assert s.recv(2) == b"ok"
    stranger = ssl.create_default_context()  # the system store does not know the commune CA
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection(("127.0.0.1", port)) as raw, stranger.wrap_socket(raw, server_hostname="localhost"):
            pass
    t.join(10)
    listener.close()
