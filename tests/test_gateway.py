"""Gateway pieces without the bridge: JSON argument parsing, the hub's fan-out and slow-client
policies, payload encoding and the API contract; plus hostile request bodies against a real
gateway, which must always get the gateway's own JSON answer.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshmeet.api.contract import ApiError, dispatch_table, error_body
from meshmeet.web.gateway_lifecycle import open_web_gateway
from meshmeet.web.gateway import parse_json_args
from meshmeet.web.hub import Hub, SlowClientPolicy, encode_payload

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


# ------------------------------------------------------------------ parse_json_args


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_hostile_bodies_give_a_dict_or_bad_json(raw):
    try:
        args = parse_json_args(raw)
    except ApiError as e:
        assert e.status == 400 and e.code == "bad_json" and e.vi and e.en
    else:
        assert isinstance(args, dict)


@settings(max_examples=200)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_json_objects_round_trip(obj):
    assert parse_json_args(json.dumps(obj).encode()) == obj


def test_deeply_nested_json_is_bad_json_not_a_crash():
    with pytest.raises(ApiError) as info:
        parse_json_args(b"[" * 100_000 + b"]" * 100_000)
    assert info.value.status == 400


@pytest.mark.parametrize("raw", [b"", b"  \n", b"{}"])
def test_empty_bodies_are_no_args(raw):
    assert parse_json_args(raw) == {}


# ------------------------------------------------------------------ Hub


class FakeWs:
    """Stands in for a WebSocketResponse where the hub only queues (no sending)."""

    def __init__(self) -> None:
        self.closed = False
        self.close_calls: list[int] = []

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        self.close_calls.append(code)
        self.closed = True
        return True


@settings(max_examples=200)
@given(st.integers(1, 10), st.lists(st.binary(max_size=8) | st.text(max_size=8), max_size=40))
def test_drop_oldest_keeps_the_newest_messages_in_order(queue_max, messages):
    hub = Hub(client_queue_messages=queue_max)
    sub = hub.subscribe("t", FakeWs())  # type: ignore[arg-type]
    other = hub.subscribe("u", FakeWs())  # type: ignore[arg-type]
    for m in messages:
        assert hub.publish("t", m) == 1
    assert list(sub._queue) == messages[-queue_max:] if messages else list(sub._queue) == []
    assert sub.dropped == max(0, len(messages) - queue_max) == hub.dropped("t")
    assert list(other._queue) == []


def test_subscribe_unsubscribe_and_counts():
    hub = Hub()
    a = hub.subscribe("t", FakeWs())  # type: ignore[arg-type]
    b = hub.subscribe("t", FakeWs())  # type: ignore[arg-type]
    c = hub.subscribe("u", FakeWs())  # type: ignore[arg-type]
    assert (hub.subscriber_count(), hub.subscriber_count("t"), hub.subscriber_count("none")) == (3, 2, 0)
    hub.unsubscribe(a)
    hub.unsubscribe(a)  # twice is harmless
    assert hub.publish("t", b"x") == 1 and list(b._queue) == [b"x"]
    hub.unsubscribe(b)
    hub.unsubscribe(c)
    assert hub.subscriber_count() == 0 and hub.publish("t", b"y") == 0


def test_disconnect_policy_closes_a_full_client_and_stops_queueing():
    async def scenario() -> tuple[list[int], list[bytes | str], list[bytes | str]]:
        hub = Hub(client_queue_messages=2, policy=SlowClientPolicy.DISCONNECT)
        slow_ws, ok_ws = FakeWs(), FakeWs()
        slow = hub.subscribe("t", slow_ws)  # type: ignore[arg-type]
        ok = hub.subscribe("t", ok_ws)  # type: ignore[arg-type]
        hub.publish("t", "1")
        hub.publish("t", "2")
        ok._queue.clear()  # the healthy client keeps up
        hub.publish("t", "3")  # slow is full: disconnected, not queued
        hub.publish("t", "4")
        await asyncio.sleep(0)
        return slow_ws.close_calls, list(slow._queue), list(ok._queue)

    close_calls, slow_q, ok_q = asyncio.run(scenario())
    assert close_calls == [1013]
    assert slow_q == ["1", "2"]
    assert ok_q == ["3", "4"]


# ------------------------------------------------------------------ encoding and the API contract


def test_encode_payload():
    assert encode_payload(b"ab") == b"ab"
    assert encode_payload(bytearray(b"ab")) == b"ab" and type(encode_payload(bytearray(b"a"))) is bytes
    assert encode_payload(memoryview(b"ab")) == b"ab"
    assert encode_payload("chào") == "chào"
    assert encode_payload({"a": "ấp", "n": [1]}) == '{"a":"ấp","n":[1]}'
    with pytest.raises(TypeError):
        encode_payload(3)  # type: ignore[arg-type]


def test_api_error_shape_and_status_range():
    e = ApiError(409, "vote_closed", "Biểu quyết đã đóng", "the vote is closed")
    assert e.to_json() == error_body("vote_closed", "Biểu quyết đã đóng", "the vote is closed")
    assert str(e) == "Biểu quyết đã đóng / the vote is closed"
    with pytest.raises(ValueError):
        ApiError(200, "ok", "được", "fine")


async def test_dispatch_table_routes_and_404s():
    async def ping(args: dict) -> dict:
        return {"pong": args}

    api = dispatch_table({"ping": ping})
    assert await api("ping", {"a": 1}) == {"pong": {"a": 1}}
    with pytest.raises(ApiError) as info:
        await api("pong", {})
    assert info.value.status == 404 and info.value.code == "unknown_api"
    with pytest.raises(ValueError):
        dispatch_table({"Bad Name": ping})


# ------------------------------------------------------------------ hostile bodies over real HTTP


def _post(url: str, body: bytes) -> tuple[int, object]:
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def test_hostile_post_bodies_get_json_answers_from_a_real_gateway():
    async def api(name: str, args: dict) -> dict:
        return {"args": args}

    async with open_web_gateway(None, host="127.0.0.1", port=0, api=api) as gw:
        url = gw.url + "/api/echo"

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(st.binary(max_size=300) | st.builds(lambda v: json.dumps(v).encode(), json_values))
        def check(body: bytes) -> None:
            status, reply = _post(url, body)  # runs in a worker thread, off the trio loop
            assert status in (200, 400)
            if status == 200:
                assert isinstance(reply, dict) and reply["args"] == parse_json_args(body)
            else:
                assert set(reply["error"]) == {"code", "vi", "en"}

        await trio.to_thread.run_sync(check)


def test_sinks_get_every_message_and_a_broken_sink_starves_nobody():
    hub = Hub()
    got: list[bytes | str] = []

    def broken(data: bytes | str) -> None:
        raise RuntimeError("sink bug")

    hub.add_sink("media", broken)
    hub.add_sink("media", got.append)
    sub = hub.subscribe("media", FakeWs())  # type: ignore[arg-type]
    assert hub.publish("media", b"c1") == 3
    assert hub.publish("media", b"c2") == 3
    assert hub.publish("other", b"x") == 0
    assert got == [b"c1", b"c2"]
    assert list(sub._queue) == [b"c1", b"c2"]
