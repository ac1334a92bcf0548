"""LoRa control-plane benchmark: bytes and airtime per message type, messages per hour within
the Vietnamese 1 % budget, and end-to-end urgent-alert delivery over 3 and 5 hops.

Baseline, computed in the same run: the same payloads carried with Reticulum's 83 B per-packet
overhead. Delivery times are SIMULATED time from the sans-IO core on a chain channel (airtime
from the LoRa formula, no loss), not wall-clock. Usage: python scripts/bench/lora.py [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from test_lora_helpers import make_cores  # noqa: E402

from meshmeet.lora.airtime import LoraParams, time_on_air_s  # noqa: E402
from meshmeet.lora.events import Delivered  # noqa: E402
from meshmeet.lora.frames import HEADER_BYTES, TAG_BYTES  # noqa: E402
from meshmeet.lora.messages import (BROADCAST, Ack, Alert, Attendance, Beacon, Control,  # noqa: E402
                                    ControlAction, Digest, Tally, encode_message)
from meshmeet.membership.identity import KeyPair  # noqa: E402

RETICULUM_OVERHEAD_BYTES = 83
BUDGET_S = 36.0
PRESETS = {"SF7": LoraParams(sf=7, bw_hz=250_000), "SF9": LoraParams(sf=9, bw_hz=250_000),
           "SF11": LoraParams(sf=11, bw_hz=250_000)}
MESSAGES = {
    "alert": Alert("Khẩn: bão số 3, họp hoãn đến 14 giờ", 1_700_000_000),
    "ack": Ack(1, 1234),
    "control": Control(12, ControlAction.VOTE_OPEN, 3),
    "tally": Tally(12, 3, 87, 4, 2),
    "attendance": Attendance(12, 41, 45),
    "beacon": Beacon(1),
    "digest": Digest(4711, bytes(8)),
}


def per_type() -> list[dict]:
    kp = KeyPair.from_seed(bytes(32))
    rows = []
    for name, msg in MESSAGES.items():
        body = encode_message(msg, source=1, msg_id=100, dest=BROADCAST, ref=None, sign=kp.sign)
        ours = len(body) + HEADER_BYTES + TAG_BYTES
        ret = len(body) + RETICULUM_OVERHEAD_BYTES
        row = {"type": name, "payload_bytes": len(body), "frame_bytes": ours, "reticulum_bytes": ret}
        for p, params in PRESETS.items():
            a, b = time_on_air_s(ours, params), time_on_air_s(ret, params)
            row[f"airtime_ms_{p}"] = round(a * 1000, 1)
            row[f"reticulum_airtime_ms_{p}"] = round(b * 1000, 1)
            row[f"per_hour_{p}"] = int(BUDGET_S // a)
            row[f"reticulum_per_hour_{p}"] = int(BUDGET_S // b)
        rows.append(row)
    return rows


def delivery(hops: int, params: LoraParams) -> float:
    ids = list(range(1, hops + 2))
    step = 0.002
    cores, _ = make_cores(ids, params=params)
    nbrs = {i: [j for j in (i - 1, i + 1) if j in cores] for i in ids}
    cores[1].send(MESSAGES["alert"], 0.0)
    now = 0.0
    while now < 60.0:
        for i, c in cores.items():
            d = c.next_transmit(now)
            if d:
                arrive = now + c.config.frame_airtime_s(len(d))
                for j in nbrs[i]:
                    if any(isinstance(e, Delivered) for e in cores[j].receive(d, arrive)) and j == ids[-1]:
                        return arrive
        now += step
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = per_type()
    e2e = {f"{h}_hops": {p: round(delivery(h, params), 3) for p, params in PRESETS.items()} for h in (3, 5)}
    result = {"budget_s_per_hour": BUDGET_S, "baseline": "Reticulum 83 B per packet", "messages": rows,
              "urgent_alert_delivery_s_simulated": e2e,
              "overhead_bytes": {"meshmeet": HEADER_BYTES + TAG_BYTES, "reticulum": RETICULUM_OVERHEAD_BYTES}}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"Overhead per frame: meshmeet {HEADER_BYTES + TAG_BYTES} B vs Reticulum {RETICULUM_OVERHEAD_BYTES} B (baseline)")
    print(f"{'type':<11}{'bytes':>6}{'RNS B':>7}" + "".join(f"{p + ' ms':>10}{'RNS ms':>9}{'/hour':>7}{'RNS/h':>7}" for p in PRESETS))
    for r in rows:
        print(f"{r['type']:<11}{r['frame_bytes']:>6}{r['reticulum_bytes']:>7}" + "".join(
            f"{r[f'airtime_ms_{p}']:>10}{r[f'reticulum_airtime_ms_{p}']:>9}{r[f'per_hour_{p}']:>7}{r[f'reticulum_per_hour_{p}']:>7}"
            for p in PRESETS))
    print("Urgent alert end-to-end (simulated seconds, jittered flood, no loss):")
    for k, v in e2e.items():
        print(f"  {k}: " + ", ".join(f"{p} {s:.3f} s" for p, s in v.items()))


if __name__ == "__main__":
    main()
