"""Tree broadcast: dedupe window, forwarding rule, hostile frames."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meshmeet.tree.forward import DEDUPE_WINDOW, DedupeWindow, Forwarder, decode_broadcast


@given(st.lists(st.integers(0, 3000), max_size=300))
def test_dedupe_window_accepts_each_number_once_and_forgets_only_below_the_window(seqs: list[int]) -> None:
    window = DedupeWindow(64)
    seen: set[int] = set()
    top = -1
    for seq in seqs:
        accepted = window.check_and_add(seq)
        if seq in seen:
            assert not accepted                          # never twice
        elif seq > top - 64:
            assert accepted                              # new and inside the window: taken
        else:
            assert not accepted                          # too old: dropped (late for media, sync repairs)
        if accepted:
            seen.add(seq)
            top = max(top, seq)


def test_forward_to_every_tree_neighbour_but_the_sender_and_drop_duplicates() -> None:
    hq, a = Forwarder("hq"), Forwarder("a")
    frame, sends = hq.originate(b"agenda item 3", ("a", "b"))
    assert [p for p, _ in sends] == ["a", "b"]
    data = sends[0][1]
    first = a.receive("hq", data, ("hq", "c", "d"))
    assert first.delivered == frame
    assert [p for p, _ in first.sends] == ["c", "d"]
    again = a.receive("c", data, ("hq", "c", "d"))
    assert again.delivered is None and again.sends == ()
    own = hq.receive("a", data, ("a", "b"))            # a copy of my own broadcast coming back
    assert own.delivered is None and own.sends == ()


def test_in_flight_frame_from_a_former_neighbour_is_still_delivered_once() -> None:
    node = Forwarder("n")
    _, sends = Forwarder("src").originate(b"x", ("n",))
    result = node.receive("old-parent", sends[0][1], ("new-parent", "child"))
    assert result.delivered is not None
    assert [p for p, _ in result.sends] == ["new-parent", "child"]


def test_bad_frame_is_reported_not_raised() -> None:
    result = Forwarder("n").receive("p", b"\xc1garbage", ("q",))
    assert result.delivered is None and result.sends == () and result.error


def test_sequence_numbers_advance_per_source() -> None:
    f = Forwarder("s")
    seqs = [decode_broadcast(f.originate(b"", ("p",))[1][0][1]).seq for _ in range(3)]
    assert seqs == [0, 1, 2]
    assert DEDUPE_WINDOW >= 1024
