"""Generate the shipped simulation scenarios (commune-21, commune-126, province-1000) as TOML.

Usage: python scripts/scenarios/generate.py [OUT_DIR]   (default: this directory)
The builders are plain functions returning scenario dicts, so the benchmark reuses them.
This script must never run a simulation; it only writes scenario files.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any


def _link(a: str, b: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"a": a, "b": b, "kind": kind, **extra}


def commune_21() -> dict[str, Any]:
    """HQ + 21 halls: 12 on LAN or fibre, 6 on 4G, 3 reachable only through a neighbour."""
    nodes = [{"id": "hq", "role": "hq", "priority": 100}]
    halls = [f"thon-{i:02d}" for i in range(1, 22)]
    for hall in halls:
        nodes.append({"id": hall, "role": "backup" if hall == "thon-01" else "hall"})
    links = []
    for i, hall in enumerate(halls[:12], start=1):
        links.append(_link("hq", hall, "lan" if i <= 6 else "fibre"))
    for hall in halls[12:18]:
        links.append(_link("hq", hall, "4g"))
    links += [
        _link("thon-05", "thon-19", "lan"),        # thon-19..21: no link of their own to HQ
        _link("thon-10", "thon-20", "lan"),
        _link("thon-15", "thon-21", "lan"),
        _link("thon-20", "thon-21", "lora"),
        _link("thon-07", "thon-08", "lan"),        # the backup path when thon-07's fibre is cut
        _link("thon-02", "thon-03", "lan"),
        _link("thon-13", "thon-14", "lora"),
        _link("thon-01", "thon-16", "4g"),
    ]
    # The wired halls also reach the backup hall thon-01 over the commune network, and the 4G halls
    # over the internet: links the tree only uses when HQ is down (they cost more than the HQ links).
    links += [_link("thon-01", hall, "fibre", delay_s=0.004) for hall in ("thon-02", "thon-04", "thon-09", "thon-11", "thon-12")]
    links += [_link("thon-01", hall, "4g") for hall in ("thon-13", "thon-14", "thon-17", "thon-18")]
    links += [_link("thon-08", "thon-09", "lan"), _link("thon-10", "thon-11", "lan"), _link("thon-15", "thon-16", "4g")]
    events = [
        {"at": 40.0, "action": "link_down", "link": ["hq", "thon-07"]},
        {"at": 80.0, "action": "link_up", "link": ["hq", "thon-07"]},
        {"at": 120.0, "action": "node_down", "node": "hq"},
        {"at": 140.0, "action": "briefing_start", "node": "thon-01"},
        {"at": 170.0, "action": "briefing_stop", "node": "thon-01"},
        {"at": 200.0, "action": "node_up", "node": "hq"},
    ]
    return {"name": "commune-21", "duration_s": 260.0, "seed": 21, "nodes": nodes, "links": links,
            "events": events, "workload": {"broadcast_every_s": 0.5, "payload_bytes": 160}}


def commune_126(seed: int = 126) -> dict[str, Any]:
    """HQ + 126 hamlets in 6 clusters: a fibre hub each, LAN/4G/neighbour-only hamlets, cross links."""
    rng = random.Random(seed)
    nodes = [{"id": "hq", "role": "hq", "priority": 100}]
    links = []
    hamlets = [f"ap-{i:03d}" for i in range(1, 127)]
    clusters = [hamlets[i::6] for i in range(6)]
    for c, members in enumerate(clusters):
        hub = members[0]
        for m in members:
            nodes.append({"id": m, "role": "backup" if c == 0 and m == hub else "hall"})
        links.append(_link("hq", hub, "fibre"))
        for j, m in enumerate(members[1:], start=1):
            if j % 3 == 0:
                links.append(_link("hq", m, "4g"))
                links.append(_link(members[j - 1], m, "lan"))
            elif j % 3 == 1:
                links.append(_link(hub, m, "lan"))
            else:
                links.append(_link(members[j - 1], m, "lan"))      # only through a neighbour
    for c in range(6):
        a, b = rng.choice(clusters[c][1:]), rng.choice(clusters[(c + 1) % 6][1:])
        links.append(_link(a, b, rng.choice(["lora", "4g"])))
    events = [
        {"at": 40.0, "action": "link_down", "link": ["hq", clusters[2][0]]},
        {"at": 80.0, "action": "link_up", "link": ["hq", clusters[2][0]]},
        {"at": 120.0, "action": "node_down", "node": "hq"},
        {"at": 170.0, "action": "node_up", "node": "hq"},
    ]
    return {"name": "commune-126", "duration_s": 230.0, "seed": seed, "nodes": nodes, "links": _dedupe(links),
            "events": events, "workload": {"broadcast_every_s": 1.0, "payload_bytes": 160}}


def province_1000(seed: int = 1000) -> dict[str, Any]:
    """Province HQ, 10 districts on a fibre ring, 45 communes, 944 halls: 1,000 nodes."""
    rng = random.Random(seed)
    nodes = [{"id": "province", "role": "hq", "priority": 1000}]
    links = []
    districts = [f"d{d:02d}" for d in range(10)]
    for d, district in enumerate(districts):
        nodes.append({"id": district, "role": "hq", "priority": 500})
        links.append(_link("province", district, "fibre"))
        links.append(_link(district, districts[(d + 1) % 10], "fibre"))
    communes = [f"{districts[c % 10]}-c{c // 10}" for c in range(45)]
    for c, commune in enumerate(communes):
        district = districts[c % 10]
        nodes.append({"id": commune, "role": "hq", "priority": 100})
        links.append(_link(district, commune, "fibre" if c % 3 else "4g"))
    halls_left = 1000 - len(nodes)
    for c, commune in enumerate(communes):
        count = halls_left // (45 - c)
        halls_left -= count
        halls = [f"{commune}-h{h:02d}" for h in range(count)]
        for h, hall in enumerate(halls):
            nodes.append({"id": hall, "role": "backup" if h == 0 else "hall"})
            r = h % 4
            if r == 0:
                links.append(_link(commune, hall, "fibre"))
            elif r == 1:
                links.append(_link(commune, hall, "lan"))
            elif r == 2:
                links.append(_link(commune, hall, "4g"))
                links.append(_link(halls[h - 1], hall, "lan"))
            else:
                links.append(_link(halls[h - 1], hall, "lan"))       # only through a neighbour
        if c > 0:
            prev = communes[c - 1]
            links.append(_link(f"{prev}-h00", f"{commune}-h00", rng.choice(["4g", "lora"])))
    events = [
        {"at": 40.0, "action": "link_down", "link": ["province", "d03"]},
        {"at": 60.0, "action": "link_down", "link": ["d04", "d04-c0"]},
        {"at": 80.0, "action": "node_down", "node": "province"},
        {"at": 120.0, "action": "node_up", "node": "province"},
        {"at": 140.0, "action": "link_up", "link": ["province", "d03"]},
        {"at": 150.0, "action": "link_up", "link": ["d04", "d04-c0"]},
    ]
    return {"name": "province-1000", "duration_s": 200.0, "seed": seed, "nodes": nodes, "links": _dedupe(links),
            "events": events, "workload": {"broadcast_every_s": 5.0, "payload_bytes": 160}}


def _dedupe(links: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for link in links:
        pair = frozenset((link["a"], link["b"]))
        if pair not in seen:
            seen.add(pair)
            out.append(link)
    return out


def to_toml(scenario: dict[str, Any]) -> str:
    """Write a scenario dict in the documented TOML layout (no TOML writer in the standard library)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    out = [f"# {scenario['name']}: generated by scripts/scenarios/generate.py; see docs/operations.md"]
    for key in ("name", "duration_s", "seed"):
        out.append(f"{key} = {value(scenario[key])}")
    out.append("")
    out.append("[workload]")
    out += [f"{k} = {value(v)}" for k, v in scenario["workload"].items()]
    for table in ("nodes", "links", "events"):
        for row in scenario[table]:
            out.append("")
            out.append(f"[[{table}]]")
            out += [f"{k} = {value(v)}" for k, v in row.items()]
    return "\n".join(out) + "\n"


BUILDERS = {"commune-21": commune_21, "commune-126": commune_126, "province-1000": province_1000}


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    for name, build in BUILDERS.items():
        (out_dir / f"{name}.toml").write_text(to_toml(build()), encoding="utf-8")
        print(f"wrote {out_dir / (name + '.toml')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
