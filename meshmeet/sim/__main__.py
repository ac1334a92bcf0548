"""`python -m meshmeet.sim SCENARIO.toml [--json]`: run one scenario and print its report.

This module must never do more than parse arguments, call run_scenario and print.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import MeshmeetError
from .report import format_report, run_scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshmeet.sim", description="Simulate a commune's relay tree.")
    parser.add_argument("scenario", help="scenario TOML file")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        report = run_scenario(args.scenario)
    except MeshmeetError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 1 if report["loop_ever"] else 0


if __name__ == "__main__":
    sys.exit(main())
