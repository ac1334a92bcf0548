"""Release manifests and the install layout: the attacker's cases first (a member's key, a tampered
bundle, a replayed old release), then the format's test vector from docs/release.md."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.membership.identity import KeyPair
from meshmeet.release.layout import Layout
from meshmeet.release.manifest import (ReleaseError, check_bundle, check_manifest, parse_manifest, sign_manifest,
                                       version_key)

ADMIN = KeyPair.from_seed(bytes([7]) * 32)
MEMBER = KeyPair.from_seed(bytes([8]) * 32)
BUNDLE = b"meshmeet bundle bytes" * 100
SHA = hashlib.sha256(BUNDLE).digest()


def manifest(key: KeyPair = ADMIN, version: str = "0.2.0", sha: bytes = SHA, size: int = len(BUNDLE)) -> bytes:
    return sign_manifest(key, version, sha, size, issued_at=1_800_000_000)


# ----- attackers ---------------------------------------------------------------------------------
def test_member_signed_release_is_refused() -> None:
    with pytest.raises(ReleaseError) as e:
        check_manifest(manifest(MEMBER), [ADMIN.public_key], running="0.1.0")
    assert e.value.code == "not_admin" and "admin" in e.value.en


def test_member_key_swapped_into_admin_signer_field_fails_signature() -> None:
    data = bytearray(manifest(MEMBER))
    data = bytes(data).replace(MEMBER.public_key, ADMIN.public_key)
    with pytest.raises(ReleaseError) as e:
        check_manifest(data, [ADMIN.public_key], running="0.1.0")
    assert e.value.code == "bad_signature"


def test_tampered_bundle_is_refused() -> None:
    m = check_manifest(manifest(), [ADMIN.public_key], running="0.1.0")
    tampered = BUNDLE[:-1] + b"X"
    with pytest.raises(ReleaseError) as e:
        check_bundle(m, len(tampered), hashlib.sha256(tampered).digest())
    assert e.value.code == "tampered"
    with pytest.raises(ReleaseError):
        check_bundle(m, len(BUNDLE) + 1, SHA)
    check_bundle(m, len(BUNDLE), SHA)


@pytest.mark.parametrize("running,highest,version", [
    ("0.2.0", None, "0.2.0"),    # the release already running
    ("0.2.0", None, "0.1.9"),    # an older one, replayed
    ("0.1.0", "0.3.0", "0.2.5"), # older than one installed before (then rolled back to 0.1.0)
])
def test_replayed_old_release_is_a_refused_downgrade(running: str, highest: str | None, version: str) -> None:
    with pytest.raises(ReleaseError) as e:
        check_manifest(manifest(version=version), [ADMIN.public_key], running=running, highest_installed=highest)
    assert e.value.code == "downgrade" and "downgrade" in e.value.en


def test_a_version_rolled_back_here_is_not_retried() -> None:
    with pytest.raises(ReleaseError) as e:
        check_manifest(manifest(version="0.2.0"), [ADMIN.public_key], running="0.1.0", refused=["0.2.0"])
    assert e.value.code == "rolled_back"


def test_every_flipped_byte_is_refused() -> None:
    good = manifest()
    for i in range(len(good)):
        bad = bytearray(good)
        bad[i] ^= 0x01
        with pytest.raises(ReleaseError):
            check_manifest(bytes(bad), [ADMIN.public_key], running="0.1.0")


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_any_bytes_give_a_manifest_or_release_error(data: bytes) -> None:
    try:
        check_manifest(data, [ADMIN.public_key], running="0.1.0")
    except ReleaseError:
        pass


@given(st.text(max_size=20))
def test_versions_parse_or_release_error(text: str) -> None:
    try:
        key = version_key(text)
    except ReleaseError:
        return
    assert all(isinstance(p, int) for p in key) and len(key) == 4


def test_versions_compare_numerically() -> None:
    assert version_key("0.10.0") > version_key("0.9.9") > version_key("0.9") == version_key("0.9.0.0")


# ----- the documented vector ---------------------------------------------------------------------
def _doc_vectors() -> dict[str, str]:
    text = (Path(__file__).parents[1] / "docs" / "release.md").read_text()
    block = re.search(r"```vectors\n(.*?)```", text, re.S).group(1)  # type: ignore[union-attr]
    return dict(re.findall(r"^(\w+)\s*=\s*(\S+)$", block, re.M))


def test_manifest_vector_in_docs() -> None:
    v = _doc_vectors()
    key = KeyPair.from_seed(bytes.fromhex(v["admin_seed"]))
    data = sign_manifest(key, v["version"], bytes.fromhex(v["sha256"]), int(v["size"]), int(v["issued_at"]),
                         int(v["not_before"]))
    assert data.hex() == v["manifest"]
    m = check_manifest(bytes.fromhex(v["manifest"]), [key.public_key], running="0.1.0")
    assert (m.version, m.size, m.not_before) == (v["version"], int(v["size"]), int(v["not_before"]))


# ----- layout ------------------------------------------------------------------------------------
def _source_bundle(tmp: Path, version: str) -> Path:
    src = Path(__file__).parents[1] / "meshmeet"
    out = tmp / f"src-{version}.tar"
    with tarfile.open(out, "w") as tar:
        def bump(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            return None if "__pycache__" in info.name else info
        tar.add(src, arcname="meshmeet-src/meshmeet", filter=bump)
        init = f'__version__ = "{version}"\n'.encode()
        info = tarfile.TarInfo("meshmeet-src/meshmeet/__init__.py")
        info.size = len(init)
        tar.addfile(info, io.BytesIO(init))
    return out


def test_install_beside_and_switch(tmp_path: Path) -> None:
    lay = Layout(tmp_path / "root")
    lay.adopt_running("0.1.0")
    assert lay.current_version() == "0.1.0"
    lay.install("0.2.0", _source_bundle(tmp_path, "0.2.0"))
    assert lay.installed() == ["0.1.0", "0.2.0"] and lay.current_version() == "0.1.0"
    lay.switch("0.2.0")
    assert lay.current_version() == "0.2.0"
    import subprocess
    out = subprocess.run([str(lay.entry_point()), "--help"], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == 0 and "supervise" in out.stdout
    # the installed copy runs, not the tree the test runs from
    probe = lay.versions / "0.2.0" / "src" / "meshmeet" / "__init__.py"
    assert '"0.2.0"' in probe.read_text()


def test_bundle_with_path_escape_installs_nothing(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        data = b"#!/bin/sh\n"
        info = tarfile.TarInfo("../../escaped.sh")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    lay = Layout(tmp_path / "root")
    with pytest.raises(ReleaseError) as e:
        lay.install("0.2.0", evil)
    assert e.value.code == "install_failed"
    assert lay.installed() == [] and not (tmp_path / "escaped.sh").exists()
    assert [p.name for p in lay.versions.iterdir()] == []  # no staging left behind


def test_bundle_without_meshmeet_installs_nothing(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    with tarfile.open(junk, "w") as tar:
        info = tarfile.TarInfo("readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    lay = Layout(tmp_path / "root")
    with pytest.raises(ReleaseError):
        lay.install("0.2.0", junk)
    assert lay.installed() == []


def test_offline_bundle_without_wheels_for_this_machine_installs_nothing(tmp_path: Path) -> None:
    """A scripts/bundle bundle (manifest.json + wheels/) missing this machine's wheels is refused whole."""
    b = tmp_path / "meshmeet-0.3.0-bundle.tar"
    with tarfile.open(b, "w") as tar:
        for name, data in (("meshmeet-0.3.0/manifest.json", b"{}"), ("meshmeet-0.3.0/wheels/any/readme", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    lay = Layout(tmp_path / "root")
    with pytest.raises(ReleaseError) as e:
        lay.install("0.3.0", b)
    assert "wheels" in e.value.en and lay.installed() == []
