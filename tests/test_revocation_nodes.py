"""Revocation that takes effect, in real `meshmeet run` processes: HQ and two halls on IP links and
on emulated LoRa radios (ptys); HQ revokes hall 2 with `meshmeet revoke`. The attacker (hall 2, still
running with everything it had) tries to keep its links, re-link, re-join with its old invite,
speak on LoRa and present its HTTPS certificate; each attempt is refused. Waits poll until a thing
happens (hang guards only, no time limits)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from nodeproc import NodeProcess, meshmeet, stop_all, wait_for
from test_node_lora import Emulator, lora, meshmeet_api, set_lora

pytestmark = pytest.mark.slow


def https_port(node: NodeProcess) -> int:
    url = node.status()["webapp"]["https"]
    return int(url.rsplit(":", 1)[1])


def tls_handshake(port: int, ca: Path, cert_dir: Path | None) -> str:
    """A real TLS 1.2 client handshake to 127.0.0.1:port, presenting cert_dir's node certificate."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False  # the name is not what is tested here; the chain is still verified
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # the server's verdict on our certificate lands in the handshake
    if cert_dir is not None:
        ctx.load_cert_chain(cert_dir / "tls" / "node.crt", cert_dir / "tls" / "node.key")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls_sock:
            return tls_sock.version() or ""


def linked(node: NodeProcess, peer: str) -> bool:
    return node.link_states().get(peer) == "up"


def test_revoked_hall_is_shut_out_of_links_lora_and_https(tmp_path):
    nodes: list[NodeProcess] = []
    emulator = Emulator("--nodes", "3", log_path=tmp_path / "emulator.log")
    try:
        hq_dir, h1_dir, h2_dir = tmp_path / "hq", tmp_path / "hall1", tmp_path / "hall2"
        meshmeet("init", "--data-dir", str(hq_dir), "--commune", "Xã Thử", "--site", "UBND xã")
        codes = [meshmeet("invite", "--data-dir", str(hq_dir), "--site", f"Thôn {i}", "--address", "127.0.0.1:1")
                 .stdout.split()[0] for i in (1, 2)]
        for radio, d in zip((1, 2, 3), (hq_dir, h1_dir, h2_dir)):
            d.mkdir(exist_ok=True)
            (d / "webapp.toml").write_text('https = "127.0.0.1:0"\n')
        set_lora(hq_dir, emulator.paths[1])
        hq = NodeProcess(hq_dir, mdns=False)
        nodes.append(hq)
        for d, code in zip((h1_dir, h2_dir), codes):
            meshmeet("join", "--data-dir", str(d), code, "--via", f"127.0.0.1:{hq.mesh_port}", "--no-mdns")
        set_lora(h1_dir, emulator.paths[2])
        set_lora(h2_dir, emulator.paths[3])
        h1 = NodeProcess(h1_dir, "--peer", f"127.0.0.1:{hq.mesh_port}", mdns=False)
        nodes.append(h1)
        h2 = NodeProcess(h2_dir, "--peer", f"127.0.0.1:{hq.mesh_port}", "--peer", f"127.0.0.1:{h1.mesh_port}", mdns=False)
        nodes.append(h2)
        for a, b in ((hq, h1), (hq, h2), (h1, h2)):
            wait_for(lambda: linked(a, b.node_id) and linked(b, a.node_id), f"{a.data_dir.name} <-> {b.data_dir.name}")
        for n in nodes:
            wait_for(lambda: lora(n)["state"] == "up", f"{n.data_dir.name} LoRa up", proc=n)
            wait_for(lambda: n.status()["webapp"]["certificate"]["current"] and n.status()["webapp"]["https"],
                     f"{n.data_dir.name} HTTPS certificate", proc=n)
        old_key = (hq_dir / "lora.key").read_bytes()
        assert (h2_dir / "lora.key").read_bytes() == old_key
        ca = hq_dir / "ca.crt"
        # Before: hall 2's certificate is accepted by both web apps (so the refusal below is the revocation's).
        for n in (hq, h1):
            assert tls_handshake(https_port(n), ca, h2_dir) == "TLSv1.2"

        out = meshmeet("revoke", "--data-dir", str(hq_dir), "Thôn 2", "--yes", "--json").stdout
        assert '"short_id": 3' in out

        # Links to hall 2 close on HQ and on hall 1 (which hears of it by gossip), and stay closed:
        # hall 2 keeps dialling both and each handshake is refused.
        refused = {n.node_id: n.status()["refused_links"] for n in (hq, h1)}
        for n in (hq, h1):
            wait_for(lambda: not linked(n, h2.node_id), f"{n.data_dir.name} closes its link to hall 2", proc=n)
        for n in (hq, h1):
            wait_for(lambda: n.status()["refused_links"] > refused[n.node_id],
                     f"{n.data_dir.name} refuses hall 2's re-link", proc=n)
            assert not linked(n, h2.node_id)
        assert linked(hq, h1.node_id) and linked(h1, hq.node_id)

        # Re-joining with the old invite, from a fresh data dir, is refused.
        again = meshmeet("join", "--data-dir", str(tmp_path / "hall2-again"), codes[1], "--via",
                         f"127.0.0.1:{hq.mesh_port}", "--no-mdns", check=False)
        assert again.returncode != 0 and "Traceback" not in again.stderr
        assert "revoked" in again.stderr or "used" in again.stderr

        # A new LoRa key reaches hall 1 and not hall 2.
        wait_for(lambda: (hq_dir / "lora.key").read_bytes() != old_key, "HQ makes a new LoRa key", proc=hq)
        new_key = (hq_dir / "lora.key").read_bytes()
        wait_for(lambda: (h1_dir / "lora.key").read_bytes() == new_key, "hall 1 gets the new LoRa key", proc=h1)
        assert (h2_dir / "lora.key").read_bytes() == old_key

        # The radios form a chain HQ(1) - hall 1(2) - hall 2(3). Hall 2's frames (old key) fail
        # authentication at hall 1, so its attendance is neither taken nor relayed to HQ, while hall 1's
        # (sent after it) arrives; and the old key no longer reads hall 1's new frames at hall 2.
        forged = {n.node_id: lora(n)["stats"]["forged"] for n in (h1, h2)}
        meshmeet_api(h2, "lora_send", {"kind": "attendance", "meeting": 7, "present": 13, "expected": 20, "dest": 1})
        for n in (h1, h2):
            wait_for(lambda: lora(n)["stats"]["forged"] > forged[n.node_id],
                     f"{n.data_dir.name} cannot authenticate the other's frames", proc=n)
        meshmeet_api(h1, "lora_send", {"kind": "attendance", "meeting": 7, "present": 41, "expected": 45, "dest": 1})
        wait_for(lambda: any(m["kind"] == "attendance" and m["present"] == 41 for m in lora(hq)["received"]),
                 "hall 1's attendance at HQ under the new key", proc=hq)
        assert not any(m["kind"] == "attendance" and m["present"] == 13 for m in lora(hq)["received"])

        # Hall 2's HTTPS certificate is refused by every web app in the TLS handshake; hall 1's and
        # a browser's (no certificate) still pass.
        for n in (hq, h1):
            wait_for(lambda: n.status()["webapp"]["revocation"]["revoked_certificates"] >= 1,
                     f"{n.data_dir.name} holds the new revocation list", proc=n)
            with pytest.raises(ssl.SSLError):  # asyncio closes without flushing the alert: an EOF here
                tls_handshake(https_port(n), ca, h2_dir)
            assert tls_handshake(https_port(n), ca, None) == "TLSv1.2"
        assert tls_handshake(https_port(hq), ca, h1_dir) == "TLSv1.2"
    finally:
        stop_all(nodes)
        emulator.stop()
