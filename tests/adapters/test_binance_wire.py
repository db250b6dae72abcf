# ruff: noqa: F811 - the fixtures are imported from tests.adapters.binance_fakes and named as parameters
"""BinanceAdapter with the real python-binance against a tiny local aiohttp server on 127.0.0.1 that
serves the Binance paths: connect, rebuilds, bad frames, listen keys, silence."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from gridbot.adapters.binance import _sockets as sockets_mod
from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, ConnectError
from gridbot.stats import Counters
from tests.adapters.binance_fakes import (  # noqa: F401 - pytest fixtures
    FAKE_ENDPOINTS,
    KEY,
    OPEN_ORDER_ROW,
    REST,
    SECRET,
    WS,
    FakeClient,
    FakeSdk,
    FakeSocket,
    RecordingSink,
    api_error,
    fixture,
    make_adapter,
    new_threads,
    sdk,
    sink,
    threads_before,
)
from tests.helpers import wait_until

# --------------------------------------------------------------------------- the real SDK, on 127.0.0.1


class WireServer:
    """The least a Binance host must serve for python-binance 1.0.37 and this adapter."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.requests: list[str] = []
        self.sockets: list[tuple[str, str, web.WebSocketResponse]] = []
        self.keys = iter(f"LK{n}" for n in range(1, 100))
        self.reject_key = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-wire-server", daemon=True)
        self.port = 0

    def _run(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v3/ping", self._json(lambda r: {}))
        app.router.add_get("/api/v3/time", self._json(lambda r: {"serverTime": int(time.time() * 1000)}))
        app.router.add_post("/fapi/v1/listenKey", self._listen_key)
        app.router.add_put("/fapi/v1/listenKey", self._json(lambda r: {}))
        app.router.add_get("/private/ws", functools.partial(self._ws, "private"))
        app.router.add_get("/market/stream", functools.partial(self._ws, "public"))
        self._runner = web.AppRunner(app)
        self.loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._runner.cleanup())
        self.loop.close()

    def _json(self, answer: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            self.requests.append(f"{request.method} {request.path_qs}")
            return web.json_response(answer(request))
        return handler

    async def _listen_key(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path_qs}")
        if self.reject_key:
            answer = {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
            return web.json_response(answer, status=401)
        return web.json_response({"listenKey": next(self.keys)})

    async def _ws(self, channel: str, request: web.Request) -> web.WebSocketResponse:
        self.requests.append(f"WS {request.path_qs}")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append((channel, request.path_qs, ws))
        async for _ in ws:
            pass
        return ws

    def start(self) -> WireServer:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def stop(self) -> None:
        async def close_all() -> None:
            for _, _, ws in self.sockets:
                await ws.close()
        asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}")

    def latest(self, channel: str) -> tuple[str, web.WebSocketResponse]:
        """The newest socket of ``channel`` (the client may see the handshake done before the handler
        has registered it: wait for it)."""
        wait_until(lambda: any(s[0] == channel for s in self.sockets))
        _, path, ws = [s for s in self.sockets if s[0] == channel][-1]
        return path, ws

    def paths(self, channel: str) -> list[str]:
        return [path for ch, path, _ in self.sockets if ch == channel]

    def send(self, channel: str, message: Any) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        asyncio.run_coroutine_threadsafe(self.latest(channel)[1].send_str(text), self.loop).result(5)

    def drop(self, channel: str) -> None:
        asyncio.run_coroutine_threadsafe(self.latest(channel)[1].close(), self.loop).result(5)


@pytest.fixture
def wire() -> Iterator[WireServer]:
    server = WireServer().start()
    yield server
    server.stop()


def test_real_sdk_connects_through_endpoints_receives_and_closes_promptly(
        wire: WireServer, threads_before: set[threading.Thread],
        make_adapter: Any, sink: RecordingSink) -> None:
    adapter = make_adapter(endpoints=wire.endpoints)
    adapter.open(["BTCUSDT", "ETHUSDT"], timeout=5)

    assert adapter.connected
    assert wire.requests[:2] == ["GET /api/v3/ping", "GET /api/v3/time"]
    assert wire.requests.count("POST /fapi/v1/listenKey") == 1  # both sockets open at once, in any order
    wait_until(lambda: wire.paths("private") == ["/private/ws?listenKey=LK1"])
    market_path = "/market/stream?streams=btcusdt@markPrice@1s/ethusdt@markPrice@1s"
    wait_until(lambda: wire.paths("public") == [market_path])
    pushed = fixture("order_trade_update.json")
    wire.send("private", pushed)
    wire.send("public", fixture("combined_stream_mark_price.json"))
    wait_until(lambda: sink.frames("private") == [pushed] and len(sink.frames("public")) == 1)

    started = time.monotonic()
    adapter.close(timeout=3.0)
    assert time.monotonic() - started < 1.5  # not the SDK's ~10 s stop
    assert new_threads(threads_before) == []


def test_real_sdk_connection_loss_is_rebuilt_by_the_supervisor(wire: WireServer, make_adapter: Any,
                                                                 sink: RecordingSink,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    adapter = make_adapter(endpoints=wire.endpoints)
    adapter.open(["BTCUSDT"], timeout=5)

    caplog.set_level(logging.DEBUG, logger="binance")
    wire.drop("private")
    wait_until(lambda: "up" in sink.links("private"))
    # A loss gridbot recovers from is reported once by the supervisor, not as the SDK's ERROR lines.
    sdk_records = [r for r in caplog.records if r.name.startswith("binance")]
    assert sdk_records and [r for r in sdk_records if r.levelno >= logging.ERROR] == []

    links = sink.links("private")  # the SDK's error dicts (gaps), then the supervisor's rebuild
    assert links[-2:] == ["down", "up"] and set(links[:-2]) <= {"gap"}
    # not the SDK's own reconnect (the same, possibly expired key): a new socket with a new key
    wait_until(lambda: wire.paths("private") == ["/private/ws?listenKey=LK1", "/private/ws?listenKey=LK2"])
    assert adapter.connected
    wire.send("private", {"e": "ACCOUNT_UPDATE"})
    wait_until(lambda: sink.frames("private") == [{"e": "ACCOUNT_UPDATE"}])


def test_real_sdk_non_json_frame_is_counted_and_skipped(wire: WireServer, make_adapter: Any,
                                                         sink: RecordingSink) -> None:
    counters = Counters()
    adapter = make_adapter(endpoints=wire.endpoints, counters=counters)
    adapter.open(["BTCUSDT"], timeout=5)

    # 1.0.37 ends its read loop for good on a non-JSON frame (a gap and a rebuild); gridbot skips it.
    wire.send("private", "this is not JSON")
    wire.send("private", {"e": "ACCOUNT_UPDATE"})
    wait_until(lambda: sink.frames("private") == [{"e": "ACCOUNT_UPDATE"}])
    assert counters.snapshot().bad_messages == 1
    assert sink.links("private") == [] and wire.paths("private") == ["/private/ws?listenKey=LK1"]


def test_real_sdk_dead_read_loop_is_rebuilt(wire: WireServer, make_adapter: Any, sink: RecordingSink,
                                            mocker: Any) -> None:
    original = sockets_mod._ObservedSocket._handle_message

    def dies_on_cue(self: Any, evt: Any) -> Any:
        if evt == "die":
            raise RuntimeError("read loop killer")  # the SDK ends its read loop on any other error
        return original(self, evt)

    mocker.patch.object(sockets_mod._ObservedSocket, "_handle_message", dies_on_cue)
    adapter = make_adapter(endpoints=wire.endpoints)
    adapter.open(["BTCUSDT"], timeout=5)

    wire.send("public", "die")
    wait_until(lambda: sink.links("public") == ["gap", "down", "up"])  # its error dict, its death

    wait_until(lambda: len(wire.paths("public")) == 2)
    wire.send("public", fixture("combined_stream_mark_price.json"))
    wait_until(lambda: len(sink.frames("public")) == 1)
    assert adapter.connected


def test_real_sdk_listen_key_expired_reconnects_with_a_new_key(wire: WireServer, make_adapter: Any,
                                                               sink: RecordingSink) -> None:
    adapter = make_adapter(endpoints=wire.endpoints)
    adapter.open(["BTCUSDT"], timeout=5)

    wire.send("private", fixture("listen_key_expired.json"))
    wait_until(lambda: sink.links("private") == ["down", "up"])

    wait_until(lambda: wire.paths("private") == ["/private/ws?listenKey=LK1", "/private/ws?listenKey=LK2"])
    assert adapter.connected


def test_real_sdk_rejected_key_and_unreachable_host(
        wire: WireServer, threads_before: set[threading.Thread],
        make_adapter: Any) -> None:
    wire.reject_key = True
    with pytest.raises(AuthenticationError, match="-2015"):
        make_adapter(endpoints=wire.endpoints).open(["BTCUSDT"], timeout=5)
    assert new_threads(threads_before) == []

    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    nowhere = Endpoints(f"http://127.0.0.1:{closed_port}", f"ws://127.0.0.1:{closed_port}")
    with pytest.raises(ConnectError):
        make_adapter(endpoints=nowhere).open(["BTCUSDT"], timeout=5)
    assert new_threads(threads_before) == []


def test_real_sdk_two_adapters_in_one_process(
        wire: WireServer, threads_before: set[threading.Thread],
        make_adapter: Any) -> None:
    """Each adapter has its own manager loop; opening them from a worker thread leaves that thread
    without an event loop (the SDK's constructors would otherwise create and set one there)."""
    sinks = [RecordingSink(), RecordingSink()]
    adapters = [make_adapter(endpoints=wire.endpoints, sink=s) for s in sinks]
    outcome: dict[str, Any] = {}

    def open_both() -> None:
        for adapter in adapters:
            adapter.open(["BTCUSDT"], timeout=5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                outcome["loop"] = asyncio.get_event_loop()
            except RuntimeError:
                outcome["loop"] = None

    opener = threading.Thread(target=open_both)
    opener.start()
    opener.join(10)
    assert outcome == {"loop": None}
    assert all(adapter.connected for adapter in adapters)

    wait_until(lambda: len(wire.paths("private")) == 2)
    for _, _, ws in [s for s in wire.sockets if s[0] == "private"]:
        asyncio.run_coroutine_threadsafe(ws.send_str('{"e": "ACCOUNT_UPDATE"}'), wire.loop).result(5)
    wait_until(lambda: all(s.frames("private") == [{"e": "ACCOUNT_UPDATE"}] for s in sinks))

    started = time.monotonic()
    for adapter in adapters:
        adapter.close(timeout=3.0)
    assert time.monotonic() - started < 2.0
    assert new_threads(threads_before) == []


def test_the_silence_bound_is_the_documented_server_ping_plus_a_minute(make_adapter: Any) -> None:
    assert make_adapter().private_silence_timeout == 180.0 + 60.0


def test_real_sdk_silent_user_socket_is_declared_down_and_rebuilt(
        wire: WireServer, make_adapter: Any, sink: RecordingSink) -> None:
    adapter = make_adapter(endpoints=wire.endpoints)
    adapter.private_silence_timeout = 0.6  # the real bound is the documented 3-minute server ping + 60 s
    adapter.open(["BTCUSDT"], timeout=5)
    # the server keeps answering our pings but sends nothing: a stalled stream
    wait_until(lambda: sink.links("private")[:2] == ["down", "up"])
    wait_until(lambda: wire.paths("private")[:2] == ["/private/ws?listenKey=LK1",
                                                      "/private/ws?listenKey=LK2"])


def test_real_sdk_frames_keep_the_user_socket_alive(wire: WireServer, make_adapter: Any,
                                                    sink: RecordingSink) -> None:
    adapter = make_adapter(endpoints=wire.endpoints)
    adapter.private_silence_timeout = 0.6
    adapter.open(["BTCUSDT"], timeout=5)
    for _ in range(12):
        wire.send("private", {"e": "ACCOUNT_UPDATE"})
        time.sleep(0.1)
    assert sink.links("private") == [] and len(sink.frames("private")) == 12
