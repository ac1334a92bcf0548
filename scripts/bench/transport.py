#!/usr/bin/env python3
"""Transports for live audio side by side (issue 13): meshmeet datagrams, QUIC datagrams, the TCP link.

Two network namespaces joined by the packet emulator (meshmeet/testbed/packetlink.py) with profile C
and E; 20 ms audio frames (C: 16 kbit/s Opus-sized; E: 12 kbit/s in 60 ms frames, what meshmeet asks
for on E, since 20 ms frames with any per-packet header do not fit 32 kbit/s) as meshmeet media
chunks, each stamped with its send time (CLOCK_MONOTONIC, shared by the namespaces), over:
  dgram  meshmeet's datagram channel (meshmeet/media/datagram_channel.py: ChaCha20-Poly1305, 27 B),
         its offers exchanged over an already open TCP connection (the link), then probes until it is
         in datagram mode; on C each datagram also carries the previous chunk (redundancy 1, as on C)
  quic   aioquic's QuicConnection (sans-IO, driven here from plain sockets) with RFC 9221 DATAGRAM
         frames, TLS 1.3 with a self-signed certificate made by the bench and pinned by the client;
         on C each datagram also carries the previous chunk; QUIC's own congestion control (aioquic's
         default) paces what it sends
  tcp    one TCP connection with the link's framing (meshmeet/wire/frames.py: 2 B length, ChaCha20-
         Poly1305 tag, frame type and service byte), TCP_NODELAY and TCP_NOTSENT_LOWAT 16 KiB as
         meshmeet's links set; its setup is the TCP handshake (the link's own handshake, 199 B and
         one more round trip, comes on top: docs/protocol.md)
Per row: frames delivered, latency p50/p95/p99 above the profile's base one-way delay, % heard within
150 / 300 ms above the fastest frame, bytes on the wire (IP packets both ways, from the emulator's
counters) per frame sent, and setup: bytes on the wire and time until media can flow, in base RTTs.
Needs root (namespaces, TUN) and aioquic (`pip install -e .[bench]`).

    python scripts/bench/transport.py [--json] [--profiles C,E] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from meshmeet.media import chunk as C  # noqa: E402

PORT = 9799
ADDR_A, ADDR_B = "10.78.0.1", "10.78.0.2"   # sender, receiver
STAMP = 8
GUARD_S = 60.0
DRAIN_S = 3.0
PLAYOUTS_MS = (150, 300)
AUDIO = {"C": (16, 0.02, 1), "E": (12, 0.06, 0)}   # profile -> (kbit/s, frame s, redundancy copies)
UNSENT_LOWAT_BYTES = 16 * 1024
KEY_TX, KEY_RX = bytes(range(32)), bytes(range(32, 64))
SERVER_NAME = "meshmeet-bench"
CANDIDATES = ("dgram", "quic", "tcp")


def chunk(seq: int, frame_s: float, kbps: int) -> bytes:
    payload = time.monotonic_ns().to_bytes(STAMP, "big") + bytes(max(0, int(kbps * 125 * frame_s) - STAMP))
    return C.encode(C.Chunk(C.TRACK_AUDIO, 0, 0, True, 1, seq, int(seq * frame_s * 1e6), int(frame_s * 1e6), payload))


def stamp_of(data: bytes) -> tuple[int, int]:
    info = C.peek_chunk(data)
    return info.seq, int.from_bytes(data[C.CHUNK_HEADER_BYTES:C.CHUNK_HEADER_BYTES + STAMP], "big")


def with_copy(cur: bytes, prev: bytes | None) -> bytes:
    """QUIC payload: the chunk, then the previous one (2 B length each) as the redundancy copy."""
    out = struct.pack(">H", len(cur)) + cur
    return out + struct.pack(">H", len(prev)) + prev if prev is not None else out


def split_copies(data: bytes) -> list[bytes]:
    out, i = [], 0
    while i + 2 <= len(data):
        n = struct.unpack_from(">H", data, i)[0]
        out.append(data[i + 2:i + 2 + n])
        i += 2 + n
    return out


class Pacer:
    """Yields frame numbers as they fall due (a late start begins now, no burst of missed frames)."""

    def __init__(self, frame_s: float, seconds: float) -> None:
        self.frame_s, self.n, self.total = frame_s, 0, int(seconds / frame_s)
        self.t0 = time.monotonic()

    def due_in(self) -> float:
        return self.t0 + self.n * self.frame_s - time.monotonic()

    def done(self) -> bool:
        return self.n >= self.total


def wait_go(sock_fds: list, timeout: float) -> list:
    return select.select(sock_fds, [], [], max(0.0, timeout))[0]


def say(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def addrs(side: str, p: dict) -> tuple[str, str]:
    """(mine, the peer's): the sender is side a of the link."""
    a, b = p.get("addr_a", ADDR_A), p.get("addr_b", ADDR_B)
    return (a, b) if side == "send" else (b, a)


def await_line() -> str:
    return sys.stdin.readline().strip()


# ---------------------------------------------------------------------------------------------
# dgram: meshmeet's datagram channel

def dgram_role(side: str, p: dict) -> dict:
    from meshmeet.media import datagram as D
    from meshmeet.media.datagram_channel import DATAGRAM, Deliver, DatagramChannel

    kbps, frame_s, red = AUDIO[p["profile"]]
    me, peer = addrs(side, p)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((me, PORT))
    if side == "send":   # the link, already open before the setup phase (not counted)
        link = socket.create_connection((peer, PORT + 1), timeout=GUARD_S)
        say({"ready": True})
    else:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((me, PORT + 1))
        ls.listen(1)
        say({"ready": True})
        link, _ = ls.accept()
    link.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert await_line() == "go"
    t_setup = time.monotonic()
    tx_key, rx_key = (KEY_TX, KEY_RX) if side == "send" else (KEY_RX, KEY_TX)
    link.sendall(D.encode_offer(D.Offer(1 if side == "send" else 2, PORT, tx_key)))
    got = b""
    while len(got) < D.OFFER_BYTES:
        got += link.recv(D.OFFER_BYTES - len(got))
    D.parse_offer(got)
    ch = DatagramChannel(tx_key=tx_key, tx_channel=2 if side == "send" else 1, rx_key=rx_key, now=time.monotonic(),
                         redundancy=red)
    arrivals: dict[int, list[int]] = {}
    setup_s = None
    pacer = None
    end_at = None
    while True:
        now = time.monotonic()
        for ev in ch.tick(now):
            pass
        for d in ch.datagrams_to_send():
            udp.sendto(d, (peer, PORT))
        if setup_s is None and ch.mode == DATAGRAM:
            setup_s = now - t_setup
            if side == "send":
                say({"setup_s": setup_s})
                assert await_line() == "media"
                pacer = Pacer(frame_s, p["seconds"])
        if pacer is not None:
            if pacer.done():
                if end_at is None:
                    end_at = time.monotonic() + DRAIN_S
                elif time.monotonic() > end_at:
                    return {"setup_s": setup_s, "sent": pacer.n}
            elif pacer.due_in() <= 0:
                ch.send_media(chunk(pacer.n, frame_s, kbps), time.monotonic())
                pacer.n += 1
                continue
        timeout = min(ch.next_deadline() - time.monotonic(), pacer.due_in() if pacer and not pacer.done() else 0.05, 0.05)
        fds = wait_go([udp, sys.stdin] if side == "recv" else [udp], timeout)
        if sys.stdin in fds:
            return {"setup_s": setup_s, "audio": arrivals}
        if udp in fds:
            data = udp.recv(2048)
            try:
                events = ch.receive(data, time.monotonic())
            except D.DatagramError:
                continue
            for ev in events:
                if isinstance(ev, Deliver) and C.peek_kind(ev.message) == C.KIND_CHUNK:
                    seq, sent = stamp_of(ev.message)
                    arrivals.setdefault(seq, [sent, time.monotonic_ns()])


# ---------------------------------------------------------------------------------------------
# quic: aioquic, sans-IO

def self_signed() -> tuple[object, object, bytes]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key, cert.public_bytes(serialization.Encoding.PEM)


def quic_role(side: str, p: dict) -> dict:
    from aioquic.buffer import Buffer
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection
    from aioquic.quic.events import DatagramFrameReceived, HandshakeCompleted
    from aioquic.quic.packet import pull_quic_header

    kbps, frame_s, red = AUDIO[p["profile"]]
    me, peer = addrs(side, p)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((me, PORT))
    cfg = QuicConfiguration(is_client=side == "send", alpn_protocols=["meshmeet-media"], max_datagram_frame_size=65536,
                            server_name=SERVER_NAME)
    if side == "recv":
        cert_pem = bytes.fromhex(p["cert_pem"])
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        cfg.certificate = x509.load_pem_x509_certificate(cert_pem)
        cfg.private_key = serialization.load_pem_private_key(bytes.fromhex(p["key_pem"]), None)
    else:
        cfg.load_verify_locations(cadata=bytes.fromhex(p["cert_pem"]))   # pinned: the only trusted cert
    say({"ready": True})
    assert await_line() == "go"
    t_setup = time.monotonic()
    conn = None
    if side == "send":
        conn = QuicConnection(configuration=cfg)
        conn.connect((peer, PORT), now=t_setup)
    arrivals: dict[int, list[int]] = {}
    setup_s = None
    pacer = None
    prev = None
    end_at = None
    while True:
        now = time.monotonic()
        if conn is not None:
            for data, addr in conn.datagrams_to_send(now=now):
                udp.sendto(data, addr)
            while (ev := conn.next_event()) is not None:
                if isinstance(ev, HandshakeCompleted) and setup_s is None:
                    setup_s = time.monotonic() - t_setup
                    if side == "send":
                        say({"setup_s": setup_s})
                        assert await_line() == "media"
                        pacer = Pacer(frame_s, p["seconds"])
                elif isinstance(ev, DatagramFrameReceived):
                    for part in split_copies(ev.data):
                        seq, sent = stamp_of(part)
                        arrivals.setdefault(seq, [sent, time.monotonic_ns()])
        if pacer is not None:
            if pacer.done():
                if end_at is None:
                    end_at = time.monotonic() + DRAIN_S
                elif time.monotonic() > end_at:
                    return {"setup_s": setup_s, "sent": pacer.n}
            elif pacer.due_in() <= 0:
                cur = chunk(pacer.n, frame_s, kbps)
                conn.send_datagram_frame(with_copy(cur, prev if red else None))
                prev = cur
                pacer.n += 1
                continue
        timer = conn.get_timer() if conn is not None else None
        timeout = min(0.05, (timer - time.monotonic()) if timer is not None else 0.05,
                      pacer.due_in() if pacer and not pacer.done() else 0.05)
        fds = wait_go([udp, sys.stdin] if side == "recv" else [udp], timeout)
        if sys.stdin in fds:
            return {"setup_s": setup_s, "audio": arrivals}
        if udp in fds:
            data, addr = udp.recvfrom(65536)
            if conn is None:
                header = pull_quic_header(Buffer(data=data), host_cid_length=8)
                conn = QuicConnection(configuration=cfg, original_destination_connection_id=header.destination_cid)
            conn.receive_datagram(data, addr, now=time.monotonic())
        elif conn is not None and timer is not None and time.monotonic() >= timer:
            conn.handle_timer(now=time.monotonic())


# ---------------------------------------------------------------------------------------------
# tcp: the link's framing on one TCP connection

def tcp_role(side: str, p: dict) -> dict:
    from meshmeet.wire.frames import FrameOpener, FrameSealer

    kbps, frame_s, _ = AUDIO[p["profile"]]
    me, peer = addrs(side, p)
    if side == "recv":
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((me, PORT + 2))
        ls.listen(1)
    say({"ready": True})
    assert await_line() == "go"
    t_setup = time.monotonic()
    if side == "send":
        s = socket.create_connection((peer, PORT + 2), timeout=GUARD_S)
    else:
        s, _ = ls.accept()
    setup_s = time.monotonic() - t_setup
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_NOTSENT_LOWAT", 25), UNSENT_LOWAT_BYTES)
    if side == "send":
        say({"setup_s": setup_s})
        assert await_line() == "media"
        sealer, pacer = FrameSealer(KEY_TX), Pacer(frame_s, p["seconds"])
        while not pacer.done():
            d = pacer.due_in()
            if d > 0:
                time.sleep(d)
            s.sendall(sealer.seal(1, bytes([0x40]) + chunk(pacer.n, frame_s, kbps)))   # a data frame, media service
            pacer.n += 1
        time.sleep(DRAIN_S)
        return {"setup_s": setup_s, "sent": pacer.n}
    opener, buf, arrivals = FrameOpener(KEY_TX), bytearray(), {}
    while True:
        fds = wait_go([s, sys.stdin], 0.5)
        if sys.stdin in fds:
            return {"setup_s": setup_s, "audio": arrivals}
        if s in fds:
            data = s.recv(65536)
            if not data:
                s = socket.socket()   # closed: wait for stop
                fds = wait_go([sys.stdin], GUARD_S)
                return {"setup_s": setup_s, "audio": arrivals}
            buf += data
            while (fr := opener.open_next(buf)) is not None:
                seq, sent = stamp_of(fr[1][1:])
                arrivals.setdefault(seq, [sent, time.monotonic_ns()])


ROLES = {"dgram": dgram_role, "quic": quic_role, "tcp": tcp_role}


# ---------------------------------------------------------------------------------------------
# orchestration (root)

class Role:
    def __init__(self, ns: str, cand: str, side: str, params: dict) -> None:
        argv = ["ip", "netns", "exec", ns, sys.executable, str(Path(__file__).resolve()), "--role", f"{cand}:{side}",
                "--params", json.dumps(params)]
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env)

    def line(self) -> dict:
        ready = select.select([self.proc.stdout], [], [], GUARD_S)[0]
        text = self.proc.stdout.readline() if ready else ""
        if not text:
            err = self.proc.stderr.read() if self.proc.poll() is not None else "(no answer within the guard)"
            raise RuntimeError(f"role exited: {err[-600:]}")
        return json.loads(text)

    def tell(self, word: str) -> None:
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


def wire_bytes(stats: dict) -> tuple[int, int]:
    return (sum(d["bytes_delivered"] for d in stats["dirs"].values()), sum(d["delivered"] for d in stats["dirs"].values()))


def measure(link, prof: str, cand: str, seconds: float, quic_pems: dict) -> dict:
    from meshmeet.testbed.profiles import PRESETS
    from meshmeet.testbed.tunlink import control

    params = {"profile": prof, "seconds": seconds, **(quic_pems if cand == "quic" else {})}
    rx = Role(link.ns_b, cand, "recv", params)
    assert rx.line().get("ready")
    tx = Role(link.ns_a, cand, "send", params)
    assert tx.line().get("ready")
    time.sleep(0.5)
    b0 = wire_bytes(control(link.control, {"op": "stats"}))
    rx.tell("go")
    tx.tell("go")
    setup = tx.line()
    time.sleep(0.3)   # let the last handshake packets (the peer's own acks) cross before the count
    b1 = wire_bytes(control(link.control, {"op": "stats"}))
    tx.tell("media")
    sent = tx.line()
    b2 = wire_bytes(control(link.control, {"op": "stats"}))
    rx.tell("stop")
    got = rx.line()
    for r in (tx, rx):
        r.proc.wait(timeout=GUARD_S)
    p = PRESETS[prof]
    base_ms, rtt_ms = p.base_delay_s * 1000, 2 * p.base_delay_s * 1000
    n = sent["sent"]
    lat = [(a - s) / 1e6 - base_ms for k, (s, a) in got["audio"].items() if int(k) < n]
    fastest = min(lat) if lat else 0.0
    out = {"sent": n, "delivered_pct": round(100 * len(lat) / n, 2) if n else None,
           "p50_ms": pct(lat, 0.5), "p95_ms": pct(lat, 0.95), "p99_ms": pct(lat, 0.99),
           "wire_bytes_per_frame": round((b2[0] - b1[0]) / n, 1) if n else None,
           "setup_bytes": b1[0] - b0[0], "setup_packets": b1[1] - b0[1], "setup_ms": round(setup["setup_s"] * 1000, 1),
           "setup_rtts": round(setup["setup_s"] * 1000 / rtt_ms, 2)}
    for x in PLAYOUTS_MS:
        out[f"heard_{x}ms_pct"] = round(100 * sum(1 for v in lat if v <= fastest + x) / n, 2) if n else None
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--profiles", default="C,E")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--role")
    ap.add_argument("--params")
    args = ap.parse_args(argv)
    if args.role:
        cand, side = args.role.split(":")
        say(ROLES[cand](side, json.loads(args.params)))
        return 0
    from cryptography.hazmat.primitives import serialization

    from meshmeet.testbed import netns
    from meshmeet.testbed.plan import TunLinkPlan
    from meshmeet.testbed.tunlink import control, start_tun_link

    profiles = [x.strip().upper() for x in args.profiles.split(",") if x.strip()]
    if not profiles or any(x not in AUDIO for x in profiles) or not 5 <= args.seconds <= 600:
        print("transport: --profiles takes C and/or E, --seconds 5..600", file=sys.stderr)
        return 2
    why = netns.missing_requirements()
    if why:
        print(f"transport benchmark cannot run here: {why}", file=sys.stderr)
        return 2
    try:
        import aioquic  # noqa: F401
    except ImportError:
        print("transport benchmark needs aioquic: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    prefix = f"mm-tpb{os.getpid() % 0xFFFF:x}"
    ns_a, ns_b = prefix + "-a", prefix + "-b"
    cert, key, pem = self_signed()
    pems = {"cert_pem": pem.hex(), "key_pem": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                                   serialization.NoEncryption()).hex()}
    report: dict = {"seconds": args.seconds, "profiles": {}}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mm-bench-transport-") as tmp:
        link = TunLinkPlan(mid=prefix + "-_link", ns_a=ns_a, ns_b=ns_b, dev="mmt", addr_a=ADDR_A, addr_b=ADDR_B,
                           profile="A", control=Path(tmp) / "link.sock", seed="transport")
        try:
            for ns in (ns_a, ns_b):
                netns.run(["ip", "netns", "add", ns])
                netns.run(["ip", "-n", ns, "link", "set", "lo", "up"])
            start_tun_link(link, sys.executable, {**os.environ, "PYTHONPATH": str(REPO)}, Path(tmp) / "packetlink.log")
            for prof in profiles:
                rows = {}
                for cand in CANDIDATES:
                    control(link.control, {"op": "profile", "spec": prof})   # a fresh, empty queue per row
                    if not args.json:
                        print(f"profile {prof} {cand}: {args.seconds:g} s...", file=sys.stderr, flush=True)
                    try:
                        rows[cand] = measure(link, prof, cand, args.seconds, pems)
                    except (RuntimeError, AssertionError, ValueError, KeyError) as e:
                        rows[cand] = {"error": str(e)[:600]}
                kbps, frame_s, red = AUDIO[prof]
                rows["audio"] = {"kbps": kbps, "frame_ms": int(frame_s * 1000), "redundancy_on_datagrams": red}
                report["profiles"][prof] = rows
        finally:
            netns.cleanup(prefix)
    report["wall_s"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_table(report)
    return 0


def _f(v) -> str:
    return "—" if v is None else f"{v:g}"


def print_table(report: dict) -> None:
    print(f"Live audio transports through the packet emulator, {report['seconds']:g} s per row "
          "(latency above the base one-way delay)")
    print(f"{'prof':<4} {'transport':<9} {'deliv%':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'h@150%':>7} {'h@300%':>7} "
          f"{'B/frame':>8} {'setup B':>8} {'pkts':>5} {'setup ms':>9} {'RTTs':>5}")
    for prof, rows in report["profiles"].items():
        a = rows.get("audio", {})
        for cand in CANDIDATES:
            r = rows.get(cand, {})
            if "error" in r:
                print(f"{prof:<4} {cand:<9} error: {r['error']}")
                continue
            print(f"{prof:<4} {cand:<9} {_f(r['delivered_pct']):>7} {_f(r['p50_ms']):>7} {_f(r['p95_ms']):>7} "
                  f"{_f(r['p99_ms']):>7} {_f(r['heard_150ms_pct']):>7} {_f(r['heard_300ms_pct']):>7} "
                  f"{_f(r['wire_bytes_per_frame']):>8} {r['setup_bytes']:>8} {r['setup_packets']:>5} "
                  f"{_f(r['setup_ms']):>9} {_f(r['setup_rtts']):>5}")
        print(f"     audio: {a.get('kbps')} kbit/s in {a.get('frame_ms')} ms frames, "
              f"{a.get('redundancy_on_datagrams')} earlier frame(s) in each datagram (dgram, quic)")
    print(f"wall {report['wall_s']} s")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
