"""Region and modem profiles from firmware-config/, and the legality check of radio settings.

`check_radio(region, role, freq_hz, bw_khz, power_dbm)` returns problems in plain words
(Vietnamese first). This module must never talk to a modem; it only reads TOML and compares.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .airtime import WINDOW_S, LoraParams

# In a checkout: the repository's firmware-config/. Installed from a wheel (the offline bundle): the
# copy pyproject's data-files put under the venv, share/meshmeet/firmware-config.
_CHECKOUT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "firmware-config"
DEFAULT_CONFIG_DIR = (_CHECKOUT_CONFIG_DIR if _CHECKOUT_CONFIG_DIR.is_dir()
                      else Path(sys.prefix) / "share" / "meshmeet" / "firmware-config")


@dataclass(frozen=True)
class Problem:
    vi: str
    en: str

    def __str__(self) -> str:
        return f"{self.vi} / {self.en}"


@dataclass(frozen=True)
class Region:
    name: str
    band_low_mhz: float
    band_high_mhz: float
    max_power_dbm: dict[str, int]
    duty_cycle: dict[str, float]
    channels_mhz: tuple[float, ...]
    allowed_bw_khz: tuple[int, ...]
    presets: dict[str, LoraParams]
    sources: tuple[str, ...]

    def budget_s_per_hour(self, role: str) -> float:
        return self.duty_cycle[role] * WINDOW_S


def load_region(name: str, config_dir: Path = DEFAULT_CONFIG_DIR) -> Region:
    path = config_dir / "regions" / f"{name}.toml"
    try:
        doc = tomllib.loads(path.read_text())
        roles = doc["role"]
        return Region(
            name=doc["name"], band_low_mhz=float(doc["band_low_mhz"]),
            band_high_mhz=float(doc.get("strict_high_mhz", doc["band_high_mhz"])),
            max_power_dbm={r: int(v["max_power_dbm"]) for r, v in roles.items()},
            duty_cycle={r: float(v["duty_cycle"]) for r, v in roles.items()},
            channels_mhz=tuple(float(c["freq_mhz"]) for c in doc.get("channel", [])),
            allowed_bw_khz=tuple(int(b) for b in doc["allowed_bw_khz"]),
            presets={n: LoraParams(sf=int(p["sf"]), bw_hz=int(p["bw_khz"]) * 1000) for n, p in doc.get("preset", {}).items()},
            sources=tuple(doc.get("sources", [])),
        )
    except FileNotFoundError:
        raise ConfigError(f"Không có vùng LoRa '{name}'", f"no LoRa region profile '{name}'") from None
    except (KeyError, ValueError, TypeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"Tệp vùng LoRa {path} bị lỗi: {e}", f"LoRa region file {path} is broken: {e}") from None


def load_modem_profile(model: str, config_dir: Path = DEFAULT_CONFIG_DIR) -> dict:
    path = config_dir / "modems" / f"{model}.toml"
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"Không hỗ trợ modem '{model}'", f"unsupported modem model '{model}'") from None


def check_radio(region: Region, role: str, freq_hz: int, bw_khz: int, power_dbm: int) -> list[Problem]:
    """Everything wrong with these settings for this region and role (empty list: legal)."""
    problems: list[Problem] = []
    if role not in region.max_power_dbm:
        return [Problem(f"Vai trò '{role}' không có trong vùng {region.name}", f"role '{role}' unknown in region {region.name}")]
    low = freq_hz / 1e6 - bw_khz / 2000
    high = freq_hz / 1e6 + bw_khz / 2000
    if low < region.band_low_mhz - 1e-9 or high > region.band_high_mhz + 1e-9:
        problems.append(Problem(
            f"Tần số {freq_hz / 1e6:.3f} MHz nằm ngoài băng cho phép ở Việt Nam ({region.band_low_mhz}–{region.band_high_mhz} MHz)",
            f"frequency {freq_hz / 1e6:.3f} MHz is outside the band allowed in Vietnam ({region.band_low_mhz}–{region.band_high_mhz} MHz)"))
    if bw_khz not in region.allowed_bw_khz:
        problems.append(Problem(f"Băng thông {bw_khz} kHz không dùng được", f"bandwidth {bw_khz} kHz is not allowed"))
    limit = region.max_power_dbm[role]
    if power_dbm > limit:
        problems.append(Problem(
            f"Công suất {power_dbm} dBm vượt giới hạn {limit} dBm",
            f"power {power_dbm} dBm is above the {limit} dBm limit"))
    return problems
