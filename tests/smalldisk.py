"""A real small disk for full-disk tests: a tmpfs of a given size, mounted for one test (needs root)."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


@contextmanager
def mounted_tmpfs(tmp_path: Path, name: str, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of `size_bytes` at tmp_path/name for the block; skips the test when not root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (run as root to test a full disk)")
    mnt = tmp_path / name
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
