"""Named weak-link profiles A–E (issue 13) and the text form a link profile takes on a command line.

A profile is two Shapes (packetcore.py): `forward` for side a -> side b (relay -> end hall) and
`back` for the return path. The presets are symmetric; the queue depths of B–D are deep, 4G-like
buffers (a modem holding 400–500 ms at its rate), E's is the issue's 1.5 s:

  A  clean: no loss, no cap, no delay (the forwarder's own cost only)
  B  40±10 ms one way, 1 % loss, 5 Mbit/s, queue 400 ms (250 000 B)
  C  80±30 ms, 3 % loss, 1 Mbit/s, queue 500 ms (62 500 B)
  D  150±50 ms, 5 % loss, 256 kbit/s, queue 500 ms (16 000 B)
  E  100 ms, no jitter, no loss, 32 kbit/s, queue 1.5 s (6 000 B)

Jitter never reorders in the presets (keep_order: due = max(base + jitter, previous due)).
Text form (`parse_profile`): a preset letter, or `key=value,...` with loss (ratio or `3%`),
rate (bit/s, `1M`, `256k`), queue_ms or queue_bytes, delay_ms, jitter_ms, reorder (0/1); both
directions get it; `FWD/BACK` gives each direction its own. This module must never do I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .delayline import EmulatorError
from .packetcore import Shape, queue_bytes_for


@dataclass(frozen=True)
class LinkProfile:
    name: str
    forward: Shape      # a -> b
    back: Shape         # b -> a
    note: str = ""

    @property
    def base_delay_s(self) -> float:
        """The forward direction's one-way delay without jitter or queueing."""
        return self.forward.delay_s


def _shape(delay_ms: float, jitter_ms: float, loss: float, rate_bps: float | None, queue_s: float | None) -> Shape:
    return Shape(loss=loss, rate_bps=rate_bps, delay_s=delay_ms / 1000, jitter_s=jitter_ms / 1000,
                 queue_bytes=None if rate_bps is None or queue_s is None else queue_bytes_for(rate_bps, queue_s))


def _symmetric(name: str, note: str, shape: Shape) -> LinkProfile:
    return LinkProfile(name, shape, shape, note)


PRESETS: dict[str, LinkProfile] = {
    "A": _symmetric("A", "clean", Shape()),
    "B": _symmetric("B", "40±10 ms, 1 % loss, 5 Mbit/s, queue 400 ms", _shape(40, 10, 0.01, 5e6, 0.4)),
    "C": _symmetric("C", "80±30 ms, 3 % loss, 1 Mbit/s, queue 500 ms", _shape(80, 30, 0.03, 1e6, 0.5)),
    "D": _symmetric("D", "150±50 ms, 5 % loss, 256 kbit/s, queue 500 ms", _shape(150, 50, 0.05, 256e3, 0.5)),
    "E": _symmetric("E", "100 ms, 32 kbit/s, queue 1.5 s", _shape(100, 0, 0.0, 32e3, 1.5)),
}

_KEYS = {"loss", "rate", "queue_ms", "queue_bytes", "delay_ms", "jitter_ms", "reorder"}
_NUM_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([kKmM%]?)$")
MAX_SPEC_CHARS = 400


def _bad(text: str, why: str) -> EmulatorError:
    return EmulatorError(f"hồ sơ liên kết không hợp lệ: {text!r} ({why})", f"invalid link profile {text!r}: {why}")


def _number(text: str, value: str, key: str) -> float:
    m = _NUM_RE.match(value.strip())
    if not m:
        raise _bad(text, f"{key}={value!r} is not a number")
    x, unit = float(m.group(1)), m.group(2).lower()
    if unit == "%":
        if key != "loss":
            raise _bad(text, f"{key} cannot be a percentage")
        return x / 100
    if unit and key != "rate":
        raise _bad(text, f"{key} takes no unit suffix")
    return x * {"": 1, "k": 1e3, "m": 1e6}[unit]


def _parse_shape(text: str, part: str) -> Shape:
    values: dict[str, float] = {}
    for item in part.split(","):
        key, eq, value = item.strip().partition("=")
        if not eq or key not in _KEYS:
            raise _bad(text, f"unknown setting {item.strip()!r} (use {', '.join(sorted(_KEYS))})")
        if key in values:
            raise _bad(text, f"{key} given twice")
        values[key] = _number(text, value, key)
    rate = values.get("rate")
    if "queue_bytes" in values and "queue_ms" in values:
        raise _bad(text, "give queue_ms or queue_bytes, not both")
    queue = values.get("queue_bytes")
    if queue is None and rate is not None:
        queue = queue_bytes_for(rate, values.get("queue_ms", 500.0) / 1000)
    try:
        return Shape(loss=values.get("loss", 0.0), rate_bps=rate, queue_bytes=None if queue is None else int(queue),
                     delay_s=values.get("delay_ms", 0.0) / 1000, jitter_s=values.get("jitter_ms", 0.0) / 1000,
                     keep_order=not values.get("reorder", 0.0))
    except EmulatorError as e:
        raise _bad(text, e.en.removeprefix("link emulator: ")) from None


def parse_profile(text: str) -> LinkProfile:
    """A preset letter (A–E) or `key=value,...` (or `FWD/BACK`). EmulatorError on anything else."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_SPEC_CHARS:
        raise _bad(str(text)[:40], "empty or too long")
    name = text.strip()
    if name.upper() in PRESETS:
        return PRESETS[name.upper()]
    parts = name.split("/")
    if len(parts) > 2:
        raise _bad(text, "at most one '/' (forward/back)")
    forward = _parse_shape(text, parts[0])
    back = _parse_shape(text, parts[1]) if len(parts) == 2 else forward
    return LinkProfile(name, forward, back)


def describe(shape: Shape) -> str:
    """The text form of one direction (parse_profile reads it back)."""
    items = [f"delay_ms={shape.delay_s * 1000:g}", f"jitter_ms={shape.jitter_s * 1000:g}", f"loss={shape.loss:g}"]
    if shape.rate_bps is not None:
        items += [f"rate={shape.rate_bps:.0f}", f"queue_bytes={shape.queue_bytes}"]
    if not shape.keep_order:
        items.append("reorder=1")
    return ",".join(items)


def profile_spec(profile: LinkProfile) -> str:
    """A text form that parse_profile turns back into the same shapes (presets by their letter)."""
    if PRESETS.get(profile.name) == profile:
        return profile.name
    fwd, back = describe(profile.forward), describe(profile.back)
    return fwd if fwd == back else f"{fwd}/{back}"
