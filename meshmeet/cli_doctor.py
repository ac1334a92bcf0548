"""`meshmeet doctor`: print every finding (Vietnamese, English, the fix) and exit 1 if any is a
problem. Argument handling and printing only; the checks are in meshmeet/doctor/."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable


def add_commands(sub: argparse._SubParsersAction, add_data_dir: Callable[[argparse.ArgumentParser], None]) -> dict:
    text = "kiểm tra nút và cách sửa / check this node and say how to fix it"
    c = sub.add_parser("doctor", help=text, description=text + " (exit 1 when something is wrong)")
    add_data_dir(c)
    c.add_argument("--json", action="store_true")
    c.add_argument("--min-free-mib", type=int, default=None, help="warn below this much free disk (default 512)")
    return {"doctor": cmd_doctor}


def cmd_doctor(args: argparse.Namespace) -> int:
    from .cli import api_call
    from .doctor import local
    from .doctor.findings import exit_code, format_findings
    from .doctor.run import run_doctor

    min_free = local.MIN_FREE_BYTES if args.min_free_mib is None else args.min_free_mib << 20
    findings = run_doctor(args.data_dir, api_call, min_free_bytes=min_free)
    if args.json:
        print(json.dumps({"findings": [f.as_dict() for f in findings], "exit_code": exit_code(findings)},
                         ensure_ascii=False))
    else:
        print(format_findings(findings))
    return exit_code(findings)
