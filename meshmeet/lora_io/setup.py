"""Open and configure the node's LoRa modem from its [lora] settings: the radio plan, then the driver.

`radio_plan` turns settings into the exact modem settings for the region preset and lists what
would be illegal (wrong band, power above the limit); `start_modem` opens the serial port, starts
the model's driver in a nursery, applies the plan and reads it back. This module must never
configure a modem with settings the region check found illegal, and never transmit a frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import trio

from ..errors import ConfigError
from ..lora.at import P2PSettings
from .e22 import E22, ModePins, RtsDtrPins
from ..lora.e22proto import E22Settings
from .modem import Modem, ModemError
from .rak3172 import Rak3172
from ..lora.region import DEFAULT_CONFIG_DIR, Problem, Region, check_radio, load_modem_profile, load_region
from .serial_io import SerialPort, open_serial

CONFIGURE_TIMEOUT_S = 15.0
ModemSettings = Union[P2PSettings, E22Settings]


@dataclass(frozen=True)
class RadioPlan:
    model: str
    region: Region
    role: str
    baud: int
    wanted: ModemSettings
    freq_hz: int
    bw_khz: int
    power_dbm: int
    problems: tuple[Problem, ...]

    @property
    def budget_s_per_hour(self) -> float:
        return self.region.budget_s_per_hour(self.role)


def radio_plan(config, config_dir: Path = DEFAULT_CONFIG_DIR) -> RadioPlan:
    """The settings to apply (config: check.LoraConfig). ConfigError for unknown region/model/preset/role."""
    region = load_region(config.region, config_dir)
    profile = load_modem_profile(config.model, config_dir)
    if config.role not in region.duty_cycle:
        raise ConfigError(f"Vai trò '{config.role}' không có trong vùng {region.name}",
                          f"role '{config.role}' unknown in region {region.name}")
    try:
        params = region.presets[config.preset]
    except KeyError:
        raise ConfigError(f"Không có cấu hình '{config.preset}'", f"no preset '{config.preset}'") from None
    wanted: ModemSettings
    if config.model == "rak3172":
        wanted = P2PSettings(config.freq_hz, params.sf, params.bw_hz // 1000, params.cr - 1, params.preamble,
                             config.power_dbm)
        freq_hz, bw_khz, power = wanted.freq_hz, wanted.bw_khz, wanted.power_dbm
    elif config.model == "e22":
        wanted = E22Settings(channel=config.e22_channel, power_dbm=int(profile["defaults"]["power_dbm"]))
        freq_hz, bw_khz, power = int(wanted.freq_mhz * 1e6), 125, wanted.power_dbm
    else:
        raise ConfigError(f"Không hỗ trợ modem '{config.model}'", f"unsupported modem '{config.model}'")
    problems = tuple(check_radio(region, config.role, freq_hz, bw_khz, power))
    return RadioPlan(config.model, region, config.role, int(profile["baud"]), wanted, freq_hz, bw_khz, power, problems)


def _refuse(problems: tuple[Problem, ...] | list[Problem]) -> ModemError:
    return ModemError("; ".join(p.vi for p in problems), "; ".join(p.en for p in problems))


@dataclass
class StartedModem:
    port: SerialPort
    driver: Modem
    plan: RadioPlan
    applied: ModemSettings


async def start_modem(config, plan: RadioPlan, nursery: trio.Nursery, *, on_gone: Callable[[], None],
                      pins: ModePins | None = None) -> StartedModem:
    """Open the port, run the driver in `nursery` (`on_gone` is called if its reader ends: the
    modem was unplugged), configure and read back. Raises ModemError (port closed again)."""
    if plan.problems:
        raise _refuse(plan.problems)
    port = open_serial(config.port, plan.baud)
    try:
        driver: Rak3172 | E22
        if plan.model == "rak3172":
            driver = Rak3172(port.stream)
        else:
            driver = E22(port.stream, pins or RtsDtrPins(port.serial))

        async def reader(task_status=trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            await driver.run()
            on_gone()

        await nursery.start(reader)
        try:
            with trio.fail_after(CONFIGURE_TIMEOUT_S):
                back = await driver.configure(plan.wanted)  # type: ignore[arg-type]
        except trio.TooSlowError:
            raise ModemError("Modem không trả lời", "modem did not answer") from None
        if isinstance(back, P2PSettings):
            problems = check_radio(plan.region, plan.role, back.freq_hz, back.bw_khz, back.power_dbm)
        else:
            problems = check_radio(plan.region, plan.role, int(back.freq_mhz * 1e6), 125, back.power_dbm)
        if problems:
            raise _refuse(problems)
        return StartedModem(port, driver, plan, back)
    except BaseException:
        await port.aclose()
        raise
