"""A node raises its open-file soft limit to the hard limit at start-up (real `meshmeet run`)."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from nodeproc import NodeProcess, make_commune, stop_all

pytestmark = pytest.mark.slow

LOW_SOFT_LIMIT = 256


def open_file_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-file limit in /proc")


def test_node_raises_its_open_file_limit_to_the_hard_limit(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= LOW_SOFT_LIMIT:
        pytest.skip("the hard limit is already low")
    hq_dir, _ = make_commune(tmp_path, 0)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_SOFT_LIMIT, hard))  # the child inherits it
    try:
        hq = NodeProcess(hq_dir, mdns=False)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        node_soft, node_hard = open_file_limits(hq.proc.pid)
        assert node_hard == hard or hard == resource.RLIM_INFINITY
        assert node_soft > LOW_SOFT_LIMIT
        assert node_soft == node_hard or (hard == resource.RLIM_INFINITY and node_soft >= 65536)
        assert "open-file limit" in hq.output()
    finally:
        stop_all([hq])
