"""Build the offline install bundle: one tar with meshmeet's wheel, every wheel it needs for
Debian 12 (CPython 3.11) on x86-64 and arm64, install.sh, the systemd unit and a sha256 manifest.

Runs on a machine with internet (pip downloads from the package index; pip's own cache makes a
second build cheap). It must never install anything into the running Python nor write outside the
output file and its own temporary directory. Layout and format: docs/install.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import MeshmeetError
from . import manifest as manifest_mod

PYTHON_VERSION = "3.11"
# Debian 12 has glibc 2.36: any manylinux wheel up to 2.36 runs there. pip needs each tag named.
MANYLINUX_TAGS = ("manylinux_2_36", "manylinux_2_34", "manylinux_2_31", "manylinux_2_28", "manylinux_2_24",
                  "manylinux_2_17", "manylinux2014")
HERE = Path(__file__).resolve().parent
INSTALLER_FILES = {"install.sh": HERE / "install.sh", "meshmeet.service": HERE / "meshmeet.service",
                   "verify_bundle.py": HERE / "manifest.py"}
SOURCE_FILES = ("pyproject.toml", "README.md")
PIP_TIMEOUT_S = 1800


@dataclass(frozen=True)
class BuiltBundle:
    path: Path
    version: str
    files: int
    size: int


def source_tree() -> Path:
    """The checkout meshmeet runs from (a bundle is built from source, not from an installed copy)."""
    root = HERE.parents[1]
    if not (root / "pyproject.toml").exists():
        raise MeshmeetError("Cần mã nguồn meshmeet (git clone) để tạo gói",
                            "building a bundle needs the meshmeet source tree (a git checkout)")
    return root


def project_version(root: Path) -> str:
    import tomllib

    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]


def _pip(args: list[str], python: str, *, isolated: bool = False) -> None:
    """Run pip; `isolated`: without this machine's pip.conf and PIP_* settings (extra find-links
    there would let the completeness check pass on wheels the bundle does not hold)."""
    cmd = [python, "-m", "pip", "--disable-pip-version-check", *args]
    env = None
    if isolated:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, env=env)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise MeshmeetError(f"pip thất bại ({' '.join(args[:2])}): {tail}", f"pip failed ({' '.join(args[:2])}): {tail}")


def _fetch_wheels(wheel: Path, arch: str, dest: Path, wheelhouse: Path | None, python: str, progress) -> None:
    """Every wheel meshmeet needs on arch into dest: from the wheelhouse alone when it has them all
    (no network), else from the index (and then kept in the wheelhouse for next time)."""
    platforms = [arg for tag in MANYLINUX_TAGS for arg in ("--platform", f"{tag}_{arch}")]
    common = ["download", "-q", "--only-binary=:all:", *platforms, "--python-version", PYTHON_VERSION,
              "--implementation", "cp", "--abi", f"cp{PYTHON_VERSION.replace('.', '')}", "-d", str(dest)]
    if wheelhouse is not None and (wheelhouse / arch).is_dir():
        try:
            _pip([*common, "--no-index", "--find-links", str(wheelhouse / arch), str(wheel), "pip"], python)
            progress(f"wheels for {arch} from {wheelhouse / arch}")
            return
        except MeshmeetError:
            shutil.rmtree(dest, ignore_errors=True)
    progress(f"downloading wheels for {arch}")
    _pip([*common, str(wheel), "pip"], python)
    if wheelhouse is not None:
        (wheelhouse / arch).mkdir(parents=True, exist_ok=True)
        for whl in dest.glob("*.whl"):
            if not whl.name.startswith("meshmeet-"):
                shutil.copy2(whl, wheelhouse / arch / whl.name)


def _check_complete(stage: Path, arch: str, dest: Path, python: str) -> None:
    """Resolve `pip meshmeet` for arch from the staged wheels only (--no-index): proves the bundle
    is complete for a machine we cannot run here (an arm64 box, built on x86-64)."""
    platforms = [arg for tag in MANYLINUX_TAGS for arg in ("--platform", f"{tag}_{arch}")]
    try:
        _pip(["download", "-q", "--no-index", "--only-binary=:all:", *platforms, "--python-version", PYTHON_VERSION,
              "--implementation", "cp", "--abi", f"cp{PYTHON_VERSION.replace('.', '')}",
              "--find-links", str(stage / "wheels" / "any"), "--find-links", str(stage / "wheels" / arch),
              "-d", str(dest), "pip", "meshmeet"], python, isolated=True)
    except MeshmeetError as e:
        raise MeshmeetError(f"Gói thiếu bánh xe cho {arch}: {e.vi}", f"the bundle is incomplete for {arch}: {e.en}") from None


def build_bundle(out_dir: Path, arches: tuple[str, ...] = manifest_mod.ARCHES, *, python: str = sys.executable,
                 wheelhouse: Path | None = None, progress=lambda text: None) -> BuiltBundle:
    """Write out_dir/meshmeet-VERSION-bundle.tar and return what it holds. `wheelhouse`: a directory
    of wheels kept between builds (per arch) so a rebuild needs no network when nothing changed."""
    for arch in arches:
        if arch not in manifest_mod.ARCHES:
            raise MeshmeetError(f"Kiến trúc không hỗ trợ: {arch}", f"unsupported arch {arch} (use {', '.join(manifest_mod.ARCHES)})")
    root = source_tree()
    version = project_version(root)
    top = f"meshmeet-{version}"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="meshmeet-bundle-") as tmp:
        tmp_path = Path(tmp)
        src = tmp_path / "src"
        src.mkdir()
        for name in SOURCE_FILES:
            shutil.copy2(root / name, src / name)
        shutil.copytree(root / "meshmeet", src / "meshmeet", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copytree(root / "firmware-config", src / "firmware-config")
        stage = tmp_path / top
        dist = tmp_path / "dist"
        progress("building the meshmeet wheel")
        _pip(["wheel", "-q", "--no-deps", "-w", str(dist), str(src)], python)
        wheel = next(dist.glob("meshmeet-*.whl"))
        for arch in arches:
            _fetch_wheels(wheel, arch, tmp_path / "dl" / arch, wheelhouse, python, progress)
        # Pure-Python wheels (py3-none-any) are the same for every arch: keep one copy in wheels/any.
        (stage / "wheels" / "any").mkdir(parents=True)
        for arch in arches:
            (stage / "wheels" / arch).mkdir()
            for whl in sorted((tmp_path / "dl" / arch).glob("*.whl")):
                pure = whl.name.endswith("-none-any.whl")
                target = stage / "wheels" / ("any" if pure else arch) / whl.name
                if not target.exists():
                    shutil.copy2(whl, target)
        for arch in arches:
            progress(f"checking that the bundle alone installs on {arch}")
            _check_complete(stage, arch, tmp_path / "check" / arch, python)
        for name, path in INSTALLER_FILES.items():
            shutil.copy2(path, stage / name)
        (stage / "install.sh").chmod(0o755)
        manifest = manifest_mod.write_manifest(stage, version, PYTHON_VERSION, tuple(arches))
        out = out_dir / f"{top}-bundle.tar"
        partial = out.with_suffix(".tar.partial")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(stage / manifest_mod.MANIFEST_NAME, f"{top}/{manifest_mod.MANIFEST_NAME}", filter=_plain)
            for entry in manifest.files:
                tar.add(stage / entry.path, f"{top}/{entry.path}", filter=_plain)
        partial.replace(out)
    return BuiltBundle(out, version, len(manifest.files), out.stat().st_size)


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Owner root, fixed time: the bundle's bytes depend on its contents only."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="scripts/bundle", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("dist"), help="output directory (default dist/)")
    p.add_argument("--arch", action="append", choices=manifest_mod.ARCHES, help="only these (default: all)")
    p.add_argument("--wheelhouse", type=Path, help="keep downloaded wheels here and reuse them offline next time")
    args = p.parse_args(argv)
    try:
        built = build_bundle(args.out, tuple(args.arch or manifest_mod.ARCHES), wheelhouse=args.wheelhouse,
                             progress=lambda t: print(f"... {t}", file=sys.stderr))
    except MeshmeetError as e:
        print(f"meshmeet: {e}", file=sys.stderr)
        return 1
    print(f"{built.path}  ({built.files} files, {built.size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
