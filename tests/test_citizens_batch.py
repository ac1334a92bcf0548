"""The resident page's submissions in batches (issue 17's accept rate): many requests' forms cross
the bridge as one call (web/call_batch.py) and go into the store as one group commit
(meeting/citizens.py submit_each). What must hold whatever fails: every request gets exactly its
own outcome, no submission is lost or written twice, and a submission the law refuses fails alone.
Real asyncio loops and real SQLite stores; the node's side of the call is the contract's
(`{"items": [...]}` in, `{"results": [...]}` out)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from meshmeet.api.contract import ApiError
from meshmeet.citizens import codes
from meshmeet.citizens.form import FeedbackForm, parse_form
from meshmeet.meeting import citizens as ops
from meshmeet.store.errors import SyncError
from meshmeet.web.call_batch import CallBatcher

from test_authority import HALL1, logged, mk

# ----- the crossing: one call per batch, one outcome per request ------------------------------

HANG_GUARD_S = 60.0  # a request left waiting for ever fails the test instead of hanging it
WHOLE_FAULTS = ("api_error", "crash", "short_answer", "not_a_dict")


@st.composite
def plans(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 40))
    return {
        "arrive": draw(st.lists(st.integers(0, 6), min_size=n, max_size=n)),   # tick each request arrives
        "bad": draw(st.sets(st.integers(0, n - 1))),                          # items the node refuses alone
        "gives_up": draw(st.sets(st.integers(0, n - 1))),                     # requests cancelled while waiting
        "whole": draw(st.dictionaries(st.integers(0, 12), st.sampled_from(WHOLE_FAULTS))),  # call number -> fault
        "node_ticks": draw(st.lists(st.integers(0, 4), min_size=1, max_size=8)),  # how long each call takes
        "max_items": draw(st.integers(1, 8)),
        "linger_s": draw(st.sampled_from([0.0, 0.0005])),  # the busy batcher's wait for more, or none
    }


def run_plan(plan: dict) -> tuple[dict[int, object], list[list[int]], set[int]]:
    """Every request's outcome ("cancelled", ("ok", item), ("error", code)), the batches the node
    saw, and the requests that gave their item (one cancelled before it came gives none)."""
    seen: list[list[int]] = []
    given: set[int] = set()

    async def node(name: str, args: dict) -> dict:  # the contract of citizen_submit_page
        assert name == "citizen_submit_page"
        number = len(seen)
        seen.append(list(args["items"]))
        for _ in range(plan["node_ticks"][number % len(plan["node_ticks"])]):
            await asyncio.sleep(0)
        fault = plan["whole"].get(number)
        if fault == "api_error":
            raise ApiError(507, "disk_full", "đầy", "full")
        if fault == "crash":
            raise RuntimeError("the node's handler broke")
        results = [ApiError(400, f"bad_{i}", "hỏng", "bad") if i in plan["bad"] else {"echo": i}
                   for i in args["items"]]
        if fault == "short_answer":
            return {"results": results[:-1]}
        if fault == "not_a_dict":
            return {"results": [None] * len(results)}
        return {"results": results}

    async def main() -> dict[int, object]:
        batcher = CallBatcher(node, "citizen_submit_page", max_items=plan["max_items"],
                              linger_s=plan.get("linger_s", 0.0))
        outcomes: dict[int, object] = {}

        async def request(i: int) -> None:
            try:
                for _ in range(plan["arrive"][i]):
                    await asyncio.sleep(0)
                given.add(i)
                outcomes[i] = ("ok", (await batcher.call(i))["echo"])
            except ApiError as e:
                outcomes[i] = ("error", e.code)
            except asyncio.CancelledError:
                outcomes[i] = "cancelled"
                raise

        tasks = [asyncio.ensure_future(request(i)) for i in range(len(plan["arrive"]))]
        for _ in range(3):
            await asyncio.sleep(0)
        for i in plan["gives_up"]:
            tasks[i].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while batcher._sender is not None:  # the given-up requests' items are still carried
            await asyncio.sleep(0)
        assert batcher.items == len(given) and batcher.calls == len(seen)
        return outcomes

    return asyncio.run(main()), seen, given


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_a_batch_crossing_loses_and_duplicates_nothing_and_answers_each_request_its_own(plan: dict) -> None:
    outcomes, seen, given = run_plan(plan)
    n = len(plan["arrive"])
    carried = [i for batch in seen for i in batch]
    assert sorted(carried) == sorted(given)  # every item given crossed once, the given-up ones' too
    assert set(range(n)) - given <= plan["gives_up"]  # only a request cancelled early gave none
    assert all(1 <= len(batch) <= plan["max_items"] for batch in seen)
    assert sorted(outcomes) == list(range(n))
    for number, batch in enumerate(seen):
        fault = plan["whole"].get(number)
        for i in batch:
            got = outcomes[i]
            if got == "cancelled":
                assert i in plan["gives_up"]
            elif fault == "api_error":
                assert got == ("error", "disk_full")
            elif fault is not None:  # a broken call or answer: a 500 for all of its batch, nobody else's result
                assert got == ("error", "internal")
            elif i in plan["bad"]:
                assert got == ("error", f"bad_{i}")
            else:
                assert got == ("ok", i)


def test_a_batch_gathers_what_arrives_while_the_node_is_busy() -> None:
    plan = {"arrive": [0] + [3] * 9, "bad": set(), "gives_up": set(), "whole": {},
            "node_ticks": [4], "max_items": 64}
    outcomes, seen, _ = run_plan(plan)
    assert [len(b) for b in seen] == [1, 9]  # one alone, then the nine that came meanwhile
    assert all(o == ("ok", i) for i, o in outcomes.items())


def _held_node():
    """A node call that records each batch and answers it only when its event is set."""
    seen: list[list[int]] = []
    release: list[asyncio.Event] = []

    async def node(name: str, args: dict) -> dict:
        seen.append(list(args["items"]))
        release.append(asyncio.Event())
        await release[-1].wait()
        return {"results": [{"echo": i} for i in args["items"]]}

    return seen, release, node


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_busy_batch_waits_for_more_items_but_a_full_one_and_a_lone_one_go_at_once() -> None:
    """The linger: after a batch of one the next goes at once; after a bigger one the next waits
    for more (here for ever: it goes only because it fills up, else the guard fails the test)."""
    seen, release, node = _held_node()

    async def main() -> None:
        batcher = CallBatcher(node, "citizen_submit_page", max_items=3, linger_s=3600.0)
        asked: list[asyncio.Future] = []

        async def ask(*items: int) -> None:
            asked.extend(asyncio.ensure_future(batcher.call(i)) for i in items)
            await settle()

        await ask(0)                  # alone: goes at once
        await ask(1, 2)               # while [0] is with the node
        release[0].set()
        await settle()                # [1, 2] goes: the batch before was one item
        await ask(3)                  # while [1, 2] is with the node
        release[1].set()
        await settle()                # busy now: [3] waits for more
        assert seen == [[0], [1, 2]]
        await ask(4)
        assert len(seen) == 2         # still waiting
        await ask(5)                  # full: goes at once
        assert seen[-1] == [3, 4, 5]
        release[2].set()
        got = await asyncio.wait_for(asyncio.gather(*asked), HANG_GUARD_S)
        assert [g["echo"] for g in got] == list(range(6))

    asyncio.run(main())


def test_a_lingering_batch_goes_once_every_sender_lately_seen_is_in_and_a_timed_out_wait_lowers_that_mark() -> None:
    """Busy, a batch waits for as many items as were waiting at once lately (queued and with the
    node: the senders that are active), not for the timer (here an hour: only that rule lets it
    go, else the guard fails the test); once a wait times out with fewer, the mark is what came."""
    seen, release, node = _held_node()

    async def main() -> None:
        batcher = CallBatcher(node, "citizen_submit_page", max_items=64, linger_s=3600.0)
        asked: list[asyncio.Future] = []

        async def ask(*items: int) -> None:
            asked.extend(asyncio.ensure_future(batcher.call(i)) for i in items)
            await settle()

        await ask(0)                  # alone: goes at once
        await ask(1, 2, 3)            # four waiting at once: [0] with the node, three queued
        release[0].set()
        await settle()                # [1, 2, 3] goes: the batch before was one item
        await ask(4)                  # four again: [1, 2, 3] with the node, [4] queued
        assert batcher.target == 4
        release[1].set()
        await settle()
        await ask(5, 6)
        assert seen == [[0], [1, 2, 3]]   # busy: [4, 5, 6] waits for a fourth
        await ask(7)                  # the fourth: goes at once, far from full and from the timer
        assert seen[-1] == [4, 5, 6, 7]
        release[2].set()
        assert [g["echo"] for g in await asyncio.wait_for(asyncio.gather(*asked), HANG_GUARD_S)] == list(range(8))

        short = CallBatcher(node, "citizen_submit_page", max_items=64, linger_s=0.001)
        asked.clear()
        asked.append(asyncio.ensure_future(short.call(10)))
        await settle()                # alone: goes at once
        asked.extend(asyncio.ensure_future(short.call(i)) for i in (11, 12, 13))
        await settle()
        release[3].set()
        await settle()                # [11, 12, 13] with the node
        asked.append(asyncio.ensure_future(short.call(14)))
        await settle()
        assert short.target == 4      # four waiting at once
        release[4].set()
        await settle()                # busy: [14] waits for three more that never come
        await asyncio.wait_for(_until(lambda: len(seen) == 6), HANG_GUARD_S)
        assert seen[-1] == [14] and short.target == 1   # the wait timed out: one came, one is waited for
        release[5].set()
        await asyncio.wait_for(asyncio.gather(*asked), HANG_GUARD_S)

    asyncio.run(main())


async def _until(cond) -> None:
    while not cond():
        await asyncio.sleep(0.001)


def test_the_sender_gone_with_its_loop_fails_its_requests_instead_of_leaving_them_waiting() -> None:
    async def node(name: str, args: dict) -> dict:
        await asyncio.sleep(3600)
        return {}

    async def main() -> list:
        batcher = CallBatcher(node, "citizen_submit_page")
        tasks = [asyncio.ensure_future(batcher.call(i)) for i in range(3)]
        await asyncio.sleep(0.01)
        assert batcher._sender is not None
        batcher._sender.cancel()
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), HANG_GUARD_S)

    got = asyncio.run(main())
    assert [e.code for e in got] == ["node_stopping"] * 3


# ----- the group commit: one signed batch, a refused submission fails alone -------------------

GOOD = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=2, max_size=60)


@st.composite
def entries(draw: st.DrawFn) -> list[tuple[str, str, bytes | None, bool]]:
    """(text, source, sealed contact, the law takes it)."""
    out = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["good", "good", "good", "long", "source", "contact"]))
        text = draw(GOOD)
        if kind == "long":
            out.append(("x" * 4001, "hall_page", None, False))
        elif kind == "source":
            out.append((text, "tv", None, False))
        elif kind == "contact":
            out.append((text, "hall_page", b"x" * 1025, False))
        else:
            out.append((text, draw(st.sampled_from(["hall_page", "zalo"])),
                        draw(st.none() | st.binary(min_size=1, max_size=64)), True))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries())
def test_a_group_commit_writes_each_good_submission_once_and_fails_only_the_refused(
        tmp_path: Path, batch: list[tuple[str, str, bytes | None, bool]]) -> None:
    store = mk(HALL1)
    got = ops.submit_each(store, [e[:3] for e in batch])
    assert len(got) == len(batch)
    rows = {r["id"]: r for r in store.rows("feedback")}
    written = []
    for (text, source, contact, good), outcome in zip(batch, got):
        if not good:
            assert isinstance(outcome, SyncError) and outcome.vi and outcome.en
            continue
        fid, code = outcome
        written.append(fid)
        assert (rows[fid]["text"], rows[fid]["source"], rows[fid]["contact"], rows[fid]["code"]) == (
            text, source, contact, code)
        assert codes.read_code(codes.show(code)) == code
    assert sorted(written) == sorted(rows) and len(set(written)) == len(written)  # none lost, none twice
    assert len({r["code"] for r in rows.values()}) == len(rows)
    changes = sum(len(b.entries) for b in logged(store))
    assert changes == len(rows)  # the change log holds each written row once, and nothing refused
    if all(e[3] for e in batch):
        assert len(logged(store)) == 1  # all taken: one signed batch, one commit


def test_the_page_call_takes_only_forms_the_page_checked() -> None:
    """What crosses is a FeedbackForm; the JSON of an /api call can only be dicts, and is refused."""
    form = parse_form(b"text=%C4%90%C6%B0%E1%BB%9Dng+h%E1%BB%8Fng&name=&phone=&website=")
    assert type(form) is FeedbackForm
    from meshmeet.node.citizens_service import page_forms

    assert page_forms({"items": [form, form]}) == [form, form]
    for items in ([{"text": form.text, "name": None, "phone": None}], [], None, "x", [form, {"text": "y"}],
                  [form] * 257):
        with pytest.raises(ApiError) as e:
            page_forms({"items": items})
        assert e.value.status == 400 and e.value.vi and e.value.en
