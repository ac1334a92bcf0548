"""DIR/citizens.toml: the commune's choices for the resident page and personal data.

```
retention_days = 90          # contacts (phone, name, Zalo user id) are deleted after this
listen = "0.0.0.0:8088"      # the residents' own HTTP listener (only /y-kien); "off": none
[limits]                     # requests per second and bursts (citizens/limits.py PageLimits)
hall_per_s = 0.5
hall_burst = 60
```
Pure parsing; this module must never write the file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..config import parse_host_port
from ..errors import MeshmeetError
from .contacts import DEFAULT_RETENTION_DAYS
from .limits import PageLimits, Rate

FILE = "citizens.toml"
DEFAULT_LISTEN = ("0.0.0.0", 8088)
MAX_RETENTION_DAYS = 3650


@dataclass(frozen=True)
class CitizenSettings:
    retention_days: float = DEFAULT_RETENTION_DAYS
    limits: PageLimits = field(default_factory=PageLimits)
    listen: tuple[str, int] | None = DEFAULT_LISTEN


def _rate(doc: dict, name: str, default: Rate) -> Rate:
    per_s, burst = doc.get(f"{name}_per_s", default.per_s), doc.get(f"{name}_burst", default.burst)
    if not all(isinstance(v, (int, float)) and 0 < v <= 1_000_000 for v in (per_s, burst)):
        raise MeshmeetError(f"citizens.toml: [limits] {name}_per_s/{name}_burst phải là số dương",
                            f"citizens.toml: [limits] {name}_per_s/{name}_burst must be positive numbers")
    return Rate(float(burst), float(per_s))


def read_settings(data_dir: Path) -> CitizenSettings:
    path = Path(data_dir) / FILE
    if not path.exists():
        return CitizenSettings()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise MeshmeetError(f"Tệp {path} bị lỗi: {e}", f"{path} is malformed: {e}") from None
    days = doc.get("retention_days", DEFAULT_RETENTION_DAYS)
    if not isinstance(days, (int, float)) or not 0 < days <= MAX_RETENTION_DAYS:
        raise MeshmeetError(f"retention_days phải trong 0..{MAX_RETENTION_DAYS}",
                            f"retention_days must be within 0..{MAX_RETENTION_DAYS}")
    lim = doc.get("limits", {})
    base = PageLimits()
    limits = PageLimits(device=_rate(lim, "device", base.device), address=_rate(lim, "address", base.address),
                        hall=_rate(lim, "hall", base.hall), lookup=_rate(lim, "lookup", base.lookup))
    listen_text = str(doc.get("listen", "0.0.0.0:8088"))
    if listen_text.lower() == "off":
        listen = None
    else:
        hp = parse_host_port(listen_text, what="listen")
        listen = (hp.host, hp.port)
    return CitizenSettings(float(days), limits, listen)
