"""Shared builders for the LoRa tests (no fixtures with global state)."""

from __future__ import annotations

import random

from meshmeet.membership.identity import KeyPair, verify
from meshmeet.lora.airtime import LoraParams
from meshmeet.lora.core import CoreConfig, LoraCore, LoraPeers
from meshmeet.lora.frames import FrameKeys

KEY = bytes(range(32))


def make_cores(ids, *, budget_s: float = 36.0, mtu: int = 240, authorities=(1,), params=None,
               hop_limit: int = 6, seed: int = 0, **cfg):
    kps = {i: KeyPair.from_seed(bytes([i]) * 32) for i in ids}
    peers = LoraPeers({i: k.public_key for i, k in kps.items()}, frozenset(authorities))
    keys = FrameKeys.derive(KEY)
    cores = {
        i: LoraCore(CoreConfig(i, params or LoraParams(sf=7), budget_s, mtu, hop_limit=hop_limit, **cfg),
                    keys, peers, sign=kps[i].sign, verify=verify, rng=random.Random(seed + i))
        for i in ids
    }
    return cores, kps


def run_sim(cores, neighbours, until: float, *, step: float = 0.005, loss: float = 0.0, seed: int = 0):
    """Tiny deterministic sans-IO channel: no collisions, per-delivery loss. Returns events by node."""
    rng = random.Random(seed)
    events = {i: [] for i in cores}
    now = 0.0
    while now < until:
        for i, c in cores.items():
            events[i] += c.handle_timers(now)
            data = c.next_transmit(now)
            if data:
                for j in neighbours[i]:
                    if rng.random() >= loss:
                        events[j] += cores[j].receive(data, now)
        now += step
    return events
