"""`meshmeet lora ...`: check the configured modem, run emulated modems, send an urgent alert.

`lora check --data-dir DIR` reads [lora] from DIR/config.toml and reports in plain words;
`lora emulate --nodes N` runs emulated modems on ptys until Ctrl-C; `lora alert` and `lora
status` talk to the running node. This module must never hold LoRa protocol logic (meshmeet.lora
does) and never print a traceback for an operator's mistake.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Callable

import trio

from . import config as config_mod
from .errors import ConfigError, MeshmeetError


def add_commands(sub, add_data_dir: Callable[[argparse.ArgumentParser], None]) -> dict:
    text = "modem LoRa: kiểm tra, giả lập, cảnh báo / LoRa modem: check, emulate, alert"
    lora = sub.add_parser("lora", help=text, description=text)
    lsub = lora.add_subparsers(dest="lora_command", metavar="LORA_COMMAND")
    lsub.required = True

    c = lsub.add_parser("check", help="kiểm tra modem theo cấu hình [lora] / check the modem set in [lora]")
    add_data_dir(c)
    c.add_argument("--json", action="store_true")

    c = lsub.add_parser("emulate", help="giả lập modem trên pty / emulated modems on ptys until Ctrl-C")
    c.add_argument("--nodes", type=int, required=True)
    c.add_argument("--topology", type=Path, help="TOML: nodes, default_loss, [[link]] a, b, loss")
    c.add_argument("--loss", type=float, default=0.0, help="loss per link in a chain (0..1)")
    c.add_argument("--model", choices=["rak3172", "e22"], default="rak3172")
    c.add_argument("--behaviour", choices=["ok", "silent", "garbage"], default="ok")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--json", action="store_true", help="print {radio id: pty path} as one JSON line")

    c = lsub.add_parser("alert", help="phát cảnh báo khẩn qua LoRa (trụ sở) / send an urgent LoRa alert (HQ)")
    add_data_dir(c)
    c.add_argument("text")
    c.add_argument("--json", action="store_true")

    c = lsub.add_parser("status", help="trạng thái LoRa của nút / the node's LoRa status")
    add_data_dir(c)
    c.add_argument("--json", action="store_true")
    return {"lora": cmd_lora}


def cmd_lora(args: argparse.Namespace) -> int:
    return {"check": _check, "emulate": _emulate, "alert": _alert, "status": _status}[args.lora_command](args)


def _check(args: argparse.Namespace) -> int:
    from .lora_io.check import LoraConfig, check_modem
    from .node.node import read_run_file

    settings = config_mod.load(args.data_dir).lora
    if settings is None:
        raise ConfigError(f"Chưa cấu hình [lora] trong {args.data_dir / config_mod.CONFIG_FILE}",
                          f"no [lora] section in {args.data_dir / config_mod.CONFIG_FILE}")
    if read_run_file(args.data_dir):
        raise MeshmeetError("Nút đang chạy và giữ cổng modem; dừng nút rồi kiểm tra, hoặc xem: meshmeet lora status",
                            "the node is running and holds the modem port; stop it first, or see: meshmeet lora status")
    role = settings.role or _roster_role(args.data_dir)
    config = LoraConfig(port=settings.port, model=settings.model, region=settings.region, role=role,
                        preset=settings.preset, freq_hz=settings.freq_hz, power_dbm=settings.power_dbm,
                        e22_channel=settings.e22_channel)
    report = trio.run(check_modem, config)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
        return 0 if report.ok else 1
    if report.ok:
        applied = ", ".join(f"{k}={v}" for k, v in report.applied.items())
        print(f"Modem {report.model} ở {report.port} đã nhận cấu hình / modem answered and kept the settings: {applied}")
        print(f"Ngân sách phát / airtime budget: {report.budget_s_per_hour:.0f} s mỗi giờ / per hour ({role})")
        return 0
    print(f"Modem {report.model} ở {report.port}: có vấn đề / problems:")
    for p in report.problems:
        print(f"  - {p.vi} / {p.en}")
    return 1


def _roster_role(data_dir: Path) -> str:
    try:
        from .membership.datadir import load_membership

        return load_membership(data_dir)[2].role
    except MeshmeetError:
        return "hall"


def _emulate(args: argparse.Namespace) -> int:
    from .lora_io.check import emulate
    from .lora_io.emulator import Topology

    if args.nodes < 1 or not 0.0 <= args.loss <= 1.0:
        raise MeshmeetError("Cần --nodes >= 1 và 0 <= --loss <= 1", "need --nodes >= 1 and 0 <= --loss <= 1")
    topology = None
    if args.topology is not None:
        try:
            topology = Topology.load(args.topology)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"Không đọc được tệp {args.topology}: {e}", f"cannot read {args.topology}: {e}") from None

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                paths = await nursery.start(lambda task_status: emulate(
                    args.nodes, topology, model=args.model, loss=args.loss, seed=args.seed,
                    behaviour=args.behaviour, task_status=task_status))
                if args.json:
                    print(json.dumps({str(k): v for k, v in paths.items()}), flush=True)
                else:
                    for node, path in paths.items():
                        print(f"radio {node}: {path}", flush=True)
                    print("Ctrl-C để dừng / to stop", file=sys.stderr, flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)
    return 0


def _alert(args: argparse.Namespace) -> int:
    from .cli import api_call

    record = api_call(args.data_dir, "lora_alert", {"text": args.text})
    if args.json:
        print(json.dumps(record, ensure_ascii=False))
    else:
        print(f"Đã xếp cảnh báo {record['id']} / alert queued; chờ xác nhận từ / awaiting acks from: "
              f"{', '.join(record['missing_sites']) or '-'}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from .cli import api_call

    lora = api_call(args.data_dir, "status").get("lora", {})
    if args.json:
        print(json.dumps(lora, ensure_ascii=False))
        return 0
    print(f"LoRa: {lora.get('state')}  key {lora.get('key')}  {lora.get('model', '')} {lora.get('port', '')}")
    if "error" in lora:
        print(f"  {lora['error']['vi']} / {lora['error']['en']}")
    air = lora.get("airtime")
    if air:
        print(f"  airtime {air['used_s']:.1f}/{air['budget_s_per_hour']:.0f} s per hour, queued {air['queued']}")
    for link in lora.get("links", []):
        print(f"  {link['state']:<5} lora {link['peer']}  {link['site']:<20} relays {link['relays']}")
    for a in lora.get("alerts", []):
        print(f"  alert {a['id']} {a['direction']}: {a['text'][:40]!r} acked {a['acked_sites']} missing {a['missing_sites']}")
    return 0
