"""The commune CRL (web/crl.py): HQ lists the certificates of revoked seats; nodes keep only a CRL
the commune CA signed with a higher number; a real TLS handshake to server_context refuses a revoked
client certificate and still accepts a current one and a browser without one."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.web import crl, tls

NAMES = tls.NodeNames(dns=("hq-pc.local", "localhost"), ips=("127.0.0.1",))


def _hall(hq: Path, base: Path, name: str, short_id: int) -> Path:
    d = base / name
    d.mkdir()
    der = tls.sign_request(hq, tls.make_request(d, tls.NodeNames((f"{name}.local",), ("127.0.0.1",)), name), name)
    cert = tls.accept_issued(d, der, tls.ca_der(hq) or b"")
    crl.record_issued(hq, cert, short_id)
    return d


@pytest.fixture
def commune(tmp_path: Path) -> tuple[Path, Path, Path]:
    hq = tmp_path / "hq"
    hq.mkdir()
    tls.create_ca(hq, "Xã Thử")
    crl.record_issued(hq, tls.issue_own_cert(hq, NAMES, "UBND xã"), 1)
    return hq, _hall(hq, tmp_path, "thon1", 2), _hall(hq, tmp_path, "thon2", 3)


def test_crl_lists_exactly_the_revoked_seats_certificates(commune) -> None:
    hq, h1, h2 = commune
    der = crl.make_crl(hq, {3})
    assert crl.store_if_newer(hq, der)
    h2_serial = tls.load_node_cert(h2).serial_number  # type: ignore[union-attr]
    assert crl.revoked_serials(hq) == {h2_serial}
    assert crl.store_if_newer(h1, der) and crl.crl_der(h1) == der
    assert not crl.store_if_newer(h1, der)  # same number: kept, not replaced
    newer = crl.make_crl(hq, {2, 3})
    assert crl.crl_number(crl.check_crl(h1, newer)) > crl.crl_number(crl.load_crl(h1))
    assert crl.store_if_newer(h1, newer) and len(crl.revoked_serials(h1)) == 2
    assert not crl.store_if_newer(h1, der)  # an older CRL never replaces a newer one


def test_crl_from_another_ca_or_junk_refused(commune, tmp_path: Path) -> None:
    hq, h1, _ = commune
    other = tmp_path / "other"
    other.mkdir()
    tls.create_ca(other, "Xã Khác")
    with pytest.raises(tls.TlsError):
        crl.store_if_newer(h1, crl.make_crl(other, {3}))
    assert crl.load_crl(h1) is None
    with pytest.raises(tls.TlsError):
        crl.make_crl(h1, {3})  # a hall holds no CA key


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600))
def test_hostile_crl_bytes_give_tls_error(tmp_path_factory, data: bytes) -> None:
    d = tmp_path_factory.mktemp("junk")
    tls.create_ca(d, "x") if not (d / "ca.crt").exists() else None
    with pytest.raises(tls.TlsError):
        crl.check_crl(d, data)


def _serve_once(ctx: ssl.SSLContext) -> tuple[int, list]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    errors: list = []

    def serve() -> None:
        conn, _ = srv.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as s:
                s.sendall(b"ok")
        except (ssl.SSLError, OSError) as e:
            errors.append(e)
        finally:
            srv.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1], errors


def _client(port: int, ca: Path, cert_dir: Path | None) -> bytes:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert_dir is not None:
        ctx.load_cert_chain(cert_dir / "tls" / "node.crt", cert_dir / "tls" / "node.key")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.recv(2)


@pytest.mark.parametrize("client", ["revoked", "current", "none"])
def test_handshake_refuses_only_the_revoked_client_certificate(commune, client: str) -> None:
    hq, h1, h2 = commune
    crl.store_if_newer(hq, crl.make_crl(hq, {3}))
    ctx = tls.server_context(hq)
    port, errors = _serve_once(ctx)
    who = {"revoked": h2, "current": h1, "none": None}[client]
    if client == "revoked":
        with pytest.raises(ssl.SSLError, match="(?i)revoked"):
            _client(port, hq / "ca.crt", who)
    else:
        assert _client(port, hq / "ca.crt", who) == b"ok"


def test_refresh_context_picks_up_a_newer_crl(commune) -> None:
    hq, h1, h2 = commune
    ctx = tls.server_context(hq)  # before any revocation: hall 2's certificate passes
    port, _ = _serve_once(ctx)
    assert _client(port, hq / "ca.crt", h2) == b"ok"
    crl.store_if_newer(hq, crl.make_crl(hq, {2}))
    tls.refresh_context(ctx, hq)
    port, _ = _serve_once(ctx)
    assert _client(port, hq / "ca.crt", h2) == b"ok"  # hall 1 revoked, not hall 2
    crl.store_if_newer(hq, crl.make_crl(hq, {2, 3}))
    tls.refresh_context(ctx, hq)  # the same context, a newer CRL in its store
    port, _ = _serve_once(ctx)
    with pytest.raises(ssl.SSLError, match="(?i)revoked"):
        _client(port, hq / "ca.crt", h2)
