"""The testbed's plan: from a scenario to namespaces, veth pairs, addresses, shapers and commands.

Pure: `make_plan` turns a Scenario into frozen records, and `setup_commands` into the exact
`ip`/`tc`/`iptables` argument lists that build it. Every address is in 10.77.0.0/16, one /30 per
link, and exists only inside the namespaces it creates; each node's HTTP API stays on its own
namespace's 127.0.0.1. Both ends of a link dial each other through their own emulator proxy (the
node's link layer keeps one of the two connections), so a restarted node re-links at once.
A link given a packet profile (profiles.py) is instead a TUN pair through a packet forwarder
(tunlink.py, its own namespace PREFIX_linkN): no veth, tbf, iptables or proxy; both ends dial
the other's address on it directly, so the nodes' own TCP meets the loss, queue and delay.
This module must never run a command, read the clock or touch the network.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..sim.scenario import Scenario
from ..wire import DEAD_AFTER_KEEPALIVES
from .delayline import EmulatorError, LinkShape
from .emulator import Route
from .profiles import parse_profile

NETNS_PREFIX = "mm-"
SUBNET = ipaddress.IPv4Network("10.77.0.0/16")
LINK_PREFIX_LEN = 30
MAX_LINKS = SUBNET.num_addresses // 4
MESH_PORT = 7733
HTTP_HOST = "127.0.0.1"
HTTP_PORT = 8080
PROXY_BASE_PORT = 17000
MIN_KEEPALIVE_S = 0.05
MAX_KEEPALIVE_S = 5.0
TBF_LATENCY_MS = 100
TBF_MIN_BURST_BYTES = 4 * 1514
TBF_BURST_S = 0.005            # a burst of 5 ms at the cap (at least a few full frames)
RUN_NAME_RE = re.compile(r"^[a-z0-9]{1,8}$")


@dataclass(frozen=True)
class TunLinkPlan:
    """A packet-level emulated link between two namespaces: built by tunlink.start_tun_link."""

    mid: str            # the forwarder's namespace
    ns_a: str
    ns_b: str
    dev: str            # the TUN device's name in both namespaces
    addr_a: str
    addr_b: str
    profile: str        # preset letter or key=value spec (profiles.parse_profile)
    control: Path       # the forwarder's control socket
    seed: str = "0"

    def forwarder_argv(self) -> list[str]:
        return ["-m", "meshmeet.testbed.packetlink", f"{self.ns_a}:{self.dev}", f"{self.ns_b}:{self.dev}",
                "--profile", self.profile, "--seed", self.seed, "--control", str(self.control)]

    def address_commands(self) -> list[list[str]]:
        cmds = []
        for ns, addr in ((self.ns_a, self.addr_a), (self.ns_b, self.addr_b)):
            cmds.append(["ip", "-n", ns, "addr", "add", f"{addr}/{LINK_PREFIX_LEN}", "dev", self.dev])
            cmds.append(["ip", "-n", ns, "link", "set", self.dev, "up"])
        return cmds


@dataclass(frozen=True)
class LinkPlan:
    index: int
    a: str
    b: str
    dev: str                 # the veth's name in both namespaces
    addr_a: str
    addr_b: str
    delay_s: float           # one way, added by the emulator
    rate_bps: float          # tbf on both ends
    loss: float              # iptables statistic DROP on input at both ends
    proxy_port: int          # 127.0.0.1:proxy_port in each end's namespace forwards to the other end
    packet: TunLinkPlan | None = None   # a packet-level emulated link (then no veth/proxy)

    def other(self, node: str) -> str:
        return self.b if node == self.a else self.a

    def addr_of(self, node: str) -> str:
        return self.addr_a if node == self.a else self.addr_b


@dataclass(frozen=True)
class HostPlan:
    node: str                # scenario node id
    netns: str
    role: str                # scenario role: hq | backup | hall | relay
    priority: int
    keepalive_s: float
    peers: tuple[str, ...]   # --peer addresses (its own proxies)
    routes: tuple[Route, ...]  # what its emulator proxies


@dataclass(frozen=True)
class Plan:
    run: str
    hosts: tuple[HostPlan, ...]
    links: tuple[LinkPlan, ...]

    @property
    def prefix(self) -> str:
        return run_prefix(self.run)

    def host(self, node: str) -> HostPlan:
        for h in self.hosts:
            if h.node == node:
                return h
        raise KeyError(node)

    def link(self, a: str, b: str) -> LinkPlan:
        for link in self.links:
            if {link.a, link.b} == {a, b}:
                return link
        raise KeyError(f"{a}~{b}")


def run_prefix(run: str) -> str:
    """Every namespace of run `run` starts with this (what `down` removes)."""
    check_run_name(run)
    return f"{NETNS_PREFIX}{run}-"


def check_run_name(run: str) -> str:
    if not isinstance(run, str) or not RUN_NAME_RE.match(run):
        raise EmulatorError("tên lượt chạy phải gồm 1–8 chữ thường/số", "run name must be 1-8 lowercase letters/digits")
    return run


def _slug(node: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", node.lower()).strip("-")[:40] or "node"


def keepalive_for(detect_s: float) -> float:
    """The keepalive that makes the node declare a silent link dead after about `detect_s`."""
    return round(min(MAX_KEEPALIVE_S, max(MIN_KEEPALIVE_S, detect_s / DEAD_AFTER_KEEPALIVES)), 3)


CONTROL_DIR = "/tmp/meshmeet-testbed"


def control_path(run: str, index: int) -> Path:
    """Where the forwarder of link `index` of run `run` listens for control requests."""
    return Path(CONTROL_DIR) / check_run_name(run) / f"link{index}.sock"


def make_plan(scenario: Scenario, run: str, profiles: Mapping[tuple[str, str], str] | None = None,
              seed: str | None = None) -> Plan:
    """Lay the scenario out: one namespace per node, one veth pair and /30 per link.

    `profiles`: (a, b) -> profile spec puts that link on a packet forwarder, `forward` shaping a -> b.
    `seed`: what the forwarders' loss and jitter draw from (default: the run's name, so a run repeats)."""
    prefix = run_prefix(run)
    profiles = dict(profiles or {})
    for (pa, pb), spec in profiles.items():
        parse_profile(spec)
        if not any({pa, pb} == {l.a, l.b} for l in scenario.links):
            raise EmulatorError(f"không có liên kết {pa}~{pb}", f"no link {pa}~{pb} in the scenario")
    if len(scenario.links) > MAX_LINKS:
        raise EmulatorError(f"quá nhiều liên kết (tối đa {MAX_LINKS})", f"too many links (at most {MAX_LINKS})")
    names: dict[str, str] = {}
    used: set[str] = set()
    for i, spec in enumerate(scenario.nodes):
        name = prefix + _slug(spec.id)
        if name in used:
            name = f"{prefix}{_slug(spec.id)[:34]}-{i}"
        used.add(name)
        names[spec.id] = name
    links = []
    for i, spec in enumerate(scenario.links):
        base = SUBNET.network_address + 4 * i
        addr = {spec.a: str(base + 1), spec.b: str(base + 2)}
        packet = None
        for (pa, pb), pspec in profiles.items():
            if {pa, pb} == {spec.a, spec.b}:
                packet = TunLinkPlan(mid=f"{prefix}_link{i}", ns_a=names[pa], ns_b=names[pb], dev=f"mm{i}",
                                     addr_a=addr[pa], addr_b=addr[pb], profile=pspec, control=control_path(run, i),
                                     seed=f"{run if seed is None else seed}-{i}")
        links.append(LinkPlan(
            index=i, a=spec.a, b=spec.b, dev=f"mm{i}", addr_a=addr[spec.a], addr_b=addr[spec.b],
            delay_s=spec.delay_s, rate_bps=spec.bandwidth_bps, loss=spec.loss, proxy_port=PROXY_BASE_PORT + i,
            packet=packet,
        ))
    hosts = []
    for spec in scenario.nodes:
        mine = [(link, scenario.links[link.index]) for link in links if spec.id in (link.a, link.b)]
        routes = tuple(
            Route(HTTP_HOST, link.proxy_port, link.addr_of(link.other(spec.id)), MESH_PORT, LinkShape(delay_s=link.delay_s))
            for link, _ in mine if link.packet is None
        )
        direct = tuple(f"{link.addr_of(link.other(spec.id))}:{MESH_PORT}" for link, _ in mine if link.packet is not None)
        detect = min((s.detect_s for _, s in mine), default=3 * DEAD_AFTER_KEEPALIVES)
        hosts.append(HostPlan(
            node=spec.id, netns=names[spec.id], role=spec.role, priority=spec.priority,
            keepalive_s=keepalive_for(detect), peers=tuple(f"{HTTP_HOST}:{r.listen_port}" for r in routes) + direct, routes=routes,
        ))
    return Plan(run=run, hosts=tuple(hosts), links=tuple(links))


def _in(netns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


def tbf_burst_bytes(rate_bps: float) -> int:
    return max(TBF_MIN_BURST_BYTES, int(rate_bps / 8 * TBF_BURST_S))


def setup_commands(plan: Plan) -> list[list[str]]:
    """The commands that build the plan's namespaces and links, in order."""
    cmds: list[list[str]] = []
    for host in plan.hosts:
        cmds.append(["ip", "netns", "add", host.netns])
        cmds.append(["ip", "-n", host.netns, "link", "set", "lo", "up"])
    for link in plan.links:
        if link.packet is not None:
            continue   # built by tunlink.start_tun_link once its forwarder runs
        ns_a, ns_b = plan.host(link.a).netns, plan.host(link.b).netns
        cmds.append(["ip", "link", "add", link.dev, "netns", ns_a, "type", "veth", "peer", "name", link.dev, "netns", ns_b])
        for ns, addr in ((ns_a, link.addr_a), (ns_b, link.addr_b)):
            cmds.append(["ip", "-n", ns, "addr", "add", f"{addr}/{LINK_PREFIX_LEN}", "dev", link.dev])
            cmds.append(["ip", "-n", ns, "link", "set", link.dev, "up"])
            cmds.append(_in(ns, "tc", "qdisc", "replace", "dev", link.dev, "root", "tbf",
                            "rate", f"{int(link.rate_bps)}bit", "burst", str(tbf_burst_bytes(link.rate_bps)),
                            "latency", f"{TBF_LATENCY_MS}ms"))
            if link.loss > 0:
                cmds.append(_in(ns, "iptables", "-A", "INPUT", "-i", link.dev, "-m", "statistic", "--mode", "random",
                                "--probability", f"{link.loss:.6f}", "-j", "DROP"))
    return cmds


def link_commands(plan: Plan, a: str, b: str, up: bool) -> list[list[str]]:
    """Cut (or restore) the cable between a and b: both veth ends down (or up)."""
    link = plan.link(a, b)
    state = "up" if up else "down"
    return [["ip", "-n", plan.host(n).netns, "link", "set", link.dev, state] for n in (link.a, link.b)]
