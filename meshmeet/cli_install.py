"""`meshmeet bundle`: build the offline install bundle, or check one (`--check FILE`).

Only argument handling and printing; the work is in meshmeet/install/. Never installs anything.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction, add_data_dir: Callable[[argparse.ArgumentParser], None]) -> dict:
    from .install.manifest import ARCHES

    c = sub.add_parser("bundle", help="tạo gói cài không cần mạng / build the offline install bundle",
                       description="tạo gói cài không cần mạng / build the offline install bundle (needs internet "
                                   "and the source tree); --check FILE verifies a bundle's sha256 manifest")
    c.add_argument("--out", type=Path, default=Path("dist"), help="output directory (default dist/)")
    c.add_argument("--arch", action="append", choices=ARCHES, help="only these architectures (default: all)")
    c.add_argument("--wheelhouse", type=Path, help="keep downloaded wheels here and reuse them offline next time")
    c.add_argument("--check", type=Path, metavar="FILE", help="verify a bundle .tar (or unpacked dir) instead")
    return {"bundle": cmd_bundle}


def cmd_bundle(args: argparse.Namespace) -> int:
    from .install import manifest as manifest_mod
    from .install.bundle import build_bundle

    if args.check is not None:
        target = args.check
        m = manifest_mod.verify_tar(target) if target.is_file() else manifest_mod.verify_dir(target)
        print(f"meshmeet {m.version} ({', '.join(m.arches)}): {len(m.files)} tệp đúng sha256 / files match their sha256")
        return 0
    from .install.manifest import ARCHES

    built = build_bundle(args.out, tuple(args.arch or ARCHES), wheelhouse=args.wheelhouse, progress=lambda t: print(f"... {t}", file=sys.stderr))
    print(f"{built.path}  ({built.files} files, {built.size / 1e6:.1f} MB)")
    return 0
