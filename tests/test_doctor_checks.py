"""The doctor's pure parts: the clock probe core (docs/protocol/clock.md vectors, hostile bytes),
the status checks (clock, version skew) on status dicts, the default data dir rule, and how the
`meshmeet` command is spelled in printed hints."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import doc_vectors
from meshmeet.command_name import meshmeet_command
from meshmeet.data_home import default_data_dir, resolve_data_dir
from meshmeet.doctor import peers
from meshmeet.errors import MeshmeetError
from meshmeet.wire import clock

T1_MS, T2_MS, T3_MS = 1_700_000_000_000, 1_700_000_120_250, 1_700_000_000_500  # as in docs/protocol/clock.md


def test_doc_vectors():
    v = doc_vectors("protocol/clock.md")
    assert clock.make_ask(T1_MS) == v["ask"]
    reply, sample = clock.on_message(v["ask"], T2_MS)
    assert reply == v["answer"] and sample is None
    reply, sample = clock.on_message(v["answer"], T3_MS)
    assert reply is None and sample == clock.ClockSample(offset_ms=120_000.0, rtt_ms=500.0)


def test_stale_or_future_answers_are_ignored():
    answer = lambda t1: bytes([clock.ANSWER]) + t1.to_bytes(8, "big") + (5).to_bytes(8, "big")  # noqa: E731
    assert clock.on_message(answer(10_000), 9_999) == (None, None)  # from the future
    assert clock.on_message(answer(10_000), 10_000 + clock.MAX_PROBE_AGE_MS + 1) == (None, None)


@settings(deadline=None)
@given(st.binary(max_size=40), st.integers(0, 2**63))
def test_hostile_bytes_never_raise(body, now):
    reply, sample = clock.on_message(body, now)
    assert reply is None or len(reply) == clock.ANSWER_BYTES


def status_with(clocks: dict, versions: dict | None = None) -> dict:
    links = [{"peer": p, "site": f"Thôn {i}", "state": "up"} for i, p in enumerate(sorted(clocks), 1)]
    out = {"links": links, "clock": clocks}
    if versions is not None:
        out["peer_versions"] = {p: {"software": v} for p, v in versions.items()}
    return out


def test_clock_blames_this_machine_only_when_every_peer_agrees():
    s = status_with({"a": {"offset_ms": -90_000, "rtt_ms": 20}, "b": {"offset_ms": -91_000, "rtt_ms": 30}})
    found = peers.check_clock(s)
    assert all(f.state == "problem" and "this machine" in f.fix_en for f in found) and len(found) == 2
    s = status_with({"a": {"offset_ms": 90_000, "rtt_ms": 20}, "b": {"offset_ms": 100, "rtt_ms": 30}})
    [f] = peers.check_clock(s)
    assert "Thôn 1" in f.en and "the machine at Thôn 1" in f.fix_en
    # Within RTT/2 of the limit is not a finding: the probe cannot tell.
    s = status_with({"a": {"offset_ms": 5_900, "rtt_ms": 2_000}})
    assert [f.state for f in peers.check_clock(s)] == ["ok"]
    assert [f.state for f in peers.check_clock({"links": []})] == ["skipped"]


@pytest.mark.parametrize("theirs, state", [
    ({"a": "0.1.0"}, "ok"), ({"a": "0.2.0", "b": "0.1.3"}, "ok"), ({"a": "0.3.0"}, "problem"),
    ({"a": "1.1.0"}, "problem"), ({"a": "garbage"}, "problem"),
])
def test_version_skew(theirs, state):
    [f] = peers.check_versions(status_with({p: {} for p in theirs}, theirs), "0.1.0")
    assert f.state == state
    if state == "problem":
        assert "update the older nodes" in f.fix_en


def test_versions_skipped_when_peers_do_not_say():
    assert [f.state for f in peers.check_versions({"links": []}, "0.1.0")] == ["skipped"]


def test_default_data_dir_rule(tmp_path):
    system = tmp_path / "var-lib-meshmeet"
    env = {"HOME": str(tmp_path / "home")}
    assert default_data_dir(env, system) == tmp_path / "home" / ".local" / "share" / "meshmeet"
    assert default_data_dir({**env, "XDG_DATA_HOME": str(tmp_path / "xdg")}, system) == tmp_path / "xdg" / "meshmeet"
    system.mkdir()
    assert default_data_dir(env, system) == system
    assert default_data_dir({**env, "MESHMEET_DATA_DIR": str(tmp_path / "x")}, system) == tmp_path / "x"
    assert resolve_data_dir(Path("/given"), env, system) == Path("/given")


def test_unreadable_system_dir_says_sudo_u_meshmeet(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root can read every directory")
    system = tmp_path / "locked"
    system.mkdir(mode=0o000)
    with pytest.raises(MeshmeetError, match="sudo -u meshmeet"):
        resolve_data_dir(None, {"HOME": str(tmp_path)}, system)


def test_command_spelling(tmp_path):
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "meshmeet").exists():
        assert meshmeet_command().endswith("-m meshmeet")
        return
    # Not on PATH: a path that works from the cwd.
    cmd = meshmeet_command(cwd=venv_bin.parent.parent, path_env=str(tmp_path))
    assert cmd == str((venv_bin / "meshmeet").relative_to(venv_bin.parent.parent))
    assert meshmeet_command(cwd=tmp_path, path_env=str(tmp_path)) == str(venv_bin / "meshmeet")
    # On PATH and the same file: the bare name.
    assert meshmeet_command(path_env=str(venv_bin)) == "meshmeet"
    assert re.fullmatch(r"\S+", meshmeet_command())


def test_keys_open_dir_loose_key_foreign_owner_and_link(tmp_path):
    import os

    from meshmeet.doctor.local import check_keys

    d = tmp_path / "node"
    d.mkdir(mode=0o700)
    (d / "node.key").write_bytes(b"k" * 32)
    (d / "node.key").chmod(0o600)
    assert [f.state for f in check_keys(d)] == ["ok"]
    d.chmod(0o755)
    (d / "admin.key").write_bytes(b"a" * 32)
    (d / "admin.key").chmod(0o640)
    (d / "ca.key").symlink_to(d / "node.key")
    found = {f.en: f for f in check_keys(d)}
    assert any(f"others can enter {d}" in en for en in found)
    assert any("admin.key is readable by others (mode 640)" in en for en in found)
    assert any("ca.key is a link" in en for en in found)
    assert all(f.state == "problem" and f.fix_en for f in found.values())
    if os.geteuid() == 0:  # only root can give a file away
        d.chmod(0o700)
        (d / "ca.key").unlink()
        (d / "admin.key").chmod(0o600)
        os.chown(d / "admin.key", 65534, 65534)
        [f] = check_keys(d)
        assert "belongs to another user" in f.en and "chown meshmeet:" in f.fix_en


def test_an_open_residents_page_without_a_device_pin_is_a_finding(tmp_path):
    from meshmeet.doctor import local
    from meshmeet.web.app import devices

    status = {"citizens": {"residents_port": 8088}}
    (got,) = local.check_devices(tmp_path, status)
    assert got.state == "problem" and "device-pin" in got.fix_en and "8088" in got.vi
    devices.write_device_pin(tmp_path, "135790")
    assert local.check_devices(tmp_path, status)[0].state == "ok"
    assert local.check_devices(tmp_path, {"citizens": {"residents_port": None}})[0].state == "skipped"
    assert local.check_devices(tmp_path, None)[0].state == "skipped"
