"""Binance REST payloads built from engine snapshots: orders, algo orders, positions, balance,
mark price, exchange info, trades; and what a request said that the engine does not keep (_OrderMeta)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gridbot.emulator.binance._wire import (
    _PS_BY_IDX,
    _SIDE_TO_WIRE,
    _WEEK_MS,
    _ApiError,
    _fmt,
    _int_param,
)
from gridbot.emulator.engine import (
    Fill,
    Order,
    Position,
    Prices,
    Wallet,
)

# ------------------------------------------------------------------------------------------ per-order meta


@dataclass
class _OrderMeta:
    """What the Binance request said that the engine does not keep (wire type, TIF, trigger source)."""

    client_id: str
    wire_type: str  # LIMIT, MARKET, TAKE_PROFIT_MARKET, ...
    time_in_force: str = "GTC"
    working_type: str = "CONTRACT_PRICE"
    price_protect: bool = False
    wire_reduce_only: bool = False
    is_algo: bool = False


def _algo_wire_type(order: Order) -> str:
    kind = "TAKE_PROFIT" if order.kind == "TakeProfit" else "STOP"
    return f"{kind}_MARKET" if order.order_type == "Market" else kind


def _forced_client_id(order: Order) -> str:
    """Binance's client ids of exchange-made closes: "autoclose-..." (liquidation), "adl_autoclose" (ADL)."""
    return "adl_autoclose" if order.forced == "adl" else f"autoclose-{order.created_time}{order.order_id}"


def _default_meta(order: Order) -> _OrderMeta:
    if order.forced:
        return _OrderMeta(client_id=_forced_client_id(order), wire_type="LIQUIDATION", time_in_force="IOC")
    if order.is_conditional:
        return _OrderMeta(
            client_id=order.client_order_id,
            wire_type=_algo_wire_type(order),
            wire_reduce_only=order.reduce_only,
            is_algo=True,
        )
    return _OrderMeta(
        client_id=order.client_order_id,
        wire_type=order.order_type.upper(),
        wire_reduce_only=order.reduce_only,
    )


def _order_status(order: Order, expired: bool) -> str:
    """Engine status -> Binance ``X`` / REST ``status`` of a regular order."""
    status = order.status
    if status == "Cancelled":
        return "EXPIRED" if expired else "CANCELED"
    if status in ("Rejected", "Deactivated", "Expired"):
        return "EXPIRED"
    if status == "Filled":
        return "FILLED"
    if order.filled_qty > 0:
        return "PARTIALLY_FILLED"
    return "NEW"


def _algo_status(order: Order, placed_child: bool) -> str:
    """Engine status -> Binance ``algoStatus`` of a conditional order."""
    if order.status == "Cancelled":
        return "FINISHED" if placed_child else "CANCELED"
    return {
        "Untriggered": "NEW",
        "Triggered": "TRIGGERED",
        "Filled": "FINISHED",
        "Deactivated": "CANCELED",
        "Rejected": "REJECTED",
        "Expired": "EXPIRED",
    }.get(order.status, "NEW")


# ------------------------------------------------------------------------------------------- REST payloads


def _rest_order(order: Order, meta: _OrderMeta, parent: _OrderMeta | None, expired: bool,
                trigger_price: Decimal | None) -> dict[str, Any]:
    """The order object of POST/DELETE/GET /fapi/v1/order and GET /fapi/v1/openOrders."""
    cum_quote = order.filled_qty * order.avg_price if order.avg_price else Decimal(0)
    return {
        "orderId": order.order_id,
        "symbol": order.symbol,
        "status": _order_status(order, expired),
        "clientOrderId": meta.client_id,
        "price": _fmt(order.price),
        "avgPrice": _fmt(order.avg_price),
        "origQty": _fmt(order.qty),
        "executedQty": _fmt(order.filled_qty),
        "cumQty": _fmt(order.filled_qty),
        "cumQuote": _fmt(cum_quote),
        "timeInForce": meta.time_in_force,
        "type": meta.wire_type,
        "reduceOnly": meta.wire_reduce_only,
        "closePosition": False,
        "side": _SIDE_TO_WIRE[order.side],
        "positionSide": _PS_BY_IDX[order.position_idx],
        "stopPrice": _fmt(trigger_price),
        "workingType": parent.working_type if parent else meta.working_type,
        "priceProtect": parent.price_protect if parent else meta.price_protect,
        "origType": parent.wire_type if parent else meta.wire_type,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0,
        "time": order.created_time,
        "updateTime": order.updated_time,
    }


def _ack_order(payload: dict[str, Any]) -> dict[str, Any]:
    """newOrderRespType=ACK (the futures default): the order as accepted, before any execution."""
    return {
        **payload,
        "status": "NEW",
        "avgPrice": "0.00",
        "executedQty": "0",
        "cumQty": "0",
        "cumQuote": "0",
        "updateTime": payload["time"],
    }


def _rest_algo(order: Order, meta: _OrderMeta, child: Order | None, trigger_time: int) -> dict[str, Any]:
    """The algo order object of POST /fapi/v1/algoOrder and GET /fapi/v1/openAlgoOrders."""
    return {
        "algoId": order.order_id,
        "clientAlgoId": meta.client_id,
        "algoType": "CONDITIONAL",
        "orderType": meta.wire_type,
        "symbol": order.symbol,
        "side": _SIDE_TO_WIRE[order.side],
        "positionSide": _PS_BY_IDX[order.position_idx],
        "timeInForce": meta.time_in_force,
        "quantity": _fmt(order.qty),
        "algoStatus": _algo_status(order, child is not None),
        "actualOrderId": str(child.order_id) if child else "",
        "actualPrice": _fmt(child.avg_price if child else None),
        "triggerPrice": _fmt(order.trigger_price),
        "price": _fmt(order.price),
        "icebergQuantity": None,
        "tpTriggerPrice": "0",
        "tpPrice": "0",
        "slTriggerPrice": "0",
        "slPrice": "0",
        "tpOrderType": "",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": meta.working_type,
        "priceMatch": "NONE",
        "closePosition": False,
        "priceProtect": meta.price_protect,
        "reduceOnly": meta.wire_reduce_only,
        "createTime": order.created_time,
        "updateTime": order.updated_time,
        "triggerTime": trigger_time,
        "goodTillDate": 0,
    }


def _signed_amount(position: Position) -> Decimal:
    return -position.size if position.side == "Sell" else position.size


def _rest_position(position: Position, mark: Decimal, order_margin: Decimal = Decimal(0)) -> dict[str, Any]:
    """A row of GET /fapi/v3/positionRisk (margins from the engine: the symbol's leverage and bracket)."""
    amount = _signed_amount(position)
    notional = amount * mark
    initial = position.initial_margin
    return {
        "symbol": position.symbol,
        "positionSide": _PS_BY_IDX[position.position_idx],
        "positionAmt": _fmt(amount),
        "entryPrice": _fmt(position.entry_price),
        "breakEvenPrice": _fmt(position.entry_price),
        "markPrice": _fmt(mark),
        "unRealizedProfit": _fmt(position.unrealised_pnl),
        "liquidationPrice": "0",
        "isolatedMargin": "0",
        "notional": _fmt(notional),
        "marginAsset": "USDT",
        "isolatedWallet": "0",
        "initialMargin": _fmt(initial + order_margin),
        "maintMargin": _fmt(position.maintenance_margin),
        "positionInitialMargin": _fmt(initial),
        "openOrderInitialMargin": _fmt(order_margin),
        "adl": 0,
        "bidNotional": "0",
        "askNotional": "0",
        "updateTime": position.updated_time,
    }


def _rest_balance(wallet: Wallet) -> dict[str, Any]:
    """A row of GET /fapi/v3/balance."""
    return {
        "accountAlias": "SgsR",
        "asset": wallet.coin,
        "balance": _fmt(wallet.wallet_balance),
        "crossWalletBalance": _fmt(wallet.wallet_balance),
        "crossUnPnl": _fmt(wallet.unrealised_pnl),
        "availableBalance": _fmt(wallet.available_balance),
        "maxWithdrawAmount": _fmt(wallet.available_balance),
        "marginAvailable": True,
        "updateTime": wallet.updated_time,
    }


def _flat_position(symbol: str, idx: int, mark: Decimal, now: int) -> Position:
    zero = Decimal(0)
    return Position(
        symbol=symbol, position_idx=idx, side="", size=zero, entry_price=zero, mark_price=mark,
        unrealised_pnl=zero, cum_realised_gross=zero, cum_fees=zero, cum_realised_net=zero,
        updated_time=now, seq=0,
    )


def _mark_price_data(prices: Prices) -> dict[str, Any]:
    return {
        "e": "markPriceUpdate",
        "E": prices.timestamp,
        "s": prices.symbol,
        "p": _fmt(prices.mark),
        "ap": _fmt(prices.mark),
        "i": _fmt(prices.index),
        "P": _fmt(prices.index),
        "r": _fmt(prices.funding_rate),
        "T": prices.next_funding_time,
    }


def _trade_window(params: Mapping[str, str], now: int) -> tuple[int, int]:
    """userTrades' time window: 7 days at most; the last 7 days when neither bound is sent."""
    has_start, has_end = bool(params.get("startTime")), bool(params.get("endTime"))
    start = _int_param(params, "startTime", 0)
    end = _int_param(params, "endTime", 0)
    if has_start and has_end:
        if end < start:
            raise _ApiError(400, -1128, "Combination of optional parameters invalid.")
        if end - start > _WEEK_MS:
            raise _ApiError(400, -1127, "The time between startTime and endTime cannot be longer "
                                        "than 7 days.")
        return start, end
    if has_start:
        return start, start + _WEEK_MS
    if has_end:
        return end - _WEEK_MS, end
    return now - _WEEK_MS, now


def _user_trade(fill: Fill) -> dict[str, Any]:
    """A row of GET /fapi/v1/userTrades (numbers as decimal strings, ids and time as ints)."""
    return {
        "buyer": fill.side == "Buy",
        "commission": _fmt(fill.fee),
        "commissionAsset": "USDT",
        "id": fill.trade_id,
        "maker": fill.is_maker,
        "orderId": fill.order_id,
        "price": _fmt(fill.price),
        "qty": _fmt(fill.qty),
        "quoteQty": _fmt(fill.price * fill.qty),
        "realizedPnl": _fmt(fill.realised_pnl),
        "side": _SIDE_TO_WIRE[fill.side],
        "positionSide": _PS_BY_IDX[fill.position_idx],
        "symbol": fill.symbol,
        "time": fill.timestamp,
    }


