"""A development bundle: the meshmeet source tree as a tar with a chosen version string.

Tests and the update benchmark publish these as "a newer version" (docs/release.md: a bundle
holding the `meshmeet` package is installed as a source install). `broken=True` makes a version
that exits at once, `hangs=True` one that starts but never serves, to prove the supervisor's rollback. This module must never be used to
build what ships to halls (scripts/bundle does, with wheels and install.sh).
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

BROKEN_MAIN = b'import sys\nprint("this build is broken on purpose", file=sys.stderr)\nsys.exit(3)\n'
# loads, passes the supervisor's start gate, then never serves: only the health check can catch it
HANGING_MAIN = (b'import time\nfrom meshmeet.release.gate import wait_at_gate\n'
                b'if wait_at_gate():\n    time.sleep(10 ** 6)\n')


def make_source_bundle(dest: Path, version: str, *, broken: bool = False, hangs: bool = False,
                       pad_bytes: int = 0) -> Path:
    """Write DEST (a tar: meshmeet-src/meshmeet/... with __version__ = VERSION); `pad_bytes` of
    incompressible filler make it as large as a real bundle (benchmarks)."""
    src = Path(__file__).resolve().parents[1]
    replaced = {"meshmeet-src/meshmeet/__init__.py": f'"""meshmeet."""\n\n__version__ = "{version}"\n'.encode()}
    if broken or hangs:
        replaced["meshmeet-src/meshmeet/__main__.py"] = BROKEN_MAIN if broken else HANGING_MAIN

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if "__pycache__" in info.name or info.name in replaced:
            return None
        return info

    with tarfile.open(dest, "w") as tar:
        tar.add(src, arcname="meshmeet-src/meshmeet", filter=keep)
        for name, data in replaced.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        if pad_bytes:
            info = tarfile.TarInfo("meshmeet-src/padding.bin")
            info.size = pad_bytes
            tar.addfile(info, io.BytesIO(os.urandom(pad_bytes)))
    return dest
