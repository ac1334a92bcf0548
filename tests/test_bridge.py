"""The web gateway driven from trio through the bridge, with real HTTP and WebSocket clients.

aiohttp serves on 127.0.0.1 port 0 in its own thread; HTTP requests go through urllib in a
worker thread, WebSocket clients are aiohttp clients on a separate asyncio loop thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import aiohttp
import pytest
import trio
import trio.testing

from meshmeet.errors import MeshmeetError
from meshmeet.api.contract import ApiError, dispatch_table
from meshmeet.web.gateway_lifecycle import open_web_gateway
from meshmeet.web.gateway import MAX_JSON_BODY_BYTES
from meshmeet.web.hub import SlowClientPolicy

HOST = "127.0.0.1"


# ------------------------------------------------------------------ clients


class ClientLoop:
    """An asyncio loop in its own thread, for aiohttp clients (not the gateway's loop)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="test-clients")
        self.thread.start()

    async def run(self, coro):  # from trio
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await trio.to_thread.run_sync(fut.result)

    def close(self) -> None:
        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(drain(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class WsClient:
    """A browser stand-in: collects every message; thread-safe waits for counts and close."""

    def __init__(self, clients: ClientLoop, url: str) -> None:
        self._clients = clients
        self.url = url
        self.messages: list[bytes | str] = []
        self.close_code: int | None = None
        self._cond = threading.Condition()
        self._closed = False

    async def connect(self) -> WsClient:
        await self._clients.run(self._connect())
        return self

    async def _connect(self) -> None:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self.url)
        asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    with self._cond:
                        self.messages.append(msg.data)
                        self._cond.notify_all()
        finally:
            with self._cond:
                self.close_code = self._ws.close_code
                self._closed = True
                self._cond.notify_all()
            await self._session.close()

    async def send(self, data: bytes | str) -> None:
        async def go() -> None:
            if isinstance(data, bytes):
                await self._ws.send_bytes(data)
            else:
                await self._ws.send_str(data)

        await self._clients.run(go())

    async def wait_count(self, n: int) -> list[bytes | str]:
        def wait() -> list[bytes | str]:
            with self._cond:
                self._cond.wait_for(lambda: len(self.messages) >= n or self._closed)
                return list(self.messages)

        return await trio.to_thread.run_sync(wait)

    async def wait_closed(self) -> int | None:
        def wait() -> int | None:
            with self._cond:
                self._cond.wait_for(lambda: self._closed)
                return self.close_code

        return await trio.to_thread.run_sync(wait)


@pytest.fixture
def clients() -> Iterator[ClientLoop]:
    c = ClientLoop()
    yield c
    c.close()


def _http_sync(method: str, url: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    return await trio.to_thread.run_sync(_http_sync, method, url, body, headers or {})


def ws_url(gw, topic: str) -> str:
    return gw.url.replace("http://", "ws://") + "/ws/" + topic


def gateway_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("meshmeet-web-")]


# ------------------------------------------------------------------ the node's API used in tests


class Boom(RuntimeError):
    pass


def make_api(calls: list[tuple[str, dict]] | None = None):
    async def status(args: dict) -> dict:
        return {"node": "thon-1", "peers": 3, "vi": "Đang họp"}

    async def echo(args: dict) -> dict:
        await trio.sleep(0)  # really runs on trio
        return {"echo": args}

    async def refuse(args: dict) -> dict:
        raise ApiError(409, "vote_closed", "Biểu quyết đã đóng", "the vote is closed")

    async def crash(args: dict) -> dict:
        raise Boom("handler bug")

    async def not_a_dict(args: dict) -> dict:
        return ["nope"]  # type: ignore[return-value]

    async def forever(args: dict) -> dict:
        await trio.sleep_forever()
        return {}

    table = dispatch_table(
        {"status": status, "echo": echo, "meeting": echo, "refuse": refuse, "crash": crash, "not_a_dict": not_a_dict,
         "forever": forever}
    )

    async def api(name: str, args: dict) -> dict:
        if calls is not None:
            calls.append((name, args))
        return await table(name, args)

    return api


# ------------------------------------------------------------------ HTTP API


async def test_status_returns_the_nodes_dict():
    async with open_web_gateway(None, host=HOST, port=0, api=make_api()) as gw:
        assert gw.port != 0 and gw.url == f"http://{HOST}:{gw.port}"
        status, body = await http("GET", gw.url + "/api/status")
    assert status == 200
    assert body == {"node": "thon-1", "peers": 3, "vi": "Đang họp"}


async def test_get_query_and_post_json_reach_the_handler():
    async with trio.open_nursery() as nursery:
        async with open_web_gateway(nursery, host=HOST, port=0, api=make_api()) as gw:
            s1, b1 = await http("GET", gw.url + "/api/meeting?a=1&b=hai")  # a read: GET allowed
            s2, b2 = await http(
                "POST", gw.url + "/api/echo", json.dumps({"x": [1, 2], "t": "tổ 3"}).encode(), {"Content-Type": "application/json"}
            )
            s3, b3 = await http("POST", gw.url + "/api/echo", b"")
    assert (s1, b1) == (200, {"echo": {"a": "1", "b": "hai"}})
    assert (s2, b2) == (200, {"echo": {"x": [1, 2], "t": "tổ 3"}})
    assert (s3, b3) == (200, {"echo": {}})


async def test_api_error_becomes_json_error_with_its_status():
    async with open_web_gateway(None, host=HOST, port=0, api=make_api()) as gw:
        status, body = await http("POST", gw.url + "/api/refuse", b"{}")
    assert status == 409
    assert body == {"error": {"code": "vote_closed", "vi": "Biểu quyết đã đóng", "en": "the vote is closed"}}


async def test_unknown_and_invalid_names_are_404():
    calls: list[tuple[str, dict]] = []
    async with open_web_gateway(None, host=HOST, port=0, api=make_api(calls)) as gw:
        s1, b1 = await http("POST", gw.url + "/api/no_such_thing", b"")
        s2, b2 = await http("GET", gw.url + "/api/Bad-Name")
        s3, b3 = await http("GET", gw.url + "/api/a/b")
    assert s1 == 404 and b1["error"]["code"] == "unknown_api" and "no_such_thing" in b1["error"]["en"]
    assert s2 == 404 and b2["error"]["code"] == "unknown_api"
    assert s3 == 404 and set(b3["error"]) == {"code", "vi", "en"}
    assert [name for name, _ in calls] == ["no_such_thing"]  # invalid names never reach the node


@pytest.mark.parametrize(
    "body, fragment",
    [(b"{not json", "not valid JSON"), (b"\xff\xfe", "not UTF-8"), (b"[1, 2]", "must be an object")],
)
async def test_bad_json_is_400_with_a_bilingual_message(body, fragment):
    calls: list[tuple[str, dict]] = []
    async with open_web_gateway(None, host=HOST, port=0, api=make_api(calls)) as gw:
        status, reply = await http("POST", gw.url + "/api/echo", body, {"Content-Type": "application/json"})
    assert status == 400
    assert reply["error"]["code"] == "bad_json"
    assert fragment in reply["error"]["en"] and reply["error"]["vi"]
    assert calls == []


async def test_oversized_body_is_413():
    big = b'{"x": "' + b"a" * MAX_JSON_BODY_BYTES + b'"}'
    calls: list[tuple[str, dict]] = []
    async with open_web_gateway(None, host=HOST, port=0, api=make_api(calls)) as gw:
        status, reply = await http("POST", gw.url + "/api/echo", big)
        # chunked upload without Content-Length is capped while streaming
        chunked = iter([big[i : i + 65536] for i in range(0, len(big), 65536)])
        status2, reply2 = await http("POST", gw.url + "/api/echo", chunked, {"Transfer-Encoding": "chunked"})  # type: ignore[arg-type]
        # and the gateway still answers afterwards
        status3, _ = await http("GET", gw.url + "/api/status")
    assert status == 413 and reply["error"]["code"] == "body_too_large"
    assert status2 == 413 and reply2["error"]["code"] == "body_too_large"
    assert status3 == 200
    assert calls == [("status", {})]


async def test_handler_exception_is_500_and_the_gateway_keeps_serving(caplog):
    async with open_web_gateway(None, host=HOST, port=0, api=make_api()) as gw:
        s1, b1 = await http("POST", gw.url + "/api/crash", b"")
        s2, b2 = await http("POST", gw.url + "/api/not_a_dict", b"")
        s3, b3 = await http("GET", gw.url + "/api/status")
    assert s1 == 500 and b1["error"]["code"] == "internal"
    assert "handler bug" not in json.dumps(b1)  # details go to the log, not the browser
    assert s2 == 500
    assert s3 == 200 and b3["node"] == "thon-1"
    assert any("handler bug" in (r.exc_text or "") or r.exc_info and "handler bug" in str(r.exc_info[1]) for r in caplog.records)


async def test_extra_routes_and_static_dirs_are_passed_in(tmp_path):
    from aiohttp import web

    (tmp_path / "hello.txt").write_text("xin chào")

    def routes(ctx):
        async def hub_size(request: web.Request) -> web.Response:
            return web.json_response({"subscribers": ctx.hub.subscriber_count()})

        return [web.get("/pages/hub", hub_size)]

    async with open_web_gateway(
        None, host=HOST, port=0, api=make_api(), routes_factory=routes, static_dirs={"/static": tmp_path}
    ) as gw:
        status, body = await http("GET", gw.url + "/pages/hub")
        text = await trio.to_thread.run_sync(lambda: urllib.request.urlopen(gw.url + "/static/hello.txt").read())
    assert (status, body) == (200, {"subscribers": 0})
    assert text.decode() == "xin chào"


async def test_starting_twice_on_the_same_port_is_a_clear_error():
    async with open_web_gateway(None, host=HOST, port=0, api=make_api()) as gw:
        threads_before = gateway_threads()
        with pytest.raises(MeshmeetError) as info:
            async with open_web_gateway(None, host=HOST, port=gw.port, api=make_api()):
                pass  # pragma: no cover
        assert "đang bận" in info.value.vi and "in use" in info.value.en
        assert str(gw.port) in info.value.vi and str(gw.port) in info.value.en
        assert gateway_threads() == threads_before  # the failed gateway's thread was joined
        status, _ = await http("GET", gw.url + "/api/status")  # the first one is unharmed
        assert status == 200


# ------------------------------------------------------------------ WebSockets and pipes


async def test_subscribers_receive_published_messages_in_order(clients):
    n = 300
    async with open_web_gateway(None, host=HOST, port=0, api=make_api(), client_queue_messages=n) as gw:
        a = await WsClient(clients, ws_url(gw, "meeting")).connect()
        b = await WsClient(clients, ws_url(gw, "meeting")).connect()
        other = await WsClient(clients, ws_url(gw, "chat")).connect()
        while await gw.subscriber_count() < 3:
            await trio.sleep(0.01)
        for i in range(n):
            if i % 3 == 0:
                await gw.publish("meeting", {"i": i, "vi": "mục"})
            elif i % 3 == 1:
                await gw.publish("meeting", i.to_bytes(4, "big"))
            else:
                await gw.publish("meeting", f"text {i}")
        await gw.publish("chat", "only chat")
        got_a = await a.wait_count(n)
        got_b = await b.wait_count(n)
        got_other = await other.wait_count(1)
    expected = [
        json.dumps({"i": i, "vi": "mục"}, ensure_ascii=False, separators=(",", ":"))
        if i % 3 == 0
        else i.to_bytes(4, "big")
        if i % 3 == 1
        else f"text {i}"
        for i in range(n)
    ]
    assert got_a == expected
    assert got_b == expected
    assert got_other == ["only chat"]


async def test_slow_client_does_not_block_others_or_the_publisher(clients):
    chunk = b"v" * 65536
    n = 400  # 26 MB: far more than a non-reading socket's buffers
    async with open_web_gateway(None, host=HOST, port=0, api=make_api(), client_queue_messages=8) as gw:
        fast = await WsClient(clients, ws_url(gw, "media")).connect()
        # the slow "browser": completes the WebSocket handshake, then never reads
        slow = await trio.open_tcp_stream(HOST, gw.port)
        await slow.send_all(
            b"GET /ws/media HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += await slow.receive_some(1)
        assert head.startswith(b"HTTP/1.1 101")
        while await gw.subscriber_count("media") < 2:
            await trio.sleep(0.01)
        for i in range(n):
            await gw.publish("media", i.to_bytes(4, "big") + chunk)
            if i % 8 == 7:
                await fast.wait_count(i + 1)  # keep the fast client within its queue
        got = await fast.wait_count(n)

        async def dropped() -> int:
            return gw._hub.dropped("media")

        slow_dropped = await gw.run_in_loop(dropped())
        await slow.aclose()
    assert [int.from_bytes(m[:4], "big") for m in got] == list(range(n))
    assert slow_dropped > 0  # the slow client lost its oldest messages instead of stalling anyone


async def test_disconnect_policy_closes_the_slow_client(clients):
    async with open_web_gateway(
        None, host=HOST, port=0, api=make_api(), client_queue_messages=2, slow_client_policy=SlowClientPolicy.DISCONNECT
    ) as gw:
        slow = await WsClient(clients, ws_url(gw, "t")).connect()
        while await gw.subscriber_count("t") < 1:
            await trio.sleep(0.01)
        blocked, holding = threading.Event(), threading.Event()

        async def block_loop() -> None:
            holding.set()
            blocked.wait()  # holds the gateway loop, so its pump cannot drain

        async with trio.open_nursery() as nursery:
            nursery.start_soon(gw.run_in_loop, block_loop())
            await trio.to_thread.run_sync(holding.wait)  # the loop is held from here on
            try:
                for i in range(5):
                    await gw.publish("t", f"m{i}")  # stays within pipe credits
            finally:
                blocked.set()  # never leave the loop held, or a failure would hang the gateway's shutdown
        code = await slow.wait_closed()
    assert code == 1013


async def test_backpressure_publisher_waits_when_credits_are_exhausted(clients):
    capacity = 4
    async with open_web_gateway(None, host=HOST, port=0, api=make_api(), outbound_capacity=capacity) as gw:
        sub = await WsClient(clients, ws_url(gw, "ev")).connect()
        while await gw.subscriber_count("ev") < 1:
            await trio.sleep(0.01)
        release, holding = threading.Event(), threading.Event()

        async def hold_loop() -> None:
            holding.set()
            release.wait()  # the asyncio side takes nothing while this runs

        async with trio.open_nursery() as nursery:
            nursery.start_soon(gw.run_in_loop, hold_loop())
            await trio.to_thread.run_sync(holding.wait)  # the loop is held from here on
            try:
                assert all(gw.try_publish("ev", f"{i}") for i in range(capacity))
                assert gw.try_publish("ev", "dropped") is False
                assert gw.outbound_stats.dropped == 1 and gw.outbound_stats.credits == 0
                done = trio.Event()

                async def publisher() -> None:
                    await gw.publish("ev", "waited")
                    done.set()

                nursery.start_soon(publisher)
                await trio.testing.wait_all_tasks_blocked()
                assert not done.is_set()  # no credit: the publisher is parked
            finally:
                release.set()  # never leave the loop held, or a failure would hang the gateway's shutdown
            await done.wait()
        got = await sub.wait_count(capacity + 1)
    assert got == ["0", "1", "2", "3", "waited"]


async def test_browser_messages_arrive_inbound_in_order(clients):
    def accept_presenter(app, ctx) -> None:  # browsers may only send on topics with a check
        ctx.inbound_checks["presenter"] = lambda data: True

    async with open_web_gateway(None, host=HOST, port=0, api=make_api(), inbound_capacity=3,
                                app_setup=[accept_presenter]) as gw:
        c = await WsClient(clients, ws_url(gw, "presenter")).connect()
        sent = [f"msg {i}" if i % 2 else bytes([i]) * 10 for i in range(40)]
        for item in sent:
            await c.send(item)
        got = []
        for _ in sent:
            got.append(await gw.inbound.receive())
            assert len(gw.inbound._buffer) <= 3  # credits bound what waits on the trio side
    assert got == [("presenter", item) for item in sent]


async def test_shutdown_closes_websockets_with_1001_and_joins_the_thread(clients):
    async with open_web_gateway(None, host=HOST, port=0, api=make_api()) as gw:
        socks = [await WsClient(clients, ws_url(gw, t)).connect() for t in ("a", "a", "b")]
        while await gw.subscriber_count() < 3:
            await trio.sleep(0.01)
        assert len(gateway_threads()) == 1
        inbound = gw.inbound
    codes = [await s.wait_closed() for s in socks]
    assert codes == [1001, 1001, 1001]
    assert gateway_threads() == []
    with pytest.raises(trio.ClosedResourceError):
        await gw.publish("a", "late")
    with pytest.raises(trio.EndOfChannel):
        await inbound.receive()


async def test_shutdown_with_a_call_in_flight_does_not_hang():
    entered, handler_ended = trio.Event(), []

    async def forever(args: dict) -> dict:
        entered.set()  # the request has reached the trio handler
        try:
            await trio.sleep_forever()
        finally:
            handler_ended.append("cancelled")
        return {}

    results: list[tuple[int, dict]] = []
    async with trio.open_nursery() as nursery:
        async with open_web_gateway(None, host=HOST, port=0, api=dispatch_table({"forever": forever})) as gw:

            async def ask() -> None:
                try:
                    results.append(await http("POST", gw.url + "/api/forever", b""))
                except Exception as e:  # connection dropped at shutdown is acceptable too
                    results.append((0, {"exc": repr(e)}))

            nursery.start_soon(ask)
            await entered.wait()
        assert handler_ended == ["cancelled"]  # shutdown cancelled the handler: it was not left running
    assert gateway_threads() == []
    assert len(results) == 1  # the caller got an answer (or a closed connection), it did not hang
    status, body = results[0]
    assert status in (503, 0), results
    if status == 503:
        assert body["error"]["code"] == "node_stopping"


async def test_cancelling_the_body_still_shuts_down_cleanly(clients):
    with trio.CancelScope() as scope:
        async with open_web_gateway(None, host=HOST, port=0, api=make_api()) as gw:
            c = await WsClient(clients, ws_url(gw, "x")).connect()
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert await c.wait_closed() == 1001
    assert gateway_threads() == []


async def test_app_setup_mounts_hooks_sinks_and_upstream_routes():
    from aiohttp import web

    seen: list[tuple[str, bytes | str]] = []  # appended on the gateway thread
    events: list[str] = []
    gateway_thread: list[threading.Thread] = []

    def media_setup(app: web.Application, ctx) -> None:
        def sink(data: bytes | str) -> None:
            gateway_thread.append(threading.current_thread())
            seen.append(("media", data))

        ctx.hub.add_sink("media", sink)

        async def keyframe_request(request: web.Request) -> web.Response:
            await ctx.inbound("media-up", await request.read())  # towards the node, with credit
            return web.json_response({"queued": True})

        app.router.add_post("/media/keyframe", keyframe_request)

        async def on_cleanup(_app: web.Application) -> None:
            events.append("cleanup")

        app.on_cleanup.append(on_cleanup)

    async with open_web_gateway(None, host=HOST, port=0, api=make_api(), app_setup=[media_setup]) as gw:
        for i in range(5):
            await gw.publish("media", bytes([i]) * 3)
        status, body = await http("POST", gw.url + "/media/keyframe", b"\x01layer")
        upstream = await gw.inbound.receive()

        async def snapshot() -> list[tuple[str, bytes | str]]:
            return list(seen)

        got = await gw.run_in_loop(snapshot())
    assert got == [("media", bytes([i]) * 3) for i in range(5)]
    assert gateway_thread and all(t.name.startswith("meshmeet-web-") for t in gateway_thread)
    assert (status, body) == (200, {"queued": True})
    assert upstream == ("media-up", b"\x01layer")
    assert events == ["cleanup"]
