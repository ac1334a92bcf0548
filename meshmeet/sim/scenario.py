"""Scenario files for the simulator: nodes, links, events, workload (TOML or an equivalent dict).

The format is documented in docs/operations.md. Loading validates everything and raises
ScenarioError (Vietnamese first) with the offending item named. This module must never run a
simulation or touch the network.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MeshmeetError

KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    # bandwidth (bit/s), one-way delay (s), loss ratio, metered, link-loss detection time (s)
    "lan": {"bandwidth_bps": 100e6, "delay_s": 0.0005, "loss": 0.0, "metered": False, "detect_s": 1.0},
    "fibre": {"bandwidth_bps": 1e9, "delay_s": 0.002, "loss": 0.0, "metered": False, "detect_s": 1.0},
    "4g": {"bandwidth_bps": 10e6, "delay_s": 0.035, "loss": 0.01, "metered": True, "detect_s": 3.0},
    "lora": {"bandwidth_bps": 5470.0, "delay_s": 0.1, "loss": 0.05, "metered": False, "detect_s": 30.0},
}
ROLE_PRIORITY = {"hq": 100, "backup": 50, "hall": 10, "relay": 1}
ACTIONS = ("link_down", "link_up", "node_down", "node_up", "briefing_start", "briefing_stop")
DEFAULT_WIRE_OVERHEAD_BYTES = 20   # length prefix, service byte and the 17 B AEAD overhead of a link message
DEFAULT_STEADY_SETTLE_S = 40.0     # after an event, traffic counts as steady state once this has passed


class ScenarioError(MeshmeetError):
    """A scenario file that cannot be simulated."""

    exit_code = 2

    def __init__(self, vi: str, en: str) -> None:
        super().__init__(f"Kịch bản mô phỏng lỗi: {vi}", f"Bad simulation scenario: {en}")


@dataclass(frozen=True)
class NodeSpec:
    id: str
    priority: int
    role: str


@dataclass(frozen=True)
class LinkSpec:
    a: str
    b: str
    kind: str
    bandwidth_bps: float
    delay_s: float
    loss: float
    metered: bool
    detect_s: float

    @property
    def name(self) -> str:
        return f"{self.a}~{self.b}"


@dataclass(frozen=True)
class EventSpec:
    at: float
    action: str
    node: str | None = None
    link: tuple[str, str] | None = None

    @property
    def label(self) -> str:
        target = self.node if self.node is not None else f"{self.link[0]}~{self.link[1]}" if self.link else ""
        return f"{self.action} {target}"


@dataclass(frozen=True)
class WorkloadSpec:
    broadcast_every_s: float | None = None
    payload_bytes: int = 160
    sources: tuple[str, ...] | None = None   # None: any up node, chosen by the seeded generator


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: float
    seed: int
    nodes: tuple[NodeSpec, ...]
    links: tuple[LinkSpec, ...]
    events: tuple[EventSpec, ...]
    workload: WorkloadSpec
    wire_overhead_bytes: int = DEFAULT_WIRE_OVERHEAD_BYTES
    steady_settle_s: float = DEFAULT_STEADY_SETTLE_S
    drop_lost: bool = False


def _fail(vi: str, en: str) -> ScenarioError:
    return ScenarioError(vi, en)


def _number(table: dict[str, Any], key: str, default: float | None, where: str, *, minimum: float = 0.0) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise _fail(f"{where}: '{key}' phải là số ≥ {minimum}", f"{where}: '{key}' must be a number >= {minimum}")
    return float(value)


def load_scenario(source: str | Path | dict[str, Any]) -> Scenario:
    """Read and validate a scenario from a TOML path or a dict of the same shape."""
    if isinstance(source, dict):
        data = source
    else:
        path = Path(source)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise _fail(f"không tìm thấy tệp {path}", f"file not found: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise _fail(f"tệp {path} không phải TOML hợp lệ ({exc})", f"{path} is not valid TOML ({exc})") from None
    name = str(data.get("name", "scenario"))
    duration = _number(data, "duration_s", 120.0, "scenario", minimum=0.001)
    seed = data.get("seed", 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _fail("'seed' phải là số nguyên", "'seed' must be an integer")

    nodes: list[NodeSpec] = []
    for i, raw in enumerate(data.get("nodes", [])):
        where = f"nodes[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"] or len(raw["id"]) > 64:
            raise _fail(f"{where}: thiếu 'id'", f"{where}: missing 'id'")
        role = raw.get("role", "hall")
        if role not in ROLE_PRIORITY:
            raise _fail(f"{where}: vai trò '{role}' không hợp lệ", f"{where}: unknown role '{role}'")
        priority = raw.get("priority", ROLE_PRIORITY[role])
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority < 2**32:
            raise _fail(f"{where}: 'priority' phải là số nguyên ≥ 0", f"{where}: 'priority' must be an integer >= 0")
        nodes.append(NodeSpec(raw["id"], priority, role))
    ids = {n.id for n in nodes}
    if not nodes:
        raise _fail("không có nút nào", "no nodes")
    if len(ids) != len(nodes):
        raise _fail("có 'id' nút bị trùng", "duplicate node ids")

    links: list[LinkSpec] = []
    seen_pairs: set[frozenset[str]] = set()
    for i, raw in enumerate(data.get("links", [])):
        where = f"links[{i}]"
        if not isinstance(raw, dict) or raw.get("a") not in ids or raw.get("b") not in ids or raw["a"] == raw["b"]:
            raise _fail(f"{where}: 'a' và 'b' phải là hai nút khác nhau đã khai báo",
                        f"{where}: 'a' and 'b' must be two different declared nodes")
        kind = raw.get("kind", "lan")
        if kind not in KIND_DEFAULTS:
            raise _fail(f"{where}: loại liên kết '{kind}' không hợp lệ", f"{where}: unknown link kind '{kind}'")
        pair = frozenset((raw["a"], raw["b"]))
        if pair in seen_pairs:
            raise _fail(f"{where}: liên kết bị trùng", f"{where}: duplicate link")
        seen_pairs.add(pair)
        d = KIND_DEFAULTS[kind]
        loss = _number(raw, "loss", d["loss"], where)
        if loss >= 1.0:
            raise _fail(f"{where}: 'loss' phải nhỏ hơn 1", f"{where}: 'loss' must be below 1")
        metered = raw.get("metered", d["metered"])
        if not isinstance(metered, bool):
            raise _fail(f"{where}: 'metered' phải là true/false", f"{where}: 'metered' must be true/false")
        links.append(LinkSpec(
            raw["a"], raw["b"], kind,
            bandwidth_bps=_number(raw, "bandwidth_bps", d["bandwidth_bps"], where, minimum=1.0),
            delay_s=_number(raw, "delay_s", d["delay_s"], where),
            loss=loss, metered=metered,
            detect_s=_number(raw, "detect_s", d["detect_s"], where),
        ))

    events: list[EventSpec] = []
    for i, raw in enumerate(data.get("events", [])):
        where = f"events[{i}]"
        if not isinstance(raw, dict) or raw.get("action") not in ACTIONS:
            raise _fail(f"{where}: 'action' phải là một trong {', '.join(ACTIONS)}",
                        f"{where}: 'action' must be one of {', '.join(ACTIONS)}")
        at = _number(raw, "at", None, where)
        action = raw["action"]
        if action.startswith("link_"):
            link = raw.get("link")
            if not isinstance(link, list) or len(link) != 2 or frozenset(link) not in seen_pairs:
                raise _fail(f"{where}: 'link' phải là [a, b] của một liên kết đã khai báo",
                            f"{where}: 'link' must be [a, b] of a declared link")
            events.append(EventSpec(at, action, link=(link[0], link[1])))
        else:
            if raw.get("node") not in ids:
                raise _fail(f"{where}: 'node' phải là một nút đã khai báo", f"{where}: 'node' must be a declared node")
            events.append(EventSpec(at, action, node=raw["node"]))
    events.sort(key=lambda e: e.at)

    raw_work = data.get("workload", {})
    if not isinstance(raw_work, dict):
        raise _fail("'workload' phải là một bảng", "'workload' must be a table")
    every = raw_work.get("broadcast_every_s")
    if every is not None:
        every = _number(raw_work, "broadcast_every_s", None, "workload", minimum=0.001)
    sources = raw_work.get("sources", "all")
    if sources == "all":
        source_ids = None
    elif isinstance(sources, list) and sources and all(s in ids for s in sources):
        source_ids = tuple(sources)
    else:
        raise _fail("'workload.sources' phải là \"all\" hoặc danh sách nút", "'workload.sources' must be \"all\" or a list of nodes")
    payload = raw_work.get("payload_bytes", 160)
    if isinstance(payload, bool) or not isinstance(payload, int) or not 0 <= payload <= 60_000:
        raise _fail("'workload.payload_bytes' không hợp lệ", "'workload.payload_bytes' is invalid")
    overhead = data.get("wire_overhead_bytes", DEFAULT_WIRE_OVERHEAD_BYTES)
    if isinstance(overhead, bool) or not isinstance(overhead, int) or overhead < 0:
        raise _fail("'wire_overhead_bytes' không hợp lệ", "'wire_overhead_bytes' is invalid")
    drop_lost = data.get("drop_lost", False)
    if not isinstance(drop_lost, bool):
        raise _fail("'drop_lost' phải là true/false", "'drop_lost' must be true/false")
    return Scenario(
        drop_lost=drop_lost, name=name, duration_s=duration, seed=seed, nodes=tuple(nodes), links=tuple(links), events=tuple(events),
        workload=WorkloadSpec(every, payload, source_ids), wire_overhead_bytes=overhead,
        steady_settle_s=_number(data, "steady_settle_s", DEFAULT_STEADY_SETTLE_S, "scenario"),
    )
