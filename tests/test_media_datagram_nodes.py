"""Media datagrams between real `meshmeet run` processes on loopback (HQ presenter -> hall subscriber).

Checks: audio (and video) arrive over datagrams and status says "datagram" with loss, jitter, RTT
and delay figures; with the hall's UDP port blocked by an iptables rule (root only) the link falls
back to TCP within seconds, says "tcp", media still flows, and datagrams return when the rule goes;
a stranger's random bytes, forgeries and replays of captured datagrams change nothing and are counted.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from meshmeet.media import chunk as C
from meshmeet.recording.recorder import read_records
from browser.node_chain import media
from nodeproc import NodeProcess, start_commune, stop_all, wait_for
from test_media_node import present_and_listen

pytestmark = pytest.mark.slow


@contextmanager
def pair(base: Path) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    nodes: list[NodeProcess] = []
    try:
        hq, (hall,) = start_commune(base, 1, nodes)
        wait_for(lambda: hall.status()["tree"]["parent"] == hq.node_id and media(hall)["source_link"] == hq.node_id,
                 "the hall under HQ, hearing HQ's source beacons")
        yield hq, hall
    finally:
        stop_all(nodes)


def link(node: NodeProcess, peer: NodeProcess) -> dict:
    return next(lk for lk in media(node)["links"] if lk["peer"] == peer.node_id)


def recorded_chunks(node: NodeProcess) -> list[bytes]:
    """Every chunk the node's hub recorded (each chunk accepted from the mesh is published and recorded)."""
    out = []
    for f in sorted((node.data_dir / "recordings").glob("*.mmrec")):
        out += [r.data for r in read_records(f.read_bytes()) if r.data[0] == C.KIND_CHUNK]
    return out


def audio_seqs(got: list[C.Chunk]) -> list[int]:
    return [c.seq for c in got if c.track == C.TRACK_AUDIO]


def test_audio_goes_as_datagrams_and_status_says_so(tmp_path: Path) -> None:
    with pair(tmp_path) as (hq, hall):
        wait_for(lambda: link(hq, hall)["transport"] == "datagram" and link(hall, hq)["transport"] == "datagram",
                 "both directions in datagram mode")
        before = media(hall)["datagrams"]["channels"][hq.node_id]["received"]
        got = asyncio.run(present_and_listen(hq, hall, b"DG"))
        assert audio_seqs(got) == list(range(100))
        assert any(c.track == C.TRACK_VIDEO for c in got)
        # the media really came as datagrams: well over 100 arrived on the hall's channel from HQ
        assert media(hall)["datagrams"]["channels"][hq.node_id]["received"] - before >= 100
        assert media(hall)["counters"]["chunks_in"] >= 100
        lk = wait_for(lambda: (lambda x: x if x["loss"] is not None and x["rtt_ms"] is not None else None)(link(hq, hall)),
                      "a receiver report at HQ")
        assert lk["transport"] == "datagram"
        assert 0.0 <= lk["loss"] <= 1.0 and lk["jitter_ms"] >= 0 and lk["rtt_ms"] >= 0
        assert lk["delay_trend_ms"] is not None
        d = media(hall)["datagrams"]["counters"]
        assert d["auth"] == d["replay"] == d["unknown_channel"] == d["malformed"] == 0, d


def _iptables(*args: str) -> None:
    subprocess.run(["iptables", *args], check=True, capture_output=True, timeout=30)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("iptables") is None, reason="needs root and iptables")
def test_udp_blocked_falls_back_to_tcp_and_back(tmp_path: Path) -> None:
    with pair(tmp_path) as (hq, hall):
        wait_for(lambda: link(hq, hall)["transport"] == "datagram", "datagram mode first")
        port = media(hall)["datagrams"]["udp_port"]
        rule = ["INPUT", "-p", "udp", "-d", "127.0.0.1", "--dport", str(port), "-j", "DROP"]
        _iptables("-I", *rule)
        try:
            wait_for(lambda: link(hq, hall)["transport"] == "tcp" and link(hall, hq)["transport"] == "tcp",
                     "both sides fall back to the TCP link")
            before = media(hall)["datagrams"]["channels"][hq.node_id]["received"]
            got = asyncio.run(present_and_listen(hq, hall, b"FB"))
            assert audio_seqs(got) == list(range(100))
            assert media(hall)["datagrams"]["channels"][hq.node_id]["received"] == before  # none passed
            assert link(hq, hall)["transport"] == "tcp"
        finally:
            _iptables("-D", *rule)
        wait_for(lambda: link(hq, hall)["transport"] == "datagram", "datagrams again once the block is gone")
        got = asyncio.run(present_and_listen(hq, hall, b"BK"))
        assert audio_seqs(got) == list(range(100))


class _Capture:
    """UDP payloads sent to `port` on loopback, seen through a raw packet socket (root)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.payloads: list[bytes] = []
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self._sock.recv(65535)
            except socket.timeout:
                continue
            ip = frame[14:]
            if len(ip) < 28 or ip[9] != socket.IPPROTO_UDP:
                continue
            ihl = (ip[0] & 0x0F) * 4
            dport, length = struct.unpack_from(">HH", ip, ihl + 2)
            if dport == self.port:
                payload = bytes(ip[ihl + 8:ihl + length])
                if payload not in self.payloads:  # loopback shows each packet twice
                    self.payloads.append(payload)

    def stop(self) -> list[bytes]:
        self._stop.set()
        self._thread.join()
        self._sock.close()
        return self.payloads


@pytest.mark.skipif(os.geteuid() != 0, reason="capturing datagrams on loopback needs root")
def test_strangers_and_replayed_datagrams_change_nothing(tmp_path: Path) -> None:
    with pair(tmp_path) as (hq, hall):
        wait_for(lambda: link(hq, hall)["transport"] == "datagram", "datagram mode")
        port = media(hall)["datagrams"]["udp_port"]
        cap = _Capture(port)
        got = asyncio.run(present_and_listen(hq, hall, b"CP"))
        captured = cap.stop()
        assert audio_seqs(got) == list(range(100))
        assert len(captured) >= 100
        d0 = media(hall)["datagrams"]["counters"]

        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rnd = os.urandom
        garbage = [b"", b"\x00", rnd(5), rnd(26), rnd(27), rnd(100), rnd(1200), rnd(3000)]
        chan = captured[0][:2]  # the real channel id, with forged counters and ciphertext
        forged = [chan + rnd(4) + rnd(40) for _ in range(20)]
        flipped = [dg[:-1] + bytes([dg[-1] ^ 1]) for dg in captured[:20]]
        sent = garbage + forged + flipped + captured
        for dg in sent:
            out.sendto(dg, ("127.0.0.1", port))
            time.sleep(0.002)  # not faster than the hall reads: a full socket buffer would drop some
        out.close()

        def dropped(d: dict) -> int:
            return sum(d[k] - d0[k] for k in ("malformed", "unknown_channel", "auth", "replay"))

        d1 = wait_for(lambda: (lambda d: d if dropped(d) >= len(sent) else None)(media(hall)["datagrams"]["counters"]),
                      "the hall to drop every datagram sent")
        assert dropped(d1) == len(sent)  # every one of them dropped and counted, none accepted
        assert d1["replay"] - d0["replay"] >= len(captured)  # flipped ones reuse counters too: replay or auth
        assert (d1["auth"] + d1["replay"]) - (d0["auth"] + d0["replay"]) >= len(forged + flipped + captured)
        assert d1["errors"] == 0
        # nothing replayed reached the relay and the hub: each recorded chunk of the talk is there once
        def talk() -> list[tuple[int, int]]:
            return sorted((c.track, c.seq) for c in map(C.parse, recorded_chunks(hall)) if c.payload.startswith(b"CP"))

        wait_for(lambda: [seq for track, seq in talk() if track == C.TRACK_AUDIO] == list(range(100)),
                 "the talk's audio in the hall's recording")
        time.sleep(2.0)  # anything replayed would be recorded by now (the recorder syncs every second)
        assert len(talk()) == len(set(talk())) and [s for t, s in talk() if t == C.TRACK_AUDIO] == list(range(100))
        assert link(hall, hq)["transport"] == "datagram"
        # and the link still works
        got = asyncio.run(present_and_listen(hq, hall, b"AF"))
        assert audio_seqs(got) == list(range(100))


def test_hall_tv_shows_the_media_transport(tmp_path: Path) -> None:
    """The hall TV's link badge names the transport media arrives over (and its loss)."""
    from browser.media_fixtures import CHROMIUM, browser_missing_reason

    reason = browser_missing_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    with pair(tmp_path) as (hq, hall):
        wait_for(lambda: link(hall, hq)["transport"] == "datagram", "datagram mode")
        asyncio.run(present_and_listen(hq, hall, b"TV", n_audio=30))  # some reports: a loss figure
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            try:
                tv = b.new_page()
                tv.goto(hall.url + "/tv")
                badge = tv.get_by_test_id("tv-link-state")
                expect(badge).to_have_attribute("data-transport", "datagram", timeout=30_000)
                expect(badge).to_contain_text("UDP")
            finally:
                b.close()
