"""Deterministic simulation of a commune: the real tree cores over simulated links, from a scenario.

This package must never open sockets; `run_scenario` and `format_report` are what the CLI calls.
"""

from .network import Simulator
from .report import build_report, format_report, run_scenario, simulate
from .scenario import EventSpec, Scenario, ScenarioError, load_scenario

__all__ = ["EventSpec", "Scenario", "ScenarioError", "Simulator", "build_report", "format_report",
           "load_scenario", "run_scenario", "simulate"]
