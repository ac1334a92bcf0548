"""The offline install for real: build the bundle (x86-64 half; wheels kept in a wheelhouse between
runs), then inside a network namespace with only `lo` (no route out) run `install.sh` with a
temporary prefix and a throwaway system user, and use the installed copy: --help, init with the
default data dir, the service unit's ExecStart as its User, invite, and a join over loopback.

Needs root, iproute2 and setpriv (util-linux: drops to the user and execs, so SIGTERM reaches the node); run under `flock /tmp/meshmeet-netns.lock`. Waits are hang guards only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from meshmeet import config as config_mod
from meshmeet.config import LoraSettings
from meshmeet.install import manifest as manifest_mod
from meshmeet.install.bundle import build_bundle

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 (ip netns)"),
]
HANG_GUARD_S = 300
WHEELHOUSE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "meshmeet-test-wheelhouse"


def sh(*cmd: str, check: bool = True, env: dict | None = None, timeout: float = HANG_GUARD_S) -> subprocess.CompletedProcess:
    done = subprocess.run(list(cmd), capture_output=True, text=True, env=env, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{shlex.join(cmd)} -> {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture
def box():
    """A network namespace with only lo, a world-traversable temp root, a user name; all removed after."""
    ns = f"mmi{os.getpid()}"
    user = f"mmt{os.getpid()}"
    root = Path(tempfile.mkdtemp(prefix="meshmeet-install-"))
    root.chmod(0o755)
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns, user, root
    finally:
        sh("ip", "netns", "del", ns, check=False)
        sh("userdel", user, check=False)
        sh("groupdel", user, check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_bundle_installs_and_joins_with_no_network(tmp_path, box):
    ns, user, root = box
    built = build_bundle(tmp_path / "dist", ("x86_64",), wheelhouse=WHEELHOUSE)
    assert built.path.name == f"meshmeet-{built.version}-bundle.tar"
    assert manifest_mod.verify_tar(built.path).arches == ("x86_64",)
    with tarfile.open(built.path) as tar:
        tar.extractall(root / "unpacked", filter="data")
    bundle = root / "unpacked" / f"meshmeet-{built.version}"

    # No route out: only loopback exists in the namespace.
    routes = sh("ip", "netns", "exec", ns, "ip", "-o", "route", "show").stdout.strip()
    assert routes == ""
    paths = {"MESHMEET_PREFIX": root / "opt", "MESHMEET_BIN_DIR": root / "bin", "MESHMEET_DATA_DIR": root / "data",
             "MESHMEET_UNIT_DIR": root / "systemd"}
    env = {"PATH": os.environ["PATH"], "MESHMEET_USER": user, "MESHMEET_PYTHON": "/usr/bin/python3",
           **{k: str(v) for k, v in paths.items()}}
    out = sh("ip", "netns", "exec", ns, "env", "-i", *[f"{k}={v}" for k, v in env.items()], str(bundle / "install.sh"))
    assert f"meshmeet {built.version}" in out.stdout

    # What install.sh promised: the command, the venv, the user, the data dir, the unit.
    meshmeet = root / "bin" / "meshmeet"
    assert meshmeet.is_symlink() and meshmeet.resolve() == (root / "opt" / "versions" / built.version / "bin" / "meshmeet")
    data = root / "data"
    st = data.stat()
    assert pwd.getpwuid(st.st_uid).pw_name == user and stat.S_IMODE(st.st_mode) == 0o700
    unit = dict(line.split("=", 1) for line in (root / "systemd" / "meshmeet.service").read_text().splitlines()
                if "=" in line and not line.startswith("#"))
    assert unit["User"] == user and unit["ReadWritePaths"] == str(data)
    exec_start = shlex.split(unit["ExecStart"])
    assert exec_start == [str(meshmeet), "run", "--data-dir", str(data)]
    if shutil.which("systemd-analyze"):
        sh("systemd-analyze", "verify", str(root / "systemd" / "meshmeet.service"))

    # The installed copy runs alone: a clean environment, no repo on PYTHONPATH, no network.
    run_env = ["env", "-i", "PATH=/usr/bin:/bin", f"MESHMEET_DATA_DIR={data}", "HOME=/nonexistent"]

    def as_user(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", ns, "setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *run_env, *args, check=check)

    assert "meshmeet" in as_user(str(meshmeet), "--help").stdout
    # init with no --data-dir: MESHMEET_DATA_DIR (as the unit's Environment= sets it) decides.
    init = as_user(str(meshmeet), "init", "--commune", "Xã Thử", "--site", "UBND xã")
    assert "commune created" in init.stdout and (data / "config.toml").exists()

    # The installed doctor finds the LoRa region file that came in the wheel (no checkout here).
    cfg = config_mod.load(data)
    config_mod.save(data, dataclasses.replace(cfg, lora=LoraSettings(port="/dev/ttyUSB0")))
    shutil.chown(data / config_mod.CONFIG_FILE, user, user)
    found = json.loads(as_user(str(meshmeet), "doctor", "--json", check=False).stdout)["findings"]
    assert [f["state"] for f in found if f["check"] == "lora"] == ["ok"], found
    assert [f["state"] for f in found if f["check"] == "keys"] == ["ok"], found
    config_mod.save(data, cfg)  # no modem here: the node below runs without [lora]
    shutil.chown(data / config_mod.CONFIG_FILE, user, user)

    # The unit's ExecStart, as its User, in the namespace: the node comes up and answers status.
    log = open(root / "node.log", "wb")
    node = subprocess.Popen(["ip", "netns", "exec", ns, "setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *run_env, *exec_start],
                            stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while True:
            status = as_user(str(meshmeet), "status", "--json", check=False)
            if status.returncode == 0:
                break
            assert node.poll() is None, (root / "node.log").read_text()
            assert time.monotonic() < deadline, (status.stderr, (root / "node.log").read_text())
            time.sleep(0.5)
        invite = as_user(str(meshmeet), "invite", "--site", "Thôn 1", "--address", "127.0.0.1:7733")
        code = invite.stdout.strip().splitlines()[0]
        hall = root / "hall"
        hall.mkdir()
        shutil.chown(hall, user, user)
        joined = as_user(str(meshmeet), "join", "--data-dir", str(hall), "--via", "127.0.0.1:7733", "--no-mdns", code)
        assert "joined" in joined.stdout and "members: 2" in joined.stdout, joined
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            rc = node.wait(timeout=HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            node.kill()
            rc = node.wait()
        log.close()
    assert rc == 0, (root / "node.log").read_text()
