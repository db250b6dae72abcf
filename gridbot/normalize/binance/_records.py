"""Positions, balances, orders and algo orders from either source: one builder each, two spellings.

A user-data push and a REST row carry the same record under different field names (``pa`` /
``positionAmt``, ``X`` / ``status``, ...).  Each builder reads a record through a key table, so the two
sources cannot drift apart in what they make of a field.  ``raw`` is the mapping the event keeps and
errors carry (the whole push message, or the REST row); ``src`` is the record inside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from gridbot.events import OrderUpdate, PositionUpdate, WalletUpdate
from gridbot.normalize._common import dec, opt_dec
from gridbot.normalize.binance._wire import (
    EXCHANGE,
    POSITION_IDX,
    SIDES,
    algo_status,
    dec_or_zero,
    linked_order_id,
    lookup,
    order_status,
    order_type,
    position_side,
    reduce_only,
    take_profit,
    trigger_price,
)

__all__ = [
    "ALGO_PUSH",
    "ALGO_ROW",
    "ORDER_PUSH",
    "ORDER_ROW",
    "POSITION_PUSH",
    "POSITION_ROW",
    "WALLET_PUSH",
    "WALLET_ROW",
    "AlgoKeys",
    "OrderKeys",
    "PositionKeys",
    "WalletKeys",
    "algo_order",
    "order",
    "position",
    "wallet",
]


@dataclass(frozen=True, slots=True)
class PositionKeys:
    """How a source spells a position; None: the source never sends that field."""

    symbol: str
    amount: str
    position_side: str
    entry_price: str
    unrealised_pnl: str
    mark_price: str | None
    cum_realised_pnl: str | None


@dataclass(frozen=True, slots=True)
class WalletKeys:
    """How a source spells a balance; None: the source never sends the available balance."""

    coin: str
    wallet_balance: str
    available_balance: str | None


@dataclass(frozen=True, slots=True)
class _AnyOrderKeys:
    """How a source spells what every order has, regular or conditional."""

    symbol: str
    order_id: str
    client_id: str
    side: str
    position_side: str
    type: str
    status: str
    price: str
    qty: str
    filled_qty: str
    avg_price: str
    trigger_price: str
    reduce_only: str
    close_position: str


@dataclass(frozen=True, slots=True)
class OrderKeys(_AnyOrderKeys):
    """How a source spells a regular order of the matching engine (``orig_type``: its type before a
    stop triggered)."""

    orig_type: str


@dataclass(frozen=True, slots=True)
class AlgoKeys(_AnyOrderKeys):
    """How a source spells a conditional order of the Algo Service (``linked_order_id``: the order it
    placed when triggered)."""

    linked_order_id: str


POSITION_PUSH: Final = PositionKeys("s", "pa", "ps", "ep", "up", None, "cr")
POSITION_ROW: Final = PositionKeys(
    "symbol", "positionAmt", "positionSide", "entryPrice", "unRealizedProfit", "markPrice", None)
WALLET_PUSH: Final = WalletKeys("a", "wb", None)  # `cw` is the cross wallet balance, not the available one
WALLET_ROW: Final = WalletKeys("asset", "balance", "availableBalance")
ORDER_PUSH: Final = OrderKeys("s", "i", "c", "S", "ps", "o", "X", "p", "q", "z", "ap", "sp", "R", "cp", "ot")
ORDER_ROW: Final = OrderKeys(
    "symbol", "orderId", "clientOrderId", "side", "positionSide", "type", "status", "price", "origQty",
    "executedQty", "avgPrice", "stopPrice", "reduceOnly", "closePosition", "origType")
ALGO_PUSH: Final = AlgoKeys(
    "s", "aid", "caid", "S", "ps", "o", "X", "p", "q", "aq", "ap", "tp", "R", "cp", "ai")
ALGO_ROW: Final = AlgoKeys(
    "symbol", "algoId", "clientAlgoId", "side", "positionSide", "orderType", "algoStatus", "price",
    "quantity", "executedQty", "actualPrice", "triggerPrice", "reduceOnly", "closePosition", "actualOrderId")


def position(
    src: Mapping[str, Any], keys: PositionKeys, *, timestamp: int, raw: Any, snapshot: bool
) -> PositionUpdate:
    """A position; errors carry ``raw`` (the push message, or the REST row), the event keeps ``src``."""
    amount = dec(src[keys.amount], keys.amount, raw)
    idx = lookup(POSITION_IDX, src[keys.position_side], keys.position_side, raw)
    return PositionUpdate(
        exchange=EXCHANGE,
        timestamp=timestamp,
        is_snapshot=snapshot,
        raw=src,
        symbol=src[keys.symbol],
        position_idx=idx,
        side=position_side(idx, amount),
        size=abs(amount),
        entry_price=dec(src[keys.entry_price], keys.entry_price, raw),
        mark_price=(None if keys.mark_price is None
                    else opt_dec(src.get(keys.mark_price), keys.mark_price, raw)),
        unrealised_pnl=dec(src[keys.unrealised_pnl], keys.unrealised_pnl, raw),
        cum_realised_pnl=(None if keys.cum_realised_pnl is None
                          else opt_dec(src.get(keys.cum_realised_pnl), keys.cum_realised_pnl, raw)),
    )


def wallet(
    src: Mapping[str, Any], keys: WalletKeys, *, timestamp: int, raw: Any, snapshot: bool
) -> WalletUpdate:
    """A balance; ``equity`` is never sent by Binance's account messages."""
    return WalletUpdate(
        exchange=EXCHANGE,
        timestamp=timestamp,
        is_snapshot=snapshot,
        raw=src,
        coin=src[keys.coin],
        wallet_balance=dec(src[keys.wallet_balance], keys.wallet_balance, raw),
        available_balance=(None if keys.available_balance is None
                           else opt_dec(src.get(keys.available_balance), keys.available_balance, raw)),
        equity=None,
    )


def order(
    src: Mapping[str, Any], keys: OrderKeys, *, timestamp: int, raw: Any, snapshot: bool
) -> OrderUpdate:
    """A regular order; the event keeps ``raw`` (ORDER_TRADE_UPDATE: the whole message)."""
    side = lookup(SIDES, src[keys.side], keys.side, raw)
    idx = lookup(POSITION_IDX, src[keys.position_side], keys.position_side, raw)
    wire_type = src[keys.type]
    return OrderUpdate(
        exchange=EXCHANGE,
        timestamp=timestamp,
        is_snapshot=snapshot,
        raw=raw,
        symbol=src[keys.symbol],
        order_id=str(src[keys.order_id]),
        client_order_id=str(src[keys.client_id]),
        side=side,
        order_type=order_type(wire_type, keys.type, raw),
        status=order_status(src[keys.status], keys.status, raw),
        price=dec(src[keys.price], keys.price, raw),
        qty=dec(src[keys.qty], keys.qty, raw),
        filled_qty=dec(src[keys.filled_qty], keys.filled_qty, raw),
        avg_price=dec(src[keys.avg_price], keys.avg_price, raw),
        trigger_price=trigger_price(src.get(keys.trigger_price), keys.trigger_price, raw),
        reduce_only=reduce_only(src.get(keys.reduce_only), src.get(keys.close_position), side, idx),
        position_idx=idx,
        is_take_profit=take_profit(wire_type, src.get(keys.orig_type)),
        linked_order_id=None,
    )


def algo_order(
    src: Mapping[str, Any], keys: AlgoKeys, *, timestamp: int, raw: Any, snapshot: bool
) -> OrderUpdate:
    """A conditional order.  Quantity and prices may be absent (close-position orders, orders that
    have not filled): zero; the filled quantity decides what FINISHED means."""
    side = lookup(SIDES, src[keys.side], keys.side, raw)
    idx = lookup(POSITION_IDX, src[keys.position_side], keys.position_side, raw)
    wire_type = src[keys.type]
    wire_status = src[keys.status]
    filled = dec_or_zero(src.get(keys.filled_qty), keys.filled_qty, raw)
    return OrderUpdate(
        exchange=EXCHANGE,
        timestamp=timestamp,
        is_snapshot=snapshot,
        raw=raw,
        symbol=src[keys.symbol],
        order_id=str(src[keys.order_id]),
        client_order_id=str(src.get(keys.client_id) or ""),
        side=side,
        order_type=order_type(wire_type, keys.type, raw),
        status=algo_status(wire_status, filled, keys.status, raw),
        price=dec_or_zero(src.get(keys.price), keys.price, raw),
        qty=dec_or_zero(src.get(keys.qty), keys.qty, raw),
        filled_qty=filled,
        avg_price=dec_or_zero(src.get(keys.avg_price), keys.avg_price, raw),
        trigger_price=trigger_price(src.get(keys.trigger_price), keys.trigger_price, raw),
        reduce_only=reduce_only(src.get(keys.reduce_only), src.get(keys.close_position), side, idx),
        position_idx=idx,
        is_take_profit=take_profit(wire_type),
        linked_order_id=linked_order_id(wire_status, src.get(keys.linked_order_id)),
    )

