"""`meshmeet ingest URL | --listen PORT [--protocol rtsp] [--bind IP] | stop | status`: relay an
upstream conference (the province's) to every hall (talks to the running node's `ingest` API).

This module only parses arguments and prints; it must never check sources itself beyond
argument syntax (the node does, meshmeet/ingest/source.py) nor touch media.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable


def _describe(st: dict) -> str:
    state = st.get("state")
    names = {"idle": ("không tiếp sóng", "not relaying"), "starting": ("đang mở nguồn", "opening the source"),
             "live": ("đang tiếp sóng", "relaying"), "retrying": ("đang thử lại", "retrying"),
             "stalled": ("nguồn im lặng", "the source is silent")}
    vi, en = names.get(state, (state, state))
    line = f"Tiếp sóng: {vi} / ingest: {en}"
    if st.get("source"):
        line += f" — {st['source']}"
    err = st.get("error")
    if err:
        line += f"\n  {err.get('vi')} / {err.get('en')}"
        if st.get("next_try_in_s") is not None:
            line += f" (thử lại sau {st['next_try_in_s']} s / retry in {st['next_try_in_s']} s)"
    if st.get("video") or st.get("audio"):
        line += f"\n  nguồn / source: {st.get('video') or '-'}, {st.get('audio') or '-'} → {st.get('codec')} + opus"
    return line


def cmd_ingest(args: argparse.Namespace) -> int:
    from .cli import api_call
    from .errors import MeshmeetError

    target = args.target
    if target in ("stop", "status"):
        if args.listen is not None:
            raise MeshmeetError("--listen đi với việc bắt đầu, không đi với stop/status",
                                "--listen goes with starting, not with stop/status")
        body: dict | None = {"action": target} if target == "stop" else None
    elif args.listen is not None:
        if target:
            raise MeshmeetError("Cần URL hoặc --listen, không cả hai", "give a URL or --listen, not both")
        body = {"action": "start", "listen": args.listen, "protocol": args.protocol, "bind": args.bind}
        if args.key is not None:
            body["key"] = args.key
    elif target:
        body = {"action": "start", "url": target}
    else:
        raise MeshmeetError("Cần địa chỉ nguồn: meshmeet ingest rtmp://… (hoặc --listen CỔNG, stop, status)",
                            "a source is needed: meshmeet ingest rtmp://… (or --listen PORT, stop, status)")
    st = api_call(args.data_dir, "ingest", body)
    if args.json:
        print(json.dumps(st, ensure_ascii=False))
    elif target == "stop":
        print(f"Đã dừng tiếp sóng {st['stopped']} / stopped relaying {st['stopped']}" if st.get("stopped") else
              "Không có gì đang tiếp sóng, không có gì để dừng / nothing was being relayed, nothing to stop")
    else:
        print(_describe(st))
        if st.get("push"):
            print(_push_lines(st["push"], args.bind))
    return 0


def _push_lines(push: dict, bind: str) -> str:
    """Where the encoder pushes: the key is shown here, to whoever started the ingest, and nowhere else."""
    host = bind if bind not in ("0.0.0.0", "::") else "ĐỊA-CHỈ-MÁY-NÀY"
    base = f"{push['protocol']}://{host}:{push['port']}"
    lines = [f"Bộ mã hoá đẩy tới / the encoder pushes to: {base}{push['path']}"]
    if push["protocol"] == "rtmp":
        lines.append(f"  (OBS: máy chủ / server {base}/live, khoá luồng / stream key {push['key']})")
    if host != bind:
        lines.append("  ĐỊA-CHỈ-MÁY-NÀY: địa chỉ IP của máy trụ sở trong mạng của bộ mã hoá / "
                     "HQ's IP address on the encoder's network")
    lines.append("  Luồng không đúng khoá bị từ chối / a push without this key is refused")
    return "\n".join(lines)


def add_commands(subparsers: argparse._SubParsersAction, add_data_dir: Callable[[argparse.ArgumentParser], None]
                 ) -> dict[str, Callable[[argparse.Namespace], int]]:
    help_text = ("tiếp sóng hội nghị cấp trên tới mọi hội trường / relay an upstream conference to every hall "
                 "(rtmp://, rtsp://, srt://, https://….m3u8, or --listen PORT for a push)")
    c = subparsers.add_parser("ingest", help=help_text, description=help_text)
    c.add_argument("target", nargs="?", default="", help="địa chỉ nguồn, stop hoặc status / the source URL, stop, or status")
    c.add_argument("--listen", type=int, default=None, metavar="PORT",
                   help="nhận luồng đẩy tới cổng này / receive a pushed stream on this port")
    c.add_argument("--protocol", choices=["rtmp", "rtsp"], default="rtmp", help="với --listen: giao thức nhận / with --listen: the protocol to receive (default rtmp)")
    c.add_argument("--bind", default="0.0.0.0", help="với --listen: địa chỉ nghe / with --listen: the address to listen on (default 0.0.0.0)")
    c.add_argument("--key", default=None, help="với --listen: khoá luồng bộ mã hoá phải gửi (mặc định: khoá "
                   "ngẫu nhiên giữ trong thư mục dữ liệu) / with --listen: the stream key the encoder must send "
                   "(default: a random key kept in the data dir)")
    add_data_dir(c)
    c.add_argument("--json", action="store_true", help="in dạng JSON / print JSON")
    return {"ingest": cmd_ingest}
