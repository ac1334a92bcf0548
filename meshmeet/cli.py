"""The `meshmeet` command: parse arguments, call the library, print results or one-line errors.

Every failure an operator can cause prints one bilingual line and exits non-zero; a traceback
is a bug. This module must never implement protocol or storage logic itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import cli_pipe, cli_ports
from . import config as config_mod
from .errors import MeshmeetError, NotRunningError, leaf_errors

log = logging.getLogger("meshmeet")

HTTP_TIMEOUT_S = 10.0
# Modules that add subcommands: each has add_commands(subparsers, add_data_dir) -> {name: fn(args) -> int}.
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="meshmeet",
        description="Họp thôn qua mạng lưới mã hóa / village meetings over an encrypted mesh",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_text, description=help_text)
        return c

    def data_dir(c: argparse.ArgumentParser) -> None:
        c.add_argument("--data-dir", type=Path, default=None,
                       help="thư mục dữ liệu của nút / node data directory (default: $MESHMEET_DATA_DIR, "
                            "else /var/lib/meshmeet if it exists, else ~/.local/share/meshmeet)")
        c.set_defaults(default_data_dir=True)

    c = cmd("init", "tạo xã và nút trụ sở / create the commune and this HQ node")
    data_dir(c)
    c.add_argument("--commune", required=True, help='tên xã, ví dụ "Xã Triệu Sơn"')
    c.add_argument("--site", required=True, help='tên điểm này, ví dụ "UBND xã"')

    c = cmd("invite", "tạo mã mời cho một điểm / create an invite for a site")
    data_dir(c)
    c.add_argument("--site", required=True)
    c.add_argument("--role", default="hall", choices=["hall", "relay", "hq"])
    c.add_argument("--expires", default="7d", help="ví dụ 7d, 12h (default 7d)")
    c.add_argument("--priority", type=int, default=None, help="root priority (default by role)")
    c.add_argument("--backup", action="store_true", help="may run emergency briefings")
    c.add_argument("--address", action="append", default=[], help="member address to put in the invite (host:port)")
    c.add_argument("--qr", action="store_true", help="also print a terminal QR code")

    c = cmd("join", "gia nhập xã bằng mã mời / join a commune with an invite code")
    data_dir(c)
    c.add_argument("code")
    c.add_argument("--via", action="append", default=[], help="a member node to ask (host:port)")
    c.add_argument("--no-mdns", action="store_true")
    c.add_argument("--mdns-interface", action="append", default=[])

    c = cmd("run", "chạy nút đến khi Ctrl-C / run the node until Ctrl-C or SIGTERM")
    data_dir(c)
    c.add_argument("--listen", help="mesh address HOST:PORT")
    c.add_argument("--http", help="web address HOST:PORT (default 127.0.0.1:8080)")
    c.add_argument("--peer", action="append", default=[], help="static peer HOST:PORT (4G/WAN)")
    c.add_argument("--mdns-interface", action="append", default=[], help="local IP for mDNS")
    c.add_argument("--no-mdns", action="store_true")
    cli_ports.add_listener_options(c)

    c = cmd("status", "trạng thái nút đang chạy / status of the running node")
    data_dir(c)
    c.add_argument("--json", action="store_true")

    c = cmd("briefing", "họp khẩn: nút này làm gốc / emergency briefing: this node becomes the root")
    c.add_argument("action", choices=["start", "stop"])
    data_dir(c)
    c.add_argument("--json", action="store_true")

    c = cmd("simulate", "mô phỏng một xã / simulate a commune from a scenario file")
    c.add_argument("scenario", type=Path)
    c.add_argument("--json", action="store_true")

    # imported here, not at the top: these modules import helpers from this one
    from . import (cli_doctor, cli_ingest, cli_install, cli_lora, cli_media, cli_recovery, cli_release, cli_state,
                   cli_trust, cli_webapp, cli_zalo)

    for module in (cli_state, cli_media, cli_ingest, cli_lora, cli_webapp, cli_trust, cli_recovery, cli_zalo,
                   cli_install, cli_doctor, cli_release):
        COMMANDS.update(module.add_commands(sub, data_dir))

    c = cmd("config", "cấu hình / configuration")
    c.add_argument("--example", action="store_true", help="print a full, commented example config")

    c = cmd("demo", "chạy thử một xã trên máy này / run a demo commune on this machine")
    c.add_argument("--data-dir", type=Path, default=None, help="keep the demo's data here (default: temporary)")
    c.add_argument("--halls", type=int, default=2)
    c.add_argument("--http-port", type=int, default=8080, help="first web port (HQ); halls use the next ones")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else (logging.INFO if args.command in ("run", "demo") else logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if getattr(args, "default_data_dir", False):
            from .data_home import resolve_data_dir

            args.data_dir = resolve_data_dir(args.data_dir)
        code = int(COMMANDS[args.command](args) or 0)
        cli_pipe.flush_stdout()
        return code
    except BrokenPipeError:  # `meshmeet ... | head -1`: the reader went away (cli_pipe.py)
        if not cli_pipe.stdout_reader_gone():
            raise
        return cli_pipe.quiet_exit()
    except MeshmeetError as e:
        print(f"meshmeet: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BaseExceptionGroup as group:  # a node's task failed inside trio's nursery: show its error, not a traceback
        errors, rest = group.split(MeshmeetError)
        if errors is None or rest is not None:
            raise
        leaves = leaf_errors(errors)
        for e in leaves:
            print(f"meshmeet: {e}", file=sys.stderr)
        return leaves[0].exit_code


# ----- membership ---------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from .membership.datadir import init_commune

    summary = init_commune(args.data_dir, args.commune, args.site, time.time())
    if not (args.data_dir / config_mod.CONFIG_FILE).exists():
        config_mod.save(args.data_dir, config_mod.NodeConfig())
    print(f"Đã tạo xã / commune created: {summary.commune_name} ({summary.commune_id})")
    print(f"Nút / node: {summary.node_id}  site: {summary.site}  role: {summary.role}")
    print(f"Tiếp theo / next: meshmeet invite --data-dir {args.data_dir} --site \"Thôn ...\"")
    return 0


def cmd_invite(args: argparse.Namespace) -> int:
    from .membership.datadir import create_invite, parse_duration
    from .membership.invite import invite_qr_text

    addresses = list(args.address) or _default_invite_addresses(args.data_dir)
    code, seat = create_invite(
        args.data_dir, args.site, args.role, parse_duration(args.expires), addresses, time.time(),
        priority=args.priority, backup=args.backup or None,
    )
    print(code)
    if args.qr:
        print(invite_qr_text(code))
    print(
        f"Mã mời cho {seat.site} ({seat.role}, số {seat.short_id}) / invite for {seat.site}: "
        f"meshmeet join --data-dir DIR '{code[:12]}...'",
        file=sys.stderr,
    )
    return 0


def _default_invite_addresses(data_dir: Path) -> list[str]:
    """This node's mesh address(es) as the hall will see them."""
    import socket

    from .node.runfile import read_run_file

    cfg = config_mod.load(data_dir)
    running = read_run_file(data_dir)
    port = (running or {}).get("mesh_port") or cfg.listen.port
    host = cfg.listen.host
    if host in ("0.0.0.0", "::", ""):
        hosts = []
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect(("192.0.2.1", 9))  # no packet is sent; picks the outgoing interface
            hosts.append(s.getsockname()[0])
            s.close()
        except OSError:
            pass
        hosts.append("127.0.0.1")
        return [f"{h}:{port}" for h in dict.fromkeys(hosts)]
    return [f"{host}:{port}"]


def cmd_join(args: argparse.Namespace) -> int:
    import trio

    from .membership.datadir import prepare_join
    from .node.joining import join_commune

    pending = prepare_join(args.data_dir, args.code, time.time())

    async def go():
        return await join_commune(
            pending,
            via=args.via,
            mdns=not args.no_mdns,
            mdns_interfaces=tuple(args.mdns_interface),
            progress=lambda text: print(f"... {text}", file=sys.stderr),
        )

    summary = trio.run(go)
    if not (args.data_dir / config_mod.CONFIG_FILE).exists():
        config_mod.save(args.data_dir, config_mod.NodeConfig())
    print(f"Đã gia nhập / joined: {summary.commune_name} ({summary.commune_id})")
    print(f"Nút / node: {summary.node_id}  site: {summary.site}  role: {summary.role}  members: {summary.members}")
    return 0


# ----- running ------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    import trio

    from .node.node import Node

    cfg = config_mod.load(args.data_dir).with_overrides(
        listen=args.listen, http=args.http, peers=args.peer, mdns_interfaces=args.mdns_interface,
        mdns=False if args.no_mdns else None, https=args.https, residents=args.residents,
    )
    logging.getLogger().setLevel(logging.DEBUG if args.verbose else cfg.log_level.upper())
    node = Node(args.data_dir, cfg)  # a bad key or data dir is the one error said, before any port warning
    cli_ports.check_web_ports(args.data_dir, cfg)
    from .release.gate import wait_at_gate

    if not wait_at_gate():  # a new version started early by `meshmeet supervise` (docs/release.md)
        return 0
    trio.run(_run_until_signal, [node])
    return 0


async def _run_until_signal(nodes: list, on_started=None) -> None:
    """Run nodes until SIGINT/SIGTERM, then shut down in order."""
    import trio

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            if on_started is not None:
                await on_started(nursery)
            async for signum in signals:
                log.info("received %s, stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def cmd_status(args: argparse.Namespace) -> int:
    status = api_call(args.data_dir, "status")
    if args.json:
        print(json.dumps(status, ensure_ascii=False))
        return 0
    node = status["node"]
    print(f"{node['site']} ({node['role']}) {node['id']}  web {node.get('http')}  mesh :{node.get('mesh_port')}")
    release = status.get("release") or {}
    if release:
        print(f"  phiên bản / version {release.get('version')}  cập nhật / update: {release.get('state')} {release.get('detail') or ''}")
    links = status.get("links", [])
    if not links:
        print("  chưa có liên kết / no links yet")
    for link in links:
        rtt = "-" if link.get("rtt_ms") is None else f"{link['rtt_ms']:.1f} ms"
        print(f"  {link['state']:<10} {link['transport']:<4} {link['peer']}  {link['site']:<20} rtt {rtt}")
    return 0


def api_call(
    data_dir: Path, name: str, args: dict | None = None, *, method: str | None = None, timeout: float = HTTP_TIMEOUT_S
) -> dict:
    """Call the running node's JSON API with its local token (DIR/run/api-token); NotRunningError
    when there is none. Reads go as GET, everything with arguments as POST."""
    from .api_token import TOKEN_HEADER, TokenError, read_token
    from .node.runfile import read_run_file

    info = read_run_file(data_dir)
    if not info or not info.get("http"):
        raise NotRunningError(
            f"Nút ở {data_dir} không chạy (chạy: meshmeet run --data-dir {data_dir})",
            f"no node is running for {data_dir} (start it with: meshmeet run --data-dir {data_dir})",
        )
    url = f"{info['http'].rstrip('/')}/api/{name}"
    data = None if args is None else json.dumps(args).encode()
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    req.add_header("Content-Type", "application/json")
    try:
        token = read_token(data_dir)
    except TokenError as e:
        raise MeshmeetError(e.vi, e.en) from None
    if token is not None:
        req.add_header(TOKEN_HEADER, token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read())["error"]
            raise MeshmeetError(err["vi"], err["en"]) from None
        except (ValueError, KeyError, TypeError):
            raise MeshmeetError(f"Nút trả lỗi HTTP {e.code}", f"node answered HTTP {e.code}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        raise NotRunningError(
            f"Không kết nối được nút ở {info['http']} ({e}); nút có đang chạy không?",
            f"cannot reach the node at {info['http']} ({e}); is it running?",
        ) from None


def cmd_briefing(args: argparse.Namespace) -> int:
    tree = api_call(args.data_dir, "briefing", {"action": args.action})
    if args.json:
        print(json.dumps(tree, ensure_ascii=False))
    elif args.action == "start":
        print(f"Họp khẩn đã bắt đầu, nút này là gốc / briefing started, this node is the root ({tree['root']})")
    else:
        print(f"Họp khẩn đã dừng / briefing stopped; root now {tree['root']}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .sim import format_report, run_scenario

    report = run_scenario(args.scenario)
    print(json.dumps(report, ensure_ascii=False) if args.json else format_report(report))
    return 1 if report.get("loop_ever") else 0


def cmd_config(args: argparse.Namespace) -> int:
    if args.example:
        print(config_mod.example(), end="")
        return 0
    print("dùng / use: meshmeet config --example", file=sys.stderr)
    return 2


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.data_dir, halls=args.halls, http_port=args.http_port)


COMMANDS = {
    "init": cmd_init,
    "invite": cmd_invite,
    "join": cmd_join,
    "run": cmd_run,
    "status": cmd_status,
    "config": cmd_config,
    "briefing": cmd_briefing,
    "simulate": cmd_simulate,
    "demo": cmd_demo,
}
