"""Where a node's data dir is when the operator does not say: the one rule every command follows.

1. `--data-dir DIR` on the command line;
2. else `$MESHMEET_DATA_DIR`;
3. else `/var/lib/meshmeet` if it exists (an installed node: `install.sh` makes it, owned by the
   `meshmeet` user, so run commands as `sudo -u meshmeet meshmeet ...`);
4. else `$XDG_DATA_HOME/meshmeet` (`~/.local/share/meshmeet`): a node of one's own on a laptop.

This module only decides the path and explains a path the user cannot read; it never creates,
reads or changes anything in the data dir.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .errors import MeshmeetError

SYSTEM_DATA_DIR = Path("/var/lib/meshmeet")
ENV_DATA_DIR = "MESHMEET_DATA_DIR"


def default_data_dir(env: Mapping[str, str] | None = None, system_dir: Path = SYSTEM_DATA_DIR) -> Path:
    """The data dir a command uses when --data-dir is not given (rules 2-4 above)."""
    env = os.environ if env is None else env
    if env.get(ENV_DATA_DIR):
        return Path(env[ENV_DATA_DIR])
    if system_dir.exists():
        return system_dir
    xdg = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(xdg) / "meshmeet"


def resolve_data_dir(given: Path | None, env: Mapping[str, str] | None = None,
                     system_dir: Path = SYSTEM_DATA_DIR) -> Path:
    """--data-dir if given, else the default; a clear error when the default is a system node's dir
    this user may not enter (the usual mistake: forgetting `sudo -u meshmeet`)."""
    if given is not None:
        return given
    path = default_data_dir(env, system_dir)
    if path.exists() and not os.access(path, os.R_OK | os.X_OK):
        raise MeshmeetError(
            f"Không đọc được {path} (thư mục của nút). Chạy lệnh với người dùng của nút: "
            f"sudo -u meshmeet meshmeet ... (hoặc đặt --data-dir / {ENV_DATA_DIR})",
            f"cannot read {path} (the node's data dir). Run the command as the node's user: "
            f"sudo -u meshmeet meshmeet ... (or give --data-dir / set {ENV_DATA_DIR})",
        )
    return path
