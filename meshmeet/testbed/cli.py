"""`scripts/testbed`: build a scenario as real hosts in network namespaces, poke it, measure it, remove it.

  scripts/testbed up SCENARIO.toml [--run tb]     build and start; waits until the tree is whole
        [--profile A~B=C ...]                     put link A~B on a packet forwarder with profile C
                                                  (preset A-E or key=value,...; forward = A -> B)
  scripts/testbed shape A B PROFILE               change a packet link's profile live
  scripts/testbed profiles                        list the presets A-E
  scripts/testbed status [--run tb] [--json]      every node's tree, and whether it is whole
  scripts/testbed link A B down|up [--run tb]     cut / restore a cable (both veth ends)
  scripts/testbed node NODE kill|stop|start       crash (SIGKILL), stop (SIGTERM) or start a node
  scripts/testbed run SCENARIO.toml [--json]      up, play the scenario's events one after another,
                                                  measure reconvergence beside the simulator, down
  scripts/testbed down [--run tb | --all]         kill and remove everything of a run, even after a crash
Work files (data dirs, logs, state.json) live in /tmp/meshmeet-testbed/RUN unless --work is given.
This module must never hold testbed logic itself (bed.py does) nor leave a run half-built: a
failed `up` tears down what it built.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from pathlib import Path

from ..errors import MeshmeetError
from ..sim.scenario import load_scenario
from . import netns
from .bed import Testbed
from .delayline import EmulatorError
from .plan import NETNS_PREFIX, check_run_name, make_plan, run_prefix
from .profiles import PRESETS, describe

DEFAULT_RUN = "tb"
WORK_ROOT = Path("/tmp/meshmeet-testbed")
SCENARIO_COPY = "scenario.toml"
PROFILES_FILE = "profiles.json"


def _work(args: argparse.Namespace) -> Path:
    return Path(args.work) if args.work else WORK_ROOT / check_run_name(args.run)


def parse_link_profile(text: str) -> tuple[tuple[str, str], str]:
    """"A~B=SPEC" -> ((A, B), SPEC); the spec itself is checked by make_plan."""
    link, eq, spec = text.partition("=")
    a, tilde, b = link.partition("~")
    if not eq or not tilde or not a or not b or not spec:
        raise EmulatorError(f"cần dạng A~B=HỒ_SƠ, không phải {text!r}", f"expected A~B=PROFILE, got {text!r}")
    return (a, b), spec


def _bed(args: argparse.Namespace, scenario_path: Path | None = None) -> Testbed:
    work = _work(args)
    copy = work / SCENARIO_COPY
    saved = work / PROFILES_FILE
    if scenario_path is not None:
        scenario = load_scenario(scenario_path)
        profiles = dict(parse_link_profile(t) for t in getattr(args, "profile", None) or [])
        plan = make_plan(scenario, args.run, profiles)   # checks the profiles before anything is written
        work.mkdir(parents=True, exist_ok=True)
        if scenario_path.resolve() != copy.resolve():
            shutil.copyfile(scenario_path, copy)
        saved.write_text(json.dumps([[a, b, spec] for (a, b), spec in profiles.items()]))
        return Testbed(plan, work)
    if not copy.exists():
        raise netns.TestbedError(f"chưa có testbed '{args.run}' (chạy: scripts/testbed up KỊCH_BẢN)",
                                 f"no testbed '{args.run}' is up (run: scripts/testbed up SCENARIO)")
    profiles = {(a, b): spec for a, b, spec in json.loads(saved.read_text())} if saved.exists() else {}
    return Testbed(make_plan(load_scenario(copy), args.run, profiles), work)


def _print_trees(bed: Testbed) -> bool:
    trees = bed.trees()
    from .converge import check_tree

    verdict = check_tree(trees, bed.up_links(), bed.expected_roots())
    for host in bed.plan.hosts:
        tree = trees.get(host.node)
        state = "stopped" if host.node in bed.stopped else ("no answer" if tree is None else
                                                               f"root {tree['root']:<12} parent {tree['parent']}")
        print(f"  {host.node:<16} {host.netns:<24} {state}")
    print("cây liền / tree whole" if verdict.whole else f"cây chưa liền / tree not whole: {verdict.why}")
    return verdict.whole


def cmd_up(args: argparse.Namespace) -> int:
    bed = _bed(args, Path(args.scenario))
    bed.prepare()
    started = time.monotonic()
    bed.up()
    m = bed.wait_whole("start", since=started)
    print(f"Testbed '{args.run}' up: {len(bed.plan.hosts)} nodes, {len(bed.plan.links)} links, work {bed.work}")
    print(f"tree whole after {m.seconds} s" if m.seconds is not None else f"tree not whole yet: {m.verdict.why}")
    _print_trees(bed)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    bed = _bed(args)
    if args.json:
        trees = bed.trees()
        from .converge import check_tree

        verdict = check_tree(trees, bed.up_links(), bed.expected_roots())
        print(json.dumps({"run": args.run, "trees": trees, "whole": verdict.whole, "why": verdict.why,
                          "stopped": sorted(bed.stopped), "cut": [sorted(c) for c in bed.cut]}, ensure_ascii=False))
        return 0
    return 0 if _print_trees(bed) else 1


def cmd_link(args: argparse.Namespace) -> int:
    bed = _bed(args)
    bed.set_link(args.a, args.b, args.state == "up")
    print(f"link {args.a}~{args.b} {args.state}")
    return 0


def cmd_shape(args: argparse.Namespace) -> int:
    bed = _bed(args)
    answer = bed.set_profile(args.a, args.b, args.profile)
    print(f"link {args.a}~{args.b} profile {args.profile}: {json.dumps(answer['dirs'])}")
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    for name, p in PRESETS.items():
        print(f"  {name}  {p.note:<48} {describe(p.forward)}")
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    bed = _bed(args)
    if args.action == "start":
        bed.start_node(args.node)
    else:
        bed.stop_node(args.node, signal.SIGKILL if args.action == "kill" else signal.SIGTERM)
    print(f"node {args.node} {args.action}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    prefix = NETNS_PREFIX if args.all else run_prefix(args.run)
    removed = netns.cleanup(prefix)
    state = _work(args) / "state.json"
    if not args.all:
        state.unlink(missing_ok=True)
    print(f"removed {len(removed)} namespaces" + (f": {' '.join(removed)}" if removed else ""))
    return 0


def play(bed: Testbed, events, on_row=None) -> list[dict]:
    """Apply the scenario's events in order, each once the tree is whole again; measure each."""
    rows = []
    briefing: str | None = None
    for event in events:
        started = time.monotonic()
        if event.action in ("link_down", "link_up"):
            bed.set_link(event.link[0], event.link[1], event.action == "link_up")
        elif event.action == "node_down":
            bed.stop_node(event.node)
        elif event.action == "node_up":
            bed.start_node(event.node)
        else:
            bed.api(event.node, "briefing", {"action": "start" if event.action == "briefing_start" else "stop"})
            briefing = event.node if event.action == "briefing_start" else None
        m = bed.wait_whole(event.label, since=started, expected={} if briefing else None)
        row = {"event": event.label, "testbed_s": m.seconds, "whole": m.seconds is not None, "why": m.verdict.why}
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


def cmd_run(args: argparse.Namespace) -> int:
    from ..sim import run_scenario

    path = Path(args.scenario)
    bed = _bed(args, path)
    sim = run_scenario(path)
    sim_rows = sim["events"]
    try:
        bed.prepare()
        started = time.monotonic()
        bed.up()
        first = bed.wait_whole("start", since=started)
        rows = [{"event": "start", "testbed_s": first.seconds, "whole": first.seconds is not None, "why": first.verdict.why}]
        if not args.json:
            print(f"{'event':<28} {'testbed s':>10} {'simulated s':>12}")

        def show(row: dict) -> None:
            if args.json:
                return
            sim_s = next((r["converged_after_s"] for r in sim_rows if r["event"] == row["event"]), None)
            print(f"{row['event']:<28} {row['testbed_s'] if row['testbed_s'] is not None else 'not whole':>10} "
                  f"{sim_s if sim_s is not None else '—':>12}")

        show(rows[0])
        rows += play(bed, load_scenario(path).events, on_row=show)
    finally:
        if not args.keep:
            bed.down()
    for row in rows:
        row["simulated_s"] = next((r["converged_after_s"] for r in sim_rows if r["event"] == row["event"]), None)
    if args.json:
        print(json.dumps({"scenario": sim["scenario"], "run": args.run, "events": rows}, ensure_ascii=False))
    return 0 if all(r["whole"] for r in rows) else 1


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # so `run` still tears down when terminated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testbed", description="meshmeet testbed: real nodes in network namespaces")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn, help_text: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_text, description=help_text)
        c.add_argument("--run", default=DEFAULT_RUN, help="run name, 1-8 lowercase letters/digits (default tb)")
        c.add_argument("--work", default=None, help=f"work directory (default {WORK_ROOT}/RUN)")
        c.set_defaults(fn=fn)
        return c

    c = add("up", cmd_up, "build and start a scenario")
    c.add_argument("scenario")
    c.add_argument("--profile", action="append", default=[], metavar="A~B=PROFILE",
                   help="put link A~B on a packet forwarder (preset A-E or key=value,...; repeatable)")
    c = add("shape", cmd_shape, "change a packet link's profile live")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("profile")
    add("profiles", cmd_profiles, "list the link profile presets")
    add("status", cmd_status, "every node's tree").add_argument("--json", action="store_true")
    c = add("link", cmd_link, "cut or restore a link")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("state", choices=["down", "up"])
    c = add("node", cmd_node, "kill, stop or start a node")
    c.add_argument("node")
    c.add_argument("action", choices=["kill", "stop", "start"])
    c = add("run", cmd_run, "up, play the scenario's events, measure, down")
    c.add_argument("scenario")
    c.add_argument("--profile", action="append", default=[], metavar="A~B=PROFILE",
                   help="put link A~B on a packet forwarder (repeatable)")
    c.add_argument("--json", action="store_true")
    c.add_argument("--keep", action="store_true", help="leave the testbed up afterwards")
    add("down", cmd_down, "remove a run's namespaces and processes").add_argument(
        "--all", action="store_true", help=f"every {NETNS_PREFIX}* namespace")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.fn is cmd_profiles:
            return cmd_profiles(args)
        why = netns.missing_requirements()
        if why:
            raise netns.TestbedError(f"không chạy được ở đây: {why}", f"cannot run here: {why}")
        return int(args.fn(args) or 0)
    except MeshmeetError as e:
        print(f"testbed: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
