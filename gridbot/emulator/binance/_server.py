"""BinanceEmulator: the loopback server, its lifecycle, app and middleware, and the WebSocket endpoints."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from types import TracebackType
from typing import Any

from aiohttp import WSMsgType, web

from gridbot.emulator._runner import LoopbackServer, Ticker
from gridbot.emulator.binance._faults import (
    BinanceFaults,
)
from gridbot.emulator.binance._sockets import (
    _Conn,
    _Hub,
    _ListenKeys,
    _market_request,
)
from gridbot.emulator.binance._trading import _TradingRoutes
from gridbot.emulator.binance._translator import (
    _Translator,
)
from gridbot.emulator.binance._wire import (
    _KEY_CHECK_INTERVAL,
    PRIVATE,
    PUBLIC,
    _ApiError,
    _check_price_interval,
    _dumps,
    _Handler,
    _wall_ms,
)
from gridbot.emulator.engine import (
    Engine,
    EngineConfig,
    SymbolConfig,
)
from gridbot.endpoints import Endpoints

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------ server


def _default_config() -> EngineConfig:
    return EngineConfig(
        symbols=(
            SymbolConfig("BTCUSDT", Decimal("60000")),
            SymbolConfig("ETHUSDT", Decimal("3000"), tick_size=Decimal("0.01")),
        )
    )


class BinanceEmulator(_TradingRoutes):
    """A loopback Binance USDⓈ-M futures exchange that the unmodified python-binance SDK talks to."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        api_key: str = "test-key",
        api_secret: str = "test-secret",
        price_interval: float = 1.0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._config = config or _default_config()
        self._clock: Callable[[], int] = clock or _wall_ms
        self._api_key = api_key
        self._api_secret = api_secret.encode()
        self._price_interval = _check_price_interval(price_interval)
        self._engine = Engine(self._config, self._clock)
        self._created = self._clock()
        start_prices = {s: self._engine.prices(s).last for s in self._engine.symbols}
        self._translator = _Translator(self._sink, start_prices)
        self._engine.add_listener(self._translator.on_event)
        self._keys = _ListenKeys(self._clock)
        self._faults = BinanceFaults(self)
        self._hub = _Hub()
        self._calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._server: LoopbackServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._key_timer: Ticker | None = None
        self._price_timer: Ticker | None = None
        self._symbols = {cfg.symbol: cfg for cfg in self._config.symbols}

    # ---- public surface

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def faults(self) -> BinanceFaults:
        return self._faults

    @property
    def endpoints(self) -> Endpoints:
        server = self._require_server()
        return Endpoints(rest=server.http_url, ws=server.ws_url)

    @property
    def rest_calls(self) -> dict[str, int]:
        """Requests received per ``"METHOD /path"`` (WebSocket upgrades excluded); a copy."""
        with self._calls_lock:
            return dict(self._calls)

    @property
    def price_interval(self) -> float:
        """Seconds between price steps and markPriceUpdate pushes (0: no random walk; prices move only
        through ``engine.set_price``); settable while running."""
        return self._price_interval

    @price_interval.setter
    def price_interval(self, seconds: float) -> None:
        with self._state_lock:
            self._price_interval = _check_price_interval(seconds)
            self._apply_price_interval()

    def _apply_price_interval(self) -> None:
        """Start, retune or stop the price loop to match ``price_interval`` (under the state lock)."""
        timer, server = self._price_timer, self._server
        if timer is not None and self._price_interval > 0:
            timer.interval = self._price_interval
        elif timer is not None:
            timer.cancel()
            self._price_timer = None
        elif server is not None and self._price_interval > 0:
            self._price_timer = server.every(self._price_interval, self._tick)

    @property
    def listen_key(self) -> str | None:
        """The active listen key, if any (handy in tests)."""
        return self._keys.current

    def start(self, timeout: float = 10.0) -> None:
        with self._state_lock:
            if self._server is not None:
                return
            server = LoopbackServer(self._build_app, name="binance-emulator")
            server.start(timeout=timeout)
            try:
                self._server = server
                self._loop = server.loop
                self._key_timer = server.every(_KEY_CHECK_INTERVAL, self._check_listen_key)
                self._apply_price_interval()
            except BaseException:
                self._server, self._loop = None, None
                server.stop(timeout=timeout)
                raise

    def stop(self, timeout: float = 5.0) -> None:
        with self._state_lock:
            server, self._server = self._server, None
            if server is None:
                return
            for timer in (self._price_timer, self._key_timer):
                if timer is not None:
                    timer.cancel()
            self._price_timer = self._key_timer = None
            self._loop = None
            server.stop(timeout=timeout)
            self._hub = _Hub()

    def __enter__(self) -> BinanceEmulator:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- plumbing

    def _require_server(self) -> LoopbackServer:
        server = self._server
        if server is None:
            raise RuntimeError("BinanceEmulator is not started")
        return server

    def _sink(self, frames: list[tuple[str, Any]]) -> None:
        """Engine listener output -> the loop, in call order (called under the engine lock)."""
        loop = self._loop
        if loop is None:
            return
        hub = self._hub
        try:
            loop.call_soon_threadsafe(hub.submit, frames)
        except RuntimeError:
            logger.debug("binance emulator: loop closed, %d frames dropped", len(frames))

    def _on_loop(self, action: Callable[[_Hub], None]) -> None:
        """Run a hub action on the server loop, or now when the server is not running."""
        loop = self._loop
        hub = self._hub
        if loop is None:
            action(hub)
            return
        try:
            loop.call_soon_threadsafe(action, hub)
        except RuntimeError:
            logger.debug("binance emulator: loop closed, fault action dropped")

    def _tick(self) -> None:
        try:
            self._engine.step()
        except Exception:
            logger.exception("binance emulator: engine step failed")

    def _check_listen_key(self) -> None:
        try:
            self._expire_listen_key(force=False)
        except Exception:
            logger.exception("binance emulator: listen key check failed")

    def _expire_listen_key(self, force: bool) -> None:
        key = self._keys.pop_expired(force=force)
        if key is None:
            return
        farewell = _dumps({"e": "listenKeyExpired", "E": str(self._clock()), "listenKey": key})
        self._on_loop(lambda hub: hub.close_key(key, farewell))

    def _count(self, request: web.Request) -> None:
        with self._calls_lock:
            self._calls[f"{request.method} {request.path}"] += 1

    # ---- app

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        get, post, put, delete = "GET", "POST", "PUT", "DELETE"
        routes: list[tuple[str, str, _Handler]] = [
            (get, "/api/v3/ping", self._ping),
            (get, "/api/v3/time", self._time),
            (get, "/fapi/v1/ping", self._ping),
            (get, "/fapi/v1/time", self._time),
            (get, "/fapi/v1/exchangeInfo", self._exchange_info),
            (get, "/fapi/v1/ticker/24hr", self._ticker_24hr),
            (get, "/fapi/v1/ticker/price", self._price_ticker),
            (get, "/fapi/v2/ticker/price", self._price_ticker),
            (get, "/fapi/v1/ticker/bookTicker", self._book_ticker),
            (get, "/fapi/v1/premiumIndex", self._premium_index),
            (get, "/sapi/v1/capital/config/getall", self._signed(self._coin_configs)),
            (get, "/sapi/v1/margin/allPairs", self._margin_pairs),
            (post, "/fapi/v1/listenKey", self._listen_key_post),
            (put, "/fapi/v1/listenKey", self._listen_key_put),
            (delete, "/fapi/v1/listenKey", self._listen_key_delete),
            (get, "/fapi/v3/positionRisk", self._signed(self._position_risk)),
            (get, "/fapi/v3/balance", self._signed(self._balance)),
            (get, "/fapi/v2/balance", self._signed(self._balance)),
            (get, "/fapi/v1/openOrders", self._signed(self._open_orders)),
            (get, "/fapi/v1/openAlgoOrders", self._signed(self._open_algo_orders)),
            (get, "/fapi/v1/order", self._signed(self._query_order)),
            (post, "/fapi/v1/order", self._signed(self._new_order)),
            (delete, "/fapi/v1/order", self._signed(self._cancel_order)),
            (delete, "/fapi/v1/allOpenOrders", self._signed(self._cancel_all_orders)),
            (get, "/fapi/v1/algoOrder", self._signed(self._query_algo)),
            (post, "/fapi/v1/algoOrder", self._signed(self._new_algo)),
            (delete, "/fapi/v1/algoOrder", self._signed(self._cancel_algo)),
            (delete, "/fapi/v1/algoOpenOrders", self._signed(self._cancel_all_algos)),
            (get, "/fapi/v1/userTrades", self._signed(self._user_trades)),
            (get, "/fapi/v1/leverageBracket", self._signed(self._leverage_bracket)),
            (post, "/fapi/v1/leverage", self._signed(self._change_leverage)),
            (get, "/fapi/v2/account", self._signed(lambda params: self._account(v2=True))),
            (get, "/fapi/v3/account", self._signed(lambda params: self._account(v2=False))),
            (get, "/fapi/v1/positionSide/dual", self._signed(self._get_dual)),
            (post, "/fapi/v1/positionSide/dual", self._signed(self._set_dual)),
            (get, "/private/ws", self._private_ws),
            (get, "/private/ws/{key}", self._private_ws),
            (get, "/ws/{name}", self._ws_any),
            (get, "/market/stream", self._public_ws),
            (get, "/market/ws", self._public_ws),
            (get, "/market/ws/{name}", self._public_ws),
            (get, "/stream", self._public_ws),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await handler(request)
        self._count(request)
        try:
            delay = self._faults.delay_for(request.path)
            if delay > 0:
                await asyncio.sleep(delay)
            failure = self._faults.take_failure(request.path)
            if failure is not None:
                return failure.response()
            return await handler(request)
        except _ApiError as exc:
            return exc.response()
        except web.HTTPException:
            raise
        except Exception:
            logger.exception("binance emulator: %s %s failed", request.method, request.path)
            return _ApiError(500, -1000, "An unknown error occurred while processing the request.").response()


    # ---- WebSockets

    def _refusal(self) -> web.StreamResponse | None:
        if self._faults.ws_refused:
            return web.Response(status=503, text="Service Unavailable")
        return None

    async def _ws_any(self, request: web.Request) -> web.StreamResponse:
        """``/ws/<x>``: a user-data socket when ``x`` is the listen key, else a raw market stream."""
        name = request.match_info["name"]
        if self._keys.is_active(name) or (len(name) == 64 and "@" not in name):
            return await self._private_ws(request, name)
        return await self._public_ws(request)

    async def _private_ws(self, request: web.Request, key: str | None = None) -> web.StreamResponse:
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        key = key or request.match_info.get("key") or request.query.get("listenKey", "")
        if not self._keys.is_active(key):
            return _ApiError(400, -1125, "This listenKey does not exist.").response()
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, PRIVATE, request.transport, listen_key=key)
        await self._serve(request, conn, handle_text=None)
        return ws

    async def _public_ws(self, request: web.Request) -> web.StreamResponse:
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        name = request.match_info.get("name")
        if name is not None:
            streams, combined = [name], False
        else:
            raw = request.query.get("streams", "")
            streams, combined = [s for s in raw.split("/") if s], request.path.endswith("stream")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, PUBLIC, request.transport, streams=streams, combined=combined)
        await self._serve(request, conn, handle_text=_market_request)
        return ws

    async def _serve(self, request: web.Request, conn: _Conn,
                     handle_text: Callable[[_Conn, str], None] | None) -> None:
        hub = self._hub
        server = self._server
        hub.conns[conn.channel].add(conn)
        if server is not None:
            server.track_websocket(conn.ws)
        conn.sender = asyncio.ensure_future(conn.run_sender())
        try:
            async for msg in conn.ws:
                if msg.type == WSMsgType.TEXT and handle_text is not None:
                    handle_text(conn, msg.data)
        except (ConnectionError, asyncio.CancelledError):
            logger.debug("binance emulator: %s socket ended", conn.channel)
        finally:
            hub.conns[conn.channel].discard(conn)
            if server is not None:
                server.untrack(conn.ws)
            if conn.sender is not None and not conn.sender.done():
                conn.push_close()
                await asyncio.wait({conn.sender}, timeout=1.0)
                conn.sender.cancel()


