"""The REST routes of the loopback Binance (a mixin of BinanceEmulator): auth and signatures, public
endpoints, listen keys, account state, orders, algo orders, position mode."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from gridbot.emulator._base import wall_ms as _wall_ms
from gridbot.emulator.binance._account import (
    SlotMargins,
    account_information,
    leverage_bracket_row,
    leverage_response,
)
from gridbot.emulator.binance._faults import (
    BinanceFaults,
)
from gridbot.emulator.binance._market import (
    book_ticker,
    coin_config,
    exchange_symbol,
    margin_pair,
    premium_index,
    price_ticker,
    ticker_24hr,
)
from gridbot.emulator.binance._payloads import (
    _rest_algo,
    _rest_balance,
    _rest_order,
    _rest_position,
    _trade_window,
    _user_trade,
)
from gridbot.emulator.binance._sockets import (
    _Hub,
    _ListenKeys,
)
from gridbot.emulator.binance._translator import (
    _Translator,
)
from gridbot.emulator.binance._wire import (
    _DEFAULT_RECV_WINDOW,
    _FUTURE_TOLERANCE_MS,
    _MAX_RECV_WINDOW,
    _ApiError,
    _Handler,
    _int_param,
    _json,
    _mandatory,
    _SignedHandler,
    _strip_signature,
)
from gridbot.emulator.engine import (
    Engine,
    EngineConfig,
    EngineError,
    Order,
    SymbolConfig,
)


class _RestRoutes:
    """The REST handlers; BinanceEmulator supplies the state they read and the loop hooks."""

    _engine: Engine
    _config: EngineConfig
    _clock: Callable[[], int]
    _api_key: str
    _api_secret: str
    _faults: BinanceFaults
    _keys: _ListenKeys
    _translator: _Translator
    _created: int
    _symbols: dict[str, SymbolConfig]

    def _on_loop(self, action: Callable[[_Hub], None]) -> None:
        raise NotImplementedError

    # ---- auth

    def _check_api_key(self, request: web.Request) -> None:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise _ApiError(401, -2014, "API-key format invalid.")
        if self._faults.auth_rejected or not hmac.compare_digest(key.encode(), self._api_key.encode()):
            raise _ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")

    async def _verified_params(self, request: web.Request) -> dict[str, str]:
        """API key, timestamp window and HMAC-SHA256 signature of ``query + body``, as Binance checks them."""
        self._check_api_key(request)
        raw_query = request.raw_path.partition("?")[2]
        raw_body = await request.text() if request.can_read_body else ""
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        params.update(parse_qsl(raw_body, keep_blank_values=True))
        _mandatory(params, "timestamp")
        _mandatory(params, "signature")
        self._check_timestamp(params)
        query, sig_q = _strip_signature(raw_query)
        body, sig_b = _strip_signature(raw_body)
        signature = (sig_b or sig_q or "").lower()
        expected = hmac.new(self._api_secret.encode(), (query + body).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise _ApiError(400, -1022, "Signature for this request is not valid.")
        params.pop("signature", None)
        return params

    @staticmethod
    def _check_timestamp(params: Mapping[str, str]) -> None:
        timestamp = _int_param(params, "timestamp")
        window = _int_param(params, "recvWindow", _DEFAULT_RECV_WINDOW)
        if window <= 0 or window > _MAX_RECV_WINDOW:
            raise _ApiError(400, -1131, "recvWindow must be less than 60000")
        now = _wall_ms()
        if timestamp > now + _FUTURE_TOLERANCE_MS:
            raise _ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - timestamp > window:
            raise _ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    def _signed(self, handler: _SignedHandler) -> _Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            params = await self._verified_params(request)
            return _json(handler(params))

        return run

    # ---- public REST

    async def _ping(self, request: web.Request) -> web.StreamResponse:
        return _json({})

    async def _time(self, request: web.Request) -> web.StreamResponse:
        return _json({"serverTime": self._clock()})

    async def _exchange_info(self, request: web.Request) -> web.StreamResponse:
        return _json({
            "timezone": "UTC",
            "serverTime": self._clock(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": self._config.coin, "marginAvailable": True, "autoAssetExchange": "0"}],
            "symbols": [exchange_symbol(cfg, self._created, self._config.coin)
                        for cfg in self._config.symbols],
        })

    async def _ticker_24hr(self, request: web.Request) -> web.StreamResponse:
        """One object with ``symbol``, else a list of every symbol's."""
        symbol = self._symbol_param(request.query, required=False)
        now = self._clock()
        if symbol is not None:
            return _json(ticker_24hr(symbol, self._translator.day_stats(symbol), now))
        return _json([ticker_24hr(s, self._translator.day_stats(s), now) for s in self._engine.symbols])

    def _per_symbol(self, request: web.Request, row: Callable[[str, int], dict[str, Any]]) -> web.Response:
        """One object with ``symbol``, else a list of every symbol's (the market-data convention)."""
        symbol = self._symbol_param(request.query, required=False)
        now = self._clock()
        if symbol is not None:
            return _json(row(symbol, now))
        return _json([row(s, now) for s in self._engine.symbols])

    async def _premium_index(self, request: web.Request) -> web.StreamResponse:
        return self._per_symbol(request, lambda s, now: premium_index(self._engine.prices(s), now))

    async def _price_ticker(self, request: web.Request) -> web.StreamResponse:
        return self._per_symbol(request, lambda s, now: price_ticker(self._engine.prices(s), now))

    async def _book_ticker(self, request: web.Request) -> web.StreamResponse:
        return self._per_symbol(request, lambda s, now: book_ticker(
            self._engine.prices(s), self._symbols[s].tick_size, now))

    def _coin_configs(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """The spot wallet's coins (CCXT's load_markets reads it first): the margin coin and every base
        asset, all balances 0 - this account trades futures only."""
        coin = self._config.coin
        bases = [s[: -len(coin)] for s in self._engine.symbols if s.endswith(coin)]
        return [coin_config(c) for c in dict.fromkeys([coin, *bases])]

    async def _margin_pairs(self, request: web.Request) -> web.StreamResponse:
        """Cross-margin pairs (MARKET_DATA: an API key, no signature): one per symbol."""
        self._check_api_key(request)
        coin = self._config.coin
        pairs = [margin_pair(n, s[: -len(coin)], coin)
                 for n, s in enumerate(self._engine.symbols, start=1) if s.endswith(coin)]
        return _json(pairs)

    # ---- listen key

    async def _listen_key_post(self, request: web.Request) -> web.StreamResponse:
        self._check_api_key(request)
        return _json({"listenKey": self._keys.create_or_extend()})

    async def _listen_key_put(self, request: web.Request) -> web.StreamResponse:
        self._check_api_key(request)
        key = self._keys.extend(await self._listen_key_param(request))
        if key is None:
            raise _ApiError(400, -1125, "This listenKey does not exist.")
        return _json({"listenKey": key})

    async def _listen_key_delete(self, request: web.Request) -> web.StreamResponse:
        self._check_api_key(request)
        key = self._keys.delete(await self._listen_key_param(request))
        if key is None:
            raise _ApiError(400, -1125, "This listenKey does not exist.")
        self._on_loop(lambda hub: hub.close_key(key, None))
        return _json({})

    @staticmethod
    async def _listen_key_param(request: web.Request) -> str | None:
        params = dict(parse_qsl(request.raw_path.partition("?")[2]))
        if request.can_read_body:
            params.update(parse_qsl(await request.text()))
        return params.get("listenKey") or None

    # ---- account state

    def _symbol_param(self, params: Mapping[str, str], required: bool) -> str | None:
        symbol = params.get("symbol")
        if not symbol:
            if required:
                _mandatory(params, "symbol")
            return None
        if symbol not in self._symbols:
            raise _ApiError(400, -1121, "Invalid symbol.")
        return symbol

    def _position_risk(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """v3: only symbols with a position or an open order; every slot of such a symbol."""
        wanted = self._symbol_param(params, required=False)
        engine = self._engine
        rows = []
        with engine.lock:  # one consistent snapshot
            slots = (1, 2) if engine.hedge_mode else (0,)
            with_orders = {o.symbol for o in engine.open_orders(wanted)}
            touched = {(p.symbol, p.position_idx): p for p in engine.positions(wanted)}
            symbols = sorted({s for (s, _), p in touched.items() if p.size != 0} | with_orders)
            for symbol in symbols:
                mark = engine.prices(symbol).mark
                for idx in slots:
                    position = touched.get((symbol, idx)) or engine.position(symbol, idx)
                    rows.append(_rest_position(position, mark, engine.open_order_margin(symbol, idx)))
        return rows

    def _balance(self, params: dict[str, str]) -> list[dict[str, Any]]:
        return [_rest_balance(self._engine.wallet())]

    def _regular_payload(self, order: Order) -> dict[str, Any]:
        parent = self._engine.order(order.parent_id) if order.parent_id is not None else None
        parent_meta = self._translator.meta(parent) if parent is not None else None
        trigger = parent.trigger_price if parent is not None else order.trigger_price
        return _rest_order(order, self._translator.meta(order), parent_meta,
                           self._translator.is_expired(order.order_id), trigger)

    def _algo_payload(self, order: Order) -> dict[str, Any]:
        child_id, trigger_time = self._translator.algo_child(order.order_id)
        child = self._engine.order(child_id) if child_id is not None else None
        return _rest_algo(order, self._translator.meta(order), child, trigger_time)

    def _open_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._symbol_param(params, required=False)
        with self._engine.lock:
            orders = [o for o in self._engine.open_orders(symbol) if not o.is_conditional]
            return [self._regular_payload(o) for o in orders]

    def _open_algo_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._symbol_param(params, required=False)
        with self._engine.lock:
            return [
                self._algo_payload(o)
                for o in self._engine.open_orders(symbol)
                if o.is_conditional and o.status == "Untriggered"
            ]

    def _leverage_bracket(self, params: dict[str, str]) -> Any:
        """A list of every symbol's brackets; one object when ``symbol`` is sent (as documented)."""
        symbol = self._symbol_param(params, required=False)
        if symbol is not None:
            return leverage_bracket_row(symbol, self._engine.brackets(symbol))
        return [leverage_bracket_row(s, self._engine.brackets(s)) for s in self._engine.symbols]

    def _change_leverage(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol_param(params, required=True) or ""
        leverage = _int_param(params, "leverage")
        try:
            self._engine.set_leverage(symbol, leverage)
        except EngineError as exc:
            if exc.code == "leverage_exceeds_notional":
                raise _ApiError(400, -2027, "Exceeded the maximum allowable position at current "
                                            "leverage.") from None
            raise _ApiError(400, -4028, f"Leverage {leverage} is not valid") from None
        return leverage_response(symbol, Decimal(leverage), self._engine.brackets(symbol))

    def _account(self, *, v2: bool) -> dict[str, Any]:
        engine = self._engine
        with engine.lock:  # one consistent snapshot
            slots: list[SlotMargins] = []
            for symbol in engine.symbols:
                for idx in ((1, 2) if engine.hedge_mode else (0,)):
                    slots.append((engine.position(symbol, idx), engine.open_order_margin(symbol, idx),
                                  engine.brackets(symbol)))
            return account_information(engine.wallet(), slots, v2=v2)

    def _user_trades(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """GET /fapi/v1/userTrades: the symbol's fills (forced closes included), ascending by id."""
        symbol = self._symbol_param(params, required=True) or ""
        limit = _int_param(params, "limit", 500)
        if not 1 <= limit <= 1000:
            raise _ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        fills = list(self._engine.fills(symbol))
        if params.get("orderId"):
            order_id = _int_param(params, "orderId")
            fills = [f for f in fills if f.order_id == order_id]
        if params.get("fromId"):
            if params.get("startTime") or params.get("endTime"):
                raise _ApiError(400, -1128, "Combination of optional parameters invalid.")
            from_id = _int_param(params, "fromId")
            return [_user_trade(f) for f in fills if f.trade_id >= from_id][:limit]
        start, end = _trade_window(params, self._clock())
        in_window = [f for f in fills if start <= f.timestamp <= end]
        page = in_window[:limit] if params.get("startTime") else in_window[-limit:]
        return [_user_trade(f) for f in page]
