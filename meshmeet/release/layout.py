"""The versioned install layout: ROOT/versions/V, the `current` link, and what the supervisor
and the node tell each other through ROOT/state.json.

```
ROOT/versions/0.2.0/bin/meshmeet   one installed version (complete once .installed exists)
ROOT/current -> versions/0.2.0     what the supervisor starts
ROOT/state.json                    {"highest", "previous", "pending", "trying", "bad", "links_before", "events", "timeline"}
```

A verified bundle is installed by an InstallStep into a fresh directory beside the running
version, then renamed into place, so a crash leaves either nothing or a whole version. The
default step takes an offline bundle made by scripts/bundle (manifest.json, verify_bundle.py,
wheels/: checked, then a venv from its wheels, as its install.sh does but without root, user or
unit; docs/release.md) or a source tar holding the `meshmeet` package (tests, development). This module must never verify signatures (manifest.py
does, before anything reaches it) and never write outside ROOT.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable

from .manifest import ReleaseError, version_key

STATE_FILE = "state.json"
INSTALLED_MARK = ".installed"
INSTALL_TIMEOUT_S = 900.0
ROOT_ENV = "MESHMEET_RELEASE_ROOT"
TIMELINE_VERSIONS = 3  # versions whose update timeline state.json keeps

InstallStep = Callable[[Path, Path], None]  # (bundle file, empty target dir) -> DIR/bin/meshmeet exists


class Layout:
    """One release root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.versions = self.root / "versions"
        self.current = self.root / "current"

    # ----- state shared by supervisor and node --------------------------------------------------
    def state(self) -> dict:
        try:
            data = json.loads((self.root / STATE_FILE).read_text())
        except (OSError, ValueError):
            data = {}
        data.setdefault("bad", [])
        data.setdefault("events", [])
        return data

    def save_state(self, state: dict) -> None:
        state["events"] = state.get("events", [])[-20:]
        tmp = self.root / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(tmp, self.root / STATE_FILE)

    def update_state(self, **changes) -> dict:
        state = self.state()
        event = changes.pop("event", None)
        state.update(changes)
        if event:
            state["events"].append({"at": time.time(), "event": event})
        self.save_state(state)
        return state

    def mark(self, version: str, step: str) -> None:
        """Note when `version` first reached `step` (held, verified, installed, requested, at_gate,
        switched, healthy): state.json "timeline", wall-clock seconds, read by the update benchmark."""
        state = self.state()
        timeline = state.setdefault("timeline", {})
        steps = timeline.setdefault(version, {})
        if step in steps:
            return
        steps[step] = round(time.time(), 3)
        for old in sorted(timeline, key=version_key)[:-TIMELINE_VERSIONS]:
            del timeline[old]
        self.save_state(state)

    # ----- versions -----------------------------------------------------------------------------
    def installed(self) -> list[str]:
        if not self.versions.is_dir():
            return []
        out = [p.name for p in self.versions.iterdir() if (p / INSTALLED_MARK).exists()]
        return sorted(out, key=version_key)

    def current_version(self) -> str | None:
        try:
            return Path(os.readlink(self.current)).name
        except OSError:
            return None

    def entry_point(self, version: str | None = None) -> Path:
        return (self.versions / version if version else self.current) / "bin" / "meshmeet"

    def install(self, version: str, bundle: Path, step: "InstallStep | None" = None) -> Path:
        """Install a (verified) bundle as `version`; the version's directory. Idempotent."""
        version_key(version)
        target = self.versions / version
        if (target / INSTALLED_MARK).exists():
            return target
        self.versions.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=self.versions))
        try:
            (step or default_step)(Path(bundle), staging)
            if not os.access(staging / "bin" / "meshmeet", os.X_OK):
                raise ReleaseError("Gói không có lệnh meshmeet sau khi cài", "the bundle installed no bin/meshmeet",
                                   "install_failed")
            (staging / INSTALLED_MARK).write_text(version)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    def switch(self, version: str) -> None:
        """Point `current` at an installed version, atomically (symlink + rename)."""
        if not (self.versions / version / INSTALLED_MARK).exists():
            raise ReleaseError(f"Phiên bản {version} chưa cài", f"version {version} is not installed", "missing")
        tmp = self.root / "current.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(Path("versions") / version, tmp)
        os.replace(tmp, self.current)

    def prune(self, keep: set[str]) -> None:
        """Remove installed versions not in `keep` (the running one and the one to roll back to)."""
        for name in self.installed():
            if name not in keep:
                shutil.rmtree(self.versions / name, ignore_errors=True)

    def adopt_running(self, version: str) -> None:
        """Make the code running this process the first installed version (a source install):
        its bin/meshmeet runs this interpreter with this package on PYTHONPATH."""
        target = self.versions / version
        if (target / INSTALLED_MARK).exists():
            if self.current_version() is None:
                self.switch(version)
            return
        (target / "bin").mkdir(parents=True, exist_ok=True)
        src = Path(__file__).resolve().parents[2]
        _write_wrapper(target / "bin" / "meshmeet", src)
        (target / INSTALLED_MARK).write_text(version)
        if self.current_version() is None:
            self.switch(version)
        st = self.state()
        if not st.get("highest") or version_key(version) > version_key(st["highest"]):
            self.update_state(highest=version)


def _write_wrapper(path: Path, src: Path | None) -> None:
    """bin/meshmeet for a source install: `src` absolute (adopted code), or None for the
    version's own src/ (found from the script's place, so the staging directory may be renamed)."""
    where = f'"{src}"' if src else '"$(cd "$(dirname "$0")/.." && pwd -P)/src"'
    path.write_text(
        "#!/bin/sh\n# meshmeet source install (meshmeet/release/layout.py)\n"
        f'PYTHONPATH={where} exec "{sys.executable}" -P -m meshmeet "$@"\n')  # -P: not the cwd's meshmeet
    path.chmod(0o755)


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for m in tar.getmembers():
        name = m.name
        if name.startswith("/") or ".." in Path(name).parts or not (m.isfile() or m.isdir()):
            raise ReleaseError(f"Gói chứa đường dẫn không an toàn: {name}", f"unsafe path in bundle: {name}",
                               "install_failed")
        members.append(m)
    return members


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    if proc.returncode != 0:
        raise ReleaseError(f"Cài gói thất bại ({what})", f"installing the bundle failed ({what}): "
                           f"{(proc.stderr or proc.stdout).strip()[-300:]}", "install_failed")


def _venv_from_wheels(base: Path, target: Path) -> None:
    """Steps 1-2 of a scripts/bundle bundle's install.sh, without root, user or unit: check every
    file against manifest.json (verify_bundle.py), then a venv in TARGET from the bundle's wheels."""
    arch = os.uname().machine.replace("arm64", "aarch64")
    if (base / "verify_bundle.py").is_file():
        _run([sys.executable, str(base / "verify_bundle.py"), str(base)], base, "verify_bundle.py")
    if not (base / "wheels" / arch).is_dir():
        raise ReleaseError(f"Gói không có bản cho {arch}", f"the bundle has no wheels for {arch}", "install_failed")
    _run([sys.executable, "-m", "venv", "--without-pip", str(target)], base, "venv")
    pip_wheel = sorted((base / "wheels" / "any").glob("pip-*.whl"))
    if not pip_wheel:
        raise ReleaseError("Gói không có pip", "the bundle holds no pip wheel", "install_failed")
    _run([str(target / "bin" / "python"), f"{pip_wheel[0]}/pip", "install", "-q", "--no-index",
          "--find-links", str(base / "wheels" / "any"), "--find-links", str(base / "wheels" / arch),
          "pip", "meshmeet"], base, "pip install")


def default_step(bundle: Path, target: Path) -> None:
    """Unpack the bundle; install a scripts/bundle bundle (manifest.json + wheels/) as a venv, or
    take a source tar's `meshmeet` tree."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpack-") as tmp:
        try:
            with tarfile.open(bundle) as tar:
                tar.extractall(tmp, members=_safe_members(tar), filter="data")
        except (tarfile.TarError, OSError) as e:
            raise ReleaseError("Không mở được gói cài đặt", f"cannot unpack the bundle: {e}", "install_failed") from None
        tops = [p for p in Path(tmp).iterdir()]
        base = tops[0] if len(tops) == 1 and tops[0].is_dir() else Path(tmp)
        if (base / "manifest.json").is_file() and (base / "wheels").is_dir():
            _venv_from_wheels(base, target)
            return
        if (base / "meshmeet" / "__init__.py").is_file():
            shutil.copytree(base, target / "src")
            (target / "bin").mkdir(exist_ok=True)
            _write_wrapper(target / "bin" / "meshmeet", None)
            return
        raise ReleaseError("Gói không có install.sh hay mã nguồn meshmeet",
                           "the bundle holds neither install.sh nor the meshmeet package", "install_failed")
