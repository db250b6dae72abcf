"""Binance USDⓈ-M futures: wire mappings (WebSocket pushes and REST seed rows) to gridbot events.

Pure: no SDK, socket, clock, logging or module state (the tables below are read-only).

Conventions the stream relies on:

- ``timestamp`` is the exchange's transaction/update time of the thing, so a push and a REST row of
  the same key compare: pushes use the top-level ``T`` (ORDER_TRADE_UPDATE: ``o.T`` first) and fall back
  to ``E``; markPriceUpdate uses ``E``; REST rows use ``updateTime``, else ``time``, else 0.
- ``raw`` is the smallest mapping holding what the event was built from: the row of a multi-row
  message or of a REST answer, the whole message for ORDER_TRADE_UPDATE / ALGO_UPDATE, the ``data``
  dict of a markPriceUpdate.  A NormalizationError carries the whole message (or the REST row).
- Every money/quantity field is a Decimal from the wire string; a float raises NormalizationError.

Choices where Binance gives less than the event model has:

- Wallet: ACCOUNT_UPDATE ``a.B[]`` has ``wb`` (wallet balance) and ``cw`` (cross wallet balance: the
  wallet balance less isolated margin, still including margin held by cross positions and open orders).
  Neither is the balance available for new orders, so pushed WalletUpdates carry
  ``available_balance=None`` ("not sent"), and only the REST seed (balance v3 ``availableBalance``) sets
  it.  Consumers must keep the last known value when a push carries None.  ``equity`` is never sent by
  these messages: None.  The account figures (margin balance, maintenance margin, MM rate) are computed
  by the stream (gridbot._account), not sent by Binance.
- Position: ``mark_price`` is None on pushes (ACCOUNT_UPDATE has none; the stream merges the ticker's);
  REST positionRisk has ``markPrice``.  REST has no ``cr``, so seeded positions carry
  ``cum_realised_pnl=None``.
- ``reduce_only`` is True for the reduce-only flag ``R``, for close-position orders (``cp``: they can only
  reduce), and in hedge mode for a Sell on the long slot or a Buy on the short slot (DESIGN §4b).
- ``trigger_price`` is None when the wire value is absent, empty or zero (Binance sends "0" for "none").
- ALGO_UPDATE FINISHED is Filled when anything filled (``aq`` > 0, even partially; ``filled_qty`` tells
  how much), else Cancelled.  ``linked_order_id`` is the child order id ``ai`` once TRIGGERED/FINISHED.
- Order type LIQUIDATION (documented for ORDER_TRADE_UPDATE) is "Market": a forced close must not be
  dropped as an unknown enum, or its fill would be lost.
- Forced closes: ``x`` = CALCULATED ("Liquidation Execution"; the zh-CN page: liquidation *or* ADL)
  gives a FillUpdate like TRADE, ``exec_type`` "Adl" when the order's client id is ``adl_autoclose``
  (documented), else "Liquidation".  Which fill fields it carries is not documented: a missing ``t``
  becomes the trade id ``calc-<orderId>-<T>``, a missing or zero ``l`` means no fill.
- ``GET /fapi/v1/userTrades`` rows (gap backfill) become FillUpdates with ``exec_type`` "Trade" (the row
  does not tell a forced close) and ``is_snapshot`` True; ``commission`` is taken with its sign, as ``n``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, TypeVar

from gridbot.errors import NormalizationError
from gridbot.events import (
    Event,
    ExecType,
    FillUpdate,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionSide,
    PositionUpdate,
    Side,
    TickerUpdate,
    WalletUpdate,
)
from gridbot.normalize._common import Ignored, ListenKeyExpired, dec, opt_dec, to_int

__all__ = [
    "EXCHANGE",
    "algo_orders_from_rest",
    "fills_from_rest",
    "finished_algo_order_from_rest",
    "orders_from_rest",
    "parse_market_message",
    "parse_user_message",
    "positions_from_rest",
    "wallets_from_rest",
]

EXCHANGE: Final = "binance"

_T = TypeVar("_T")
_ZERO: Final = Decimal(0)
# What a missing/malformed field raises when a wire mapping is subscripted directly (the fast path).
_SHAPE_ERRORS: Final = (KeyError, TypeError, AttributeError)

_POSITION_IDX: Final[Mapping[str, int]] = MappingProxyType({"BOTH": 0, "LONG": 1, "SHORT": 2})
_SIDES: Final[Mapping[str, Side]] = MappingProxyType({"BUY": "Buy", "SELL": "Sell"})
_ORDER_TYPES: Final[Mapping[str, OrderType]] = MappingProxyType(
    {
        "LIMIT": "Limit",
        "STOP": "Limit",
        "TAKE_PROFIT": "Limit",
        "MARKET": "Market",
        "STOP_MARKET": "Market",
        "TAKE_PROFIT_MARKET": "Market",
        "TRAILING_STOP_MARKET": "Market",
        "LIQUIDATION": "Market",
    }
)
_ORDER_STATUSES: Final[Mapping[str, OrderStatus]] = MappingProxyType(
    {
        "NEW": "New",
        "PARTIALLY_FILLED": "PartiallyFilled",
        "FILLED": "Filled",
        "CANCELED": "Cancelled",
        "EXPIRED": "Expired",
        "EXPIRED_IN_MATCH": "Expired",
    }
)
# FINISHED is absent on purpose: it depends on the filled quantity (see _algo_status).
_ALGO_STATUSES: Final[Mapping[str, OrderStatus]] = MappingProxyType(
    {
        "NEW": "Untriggered",
        "TRIGGERING": "Triggered",
        "TRIGGERED": "Triggered",
        "CANCELED": "Cancelled",
        "REJECTED": "Rejected",
        "EXPIRED": "Expired",
    }
)
_TAKE_PROFIT_TYPES: Final = frozenset({"TAKE_PROFIT", "TAKE_PROFIT_MARKET"})
_FILL_EXECUTIONS: Final = frozenset({"TRADE", "CALCULATED"})
_ADL_CLIENT_ID: Final = "adl_autoclose"
_ALGO_LINKED_STATUSES: Final = frozenset({"TRIGGERED", "FINISHED"})


# --------------------------------------------------------------------------- public: WebSocket pushes


def parse_user_message(msg: Mapping[str, Any]) -> list[Event] | Ignored | ListenKeyExpired:
    """One user-data push: ACCOUNT_UPDATE, ORDER_TRADE_UPDATE, ALGO_UPDATE or listenKeyExpired.

    Other well-formed event types are ``Ignored(kind=e)``; a message without ``e`` is an error.
    """
    if not (isinstance(msg, dict) or isinstance(msg, Mapping)):
        raise NormalizationError(f"binance user message is not a mapping: {type(msg).__name__}", msg)
    kind = msg.get("e")
    if not isinstance(kind, str):
        raise NormalizationError(f"binance user message has no event type 'e': {kind!r}", msg)
    try:
        if kind == "ACCOUNT_UPDATE":
            return _account_update(msg)
        if kind == "ORDER_TRADE_UPDATE":
            return _order_trade_update(msg)
        if kind == "ALGO_UPDATE":
            return [_algo_push(msg)]
        if kind == "listenKeyExpired":
            return ListenKeyExpired(_push_time(msg))
    except _SHAPE_ERRORS as exc:
        raise _malformed(kind, exc, msg) from None
    return Ignored(kind)


def parse_market_message(msg: Any) -> list[TickerUpdate] | Ignored:
    """A mark-price frame: a plain markPriceUpdate, a combined ``{"stream","data"}`` wrapper or the
    all-market array.  Subscription acks are ``Ignored("ack")``; an error answer raises."""
    if isinstance(msg, list):
        return _mark_price_array(msg)
    if not (isinstance(msg, dict) or isinstance(msg, Mapping)):
        raise NormalizationError(f"binance market message is not a mapping: {type(msg).__name__}", msg)
    if "stream" in msg and "data" in msg:
        return parse_market_message(msg["data"])
    kind = msg.get("e")
    if kind == "markPriceUpdate":
        return [_ticker(msg)]
    if kind is None:
        return _control_message(msg)
    return Ignored(str(kind))


# --------------------------------------------------------------------------- public: REST seed


def positions_from_rest(rows: Sequence[Mapping[str, Any]]) -> list[PositionUpdate]:
    """``GET /fapi/v3/positionRisk`` rows; ``cum_realised_pnl`` is None (REST has no ``cr``)."""
    return _each_row(rows, "positionRisk", _position_row)


def wallets_from_rest(rows: Sequence[Mapping[str, Any]]) -> list[WalletUpdate]:
    """``GET /fapi/v3/balance`` rows: ``balance`` and ``availableBalance`` per asset."""
    return _each_row(rows, "balance", _wallet_row)


def fills_from_rest(rows: Sequence[Mapping[str, Any]]) -> list[FillUpdate]:
    """``GET /fapi/v1/userTrades`` rows, sorted by trade id (the docs do not state an order; a
    symbol's trade ids grow with time)."""
    fills = _each_row(rows, "userTrades", _trade_row)
    fills.sort(key=lambda fill: _id_key(fill.trade_id))
    return fills


def orders_from_rest(rows: Sequence[Mapping[str, Any]]) -> list[OrderUpdate]:
    """``GET /fapi/v1/openOrders`` rows (regular orders of the matching engine)."""
    return _each_row(rows, "openOrders", _order_row)


def algo_orders_from_rest(rows: Sequence[Mapping[str, Any]]) -> list[OrderUpdate]:
    """``GET /fapi/v1/openAlgoOrders`` rows (conditional orders of the Algo Service)."""
    return _each_row(rows, "openAlgoOrders", _algo_row)


def finished_algo_order_from_rest(row: Mapping[str, Any], child: Mapping[str, Any] | None) -> OrderUpdate:
    """A ``GET /fapi/v1/algoOrder`` row, completed with the ``GET /fapi/v1/order`` row of the order it
    triggered (``actualOrderId``).

    The algo row carries no filled quantity, so alone a FINISHED algo order cannot be told Filled from
    Cancelled; the child's ``executedQty`` and ``avgPrice`` decide.
    """
    if child is None:
        return _each_row([row], "algoOrder", _algo_row)[0]
    merged = {**row, "executedQty": child.get("executedQty"), "actualPrice": child.get("avgPrice")}
    order = _each_row([merged], "algoOrder", _algo_row)[0]
    return replace(order, raw=row)


# --------------------------------------------------------------------------- user-data messages


def _account_update(msg: Mapping[str, Any]) -> list[Event]:
    timestamp = _push_time(msg)
    account = msg["a"]
    events: list[Event] = [_position_push(row, timestamp, msg) for row in account.get("P") or ()]
    events.extend(_wallet_push(row, timestamp, msg) for row in account.get("B") or ())
    return events


def _position_push(row: Mapping[str, Any], timestamp: int, msg: Mapping[str, Any]) -> PositionUpdate:
    amount = dec(row["pa"], "pa", msg)
    idx = _lookup(_POSITION_IDX, row["ps"], "ps", msg)
    return PositionUpdate(
        exchange=EXCHANGE,
        timestamp=timestamp,
        raw=row,
        symbol=row["s"],
        position_idx=idx,
        side=_position_side(idx, amount),
        size=abs(amount),
        entry_price=dec(row["ep"], "ep", msg),
        mark_price=None,
        unrealised_pnl=dec(row["up"], "up", msg),
        cum_realised_pnl=opt_dec(row.get("cr"), "cr", msg),
    )


def _wallet_push(row: Mapping[str, Any], timestamp: int, msg: Mapping[str, Any]) -> WalletUpdate:
    return WalletUpdate(
        exchange=EXCHANGE,
        timestamp=timestamp,
        raw=row,
        coin=row["a"],
        wallet_balance=dec(row["wb"], "wb", msg),
        available_balance=None,  # `cw` is the cross wallet balance, not the available balance
        equity=None,
    )


def _order_trade_update(msg: Mapping[str, Any]) -> list[Event]:
    order = msg["o"]
    timestamp = _order_time(order, msg)
    update = _order_push(order, timestamp, msg)
    execution = order.get("x")
    if execution in _FILL_EXECUTIONS and (execution == "TRADE" or _dec_or_zero(order.get("l"), "l", msg)):
        return [update, _fill_push(order, update, timestamp, msg)]
    return [update]


def _order_push(order: Mapping[str, Any], timestamp: int, msg: Mapping[str, Any]) -> OrderUpdate:
    side = _lookup(_SIDES, order["S"], "S", msg)
    idx = _lookup(_POSITION_IDX, order["ps"], "ps", msg)
    wire_type = order["o"]
    return OrderUpdate(
        exchange=EXCHANGE,
        timestamp=timestamp,
        raw=msg,
        symbol=order["s"],
        order_id=str(order["i"]),
        client_order_id=str(order["c"]),
        side=side,
        order_type=_order_type(wire_type, "o", msg),
        status=_lookup(_ORDER_STATUSES, order["X"], "X", msg),
        price=dec(order["p"], "p", msg),
        qty=dec(order["q"], "q", msg),
        filled_qty=dec(order["z"], "z", msg),
        avg_price=dec(order["ap"], "ap", msg),
        trigger_price=_trigger_price(order.get("sp"), "sp", msg),
        reduce_only=_reduce_only(order.get("R"), order.get("cp"), side, idx),
        position_idx=idx,
        is_take_profit=wire_type in _TAKE_PROFIT_TYPES or order.get("ot") in _TAKE_PROFIT_TYPES,
        linked_order_id=None,
    )


def _fill_push(
    order: Mapping[str, Any], update: OrderUpdate, timestamp: int, msg: Mapping[str, Any]
) -> FillUpdate:
    forced = order.get("x") == "CALCULATED"
    trade_id = order.get("t") if forced else order["t"]
    if forced and not trade_id:
        trade_id = f"calc-{update.order_id}-{timestamp}"
    return FillUpdate(
        exchange=EXCHANGE,
        timestamp=timestamp,
        raw=msg,
        symbol=update.symbol,
        order_id=update.order_id,
        trade_id=str(trade_id),
        side=update.side,
        price=dec(order["L"], "L", msg),
        qty=dec(order["l"], "l", msg),
        fee=_dec_or_zero(order.get("n"), "n", msg),
        fee_asset=order.get("N") or "",
        realised_pnl=_dec_or_zero(order.get("rp"), "rp", msg),
        is_maker=order.get("m") is True,
        position_idx=update.position_idx,
        exec_type=_forced_type(update.client_order_id) if forced else "Trade",
    )


def _forced_type(client_order_id: str) -> ExecType:
    return "Adl" if client_order_id.startswith(_ADL_CLIENT_ID) else "Liquidation"


def _algo_push(msg: Mapping[str, Any]) -> OrderUpdate:
    algo = msg["o"]
    side = _lookup(_SIDES, algo["S"], "S", msg)
    idx = _lookup(_POSITION_IDX, algo["ps"], "ps", msg)
    wire_type = algo["o"]
    wire_status = algo["X"]
    filled = _dec_or_zero(algo.get("aq"), "aq", msg)
    return OrderUpdate(
        exchange=EXCHANGE,
        timestamp=_push_time(msg),
        raw=msg,
        symbol=algo["s"],
        order_id=str(algo["aid"]),
        client_order_id=str(algo.get("caid") or ""),
        side=side,
        order_type=_order_type(wire_type, "o", msg),
        status=_algo_status(wire_status, filled, "X", msg),
        price=_dec_or_zero(algo.get("p"), "p", msg),
        qty=_dec_or_zero(algo.get("q"), "q", msg),  # close-position algo orders may have no quantity
        filled_qty=filled,
        avg_price=_dec_or_zero(algo.get("ap"), "ap", msg),
        trigger_price=_trigger_price(algo.get("tp"), "tp", msg),
        reduce_only=_reduce_only(algo.get("R"), algo.get("cp"), side, idx),
        position_idx=idx,
        is_take_profit=wire_type in _TAKE_PROFIT_TYPES,
        linked_order_id=_linked_order_id(wire_status, algo.get("ai")),
    )


# --------------------------------------------------------------------------- market messages


def _ticker(data: Mapping[str, Any]) -> TickerUpdate:
    try:
        return TickerUpdate(
            exchange=EXCHANGE,
            timestamp=to_int(data["E"], "E", data),
            raw=data,
            symbol=data["s"],
            mark_price=dec(data["p"], "p", data),
            last_price=None,
            index_price=opt_dec(data.get("i"), "i", data),
            funding_rate=opt_dec(data.get("r"), "r", data),
            next_funding_time=_next_funding_time(data.get("T"), data),
        )
    except _SHAPE_ERRORS as exc:
        raise _malformed("markPriceUpdate", exc, data) from None


def _mark_price_array(items: list[Any]) -> list[TickerUpdate]:
    """The all-market stream: every element is a markPriceUpdate; other kinds are skipped."""
    tickers: list[TickerUpdate] = []
    for item in items:
        if not isinstance(item, Mapping):
            raise NormalizationError("binance mark price array holds a non-mapping", items)
        if item.get("e") == "markPriceUpdate":
            tickers.append(_ticker(item))
    return tickers


def _control_message(msg: Mapping[str, Any]) -> Ignored:
    """A WebSocket API answer: ``{"result": null, "id": 1}`` acks; ``{"error": ..., "id": 1}`` raises,
    because a rejected subscription means a symbol gets no prices and must be seen."""
    if "error" in msg:
        raise NormalizationError(f"binance market stream error answer: {msg.get('error')!r}", msg)
    if "result" in msg and "id" in msg:
        return Ignored("ack")
    raise NormalizationError("binance market message has no event type 'e'", msg)


# --------------------------------------------------------------------------- REST rows


def _position_row(row: Mapping[str, Any]) -> PositionUpdate:
    amount = dec(row["positionAmt"], "positionAmt", row)
    idx = _lookup(_POSITION_IDX, row["positionSide"], "positionSide", row)
    return PositionUpdate(
        exchange=EXCHANGE,
        timestamp=_rest_time(row),
        is_snapshot=True,
        raw=row,
        symbol=row["symbol"],
        position_idx=idx,
        side=_position_side(idx, amount),
        size=abs(amount),
        entry_price=dec(row["entryPrice"], "entryPrice", row),
        mark_price=opt_dec(row.get("markPrice"), "markPrice", row),
        unrealised_pnl=dec(row["unRealizedProfit"], "unRealizedProfit", row),
        cum_realised_pnl=None,
    )


def _wallet_row(row: Mapping[str, Any]) -> WalletUpdate:
    return WalletUpdate(
        exchange=EXCHANGE,
        timestamp=_rest_time(row),
        is_snapshot=True,
        raw=row,
        coin=row["asset"],
        wallet_balance=dec(row["balance"], "balance", row),
        available_balance=opt_dec(row.get("availableBalance"), "availableBalance", row),
        equity=None,
    )


def _order_row(row: Mapping[str, Any]) -> OrderUpdate:
    side = _lookup(_SIDES, row["side"], "side", row)
    idx = _lookup(_POSITION_IDX, row["positionSide"], "positionSide", row)
    wire_type = row["type"]
    return OrderUpdate(
        exchange=EXCHANGE,
        timestamp=_rest_time(row),
        is_snapshot=True,
        raw=row,
        symbol=row["symbol"],
        order_id=str(row["orderId"]),
        client_order_id=str(row["clientOrderId"]),
        side=side,
        order_type=_order_type(wire_type, "type", row),
        status=_lookup(_ORDER_STATUSES, row["status"], "status", row),
        price=dec(row["price"], "price", row),
        qty=dec(row["origQty"], "origQty", row),
        filled_qty=dec(row["executedQty"], "executedQty", row),
        avg_price=dec(row["avgPrice"], "avgPrice", row),
        trigger_price=_trigger_price(row.get("stopPrice"), "stopPrice", row),
        reduce_only=_reduce_only(row.get("reduceOnly"), row.get("closePosition"), side, idx),
        position_idx=idx,
        is_take_profit=wire_type in _TAKE_PROFIT_TYPES or row.get("origType") in _TAKE_PROFIT_TYPES,
        linked_order_id=None,
    )


def _algo_row(row: Mapping[str, Any]) -> OrderUpdate:
    side = _lookup(_SIDES, row["side"], "side", row)
    idx = _lookup(_POSITION_IDX, row["positionSide"], "positionSide", row)
    wire_type = row["orderType"]
    wire_status = row["algoStatus"]
    # The documented row has no filled quantity (open algo orders have not filled); accept one if sent.
    filled = _dec_or_zero(row.get("executedQty"), "executedQty", row)
    return OrderUpdate(
        exchange=EXCHANGE,
        timestamp=_rest_time(row),
        is_snapshot=True,
        raw=row,
        symbol=row["symbol"],
        order_id=str(row["algoId"]),
        client_order_id=str(row.get("clientAlgoId") or ""),
        side=side,
        order_type=_order_type(wire_type, "orderType", row),
        status=_algo_status(wire_status, filled, "algoStatus", row),
        price=_dec_or_zero(row.get("price"), "price", row),
        qty=_dec_or_zero(row.get("quantity"), "quantity", row),
        filled_qty=filled,
        avg_price=_dec_or_zero(row.get("actualPrice"), "actualPrice", row),
        trigger_price=_trigger_price(row.get("triggerPrice"), "triggerPrice", row),
        reduce_only=_reduce_only(row.get("reduceOnly"), row.get("closePosition"), side, idx),
        position_idx=idx,
        is_take_profit=wire_type in _TAKE_PROFIT_TYPES,
        linked_order_id=_linked_order_id(wire_status, row.get("actualOrderId")),
    )


def _trade_row(row: Mapping[str, Any]) -> FillUpdate:
    idx = _lookup(_POSITION_IDX, row.get("positionSide", "BOTH"), "positionSide", row)
    maker = row["maker"]
    if not isinstance(maker, bool):
        raise NormalizationError(f"binance userTrades field 'maker' is not a boolean: {maker!r}", row)
    return FillUpdate(
        exchange=EXCHANGE,
        timestamp=to_int(row["time"], "time", row),
        is_snapshot=True,
        raw=row,
        symbol=row["symbol"],
        order_id=str(to_int(row["orderId"], "orderId", row)),
        trade_id=str(to_int(row["id"], "id", row)),
        side=_lookup(_SIDES, row["side"], "side", row),
        price=dec(row["price"], "price", row),
        qty=dec(row["qty"], "qty", row),
        fee=_dec_or_zero(row.get("commission"), "commission", row),
        fee_asset=str(row.get("commissionAsset") or ""),
        realised_pnl=opt_dec(row.get("realizedPnl"), "realizedPnl", row),
        is_maker=maker,
        position_idx=idx,
    )


def _id_key(trade_id: str) -> tuple[int, str]:
    """Numeric ids sort as numbers."""
    return (int(trade_id), "") if trade_id.isdigit() else (0, trade_id)


def _each_row(
    rows: Iterable[Mapping[str, Any]], what: str, build: Callable[[Mapping[str, Any]], _T]
) -> list[_T]:
    """``build(row)`` for every row; a missing field or a non-mapping row raises NormalizationError."""
    events: list[_T] = []
    for row in rows:
        try:
            events.append(build(row))
        except _SHAPE_ERRORS as exc:
            raise _malformed(what, exc, row) from None
    return events


# --------------------------------------------------------------------------- small helpers


def _lookup(table: Mapping[str, _T], value: Any, name: str, raw: Any) -> _T:
    """``table[value]``, or a NormalizationError naming the field and the unknown value."""
    try:
        return table[value]
    except (KeyError, TypeError):
        raise NormalizationError(f"binance field {name!r} has an unknown value: {value!r}", raw) from None


def _order_type(value: Any, name: str, raw: Any) -> OrderType:
    """LIMIT, STOP, TAKE_PROFIT -> Limit; MARKET and every *_MARKET type -> Market."""
    order_type = _ORDER_TYPES.get(value) if isinstance(value, str) else None
    if order_type is not None:
        return order_type
    if isinstance(value, str) and value.endswith("_MARKET"):
        return "Market"
    raise NormalizationError(f"binance field {name!r} has an unknown value: {value!r}", raw)


def _algo_status(value: Any, filled: Decimal, name: str, raw: Any) -> OrderStatus:
    """FINISHED means filled or cancelled in the matching engine; the filled quantity tells which."""
    if value == "FINISHED":
        return "Filled" if filled > 0 else "Cancelled"
    return _lookup(_ALGO_STATUSES, value, name, raw)


def _linked_order_id(status: Any, actual_id: Any) -> str | None:
    """The child order's id once the algo order has placed it (``ai`` is "" before TRIGGERED)."""
    if status in _ALGO_LINKED_STATUSES and actual_id not in (None, "", 0):
        return str(actual_id)
    return None


def _position_side(idx: int, amount: Decimal) -> PositionSide:
    """One-way: the sign of the amount; hedge: the slot, or "" when the slot is flat."""
    if not amount:
        return ""
    if idx == 0:
        return "Buy" if amount > 0 else "Sell"
    return "Buy" if idx == 1 else "Sell"


def _reduce_only(flag: Any, close_position: Any, side: str, idx: int) -> bool:
    return (
        flag is True
        or close_position is True
        or (idx == 1 and side == "Sell")
        or (idx == 2 and side == "Buy")
    )


def _trigger_price(value: Any, name: str, raw: Any) -> Decimal | None:
    price = opt_dec(value, name, raw)
    return price if price else None  # "0" is how Binance says "no trigger"


def _dec_or_zero(value: Any, name: str, raw: Any) -> Decimal:
    price = opt_dec(value, name, raw)
    return _ZERO if price is None else price


def _next_funding_time(value: Any, raw: Any) -> int | None:
    if value is None or value == "":
        return None
    return to_int(value, "T", raw) or None  # 0 for contracts without funding


def _push_time(msg: Mapping[str, Any]) -> int:
    """Transaction time ``T``, else event time ``E``."""
    value = msg.get("T")
    if value is None:
        return to_int(msg["E"], "E", msg)
    return to_int(value, "T", msg)


def _order_time(order: Mapping[str, Any], msg: Mapping[str, Any]) -> int:
    value = order.get("T")
    if value is None:
        return _push_time(msg)
    return to_int(value, "o.T", msg)


def _rest_time(row: Mapping[str, Any]) -> int:
    value = row.get("updateTime") or row.get("time")
    return to_int(value, "updateTime", row) if value else 0


def _malformed(what: str, exc: BaseException, raw: Any) -> NormalizationError:
    detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
    return NormalizationError(f"malformed binance {what}: {detail}", raw)
