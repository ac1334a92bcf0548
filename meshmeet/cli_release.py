"""`meshmeet release publish BUNDLE | versions` and `meshmeet supervise`: updates over the mesh.

`release publish` (HQ) signs a manifest for the bundle with the commune admin key (DIR/admin.key)
and hands both to the running node, which spreads them as documents. `release versions` lists
every node's version and update state. `supervise` runs the node from a release root and
switches or rolls back versions (meshmeet/release/supervise.py). This module only parses
arguments, signs and prints; it must never install or decide anything (the node does).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import tarfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from .errors import MeshmeetError

PUBLISH_TIMEOUT_S = 900.0


def bundle_version(bundle: Path) -> str:
    """The version a bundle carries: from its name (meshmeet-X-bundle.tar) or its meshmeet/__init__.py."""
    m = re.match(r"^meshmeet-([0-9][0-9.]*)-bundle\.tar$", bundle.name)
    if m:
        return m.group(1)
    try:
        with tarfile.open(bundle) as tar:
            for member in tar.getmembers():
                if member.name.endswith("meshmeet/__init__.py") and member.name.count("/") <= 2:
                    text = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
                    found = re.search(r'__version__\s*=\s*"([^"]+)"', text)
                    if found:
                        return found.group(1)
    except (tarfile.TarError, OSError):
        pass
    raise MeshmeetError("Không biết phiên bản của gói: dùng --version", "cannot tell the bundle's version: give --version")


def cmd_release(args: argparse.Namespace) -> int:
    from .cli import api_call

    if args.action == "versions":
        rows = api_call(args.data_dir, "release_versions")["nodes"]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False))
            return 0
        for r in rows:
            print(f"{r['node']}  {r['version']:<10} {r['state']:<12} {r.get('detail') or ''}")
        return 0
    from .membership.identity import load_key
    from .release.manifest import ReleaseError, sign_manifest

    if not args.bundle:
        raise MeshmeetError("Cần tệp gói: meshmeet release publish GÓI.tar", "a bundle is needed: meshmeet release publish BUNDLE.tar")
    bundle = args.bundle.resolve()
    admin_path = args.data_dir / "admin.key"
    if not admin_path.exists():
        raise MeshmeetError("Nút này không giữ khóa quản trị xã: phát hành từ nút trụ sở (HQ)",
                            "this node does not hold the commune admin key: publish on the HQ node")
    version = args.version or bundle_version(bundle)
    digest = hashlib.sha256()
    with open(bundle, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    not_before = 0
    if args.not_before:
        try:
            not_before = int(datetime.fromisoformat(args.not_before).timestamp())
        except ValueError:
            raise MeshmeetError("--not-before phải có dạng 2026-12-24T22:00", "--not-before must look like 2026-12-24T22:00") from None
    try:
        manifest = sign_manifest(load_key(admin_path), version, digest.digest(), os.path.getsize(bundle),
                                 int(time.time()), not_before)
    except ReleaseError as e:
        raise MeshmeetError(e.vi, e.en) from None
    out = api_call(args.data_dir, "release_publish",
                   {"path": str(bundle), "manifest": base64.b64encode(manifest).decode()}, timeout=PUBLISH_TIMEOUT_S)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(f"Đã phát hành / published {out['version']} ({out['size']} B, sha256 {out['sha256'][:16]}…)")
    return 0


def cmd_supervise(args: argparse.Namespace) -> int:
    import logging

    from .release.supervise import Supervisor

    logging.getLogger().setLevel(logging.INFO)
    extra = list(args.run_args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    return Supervisor(args.root, args.data_dir, extra, health_timeout_s=args.health_timeout).run()


def add_commands(subparsers: argparse._SubParsersAction, add_data_dir: Callable[[argparse.ArgumentParser], None]
                 ) -> dict[str, Callable[[argparse.Namespace], int]]:
    help_text = "phát hành phiên bản mới qua mạng lưới / publish a new version over the mesh"
    c = subparsers.add_parser("release", help=help_text, description=help_text)
    c.add_argument("action", choices=["publish", "versions"])
    c.add_argument("bundle", nargs="?", type=Path, default=None, help="meshmeet-X-bundle.tar")
    add_data_dir(c)
    c.add_argument("--version", default=None, help="phiên bản (mặc định: theo tên gói) / version (default: from the name)")
    c.add_argument("--not-before", default=None, help="khởi động lại không trước lúc / restart not before (ISO time)")
    c.add_argument("--json", action="store_true")
    help_text = "chạy nút, tự cập nhật và tự quay lại bản cũ / run the node, switch versions and roll back"
    c = subparsers.add_parser("supervise", help=help_text, description=help_text)
    c.add_argument("--root", type=Path, default=Path(os.environ.get("MESHMEET_RELEASE_ROOT", "/opt/meshmeet")),
                   help="thư mục phiên bản / release root (versions/, current)")
    add_data_dir(c)
    c.add_argument("--health-timeout", type=float, default=90.0, help="seconds a new version has to come up healthy")
    c.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then extra `meshmeet run` arguments")
    return {"release": cmd_release, "supervise": cmd_supervise}
