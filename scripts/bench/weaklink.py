#!/usr/bin/env python3
"""Live audio on weak links (issue 13): meshmeet through a packet-level emulated link, beside UDP + redundancy.

Three real nodes in network namespaces (scripts/testbed; needs root): HQ -> relay hall on a clean
link -> end hall on a packet link (meshmeet/testbed/packetlink.py) with profile A-E. For each
profile (default: all, 60 s each):
  av      a Python presenter on HQ's /media/ws/present sends audio frames (Opus-sized, 16 kbit/s in 20 ms frames,
          following the node's audio rate requests for bitrate and frame duration, as present.js does) and ~150 kbit/s of low-layer video (20 fps, a
          keyframe every 2 s or on request); a Python subscriber on the end hall's /media/ws/hall?layer=low
  audio   the same, audio only
  udp_red the baseline, measured during `audio` on a second packet link between the same two
          namespaces (relay -> end hall) with the same profile: the same 20 ms frames over plain UDP,
          each packet also carrying the previous frame (RFC 2198-style); on links too thin for that
          (E: 32 kbit/s) plain UDP at 12 kbit/s, as the issue measured.
  cap     (E only) audio and video with the link at B, capped to the profile at 30 % of the row and
          back to B at 70 % (Testbed.set_profile, the queue starts empty): how long after the cap
          video still left the relay (`video_shed_after_cap_s`: the latest send time of a video frame
          that arrived), how long after the uncap it arrived again, the audio sent while capped
          (`capped_audio`), and when the relay's status (polled each second) first said audio-only
          after the cap (`relay_audio_only_after_cap_s`; frames the full modem queue dropped also
          never arrive, so the first figure is a lower bound of the relay's shedding).
          The row's other latency figures use the capped profile's base delay.
Every frame carries its send time (CLOCK_MONOTONIC, shared by all namespaces) in its payload.
Per row: frames delivered, one-way latency p50/p95/p99/max above the link's base one-way delay,
gaps > 200 ms between audio arrivals, % heard at a 150 / 300 ms playout (arrived within X ms of the
fastest frame), when video was shed and restored (no video frame for > 1 s), the Opus rate and frame
duration the presenter was asked to use, how often the relay~end mesh link died (node logs), and
the relay's per-link media status for the end hall (with "transport" when the node reports one).
The nodes run with their default keepalive (5 s; dead after 3 missed), as deployed; the relay and
end hall are restarted before every row, so that no row inherits the previous one's backlog. Before the profiles, profile A's forwarder cost:
UDP echo RTT through the forwarder vs a plain veth pair between the same namespaces.

    python scripts/bench/weaklink.py [--json] [--profiles A,C,E] [--seconds 60] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from meshmeet.media import chunk as C  # noqa: E402

RUN = "wlbench"
HTTP = "http://127.0.0.1:8080"
FRAME_S = 0.02
AUDIO_KBPS = 16
BASELINE_THIN_KBPS = 12
VIDEO_FPS = 20
VIDEO_BPS = 150_000
KEYFRAME_EVERY = 40          # frames (2 s)
KEYFRAME_FACTOR = 4          # a keyframe is this many average frames
STAMP = 8                    # bytes of send time (ns) at the start of each payload
GAP_MS = 200
PLAYOUTS_MS = (150, 300)
VIDEO_SHED_S = 1.0
CAP_FROM = "B"               # the `cap` row: the link starts as B (video flows), is capped to the profile...
CAP_SHARE = (0.3, 0.7)       # ...at this share of the row and uncapped (B again) at this share
CAP_PROFILES = ("E",)        # the rows that get a `cap` row (issue 13: "E: video shed within 1 s of the cap")
DRAIN_QUIET_S = 3.0          # the subscriber stops this long after the last frame...
DRAIN_MAX_S = 25.0           # ...or this long after the presenter stopped
SETTLE_S = 3.0               # between runs
STATUS_EVERY_S = 1.0
UDP_PORT = 9797
ECHO_PORT = 9798
ECHO_PROBES = 400
BASE_NET = "10.77.255."      # the baseline packet link (10.77.255.0/30) and the veth (10.77.255.4/30)
GUARD_S = 120.0
DETECT_S = 15.0
LINK_DROP_MARKS = ("peer not responding", "transport error")


# ---------------------------------------------------------------------------------------------
# roles: run inside a namespace by `ip netns exec NS python weaklink.py --role ...`; print one JSON line

def stamp() -> bytes:
    return time.monotonic_ns().to_bytes(STAMP, "big")


def audio_bytes(kbps: float, frame_s: float = FRAME_S) -> int:
    return max(STAMP + 2, int(kbps * 1000 / 8 * frame_s))


async def role_presenter(seconds: float, video: bool, start_at: float) -> dict:
    import aiohttp

    opus = C.encode(C.DecoderConfig(C.TRACK_AUDIO, 0, 1, {"codec": "opus", "numberOfChannels": 1, "sampleRate": 48000}))
    vp8 = C.encode(C.DecoderConfig(C.TRACK_VIDEO, C.LAYER_LOW, 1, {"codec": "vp8", "codedWidth": 320, "codedHeight": 180}))
    state = {"kbps": AUDIO_KBPS, "frame_ms": int(FRAME_S * 1000), "key": True}
    rates: list[tuple[float, int]] = []
    other: dict[str, int] = {}
    keyreqs = 0
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{HTTP}/media/ws/present", max_msg_size=0) as ws:

        async def listen() -> None:
            nonlocal keyreqs
            async for m in ws:
                if m.type != aiohttp.WSMsgType.BINARY or not m.data:
                    continue
                try:
                    msg = C.parse(m.data)
                except C.MediaFormatError:
                    other[f"0x{m.data[0]:02x}"] = other.get(f"0x{m.data[0]:02x}", 0) + 1
                    continue
                if isinstance(msg, C.AudioRateRequest):
                    state["kbps"] = min(AUDIO_KBPS, msg.kbps)
                    state["frame_ms"] = msg.frame_ms  # as present.js does: longer Opus frames when asked
                    rates.append((round(time.monotonic() - start_at, 2), msg.kbps))
                elif isinstance(msg, C.KeyframeRequest):
                    keyreqs += 1
                    state["key"] = True
                else:
                    other[type(msg).__name__] = other.get(type(msg).__name__, 0) + 1

        task = asyncio.create_task(listen())
        await ws.send_bytes(opus)
        if video:
            await ws.send_bytes(vp8)
        while time.monotonic() < start_at:
            await asyncio.sleep(0.005)
        # a presenter process that started late (a loaded machine: Python and aiohttp take seconds
        # to start) begins now, as a browser would, instead of sending the frames it missed in one
        # burst (that burst alone filled E's 1.5 s modem queue and made runs bimodal)
        late_s = max(0.0, time.monotonic() - start_at)
        start_at += late_s
        n = nv = v = 0
        t_us = 0  # the audio's media time; frames last state["frame_ms"] each
        kbps_frames: list[int] = []
        frame_ms_used: set[int] = set()
        while True:
            due = start_at + t_us / 1e6
            if due >= start_at + seconds:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            frame_ms = state["frame_ms"]
            kbps_frames.append(state["kbps"])
            frame_ms_used.add(frame_ms)
            await ws.send_bytes(C.encode(C.Chunk(C.TRACK_AUDIO, 0, 0, True, 1, n, t_us, frame_ms * 1000,
                                                 stamp() + bytes(audio_bytes(state["kbps"], frame_ms / 1000) - STAMP))))
            n += 1
            t_us += frame_ms * 1000
            while video and v * 1e6 / VIDEO_FPS < t_us:  # the video frames due by the end of this audio frame
                key = state["key"] or v % KEYFRAME_EVERY == 0
                state["key"] = False
                avg = VIDEO_BPS / 8 / VIDEO_FPS
                size = int(avg * KEYFRAME_FACTOR) if key else int(avg * (KEYFRAME_EVERY - KEYFRAME_FACTOR) / (KEYFRAME_EVERY - 1))
                tid = 0 if key else (0, 2, 1, 2)[v % 4]
                await ws.send_bytes(C.encode(C.Chunk(C.TRACK_VIDEO, C.LAYER_LOW, tid, key, 1, v, v * 50_000, 50_000,
                                                     stamp() + bytes(size))))
                nv += 1
                v += 1
        await asyncio.sleep(0.5)
        task.cancel()
    return {"sent": n, "video_sent": nv, "rate_requests": rates, "keyframe_requests": keyreqs, "other_upstream": other,
            "frame_ms": sorted(frame_ms_used), "kbps_used": sorted(set(kbps_frames)),
            "kbps_last": kbps_frames[-1] if kbps_frames else None, "late_start_s": round(late_s, 3)}


async def role_hall(seconds: float, start_at: float) -> dict:
    import aiohttp

    audio: dict[int, list[int]] = {}     # seq -> [send_ns, arrive_ns]
    video: list[list[int]] = []          # [send_ns, arrive_ns, keyframe]
    stop_at = start_at + seconds + DRAIN_MAX_S
    last = [time.monotonic()]
    async with aiohttp.ClientSession() as s, s.ws_connect(f"{HTTP}/media/ws/hall?layer=low", max_msg_size=0) as ws:

        async def listen() -> None:
            parts = bytearray()
            async for m in ws:
                if m.type != aiohttp.WSMsgType.BINARY:
                    continue
                now = time.monotonic_ns()
                data = m.data
                if data[0] == C.KIND_FRAGMENT:
                    if data[1] & C.FRAGMENT_FIRST:
                        parts = bytearray()
                    parts += data[2:]
                    if not data[1] & C.FRAGMENT_LAST:
                        continue
                    data = bytes(parts)
                if data[0] != C.KIND_CHUNK or len(data) < C.CHUNK_HEADER_BYTES + STAMP:
                    continue
                info = C.peek_chunk(data)
                sent = int.from_bytes(data[C.CHUNK_HEADER_BYTES:C.CHUNK_HEADER_BYTES + STAMP], "big")
                if sent < start_at * 1e9 - 1e9:
                    continue   # a frame of an earlier run, still draining
                last[0] = time.monotonic()
                if info.track == C.TRACK_AUDIO:
                    audio.setdefault(info.seq, [sent, now])
                else:
                    video.append([sent, now, int(info.keyframe)])

        task = asyncio.create_task(listen())
        while time.monotonic() < stop_at:
            await asyncio.sleep(0.1)
            if time.monotonic() > start_at + seconds and time.monotonic() - last[0] > DRAIN_QUIET_S:
                break
        task.cancel()
    return {"audio": audio, "video": video}


def role_udp_send(seconds: float, start_at: float, dest: str, red: bool, kbps: float) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    size = audio_bytes(kbps)
    prev = b""
    n = 0
    while time.monotonic() < start_at:
        time.sleep(0.002)
    while start_at + n * FRAME_S < start_at + seconds:
        delay = start_at + n * FRAME_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        frame = n.to_bytes(4, "big") + stamp() + bytes(size - STAMP)
        try:
            sock.sendto(frame + (prev if red else b""), (dest, UDP_PORT))
        except OSError:
            pass
        prev = frame
        n += 1
    return {"sent": n, "red": red, "kbps": kbps, "payload_bytes": len(frame) + (len(prev) if red else 0)}


def role_udp_recv(seconds: float, start_at: float, bind: str, frame_bytes: int) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((bind, UDP_PORT))
    sock.settimeout(0.2)
    audio: dict[int, list[int]] = {}
    end = start_at + seconds + DRAIN_QUIET_S
    while time.monotonic() < end:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        now = time.monotonic_ns()
        for off in range(0, len(data) - 11, frame_bytes):   # this frame, then the previous one
            seq = int.from_bytes(data[off:off + 4], "big")
            audio.setdefault(seq, [int.from_bytes(data[off + 4:off + 12], "big"), now])
    return {"audio": audio, "video": []}


def role_echo(bind: str, seconds: float) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((bind, ECHO_PORT))
    sock.settimeout(0.5)
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        try:
            data, peer = sock.recvfrom(2048)
        except socket.timeout:
            continue
        sock.sendto(data, peer)
        n += 1
    return {"echoed": n}


def role_ping(dest: str, probes: int) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    rtts = []
    for i in range(probes):
        t0 = time.monotonic_ns()
        sock.sendto(i.to_bytes(4, "big") + bytes(96), (dest, ECHO_PORT))
        try:
            while int.from_bytes(sock.recv(2048)[:4], "big") != i:
                pass
            rtts.append((time.monotonic_ns() - t0) / 1e6)
        except socket.timeout:
            pass
        time.sleep(0.01)
    return {"rtt_ms": rtts, "probes": probes}


def run_role(args: argparse.Namespace) -> int:
    p = json.loads(args.params)
    if args.role == "presenter":
        out = asyncio.run(role_presenter(p["seconds"], p["video"], p["start_at"]))
    elif args.role == "hall":
        out = asyncio.run(role_hall(p["seconds"], p["start_at"]))
    elif args.role == "udp_send":
        out = role_udp_send(p["seconds"], p["start_at"], p["dest"], p["red"], p["kbps"])
    elif args.role == "udp_recv":
        out = role_udp_recv(p["seconds"], p["start_at"], p["bind"], p["frame_bytes"])
    elif args.role == "echo":
        out = role_echo(p["bind"], p["seconds"])
    else:
        out = role_ping(p["dest"], p["probes"])
    print(json.dumps(out))
    return 0


# ---------------------------------------------------------------------------------------------
# the driver (root namespace)

class Role:
    """One role process inside a namespace; `result()` waits for its JSON line."""

    def __init__(self, netns_name: str, role: str, env: dict, **params) -> None:
        self.name = role
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns_name, sys.executable, __file__, "--role", role,
                                      "--params", json.dumps(params)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)

    def result(self, guard_s: float) -> dict:
        try:
            out, err = self.proc.communicate(timeout=guard_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if self.proc.returncode != 0 or not lines:
            return {"error": f"{self.name} exited {self.proc.returncode}: {err.strip()[-400:]}"}
        return json.loads(lines[-1])


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


def audio_metrics(rx: dict, sent: int, base_ms: float) -> dict:
    """The row's audio figures from {seq: [send_ns, arrive_ns]} and how many frames were sent."""
    if "error" in rx:
        return {"error": rx["error"]}
    frames = {int(k): v for k, v in rx["audio"].items() if int(k) < sent}
    lat = [(a - s) / 1e6 - base_ms for s, a in frames.values()]
    arrivals = sorted(a for _, a in frames.values())
    gaps = sum(1 for x, y in zip(arrivals, arrivals[1:]) if (y - x) / 1e6 > GAP_MS)
    fastest = min(lat) if lat else 0.0
    out = {"sent": sent, "delivered": len(frames), "delivered_pct": round(100 * len(frames) / sent, 2) if sent else None,
           "p50_ms": pct(lat, 0.5), "p95_ms": pct(lat, 0.95), "p99_ms": pct(lat, 0.99),
           "max_ms": round(max(lat), 1) if lat else None, "gaps_over_200ms": gaps}
    if frames:  # when the lost frames were sent (s after the first; a lost frame: its delivered predecessor's)
        t0 = min(s for s, _ in frames.values())
        sends = sorted((k, s) for k, (s, _) in frames.items())
        lost_at, i = [], 0
        for seq in range(sent):
            while i + 1 < len(sends) and sends[i + 1][0] < seq:
                i += 1
            if seq not in frames and len(lost_at) < 100:
                lost_at.append(round((sends[i][1] - t0) / 1e9, 1) if sends[i][0] < seq else 0.0)
        out["lost_at_s"] = lost_at
        # each lost frame's neighbours, ms above base (None: lost too): a frame whose successor came
        # on time should have been recovered from that successor's copy
        out["lost_context_ms"] = [[round((frames[q][1] - frames[q][0]) / 1e6 - base_ms, 1) if q in frames else None
                                   for q in (seq - 2, seq - 1, seq + 1, seq + 2)]
                                  for seq in range(sent) if seq not in frames][-20:]
    for x in PLAYOUTS_MS:
        out[f"heard_{x}ms_pct"] = round(100 * sum(1 for v in lat if v <= fastest + x) / sent, 2) if sent else None
    return out


def cap_metrics(rx: dict, start_at: float, cap_s: float, uncap_s: float, base_ms: float) -> dict:
    """The `cap` row (a clean link capped mid-stream, then uncapped): how long after the cap video
    still left the relay (the latest send time of a video frame that arrived, minus the cap: frames
    the relay shed never arrive), how long after the uncap video arrived again, and the audio sent
    while capped (delivered, p95 above the capped profile's base delay)."""
    cap, uncap = start_at + cap_s, start_at + uncap_s
    video = [(s / 1e9, a / 1e9) for s, a, _ in rx.get("video", [])]
    during = [s for s, _ in video if cap <= s < uncap]
    later = [a for s, a in video if s >= uncap]
    out = {"cap_at_s": cap_s, "uncap_at_s": uncap_s,
           "video_shed_after_cap_s": round(max(during) - cap, 2) if during else 0.0,
           "video_after_cap_frames": len(during),
           "video_restored_after_uncap_s": round(min(later) - uncap, 2) if later else None}
    frames = [v for v in rx.get("audio", {}).values() if cap <= v[0] / 1e9 < uncap]
    lat = [(a - s) / 1e6 - base_ms for s, a in frames]
    expected = (uncap_s - cap_s) / FRAME_S  # upper bound when the source was asked for longer frames
    out["capped_audio"] = {"delivered": len(frames), "p95_ms": pct(lat, 0.95), "max_ms": round(max(lat), 1) if lat else None}
    out["capped_audio"]["frames_per_s"] = round(len(frames) / (uncap_s - cap_s), 1) if expected else None
    return out


def video_metrics(rx: dict, start_at: float, seconds: float) -> dict:
    """Video off = no video frame for > VIDEO_SHED_S: [shed at s, restored at s (None: not before the end)]."""
    video = sorted(rx.get("video", []), key=lambda v: v[1])
    end, prev, off = start_at + seconds, start_at, []
    for t in (a / 1e9 for _, a, _ in video):
        if t - prev > VIDEO_SHED_S and prev < end:
            off.append([round(prev - start_at, 1), round(t - start_at, 1)])
        prev = t
    if prev < end - VIDEO_SHED_S:
        off.append([round(prev - start_at, 1), None])
    lat = [(a - s) / 1e6 for s, a, _ in video]
    return {"video_frames": len(video), "video_p50_ms": pct(lat, 0.5), "video_off": off}


class StatusPoller:
    """Polls the relay's /api/status every second: its media link to the end hall (layer, queue, transport)."""

    def __init__(self, bed, relay: str, end_id: str) -> None:
        self.bed, self.relay, self.end_id = bed, relay, end_id
        self.rows: list[dict] = []
        self.datagram_counters: dict | None = None  # per node, its per-peer datagram channel counters, last seen
        self._stop = threading.Event()
        self._t0 = self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> StatusPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(STATUS_EVERY_S):
            try:
                st = self.bed.status(self.relay)
            except (OSError, ValueError):
                continue
            t = round(time.monotonic() - self._t0, 1)
            self.datagram_counters = {"relay": ((st.get("media") or {}).get("datagrams") or {}).get("channels")}
            for name in ("hq", "end"):
                try:
                    other = self.bed.status(name)
                except (OSError, ValueError):
                    continue
                self.datagram_counters[name] = ((other.get("media") or {}).get("datagrams") or {}).get("channels")
            for link in (st.get("media") or {}).get("links", []):
                if link.get("peer") == self.end_id:
                    self.rows.append({"t": t, **link})
            for link in st.get("links", []):
                if isinstance(link, dict) and link.get("peer") == self.end_id:
                    self.rows.append({"t": t, "mesh": link})

    def summary(self) -> dict:
        layers: list[list] = []
        for r in self.rows:
            if "layer" in r and (not layers or layers[-1][1] != r["layer"]):
                layers.append([r["t"], r["layer"]])
        media = [r for r in self.rows if "mesh" not in r]
        mesh = [r["mesh"] for r in self.rows if "mesh" in r]
        transport = sorted({str(v) for r in media for k, v in r.items() if "transport" in k})
        mesh_transport = sorted({str(v) for r in mesh for k, v in r.items() if "transport" in k})
        queue = [r["queue_ms"] for r in media if isinstance(r.get("queue_ms"), (int, float))]
        rtt = [r["rtt_ms"] for r in mesh if isinstance(r.get("rtt_ms"), (int, float))]
        last = {k: v for k, v in (media[-1] if media else {}).items() if k not in ("t", "peer", "site")}
        return {"relay_layers": layers, "relay_queue_ms_max": max(queue) if queue else None,
                "mesh_rtt_ms_max": max(rtt) if rtt else None, "transport": transport or None,
                "mesh_transport": mesh_transport or None, "relay_media_link_last": last or None,
                "relay_datagram_counters": self.datagram_counters}


def link_drops(bed) -> int:
    """How often the relay or end node has logged its mesh link dying so far."""
    n = 0
    for node in ("relay", "end"):
        try:
            text = bed.log_path(f"node-{node}").read_text(errors="replace")
        except OSError:
            continue
        n += sum(text.count(mark) for mark in LINK_DROP_MARKS)
    return n


def fresh_nodes(bed, log) -> None:
    """Restart the relay and end hall so that no backlog of the previous row is carried into the next."""
    for node in ("end", "relay"):
        bed.stop_node(node, signal.SIGTERM)
    for node in ("relay", "end"):
        bed.start_node(node)
    m = bed.wait_whole("restart")
    relay_id = next(i for i, n in bed.ids.items() if n == "relay")
    deadline = time.monotonic() + GUARD_S
    while time.monotonic() < deadline:
        try:
            if (bed.status("end").get("media") or {}).get("source_link") == relay_id:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    log(f"  nodes restarted, tree whole after {m.seconds} s")


def measure(bed, env: dict, profile: str, mode: str, seconds: float, base_link, base_ms: float) -> dict:
    hq, relay, end = (bed.plan.host(n).netns for n in ("hq", "relay", "end"))
    start_at = time.monotonic() + 2.0
    hall = Role(end, "hall", env, seconds=seconds, start_at=start_at)
    time.sleep(0.5)
    pres = Role(hq, "presenter", env, seconds=seconds, video=mode in ("av", "cap"), start_at=start_at)
    shaper = None
    if mode == "cap":   # CAP_FROM clean, `profile` from CAP_SHARE[0] of the row, CAP_FROM again from CAP_SHARE[1]
        plan = ((CAP_SHARE[0] * seconds, profile), (CAP_SHARE[1] * seconds, CAP_FROM))

        def shape() -> None:
            for at, prof in plan:
                time.sleep(max(0.0, start_at + at - time.monotonic()))
                bed.set_profile("relay", "end", prof)
        shaper = threading.Thread(target=shape, daemon=True)
        shaper.start()
    udp = None
    if mode == "audio":
        red = profile != "E"
        kbps = AUDIO_KBPS if red else BASELINE_THIN_KBPS
        udp_rx = Role(end, "udp_recv", env, seconds=seconds, start_at=start_at, bind=base_link.addr_b,
                      frame_bytes=STAMP + 4 + audio_bytes(kbps) - STAMP)
        udp_tx = Role(relay, "udp_send", env, seconds=seconds, start_at=start_at, dest=base_link.addr_b, red=red, kbps=kbps)
        udp = (udp_tx, udp_rx)
    end_id = next(i for i, n in bed.ids.items() if n == "end")
    drops0 = link_drops(bed)
    with StatusPoller(bed, "relay", end_id) as poll:
        p = pres.result(seconds + GUARD_S)
        rx = hall.result(seconds + DRAIN_MAX_S + GUARD_S)
    drops = link_drops(bed) - drops0
    if shaper is not None:
        shaper.join()
    video = mode in ("av", "cap")
    relay_shed = None
    if mode == "cap":   # the relay's own status (polled every STATUS_EVERY_S): audio-only since, after the cap
        cap_t = start_at + CAP_SHARE[0] * seconds - poll.t0
        relay_shed = next((round(r["t"] - cap_t, 1) for r in poll.rows if r.get("layer") == "audio" and r["t"] >= cap_t), None)
    row = {**audio_metrics(rx, p.get("sent", 0), base_ms), **(video_metrics(rx, start_at, seconds) if video else {}),
           **({"relay_audio_only_after_cap_s": relay_shed} if mode == "cap" else {}),
           **({"video_sent": p.get("video_sent")} if video else {}),
           **(cap_metrics(rx, start_at, CAP_SHARE[0] * seconds, CAP_SHARE[1] * seconds, base_ms)
              if mode == "cap" and "error" not in rx else {}),
           "opus_kbps_used": p.get("kbps_used"), "opus_rate_requests": p.get("rate_requests"),
           "frame_ms": p.get("frame_ms"), "keyframe_requests": p.get("keyframe_requests"),
           "presenter_late_start_s": p.get("late_start_s"),
           "other_upstream": p.get("other_upstream"), "mesh_link_drops": drops, **poll.summary()}
    if "error" in p:
        row["presenter_error"] = p["error"]
    out = {mode: row}
    if udp is not None:
        sent = udp[0].result(seconds + GUARD_S)
        got = udp[1].result(seconds + GUARD_S)
        out["udp_red"] = {**audio_metrics(got, sent.get("sent", 0), base_ms), "red": sent.get("red"),
                          "opus_kbps_used": [sent.get("kbps")], "frame_ms": [int(FRAME_S * 1000)]}
    return out


def forwarder_cost(bed, env: dict, base_link) -> dict:
    """Profile A: UDP echo RTT through the baseline packet link vs a plain veth between the same namespaces."""
    from meshmeet.testbed import netns
    from meshmeet.testbed.tunlink import control

    relay, end = bed.plan.host("relay").netns, bed.plan.host("end").netns
    veth_a, veth_b = BASE_NET + "5", BASE_NET + "6"
    netns.run(["ip", "link", "add", "mmv", "netns", relay, "type", "veth", "peer", "name", "mmv", "netns", end])
    for ns, addr in ((relay, veth_a), (end, veth_b)):
        netns.run(["ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", "mmv"])
        netns.run(["ip", "-n", ns, "link", "set", "mmv", "up"])
    out = {}
    for name, dest in (("veth", veth_b), ("forwarder", base_link.addr_b)):
        echo = Role(end, "echo", env, bind=dest, seconds=ECHO_PROBES * 0.02 + 10)
        time.sleep(1.0)
        before = control(base_link.control, {"op": "stats"})
        ping = Role(relay, "ping", env, dest=dest, probes=ECHO_PROBES).result(GUARD_S)
        after = control(base_link.control, {"op": "stats"})
        echo.proc.kill()
        echo.proc.wait()
        rtts = ping.get("rtt_ms", [])
        out[name] = {"rtt_p50_ms": pct(rtts, 0.5), "rtt_p95_ms": pct(rtts, 0.95), "answered": len(rtts)}
        if name == "forwarder":
            pkts = sum(d["delivered"] for d in after["dirs"].values()) - sum(d["delivered"] for d in before["dirs"].values())
            out[name]["cpu_us_per_packet"] = round(1e6 * (after["cpu_s"] - before["cpu_s"]) / max(1, pkts), 1)
    netns.run(["ip", "-n", relay, "link", "del", "mmv"], check=False)
    if out["veth"]["rtt_p50_ms"] is not None and out["forwarder"]["rtt_p50_ms"] is not None:
        out["added_one_way_p50_ms"] = round((out["forwarder"]["rtt_p50_ms"] - out["veth"]["rtt_p50_ms"]) / 2, 3)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profiles", default="A,B,C,D,E")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--keep", default=None, metavar="DIR", help="keep the work dir (node and forwarder logs) in DIR")
    parser.add_argument("--seed", default=None, help="the emulators' loss and jitter seed (default: the same every run, "
                        "so runs compare; another seed meets other loss bursts)")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        return run_role(args)

    from meshmeet.sim.scenario import load_scenario
    from meshmeet.testbed import netns
    from meshmeet.testbed.bed import Testbed
    from meshmeet.testbed.plan import TunLinkPlan, control_path, make_plan
    from meshmeet.testbed.profiles import PRESETS
    from meshmeet.testbed.tunlink import start_tun_link

    profiles = [p.strip().upper() for p in args.profiles.split(",") if p.strip()]
    if not profiles or any(p not in PRESETS for p in profiles) or not 1 <= args.seconds <= 600:
        print("weaklink: --profiles takes letters A-E, --seconds 1..600", file=sys.stderr)
        return 2
    why = netns.missing_requirements()
    if why:
        print(f"weaklink benchmark cannot run here: {why}", file=sys.stderr)
        return 2
    # detect_s 15: the nodes keep their default keepalive (5 s, dead after 3 missed), as deployed
    scenario = {"name": "weaklink", "nodes": [{"id": "hq", "role": "hq"}, {"id": "relay"}, {"id": "end"}],
                "links": [{"a": "hq", "b": "relay", "kind": "lan", "detect_s": DETECT_S},
                          {"a": "relay", "b": "end", "kind": "4g", "detect_s": DETECT_S}]}
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    started = time.monotonic()
    report: dict = {"seconds": args.seconds, "seed": args.seed or RUN, "profiles": {}}
    with tempfile.TemporaryDirectory(prefix="mm-bench-weaklink-") as tmp:
        tmp = args.keep or tmp
        bed = Testbed(make_plan(load_scenario(scenario), RUN, {("relay", "end"): profiles[0]}, seed=args.seed), Path(tmp))
        env = {**bed.env, "PYTHONPATH": str(REPO) + os.pathsep + bed.env.get("PYTHONPATH", "")}
        base_link = TunLinkPlan(mid=bed.plan.prefix + "_base", ns_a=bed.plan.host("relay").netns,
                                ns_b=bed.plan.host("end").netns, dev="mmb", addr_a=BASE_NET + "1", addr_b=BASE_NET + "2",
                                profile="A", control=control_path(RUN, 99),
                                seed="baseline" if args.seed is None else f"{args.seed}-baseline")
        try:
            log("building the testbed (3 nodes, packet link relay~end)...")
            bed.prepare()
            bed.up()
            m = bed.wait_whole("start")
            log(f"tree whole after {m.seconds} s")
            start_tun_link(base_link, bed.python, env, bed.log_path("packetlink-baseline"))
            from meshmeet.testbed.tunlink import control
            report["forwarder_profile_A"] = forwarder_cost(bed, env, base_link)
            log(f"forwarder cost (profile A): {report['forwarder_profile_A']}")
            for prof in profiles:
                bed.set_profile("relay", "end", prof)
                control(base_link.control, {"op": "profile", "spec": prof})
                base_ms = PRESETS[prof].base_delay_s * 1000
                rows: dict = {}
                for mode in ("av", "audio", "cap") if prof in CAP_PROFILES else ("av", "audio"):
                    if mode == "cap":
                        bed.set_profile("relay", "end", CAP_FROM)
                    fresh_nodes(bed, log)
                    time.sleep(SETTLE_S)
                    log(f"profile {prof} {mode}: {args.seconds:g} s...")
                    rows.update(measure(bed, env, prof, mode, args.seconds, base_link, base_ms))
                rows["link"] = {"profile": prof, "note": PRESETS[prof].note, "base_one_way_ms": base_ms,
                                "forwarder": bed.link_stats("relay", "end")["dirs"]}
                report["profiles"][prof] = rows
        finally:
            bed.down()
    report["wall_s"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_table(report)
    return 0


def _f(v, unit: str = "") -> str:
    return "—" if v is None else f"{v:g}{unit}"


def print_table(report: dict) -> None:
    f = report.get("forwarder_profile_A", {})
    print(f"Live audio on weak links: relay -> end hall through the packet emulator, {report['seconds']:g} s per row "
          f"(baseline: UDP + redundancy, same namespaces, same profile, same run)")
    print(f"forwarder cost on profile A: RTT p50 {_f(f.get('forwarder', {}).get('rtt_p50_ms'))} ms vs veth "
          f"{_f(f.get('veth', {}).get('rtt_p50_ms'))} ms (added one way {_f(f.get('added_one_way_p50_ms'))} ms), "
          f"{_f(f.get('forwarder', {}).get('cpu_us_per_packet'))} µs CPU per packet")
    head = (f"{'prof':<4} {'mode':<8} {'deliv%':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>8} {'gaps':>5} "
            f"{'h@150%':>7} {'h@300%':>7} {'p95/udp':>8} {'drops':>5}  opus kbit/s, frame ms; video off [s]; transport")
    print(head)
    for prof, rows in report["profiles"].items():
        udp_p95 = (rows.get("udp_red") or {}).get("p95_ms")
        for mode in ("av", "audio", "udp_red", "cap"):
            r = rows.get(mode)
            if r is None:
                continue
            if "error" in r:
                print(f"{prof:<4} {mode:<8} error: {r['error']}")
                continue
            ratio = (r["p95_ms"] / udp_p95) if r.get("p95_ms") is not None and udp_p95 and udp_p95 > 0 else None
            extra = f"{r.get('opus_kbps_used')}, {r.get('frame_ms')}"
            if mode == "av":
                extra += f"; {r.get('video_off')}"
            if mode == "cap":
                ca = r.get("capped_audio") or {}
                extra += (f"; {CAP_FROM}->{prof} at {_f(r.get('cap_at_s'))} s: last video sent "
                          f"{_f(r.get('video_shed_after_cap_s'))} s after, relay audio-only after "
                          f"{_f(r.get('relay_audio_only_after_cap_s'))} s, restored {_f(r.get('video_restored_after_uncap_s'))} s "
                          f"after the uncap; audio while capped p95 {_f(ca.get('p95_ms'))} ms")
            if r.get("transport"):
                extra += f"; {r['transport']}"
            print(f"{prof:<4} {mode:<8} {_f(r['delivered_pct']):>7} {_f(r['p50_ms']):>7} {_f(r['p95_ms']):>7} "
                  f"{_f(r['p99_ms']):>7} {_f(r['max_ms']):>8} {r['gaps_over_200ms']:>5} {_f(r['heard_150ms_pct']):>7} "
                  f"{_f(r['heard_300ms_pct']):>7} {_f(None if ratio is None else round(ratio, 2)):>8} "
                  f"{_f(r.get('mesh_link_drops')):>5}  {extra}")
    print("latency in ms above the link's base one-way delay; drops: mesh link deaths the nodes logged during the row; "
          f"wall {report['wall_s']} s")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
