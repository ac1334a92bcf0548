"""`meshmeet meeting|agenda|doc|checkin|motion|vote|announce|feedback|state`: the state API from a shell.

Each command calls the running node's HTTP JSON API (docs/api.md) through meshmeet.cli.api_call
and prints an id, a short bilingual line, or JSON (--json). Errors (node not running, refused,
bad input) are one line and a non-zero exit. This module must never open the store itself or
hold any meeting logic: the node decides everything.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from .errors import MeshmeetError

DOC_ADD_TIMEOUT_S = 600.0   # a 200 MB import on a slow disk
PROGRESS_MIN_BYTES = 8 * 1024 * 1024  # show import progress for files at least this big
PROGRESS_POLL_S = 0.5

Command = Callable[[argparse.Namespace], int]


def _call(data_dir: Path, name: str, args: dict | None = None) -> dict:
    from .cli import api_call

    return api_call(data_dir, name, args)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=None))


def add_commands(sub: argparse._SubParsersAction, add_data_dir: Callable[[argparse.ArgumentParser], None]
                 ) -> dict[str, Command]:
    def parser(parent: argparse._SubParsersAction, name: str, text: str) -> argparse.ArgumentParser:
        c = parent.add_parser(name, help=text, description=text)
        add_data_dir(c)
        return c

    meeting = sub.add_parser("meeting", help="cuộc họp / meetings", description="cuộc họp / meetings")
    msub = meeting.add_subparsers(dest="meeting_command", metavar="ACTION")
    msub.required = True
    c = parser(msub, "create", "tạo cuộc họp, in mã / create a meeting, print its id")
    c.add_argument("--title", required=True)
    c.add_argument("--starts", help="ISO 8601, ví dụ 2025-06-01T08:00")
    c = parser(msub, "list", "danh sách cuộc họp / list meetings")
    c.add_argument("--json", action="store_true")

    agenda = sub.add_parser("agenda", help="chương trình họp (HQ) / agenda (HQ)", description="agenda (HQ)")
    asub = agenda.add_subparsers(dest="agenda_command", metavar="ACTION")
    asub.required = True
    c = parser(asub, "add", "thêm mục chương trình / add an agenda item")
    c.add_argument("meeting")
    c.add_argument("--title", required=True)
    c.add_argument("--position", type=int)

    doc = sub.add_parser("doc", help="tài liệu họp / meeting documents", description="meeting documents")
    dsub = doc.add_subparsers(dest="doc_command", metavar="ACTION")
    dsub.required = True
    c = parser(dsub, "add", "thêm tài liệu (HQ, tối đa 200 MB) / add a document (HQ, up to 200 MB)")
    c.add_argument("meeting")
    c.add_argument("file", type=Path)
    c.add_argument("--name")
    c = parser(dsub, "list", "tài liệu và tiến độ tải / documents and download progress")
    c.add_argument("meeting")
    c.add_argument("--json", action="store_true")

    c = parser(sub, "checkin", "điểm danh: số người có mặt ở điểm này / this hall's head count")
    c.add_argument("meeting")
    c.add_argument("--present", type=int, required=True)

    motion = sub.add_parser("motion", help="biểu quyết / motions", description="motions (HQ)")
    osub = motion.add_subparsers(dest="motion_command", metavar="ACTION")
    osub.required = True
    c = parser(osub, "open", "mở biểu quyết (HQ) / open a motion (HQ)")
    c.add_argument("meeting")
    c.add_argument("--title", required=True)
    c.add_argument("--rule", choices=["majority", "two-thirds"], default="majority")
    c = parser(osub, "close", "đóng biểu quyết, in kết quả (HQ) / close a motion and print the result (HQ)")
    c.add_argument("motion")
    c.add_argument("--json", action="store_true")

    c = parser(sub, "vote", "bỏ phiếu của điểm này / cast this hall's votes")
    c.add_argument("motion")
    c.add_argument("choice", choices=["yes", "no", "abstain"])
    c.add_argument("--count", type=int, help="số phiếu của điểm / the hall's count for this choice")
    c.add_argument("--member", help="phiếu của một thành viên / one member's ballot")

    c = parser(sub, "announce", "thông báo tới mọi điểm (HQ) / announce to every hall (HQ)")
    c.add_argument("text")
    c.add_argument("--urgent", action="store_true", help="khẩn; không có mạng IP thì thử LoRa / urgent; LoRa when no IP link")
    c.add_argument("--zalo", action="store_true", help="gửi cả lên Zalo OA / also send to the Zalo OA's followers")

    c = parser(sub, "feedback", "gửi ý kiến, hoặc: feedback reply ID TEXT (HQ), feedback hide|show ID / send feedback, reply (HQ), hide from TVs")
    c.add_argument("words", nargs="+", metavar="TEXT")
    c.add_argument("--meeting")

    c = parser(sub, "state", "trạng thái dữ liệu chung / the replicated state")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--digest", action="store_true")
    g.add_argument("--json", action="store_true")

    return {"meeting": cmd_meeting, "agenda": cmd_agenda, "doc": cmd_doc, "checkin": cmd_checkin,
            "motion": cmd_motion, "vote": cmd_vote, "announce": cmd_announce, "feedback": cmd_feedback,
            "state": cmd_state}


# ----- commands ---------------------------------------------------------------------------------
def cmd_meeting(args: argparse.Namespace) -> int:
    if args.meeting_command == "create":
        body = {"title": args.title}
        if args.starts:
            body["starts"] = args.starts
        print(_call(args.data_dir, "meeting_create", body)["id"])
        return 0
    meetings = _call(args.data_dir, "meetings")["meetings"]
    if args.json:
        _print_json(meetings)
        return 0
    if not meetings:
        print("chưa có cuộc họp / no meetings yet")
    for mt in meetings:
        print(f"{mt['id']}  {mt['status'] or '-':<9} {mt['starts'] or '-':<20} {mt['title']}")
    return 0


def cmd_agenda(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"meeting_id": args.meeting, "title": args.title}
    if args.position is not None:
        body["position"] = args.position
    print(_call(args.data_dir, "agenda_add", body)["id"])
    return 0


def cmd_doc(args: argparse.Namespace) -> int:
    if args.doc_command == "add":
        return _doc_add(args)
    docs = _call(args.data_dir, "docs", {"meeting_id": args.meeting})["documents"]
    if args.json:
        _print_json(docs)
        return 0
    if not docs:
        print("chưa có tài liệu / no documents")
    for d in docs:
        print(f"{d['id']}  {d['chunks_held']}/{d['chunks_total']} chunks  {_size(d['size']):>9}  "
              f"{d['sha256'][:16]}  {d['name']}")
    return 0


def _doc_add(args: argparse.Namespace) -> int:
    path = args.file.resolve()
    if not path.is_file():
        raise MeshmeetError(f"Không có tệp {args.file}", f"no such file: {args.file}")
    body: dict[str, Any] = {"meeting_id": args.meeting, "path": str(path)}
    if args.name:
        body["name"] = args.name
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["ok"] = _call_long(args.data_dir, "doc_add", body)
        except BaseException as e:  # re-raised on the main thread
            result["error"] = e

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    show = path.stat().st_size >= PROGRESS_MIN_BYTES and sys.stderr.isatty()
    while worker.is_alive():
        worker.join(PROGRESS_POLL_S)
        if show and worker.is_alive():
            _show_progress(args.data_dir)
    if show:
        print(file=sys.stderr)
    if "error" in result:
        raise result["error"]
    doc = result["ok"]
    print(doc["id"])
    print(f"{doc['name']}: {_size(doc['size'])}, sha256 {doc['sha256']}, {doc['chunks_total']} chunks",
          file=sys.stderr)
    return 0


def _call_long(data_dir: Path, name: str, body: dict) -> dict:
    """meshmeet.cli.api_call with a timeout long enough for a big import."""
    from .cli import api_call

    return api_call(data_dir, name, body, timeout=DOC_ADD_TIMEOUT_S)


def _show_progress(data_dir: Path) -> None:
    try:
        adding = _call(data_dir, "status").get("sync", {}).get("adding")
    except MeshmeetError:
        return
    if adding:
        print(f"\r... {_size(adding['bytes_done'])} / {_size(adding['size'])}", end="", file=sys.stderr, flush=True)


def cmd_checkin(args: argparse.Namespace) -> int:
    got = _call(args.data_dir, "checkin", {"meeting_id": args.meeting, "present": args.present})
    print(f"Đã điểm danh / checked in: {got['present']}")
    return 0


def cmd_motion(args: argparse.Namespace) -> int:
    if args.motion_command == "open":
        print(_call(args.data_dir, "motion_open", {"meeting_id": args.meeting, "title": args.title,
                                                   "rule": args.rule})["id"])
        return 0
    r = _call(args.data_dir, "motion_close", {"motion_id": args.motion})
    if args.json:
        _print_json(r)
        return 0
    verdict = "THÔNG QUA / PASSED" if r["result"] == "passed" else "KHÔNG THÔNG QUA / NOT PASSED"
    quorum = "đủ / met" if r["quorum_met"] else "KHÔNG đủ / NOT met"
    print(f"{verdict} ({r['rule']}): yes {r['yes']}, no {r['no']}, abstain {r['abstain']}")
    print(f"Bỏ phiếu / turnout {r['turnout']} trên / of {r['present']} có mặt / present; túc số / quorum {quorum}")
    return 0


def cmd_vote(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"motion_id": args.motion, "choice": args.choice}
    if args.count is not None:
        body["count"] = args.count
    if args.member:
        body["member"] = args.member
    got = _call(args.data_dir, "vote", body)
    t = got["tally"]
    print(f"Đã bỏ phiếu / voted {args.choice} x{got['count']}  (yes {t['yes']}, no {t['no']}, abstain {t['abstain']})")
    return 0


def cmd_announce(args: argparse.Namespace) -> int:
    got = _call(args.data_dir, "announce", {"text": args.text, "urgent": args.urgent, "zalo": args.zalo})
    print(got["id"])
    lora = got.get("lora")
    if lora and lora.get("sent"):
        print("Không có liên kết IP: đã gửi cảnh báo LoRa / no IP link: sent a LoRa alert too", file=sys.stderr)
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    words = args.words
    if words[0] == "reply" and len(words) == 3:
        print(_call(args.data_dir, "feedback_reply", {"feedback_id": words[1], "text": words[2]})["id"])
        return 0
    if words[0] in ("hide", "show") and len(words) == 2:  # issue 17: a resident's feedback on the TVs
        print(_call(args.data_dir, "feedback_hide", {"feedback_id": words[1], "hidden": words[0] == "hide"}))
        return 0
    if words[0] == "reply" and len(words) != 1:
        raise MeshmeetError("Dùng: meshmeet feedback reply MÃ_Ý_KIẾN \"NỘI DUNG\"",
                            "usage: meshmeet feedback reply FEEDBACK_ID \"TEXT\"")
    body: dict[str, Any] = {"text": " ".join(words)}
    if args.meeting:
        body["meeting_id"] = args.meeting
    print(_call(args.data_dir, "feedback", body)["id"])
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    if args.digest:
        print(_call(args.data_dir, "state", {"format": "digest"})["digest"])
        return 0
    print(json.dumps(_call(args.data_dir, "state", {"format": "json"}), ensure_ascii=False,
                     sort_keys=True, separators=(",", ":")))
    return 0


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB"):
        if n < 1000 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


__all__ = ["add_commands"]
