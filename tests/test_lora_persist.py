"""Counter marks, the LoRa state files, the alert log and API argument parsing (all without a node)."""

from __future__ import annotations

import os
import stat

import trio
from hypothesis import given, settings, strategies as st
from trio.testing import MockClock

from meshmeet.lora_io import statefile
from meshmeet.lora.airtime import LoraParams
from meshmeet.lora.alertlog import MAX_ALERTS, AlertLog
from meshmeet.lora.counter import CounterReservation
from meshmeet.lora_io.link import LoraLink
from meshmeet.lora.messages import BROADCAST, Attendance, Beacon, Control, ControlAction
from meshmeet.lora_io.modem import Received
from meshmeet.lora.requests import RequestError, parse_alert_text, parse_send

from test_lora_helpers import make_cores


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 600), st.booleans()), min_size=1, max_size=30), st.integers(1, 300))
def test_counters_never_repeat_across_crashes(runs, margin):
    """Each run uses `n` counters then crashes (True) or stops cleanly; the disk holds only what
    the reservation told us to write before each use."""
    disk = 0
    used: set[int] = set()
    for n, _crash in runs:
        res = CounterReservation(disk, margin)
        counter = res.resume_at
        for _ in range(n):
            mark = res.needed(counter + 1)
            if mark is not None:
                disk = mark  # written (fsync) before the frame leaves
                res.saved(mark)
            assert counter < disk
            assert counter not in used
            used.add(counter)
            counter += 1


def test_state_files_are_private_atomic_and_round_trip(tmp_path):
    path = tmp_path / statefile.STATE_FILE
    replay = {1: (700, (1 << 511) | 5), 65535: (0, 1)}
    statefile.write_json(path, statefile.state_to_json(257, replay))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert statefile.state_from_json(statefile.read_json(path)) == (257, replay)
    assert not list(tmp_path.glob("*.tmp"))
    path.write_text("{not json")
    assert statefile.read_json(path) is None
    for bad in ({}, {"reserved": -1}, {"reserved": 1, "replay": {"1": [1]}}, []):
        try:
            statefile.state_from_json(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def test_alert_log_acks_gave_up_dedupe_and_bound():
    log = AlertLog()
    log.sent(1, 10, "bão", 100, frozenset({2, 3}), 1.0)
    assert log.acked(1, 10, 3).missing == (2,)
    assert log.acked(1, 10, 3) is None  # second ack from the same hall changes nothing
    assert log.gave_up(1, 10, frozenset({2})).gave_up is True
    assert log.received(5, 7, "x", 1, 2.0) is not None and log.received(5, 7, "x", 1, 3.0) is None
    again = AlertLog.from_json(log.to_json() + [{"junk": 1}, "nope"])
    assert again.records == log.records
    for i in range(MAX_ALERTS + 5):
        log.received(9, 100 + i, "t", 1, 1.0)
    assert len(log.records) == MAX_ALERTS and log.records[-1].msg_id == 100 + MAX_ALERTS + 4


def test_parse_send_examples():
    r = parse_send({"kind": "control", "meeting": 3, "action": "vote_open", "item": 2})
    assert r.message == Control(3, ControlAction.VOTE_OPEN, 2) and r.dest == BROADCAST and r.ack
    r = parse_send({"kind": "attendance", "meeting": 3, "present": 41, "expected": 45, "dest": 1, "ack": False})
    assert r.message == Attendance(3, 41, 45) and r.dest == 1 and not r.ack
    assert parse_send({"kind": "digest", "seq": 5, "digest": "00" * 8, "ack": False}).message.digest == bytes(8)
    assert parse_alert_text({"text": "Khẩn"}) == "Khẩn"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 1 << 40) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=12,
)


@settings(max_examples=300)
@given(st.one_of(json_values, st.fixed_dictionaries(
    {"kind": st.sampled_from(["control", "tally", "attendance", "digest", "alert"])},
    optional={"meeting": json_values, "action": st.sampled_from(["started", "vote_open", "x"]) | json_values,
              "item": json_values, "dest": json_values, "ack": json_values, "ack_from": json_values,
              "present": json_values, "expected": json_values, "digest": json_values, "seq": json_values})))
def test_hostile_api_arguments_give_request_error_only(args):
    try:
        parse_send(args)
    except RequestError:
        pass
    try:
        parse_alert_text(args)
    except RequestError:
        pass


class RecordingModem:
    mtu_bytes = 240
    extra_air_bytes = 0
    params = LoraParams(sf=7)
    garbage = 0

    def __init__(self, log):
        self.log = log

    async def send(self, frame: bytes) -> None:
        self.log.append(("send", int.from_bytes(frame[3:6], "big")))
        await trio.sleep(0.05)

    async def recv(self) -> Received:
        await trio.sleep_forever()


async def test_link_awaits_before_transmit_for_every_frame(autojump_clock: MockClock):
    cores, _ = make_cores([1, 2])
    log: list = []

    async def before() -> None:
        log.append(("mark", cores[1].next_counter))
        await trio.sleep(0.01)  # a disk write

    link = LoraLink(cores[1], RecordingModem(log), lambda e: None, before_transmit=before)
    async with trio.open_nursery() as n:
        await n.start(link.run)
        link.send(Beacon(0))
        link.send(Attendance(1, 2, 3), dest=2)
        await trio.sleep(1.0)
        n.cancel_scope.cancel()
    sends = [i for i, (what, _) in enumerate(log) if what == "send"]
    assert len(sends) == 2
    for i in sends:  # each frame is preceded by a mark above its counter
        assert log[i - 1][0] == "mark" and log[i - 1][1] > log[i][1]
