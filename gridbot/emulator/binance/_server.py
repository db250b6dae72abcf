"""BinanceEmulator: the loopback server, its lifecycle, app and middleware, and the WebSocket endpoints."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from gridbot.emulator._base import LoopbackEmulator
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
    _dumps,
    _Handler,
)
from gridbot.emulator.engine import (
    EngineConfig,
    SymbolConfig,
)

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------ server


def _default_config() -> EngineConfig:
    return EngineConfig(
        symbols=(
            SymbolConfig("BTCUSDT", Decimal("60000")),
            SymbolConfig("ETHUSDT", Decimal("3000"), tick_size=Decimal("0.01")),
        )
    )


class BinanceEmulator(LoopbackEmulator, _TradingRoutes):
    """A loopback Binance USDⓈ-M futures exchange that the unmodified python-binance SDK talks to."""

    _exchange = "binance"

    def _default_config(self) -> EngineConfig:
        return _default_config()

    def _init_exchange(self) -> None:
        start_prices = {s: self._engine.prices(s).last for s in self._engine.symbols}
        self._translator = _Translator(self._sink, start_prices)
        self._engine.add_listener(self._translator.on_event)
        self._keys = _ListenKeys(self._clock)
        self._faults = BinanceFaults(self)
        self._hub = _Hub()
        self._key_timer: Ticker | None = None
        self._symbols = {cfg.symbol: cfg for cfg in self._config.symbols}

    # ---- public surface

    @property
    def faults(self) -> BinanceFaults:
        return self._faults

    @property
    def listen_key(self) -> str | None:
        """The active listen key, if any (handy in tests)."""
        return self._keys.current

    def _on_started(self, server: LoopbackServer) -> None:
        self._key_timer = server.every(_KEY_CHECK_INTERVAL, self._check_listen_key)

    def _on_stopping(self) -> None:
        if self._key_timer is not None:
            self._key_timer.cancel()
            self._key_timer = None

    def _on_stopped(self) -> None:
        self._hub = _Hub()

    # ---- plumbing

    def _sink(self, frames: list[tuple[str, Any]]) -> None:
        """Engine listener output -> the loop, in call order (called under the engine lock)."""
        self._call_in_loop(self._hub.submit, frames)

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


