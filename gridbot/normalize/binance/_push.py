"""Binance WebSocket pushes to events: the user-data stream and the mark-price stream.

Its own module because pushes are the hot path and have their own shapes (a message wraps the record;
ORDER_TRADE_UPDATE may carry a fill; the market stream has wrappers, arrays and acks).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from gridbot.errors import NormalizationError
from gridbot.events import Event, ExecType, FillUpdate, OrderUpdate, TickerUpdate
from gridbot.normalize._common import Ignored, ListenKeyExpired, dec, opt_dec, to_int
from gridbot.normalize.binance._records import (
    ALGO_PUSH,
    ORDER_PUSH,
    POSITION_PUSH,
    WALLET_PUSH,
    algo_order,
    order,
    position,
    wallet,
)
from gridbot.normalize.binance._wire import EXCHANGE, SHAPE_ERRORS, dec_or_zero, malformed, push_time

__all__ = ["parse_market_message", "parse_user_message"]

_FILL_EXECUTIONS: Final = frozenset({"TRADE", "CALCULATED"})
_ADL_CLIENT_ID: Final = "adl_autoclose"


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
            return [algo_order(msg["o"], ALGO_PUSH, timestamp=push_time(msg), raw=msg, snapshot=False)]
        if kind == "listenKeyExpired":
            return ListenKeyExpired(push_time(msg))
    except SHAPE_ERRORS as exc:
        raise malformed(kind, exc, msg) from None
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


# --------------------------------------------------------------------------- user-data messages


def _account_update(msg: Mapping[str, Any]) -> list[Event]:
    timestamp = push_time(msg)
    account = msg["a"]
    events: list[Event] = [position(row, POSITION_PUSH, timestamp=timestamp, raw=msg, snapshot=False)
                           for row in account.get("P") or ()]
    events.extend(wallet(row, WALLET_PUSH, timestamp=timestamp, raw=msg, snapshot=False)
                  for row in account.get("B") or ())
    return events


def _order_trade_update(msg: Mapping[str, Any]) -> list[Event]:
    wire = msg["o"]
    timestamp = _order_time(wire, msg)
    update = order(wire, ORDER_PUSH, timestamp=timestamp, raw=msg, snapshot=False)
    execution = wire.get("x")
    if execution in _FILL_EXECUTIONS and (execution == "TRADE" or dec_or_zero(wire.get("l"), "l", msg)):
        return [update, _fill_push(wire, update, timestamp, msg)]
    return [update]


def _fill_push(
    wire: Mapping[str, Any], update: OrderUpdate, timestamp: int, msg: Mapping[str, Any]
) -> FillUpdate:
    forced = wire.get("x") == "CALCULATED"
    trade_id = wire.get("t") if forced else wire["t"]
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
        price=dec(wire["L"], "L", msg),
        qty=dec(wire["l"], "l", msg),
        fee=dec_or_zero(wire.get("n"), "n", msg),
        fee_asset=wire.get("N") or "",
        realised_pnl=dec_or_zero(wire.get("rp"), "rp", msg),
        is_maker=wire.get("m") is True,
        position_idx=update.position_idx,
        exec_type=_forced_type(update.client_order_id) if forced else "Trade",
    )


def _forced_type(client_order_id: str) -> ExecType:
    return "Adl" if client_order_id.startswith(_ADL_CLIENT_ID) else "Liquidation"


def _order_time(wire: Mapping[str, Any], msg: Mapping[str, Any]) -> int:
    """ORDER_TRADE_UPDATE: the order's own ``o.T`` first."""
    value = wire.get("T")
    if value is None:
        return push_time(msg)
    return to_int(value, "o.T", msg)


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
    except SHAPE_ERRORS as exc:
        raise malformed("markPriceUpdate", exc, data) from None


def _next_funding_time(value: Any, raw: Any) -> int | None:
    if value is None or value == "":
        return None
    return to_int(value, "T", raw) or None  # 0 for contracts without funding


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
