"""BybitAdapter over pybit 5.17.0.

The seam is websocket-client's ``WebSocketApp`` as imported by the adapter: pybit's
``unified_trading.WebSocket`` class hierarchy, its subscription record and its auth signing stay
real.  ``FakeApp`` plays a Bybit server (auth/subscribe acks, pongs) and lets a test push frames, drop
the connection or go silent.  REST goes through a fake ``HTTP`` (or pybit's real ``HTTP`` with
``requests.Session.send`` mocked).  The last tests run the real pybit + websocket-client against a
small aiohttp server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import itertools
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
import requests
from aiohttp import WSMsgType, web
from pybit.exceptions import FailedRequestError, InvalidRequestError
from websocket import WebSocketConnectionClosedException

from gridbot._credentials import Credentials
from gridbot.adapters._supervisor import Attempt
from gridbot.adapters.bybit import BybitAdapter, BybitTimings, _errors, _rest, _transport
from gridbot.adapters.bybit._adapter import _ws_urls
from gridbot.adapters.bybit._transport import BybitSocket
from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, ConnectError, GridbotError
from gridbot.events import FillUpdate, OrderUpdate, PositionUpdate, WalletUpdate
from gridbot.normalize import Ignored
from gridbot.normalize._decoders import BybitPrivateDecoder, BybitPublicDecoder
from gridbot.normalize.bybit import orders_from_rest
from gridbot.stats import Counters
from tests.helpers import wait_until

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bybit"
API_KEY = "KEY-a1b2c3d4e5"
API_SECRET = "SECRET-z9y8x7w6v5u4"
ENDPOINTS = Endpoints(rest="http://rest.test", ws="ws://ws.test")
FAST = BybitTimings(
    ping_interval=0.15,
    pong_timeout=0.15,
    connect_timeout=2.0,
    ack_timeout=1.0,
    backoff_initial=0.02,
    backoff_max=0.08,
    join_grace=1.0,
)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def gridbot_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("gridbot-bybit")]


# ---------------------------------------------------------------------------------------------- fakes


class RecordingSink:
    def __init__(self, *, raise_on_frame: bool = False) -> None:
        self.items: list[tuple[Any, ...]] = []
        self.raise_on_frame = raise_on_frame
        self._lock = threading.Lock()

    def frame(self, channel: str, payload: Any) -> None:
        with self._lock:
            self.items.append(("frame", channel, payload))
        if self.raise_on_frame:
            raise RuntimeError("sink exploded")

    def link(self, channel: str, state: str, detail: str) -> None:
        with self._lock:
            self.items.append(("link", channel, state, detail))

    def symbol_rejected(self, symbol: str, detail: str) -> None:
        with self._lock:
            self.items.append(("rejected", symbol, detail))

    def rejected(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(item[1], item[2]) for item in self.items if item[0] == "rejected"]

    def frames(self, channel: str) -> list[Any]:
        with self._lock:
            return [item[2] for item in self.items if item[0] == "frame" and item[1] == channel]

    def links(self, channel: str | None = None) -> list[tuple[str, str]]:
        with self._lock:
            return [
                (item[1], item[2])
                for item in self.items
                if item[0] == "link" and (channel is None or item[1] == channel)
            ]


_CLOSE = object()
_DROP = object()


class FakeRaw:
    """The raw socket: a real fd (for select) whose shutdown ends the fake read loop, like EOF would."""

    def __init__(self, app: FakeApp) -> None:
        self.app = app
        self._pair = socket.socketpair()
        self.shutdowns = 0

    def fileno(self) -> int:
        return self._pair[0].fileno()

    def shutdown(self, how: int) -> None:
        self.shutdowns += 1
        self.app.inbox.put(_CLOSE)

    def dispose(self) -> None:
        for end in self._pair:
            end.close()


class FakeCore:
    """websocket-client's WebSocket as the adapter sees it: connected, lock, send_close, sock."""

    def __init__(self, app: FakeApp) -> None:
        self.app = app
        self.connected = True
        self.lock = threading.Lock()
        self.sock = FakeRaw(app)
        self.close_frames = 0

    def shutdown(self) -> None:
        """websocket-client's ``WebSocket.shutdown``: closes the fd at once."""
        self.fd_closed = True

    def send_close(self) -> None:
        with self.lock:
            self.connected = False
            self.close_frames += 1


class FakeExchange:
    """Server behaviour shared by every FakeApp of a test."""

    def __init__(self) -> None:
        self.apps: list[FakeApp] = []
        self.lock = threading.Lock()
        self.refuse: dict[str, int] = {"private": 0, "public": 0}  # connections to refuse per channel
        self.refuse_forever = False
        self.auth_ok = True
        self.ack = True
        self.answer_pings = True
        self.reject_topics: set[str] = set()
        self.ignore_close = False

    def apps_of(self, channel: str) -> list[FakeApp]:
        with self.lock:
            return [app for app in self.apps if app.channel == channel]

    def app(self, channel: str) -> FakeApp:
        return self.apps_of(channel)[-1]

    def respond(self, app: FakeApp, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "auth":
            app.push(
                {
                    "success": self.auth_ok,
                    "ret_msg": "" if self.auth_ok else "Invalid apikey",
                    "op": "auth",
                    "conn_id": "c1",
                }
            )
        elif op == "subscribe" and self.ack:
            bad = [t for t in msg["args"] if t in self.reject_topics]
            answer: dict[str, Any] = {
                "success": not bad,
                "ret_msg": f"error:handler not found,topic:{bad}" if bad else "",
                "conn_id": "c2",
                "op": "subscribe",
            }
            if app.channel == "public":  # the private answer echoes no req_id (docs)
                answer["req_id"] = msg["req_id"]
            app.push(answer)
        elif op == "unsubscribe":
            app.push({"success": True, "ret_msg": "", "conn_id": "c2", "req_id": msg["req_id"], "op": op})
        elif op == "ping" and self.answer_pings:
            name = "pong.private.json" if app.channel == "private" else "pong.public_linear.json"
            app.push(fixture(name))


class FakeApp:
    exchange: FakeExchange

    def __init__(self, url: str, **callbacks: Any) -> None:
        self.url = url
        self.channel = "private" if url.endswith("/v5/private") else "public"
        self.callbacks = callbacks
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.sock: FakeCore | None = None
        self.keep_running = True
        self.sent: list[dict[str, Any]] = []
        self.run_kwargs: dict[str, Any] = {}
        self.release = threading.Event()
        self.core: FakeCore | None = None
        self.created_at = time.monotonic()
        with self.exchange.lock:
            self.exchange.apps.append(self)

    def _cb(self, name: str, *args: Any) -> None:
        callback = self.callbacks.get(name)
        if callback is not None:
            callback(self, *args)

    def run_forever(self, **kwargs: Any) -> None:
        self.run_kwargs = kwargs
        exchange = self.exchange
        with exchange.lock:
            refuse = exchange.refuse_forever or exchange.refuse[self.channel] > 0
            if exchange.refuse[self.channel] > 0:
                exchange.refuse[self.channel] -= 1
        if refuse:
            self._cb("on_error", ConnectionRefusedError(111, "Connection refused"))
            self._cb("on_close", None, None)
            return
        self.sock = FakeCore(self)
        self.core = self.sock
        self._cb("on_open")
        dropped = False
        while True:
            item = self.inbox.get()
            if item is _CLOSE:
                if exchange.ignore_close:
                    self.release.wait(10)
                break
            if item is _DROP:
                dropped = True
                break
            self._cb("on_message", item)
        self.sock.connected = False
        self.sock.sock.dispose()
        self.sock = None
        if dropped:
            self._cb("on_error", WebSocketConnectionClosedException("Connection to remote host was lost."))
        self._cb("on_close", None, None)

    def send(self, text: str) -> None:
        if self.sock is None or not self.sock.connected:
            raise WebSocketConnectionClosedException("Connection is already closed.")
        msg = json.loads(text)
        self.sent.append(msg)
        self.exchange.respond(self, msg)

    def close(self, **kwargs: Any) -> None:
        self.keep_running = False
        self.inbox.put(_CLOSE)

    def push(self, payload: Any) -> None:
        self.inbox.put(payload if isinstance(payload, (str, bytes)) else json.dumps(payload))

    def drop(self) -> None:
        self.inbox.put(_DROP)

    def sent_ops(self, op: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("op") == op]


class FakeHTTP:
    """pybit HTTP stand-in: records calls, answers from per-method scripts."""

    instances: list[FakeHTTP] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.endpoint = "https://api.bybit.com"
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.scripts: dict[str, list[Any]] = {}
        FakeHTTP.instances.append(self)

    def _answer(self, name: str, params: dict[str, Any]) -> Any:
        self.calls.append((name, params))
        script = self.scripts[name]
        answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer(params)
        return copy.deepcopy(answer)

    def get_positions(self, **params: Any) -> Any:
        return self._answer("get_positions", params)

    def get_wallet_balance(self, **params: Any) -> Any:
        return self._answer("get_wallet_balance", params)

    def get_open_orders(self, **params: Any) -> Any:
        return self._answer("get_open_orders", params)

    def get_order_history(self, **params: Any) -> Any:
        return self._answer("get_order_history", params)

    def get_executions(self, **params: Any) -> Any:
        return self._answer("get_executions", params)


@pytest.fixture
def exchange(mocker: Any) -> Iterator[FakeExchange]:
    ex = FakeExchange()
    app_class = type("BoundFakeApp", (FakeApp,), {"exchange": ex})
    mocker.patch.object(_transport, "WebSocketApp", app_class)
    yield ex
    for app in ex.apps:
        app.release.set()


@pytest.fixture
def fake_http(mocker: Any) -> None:
    FakeHTTP.instances.clear()
    mocker.patch.object(_rest, "HTTP", FakeHTTP)


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def current_socket(adapter: BybitAdapter, channel: str) -> BybitSocket | None:
    """The socket the supervisor watches now for ``channel``."""
    supervisor = adapter._supervisor
    attempt = supervisor.channel(channel).current if supervisor is not None else None
    handle = attempt.handle if attempt is not None else None
    return handle if isinstance(handle, BybitSocket) else None


def make_adapter(sink: Any, counters: Counters | None = None, **overrides: Any) -> BybitAdapter:
    params: dict[str, Any] = {
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "testnet": False,
        "demo": False,
        "endpoints": ENDPOINTS,
        "sink": sink,
        "counters": counters or Counters(),
        "timings": FAST,
    }
    params.update(overrides)
    return BybitAdapter(**params)


@pytest.fixture
def opened(exchange: FakeExchange, fake_http: None, sink: RecordingSink) -> Iterator[BybitAdapter]:
    adapter = make_adapter(sink)
    adapter.open(["BTCUSDT", "ETHUSDT"], timeout=3.0)
    yield adapter
    adapter.close(timeout=3.0)
    assert gridbot_threads() == []


def ticker_frame(symbol: str, kind: str, **data: str) -> dict[str, Any]:
    return {
        "topic": f"tickers.{symbol}",
        "type": kind,
        "data": {"symbol": symbol, **data},
        "cs": 1,
        "ts": 1700,
    }


# ---------------------------------------------------------------------------------------------- open


def test_open_connects_authenticates_and_subscribes(opened: BybitAdapter, exchange: FakeExchange) -> None:
    private, public = exchange.app("private"), exchange.app("public")
    assert private.url == "ws://ws.test/v5/private"
    assert public.url == "ws://ws.test/v5/public/linear"
    assert private.run_kwargs["ping_interval"] == 0  # the adapter's supervisor pings

    auth = private.sent_ops("auth")[0]
    key, expires, signature = auth["args"]
    assert key == API_KEY
    expected = hmac.new(API_SECRET.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
    assert signature == expected
    assert private.sent_ops("subscribe")[0]["args"] == ["position", "order", "execution", "wallet"]
    assert [m["args"] for m in public.sent_ops("subscribe")] == [["tickers.BTCUSDT"], ["tickers.ETHUSDT"]]
    assert public.sent_ops("auth") == []
    assert opened.connected is True


def test_open_without_symbols_needs_only_the_private_acks(
    exchange: FakeExchange, fake_http: None, sink: RecordingSink
) -> None:
    adapter = make_adapter(sink)
    adapter.open([], timeout=3.0)
    try:
        assert adapter.connected
        assert exchange.app("public").sent_ops("subscribe") == []
    finally:
        adapter.close(timeout=3.0)
    assert gridbot_threads() == []


def test_frames_are_forwarded_in_order_on_their_channel(
    opened: BybitAdapter, exchange: FakeExchange, sink: RecordingSink
) -> None:
    private, public = exchange.app("private"), exchange.app("public")
    order = fixture("private.order.linear.filled.observed.json")
    execution = fixture("private.execution.stream.json")
    snapshot = fixture("public.tickers.linear.snapshot.observed.json")
    delta = fixture("public.tickers.linear.delta.observed.json")
    private.push(order)
    public.push(snapshot)
    private.push(execution)
    public.push(delta)
    wait_until(lambda: len(sink.frames("public")) >= 4 and len(sink.frames("private")) >= 4)

    data = [f for f in sink.frames("private") if "topic" in f]
    assert data == [order, execution]
    assert [f for f in sink.frames("public") if "topic" in f] == [snapshot, delta]  # raw, not pybit-merged
    acks = [f for f in sink.frames("private") if "topic" not in f]
    assert [a["op"] for a in acks] == ["auth", "subscribe"]


def test_pongs_are_dropped_and_control_frames_decode_to_ignored(
    opened: BybitAdapter, exchange: FakeExchange, sink: RecordingSink
) -> None:
    wait_until(lambda: len(exchange.app("private").sent_ops("ping")) >= 2)
    assert all(f.get("op") != "pong" and f.get("ret_msg") != "pong" for f in sink.frames("private"))
    assert all(f.get("ret_msg") != "pong" for f in sink.frames("public"))
    for frame in sink.frames("private") + sink.frames("public"):
        assert isinstance(BybitPrivateDecoder().decode(frame), Ignored)
    assert isinstance(BybitPublicDecoder().decode(fixture("pong.public_linear.json")), Ignored)


def test_a_raising_sink_never_reaches_the_socket_thread(
    exchange: FakeExchange, fake_http: None, caplog: pytest.LogCaptureFixture
) -> None:
    sink = RecordingSink(raise_on_frame=True)
    adapter = make_adapter(sink)
    adapter.open(["BTCUSDT"], timeout=3.0)
    try:
        public = exchange.app("public")
        with caplog.at_level(logging.ERROR, logger="gridbot.adapters"):
            for i in range(3):
                public.push(ticker_frame("BTCUSDT", "delta", markPrice=f"{i}"))
            wait_until(lambda: len([f for f in sink.frames("public") if "topic" in f]) == 3)
        assert "bybit public: the frame handler raised" in caplog.text  # the supervisor contains it
        assert adapter.connected  # the socket survived every raise
        assert sink.links() == []
    finally:
        adapter.close(timeout=3.0)
    assert gridbot_threads() == []


# ---------------------------------------------------------------------------------------------- failures


def test_rejected_key_raises_authentication_error_and_leaves_no_thread(
    exchange: FakeExchange, fake_http: None, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    exchange.auth_ok = False
    adapter = make_adapter(sink)
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationError) as info:
        adapter.open(["BTCUSDT"], timeout=3.0)
    assert "Invalid apikey" in str(info.value)
    assert info.value.__cause__ is not None
    assert gridbot_threads() == []
    for text in (str(info.value), repr(adapter), caplog.text):
        assert API_KEY not in text and API_SECRET not in text
    assert adapter.connected is False


def test_unreachable_host_raises_connect_error_and_leaves_no_thread(
    exchange: FakeExchange, fake_http: None, sink: RecordingSink
) -> None:
    exchange.refuse_forever = True
    adapter = make_adapter(sink)
    started = time.monotonic()
    with pytest.raises(ConnectError) as info:
        adapter.open(["BTCUSDT"], timeout=3.0)
    assert time.monotonic() - started < 2.0
    assert "ConnectionRefusedError" in str(info.value)
    assert gridbot_threads() == []
    # one attempt per channel (both open at once), no pybit retry loop
    assert [len(exchange.apps_of(channel)) <= 1 for channel in ("private", "public")] == [True, True]


def test_missing_acks_time_out_with_connect_error(
    exchange: FakeExchange, fake_http: None, sink: RecordingSink
) -> None:
    exchange.ack = False
    adapter = make_adapter(sink)
    started = time.monotonic()
    with pytest.raises(ConnectError, match="not live"):
        adapter.open(["BTCUSDT"], timeout=0.4)
    assert 0.35 < time.monotonic() - started < 2.0
    assert gridbot_threads() == []


def test_a_refused_ticker_at_open_drops_that_symbol_only(
    exchange: FakeExchange, fake_http: None, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    exchange.reject_topics = {"tickers.NOPEUSDT"}
    adapter = make_adapter(sink)
    with caplog.at_level(logging.ERROR, logger="gridbot.adapters"):
        adapter.open(["BTCUSDT", "NOPEUSDT"], timeout=3.0)  # one unknown symbol fails no start()
    try:
        assert adapter.connected
        assert "refused the public subscription to tickers.NOPEUSDT" in caplog.text
        [(symbol, detail)] = sink.rejected()  # the stream is told, and drops that subscription
        assert symbol == "NOPEUSDT" and "tickers.NOPEUSDT" in detail
        assert adapter._supervisor is not None
        assert adapter._supervisor.topics("public") == {"tickers.BTCUSDT"}
    finally:
        adapter.close(timeout=3.0)
    assert gridbot_threads() == []


def test_open_twice_is_an_error(opened: BybitAdapter) -> None:
    with pytest.raises(GridbotError):
        opened.open(["BTCUSDT"], timeout=1.0)


# ---------------------------------------------------------------------------------------------- reconnects


def test_dropped_connection_is_reported_down_then_up_and_rebuilt_with_all_topics(
    opened: BybitAdapter, exchange: FakeExchange, sink: RecordingSink
) -> None:
    opened.add_symbol("SOLUSDT")
    wait_until(
        lambda: ["tickers.SOLUSDT"] in [m["args"] for m in exchange.app("public").sent_ops("subscribe")]
    )
    exchange.app("public").drop()
    wait_until(lambda: sink.links("public") == [("public", "down"), ("public", "up")])
    assert len(exchange.apps_of("public")) == 2
    new = exchange.app("public")
    assert sorted(m["args"][0] for m in new.sent_ops("subscribe")) == [
        "tickers.BTCUSDT",
        "tickers.ETHUSDT",
        "tickers.SOLUSDT",
    ]
    assert sink.links("private") == []
    wait_until(lambda: opened.connected)


def test_private_reconnect_authenticates_again(
    opened: BybitAdapter, exchange: FakeExchange, sink: RecordingSink
) -> None:
    exchange.app("private").drop()
    wait_until(lambda: sink.links("private") == [("private", "down"), ("private", "up")])
    new = exchange.app("private")
    assert len(new.sent_ops("auth")) == 1
    assert new.sent_ops("subscribe")[0]["args"] == ["position", "order", "execution", "wallet"]


def test_frames_of_the_new_connection_are_forwarded(
    opened: BybitAdapter, exchange: FakeExchange, sink: RecordingSink
) -> None:
    exchange.app("public").drop()
    wait_until(lambda: ("public", "up") in sink.links("public"))
    exchange.app("public").push(ticker_frame("BTCUSDT", "snapshot", markPrice="5"))
    wait_until(lambda: any(f.get("topic") == "tickers.BTCUSDT" for f in sink.frames("public")))


def test_silent_socket_with_unanswered_ping_is_rebuilt(
    opened: BybitAdapter, exchange: FakeExchange, sink: RecordingSink
) -> None:
    exchange.answer_pings = False
    old = exchange.app("public")
    wait_until(lambda: ("public", "down") in sink.links("public"), timeout=3.0)
    assert old.sent_ops("ping"), "a text ping went out before the socket was declared dead"
    down = next(d for (kind, ch, st, d) in [i for i in sink.items if i[0] == "link"] if st == "down")
    assert "no answer to ping" in down
    exchange.answer_pings = True
    wait_until(lambda: ("public", "up") in sink.links("public"))


def test_answered_pings_keep_a_quiet_socket_alive(
    opened: BybitAdapter, exchange: FakeExchange, sink: RecordingSink
) -> None:
    wait_until(lambda: len(exchange.app("private").sent_ops("ping")) >= 4)
    assert sink.links() == []
    assert len(exchange.apps) == 2


def test_rebuild_retries_with_backoff_until_the_host_answers(
    opened: BybitAdapter, exchange: FakeExchange, sink: RecordingSink
) -> None:
    exchange.refuse["public"] = 4
    exchange.app("public").drop()
    wait_until(lambda: ("public", "up") in sink.links("public"))
    assert sink.links("public") == [("public", "down"), ("public", "up")]  # one down/up, not one per attempt
    assert len(exchange.apps_of("public")) == 1 + 4 + 1


def test_rebuild_attempts_are_spaced_by_exponential_backoff(
    opened: BybitAdapter, exchange: FakeExchange, sink: RecordingSink, mocker: Any
) -> None:
    mocker.patch.object(opened.rng, "uniform", return_value=1.0)  # no jitter: 0.02, 0.04, 0.08 (cap), ...
    exchange.refuse["public"] = 4
    exchange.app("public").drop()
    wait_until(lambda: ("public", "up") in sink.links("public"))
    attempts = [app.created_at for app in exchange.apps_of("public")[1:]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert len(gaps) == 4
    for gap, expected in zip(gaps, [0.04, 0.08, 0.08, 0.08], strict=True):
        assert expected - 0.005 <= gap < expected + 0.5


def test_rejected_key_on_reconnect_reports_failed_once_and_recovers_when_restored(
    opened: BybitAdapter, exchange: FakeExchange, sink: RecordingSink
) -> None:
    exchange.auth_ok = False
    exchange.app("private").drop()
    wait_until(lambda: ("private", "failed") in sink.links("private"))
    assert opened.connected is False
    wait_until(lambda: len(exchange.apps_of("private")) >= 4)  # still retrying, with backoff
    assert sink.links("private").count(("private", "failed")) == 1  # reported once
    exchange.auth_ok = True  # keys restored
    wait_until(lambda: sink.links("private")[-1] == ("private", "up"))
    wait_until(lambda: opened.connected)


def test_non_json_frame_is_counted_and_skipped_without_a_reconnect(
    exchange: FakeExchange, fake_http: None, sink: RecordingSink
) -> None:
    counters = Counters()
    adapter = make_adapter(sink, counters)
    adapter.open(["BTCUSDT"], timeout=3.0)
    try:
        exchange.app("private").push("this is not json")
        exchange.app("private").push({"topic": "wallet", "data": []})
        wait_until(lambda: {"topic": "wallet", "data": []} in sink.frames("private"))
        assert counters.snapshot().bad_messages == 1
        assert sink.links("private") == [] and len(exchange.apps_of("private")) == 1
    finally:
        adapter.close(timeout=3.0)


def test_frames_skip_websocket_client_utf8_validation_and_bad_utf8_is_counted(
    exchange: FakeExchange, fake_http: None, sink: RecordingSink
) -> None:
    counters = Counters()
    adapter = make_adapter(sink, counters)
    adapter.open(["BTCUSDT"], timeout=3.0)
    try:
        app = exchange.app("private")
        assert app.run_kwargs["skip_utf8_validation"] is True
        app.push(b'{"topic": "wallet", "data": ["\xff"]}')  # what websocket-client hands over: bytes
        app.push(json.dumps({"topic": "wallet", "data": ["ok"]}).encode())
        wait_until(lambda: {"topic": "wallet", "data": ["ok"]} in sink.frames("private"))
        assert counters.snapshot().bad_messages == 1
        assert sink.links("private") == [] and len(exchange.apps_of("private")) == 1
    finally:
        adapter.close(timeout=3.0)


# ---------------------------------------------------------------------------------------------- symbols


def test_add_and_remove_symbol_on_the_live_public_socket(
    opened: BybitAdapter, exchange: FakeExchange
) -> None:
    public = exchange.app("public")
    sock = current_socket(opened, "public")
    assert sock is not None
    opened.add_symbol("SOLUSDT")
    wait_until(lambda: "tickers.SOLUSDT" in sock.topics())
    sub = next(m for m in public.sent_ops("subscribe") if m["args"] == ["tickers.SOLUSDT"])
    assert sub["req_id"] in sock.subscriptions

    opened.remove_symbol("ETHUSDT")
    wait_until(lambda: any(m["args"] == ["tickers.ETHUSDT"] for m in public.sent_ops("unsubscribe")))
    assert set(sock.get_subscription_topics()) == {"tickers.BTCUSDT", "tickers.SOLUSDT"}  # pybit's record

    opened.add_symbol("ETHUSDT")  # again, after removal
    wait_until(lambda: "tickers.ETHUSDT" in sock.topics())
    assert len(exchange.apps_of("public")) == 1
    assert opened.connected


def test_add_symbol_on_a_dead_socket_is_picked_up_by_the_rebuild(
    opened: BybitAdapter, exchange: FakeExchange, sink: RecordingSink
) -> None:
    exchange.refuse["public"] = 2
    exchange.app("public").drop()
    wait_until(lambda: ("public", "down") in sink.links("public"))
    opened.add_symbol("XRPUSDT")  # returns at once although nothing is connected
    wait_until(lambda: ("public", "up") in sink.links("public"))
    topics = {m["args"][0] for m in exchange.app("public").sent_ops("subscribe")}
    assert "tickers.XRPUSDT" in topics


def test_refused_symbol_while_running_is_reported_and_not_retried(
    opened: BybitAdapter, exchange: FakeExchange, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    exchange.reject_topics = {"tickers.NOPEUSDT"}
    with caplog.at_level(logging.ERROR, logger="gridbot.adapters"):
        opened.add_symbol("NOPEUSDT")
        wait_until(lambda: "refused the public subscription" in caplog.text)
    assert [symbol for symbol, _detail in sink.rejected()] == ["NOPEUSDT"]
    wait_until(lambda: len(exchange.app("private").sent_ops("ping")) >= 2)  # several supervisor rounds
    attempts = [m for m in exchange.app("public").sent_ops("subscribe") if m["args"] == ["tickers.NOPEUSDT"]]
    assert len(attempts) == 1
    assert opened.connected


# ---------------------------------------------------------------------------------------------- close


def test_close_is_idempotent_and_joins_everything(
    exchange: FakeExchange, fake_http: None, sink: RecordingSink
) -> None:
    adapter = make_adapter(sink)
    adapter.open(["BTCUSDT"], timeout=3.0)
    assert len(gridbot_threads()) == 4  # two socket threads, two supervisors
    started = time.monotonic()
    adapter.close(timeout=3.0)
    assert time.monotonic() - started < 1.0
    assert gridbot_threads() == []
    adapter.close(timeout=3.0)
    assert adapter.connected is False
    with pytest.raises(GridbotError):
        adapter.open(["BTCUSDT"], timeout=1.0)


def test_close_is_bounded_when_a_socket_thread_hangs(
    exchange: FakeExchange, fake_http: None, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = make_adapter(sink)
    adapter.open(["BTCUSDT"], timeout=3.0)
    exchange.ignore_close = True
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="gridbot.adapters.bybit"):
        adapter.close(timeout=0.3)
    assert time.monotonic() - started < 0.8
    assert "still running" in caplog.text
    for app in exchange.apps:
        app.release.set()
    adapter.close(timeout=3.0)  # a second call joins what the first could not
    assert gridbot_threads() == []


def test_close_skips_the_close_frame_when_a_send_holds_the_lock(
    exchange: FakeExchange, fake_http: None, sink: RecordingSink
) -> None:
    adapter = make_adapter(sink)
    adapter.open(["BTCUSDT"], timeout=3.0)
    core = exchange.app("public").core
    assert core is not None
    with core.lock:  # a send stuck on a peer that stopped reading
        started = time.monotonic()
        adapter.close(timeout=3.0)
        assert time.monotonic() - started < 1.0
    assert core.close_frames == 0 and core.sock.shutdowns >= 1
    assert exchange.app("private").core.close_frames == 1  # type: ignore[union-attr]
    assert gridbot_threads() == []


def test_close_during_a_rebuild_stops_the_backoff(
    exchange: FakeExchange, fake_http: None, sink: RecordingSink
) -> None:
    slow = BybitTimings(ping_interval=0.15, pong_timeout=0.15, backoff_initial=5.0, backoff_max=30.0)
    adapter = make_adapter(sink, timings=slow)
    adapter.open(["BTCUSDT"], timeout=3.0)
    exchange.app("public").drop()
    wait_until(lambda: ("public", "down") in sink.links("public"))
    started = time.monotonic()
    adapter.close(timeout=3.0)
    assert time.monotonic() - started < 1.0
    assert gridbot_threads() == []


# ---------------------------------------------------------------------------------------------- decode
# (the decoders themselves: tests/normalize/test_decoders.py)


def execution_frame(order_id: str) -> dict[str, Any]:
    frame: dict[str, Any] = fixture("private.execution.stream.json")
    frame["data"][0]["orderId"] = order_id
    return frame


def test_a_public_reconnect_is_reported_down_then_up_for_the_decoder_reset(
    opened: BybitAdapter, exchange: FakeExchange, sink: RecordingSink
) -> None:
    """The stream resets the public decoder (ticker merge state) on ``down``: the adapter must say it."""
    exchange.app("public").drop()
    wait_until(lambda: ("public", "up") in sink.links("public"))
    states = [state for _channel, state in sink.links("public")]
    assert states.index("down") < states.index("up")


# ---------------------------------------------------------------------------------------------- REST


def linear_positions(symbol: str) -> dict[str, Any]:
    """The docs example is category=inverse; made linear here (synthetic)."""
    response: dict[str, Any] = fixture("rest.position_list.response.json")
    response["result"]["category"] = "linear"
    response["result"]["list"][0]["symbol"] = symbol
    return response


def orders_page(order_ids: list[str], cursor: str, symbol: str = "ETHUSDT") -> dict[str, Any]:
    response: dict[str, Any] = fixture("rest.order_realtime.response.json")
    template = response["result"]["list"][0]
    response["result"]["list"] = [{**template, "orderId": oid, "symbol": symbol} for oid in order_ids]
    response["result"]["nextPageCursor"] = cursor
    return response


def test_fetch_snapshot_requests_paginates_and_counts(fake_http: None, sink: RecordingSink) -> None:
    counters = Counters()
    adapter = make_adapter(sink, counters=counters)
    http = FakeHTTP.instances[-1]
    assert http.endpoint == "http://rest.test"
    http.scripts = {
        "get_positions": [lambda params: linear_positions(params["symbol"])],
        "get_wallet_balance": [fixture("rest.wallet_balance.response.json")],
        "get_open_orders": [
            orders_page(["a", "b"], "page%3D2"),
            orders_page(["c"], "page%3D3", symbol="XRPUSDT"),
            orders_page(["d"], ""),
        ],
    }
    events = adapter.fetch_snapshot(["BTCUSDT", "ETHUSDT"], include_wallet=True)

    assert http.calls == [
        ("get_positions", {"category": "linear", "symbol": "BTCUSDT"}),
        ("get_positions", {"category": "linear", "symbol": "ETHUSDT"}),
        ("get_wallet_balance", {"accountType": "UNIFIED"}),
        ("get_open_orders", {"category": "linear", "settleCoin": "USDT", "limit": 50}),
        ("get_open_orders", {"category": "linear", "settleCoin": "USDT", "limit": 50, "cursor": "page%3D2"}),
        ("get_open_orders", {"category": "linear", "settleCoin": "USDT", "limit": 50, "cursor": "page%3D3"}),
    ]
    assert counters.snapshot().rest_calls == 6
    assert [e.symbol for e in events if isinstance(e, PositionUpdate)] == ["BTCUSDT", "ETHUSDT"]
    assert [e.order_id for e in events if isinstance(e, OrderUpdate)] == ["a", "b", "d"]  # XRPUSDT left out
    assert any(isinstance(e, WalletUpdate) for e in events)
    assert all(e.is_snapshot for e in events)
    # the seeded orders' positionIdx is used for later fills (the stream seeds its private decoder)
    decoder = BybitPrivateDecoder()
    decoder.seed(events)
    [fill] = decoder.decode(execution_frame("a"))  # type: ignore[misc]
    assert fill.position_idx == 1  # type: ignore[union-attr]


def test_fetch_snapshot_without_wallet_or_symbols(fake_http: None, sink: RecordingSink) -> None:
    counters = Counters()
    adapter = make_adapter(sink, counters=counters)
    http = FakeHTTP.instances[-1]
    http.scripts = {"get_wallet_balance": [fixture("rest.wallet_balance.response.json")]}
    assert adapter.fetch_snapshot([], include_wallet=False) == []
    assert http.calls == [] and counters.snapshot().rest_calls == 0


def test_pagination_that_repeats_a_cursor_is_an_error(fake_http: None, sink: RecordingSink) -> None:
    adapter = make_adapter(sink)
    http = FakeHTTP.instances[-1]
    http.scripts = {
        "get_positions": [lambda params: linear_positions(params["symbol"])],
        "get_open_orders": [orders_page(["a"], "same")],
    }
    with pytest.raises(GridbotError, match="repeats cursor"):
        adapter.fetch_snapshot(["ETHUSDT"], include_wallet=False)


def invalid_request(code: int, message: str) -> InvalidRequestError:
    return InvalidRequestError(
        request="GET /v5/position/list: category=linear",
        message=message,
        status_code=code,
        time="12:00:00",
        resp_headers={},
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (invalid_request(10003, "API key is invalid."), AuthenticationError),
        (
            invalid_request(10004, "Error sign, please check your signature generation algorithm."),
            AuthenticationError,
        ),
        (
            invalid_request(10005, "Permission denied, please check your API key permissions."),
            AuthenticationError,
        ),
        (invalid_request(33004, "Your api key has expired."), AuthenticationError),
        (invalid_request(10001, "params error"), GridbotError),
        (
            FailedRequestError(
                request="GET x",
                message="HTTP status code is not 200.",
                status_code=502,
                time="12:00:00",
                resp_headers=None,
            ),
            ConnectError,
        ),
        (
            FailedRequestError(
                request="GET x",
                message="HTTP status code is not 200.",
                status_code=401,
                time="12:00:00",
                resp_headers=None,
            ),
            AuthenticationError,
        ),
        (requests.exceptions.ConnectionError("Max retries exceeded"), ConnectError),
        (requests.exceptions.ReadTimeout("read timed out"), ConnectError),
        (ValueError("something odd"), GridbotError),
    ],
)
def test_rest_errors_are_translated(
    fake_http: None, sink: RecordingSink, error: Exception, expected: type[GridbotError]
) -> None:
    counters = Counters()
    adapter = make_adapter(sink, counters=counters)
    FakeHTTP.instances[-1].scripts = {"get_positions": [error]}
    with pytest.raises(GridbotError) as info:
        adapter.fetch_snapshot(["BTCUSDT"], include_wallet=False)
    assert type(info.value) is expected
    assert info.value.__cause__ is error
    assert counters.snapshot().rest_calls == 1
    assert API_KEY not in str(info.value) and API_SECRET not in str(info.value)


def test_non_zero_ret_code_in_a_response_is_an_error(fake_http: None, sink: RecordingSink) -> None:
    adapter = make_adapter(sink)
    FakeHTTP.instances[-1].scripts = {"get_positions": [{"retCode": 10003, "retMsg": "API key is invalid."}]}
    with pytest.raises(AuthenticationError):
        adapter.fetch_snapshot(["BTCUSDT"], include_wallet=False)
    FakeHTTP.instances[-1].scripts = {"get_positions": [{"retCode": 110001, "retMsg": "order not exists"}]}
    with pytest.raises(GridbotError, match="110001"):
        adapter.fetch_snapshot(["BTCUSDT"], include_wallet=False)


def test_fetch_orders_asks_realtime_first_then_history(fake_http: None, sink: RecordingSink) -> None:
    counters = Counters()
    adapter = make_adapter(sink, counters=counters)
    http = FakeHTTP.instances[-1]
    filled = orders_page(["gone-1"], "")
    filled["result"]["list"][0].update(orderStatus="Filled", cumExecQty="0.10", leavesQty="0", positionIdx=2)
    cancelled = orders_page(["gone-2"], "")
    cancelled["result"]["list"][0].update(orderStatus="Cancelled")
    http.scripts = {
        "get_open_orders": [filled, orders_page([], ""), orders_page([], "")],
        "get_order_history": [cancelled, orders_page([], "")],
    }
    events = adapter.fetch_orders(orders_from_page(["gone-1", "gone-2", "unknown-3"]))

    assert [(e.order_id, e.status) for e in events] == [  # type: ignore[union-attr]
        ("gone-1", "Filled"),
        ("gone-2", "Cancelled"),
    ]
    by_id = {"category": "linear", "symbol": "ETHUSDT"}
    assert http.calls == [
        ("get_open_orders", {**by_id, "orderId": "gone-1"}),
        ("get_open_orders", {**by_id, "orderId": "gone-2"}),
        ("get_order_history", {**by_id, "orderId": "gone-2"}),
        ("get_open_orders", {**by_id, "orderId": "unknown-3"}),
        ("get_order_history", {**by_id, "orderId": "unknown-3"}),
    ]
    assert counters.snapshot().rest_calls == 5
    decoder = BybitPrivateDecoder()
    decoder.seed(events)
    [fill] = decoder.decode(execution_frame("gone-1"))  # type: ignore[misc]
    assert fill.position_idx == 2  # type: ignore[union-attr]


def test_fetch_orders_survives_a_missing_history_but_not_a_rejected_key(
    fake_http: None, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = make_adapter(sink)
    http = FakeHTTP.instances[-1]
    not_found = FailedRequestError(
        request="GET /v5/order/history",
        message="HTTP status code is not 200.",
        status_code=404,
        time="12:00:00",
        resp_headers=None,
    )
    http.scripts = {"get_open_orders": [orders_page([], "")], "get_order_history": [not_found]}
    with caplog.at_level(logging.WARNING, logger="gridbot.adapters.bybit"):
        assert adapter.fetch_orders(orders_from_page(["gone-1"])) == []
    assert "order history of ETHUSDT gone-1 unavailable" in caplog.text

    http.scripts = {
        "get_open_orders": [orders_page([], "")],
        "get_order_history": [invalid_request(10003, "x")],
    }
    with pytest.raises(AuthenticationError):
        adapter.fetch_orders(orders_from_page(["gone-1"]))


def orders_from_page(order_ids: list[str]) -> list[OrderUpdate]:
    from gridbot.normalize.bybit import orders_from_rest

    return orders_from_rest(orders_page(order_ids, ""))


def test_real_pybit_http_uses_the_per_instance_endpoint(sink: RecordingSink, mocker: Any) -> None:
    adapter = make_adapter(sink)
    other = make_adapter(sink, endpoints=Endpoints(rest="http://other.test", ws="ws://other.test"))
    response = mocker.Mock(spec=requests.Response, status_code=200, headers={})
    response.json.return_value = linear_positions("BTCUSDT")
    send = mocker.patch.object(adapter._rest.session.client, "send", return_value=response)
    adapter._rest.call("position/list", adapter._rest.session.get_positions,
                       category="linear", symbol="BTCUSDT")
    request = send.call_args.args[0]
    assert request.url == "http://rest.test/v5/position/list?category=linear&symbol=BTCUSDT"
    assert request.headers["X-BAPI-API-KEY"] == API_KEY
    assert other._rest.session.endpoint == "http://other.test"
    assert make_adapter(sink, endpoints=None, demo=True)._rest.session.endpoint == "https://api-demo.bybit.com"


# ------------------------------------------------------------------------------------------- hosts, secrets


def test_default_hosts() -> None:
    assert _ws_urls(testnet=False, demo=False, endpoints=None) == {
        "private": "wss://stream.bybit.com/v5/private",
        "public": "wss://stream.bybit.com/v5/public/linear",
    }
    assert _ws_urls(testnet=True, demo=False, endpoints=None) == {
        "private": "wss://stream-testnet.bybit.com/v5/private",
        "public": "wss://stream-testnet.bybit.com/v5/public/linear",
    }
    assert _ws_urls(testnet=False, demo=True, endpoints=None) == {
        "private": "wss://stream-demo.bybit.com/v5/private",
        "public": "wss://stream.bybit.com/v5/public/linear",
    }
    assert _ws_urls(testnet=True, demo=True, endpoints=ENDPOINTS) == {
        "private": "ws://ws.test/v5/private",
        "public": "ws://ws.test/v5/public/linear",
    }


def test_secrets_never_reach_repr_or_logs(
    exchange: FakeExchange, fake_http: None, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        adapter = make_adapter(sink)
        adapter.open(["BTCUSDT"], timeout=3.0)
        exchange.app("private").push({"op": "auth", "success": False, "ret_msg": f"bad key {API_KEY}"})
        exchange.app("private").drop()
        wait_until(lambda: ("private", "up") in sink.links("private"))
        sock = current_socket(adapter, "private")
        texts = [repr(adapter), repr(sock)]
        adapter.close(timeout=3.0)
    texts.append(caplog.text)
    texts.extend(detail for (_kind, _ch, _st, detail) in [i for i in sink.items if i[0] == "link"])
    for text in texts:
        assert API_KEY not in text and API_SECRET not in text


# ---------------------------------------------------------------------------------------------- real pybit


class LocalBybit:
    """A tiny Bybit-like server on 127.0.0.1 (aiohttp) for the real pybit + websocket-client."""

    def __init__(self, *, auth_ok: bool = True) -> None:
        self.auth_ok = auth_ok
        self.paths: list[str] = []
        self.received: list[dict[str, Any]] = []
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="local-bybit", daemon=True)
        self.port = 0
        self._stop: asyncio.Event | None = None

    def __enter__(self) -> LocalBybit:
        self.thread.start()
        assert self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)  # type: ignore[union-attr]
        self.thread.join(5)

    def kick(self, path: str) -> None:
        """Close the server side of the current connection on ``path``."""
        asyncio.run_coroutine_threadsafe(self.sockets[path].close(), self.loop).result(5)

    def _run(self) -> None:
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_get("/v5/private", self._socket)
        app.router.add_get("/v5/public/linear", self._socket)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.paths.append(request.path)
        self.sockets[request.path] = ws
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                break
            msg = json.loads(message.data)
            self.received.append(msg)
            op = msg.get("op")
            if op == "auth":
                await ws.send_json(
                    {
                        "success": self.auth_ok,
                        "ret_msg": "" if self.auth_ok else "Invalid apikey",
                        "op": "auth",
                        "conn_id": "x",
                    }
                )
            elif op == "subscribe":
                await ws.send_json(
                    {
                        "success": True,
                        "ret_msg": "",
                        "conn_id": "x",
                        "req_id": msg.get("req_id", ""),
                        "op": "subscribe",
                    }
                )
                for topic in msg["args"]:
                    if topic.startswith("tickers."):
                        symbol = topic.split(".", 1)[1]
                        await ws.send_json(ticker_frame(symbol, "snapshot", markPrice="100", lastPrice="100"))
            elif op == "ping":
                await ws.send_json(
                    {"success": True, "ret_msg": "pong", "conn_id": "x", "req_id": "", "op": "ping"}
                )
        return ws


def test_real_pybit_socket_through_the_endpoint_override(sink: RecordingSink, fake_http: None) -> None:
    with LocalBybit() as server:
        endpoints = Endpoints(rest=f"http://127.0.0.1:{server.port}", ws=f"ws://127.0.0.1:{server.port}")
        adapter = make_adapter(sink, endpoints=endpoints)
        adapter.open(["BTCUSDT"], timeout=5.0)
        try:
            assert adapter.connected
            assert sorted(server.paths) == ["/v5/private", "/v5/public/linear"]
            wait_until(lambda: any(f.get("topic") == "tickers.BTCUSDT" for f in sink.frames("public")))
            [ticker] = BybitPublicDecoder().decode(  # type: ignore[misc]
                next(f for f in sink.frames("public") if f.get("topic") == "tickers.BTCUSDT")
            )
            assert ticker.mark_price == Decimal(100)  # type: ignore[union-attr]
            adapter.add_symbol("ETHUSDT")
            wait_until(lambda: any(f.get("topic") == "tickers.ETHUSDT" for f in sink.frames("public")))
            wait_until(lambda: any(m.get("op") == "ping" for m in server.received))
            assert any(m.get("op") == "auth" and m["args"][0] == API_KEY for m in server.received)
        finally:
            started = time.monotonic()
            adapter.close(timeout=3.0)
            closing = time.monotonic() - started
        assert closing < 1.5
        assert gridbot_threads() == []
        assert sink.links() == []


def test_real_pybit_socket_closed_by_the_server_is_rebuilt(sink: RecordingSink, fake_http: None) -> None:
    with LocalBybit() as server:
        endpoints = Endpoints(rest=f"http://127.0.0.1:{server.port}", ws=f"ws://127.0.0.1:{server.port}")
        adapter = make_adapter(sink, endpoints=endpoints)
        adapter.open(["BTCUSDT"], timeout=5.0)
        try:
            server.kick("/v5/public/linear")
            wait_until(lambda: sink.links("public") == [("public", "down"), ("public", "up")])
            assert server.paths.count("/v5/public/linear") == 2
            subscribes = [m for m in server.received if m.get("op") == "subscribe"]
            assert [m["args"] for m in subscribes].count(["tickers.BTCUSDT"]) == 2
            wait_until(lambda: adapter.connected)
        finally:
            adapter.close(timeout=3.0)
        assert gridbot_threads() == []


def test_real_pybit_rejected_key(sink: RecordingSink, fake_http: None) -> None:
    with LocalBybit(auth_ok=False) as server:
        endpoints = Endpoints(rest=f"http://127.0.0.1:{server.port}", ws=f"ws://127.0.0.1:{server.port}")
        adapter = make_adapter(sink, endpoints=endpoints)
        with pytest.raises(AuthenticationError, match="Invalid apikey"):
            adapter.open(["BTCUSDT"], timeout=5.0)
        assert gridbot_threads() == []


def test_real_pybit_unreachable_port(sink: RecordingSink, fake_http: None) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = make_adapter(
        sink, endpoints=Endpoints(rest=f"http://127.0.0.1:{port}", ws=f"ws://127.0.0.1:{port}")
    )
    with pytest.raises(ConnectError, match=r"127\.0\.0\.1"):
        adapter.open(["BTCUSDT"], timeout=5.0)
    assert gridbot_threads() == []


# ---------------------------------------------------------------------------------------------- fill backfill


def executions_page(rows: list[tuple[str, int, str]], cursor: str | None) -> dict[str, Any]:
    """A ``/v5/execution/list`` page of (execId, execTime, execType), newest first as Bybit sorts."""
    response: dict[str, Any] = fixture("rest.execution_list.response.json")
    template = response["result"]["list"][0]
    response["result"]["list"] = [
        {**template, "symbol": "BTCUSDT", "orderId": f"o-{exec_id}", "execId": exec_id, "execTime": str(ts),
         "execType": kind, "seq": ts}
        for exec_id, ts, kind in sorted(rows, key=lambda r: -r[1])
    ]
    if cursor is None:
        del response["result"]["nextPageCursor"]
    else:
        response["result"]["nextPageCursor"] = cursor
    return response


def test_fetch_fills_pages_by_cursor_oldest_first_with_slots(fake_http: None, sink: RecordingSink) -> None:
    counters = Counters()
    adapter = make_adapter(sink, counters=counters)
    http = FakeHTTP.instances[-1]
    http.scripts["get_executions"] = [
        executions_page([("c", 300, "Trade"), ("f", 250, "Funding"), ("b", 200, "BustTrade")], "p%3D2"),
        executions_page([("a", 100, "AdlTrade")], ""),
    ]
    fills = adapter.fetch_fills("BTCUSDT", 50, 400)
    assert [(f.trade_id, f.exec_type, f.realised_pnl) for f in fills] == [
        ("a", "Adl", None), ("b", "Liquidation", None), ("c", "Trade", None)]
    assert [f.position_idx for f in fills] == [0, 0, 0]  # executions carry no slot
    # an order the stream saw (hedge long, positionIdx 1): the private decoder gives its fills its slot
    decoder = BybitPrivateDecoder()
    decoder.seed(orders_from_rest(orders_page(["o-b"], "", symbol="BTCUSDT")))
    assert [f.position_idx for f in decoder.seed(fills) if isinstance(f, FillUpdate)] == [0, 1, 0]
    assert http.calls == [
        ("get_executions", {"category": "linear", "symbol": "BTCUSDT", "startTime": 50, "endTime": 400,
                            "limit": 100}),
        ("get_executions", {"category": "linear", "symbol": "BTCUSDT", "startTime": 50, "endTime": 400,
                            "limit": 100, "cursor": "p%3D2"}),
    ]
    assert counters.snapshot().rest_calls == 2


def test_fetch_fills_absent_cursor_ends_and_long_spans_split(fake_http: None, sink: RecordingSink) -> None:
    adapter = make_adapter(sink)
    http = FakeHTTP.instances[-1]
    http.scripts["get_executions"] = [executions_page([], None)]
    week = 7 * 24 * 3600 * 1000
    assert adapter.fetch_fills("BTCUSDT", 0, week + 10) == []
    windows = [(p["startTime"], p["endTime"]) for _name, p in http.calls]
    assert windows == [(0, week), (week + 1, week + 10)]


def test_fetch_fills_repeated_cursor_or_bad_page_is_an_error(fake_http: None, sink: RecordingSink) -> None:
    adapter = make_adapter(sink)
    http = FakeHTTP.instances[-1]
    http.scripts["get_executions"] = [executions_page([("a", 1, "Trade")], "same")]
    with pytest.raises(GridbotError, match="repeats cursor"):
        adapter.fetch_fills("BTCUSDT", 0, 10)
    http.scripts["get_executions"] = [{"retCode": 0, "result": {"category": "linear", "list": ["x"]}}]
    with pytest.raises(GridbotError):
        adapter.fetch_fills("BTCUSDT", 0, 10)


# ------------------------------------------------------------------------- transport (supervisor contract)


def transport_for(counters: Counters | None = None) -> _transport.BybitTransport:
    urls = {"private": "ws://ws.test/v5/private", "public": "ws://ws.test/v5/public/linear"}
    return _transport.BybitTransport(urls=urls, credentials=Credentials(API_KEY, API_SECRET),
                                     counters=counters or Counters(), connect_timeout=2.0)


def fake_attempt() -> Any:
    attempt = MagicMock(spec=Attempt)
    attempt.retired = False
    return attempt


def calls(attempt: Any, name: str) -> list[Any]:
    return [c for c in attempt.method_calls if c[0] == name]


def test_transport_reports_opened_once_after_auth_and_every_ack(exchange: FakeExchange) -> None:
    transport, attempt = transport_for(), fake_attempt()
    sock = transport.open("private", ["wallet", "position", "order", "execution"], attempt)
    try:
        wait_until(lambda: calls(attempt, "opened") != [])
        [sub] = exchange.app("private").sent_ops("subscribe")
        assert sub["args"] == ["position", "order", "execution", "wallet"]  # one request, Bybit's order
        assert [m["args"][0] for m in exchange.app("private").sent_ops("auth")] == [API_KEY]
        sock.ping()
        wait_until(lambda: calls(attempt, "heard") != [])  # the pong: life, no frame
        assert len(calls(attempt, "opened")) == 1
        assert not calls(attempt, "closed") and not calls(attempt, "auth_failed")
    finally:
        sock.close()
        assert sock.join(2.0)
    assert transport.join_all(time.monotonic()) == []


def test_transport_reports_auth_failures_refusals_and_losses(exchange: FakeExchange) -> None:
    exchange.auth_ok = False
    transport, private = transport_for(), fake_attempt()
    sock = transport.open("private", list(_transport.PRIVATE_TOPICS), private)
    wait_until(lambda: calls(private, "auth_failed") != [])
    assert "Invalid apikey" in calls(private, "auth_failed")[0][1][0] and not calls(private, "opened")
    sock.close()
    assert sock.join(2.0)

    exchange.reject_topics = {"tickers.NOPEUSDT"}
    public = fake_attempt()
    sock = transport.open("public", ["tickers.BTCUSDT", "tickers.NOPEUSDT"], public)
    wait_until(lambda: calls(public, "opened") != [])  # live once every request is answered
    [(_name, (topics, detail), _kw)] = calls(public, "refused")
    assert list(topics) == ["tickers.NOPEUSDT"] and "handler not found" in detail
    sock.subscribe(["tickers.SOLUSDT", "tickers.ETHUSDT"])  # one request per ticker topic
    sock.unsubscribe(["tickers.BTCUSDT"])
    wait_until(lambda: sock.topics() == {"tickers.SOLUSDT", "tickers.ETHUSDT"})
    exchange.app("public").drop()
    wait_until(lambda: calls(public, "closed") != [])
    assert "Connection to remote host was lost" in calls(public, "closed")[0][1][0]
    assert transport.join_all(time.monotonic() + 2.0) == []


def test_transport_gives_up_a_connect_the_supervisor_retired(exchange: FakeExchange, mocker: Any) -> None:
    exchange.ack = False
    attempt = fake_attempt()
    started = time.monotonic()
    timer = threading.Timer(0.1, lambda: setattr(attempt, "retired", True))
    timer.start()
    mocker.patch.object(FakeApp, "run_forever", autospec=True,
                        side_effect=lambda app, **kw: app.release.wait(5))  # TCP connect that hangs
    with pytest.raises(_errors.Stopped):
        transport_for().open("public", ["tickers.BTCUSDT"], attempt)
    assert time.monotonic() - started < 1.5
    timer.join()
    exchange.app("public").release.set()  # the hung connect ends: no thread is left behind
    wait_until(lambda: gridbot_threads() == [])
