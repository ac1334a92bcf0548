"""The offline bundle's manifest (meshmeet/install/manifest.py): the parser under Hypothesis, and
damaged or altered bundles (a changed byte, an added wheel, a link, a `..` path) refused by name,
both by the Python check and by install.sh before it installs anything."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.install import manifest as m

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "meshmeet" / "install"


def fake_bundle(root: Path) -> Path:
    """A small but complete bundle dir: the real installer files and one stand-in wheel."""
    root.mkdir()
    shutil.copy2(INSTALL / "install.sh", root / "install.sh")
    shutil.copy2(INSTALL / "meshmeet.service", root / "meshmeet.service")
    shutil.copy2(INSTALL / "manifest.py", root / "verify_bundle.py")
    (root / "wheels" / "any").mkdir(parents=True)
    (root / "wheels" / "x86_64").mkdir()
    (root / "wheels" / "any" / "meshmeet-0.1.0-py3-none-any.whl").write_bytes(b"PK\x03\x04 not really a wheel" * 50)
    m.write_manifest(root, "0.1.0", "3.11", ("x86_64",))
    return root


def tar_of(root: Path, out: Path, extra=None) -> Path:
    with tarfile.open(out, "w") as tar:
        tar.add(root, "meshmeet-0.1.0")
        if extra is not None:
            extra(tar)
    return out


def test_intact_bundle_passes_dir_and_tar(tmp_path):
    root = fake_bundle(tmp_path / "b")
    assert m.verify_dir(root).version == "0.1.0"
    got = m.verify_tar(tar_of(root, tmp_path / "b.tar"))
    assert {f.path for f in got.files} == {"install.sh", "meshmeet.service", "verify_bundle.py",
                                          "wheels/any/meshmeet-0.1.0-py3-none-any.whl"}


def test_changed_byte_is_refused_naming_the_file(tmp_path):
    root = fake_bundle(tmp_path / "b")
    whl = root / "wheels" / "any" / "meshmeet-0.1.0-py3-none-any.whl"
    data = bytearray(whl.read_bytes())
    data[10] ^= 1
    whl.write_bytes(bytes(data))
    with pytest.raises(m.BundleError, match="meshmeet-0.1.0-py3-none-any.whl does not match its sha256"):
        m.verify_dir(root)
    with pytest.raises(m.BundleError, match="sha256"):
        m.verify_tar(tar_of(root, tmp_path / "b.tar"))


def test_added_wheel_missing_file_and_symlink_are_refused(tmp_path):
    root = fake_bundle(tmp_path / "b")
    (root / "wheels" / "x86_64" / "evil-1.0-py3-none-any.whl").write_bytes(b"x")
    with pytest.raises(m.BundleError, match="extra file not in the manifest: wheels/x86_64/evil"):
        m.verify_dir(root)
    (root / "wheels" / "x86_64" / "evil-1.0-py3-none-any.whl").unlink()
    (root / "meshmeet.service").unlink()
    with pytest.raises(m.BundleError, match="missing file meshmeet.service"):
        m.verify_dir(root)
    (root / "meshmeet.service").symlink_to("/etc/passwd")
    with pytest.raises(m.BundleError, match="not a regular file"):
        m.verify_dir(root)


@pytest.mark.parametrize("name", ["../outside", "/etc/cron.d/x", "meshmeet-0.1.0/../../x", "other-top/install.sh"])
def test_tar_with_a_path_outside_the_bundle_is_refused(tmp_path, name):
    root = fake_bundle(tmp_path / "b")

    def add(tar):
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))

    with pytest.raises(m.BundleError):
        m.verify_tar(tar_of(root, tmp_path / "b.tar", add))


def test_tar_with_a_link_member_is_refused(tmp_path):
    root = fake_bundle(tmp_path / "b")

    def add(tar):
        info = tarfile.TarInfo("meshmeet-0.1.0/wheels/any/link.whl")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/shadow"
        tar.addfile(info)

    with pytest.raises(m.BundleError, match="not a regular file"):
        m.verify_tar(tar_of(root, tmp_path / "b.tar", add))


def test_truncated_tar_is_a_clear_error(tmp_path):
    tar = tar_of(fake_bundle(tmp_path / "b"), tmp_path / "b.tar")
    tar.write_bytes(tar.read_bytes()[:3000])
    with pytest.raises(m.BundleError):
        m.verify_tar(tar)


@pytest.mark.skipif(os.geteuid() != 0, reason="install.sh needs root")
def test_install_sh_refuses_a_tampered_bundle_and_installs_nothing(tmp_path):
    root = fake_bundle(tmp_path / "b")
    with open(root / "wheels" / "any" / "meshmeet-0.1.0-py3-none-any.whl", "ab") as f:
        f.write(b"!")
    prefix = tmp_path / "opt"
    env = {**os.environ, "MESHMEET_PREFIX": str(prefix), "MESHMEET_BIN_DIR": str(tmp_path / "bin"),
           "MESHMEET_DATA_DIR": str(tmp_path / "data"), "MESHMEET_UNIT_DIR": str(tmp_path / "unit"),
           "MESHMEET_USER": "meshmeet-never-made", "MESHMEET_PYTHON": "python3"}
    done = subprocess.run([str(root / "install.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "does not match its sha256" in done.stderr and "nothing installed" in done.stderr, done.stderr
    assert not any((tmp_path / d).exists() for d in ("opt", "bin", "data", "unit"))


# ----- the parser under Hypothesis ----------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9_.+-]{0,20}(/[a-z0-9][a-z0-9_.+-]{0,20}){0,2}", fullmatch=True).filter(
    lambda p: ".." not in p.split("/") and p != m.MANIFEST_NAME)
entries = st.dictionaries(names, st.tuples(st.binary(min_size=32, max_size=32).map(bytes.hex),
                                          st.integers(0, m.MAX_FILE_BYTES)), min_size=1, max_size=8)


@settings(deadline=None)
@given(entries, st.sampled_from([("x86_64",), ("aarch64",), ("x86_64", "aarch64")]))
def test_manifest_round_trips(files, arches):
    manifest = m.Manifest("0.2.0", "3.11", arches, tuple(sorted((m.FileEntry(p, d, n) for p, (d, n) in files.items()),
                                                               key=lambda e: e.path)))
    assert m.parse_manifest(manifest.to_bytes()) == manifest


@settings(max_examples=300, deadline=None)  # no wall-clock limit on a shared machine
@given(st.binary(max_size=400))
def test_arbitrary_bytes_parse_or_bundle_error(data):
    try:
        m.parse_manifest(data)
    except m.BundleError:
        pass


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                           max_leaves=10)


@settings(max_examples=300, deadline=None)  # no wall-clock limit on a shared machine
@given(st.sampled_from(["format", "version", "python", "arches", "files"]), json_values)
def test_any_field_replaced_by_any_json_parses_or_bundle_error(field, value):
    doc = json.loads(m.Manifest("0.1.0", "3.11", ("x86_64",), (m.FileEntry("a.whl", "0" * 64, 1),)).to_bytes())
    doc[field] = value
    try:
        m.parse_manifest(json.dumps(doc).encode())
    except m.BundleError:
        pass


@settings(deadline=None)
@given(st.text(max_size=40))
def test_path_check_never_lets_out_of_the_bundle(path):
    try:
        ok = m.check_path(path)
    except m.BundleError:
        return
    assert not ok.startswith("/") and ".." not in ok.split("/") and "\\" not in ok and "\x00" not in ok


def fake_wheel(path: Path, name: str, requires: list[str], version: str = "0.1.0") -> None:
    """A minimal but valid pure-Python wheel (metadata only) for pip's resolver."""
    import zipfile

    dist = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    wheel = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    with zipfile.ZipFile(path / f"{name}-{version}-py3-none-any.whl", "w") as z:
        z.writestr(f"{dist}/METADATA", meta)
        z.writestr(f"{dist}/WHEEL", wheel)
        z.writestr(f"{dist}/RECORD", f"{dist}/METADATA,,\n{dist}/WHEEL,,\n{dist}/RECORD,,\n")


def test_completeness_check_refuses_a_bundle_missing_a_dependency(tmp_path):
    import sys

    from meshmeet.errors import MeshmeetError
    from meshmeet.install.bundle import _check_complete

    stage = tmp_path / "stage"
    (stage / "wheels" / "any").mkdir(parents=True)
    (stage / "wheels" / "aarch64").mkdir()
    fake_wheel(stage / "wheels" / "any", "pip", [])
    fake_wheel(stage / "wheels" / "any", "meshmeet", ["trio>=0.25"])
    with pytest.raises(MeshmeetError, match="incomplete for aarch64"):
        _check_complete(stage, "aarch64", tmp_path / "dl", sys.executable)
    fake_wheel(stage / "wheels" / "any", "trio", [], version="0.30.0")
    _check_complete(stage, "aarch64", tmp_path / "dl", sys.executable)  # now whole: no error
