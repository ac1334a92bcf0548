"""How to spell the `meshmeet` command so that a line we print works when pasted into a shell.

After the Quick start meshmeet lives in `.venv/bin/` and is not on the PATH; printing a bare
`meshmeet ...` there gives "command not found". This module only computes the spelling; it never
changes the PATH or the environment.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def meshmeet_command(cwd: Path | None = None, path_env: str | None = None) -> str:
    """`meshmeet` when that name on the PATH is this installation, else the path of this
    installation's script (relative to cwd when below it, e.g. `.venv/bin/meshmeet`), else
    `python -m meshmeet` with this interpreter."""
    script = Path(sys.executable).parent / "meshmeet"
    if not script.exists():
        return f"{shlex.quote(sys.executable)} -m meshmeet"
    on_path = shutil.which("meshmeet", path=path_env if path_env is not None else os.environ.get("PATH"))
    if on_path and Path(on_path).resolve() == script.resolve():
        return "meshmeet"
    cwd = cwd or Path.cwd()
    try:
        return shlex.quote(str(script.absolute().relative_to(cwd.absolute())))
    except ValueError:
        return shlex.quote(str(script.absolute()))
