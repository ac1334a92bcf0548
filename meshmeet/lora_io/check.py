"""`meshmeet lora check` and `meshmeet lora emulate`, as functions the CLI calls under trio.

check_modem opens the configured port, applies the region profile through the model's driver,
reads the settings back and reports what is wrong in plain words. emulate starts emulated modems
on ptys sharing one radio channel and reports their device paths. This module must never
transmit anything but configuration commands during a check.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import trio

from ..errors import MeshmeetError
from ..lora.at import P2PSettings
from .e22 import E22, RtsDtrPins, ModePins
from ..lora.e22proto import E22Settings
from .emulator import EmulatedE22, EmulatedRak3172, RadioChannel, Topology
from .rak3172 import Rak3172
from ..lora.region import DEFAULT_CONFIG_DIR, Problem, check_radio, load_modem_profile, load_region
from .serial_io import open_serial

CHECK_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class LoraConfig:
    """The node config's [lora] table."""

    port: str
    model: str = "rak3172"
    region: str = "vn-920"
    role: str = "hall"
    preset: str = "medium"
    freq_hz: int = 921_500_000
    power_dbm: int = 14
    e22_channel: int = 71


@dataclass
class CheckReport:
    model: str
    port: str
    ok: bool = False
    applied: dict = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    budget_s_per_hour: float = 0.0

    def as_dict(self) -> dict:
        return {"model": self.model, "port": self.port, "ok": self.ok, "applied": self.applied,
                "budget_s_per_hour": self.budget_s_per_hour,
                "problems": [{"vi": p.vi, "en": p.en} for p in self.problems]}


async def check_modem(config: LoraConfig, *, config_dir: Path = DEFAULT_CONFIG_DIR,
                      pins: ModePins | None = None) -> CheckReport:
    """Talk to the modem, apply the region profile, read back, report. Never raises MeshmeetError."""
    report = CheckReport(config.model, config.port)
    try:
        region = load_region(config.region, config_dir)
        profile = load_modem_profile(config.model, config_dir)
        report.budget_s_per_hour = region.budget_s_per_hour(config.role)
        params = region.presets[config.preset]
    except MeshmeetError as e:
        report.problems.append(Problem(e.vi, e.en))
        return report
    except KeyError:
        report.problems.append(Problem(f"Không có cấu hình '{config.preset}'", f"no preset '{config.preset}'"))
        return report
    if config.model == "rak3172":
        wanted = P2PSettings(config.freq_hz, params.sf, params.bw_hz // 1000, params.cr - 1,
                             params.preamble, config.power_dbm)
        freq_hz, bw_khz, power = wanted.freq_hz, wanted.bw_khz, wanted.power_dbm
    elif config.model == "e22":
        e22_wanted = E22Settings(channel=config.e22_channel, power_dbm=int(profile["defaults"]["power_dbm"]))
        freq_hz, bw_khz, power = int(e22_wanted.freq_mhz * 1e6), 125, e22_wanted.power_dbm
    else:
        report.problems.append(Problem(f"Không hỗ trợ modem '{config.model}'", f"unsupported modem '{config.model}'"))
        return report
    report.problems += check_radio(region, config.role, freq_hz, bw_khz, power)
    if report.problems:
        return report
    try:
        port = open_serial(config.port, int(profile["baud"]))
    except MeshmeetError as e:
        report.problems.append(Problem(e.vi, e.en))
        return report
    try:
        async with trio.open_nursery() as nursery:
            try:
                with trio.fail_after(CHECK_TIMEOUT_S):
                    await _configure(config, port, nursery, report, region, pins,
                                     wanted if config.model == "rak3172" else e22_wanted)
            except MeshmeetError as e:
                report.problems.append(Problem(e.vi, e.en))
            except trio.TooSlowError:
                report.problems.append(Problem("Modem không trả lời", "modem did not answer"))
            nursery.cancel_scope.cancel()
    finally:
        await port.aclose()
    report.ok = not report.problems
    return report


async def _configure(config: LoraConfig, port, nursery: trio.Nursery, report: CheckReport, region,
                     pins: ModePins | None, wanted) -> None:
    if config.model == "rak3172":
        rak = Rak3172(port.stream)
        await nursery.start(rak.run)
        back = await rak.configure(wanted)
        report.applied = {"command": back.command()}
        report.problems += check_radio(region, config.role, back.freq_hz, back.bw_khz, back.power_dbm)
    else:
        e22 = E22(port.stream, pins or RtsDtrPins(port.serial))
        await nursery.start(e22.run)
        b = await e22.configure(wanted)
        report.applied = {"channel": b.channel, "freq_mhz": b.freq_mhz, "air_rate_bps": b.air_rate_bps,
                          "power_dbm": b.power_dbm}
        report.problems += check_radio(region, config.role, int(b.freq_mhz * 1e6), 125, b.power_dbm)


async def emulate(nodes: int, topology: Topology | None = None, *, model: str = "rak3172",
                  loss: float = 0.0, seed: int = 1, behaviour: str = "ok",
                  task_status: trio.TaskStatus[dict[int, str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Run `nodes` emulated modems (a chain unless a topology is given) until cancelled.

    Reports {node id: pty path} through task_status; point each node's [lora] port at one.
    """
    topo = topology or Topology.chain(nodes, loss)
    cls = {"rak3172": EmulatedRak3172, "e22": EmulatedE22}[model]
    async with trio.open_nursery() as nursery:
        channel = RadioChannel(topo, nursery, random.Random(seed))
        paths = {}
        for node in topo.nodes:
            modem = cls(node, channel, behaviour, rng=random.Random(seed + node))
            paths[node] = await nursery.start(modem.serve)
        task_status.started(paths)
        await trio.sleep_forever()
