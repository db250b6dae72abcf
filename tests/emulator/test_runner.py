"""Tests of LoopbackServer: lifecycle, HTTP, websockets, bounded stop, tickers, no leaked threads."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from aiohttp import WSMsgType, web
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from gridbot.emulator._runner import LOOPBACK_SERVER_KEY, LoopbackServer
from tests.helpers import wait_until


def emulator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("gridbot-emulator-")]


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello " + request.query.get("who", "?"))


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    server = request.app[LOOPBACK_SERVER_KEY]
    server.track_websocket(ws)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str("echo:" + msg.data)
    finally:
        server.untrack(ws)
    return ws


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_get("/ws", echo)
    return app


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    srv = LoopbackServer(make_app, name="test")
    srv.start(timeout=5.0)
    yield srv
    srv.stop(timeout=5.0)
    assert emulator_threads() == []


def test_start_serves_http_on_an_ephemeral_loopback_port(server: LoopbackServer) -> None:
    assert server.port > 0
    assert server.http_url == f"http://127.0.0.1:{server.port}"
    assert server.ws_url == f"ws://127.0.0.1:{server.port}"
    assert [t.name for t in emulator_threads()] == ["gridbot-emulator-test"]
    assert emulator_threads()[0].daemon is False
    with urllib.request.urlopen(f"{server.http_url}/hello?who=grid", timeout=5) as response:
        assert (response.status, response.read()) == (200, b"hello grid")


def test_websocket_echo(server: LoopbackServer) -> None:
    with connect(f"{server.ws_url}/ws", open_timeout=5) as ws:
        ws.send("ping")
        assert ws.recv(timeout=5) == "echo:ping"
        wait_until(lambda: server.websocket_count == 1)
    wait_until(lambda: server.websocket_count == 0)


def test_stop_closes_a_connected_websocket_with_1001_promptly_and_is_idempotent() -> None:
    srv = LoopbackServer(make_app, name="closing")
    srv.start()
    with connect(f"{srv.ws_url}/ws", open_timeout=5) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "echo:x"
        started = time.monotonic()
        srv.stop(timeout=3.0)
        elapsed = time.monotonic() - started
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=3)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert elapsed < 2.0
    assert emulator_threads() == []
    srv.stop()  # idempotent: nothing left to do, returns at once
    assert emulator_threads() == []
    with pytest.raises(RuntimeError):
        _ = srv.loop


def test_stop_without_start_is_a_no_op() -> None:
    srv = LoopbackServer(make_app, name="never")
    srv.stop()
    assert emulator_threads() == []


def test_failed_start_raises_and_leaves_no_thread(server: LoopbackServer) -> None:
    taken = LoopbackServer(make_app, name="taken", port=server.port)
    with pytest.raises(OSError):
        taken.start(timeout=5.0)
    assert [t.name for t in emulator_threads()] == ["gridbot-emulator-test"]
    taken.stop()

    def broken_factory() -> web.Application:
        raise ValueError("bad app")

    broken = LoopbackServer(broken_factory, name="broken")
    with pytest.raises(ValueError, match="bad app"):
        broken.start()
    assert [t.name for t in emulator_threads()] == ["gridbot-emulator-test"]


def test_run_coroutine_and_call_soon_run_on_the_server_thread(server: LoopbackServer) -> None:
    async def where() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert server.run_coroutine(where()).result(timeout=5) == "gridbot-emulator-test"
    seen: list[tuple[str, int]] = []
    server.call_soon(lambda n: seen.append((threading.current_thread().name, n)), 7)
    wait_until(lambda: seen == [("gridbot-emulator-test", 7)])


def test_every_calls_sync_and_async_callbacks_until_cancelled(server: LoopbackServer) -> None:
    sync_calls: list[float] = []
    async_calls: list[str] = []

    async def async_tick() -> None:
        await asyncio.sleep(0)
        async_calls.append(threading.current_thread().name)

    def failing_tick() -> None:
        sync_calls.append(time.monotonic())
        if len(sync_calls) == 2:
            raise RuntimeError("one bad tick")

    sync_ticker = server.every(0.01, failing_tick)
    async_ticker = server.every(0.01, async_tick)
    wait_until(lambda: len(sync_calls) >= 5 and len(async_calls) >= 3)  # kept going after the failure
    assert set(async_calls) == {"gridbot-emulator-test"}
    sync_ticker.cancel()
    async_ticker.cancel()
    server.run_coroutine(asyncio.sleep(0)).result(timeout=5)  # the cancellations have run
    count = len(sync_calls)
    server.run_coroutine(asyncio.sleep(0.05)).result(timeout=5)  # five intervals pass
    assert len(sync_calls) == count


def test_ticker_interval_change_takes_effect_at_once(server: LoopbackServer) -> None:
    calls: list[int] = []
    ticker = server.every(30.0, lambda: calls.append(1))
    server.run_coroutine(asyncio.sleep(0.02)).result(timeout=5)
    assert calls == []
    ticker.interval = 0.01  # accelerate: no need to wait out the 30 s sleep
    wait_until(lambda: len(calls) >= 3, timeout=2.0)
    with pytest.raises(ValueError):
        ticker.interval = 0


def test_stop_cancels_tickers(server: LoopbackServer) -> None:
    ticker = server.every(0.01, lambda: None)
    wait_until(lambda: ticker.calls >= 1)
    server.stop()
    assert ticker.cancelled
    with pytest.raises(RuntimeError):
        server.every(0.01, lambda: None)


def test_stop_is_bounded_when_a_websocket_peer_never_answers_the_close() -> None:
    srv = LoopbackServer(make_app, name="silent-peer")
    srv.start()
    handshake = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(handshake.encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 101")
        wait_until(lambda: srv.websocket_count == 1)
        started = time.monotonic()
        srv.stop(timeout=1.0)  # the peer never reads nor answers the close frame
        assert time.monotonic() - started < 1.5
    assert emulator_threads() == []
