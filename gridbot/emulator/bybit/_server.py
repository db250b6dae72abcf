"""BybitEmulator: the loopback server, its lifecycle, the engine listener, tickers and fault actions."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

from aiohttp import web

from gridbot.emulator._base import LoopbackEmulator
from gridbot.emulator.bybit._faults import (
    BybitFaults,
    _check_channel,
    _FaultHooks,
)
from gridbot.emulator.bybit._rest import (
    _RestRoutes,
)
from gridbot.emulator.bybit._sockets import (
    _Conn,
    _SocketProtocol,
    _Ticker,
)
from gridbot.emulator.bybit._translator import (
    _Push,
    _Translator,
)
from gridbot.emulator.bybit._wire import (
    DEFAULT_CONFIG,
    PRIVATE,
    PUBLIC,
    _dumps,
    _IdBook,
    _Row,
)
from gridbot.emulator.engine import (
    EngineConfig,
    EngineEvent,
    PriceEvent,
    Prices,
)

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------- emulator


class _Hooks(_FaultHooks):
    """Runs the faults' actions on the emulator's loop."""

    def __init__(self, emulator: BybitEmulator) -> None:
        self._emulator = emulator

    def drop(self, channel: str) -> None:
        self._emulator._call_in_loop(self._emulator._abort_channel, channel)

    def send_raw(self, channel: str, text: str) -> None:
        self._emulator._call_in_loop(self._emulator._send_raw_now, channel, text)

    def wake(self) -> None:
        self._emulator._call_in_loop(self._emulator._wake_all)


class BybitEmulator(LoopbackEmulator, _RestRoutes, _SocketProtocol):
    """The loopback Bybit v5 exchange: an :class:`Engine` behind REST and two WebSocket paths.

    Construct, optionally prepare state through :attr:`engine`, then :meth:`start` (or use ``with``).
    ``price_interval`` is the random-walk cadence in seconds (0: no walk, prices move only through
    ``engine.set_price``, for exact tests); ``clock`` (ms) stamps the data, default wall time.
    Drive the market and the account from any thread through :attr:`engine`: every change is pushed.
    """

    SUBSCRIBE_ACK_DELAY: float = 0.005
    _exchange = "bybit"

    def _default_config(self) -> EngineConfig:
        return DEFAULT_CONFIG

    def _init_exchange(self) -> None:
        self._ids = _IdBook()
        self._translator = _Translator(self._config, self._ids)
        self._faults = BybitFaults()
        self._faults._bind(_Hooks(self))
        self._ticks = {s.symbol: s.tick_size for s in self._config.symbols}
        self._conns: dict[str, set[_Conn]] = {PRIVATE: set(), PUBLIC: set()}
        self._held: dict[str, list[_Push | tuple[str, str]]] = {PRIVATE: [], PUBLIC: []}
        self._tickers: dict[str, _Ticker] = {}
        self._conn_numbers = itertools.count(1)
        self._routes: dict[tuple[str, str], tuple[Callable[[_Row], _Row], bool]] = {
            ("GET", "/v5/position/list"): (self._position_list, True),
            ("GET", "/v5/account/wallet-balance"): (self._wallet_balance, True),
            ("GET", "/v5/order/realtime"): (self._order_realtime, True),
            ("GET", "/v5/order/history"): (self._order_history, True),
            ("GET", "/v5/execution/list"): (self._execution_list, True),
            ("POST", "/v5/order/create"): (self._order_create, True),
            ("POST", "/v5/order/cancel"): (self._order_cancel, True),
            ("POST", "/v5/position/trading-stop"): (self._trading_stop, True),
            ("POST", "/v5/position/switch-mode"): (self._switch_mode, True),
            ("POST", "/v5/position/set-leverage"): (self._set_leverage, True),
            ("GET", "/v5/market/time"): (self._market_time, False),
            ("GET", "/v5/market/tickers"): (self._market_tickers, False),
            ("GET", "/v5/market/instruments-info"): (self._instruments_info, False),
            ("GET", "/v5/asset/coin/query-info"): (self._coin_info, True),
            ("GET", "/v5/user/query-api"): (self._query_api, True),
            ("GET", "/v5/account/info"): (self._account_info, True),
        }
        self._engine.add_listener(self._on_engine_event)

    # -- public surface

    @property
    def faults(self) -> BybitFaults:
        return self._faults

    def subscriptions(self, channel: str, timeout: float = 5.0) -> list[set[str]]:
        """The active topics of every open socket of ``channel`` (e.g. to wait until an SDK subscribed)."""
        _check_channel(channel)

        async def collect() -> list[set[str]]:
            return [set(conn.topics) for conn in self._conns[channel] if not conn.closed]

        return self._require_server().run_coroutine(collect()).result(timeout)

    # -- engine -> loop

    def _on_engine_event(self, event: EngineEvent) -> None:
        """Runs under the engine lock on the engine caller's thread: translate, then hand to the loop."""
        try:
            pushes = self._translator.on_event(event)
        except Exception:
            logger.exception("bybit emulator: failed to translate %s", type(event).__name__)
            return
        if pushes:
            self._call_in_loop(self._fanout, pushes)
        if isinstance(event, PriceEvent):
            self._call_in_loop(self._publish_ticker, event.prices, event.timestamp)

    def _fanout(self, pushes: list[_Push]) -> None:
        for push in pushes:
            self._emit(PRIVATE, push)

    def _emit(self, channel: str, item: _Push | tuple[str, str]) -> None:
        """Deliver one data push on ``channel``, applying the duplicate/reorder faults."""
        if not any(self._targets(conn, item) for conn in self._conns[channel]):
            return
        copies, hold = self._faults._take_push_action(channel)
        if hold:
            self._held[channel].append(item)
            return
        for _ in range(copies):
            self._deliver(channel, item)
        held, self._held[channel] = self._held[channel], []
        for late in held:
            self._deliver(channel, late)

    @staticmethod
    def _targets(conn: _Conn, item: _Push | tuple[str, str]) -> list[str]:
        if isinstance(item, _Push):
            return conn.topics_for(item.kind)
        topic = item[0]
        return [topic] if topic in conn.topics else []

    def _deliver(self, channel: str, item: _Push | tuple[str, str]) -> None:
        for conn in list(self._conns[channel]):
            for topic in self._targets(conn, item):
                if isinstance(item, _Push):
                    conn.send_json({"id": item.push_id, "topic": topic, "creationTime": item.timestamp,
                                    "data": [item.row]})
                else:
                    conn.send_text(item[1])

    # -- tickers (loop thread)

    def _ticker(self, symbol: str) -> _Ticker:
        ticker = self._tickers.get(symbol)
        return ticker if ticker is not None else self._new_ticker(self._engine.prices(symbol))

    def _new_ticker(self, prices: Prices) -> _Ticker:
        ticker = _Ticker(prices.last, prices.last, prices.last, prices.last)
        ticker.fields = ticker.update(prices, self._ticks[prices.symbol])
        self._tickers[prices.symbol] = ticker
        return ticker

    def _publish_ticker(self, prices: Prices, timestamp: int) -> None:
        """Diff against the last published fields; nobody subscribed yet means nothing to send."""
        ticker = self._tickers.get(prices.symbol)
        if ticker is None:
            self._new_ticker(prices)
            return
        fields = ticker.update(prices, self._ticks[prices.symbol])
        changed = {k: v for k, v in fields.items() if ticker.fields.get(k) != v}
        ticker.fields = fields
        if not changed:
            return
        ticker.cs += 1
        topic = f"tickers.{prices.symbol}"
        frame = {"topic": topic, "type": "delta", "data": {"symbol": prices.symbol, **changed},
                 "cs": ticker.cs, "ts": timestamp}
        self._emit(PUBLIC, (topic, _dumps(frame)))

    def _ticker_snapshot(self, symbol: str) -> str:
        ticker = self._ticker(symbol)
        return _dumps({"topic": f"tickers.{symbol}", "type": "snapshot", "data": dict(ticker.fields),
                       "cs": ticker.cs, "ts": self._clock()})

    # -- fault actions (scheduled from any thread, run on the loop)

    def _abort_channel(self, channel: str) -> None:
        for conn in list(self._conns[channel]):
            conn.closed = True
            if conn.transport is not None:
                conn.transport.abort()
        self._held[channel] = []

    def _send_raw_now(self, channel: str, text: str) -> None:
        for conn in list(self._conns[channel]):
            conn.send_text(text)

    def _wake_all(self) -> None:
        for conns in self._conns.values():
            for conn in conns:
                conn.wake.set()

    # -- aiohttp app

    def _build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v5/private", self._private_ws)
        app.router.add_get("/v5/public/linear", self._public_ws)
        app.router.add_route("*", "/{tail:.*}", self._rest)
        return app

