"""The state mirror's decisions (statewatch), alerts carrying an announcement id (messages,
requests, alertlog): examples and Hypothesis, hostile input giving the module's own error."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from meshmeet.membership.identity import KeyPair, verify
from meshmeet.lora.alertlog import AlertLog
from meshmeet.lora.messages import (
    Alert, Attendance, Control, ControlAction, Kind, MessageError, Tally, decode_message, encode_message, kind_of,
)
from meshmeet.lora.requests import RequestError, message_json, parse_announcement_id
from meshmeet.lora.statewatch import RefIndex, StateRows, StateWatch, control_messages, hall_messages, short_ref

HALL = "ab" * 16
OTHER = "cd" * 16
MID, ITEM, MOTION = "00112233aabbccdd", "1111111100000000", "22222222deadbeef"


def rows(status: str = "started", motion: str | None = "open", current: bool = True) -> StateRows:
    return StateRows(
        meetings=({"id": MID, "status": status},),
        agenda_items=({"id": ITEM, "meeting_id": MID, "position": 3, "status": "current" if current else "pending"},),
        motions=() if motion is None else ({"id": MOTION, "meeting_id": MID, "status": motion},),
        attendance=({"id": "a1", "meeting_id": MID, "node": HALL, "present": 40, "at": 1.0},
                    {"id": "a2", "meeting_id": MID, "node": HALL, "present": 41, "at": 2.0},
                    {"id": "a3", "meeting_id": MID, "node": OTHER, "present": 99, "at": 3.0}),
        ballots=({"motion_id": MOTION, "node": HALL, "voter": "#yes", "choice": "yes", "count": 30},
                 {"motion_id": MOTION, "node": HALL, "voter": "#no", "choice": "no", "count": 5},
                 {"motion_id": MOTION, "node": OTHER, "voter": "#yes", "choice": "yes", "count": 7}),
    )


def test_control_messages_for_a_started_meeting():
    ref = short_ref(MID)
    assert ref == 0x00112233
    assert list(control_messages(rows()).values()) == [
        Control(ref, ControlAction.STARTED), Control(ref, ControlAction.AGENDA_ITEM, 3),
        Control(ref, ControlAction.VOTE_OPEN, short_ref(MOTION)),
    ]
    ended = list(control_messages(rows(status="ended", motion="closed")).values())
    assert ended == [Control(ref, ControlAction.ENDED), Control(ref, ControlAction.VOTE_CLOSED, short_ref(MOTION))]
    assert control_messages(rows(status="scheduled")) == {}


def test_hall_messages_are_only_this_halls_rows():
    out = hall_messages(HALL, rows())
    assert out == {("attendance", MID): Attendance(short_ref(MID), 41, 0),
                   ("tally", MOTION): Tally(short_ref(MID), short_ref(MOTION), 30, 5, 0)}
    assert hall_messages(HALL, rows(status="ended")) == {}
    assert hall_messages("ff" * 16, rows()) == {}


def test_watch_sends_only_changes_made_while_offline():
    watch = StateWatch()
    assert watch.update(control_messages(rows(motion=None)), send=False) == []  # IP up: only noted
    assert watch.update(control_messages(rows(motion=None)), send=True) == []  # nothing new
    assert watch.update(control_messages(rows(motion="open")), send=True) == [
        Control(short_ref(MID), ControlAction.VOTE_OPEN, short_ref(MOTION))]
    assert watch.update(control_messages(rows(motion="closed")), send=True) == [
        Control(short_ref(MID), ControlAction.VOTE_CLOSED, short_ref(MOTION))]
    assert watch.update(control_messages(rows(motion="closed")), send=True) == []


def test_ref_index_maps_back_to_local_ids():
    index = RefIndex()
    index.learn([MID, MOTION])
    assert index.resolve(Tally(short_ref(MID), short_ref(MOTION), 1, 2, 3)) == {"meeting_id": MID, "motion_id": MOTION}
    assert index.resolve(Control(short_ref(MID), ControlAction.AGENDA_ITEM, short_ref(MOTION))) == {"meeting_id": MID}
    assert index.resolve(Attendance(7, 1, 0)) == {}


ids = st.text("0123456789abcdef", min_size=16, max_size=16)
row_st = st.fixed_dictionaries({
    "id": ids, "meeting_id": st.sampled_from([MID, "ffffffffffffffff"]), "status": st.sampled_from(
        ["started", "ended", "scheduled", "open", "closed", "current", "pending", None]),
    "position": st.one_of(st.none(), st.integers(-5, 1 << 40)), "node": st.sampled_from([HALL, OTHER]),
    "present": st.one_of(st.none(), st.integers(0, 1 << 40)), "at": st.one_of(st.none(), st.floats(0, 1e9)),
    "motion_id": st.sampled_from([MOTION, "x"]), "choice": st.sampled_from(["yes", "no", "abstain", "maybe"]),
    "count": st.integers(0, 1 << 33)})


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(range(5)), row_st), max_size=30), st.booleans())
def test_any_rows_give_encodable_messages_and_the_watch_reports_exactly_the_changes(picked, send):
    tables: list[list] = [[], [], [], [], []]
    for table, row in picked:
        tables[table].append({**row, "id": MID} if table == 0 and not tables[0] else row)
    state = StateRows(*(tuple(t) for t in tables))
    key = KeyPair.generate()
    watch = StateWatch()
    for current in (control_messages(state), hall_messages(HALL, state)):
        for message in current.values():
            body = encode_message(message, source=1, msg_id=5, dest=0xFFFF, ref=None, sign=key.sign)
            env = decode_message(kind_of(message), body, source=1, first_counter=5,
                                 public_key_of=lambda _: key.public_key, verify=verify)
            assert env.message == message
        before = dict(watch.known)
        out = watch.update(current, send=send)
        assert out == ([m for s, m in current.items() if before.get(s) != m] if send else [])
        assert watch.update(current, send=True) == []


def test_alert_with_announcement_id_round_trips_and_old_alerts_still_parse():
    key = KeyPair.generate()
    for alert in (Alert("Khẩn", 1_700_000_000, bytes.fromhex(MID)), Alert("Khẩn", 1_700_000_000)):
        body = encode_message(alert, source=1, msg_id=9, dest=0xFFFF, ref=None, sign=key.sign)
        env = decode_message(Kind.ALERT, body, source=1, first_counter=9, public_key_of=lambda _: key.public_key,
                             verify=verify)
        assert env.message == alert
    assert message_json(Alert("x", 1, bytes.fromhex(MID)))["announcement_id"] == MID
    assert "announcement_id" not in message_json(Alert("x", 1))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=40), st.integers(-(1 << 63), (1 << 64) - 1), st.text(max_size=5), st.none(),
                 st.lists(st.integers(0, 255))))
def test_hostile_alert_reference_is_a_message_error(ref):
    body = msgpack.packb([0xFFFF, None, [1, "x", ref]], use_bin_type=True) + bytes(64)
    key = KeyPair.generate()
    try:
        decode_message(Kind.ALERT, body, source=1, first_counter=1, public_key_of=lambda _: key.public_key,
                       verify=verify)
    except MessageError:
        return
    pytest.fail("an unsigned alert was accepted")


@given(st.one_of(st.none(), st.text(max_size=40), st.integers(), st.binary(max_size=4)))
def test_parse_announcement_id_takes_hex_or_says_why_not(value):
    args = {} if value is None else {"announcement_id": value}
    try:
        ref = parse_announcement_id(args)
    except RequestError:
        return
    assert ref == (b"" if value is None else bytes.fromhex(value))
    assert parse_announcement_id({"announcement_id": MID}) == bytes.fromhex(MID)


def test_alert_log_keeps_announcement_ids_of_received_alerts_across_restarts():
    log = AlertLog()
    log.received(1, 7, "Khẩn", 10, 11.0, announcement_id=MID)
    log.received(1, 8, "Khẩn 2", 10, 12.0)
    log.sent(2, 3, "gửi", 10, frozenset({1}), 13.0, announcement_id=MOTION)
    assert log.announcement_ids() == [MID]
    assert AlertLog.from_json(log.to_json()).announcement_ids() == [MID]
    assert AlertLog.from_json([{"id": "1:2", "source": 1, "msg_id": 2, "text": "t", "issued_at": 1,
                                "direction": "received", "at": 1.0}]).announcement_ids() == []
