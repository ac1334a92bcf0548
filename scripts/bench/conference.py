#!/usr/bin/env python3
"""The whole conference (issue 15): one function per part, one JSON object with a key per part.

(a) "ingest": an upstream conference relayed into the mesh (scripts/bench/conference_ingest.py):
added latency source → decoded at a hall (p50/p95) and CPU cores of the ingest at 360p and 720p,
against plain PyAV decode + encode of the same stream in the same process model.
Goals (issue 15): added latency p95 <= 1 s, ingest <= 1 core at 720p.

    python scripts/bench/conference.py [--json] [--parts ingest] [--ingest-seconds 20]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conference_ingest import ingest, ingest_table  # noqa: E402

PARTS = {"ingest": ingest}


def _table(result: dict) -> str:
    lines = []
    if result.get("ingest"):
        lines.append(ingest_table(result["ingest"]))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    ap.add_argument("--ingest-seconds", type=float, default=20.0)
    args = ap.parse_args()
    result = {name: PARTS[name](args) for name in args.parts.split(",") if name}
    print(json.dumps(result, indent=1) if args.json else _table(result))


if __name__ == "__main__":
    main()
