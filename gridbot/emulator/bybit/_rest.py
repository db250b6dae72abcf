"""The REST routes of the loopback Bybit (a mixin of BybitEmulator): envelope, signature check, and every
endpoint."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from aiohttp import web

from gridbot.emulator._base import wall_ms as _wall_ms
from gridbot.emulator.bybit._faults import BybitFaults
from gridbot.emulator.bybit._market import account_info, api_key_info, coin_info, instrument
from gridbot.emulator.bybit._sockets import _Ticker
from gridbot.emulator.bybit._translator import _Translator
from gridbot.emulator.bybit._wire import (
    _UID,
    _dec,
    _dumps,
    _execution_window,
    _flag,
    _IdBook,
    _int,
    _matching_ids,
    _rest_error_from,
    _RestError,
    _Row,
    _s,
    _sign,
)
from gridbot.emulator.engine import (
    Engine,
    EngineConfig,
    EngineError,
    Fill,
    Position,
)


class _RestRoutes:
    """The REST handlers; BybitEmulator supplies the state they read."""

    _config: EngineConfig
    _api_key: str
    _api_secret: str
    _clock: Callable[[], int]
    _created: int
    _engine: Engine
    _ids: _IdBook
    _translator: _Translator
    _faults: BybitFaults
    _ticks: dict[str, Decimal]
    _routes: dict[tuple[str, str], tuple[Callable[[_Row], _Row], bool]]

    def _ticker(self, symbol: str) -> _Ticker:
        raise NotImplementedError

    def _count(self, request: web.Request) -> None:
        raise NotImplementedError

    # -- REST

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self._count(request)
        delay = self._faults._rest_delay_for(path)
        if delay > 0:
            await asyncio.sleep(delay)
        failure = self._faults._take_rest_failure(path)
        if failure is not None:
            return self._json(self._envelope({}, failure.ret_code, failure.ret_msg), failure.http_status)
        route = self._routes.get((request.method, path))
        if route is None:
            return web.Response(status=404, text="404 page not found")
        handler, signed = route
        body = await request.text()
        try:
            if signed:
                payload = request.rel_url.raw_query_string if request.method == "GET" else body
                self._verify(request, payload)
            result = handler(self._params(request, body))
        except _RestError as err:
            return self._json(self._envelope({}, err.ret_code, err.ret_msg), err.http_status)
        except EngineError as err:
            rest_err = _rest_error_from(err)
            return self._json(self._envelope({}, rest_err.ret_code, rest_err.ret_msg))
        return self._json(self._envelope(result))

    @staticmethod
    def _params(request: web.Request, body: str) -> _Row:
        if request.method == "GET":
            return dict(request.query)
        try:
            params = json.loads(body) if body else {}
        except ValueError:
            raise _RestError(10001, "params error: request body is not JSON") from None
        if not isinstance(params, dict):
            raise _RestError(10001, "params error: request body is not a JSON object")
        return params

    def _verify(self, request: web.Request, payload: str) -> None:
        headers = request.headers
        key = headers.get("X-BAPI-API-KEY", "")
        if self._faults._auth_is_rejected() or not hmac.compare_digest(key, self._api_key):
            raise _RestError(10003, "API key is invalid.")
        timestamp = headers.get("X-BAPI-TIMESTAMP", "")
        recv_window = headers.get("X-BAPI-RECV-WINDOW", "5000")
        now = _wall_ms()
        try:
            ts, window = int(timestamp), int(recv_window)
        except ValueError:
            raise _RestError(10002, "invalid request, please check your timestamp and recv_window") from None
        if not now - window <= ts < now + 1000:
            raise _RestError(
                10002,
                "invalid request, please check your server timestamp or recv_window param. "
                f"req_timestamp[{ts}],server_timestamp[{now}],recv_window[{window}]",
            )
        expected = _sign(self._api_secret, timestamp + key + recv_window + payload)
        if not hmac.compare_digest(headers.get("X-BAPI-SIGN", ""), expected):
            raise _RestError(10004, "error sign! please check your signature generation algorithm.")

    def _envelope(self, result: _Row, ret_code: int = 0, ret_msg: str = "OK") -> _Row:
        return {"retCode": ret_code, "retMsg": ret_msg, "result": result, "retExtInfo": {},
                "time": self._clock()}

    @staticmethod
    def _json(body: _Row, status: int = 200) -> web.Response:
        return web.Response(status=status, text=_dumps(body), content_type="application/json")

    def _require_linear(self, params: _Row) -> bool:
        """True for linear; False for another real category (answered with an empty list)."""
        category = params.get("category")
        if category == "linear":
            return True
        if category in ("inverse", "option", "spot"):
            return False
        raise _RestError(10001, "params error: category invalid")

    def _require_symbol(self, symbol: Any) -> str:
        if not isinstance(symbol, str) or symbol not in self._ticks:
            raise _RestError(10001, "params error: symbol invalid")
        return symbol

    def _position_list(self, params: _Row) -> _Row:
        symbol, settle = params.get("symbol"), params.get("settleCoin")
        if not self._require_linear(params):
            return {"list": [], "nextPageCursor": "", "category": params["category"]}
        if not symbol and not settle:
            raise _RestError(10001, "Missing some parameters that must be filled in, symbol or settleCoin")
        if symbol:
            rows = self._symbol_positions(self._require_symbol(symbol))
        elif settle == self._config.coin:
            rows = self._translator.rest_position_rows([p for p in self._engine.positions() if p.size > 0])
        else:
            rows = []
        return {"list": rows, "nextPageCursor": "", "category": "linear"}

    def _symbol_positions(self, symbol: str) -> list[_Row]:
        slots = (1, 2) if self._engine.hedge_mode else (0,)
        positions = [p for p in self._engine.positions(symbol) if p.position_idx in slots]
        rows = dict(zip((p.position_idx for p in positions), self._translator.rest_position_rows(positions),
                        strict=True))
        mark, leverage = self._engine.prices(symbol).mark, self._engine.leverage(symbol)
        flat = self._translator.flat_position_row
        return [rows.get(idx) or flat(symbol, idx, mark, leverage, self._created) for idx in slots]

    def _wallet_balance(self, params: _Row) -> _Row:
        if params.get("accountType") != "UNIFIED":
            raise _RestError(10001, "accountType only support UNIFIED.")
        row = self._translator.rest_wallet_row(self._engine.wallet())
        coins = params.get("coin")
        if coins and self._config.coin not in str(coins).split(","):
            row["coin"] = []
        return {"list": [row]}

    def _order_realtime(self, params: _Row) -> _Row:
        if not self._require_linear(params):
            return {"list": [], "nextPageCursor": "", "category": params["category"]}
        symbol = params.get("symbol")
        settle = params.get("settleCoin")
        if settle and settle != self._config.coin:
            return {"list": [], "nextPageCursor": "", "category": "linear"}
        symbol = self._require_symbol(symbol) if symbol else None
        rows = self._translator.rest_order_rows(self._engine.open_orders(symbol))
        by_id = params.get("orderId") or params.get("orderLinkId")
        if by_id:  # asked by id, Bybit also answers recently finished orders
            rows = _matching_ids(rows + self._translator.finished_order_rows(symbol), params)[:1]
        return {"list": rows, "nextPageCursor": "", "category": "linear"}

    def _order_history(self, params: _Row) -> _Row:
        """Finished orders, most recent first, ``limit`` (1..50, default 20) per page, offset cursors."""
        if not self._require_linear(params):
            return {"list": [], "nextPageCursor": "", "category": params["category"]}
        symbol = params.get("symbol")
        rows = self._translator.finished_order_rows(self._require_symbol(symbol) if symbol else None)
        rows = _matching_ids(rows, params)
        limit = _int(params, "limit", 20)
        if not 1 <= limit <= 50:
            raise _RestError(10001, "params error: limit must be between 1 and 50")
        cursor = params.get("cursor") or "0"
        if not str(cursor).isdigit():
            raise _RestError(10001, "params error: cursor invalid")
        start = int(cursor)
        page = rows[start:start + limit]
        next_cursor = str(start + limit) if start + limit < len(rows) else ""
        return {"list": page, "nextPageCursor": next_cursor, "category": "linear"}

    def _execution_list(self, params: _Row) -> _Row:
        """Executions newest first (execTime, then id), ``limit`` 1..100 (default 50), cursor pages.

        The cursor names the last execution of the page, so fills made between two pages do not shift
        the next one.  ``orderId`` > ``orderLinkId`` > ``symbol`` (the documented priority).
        """
        if not self._require_linear(params):
            return {"list": [], "nextPageCursor": "", "category": params["category"]}
        limit = _int(params, "limit", 50)
        if not 1 <= limit <= 100:
            raise _RestError(10001, "params error: limit must be between 1 and 100")
        start, end = _execution_window(params, self._clock())
        keep = self._execution_filter(params, start, end)
        rows = self._translator.execution_rows(keep)
        cursor = str(params.get("cursor") or "")
        if cursor:
            after = self._ids.trade_id_of_cursor(cursor)
            if after is None:
                raise _RestError(10001, "params error: cursor invalid")
            rows = [(f, r) for f, r in rows if (f.timestamp, f.trade_id) < after]
        page = rows[:limit]
        next_cursor = self._ids.cursor(page[-1][0]) if len(rows) > limit else ""
        return {"nextPageCursor": next_cursor, "category": "linear", "list": [r for _, r in page]}

    def _execution_filter(self, params: _Row, start: int, end: int) -> Callable[[Fill, _Row], bool]:
        order_id, link_id = params.get("orderId"), params.get("orderLinkId")
        symbol = params.get("symbol")
        if symbol and not (order_id or link_id):
            self._require_symbol(symbol)
        exec_type = params.get("execType")

        def keep(fill: Fill, row: _Row) -> bool:
            if not start <= fill.timestamp <= end or (exec_type and row["execType"] != exec_type):
                return False
            if order_id:
                return bool(row["orderId"] == order_id)
            if link_id:
                return bool(row["orderLinkId"] == link_id)
            return not symbol or fill.symbol == symbol

        return keep

    def _order_create(self, params: _Row) -> _Row:
        self._require_linear_only(params)
        symbol = self._require_symbol(params.get("symbol"))
        side, order_type = params.get("side"), params.get("orderType")
        if side not in ("Buy", "Sell"):
            raise _RestError(10001, "params error: side invalid")
        if order_type not in ("Limit", "Market"):
            raise _RestError(10001, "params error: orderType invalid")
        qty = _dec(params, "qty")
        price = _dec(params, "price") if order_type == "Limit" else None
        if qty is None or qty <= 0:
            raise _RestError(10001, "params error: qty invalid")
        common: _Row = {
            "symbol": symbol, "side": side, "order_type": order_type, "qty": qty, "price": price,
            "position_idx": _int(params, "positionIdx", 0),
            "client_order_id": str(params.get("orderLinkId") or ""),
        }
        trigger = _dec(params, "triggerPrice", required=False)
        if trigger is not None and trigger > 0:
            kind = self._conditional_kind(symbol, side, trigger, params.get("triggerDirection"))
            with self._translator.origin("Stop", "CreateByUser"):
                order = self._engine.place_conditional(
                    **common, trigger_price=trigger, reduce_only=_flag(params.get("reduceOnly")), kind=kind)
        else:
            order = self._engine.place_order(
                **common, reduce_only=_flag(params.get("reduceOnly")),
                post_only=params.get("timeInForce") == "PostOnly")
        return {"orderId": self._ids.order_wire_id(order.order_id), "orderLinkId": order.client_order_id}

    def _require_linear_only(self, params: _Row) -> None:
        if params.get("category") != "linear":
            raise _RestError(10001, "params error: category invalid (the emulator serves linear only)")

    def _conditional_kind(self, symbol: str, side: str, trigger: Decimal, direction: Any) -> str:
        """Bybit's triggerDirection (1 rises to, 2 falls to) -> the engine's TP/SL trigger sense."""
        mark = self._engine.prices(symbol).mark
        if direction in (None, "", 0, "0"):
            rises = trigger > mark
        elif str(direction) in ("1", "2"):
            rises = str(direction) == "1"
        else:
            raise _RestError(10001, "params error: triggerDirection invalid")
        now = f"trigger_price[{_s(trigger)}] {{}} current[{_s(mark)}]??MarkPrice"
        if rises and trigger <= mark:
            raise _RestError(110092, "expect Rising, but " + now.format("<="))
        if not rises and trigger >= mark:
            raise _RestError(110093, "expect Falling, but " + now.format(">="))
        return "TakeProfit" if rises == (side == "Sell") else "StopLoss"

    def _order_cancel(self, params: _Row) -> _Row:
        self._require_linear_only(params)
        symbol = self._require_symbol(params.get("symbol"))
        wire_id, link_id = params.get("orderId"), params.get("orderLinkId")
        if wire_id:
            engine_id = self._ids.engine_id(str(wire_id))
        elif link_id:
            engine_id = self._translator.find_by_link(symbol, str(link_id))
        else:
            raise _RestError(10001, "params error: orderId or orderLinkId is required")
        if engine_id is None:
            raise _RestError(110001, "order not exists or too late to cancel")
        # the engine cancels a triggered conditional through its resting child
        order = self._engine.cancel_order(symbol=symbol, order_id=engine_id)
        return {"orderId": self._ids.order_wire_id(order.order_id), "orderLinkId": order.client_order_id}

    def _trading_stop(self, params: _Row) -> _Row:
        self._require_linear_only(params)
        symbol = self._require_symbol(params.get("symbol"))
        position = self._engine.position(symbol, _int(params, "positionIdx", 0))
        targets = {"TakeProfit": _dec(params, "takeProfit", required=False),
                   "StopLoss": _dec(params, "stopLoss", required=False)}
        if all(v is None for v in targets.values()):
            raise _RestError(10001, "params error: takeProfit, stopLoss or trailingStop is required")
        if position.size == 0:
            raise _RestError(10001, "can not set tp/sl/ts for zero position")
        changed = False
        for kind, value in targets.items():
            if value is not None:
                changed |= self._set_tpsl(position, kind, value)
        if not changed:
            raise _RestError(34040, "not modified")
        return {}

    def _set_tpsl(self, position: Position, kind: str, trigger: Decimal) -> bool:
        """Place, replace or (trigger 0) cancel the position's TP/SL conditional; False if unchanged."""
        existing = self._translator.tpsl_order(position.symbol, position.position_idx, kind)
        if existing is not None and existing.trigger_price == trigger:
            return False
        if trigger == 0 and existing is None:
            return False
        if trigger != 0:
            self._check_tpsl_side(position, kind, trigger)
        if existing is not None:
            self._engine.cancel_order(symbol=position.symbol, order_id=existing.order_id)
        if trigger == 0:
            return True
        create_type = "CreateByTakeProfit" if kind == "TakeProfit" else "CreateByStopLoss"
        with self._translator.origin(kind, create_type):
            order = self._engine.place_conditional(
                symbol=position.symbol, side="Sell" if position.side == "Buy" else "Buy", order_type="Market",
                qty=position.size, trigger_price=trigger, reduce_only=True,
                position_idx=position.position_idx, kind=kind)
        self._translator.set_tpsl(position.symbol, position.position_idx, kind, order.order_id)
        return True

    def _check_tpsl_side(self, position: Position, kind: str, trigger: Decimal) -> None:
        base = self._engine.prices(position.symbol).last
        above = (kind == "TakeProfit") == (position.side == "Buy")
        if above and trigger <= base:
            raise _RestError(10001, f"{kind}:{_s(trigger)} set for {position.side} position should be "
                                    f"higher than base_price:{_s(base)}??LastPrice")
        if not above and trigger >= base:
            raise _RestError(10001, f"{kind}:{_s(trigger)} set for {position.side} position should be "
                                    f"lower than base_price:{_s(base)}??LastPrice")

    def _switch_mode(self, params: _Row) -> _Row:
        self._require_linear_only(params)
        if not params.get("symbol") and not params.get("coin"):
            raise _RestError(10001, "params error: symbol or coin is required")
        mode = _int(params, "mode", -1)
        if mode not in (0, 3):
            raise _RestError(10001, "params error: mode invalid")
        hedge = mode == 3
        if self._engine.hedge_mode == hedge:
            raise _RestError(110025, "Position mode is not modified")
        if self._engine.open_orders():
            raise _RestError(110028, "Open orders exist, so you cannot change position mode")
        if any(p.size > 0 for p in self._engine.positions()):
            raise _RestError(110024, "You have an existing position, so position mode cannot be switched")
        self._engine.set_hedge_mode(hedge)
        return {}

    def _set_leverage(self, params: _Row) -> _Row:
        """Cross margin: ``buyLeverage`` must equal ``sellLeverage``; unchanged is 110043."""
        self._require_linear_only(params)
        symbol = self._require_symbol(params.get("symbol"))
        buy, sell = _dec(params, "buyLeverage"), _dec(params, "sellLeverage")
        if buy != sell or buy is None:
            raise _RestError(10001, "params error: buyLeverage must equal sellLeverage in cross margin")
        if buy == self._engine.leverage(symbol):
            raise _RestError(110043, "Set leverage not modified")
        self._engine.set_leverage(symbol, buy)
        return {}

    def _market_time(self, params: _Row) -> _Row:
        now = _wall_ms()
        return {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}

    def _instruments_info(self, params: _Row) -> _Row:
        """Linear perpetuals (``symbol``, ``status``, ``baseCoin`` filters; one page: ``limit`` 1..1000)."""
        if not self._require_linear(params):
            return {"category": params["category"], "list": [], "nextPageCursor": ""}
        limit = _int(params, "limit", 500)
        if not 1 <= limit <= 1000:
            raise _RestError(10001, "params error: limit must be between 1 and 1000")
        coin = self._config.coin
        rows = [instrument(cfg, coin, self._created, cfg.brackets) for cfg in self._config.symbols]
        for key in ("symbol", "status", "baseCoin"):
            if params.get(key):
                rows = [r for r in rows if r[key] == params[key]]
        return {"category": "linear", "list": rows[:limit], "nextPageCursor": ""}

    def _coin_info(self, params: _Row) -> _Row:
        coins = [self._config.coin]
        if params.get("coin"):
            coins = [c for c in coins if c == params["coin"]]
        return {"rows": [coin_info(c) for c in coins]}

    def _query_api(self, params: _Row) -> _Row:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._created / 1000))
        return api_key_info(self._api_key, _UID, created)

    def _account_info(self, params: _Row) -> _Row:
        return account_info(self._created)

    def _market_tickers(self, params: _Row) -> _Row:
        if not self._require_linear(params):
            return {"category": params["category"], "list": []}
        symbol = params.get("symbol")
        symbols = [self._require_symbol(symbol)] if symbol else list(self._ticks)
        return {"category": "linear", "list": [dict(self._ticker(s).fields) for s in symbols]}

