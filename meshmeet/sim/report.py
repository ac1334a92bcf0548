"""`meshmeet simulate`: run a scenario and turn the simulator's observations into a report.

run_scenario(path_or_dict) -> report dict (JSON-ready); format_report(report) -> a text table.
This module must never print or exit; the CLI and `python -m meshmeet.sim` do that.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..tree.outputs import TreeTimers
from .network import Simulator
from .scenario import Scenario, load_scenario

MAX_LISTED_NODES = 20


def simulate(scenario: Scenario, timers: TreeTimers | None = None) -> Simulator:
    """Run a loaded scenario to its end and return the simulator (for callers that want details)."""
    sim = Simulator(scenario, timers)
    sim.run()
    return sim


def build_report(sim: Simulator, wall_s: float) -> dict[str, Any]:
    scenario = sim.scenario
    windows = []
    for w in sim.windows:
        windows.append({
            "at_s": round(w.at, 6),
            "event": w.label,
            "converged_after_s": w.converged_after_s,
            "root": w.root,
            "roots": w.roots,
            "depth": w.depth,
            "unreachable": w.unreachable[:MAX_LISTED_NODES],
            "unreachable_count": len(w.unreachable),
            "messages": w.messages,
            "tree_changes": w.changes,
        })
    loads = sim.link_loads()
    steady = [row["steady_control_bytes_per_min"] for row in loads if row["steady_control_bytes_per_min"] is not None]
    bcasts = sim.broadcasts
    missed_stable = sum(len(b.expected - b.received) for b in bcasts if b.stable)
    return {
        "scenario": scenario.name,
        "nodes": len(scenario.nodes),
        "links": len(scenario.links),
        "duration_s": scenario.duration_s,
        "seed": scenario.seed,
        "loop_ever": sim.loop_ever,
        "loop_first": None if sim.loop_first is None else {"at_s": sim.loop_first[0], "cycle": sim.loop_first[1]},
        "events": windows,
        "final": {
            "converged": sim.converged,
            "root": windows[-1]["root"],
            "depth": windows[-1]["depth"],
            "unreachable_count": windows[-1]["unreachable_count"],
            "parents": {node: (core.parent if core is not None else "down") for node, core in sim.cores.items()},
        },
        "control": {
            "messages": sim.messages_total,
            "messages_lost": sim.messages_lost,
            "steady_window_s": round(sim.steady_seconds, 3),
            "steady_bytes_per_link_per_min_max": max(steady) if steady else None,
            "steady_bytes_per_link_per_min_mean": round(sum(steady) / len(steady), 1) if steady else None,
        },
        "broadcasts": {
            "sent": len(bcasts),
            "sent_while_stable": sum(1 for b in bcasts if b.stable),
            "deliveries": sum(len(b.received) for b in bcasts),
            "duplicates": sum(b.duplicates for b in bcasts),
            "missed": sum(len(b.expected - b.received) for b in bcasts),
            "missed_while_stable": missed_stable,
        },
        "link_load": loads,
        "wall_s": round(wall_s, 3),
    }


def run_scenario(source: str | Path | dict[str, Any], timers: TreeTimers | None = None) -> dict[str, Any]:
    """Load, run and report one scenario (TOML path or dict). Raises ScenarioError on a bad scenario."""
    scenario = load_scenario(source)
    started = time.perf_counter()
    sim = simulate(scenario, timers)
    return build_report(sim, time.perf_counter() - started)


def _fmt_s(value: float | None) -> str:
    return "không hội tụ / not converged" if value is None else f"{value:.3f}"


def format_report(report: dict[str, Any]) -> str:
    """A readable table of a report (Vietnamese first where it speaks to the operator)."""
    lines = [
        f"Kịch bản / scenario: {report['scenario']}  —  {report['nodes']} nút/nodes, {report['links']} liên kết/links, "
        f"{report['duration_s']:g} s, seed {report['seed']}",
        f"Vòng lặp / loop ever: {'CÓ / YES' if report['loop_ever'] else 'không / no'}",
        "",
        f"{'t (s)':>9}  {'sự kiện / event':<34} {'hội tụ sau / converged after (s)':>32} {'gốc / root':<14} {'sâu/depth':>9} {'ngoài/unreach.':>14}",
    ]
    for w in report["events"]:
        lines.append(
            f"{w['at_s']:>9.2f}  {w['event']:<34} {_fmt_s(w['converged_after_s']):>32} {str(w['root']):<14} "
            f"{w['depth']:>9} {w['unreachable_count']:>14}"
        )
    c, b = report["control"], report["broadcasts"]
    lines += [
        "",
        f"Điều khiển ổn định / steady control per link: max {c['steady_bytes_per_link_per_min_max']} B/min, "
        f"mean {c['steady_bytes_per_link_per_min_mean']} B/min (over {c['steady_window_s']:g} s steady)",
        f"Tin nhắn / messages: {c['messages']} sent, {c['messages_lost']} lost",
        f"Quảng bá / broadcasts: {b['sent']} sent ({b['sent_while_stable']} while stable), {b['deliveries']} deliveries, "
        f"{b['duplicates']} duplicates, {b['missed']} missed ({b['missed_while_stable']} while stable)",
    ]
    heavy = sorted(report["link_load"], key=lambda r: -(r["bytes_a_to_b"] + r["bytes_b_to_a"]))[:5]
    if heavy:
        lines.append("Liên kết tải nặng nhất / busiest links:")
        for row in heavy:
            lines.append(f"  {row['a']}~{row['b']} ({row['kind']}): {row['bytes_a_to_b'] + row['bytes_b_to_a']} B "
                         f"(control {row['control_bytes']} B, broadcast {row['broadcast_bytes']} B)")
    lines.append(f"Thời gian chạy / wall time: {report['wall_s']:.2f} s")
    return "\n".join(lines)
