"""Micro-benchmark of the link core (meshmeet.wire): setup bytes, overhead, handshakes/s, messages/s.

Baseline, measured in the same run: pynacl's crypto_secretstream (the design brief's first choice)
pushing and pulling the same messages with a 2-byte length prefix, and the Reticulum figures
(287 B setup, 75-83 B per packet) as published. Runs about two seconds of CPU; it must never
be run in a loop on the shared machine.

    python scripts/bench/wire_core.py            # table
    python scripts/bench/wire_core.py --json     # {"setup_bytes": ..., ...}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from nacl.bindings import (
    crypto_secretstream_xchacha20poly1305_init_pull,
    crypto_secretstream_xchacha20poly1305_init_push,
    crypto_secretstream_xchacha20poly1305_keygen,
    crypto_secretstream_xchacha20poly1305_pull,
    crypto_secretstream_xchacha20poly1305_push,
    crypto_secretstream_xchacha20poly1305_state,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

from meshmeet.wire import HandshakeComplete, Role
from meshmeet.wire.testing import TestRoster, connected_pair, make_connection

RETICULUM_SETUP_BYTES = 287
RETICULUM_OVERHEAD_BYTES = (75, 83)
MESSAGE_BYTES = 1024
RUN_S = 0.5


def measure_sizes(roster: TestRoster) -> dict:
    a = make_connection(roster, 1, Role.INITIATOR)
    b = make_connection(roster, 2, Role.RESPONDER)
    a.start(0.0)
    flights = [a.data_to_send()]
    b.receive_data(flights[0], 0.0)
    flights.append(b.data_to_send())
    assert isinstance(a.receive_data(flights[1], 0.0)[0], HandshakeComplete)
    flights.append(a.data_to_send())
    assert isinstance(b.receive_data(flights[2], 0.0)[0], HandshakeComplete)
    payload = b"\x20" + bytes(MESSAGE_BYTES - 1)
    a.send_message(payload, 0.0)
    frame = a.data_to_send()
    return {
        "setup_bytes": sum(len(f) for f in flights),
        "setup_flights": [len(f) for f in flights],
        "setup_round_trips": len(flights) / 2,
        "overhead_bytes_per_message": len(frame) - len(payload),
    }


def rate(fn, run_s: float = RUN_S) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < run_s:
        fn()
        count += 1
    return count / elapsed


def bench_handshakes(roster: TestRoster) -> float:
    def once() -> None:
        a = make_connection(roster, 1, Role.INITIATOR)
        b = make_connection(roster, 2, Role.RESPONDER)
        a.start(0.0)
        b.receive_data(a.data_to_send(), 0.0)
        a.receive_data(b.data_to_send(), 0.0)
        b.receive_data(a.data_to_send(), 0.0)

    return rate(once)


def bench_link_messages(roster: TestRoster) -> float:
    a, b = connected_pair(roster)
    payload = b"\x20" + bytes(MESSAGE_BYTES - 1)
    batch = 100

    def once() -> None:
        for _ in range(batch):
            a.send_message(payload, 0.0)
        b.receive_data(a.data_to_send(), 0.0)

    return rate(once) * batch


def bench_secretstream() -> tuple[float, int, int]:
    key = crypto_secretstream_xchacha20poly1305_keygen()
    push = crypto_secretstream_xchacha20poly1305_state()
    header = crypto_secretstream_xchacha20poly1305_init_push(push, key)
    pull = crypto_secretstream_xchacha20poly1305_state()
    crypto_secretstream_xchacha20poly1305_init_pull(pull, header, key)
    payload = bytes(MESSAGE_BYTES)
    batch = 100
    sizes = []

    def once() -> None:
        out = []
        for _ in range(batch):
            c = crypto_secretstream_xchacha20poly1305_push(push, payload)
            out.append(len(c).to_bytes(2, "big") + c)
        for framed in out:
            crypto_secretstream_xchacha20poly1305_pull(pull, framed[2:])
        if not sizes:
            sizes.append(len(out[0]) - len(payload))

    return rate(once) * batch, len(header) * 2, sizes[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the JSON result only")
    args = parser.parse_args()
    roster = TestRoster()
    roster.add(1), roster.add(2)
    sizes = measure_sizes(roster)
    handshakes = bench_handshakes(roster)
    link_rate = bench_link_messages(roster)
    ss_rate, ss_headers, ss_overhead = bench_secretstream()
    result = {
        **sizes,
        "handshakes_per_s": round(handshakes, 1),
        "messages_per_s_1kb": round(link_rate),
        "baseline": {
            "secretstream_messages_per_s_1kb": round(ss_rate),
            "secretstream_stream_header_bytes": ss_headers,
            "secretstream_overhead_bytes_per_message": ss_overhead,
            "reticulum_setup_bytes": RETICULUM_SETUP_BYTES,
            "reticulum_overhead_bytes_per_packet": list(RETICULUM_OVERHEAD_BYTES),
        },
    }
    if args.json:
        print(json.dumps(result))
        return
    rows = [
        ("setup bytes (both directions)", sizes["setup_bytes"], f"{sizes['setup_bytes'] + ss_headers} with secretstream headers", RETICULUM_SETUP_BYTES),
        ("setup round trips", sizes["setup_round_trips"], "-", 1.5),
        ("overhead per message (B)", sizes["overhead_bytes_per_message"], ss_overhead + 1, "75-83"),
        ("1 KB messages/s, push+pull", result["messages_per_s_1kb"], result["baseline"]["secretstream_messages_per_s_1kb"], "-"),
        ("handshakes/s (both ends, one core)", result["handshakes_per_s"], "-", "-"),
    ]
    print(f"{'measure':38} {'meshmeet wire':>14} {'secretstream baseline':>30} {'Reticulum':>10}")
    for name, ours, base, ret in rows:
        print(f"{name:38} {ours!s:>14} {base!s:>30} {ret!s:>10}")
    print("\nsecretstream baseline: the same 1 KB payloads with a 2-byte length prefix, no type byte, raw pynacl;")
    print("its overhead column adds the type byte meshmeet needs. Reticulum figures are published, not measured.")


if __name__ == "__main__":
    main()
