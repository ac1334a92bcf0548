"""Recording sync: the sans-IO core between two (or three) in-memory nodes, the store on real files,
resumption from a partial file, verification, low priority (no ready link: no bytes), hostile bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshmeet.media import recsync as R
from meshmeet.recording.recorder import MAGIC
from meshmeet.recording.recstore import RecordingStore


def make(path: Path, name: str, size: int, seed: int = 1) -> bytes:
    data = MAGIC + bytes((seed * 7 + i) % 251 for i in range(size - len(MAGIC)))
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{name}.mmrec").write_bytes(data)
    return data


class Site:
    """One node: a core, a store, and the glue the media service does (without trio)."""

    def __init__(self, name: str, d: Path) -> None:
        self.name, self.store = name, RecordingStore(d)
        self.core = R.RecordingSync(self.store.scan(), self.store.partials())
        self.outbox: list[tuple[str, bytes]] = []

    def do(self, actions: list[R.Action]) -> None:
        for a in actions:
            if isinstance(a, R.Send):
                self.outbox.append((a.peer, a.body))
            elif isinstance(a, R.Serve):
                self.outbox.append((a.peer, R.encode(R.RecPiece(a.name, a.offset, self.store.read(a.name, a.offset, a.length)))))
            elif isinstance(a, R.Write):
                self.store.append_part(a.name, a.offset, a.data)
            else:
                self.do(self.core.verified(a.name, self.store.finish(a.name, a.size, a.sha256)))


def run(sites: dict[str, Site], links: set[frozenset[str]], steps: int = 200, ready: bool = True,
        stop_after_bytes: int | None = None) -> int:
    """Deliver messages and poll until quiet; returns piece bytes moved."""
    moved = 0
    for step in range(steps):
        busy = False
        for s in sites.values():
            peers = [p for p in s.core.peers() if frozenset((s.name, p)) in links] if ready else []
            actions = s.core.poll(float(step), peers)
            busy = busy or any(isinstance(a, R.Verify) for a in actions)  # a whole file is checked at a poll
            s.do(actions)
        for s in sites.values():
            out, s.outbox = s.outbox, []
            for peer, body in out:
                busy = True
                if body[0] == R.KIND_REC_PIECE:
                    moved += len(R.parse(body).data)
                sites[peer].do(sites[peer].core.receive(s.name, body))
            if stop_after_bytes is not None and moved >= stop_after_bytes:
                return moved
        if not busy and step > 2:
            break
    return moved


def connect(a: Site, b: Site) -> None:
    a.do(a.core.peer_up(b.name))
    b.do(b.core.peer_up(a.name))


def test_missing_recording_is_fetched_byte_identical_and_relayed_on(tmp_path: Path) -> None:
    data = make(tmp_path / "hq", "20261123", 200_000)
    make(tmp_path / "hq", "20261120", 5_000, seed=3)
    hq, relay, end = (Site(n, tmp_path / n) for n in ("hq", "relay", "end"))
    make(tmp_path / "end", "20261123", 100, seed=9)  # a short copy of its own (configs only)
    end.core.set_local(end.store.scan())
    links = {frozenset(("hq", "relay")), frozenset(("relay", "end"))}
    connect(hq, relay)
    connect(relay, end)
    moved = run({"hq": hq, "relay": relay, "end": end}, links)
    for s in (relay, end):
        assert (tmp_path / s.name / "20261123.mmrec").read_bytes() == data
        assert (tmp_path / s.name / "20261120.mmrec").stat().st_size == 5_000
        assert not list((tmp_path / s.name).glob("*.part"))
    assert moved == 2 * (200_000 + 5_000)  # each byte crossed each link once, in pieces
    assert end.core.counters["fetched"] == 2 and end.core.counters["verify_failed"] == 0


def test_no_ready_link_moves_no_bytes(tmp_path: Path) -> None:
    make(tmp_path / "a", "m1", 100_000)
    a, b = Site("a", tmp_path / "a"), Site("b", tmp_path / "b")
    connect(a, b)
    assert run({"a": a, "b": b}, {frozenset("ab")}, ready=False) == 0
    assert not (tmp_path / "b" / "m1.mmrec").exists()
    assert b.core.wanted() == b.core.status()["wanted"] == ["m1"] and a.core.wanted() == []  # known, held back
    b.core.busy = frozenset({"m1"})
    assert b.core.wanted() == []


def test_resumes_from_partial_file_after_restart(tmp_path: Path) -> None:
    data = make(tmp_path / "a", "m1", 300_000)
    a, b = Site("a", tmp_path / "a"), Site("b", tmp_path / "b")
    connect(a, b)
    first = run({"a": a, "b": b}, {frozenset("ab")}, stop_after_bytes=3 * R.PIECE_BYTES)
    assert first == 3 * R.PIECE_BYTES and (tmp_path / "b" / "m1.mmrec.part").stat().st_size == first
    b2 = Site("b", tmp_path / "b")  # restart: the partial file is found again
    assert b2.core.partial == {"m1": first}
    a.core.peer_down("b")
    connect(a, b2)
    second = run({"a": a, "b": b2}, {frozenset("ab")})
    assert second == len(data) - first
    assert (tmp_path / "b" / "m1.mmrec").read_bytes() == data


def test_corrupt_piece_fails_verification_and_is_not_kept(tmp_path: Path) -> None:
    make(tmp_path / "a", "m1", 50_000)
    a, b = Site("a", tmp_path / "a"), Site("b", tmp_path / "b")
    connect(a, b)
    real_read = a.store.read
    a.store.read = lambda n, o, ln: bytes(len(real_read(n, o, ln)))  # a serving bug: zeros
    run({"a": a, "b": b}, {frozenset("ab")})
    assert not (tmp_path / "b" / "m1.mmrec").exists() and not (tmp_path / "b" / "m1.mmrec.part").exists()
    assert b.core.counters["verify_failed"] == 1
    assert run({"a": a, "b": b}, {frozenset("ab")}) == 0  # that copy is not fetched again


def test_grown_file_refetched_and_busy_name_left_alone(tmp_path: Path) -> None:
    make(tmp_path / "a", "m1", 20_000)
    a, b = Site("a", tmp_path / "a"), Site("b", tmp_path / "b")
    connect(a, b)
    run({"a": a, "b": b}, {frozenset("ab")})
    data = make(tmp_path / "a", "m1", 60_000)  # the meeting went on (same prefix: append-only)
    a.core.set_local(a.store.scan())
    b.core.busy = frozenset({"m1"})  # b records m1 itself right now
    a.do([R.Send("b", a.core.list_message())])
    assert run({"a": a, "b": b}, {frozenset("ab")}) == 0
    b.core.busy = frozenset()
    run({"a": a, "b": b}, {frozenset("ab")})
    assert (tmp_path / "b" / "m1.mmrec").read_bytes() == data


def test_copy_replaced_at_the_source_mid_fetch_is_fetched_again_from_0(tmp_path: Path) -> None:
    """A hall's own copy (what it relayed for part of a meeting) is no prefix of HQ's: when the
    relay replaces it by HQ's longer copy while the end hall fetches it, the end hall's first
    bytes are of the old copy. The mismatch starts the fetch over instead of barring HQ's copy."""
    make(tmp_path / "relay", "m", 200_000, seed=2)
    relay, end = Site("relay", tmp_path / "relay"), Site("end", tmp_path / "end")
    connect(relay, end)
    links = {frozenset(("relay", "end"))}
    assert run({"relay": relay, "end": end}, links, stop_after_bytes=2 * R.PIECE_START_BYTES) == 2 * R.PIECE_START_BYTES
    data = make(tmp_path / "relay", "m", 300_000, seed=5)  # the relay fetched HQ's copy meanwhile
    relay.core.set_local(relay.store.scan())
    relay.do([R.Send("end", relay.core.list_message())])
    run({"relay": relay, "end": end}, links, steps=1000)  # the harness gives no clock: 4 KiB pieces
    assert end.core.counters["verify_failed"] == 1 and end.core.counters["fetched"] == 1
    assert (tmp_path / "end" / "m.mmrec").read_bytes() == data and not list((tmp_path / "end").glob("*.part"))


def test_gets_beyond_a_listed_file_are_refused(tmp_path: Path) -> None:
    make(tmp_path / "a", "m1", 1000)
    a = Site("a", tmp_path / "a")
    a.core.peer_up("b")
    for g in (R.RecGet("m1", 900, 200), R.RecGet("nope", 0, 10)):
        assert a.core.receive("b", R.encode(g)) == []
    assert a.core.poll(0.0, ["b"]) == [] and a.core.counters["refused"] == 2


def test_timed_out_get_is_asked_again() -> None:
    core = R.RecordingSync()
    core.peer_up("p")
    core.receive("p", R.encode(R.RecList((R.RecordingInfo("m", 100, bytes(32)),))))
    first = core.poll(0.0, ["p"])
    assert [R.parse(a.body) for a in first if isinstance(a, R.Send)] == [R.RecGet("m", 0, 100)]
    assert core.poll(1.0, ["p"]) == [] and core.wake_at(1.0) == R.REQUEST_TIMEOUT_S
    assert len(core.poll(R.REQUEST_TIMEOUT_S, ["p"])) == 1


@pytest.mark.parametrize("msg", [
    R.RecList(()), R.RecList((R.RecordingInfo("20261123", 123, hashlib.sha256(b"x").digest()),)),
    R.RecGet("a-b_c", 0, R.PIECE_BYTES), R.RecPiece("x", 2**40 - 1, b"\0")])
def test_round_trip(msg: R.RecMessage) -> None:
    assert R.parse(R.encode(msg)) == msg


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_bytes_give_recsync_error(body: bytes) -> None:
    for b in (body, bytes([R.KIND_REC_LIST]) + body, bytes([R.KIND_REC_GET]) + body, bytes([R.KIND_REC_PIECE]) + body):
        try:
            R.parse(b)
        except R.RecSyncError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["p", "q"]), st.binary(max_size=80)), max_size=20))
def test_core_survives_hostile_messages(msgs: list[tuple[str, bytes]]) -> None:
    core = R.RecordingSync([R.RecordingInfo("m", 10, bytes(32))])
    core.peer_up("p")
    for i, (peer, body) in enumerate(msgs):
        try:
            core.receive(peer, bytes([R.KIND_REC_LIST + i % 3]) + body)
        except R.RecSyncError:
            pass
        for a in core.poll(float(i), ["p", "q"]):
            assert not isinstance(a, R.Serve) or a.offset + a.length <= 10


def _gets(actions: list[R.Action]) -> list[R.RecGet]:
    return [R.parse(a.body) for a in actions if isinstance(a, R.Send) and isinstance(R.parse(a.body), R.RecGet)]


@pytest.mark.parametrize("link_bytes_per_s, rtt_s", [(4_000.0, 0.2), (125_000.0, 0.05), (50e6, 0.0005)])
def test_piece_size_follows_how_fast_pieces_come(link_bytes_per_s: float, rtt_s: float) -> None:
    """A piece holds the link about PIECE_TARGET_S: on a 32 kbit/s hall link the gets shrink to a
    few KiB at most (a 32 KiB piece there would queue 8 s in front of live audio); on a LAN they
    grow to PIECE_BYTES."""
    core = R.RecordingSync()
    core.peer_up("p")
    size = 10_000_000
    core.receive("p", R.encode(R.RecList((R.RecordingInfo("m", size, bytes(32)),))), 0.0)
    now, asked = 0.0, []
    for _ in range(12):
        (get,) = _gets(core.poll(now, ["p"]))
        asked.append(get.length)
        now += rtt_s + get.length / link_bytes_per_s
        core.receive("p", R.encode(R.RecPiece("m", get.offset, bytes(get.length))), now)
    assert asked[0] == R.PIECE_START_BYTES
    assert all(R.PIECE_MIN_BYTES <= n <= R.PIECE_BYTES for n in asked)
    held_s = [n / link_bytes_per_s for n in asked[6:]]
    if link_bytes_per_s * R.PIECE_TARGET_S >= R.PIECE_BYTES:
        assert asked[-1] == R.PIECE_BYTES
    else:  # never much more than the target once settled (the round trip counts too)
        assert max(held_s) <= 2 * R.PIECE_TARGET_S or asked[-1] == R.PIECE_MIN_BYTES, (asked, held_s)


def test_idle_only_with_nothing_to_serve_fetch_or_want() -> None:
    """The driver sleeps until a message, a link change or a timer only while the core is idle
    (issue 16); with anything wanted, served or fetched it keeps looking at its links."""
    core = R.RecordingSync(local=[R.RecordingInfo("m", 100, bytes(32))])
    core.peer_up("p")
    assert core.idle()
    core.receive("p", R.encode(R.RecList((R.RecordingInfo("m", 100, bytes(32)),))))
    assert core.idle()  # the same file: nothing to fetch
    core.receive("p", R.encode(R.RecGet("m", 0, 50)))
    assert not core.idle()  # a piece to serve
    core.poll(0.0, ["p"])
    assert core.idle()
    core.receive("p", R.encode(R.RecList((R.RecordingInfo("n", 10, bytes(32)),))))
    assert not core.idle()  # wanted, even with no link ready
    core.poll(0.0, [])
    assert not core.idle()
