"""The shipped scenarios, the report, the scenario loader and `python -m meshmeet.sim`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meshmeet.sim import ScenarioError, format_report, load_scenario, run_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scripts" / "scenarios"
GOAL_BYTES_PER_LINK_PER_MIN = 1024


def check_report(report: dict, *, failover_goal_s: float) -> None:
    assert report["loop_ever"] is False
    for window in report["events"]:
        assert window["converged_after_s"] is not None, window
        if window["event"].startswith(("node_down", "node_up", "briefing")):
            assert window["converged_after_s"] < failover_goal_s, window
    assert report["final"]["converged"] and report["final"]["unreachable_count"] == 0
    assert report["control"]["steady_bytes_per_link_per_min_max"] < GOAL_BYTES_PER_LINK_PER_MIN
    assert report["broadcasts"]["duplicates"] == 0
    assert report["broadcasts"]["missed_while_stable"] == 0
    assert report["broadcasts"]["sent_while_stable"] > 0


def test_commune_21() -> None:
    report = run_scenario(SCENARIOS / "commune-21.toml")
    check_report(report, failover_goal_s=2.0)
    by_event = {w["event"]: w for w in report["events"]}
    assert by_event["node_down hq"]["root"] == "thon-01"           # the backup hall takes over
    assert by_event["node_up hq"]["root"] == "hq"                  # and HQ takes the root back
    assert by_event["link_down hq~thon-07"]["unreachable_count"] == 0
    parents = report["final"]["parents"]
    assert parents["hq"] is None and parents["thon-19"] == "thon-05" and parents["thon-07"] == "hq"
    text = format_report(report)
    assert "commune-21" in text and "node_down hq" in text and "hội tụ" in text


def test_commune_126() -> None:
    check_report(run_scenario(SCENARIOS / "commune-126.toml"), failover_goal_s=2.0)


@pytest.mark.slow
def test_province_1000() -> None:
    report = run_scenario(SCENARIOS / "province-1000.toml")
    check_report(report, failover_goal_s=3.0)
    assert report["nodes"] == 1000


def test_runs_are_deterministic() -> None:
    first = run_scenario(SCENARIOS / "commune-21.toml")
    second = run_scenario(SCENARIOS / "commune-21.toml")
    first.pop("wall_s"), second.pop("wall_s")
    assert first == second


def test_shipped_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(SCENARIOS / "generate.py"), str(tmp_path)], check=True, capture_output=True)
    for name in ("commune-21", "commune-126", "province-1000"):
        assert (tmp_path / f"{name}.toml").read_text() == (SCENARIOS / f"{name}.toml").read_text()


def test_shipped_commune_21_has_the_asked_shape() -> None:
    scenario = load_scenario(SCENARIOS / "commune-21.toml")
    halls = [n.id for n in scenario.nodes if n.role != "hq"]
    assert len(halls) == 21
    to_hq = {l.b: l.kind for l in scenario.links if l.a == "hq"}
    assert sum(k in ("lan", "fibre") for k in to_hq.values()) == 12
    assert sum(k == "4g" for k in to_hq.values()) == 6
    assert len(set(halls) - set(to_hq)) == 3


def test_cli_json(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "meshmeet.sim", str(SCENARIOS / "commune-21.toml"), "--json"],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    report = json.loads(out.stdout)
    assert report["scenario"] == "commune-21" and report["loop_ever"] is False


def test_bad_scenarios_give_bilingual_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario({"nodes": [{"id": "a"}], "links": [{"a": "a", "b": "zz"}]})
    assert "hai nút" in err.value.vi and "links[0]" in err.value.en
    with pytest.raises(ScenarioError):
        load_scenario({"nodes": [{"id": "a"}], "events": [{"at": 1, "action": "explode", "node": "a"}]})
    bad = tmp_path / "bad.toml"
    bad.write_text("nodes = [")
    out = subprocess.run([sys.executable, "-m", "meshmeet.sim", str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "TOML" in out.stderr and "Kịch bản" in out.stderr


def test_briefing_shows_on_every_node_of_the_component_and_stops() -> None:
    from meshmeet.sim import Simulator

    sim = Simulator(load_scenario(SCENARIOS / "commune-21.toml"))
    sim.run_until(141.0)                                  # HQ down since 120, briefing since 140
    component = next(c for c in sim.components() if "thon-01" in c)
    assert len(component) > 15
    assert all(sim.cores[n].root == "thon-01" and sim.cores[n].briefing for n in component)  # type: ignore[union-attr]
    sim.run_until(171.0)                                  # stopped at 170
    assert not any(sim.cores[n].briefing for n in component)  # type: ignore[union-attr]


def test_flapping_link_is_held_down_in_the_simulator() -> None:
    """hq~a flaps four times in 20 s: a uses the detour through b while the link is held down,
    then returns to the direct link once the hold-down is over."""
    from meshmeet.sim import Simulator

    events = []
    for i in range(4):
        events.append({"at": 10.0 + 5 * i, "action": "link_down", "link": ["hq", "a"]})
        events.append({"at": 12.0 + 5 * i, "action": "link_up", "link": ["hq", "a"]})
    raw = {
        "duration_s": 120.0, "seed": 3,
        "nodes": [{"id": "hq", "role": "hq"}, {"id": "a"}, {"id": "b"}],
        "links": [{"a": "hq", "b": "a", "kind": "lan", "detect_s": 0.5}, {"a": "hq", "b": "b", "kind": "lan"},
                  {"a": "a", "b": "b", "kind": "4g"}],
        "events": events,
    }
    sim = Simulator(load_scenario(raw))
    sim.run_until(9.0)
    assert sim.cores["a"].parent == "hq"                  # type: ignore[union-attr]
    sim.run_until(27.5)                                   # link back up at 27 after 4 losses: held ~8 s
    assert sim.link_phys_up("hq", "a") and sim.cores["a"].parent == "b"   # type: ignore[union-attr]
    sim.run_until(40.0)
    assert sim.cores["a"].parent == "hq"                  # type: ignore[union-attr]
    assert not sim.loop_ever and sim.converged
