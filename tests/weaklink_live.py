"""Three real nodes for the weak-link tests (issue 13): HQ -> relay hall (clean) -> end hall on a packet link.

The presenter, subscriber, metrics and status poller are scripts/bench/weaklink.py's own (loaded
here by path, never copied): a Python presenter on HQ's /media/ws/present sends audio frames
(and ~150 kbit/s of low video), a subscriber on the end hall's /media/ws/hall records each frame's
send and arrival time (CLOCK_MONOTONIC, shared by all namespaces). This module builds and tears down
the testbed and runs one stretch of media through it; it asserts only that its roles ran (the
tests judge the figures) and never leaves a namespace behind (the context manager removes the
run's namespaces on every exit). Needs root.

The presenter honours the frame duration of the node's audio encoding requests (20/40/60 ms), as
the browser's does: on profile E 20 ms frames cannot fit (50 datagrams/s x 55 B of headers alone
is 22 kbit/s of the link's 32).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "scripts" / "bench" / "weaklink.py"
DETECT_S = 15.0          # the nodes' default keepalive (5 s, dead after 3 missed), as the bench and as deployed
GUARD_S = 120.0          # hang guards only
LEAD_S = 2.0             # the subscriber connects this long before the presenter's first frame


def load_bench() -> ModuleType:
    """scripts/bench/weaklink.py as a module (its roles run as `python weaklink.py --role ...`)."""
    spec = importlib.util.spec_from_file_location("weaklink_bench", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


WL = load_bench()


def why_not() -> str | None:
    """Why the namespace testbed cannot run here (None: it can)."""
    from meshmeet.testbed import netns

    return netns.missing_requirements() or (None if os.path.exists("/dev/net/tun") else "no /dev/net/tun")


def run_name(tag: str) -> str:
    """A run name unique to this process (the bench uses "wlbench"): 1-8 lowercase letters/digits."""
    return f"{tag}{os.getpid() % 0xFFFFF:x}"[:8]


SCENARIO = {"name": "weaklink-test", "nodes": [{"id": "hq", "role": "hq"}, {"id": "relay"}, {"id": "end"}],
            "links": [{"a": "hq", "b": "relay", "kind": "lan", "detect_s": DETECT_S},
                      {"a": "relay", "b": "end", "kind": "4g", "detect_s": DETECT_S}]}


def node_id(bed, node: str) -> str:
    return next(i for i, n in bed.ids.items() if n == node)


def relay_link(bed) -> dict | None:
    """The relay's media status for its link to the end hall (None until there is one)."""
    try:
        links = (bed.status("relay").get("media") or {}).get("links", [])
    except (OSError, ValueError):
        return None
    return next((lk for lk in links if lk.get("peer") == node_id(bed, "end")), None)


def wait_until(pred, what: str, guard_s: float = GUARD_S, must: bool = True):
    """Poll pred() until truthy (a hang guard, not a timing assertion); AssertionError naming `what`
    (or, with must=False, the last value: the caller's own assertions judge it)."""
    end = time.monotonic() + guard_s
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            if not must:
                return v
            raise AssertionError(f"never happened within the {guard_s:g} s hang guard: {what}")
        time.sleep(0.2)


SETTLE_S = 20.0   # how long a run waits for the relay's link to go on datagrams before its media anyway


def settle_on_datagrams(bed) -> None:
    """Wait (at most SETTLE_S) for relay -> end on datagrams; the media then runs whatever the link
    is on, so that a node without datagrams (MESHMEET_NO_DATAGRAMS=1) is judged by its audio first."""
    wait_until(lambda: relay_link(bed) is not None, "the relay has a media link to the end hall")
    wait_until(lambda: (relay_link(bed) or {}).get("transport") == "datagram", "datagrams", SETTLE_S, must=False)


def wait_end_hears_relay(bed) -> None:
    relay = node_id(bed, "relay")

    def ok() -> bool:
        try:
            return (bed.status("end").get("media") or {}).get("source_link") == relay
        except (OSError, ValueError):
            return False
    wait_until(ok, "the end hall takes its media from the relay")


@contextmanager
def weak_bed(work: Path, run: str, profile: str, node_env: dict[str, str] | None = None) -> Iterator:
    """The three nodes up, the tree whole, relay~end on a packet link with `profile`; always torn down."""
    from meshmeet.sim.scenario import load_scenario
    from meshmeet.testbed import netns
    from meshmeet.testbed.bed import Testbed
    from meshmeet.testbed.plan import make_plan

    plan = make_plan(load_scenario(SCENARIO), run, {("relay", "end"): profile})
    netns.cleanup(plan.prefix)
    bed = Testbed(plan, work)
    bed.env.update(node_env or {})
    bed.wl_profile, bed.wl_media_runs = profile, 0
    try:
        bed.prepare()
        bed.up()
        m = bed.wait_whole("start")
        assert m.seconds is not None, f"the tree never became whole: {m.verdict}"
        wait_end_hears_relay(bed)
        yield bed
    finally:
        bed.down()


def recordings_synced(bed) -> bool:
    """The end hall holds every recording HQ holds and fetches nothing (recording sync is idle)."""
    try:
        hq = (bed.status("hq").get("media") or {}).get("recordings") or {}
        end = (bed.status("end").get("media") or {}).get("recordings") or {}
    except (OSError, ValueError):
        return False
    return end.get("local", 0) >= hq.get("local", 0) and not end.get("fetching") and not end.get("wanted")


def restart_with(bed, profile: str) -> None:
    """Shape relay~end as `profile` and restart the relay and end hall (no backlog carried over),
    unless the bed is fresh and shaped so already. Then wait until the end hall has fetched the
    recordings of earlier runs: recording sync is a bulk TCP transfer, and one on the thin link
    during the media fills the link's queue (a finding of its own, not what these tests measure)."""
    if bed.wl_media_runs or bed.wl_profile != profile:
        bed.set_profile("relay", "end", profile)
        bed.wl_profile = profile
        WL.fresh_nodes(bed, lambda *a: None)
        wait_end_hears_relay(bed)
    time.sleep(2.0)   # the recording lists are exchanged on link up
    wait_until(lambda: recordings_synced(bed), "the end hall has fetched earlier runs' recordings", 2 * GUARD_S)


def in_netns(bed, node: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", bed.plan.host(node).netns, *argv], check=True, capture_output=True,
                   timeout=30)


def run_media(bed, profile: str, seconds: float, video: bool, reshape: list[tuple[float, str]] | None = None) -> dict:
    """One stretch of live media HQ -> end hall: the bench's audio (and video) figures, plus the
    relay's media status rows for the end hall's link (`status`: [{t, layer, transport, ...}]).
    `reshape`: [(seconds into the media, profile)] applied to relay~end while it runs; the figures
    then use `profile`'s base delay, and `rx` (the subscriber's records) and `start_at` are kept."""
    from meshmeet.testbed.profiles import PRESETS

    hq, end = bed.plan.host("hq").netns, bed.plan.host("end").netns
    bed.wl_media_runs += 1
    start_at = time.monotonic() + LEAD_S
    hall = WL.Role(end, "hall", bed.env, seconds=seconds, start_at=start_at)
    time.sleep(0.5)
    pres = WL.Role(hq, "presenter", bed.env, seconds=seconds, video=video, start_at=start_at)
    shaper = None
    if reshape:
        def shape() -> None:
            for at, prof in reshape:
                time.sleep(max(0.0, start_at + at - time.monotonic()))
                bed.set_profile("relay", "end", prof)
                bed.wl_profile = prof
        shaper = threading.Thread(target=shape, daemon=True)
        shaper.start()
    with WL.StatusPoller(bed, "relay", node_id(bed, "end")) as poll:
        p = pres.result(seconds + GUARD_S)
        rx = hall.result(seconds + WL.DRAIN_MAX_S + GUARD_S)
    if shaper is not None:
        shaper.join()
    assert "error" not in p, p["error"]
    assert "error" not in rx, rx["error"]
    out = WL.audio_metrics(rx, p["sent"], PRESETS[profile].base_delay_s * 1000)
    arrivals = sorted(a for k, (_, a) in rx["audio"].items() if int(k) < p["sent"])
    out["max_gap_ms"] = round(max(((y - x) / 1e6 for x, y in zip(arrivals, arrivals[1:])), default=0.0), 1)
    if video:
        out.update(WL.video_metrics(rx, start_at, seconds), video_sent=p["video_sent"])
        out["video_arrivals_s"] = sorted(round(a / 1e9 - start_at, 2) for _, a, _ in rx["video"])
    out["status"] = [r for r in poll.rows if "mesh" not in r]
    out["summary"] = poll.summary()
    out["opus_kbps_used"], out["frame_ms_used"] = p["kbps_used"], p["frame_ms"]
    out["presenter_late_start_s"] = p.get("late_start_s")
    if reshape:
        out["rx"], out["start_at"] = rx, start_at
    return out


def figures(m: dict) -> dict:
    """What an assertion message shows: the measured figures, without the raw rows."""
    keep = ("sent", "delivered", "delivered_pct", "p50_ms", "p95_ms", "p99_ms", "max_ms", "gaps_over_200ms",
            "max_gap_ms", "heard_150ms_pct", "heard_300ms_pct", "video_frames", "video_sent", "video_off",
            "opus_kbps_used", "frame_ms_used", "presenter_late_start_s")
    return {**{k: m[k] for k in keep if k in m}, "layers": m["summary"]["relay_layers"],
            "transport": m["summary"]["transport"]}

