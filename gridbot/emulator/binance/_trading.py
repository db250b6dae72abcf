"""The trading REST routes of the loopback Binance (a mixin of BinanceEmulator): regular and algo orders,
their parameters and rejections, and the position mode."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from gridbot.emulator.binance._payloads import (
    _ack_order,
    _OrderMeta,
)
from gridbot.emulator.binance._rest import _RestRoutes
from gridbot.emulator.binance._wire import (
    _ALGO_TYPES,
    _CLIENT_ID_RE,
    _CONDITIONAL_WIRE_TYPES,
    _POST_ONLY_REJECTED,
    _SIDE_FROM_WIRE,
    _TIME_IN_FORCE,
    _ApiError,
    _bool_param,
    _decimal_param,
    _engine_error,
    _int_param,
    _malformed,
    _mandatory,
    _new_client_id,
    _not_required,
)
from gridbot.emulator.engine import (
    EngineError,
    Order,
)


class _TradingRoutes(_RestRoutes):
    """Order entry; reads and auth come from _RestRoutes."""

    # ---- trading helpers

    def _position_idx(self, params: Mapping[str, str]) -> int:
        side = params.get("positionSide", "BOTH").upper() or "BOTH"
        if side not in ("BOTH", "LONG", "SHORT"):
            raise _ApiError(400, -4006, "Invalid position side.")
        idx = {"BOTH": 0, "LONG": 1, "SHORT": 2}[side]
        if (idx == 0) == self._engine.hedge_mode:
            raise _ApiError(400, -4061, "Order's position side does not match user's setting.")
        return idx

    def _reduce_only(self, params: Mapping[str, str]) -> bool:
        """Hedge mode forbids the flag (closing orders there, SELL LONG / BUY SHORT, reduce by nature)."""
        if self._engine.hedge_mode:
            if "reduceOnly" in params:
                raise _not_required("reduceOnly")
            return False
        return _bool_param(params, "reduceOnly")

    def _client_id(self, params: Mapping[str, str], name: str, prefix: str) -> str:
        client_id = params.get(name) or _new_client_id(prefix)
        if not _CLIENT_ID_RE.match(client_id):
            raise _ApiError(400, -4015, "Client order id is not valid.")
        if any(o.client_order_id == client_id for o in self._engine.open_orders()):
            raise _ApiError(400, -4116, "ClientOrderId is duplicated.")
        return client_id

    def _side(self, params: Mapping[str, str]) -> str:
        side = _SIDE_FROM_WIRE.get(_mandatory(params, "side").upper())
        if side is None:
            raise _ApiError(400, -1117, "Invalid side.")
        return side

    def _quantity(self, params: Mapping[str, str]) -> Decimal:
        qty = _decimal_param(params, "quantity")
        if qty <= 0:
            raise _ApiError(400, -4003, "Quantity less than or equal to zero.")
        return qty

    def _price(self, params: Mapping[str, str], name: str) -> Decimal:
        price = _decimal_param(params, name)
        if price <= 0:
            raise _ApiError(400, -4001, "Price less than 0.")
        return price

    def _find_order(self, params: Mapping[str, str], id_name: str, client_name: str,
                    conditional: bool) -> Order:
        raw_id = params.get(id_name)
        client_id = params.get(client_name)
        if not raw_id and not client_id:
            raise _ApiError(
                400, -1102, f"Param '{client_name}' or '{id_name}' must be sent, but both were empty/null!"
            )
        try:
            if raw_id:
                order = self._engine.order(_int_param(params, id_name))
            else:
                order = self._order_by_client_id(client_id or "", conditional)
        except EngineError:
            raise _ApiError(400, -2013, "Order does not exist.") from None
        if order.is_conditional != conditional:
            raise _ApiError(400, -2013, "Order does not exist.")
        return order

    def _order_by_client_id(self, client_id: str, conditional: bool) -> Order:
        matches = [o for o in self._engine.open_orders() if o.client_order_id == client_id]
        if not matches:
            raise _ApiError(400, -2013, "Order does not exist.")
        return matches[0]

    # ---- regular orders

    def _new_order(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol_param(params, required=True) or ""
        side = self._side(params)
        wire_type = _mandatory(params, "type").upper()
        if wire_type in _CONDITIONAL_WIRE_TYPES:
            raise _ApiError(400, -4120, "Order type not supported for this endpoint. "
                            "Please use the Algo Order API endpoints instead.")
        if wire_type not in ("LIMIT", "MARKET"):
            raise _ApiError(400, -1116, "Invalid orderType.")
        qty = self._quantity(params)
        idx = self._position_idx(params)
        reduce_only = self._reduce_only(params)
        price: Decimal | None = None
        tif = "GTC"
        if wire_type == "LIMIT":
            tif = _mandatory(params, "timeInForce").upper()
            if tif not in _TIME_IN_FORCE:
                raise _ApiError(400, -1115, "Invalid timeInForce.")
            price = self._price(params, "price")
        elif params.get("price"):
            raise _not_required("price")
        client_id = self._client_id(params, "newClientOrderId", "emu_")
        meta = _OrderMeta(client_id, wire_type, tif, wire_reduce_only=reduce_only)
        order = self._place(meta, lambda: self._engine.place_order(
            symbol=symbol, side=side, order_type=wire_type.capitalize(), qty=qty, price=price,
            reduce_only=reduce_only, position_idx=idx, client_order_id=client_id, post_only=tif == "GTX",
        ))
        if order.status == "Rejected":
            raise _ApiError(*_POST_ONLY_REJECTED)
        accepted = self._regular_payload(order)
        if tif in ("IOC", "FOK") and order.status == "New":
            self._translator.expire_on_cancel(order.order_id)
            order = self._engine.cancel_order(symbol=symbol, order_id=order.order_id)
        if params.get("newOrderRespType", "ACK").upper() == "RESULT":
            return self._regular_payload(order)
        return _ack_order(accepted)

    def _place(self, meta: _OrderMeta, place: Callable[[], Order]) -> Order:
        self._translator.expect(meta)
        try:
            return place()
        except EngineError as exc:
            raise _engine_error(exc) from None
        finally:
            self._translator.forget_expected(meta.client_id)

    def _query_order(self, params: dict[str, str]) -> dict[str, Any]:
        self._symbol_param(params, required=True)
        order = self._find_order(params, "orderId", "origClientOrderId", conditional=False)
        return self._regular_payload(order)

    def _cancel_order(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol_param(params, required=True) or ""
        order = self._find_order(params, "orderId", "origClientOrderId", conditional=False)
        try:
            cancelled = self._engine.cancel_order(symbol=symbol, order_id=order.order_id)
        except EngineError:
            raise _ApiError(400, -2011, "Unknown order sent.") from None
        return self._regular_payload(cancelled)

    def _cancel_all_orders(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol_param(params, required=True) or ""
        for order in self._engine.open_orders(symbol):
            if not order.is_conditional:
                with contextlib.suppress(EngineError):  # filled or cancelled meanwhile: nothing to do
                    self._engine.cancel_order(symbol=symbol, order_id=order.order_id)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    # ---- algo (conditional) orders

    def _new_algo(self, params: dict[str, str]) -> dict[str, Any]:
        algo_type = _mandatory(params, "algoType").upper()
        if algo_type != "CONDITIONAL":
            raise _ApiError(400, -1116, "Invalid algoType.")
        symbol = self._symbol_param(params, required=True) or ""
        side = self._side(params)
        wire_type = _mandatory(params, "type").upper()
        if wire_type not in _ALGO_TYPES:
            raise _ApiError(400, -1116, "Invalid orderType.")
        if _bool_param(params, "closePosition"):
            raise _not_required("closePosition")
        kind, order_type = _ALGO_TYPES[wire_type]
        qty = self._quantity(params)
        trigger = self._price(params, "triggerPrice")
        price = self._price(params, "price") if order_type == "Limit" else None
        idx = self._position_idx(params)
        reduce_only = self._reduce_only(params)
        tif = (params.get("timeInForce") or "GTC").upper()
        if tif not in _TIME_IN_FORCE:
            raise _ApiError(400, -1115, "Invalid timeInForce.")
        client_id = self._client_id(params, "clientAlgoId", "emu_algo_")
        meta = _OrderMeta(
            client_id, wire_type, tif,
            working_type=(params.get("workingType") or "CONTRACT_PRICE").upper(),
            price_protect=_bool_param(params, "priceProtect"),
            wire_reduce_only=reduce_only,
            is_algo=True,
        )
        order = self._place(meta, lambda: self._engine.place_conditional(
            symbol=symbol, side=side, order_type=order_type, qty=qty, trigger_price=trigger, price=price,
            reduce_only=reduce_only, position_idx=idx, client_order_id=client_id, kind=kind,
        ))
        return self._algo_payload(order)

    def _query_algo(self, params: dict[str, str]) -> dict[str, Any]:
        return self._algo_payload(self._find_order(params, "algoId", "clientAlgoId", conditional=True))

    def _cancel_algo(self, params: dict[str, str]) -> dict[str, Any]:
        order = self._find_order(params, "algoId", "clientAlgoId", conditional=True)
        if order.status != "Untriggered":  # triggered: its regular order is cancelled on /fapi/v1/order
            raise _ApiError(400, -2011, "Unknown order sent.")
        try:
            self._engine.cancel_order(symbol=order.symbol, order_id=order.order_id)
        except EngineError:
            raise _ApiError(400, -2011, "Unknown order sent.") from None
        return {
            "algoId": order.order_id,
            "clientAlgoId": self._translator.meta(order).client_id,
            "code": "200",
            "msg": "success",
        }

    def _cancel_all_algos(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol_param(params, required=True) or ""
        for order in self._engine.open_orders(symbol):
            if order.is_conditional and order.status == "Untriggered":
                with contextlib.suppress(EngineError):
                    self._engine.cancel_order(symbol=symbol, order_id=order.order_id)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    # ---- position mode

    def _get_dual(self, params: dict[str, str]) -> dict[str, Any]:
        return {"dualSidePosition": self._engine.hedge_mode}

    def _set_dual(self, params: dict[str, str]) -> dict[str, Any]:
        wanted = _mandatory(params, "dualSidePosition").lower()
        if wanted not in ("true", "false"):
            raise _malformed("dualSidePosition")
        hedge = wanted == "true"
        if hedge == self._engine.hedge_mode:
            raise _ApiError(400, -4059, "No need to change position side.")
        if self._engine.open_orders():
            raise _ApiError(400, -4067, "Position side cannot be changed if there exists open orders.")
        try:
            self._engine.set_hedge_mode(hedge)
        except EngineError:
            raise _ApiError(400, -4068, "Position side cannot be changed if there exists position.") from None
        return {"code": 200, "msg": "success"}
