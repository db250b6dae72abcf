"""Fakes for the BinanceAdapter tests: the SDK seams (sockets, REST clients, the manager's AsyncClient)
replaced, running under the real ThreadedWebsocketManager listener; the fixtures that wire them in."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from binance.exceptions import BinanceAPIException

from gridbot.adapters._backoff import BackoffPolicy
from gridbot.adapters.binance import BinanceAdapter
from gridbot.adapters.binance import _manager as manager_mod
from gridbot.adapters.binance import _rest as rest_mod
from gridbot.adapters.binance import _sockets as sockets_mod
from gridbot.endpoints import Endpoints
from gridbot.stats import Counters

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
