"""BinanceAdapter: SDK seams replaced by fakes (sockets, REST clients, the manager's AsyncClient) running
under the real ThreadedWebsocketManager listener; then the real python-binance against a tiny local
aiohttp server on 127.0.0.1 that serves the Binance paths."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import requests
from aiohttp import web
from binance.exceptions import BinanceAPIException

from gridbot._credentials import Credentials
from gridbot.adapters._backoff import BackoffPolicy
from gridbot.adapters.binance import BinanceAdapter
from gridbot.adapters.binance import _manager as manager_mod
from gridbot.adapters.binance import _rest as rest_mod
from gridbot.adapters.binance import _sockets as sockets_mod
from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, ConnectError, GridbotError
from gridbot.events import OrderUpdate, PositionUpdate, WalletUpdate
from gridbot.normalize.binance import algo_orders_from_rest, orders_from_rest
from gridbot.stats import Counters
from tests.helpers import wait_until

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "binance"
KEY = "KEY-abcdef0123456789"
SECRET = "SECRET-fedcba9876543210"
REST = "http://127.0.0.1:9"
WS = "ws://127.0.0.1:9"
FAKE_ENDPOINTS = Endpoints(REST, WS)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


OPEN_ORDER_ROW = {  # GET /fapi/v1/openOrders and GET /fapi/v1/order row (official docs' shape)
    "avgPrice": "0.00000", "clientOrderId": "abc", "cumQuote": "0", "executedQty": "0", "orderId": 1917641,
    "origQty": "0.40", "origType": "LIMIT", "price": "0", "reduceOnly": False, "side": "BUY",
    "positionSide": "SHORT", "status": "NEW", "stopPrice": "9300", "closePosition": False,
    "symbol": "BTCUSDT", "time": 1579276756075, "timeInForce": "GTC", "type": "LIMIT",
    "activatePrice": "9020", "priceRate": "0.3", "updateTime": 1579276756075,
    "workingType": "CONTRACT_PRICE", "priceProtect": False,
}


# --------------------------------------------------------------------------- fakes


class RecordingSink:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[tuple[Any, ...]] = []
        self.raise_on_frame = False

    def frame(self, channel: str, payload: Any) -> None:
        with self._lock:
            self.items.append(("frame", channel, payload))
        if self.raise_on_frame:
            raise RuntimeError("sink exploded")

    def link(self, channel: str, state: str, detail: str) -> None:
        with self._lock:
            self.items.append(("link", channel, state, detail))

    def frames(self, channel: str) -> list[Any]:
        with self._lock:
            return [item[2] for item in self.items if item[0] == "frame" and item[1] == channel]

    def links(self, channel: str) -> list[str]:
        with self._lock:
            return [item[2] for item in self.items if item[0] == "link" and item[1] == channel]


class FakeSocket:
    """Stands in for _UserSocket/_MarketSocket under the SDK's real start_listener; calls the same hooks
    the observed SDK sockets call."""

    def __init__(self, registry: FakeSdk, *, link: Any, hooks: Any, url: str, listen_key: str | None = None,
                 streams: Any = (), client: Any = None) -> None:
        self.link, self.hooks, self.url = link, hooks, url
        self.listen_key, self.streams = listen_key, tuple(streams)
        self.loop = asyncio.get_running_loop()  # constructed on the manager's loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.exited = threading.Event()
        self.behaviour = registry.connect_behaviours.pop(0) if registry.connect_behaviours else "ok"
        self.created = time.monotonic()
        registry.sockets.append(self)

    async def __aenter__(self) -> FakeSocket:
        if self.behaviour == "hang":
            await asyncio.sleep(3600)
        if isinstance(self.behaviour, BaseException):
            raise self.behaviour
        self.hooks.sdk_connected(self.link)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.exited.set()

    async def recv(self) -> Any:
        return await self.queue.get()

    # test side (any thread)
    def feed(self, *messages: Any) -> None:
        for message in messages:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, message)

    def sdk_reconnects(self) -> None:
        self.loop.call_soon_threadsafe(self.hooks.sdk_reconnecting, self.link)
        self.loop.call_soon_threadsafe(self.hooks.sdk_connected, self.link)

    def sdk_error(self, error: dict[str, Any]) -> None:
        """An error the SDK's read loop raises: _propagate_error (hooked), then the listener gets it."""
        self.loop.call_soon_threadsafe(self.hooks.sdk_error, self.link, error)
        self.feed(error)

    def sdk_gives_up(self) -> None:
        """What 1.0.37 does after 4 failed reconnects: an UnableToConnect dict, the read loop ends, then
        recv() raises ReadLoopClosed on every call."""
        self.sdk_error({"e": "error", "type": "BinanceWebsocketUnableToConnect", "m": ""})
        self.loop.call_soon_threadsafe(self.hooks.sdk_read_loop_ended, self.link)
        self.feed(*[{"e": "error", "type": "ReadLoopClosed", "m": "Read loop has been closed"}] * 50)


class FakeClient:
    """Stands in for binance.Client (REST)."""

    def __init__(self, registry: FakeSdk, **kwargs: Any) -> None:
        self.registry, self.kwargs = registry, kwargs
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.closed = False
        registry.clients.append(self)

    def _call(self, name: str, **params: Any) -> Any:
        self.calls.append((name, params))
        answer = self.registry.answers[name]
        if isinstance(answer, BaseException):
            raise answer
        return answer(**params) if callable(answer) else answer

    def futures_stream_get_listen_key(self) -> Any:
        return self._call("listen_key")

    def futures_position_information(self) -> Any:
        return self._call("positions")

    def futures_account_balance(self) -> Any:
        return self._call("balance")

    def futures_get_open_orders(self) -> Any:
        return self._call("open_orders")

    def futures_get_open_algo_orders(self) -> Any:
        return self._call("open_algo_orders")

    def futures_get_order(self, **params: Any) -> Any:
        return self._call("order", **params)

    def futures_get_algo_order(self, **params: Any) -> Any:
        return self._call("algo_order", **params)

    def futures_account_trades(self, **params: Any) -> Any:
        return self._call("trades", **params)

    def futures_exchange_info(self) -> Any:
        return self._call("exchange_info")

    def close_connection(self) -> None:
        self.closed = True


class FakeAsyncClient:
    timestamp_offset = 7

    async def close_connection(self) -> None:
        pass


class FakeSdk:
    def __init__(self) -> None:
        self.sockets: list[FakeSocket] = []
        self.clients: list[FakeClient] = []
        self.connect_behaviours: list[Any] = []
        self.ping_error: BaseException | None = None
        self.hosts: list[Any] = []
        keys = iter(f"K{n}" for n in range(1, 100))
        self.answers: dict[str, Any] = {
            "listen_key": lambda: next(keys),
            "positions": fixture("rest_position_risk_v3.json"),
            "balance": fixture("rest_balance.json"),
            "open_orders": [OPEN_ORDER_ROW, {**OPEN_ORDER_ROW, "symbol": "XRPUSDT", "orderId": 5}],
            "open_algo_orders": fixture("rest_open_algo_orders.json"),
        }

    async def create_async_client(self, credentials: Any, hosts: Any, *, testnet: bool, demo: bool) -> Any:
        self.hosts.append(hosts)
        if self.ping_error is not None:
            raise self.ping_error
        return FakeAsyncClient()

    def sockets_of(self, channel: str) -> list[FakeSocket]:
        return [s for s in self.sockets if s.link.channel == channel]

    def latest(self, channel: str) -> FakeSocket:
        return self.sockets_of(channel)[-1]

    @property
    def control_rest(self) -> FakeClient:
        return self.clients[1]

    @property
    def seed_rest(self) -> FakeClient:
        return self.clients[0]


def api_error(status: int, code: int, msg: str) -> BinanceAPIException:
    text = json.dumps({"code": code, "msg": msg})
    return BinanceAPIException(SimpleNamespace(text=text, request=None), status, text)


@pytest.fixture
def sdk(mocker: Any) -> FakeSdk:
    registry = FakeSdk()
    mocker.patch.object(manager_mod, "_create_async_client", registry.create_async_client)
    mocker.patch.object(rest_mod, "Client", functools.partial(FakeClient, registry))
    mocker.patch.object(sockets_mod, "_UserSocket", functools.partial(FakeSocket, registry))
    mocker.patch.object(sockets_mod, "_MarketSocket", functools.partial(FakeSocket, registry))
    return registry


@pytest.fixture
def threads_before() -> Iterator[set[threading.Thread]]:
    before = set(threading.enumerate())
    yield before
    leftover = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not leftover, f"threads left running: {leftover}"


def new_threads(before: set[threading.Thread]) -> list[str]:
    return [t.name for t in set(threading.enumerate()) - before if t.is_alive()]


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def make_adapter(sink: RecordingSink) -> Iterator[Callable[..., BinanceAdapter]]:
    made: list[BinanceAdapter] = []

    def make(endpoints: Endpoints | None = FAKE_ENDPOINTS, counters: Counters | None = None,
             **overrides: Any) -> BinanceAdapter:
        kwargs: dict[str, Any] = dict(api_key=KEY, api_secret=SECRET, testnet=False, demo=False,
                                      endpoints=endpoints, sink=sink, counters=counters or Counters())
        kwargs.update(overrides)
        adapter = BinanceAdapter(**kwargs)
        adapter.backoff = BackoffPolicy(initial=0.01, cap=0.01)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close(5.0)


# --------------------------------------------------------------------------- open


def test_open_connects_both_sockets_on_endpoint_hosts(sdk: FakeSdk, make_adapter: Any) -> None:
    adapter = make_adapter()
    adapter.open(["btcusdt", "ETHUSDT"], timeout=5)

    assert adapter.connected
    user, market = sdk.latest("private"), sdk.latest("public")
    assert (user.url, user.listen_key) == (f"{WS}/private/", "K1")
    assert market.url == f"{WS}/market/"
    assert market.streams == ("btcusdt@markPrice@1s", "ethusdt@markPrice@1s")
    assert sdk.control_rest.calls == [("listen_key", {})]
    hosts = sdk.hosts[0]
    assert (hosts.rest_api, hosts.rest_fapi) == (f"{REST}/api", f"{REST}/fapi")
    for client in sdk.clients:
        assert client.kwargs["ping"] is False
    assert sdk.seed_rest.kwargs["requests_params"] == {"timeout": 10.0}


def test_hosts_without_endpoints_are_the_sdk_futures_hosts() -> None:
    main = manager_mod.Hosts.choose(None, testnet=False, demo=False)
    test = manager_mod.Hosts.choose(None, testnet=True, demo=False)
    assert (main.ws_private, main.ws_market) == ("wss://fstream.binance.com/private/",
                                                 "wss://fstream.binance.com/market/")
    assert test.ws_private == "wss://fstream.binancefuture.com/private/"
    assert main.rest_api is None  # the SDK's own REST hosts per testnet/demo

    client = SimpleNamespace(FUTURES_URL="https://fapi.binance.com/fapi")
    main.apply_to(client)
    assert client.FUTURES_URL == "https://fapi.binance.com/fapi"
    manager_mod.Hosts.choose(Endpoints("http://h:1/", "ws://h:1"), testnet=True, demo=True).apply_to(client)
    assert client.FUTURES_URL == client.FUTURES_TESTNET_URL == client.FUTURES_DEMO_URL == "http://h:1/fapi"
    assert client.API_URL == "http://h:1/api"


def test_auth_rejection_raises_authentication_error_and_stops_everything(
        threads_before: set[threading.Thread],
        sdk: FakeSdk, make_adapter: Any) -> None:
    sdk.answers["listen_key"] = api_error(401, -2015, "Invalid API-key, IP, or permissions for action.")
    adapter = make_adapter()

    with pytest.raises(AuthenticationError) as caught:
        adapter.open(["BTCUSDT"], timeout=5)

    assert "-2015" in str(caught.value)
    assert KEY not in str(caught.value) and SECRET not in str(caught.value)
    assert isinstance(caught.value.__cause__, BinanceAPIException)
    assert new_threads(threads_before) == []
    assert not adapter.connected


@pytest.mark.parametrize("error", [ConnectionRefusedError(111, "Connection refused"),
                                   aiohttp.ClientConnectionError("cannot connect"), TimeoutError()])
def test_unreachable_rest_raises_connect_error(threads_before: set[threading.Thread],
        sdk: FakeSdk, make_adapter: Any, error: Exception) -> None:
    sdk.ping_error = error
    with pytest.raises(ConnectError) as caught:
        make_adapter().open(["BTCUSDT"], timeout=5)
    assert caught.value.__cause__ is error
    assert new_threads(threads_before) == []


def test_unreachable_socket_host_raises_connect_error(threads_before: set[threading.Thread],
        sdk: FakeSdk, make_adapter: Any) -> None:
    sdk.connect_behaviours = [OSError(111, "Connect call failed")]
    started = time.monotonic()
    with pytest.raises(ConnectError, match="private socket"):
        make_adapter().open(["BTCUSDT"], timeout=5)
    assert time.monotonic() - started < 2  # fails at once, not at the timeout
    assert new_threads(threads_before) == []


def test_open_times_out_with_connect_error(threads_before: set[threading.Thread],
        sdk: FakeSdk, make_adapter: Any) -> None:
    sdk.connect_behaviours = ["ok", "hang"]
    started = time.monotonic()
    with pytest.raises(ConnectError, match="public socket did not connect in time"):
        make_adapter().open(["BTCUSDT"], timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert new_threads(threads_before) == []


def test_open_twice_is_refused(sdk: FakeSdk, make_adapter: Any) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    with pytest.raises(GridbotError, match="needs a new adapter"):
        adapter.open(["BTCUSDT"], timeout=5)


# --------------------------------------------------------------------------- frames and links


def test_frames_are_forwarded_in_order_on_their_channel(sdk: FakeSdk, make_adapter: Any,
                                                        sink: RecordingSink) -> None:
    make_adapter().open(["BTCUSDT"], timeout=5)
    user_frames = [{"e": "ORDER_TRADE_UPDATE", "n": n} for n in range(200)]
    market_frames = [{"stream": "btcusdt@markPrice@1s", "data": {"n": n}} for n in range(200)]

    sdk.latest("private").feed(*user_frames)
    sdk.latest("public").feed(*market_frames)
    wait_until(lambda: len(sink.frames("private")) == 200 and len(sink.frames("public")) == 200)

    assert sink.frames("private") == user_frames
    assert sink.frames("public") == market_frames
    assert sink.links("private") == sink.links("public") == []  # the initial connect is open()'s


def test_error_dict_is_a_gap_not_a_frame_and_flowing_frames_resync_it(sdk: FakeSdk, make_adapter: Any,
                                                                      sink: RecordingSink) -> None:
    make_adapter().open(["BTCUSDT"], timeout=5)
    user = sdk.latest("private")

    user.sdk_error({"e": "error", "type": "IncompleteReadError", "m": "boom"})  # raised in the read loop
    user.feed({"e": "error", "type": "SomethingElse", "m": "from the listener"})  # only the listener saw it
    wait_until(lambda: sink.links("private") == ["gap", "gap"])
    assert sink.frames("private") == []

    user.feed({"e": "ACCOUNT_UPDATE"})  # the same connection kept going: resync what the gap lost
    wait_until(lambda: sink.links("private") == ["gap", "gap", "up"])
    assert sink.frames("private") == [{"e": "ACCOUNT_UPDATE"}]


def test_sdk_internal_reconnect_reports_down_then_up(sdk: FakeSdk, make_adapter: Any,
                                                     sink: RecordingSink) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    market = sdk.latest("public")

    market.loop.call_soon_threadsafe(market.hooks.sdk_reconnecting, market.link)
    wait_until(lambda: sink.links("public") == ["down"])
    assert not adapter.connected
    market.loop.call_soon_threadsafe(market.hooks.sdk_connected, market.link)
    wait_until(lambda: sink.links("public") == ["down", "up"])
    assert adapter.connected
    assert len(sdk.sockets_of("public")) == 1  # the SDK's own reconnect: nothing rebuilt


def test_listen_key_expired_renews_key_restarts_user_socket(sdk: FakeSdk, make_adapter: Any,
                                                            sink: RecordingSink) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    old = sdk.latest("private")
    expired = fixture("listen_key_expired.json")

    old.feed(expired)
    wait_until(lambda: sink.links("private") == ["down", "up"])

    assert sink.frames("private") == [expired]  # forwarded, before the down
    assert [item[2] for item in sink.items[:2]] == [expired, "down"]
    new = sdk.latest("private")
    assert new is not old and new.listen_key == "K2"
    assert old.exited.wait(2)
    assert sdk.control_rest.calls == [("listen_key", {}), ("listen_key", {})]
    assert adapter.connected
    new.feed({"e": "ACCOUNT_UPDATE"})
    wait_until(lambda: sink.frames("private")[-1] == {"e": "ACCOUNT_UPDATE"})


def test_sdk_giving_up_rebuilds_with_backoff(sdk: FakeSdk, make_adapter: Any, sink: RecordingSink) -> None:
    adapter = make_adapter()
    adapter.backoff = BackoffPolicy(initial=0.05, cap=0.2, jitter_low=1.0)
    adapter.open(["BTCUSDT"], timeout=5)
    dead = sdk.latest("public")
    sdk.connect_behaviours = [OSError(111, "refused"), OSError(111, "refused")]  # two failed rebuilds

    dead.sdk_gives_up()
    wait_until(lambda: sink.links("public") == ["down", "up"])

    rebuilds = [s.created for s in sdk.sockets_of("public")[1:]]
    assert len(rebuilds) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(rebuilds)]
    assert gaps[0] >= 0.05 * 0.9 and gaps[1] >= 0.1 * 0.9  # exponential backoff between failed rebuilds
    assert sdk.latest("public").streams == ("btcusdt@markPrice@1s",)
    assert dead.exited.wait(2)
    assert adapter.connected
    # the ReadLoopClosed flood was neither forwarded nor reported as gaps
    assert sink.frames("public") == []


def test_user_socket_rebuild_gets_a_fresh_listen_key(sdk: FakeSdk, make_adapter: Any,
                                                     sink: RecordingSink) -> None:
    make_adapter().open([], timeout=5)
    sdk.latest("private").sdk_gives_up()
    wait_until(lambda: sink.links("private") == ["down", "up"])
    assert [s.listen_key for s in sdk.sockets_of("private")] == ["K1", "K2"]


def test_key_rejected_during_rebuild_reports_failed_once_and_recovers_when_restored(
    sdk: FakeSdk, make_adapter: Any, sink: RecordingSink
) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    working = sdk.answers["listen_key"]
    attempts: list[int] = []

    def revoked() -> Any:
        attempts.append(1)
        raise api_error(401, -2015, "Invalid API-key, IP, or permissions for action.")

    sdk.answers["listen_key"] = revoked
    sdk.latest("private").sdk_gives_up()
    wait_until(lambda: sink.links("private") == ["down", "failed"])
    assert not adapter.connected
    wait_until(lambda: len(attempts) >= 3)  # retried with backoff
    assert sink.links("private") == ["down", "failed"]  # reported once
    sdk.answers["listen_key"] = working  # keys restored
    wait_until(lambda: sink.links("private") == ["down", "failed", "up"])
    wait_until(lambda: adapter.connected)


def test_a_raising_sink_never_reaches_the_sdk_listener(sdk: FakeSdk, make_adapter: Any, sink: RecordingSink,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    make_adapter().open(["BTCUSDT"], timeout=5)
    sink.raise_on_frame = True
    user = sdk.latest("private")

    user.feed({"e": "A"}, {"e": "B"})
    wait_until(lambda: len(sink.frames("private")) == 2)  # the listener survived the first raise

    assert [r for r in caplog.records if r.exc_info and "sink exploded" in str(r.exc_info[1])]
    sink.raise_on_frame = False
    user.feed({"e": "C"})
    wait_until(lambda: sink.frames("private")[-1] == {"e": "C"})


# --------------------------------------------------------------------------- symbols


def test_add_and_remove_symbol_restart_the_market_socket(sdk: FakeSdk, make_adapter: Any,
                                                         sink: RecordingSink) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    first = sdk.latest("public")

    adapter.add_symbol("ethusdt")
    wait_until(lambda: len(sdk.sockets_of("public")) == 2 and first.exited.is_set())
    assert sdk.latest("public").streams == ("btcusdt@markPrice@1s", "ethusdt@markPrice@1s")

    adapter.add_symbol("ETHUSDT")  # already there: nothing to do
    adapter.remove_symbol("BTCUSDT")
    wait_until(lambda: len(sdk.sockets_of("public")) == 3)
    assert sdk.latest("public").streams == ("ethusdt@markPrice@1s",)

    adapter.remove_symbol("ETHUSDT")  # no symbols: no market socket
    wait_until(lambda: sdk.latest("public").exited.is_set())
    assert len(sdk.sockets_of("public")) == 3
    assert adapter.connected
    assert sink.links("public") == []  # make-before-break: tickers never went away


def test_first_symbol_added_while_running_starts_the_market_socket(sdk: FakeSdk, make_adapter: Any) -> None:
    adapter = make_adapter()
    adapter.open([], timeout=5)
    assert sdk.sockets_of("public") == [] and adapter.connected
    adapter.add_symbol("BTCUSDT")
    wait_until(lambda: len(sdk.sockets_of("public")) == 1)
    assert sdk.latest("public").streams == ("btcusdt@markPrice@1s",)


# --------------------------------------------------------------------------- REST


def test_fetch_snapshot_calls_filters_and_counts(sdk: FakeSdk, make_adapter: Any) -> None:
    counters = Counters()
    adapter = make_adapter(counters=counters)
    adapter.open(["BTCUSDT"], timeout=5)

    events = adapter.fetch_snapshot(["ADAUSDT", "BTCUSDT", "BNBUSDT"], include_wallet=True)

    assert [name for name, _ in sdk.seed_rest.calls] == ["positions", "balance", "open_orders",
                                                         "open_algo_orders"]
    assert counters.snapshot().rest_calls == 4
    assert all(e.is_snapshot for e in events)
    positions = [e for e in events if isinstance(e, PositionUpdate)]
    assert {p.symbol for p in positions} == {"ADAUSDT"}  # the fixture's only wanted symbol
    assert [w.coin for w in events if isinstance(w, WalletUpdate)] == ["USDT"]
    orders = [e for e in events if isinstance(e, OrderUpdate)]
    assert [(o.symbol, o.order_id) for o in orders] == [("BTCUSDT", "1917641"), ("BNBUSDT", "2148627")]
    assert sdk.seed_rest.timestamp_offset == 7  # type: ignore[attr-defined]  # the manager's measured clock offset is used to sign

    adapter.fetch_snapshot(["BTCUSDT"], include_wallet=False)
    assert counters.snapshot().rest_calls == 7


@pytest.mark.parametrize(("error", "expected"), [
    (api_error(400, -1022, "Signature for this request is not valid."), AuthenticationError),
    (api_error(401, -2014, "API-key format invalid."), AuthenticationError),
    (api_error(400, -1021, "Timestamp for this request is outside of the recvWindow."), GridbotError),
    (requests.ConnectionError("Max retries exceeded"), ConnectError),
    (requests.Timeout("read timed out"), ConnectError),
])
def test_fetch_snapshot_translates_errors(sdk: FakeSdk, make_adapter: Any, error: Exception,
                                          expected: type[GridbotError]) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    sdk.answers["positions"] = error
    with pytest.raises(expected) as caught:
        adapter.fetch_snapshot(["BTCUSDT"], include_wallet=True)
    assert type(caught.value) is expected
    assert caught.value.__cause__ is error


def test_fetch_orders_queries_regular_and_algo_orders(sdk: FakeSdk, make_adapter: Any) -> None:
    counters = Counters()
    adapter = make_adapter(counters=counters)
    adapter.open(["BTCUSDT"], timeout=5)
    filled = {**OPEN_ORDER_ROW, "status": "FILLED", "executedQty": "0.40"}
    algo_row = {**fixture("rest_open_algo_orders.json")[0], "algoStatus": "CANCELED"}
    regular, gone = orders_from_rest([OPEN_ORDER_ROW, {**OPEN_ORDER_ROW, "orderId": 404}])
    algo = algo_orders_from_rest(
        fixture("rest_open_algo_orders.json"))[0]

    def query_order(symbol: str, orderId: str) -> Any:
        if orderId == "404":
            raise api_error(400, -2013, "Order does not exist.")
        return filled

    sdk.answers["order"] = query_order
    sdk.answers["algo_order"] = algo_row

    events = adapter.fetch_orders([regular, gone, algo])

    assert [(e.order_id, e.status) for e in events if isinstance(e, OrderUpdate)] == [
        ("1917641", "Filled"), ("2148627", "Cancelled")]
    assert sdk.seed_rest.calls[-3:] == [("order", {"symbol": "BTCUSDT", "orderId": "1917641"}),
                                        ("order", {"symbol": "BTCUSDT", "orderId": "404"}),
                                        ("algo_order", {"algoId": "2148627"})]
    assert counters.snapshot().rest_calls == 3


def test_rest_before_open_is_refused(sdk: FakeSdk, make_adapter: Any) -> None:
    with pytest.raises(GridbotError, match="not open"):
        make_adapter().fetch_snapshot(["BTCUSDT"], include_wallet=True)


# --------------------------------------------------------------------------- close


def test_close_is_bounded_idempotent_and_joins_every_thread(threads_before: set[threading.Thread],
        sdk: FakeSdk, make_adapter: Any) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    assert len(new_threads(threads_before)) == 3  # the manager's thread and a supervisor runner per channel

    started = time.monotonic()
    adapter.close(timeout=3.0)
    assert time.monotonic() - started < 1.0
    assert new_threads(threads_before) == []
    assert all(s.exited.is_set() for s in sdk.sockets)
    assert all(c.closed for c in sdk.clients)
    assert not adapter.connected

    adapter.close(timeout=3.0)  # idempotent
    make_adapter().close(timeout=1.0)  # never opened


def test_close_abandons_a_stuck_socket_within_its_budget(threads_before: set[threading.Thread],
        sdk: FakeSdk, make_adapter: Any, mocker: Any) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)

    async def stuck_exit(self: FakeSocket, *exc: Any) -> None:
        while True:  # an SDK exit that ignores cancellation
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue

    mocker.patch.object(FakeSocket, "__aexit__", stuck_exit)
    started = time.monotonic()
    adapter.close(timeout=0.5)
    assert time.monotonic() - started < 1.0
    wait_until(lambda: new_threads(threads_before) == [], timeout=1.0)


# --------------------------------------------------------------------------- secrets


def test_secret_never_appears_in_repr_errors_or_logs(sdk: FakeSdk, make_adapter: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = make_adapter()
    assert KEY not in repr(adapter) and SECRET not in repr(adapter)
    adapter.open(["BTCUSDT"], timeout=5)
    # requests puts the signed URL (signature) into its connection errors: it must be scrubbed
    url = f"/fapi/v3/positionRisk?timestamp=1&signature=deadbeefcafe&key={KEY}"
    try:
        raise requests.ConnectionError(f"HTTPConnectionPool: Max retries exceeded with url: {url}")
    except requests.ConnectionError as exc:
        sdk.answers["positions"] = exc
    with pytest.raises(ConnectError) as caught:
        adapter.fetch_snapshot(["BTCUSDT"], include_wallet=False)
    logging.getLogger("test").error("seed failed", exc_info=caught.value)
    sdk.latest("private").sdk_gives_up()
    wait_until(lambda: sdk.latest("private").listen_key == "K2")
    adapter.close(3.0)

    text = "\n".join(caplog.text.splitlines()) + str(caught.value) + repr(adapter)
    assert "Max retries exceeded" in caplog.text  # the traceback was logged...
    for secret in (KEY, SECRET, "deadbeefcafe"):
        assert secret not in text  # ...without any secret


def test_redaction_removes_whole_secrets_and_signatures_only() -> None:
    credentials = Credentials("k", "s")
    assert repr(credentials) == "<credentials hidden>"
    text = "Invalid API-key, IP, or permissions for action. url=/x?apiKey=k&signature=ab12&secret=s"
    assert credentials.redact(text) == (
        "Invalid API-key, IP, or permissions for action. url=/x?apiKey=<redacted>&signature=<redacted>"
        "&secret=<redacted>")


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
                                                                 sink: RecordingSink) -> None:
    adapter = make_adapter(endpoints=wire.endpoints)
    adapter.open(["BTCUSDT"], timeout=5)

    wire.drop("private")
    wait_until(lambda: "up" in sink.links("private"))

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


# --------------------------------------------------------------------------- bad answers, backfill, silence


@pytest.mark.parametrize("answer", ["positions", "open_orders", "open_algo_orders", "balance"])
def test_a_list_without_objects_fails_the_snapshot_instead_of_meaning_empty(
        sdk: FakeSdk, make_adapter: Any, answer: str) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    sdk.answers[answer] = ["a", "b"]
    with pytest.raises(GridbotError, match="not objects"):
        adapter.fetch_snapshot(["BTCUSDT"], include_wallet=True)
    sdk.answers[answer] = {"code": 0}
    with pytest.raises(GridbotError, match="not a list"):
        adapter.fetch_snapshot(["BTCUSDT"], include_wallet=True)


def trade_row(trade_id: int, time_ms: int, symbol: str = "BTCUSDT") -> dict[str, Any]:
    row: dict[str, Any] = dict(fixture("rest_user_trades.json")[0])
    row.update(id=trade_id, time=time_ms, symbol=symbol, positionSide="BOTH", orderId=trade_id * 10)
    return row


def test_fetch_fills_pages_with_from_id_and_keeps_the_window(sdk: FakeSdk, make_adapter: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rest_mod, "_TRADES_LIMIT", 3)
    history = [trade_row(i, 1_000 + i) for i in range(1, 9)]  # ids 1..8 at 1001..1008

    def trades(**params: Any) -> list[dict[str, Any]]:
        if "fromId" in params:
            rows = [r for r in history if r["id"] >= params["fromId"]]
        else:
            rows = [r for r in history if params["startTime"] <= r["time"] <= params["endTime"]]
        return list(reversed(rows[: params["limit"]]))  # the docs state no order: newest first here

    sdk.answers["trades"] = trades
    counters = Counters()
    adapter = make_adapter(counters=counters)
    adapter.open(["BTCUSDT"], timeout=5)
    before = counters.snapshot().rest_calls
    fills = adapter.fetch_fills("BTCUSDT", 1_002, 1_007)
    assert [f.trade_id for f in fills] == ["2", "3", "4", "5", "6", "7"]
    assert all(f.is_snapshot and f.exec_type == "Trade" for f in fills)
    calls = [params for name, params in sdk.seed_rest.calls if name == "trades"]
    assert calls[0] == {"symbol": "BTCUSDT", "startTime": 1_002, "endTime": 1_007, "limit": 3}
    assert calls[1] == {"symbol": "BTCUSDT", "fromId": 5, "limit": 3}
    assert calls[2] == {"symbol": "BTCUSDT", "fromId": 8, "limit": 3}  # page 2 was full; 3 passes the end
    assert counters.snapshot().rest_calls - before == 3


def test_fetch_fills_splits_long_windows_into_seven_days(sdk: FakeSdk, make_adapter: Any) -> None:
    sdk.answers["trades"] = lambda **params: []
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    week = 7 * 24 * 3600 * 1000
    assert adapter.fetch_fills("BTCUSDT", 0, 2 * week + 5) == []
    windows = [(p["startTime"], p["endTime"]) for name, p in sdk.seed_rest.calls if name == "trades"]
    assert windows == [(0, week - 1), (week, 2 * week - 1), (2 * week, 2 * week + 5)]
    assert all(end - start < week for start, end in windows)


def test_fetch_fills_rejects_a_malformed_answer(sdk: FakeSdk, make_adapter: Any) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    sdk.answers["trades"] = [1, 2]
    with pytest.raises(GridbotError):
        adapter.fetch_fills("BTCUSDT", 0, 10)


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


# --------------------------------------------------------------------------- check_symbols


def listing_row(symbol: str, contract: str = "PERPETUAL", status: str = "TRADING") -> dict[str, Any]:
    return {"symbol": symbol, "pair": symbol, "contractType": contract, "status": status}


def test_check_symbols_names_what_binance_does_not_trade_as_a_perpetual(sdk: FakeSdk,
                                                                       make_adapter: Any) -> None:
    counters = Counters()
    adapter = make_adapter(counters=counters)
    adapter.open(["BTCUSDT"], timeout=5)
    sdk.answers["exchange_info"] = {"symbols": [
        listing_row("BTCUSDT"), listing_row("BTCUSDT_260327", contract="CURRENT_QUARTER"),
        listing_row("OLDUSDT", status="SETTLING")]}
    before = counters.snapshot().rest_calls

    rejected = adapter.check_symbols(["BTCUSDT", "btcusdt_260327", "OLDUSDT", "NOPEUSDT"])

    assert rejected == {
        "BTCUSDT_260327": "contractType CURRENT_QUARTER, not PERPETUAL",
        "OLDUSDT": "status SETTLING, not TRADING",
        "NOPEUSDT": "Invalid symbol. (not in GET /fapi/v1/exchangeInfo)",
    }
    assert adapter.check_symbols(["NOPEUSDT", "BTCUSDT"]) == {"NOPEUSDT": rejected["NOPEUSDT"]}
    assert [name for name, _ in sdk.seed_rest.calls].count("exchange_info") == 1  # one listing, reused
    assert counters.snapshot().rest_calls == before + 1


def test_check_symbols_refuses_an_answer_without_a_listing(sdk: FakeSdk, make_adapter: Any) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    sdk.answers["exchange_info"] = {"code": 0}
    with pytest.raises(GridbotError, match="without a symbols list"):
        adapter.check_symbols(["BTCUSDT"])
    sdk.answers["exchange_info"] = requests.ConnectionError("down")
    with pytest.raises(ConnectError):
        adapter.check_symbols(["BTCUSDT"])
