"""Run every doctor check for one data dir, in the order an operator fixes things: the machine
(keys, disk), the node process and its ports, the radio, then what the node sees of its peers.
Reads the config, the run file and the node's status API; never writes anything."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .. import __version__
from .. import config as config_mod
from ..errors import MeshmeetError
from . import local, peers
from .findings import PROBLEM, Finding, ok, problem
from .membership import check_revoked


def _role(data_dir: Path, status: dict | None) -> str:
    if status:
        return str(status.get("node", {}).get("role", "hall"))
    try:
        from ..membership.datadir import load_membership

        return load_membership(data_dir)[2].role
    except (MeshmeetError, OSError, ImportError, IndexError, AttributeError):
        return "hall"


def run_doctor(data_dir: Path, api_call: Callable[[Path, str], dict], *,
               min_free_bytes: int = local.MIN_FREE_BYTES) -> list[Finding]:
    from ..node.runfile import read_run_file

    revoked = check_revoked(data_dir) if data_dir.is_dir() else []
    if revoked and revoked[0].state == PROBLEM:  # the cause of everything below: say it first, blame nothing else
        return revoked + local.check_keys(data_dir) + local.check_disk(data_dir, min_free_bytes)
    findings = revoked + local.check_keys(data_dir) + local.check_disk(
        data_dir if data_dir.exists() else data_dir.parent, min_free_bytes)
    try:
        cfg = config_mod.load(data_dir)
    except MeshmeetError as e:
        return findings + [problem("config", e.vi, e.en, "sửa config.toml (meshmeet config --example)",
                                   "fix config.toml (see meshmeet config --example)")]
    status = None
    running = read_run_file(data_dir) if data_dir.exists() else None
    if running:
        try:
            status = api_call(data_dir, "status")
        except MeshmeetError as e:
            findings.append(problem("node", e.vi, e.en, "xem journalctl -u meshmeet; sudo systemctl restart meshmeet",
                                    "see journalctl -u meshmeet; sudo systemctl restart meshmeet"))
    if status is not None:
        node = status.get("node", {})
        findings.append(ok("node", f"Nút {node.get('site')} ({node.get('role')}) đang chạy, meshmeet {__version__}",
                           f"node {node.get('site')} ({node.get('role')}) is running, meshmeet {__version__}"))
    elif not running:
        findings.append(problem("node", "Nút không chạy", "the node is not running",
                                "sudo systemctl enable --now meshmeet (hoặc meshmeet run)",
                                "sudo systemctl enable --now meshmeet (or meshmeet run)"))
    findings += local.check_ports(cfg, running if status is not None else None)
    findings += local.check_lora(cfg, _role(data_dir, status))
    if status is not None:
        findings += peers.check_links(status)
        findings += peers.check_mdns(status, "mdns" in status)
        findings += peers.check_clock(status)
        findings += peers.check_versions(status, __version__)
    findings += local.check_devices(data_dir, status)
    return findings
