"""Binance REST answers to events: the seed after a (re)connect and the fill backfill after a gap.

Its own module because REST rows are snapshots (``is_snapshot``), come in lists and are fetched by
the stream, never pushed; every row is checked and a malformed one names its endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from gridbot.errors import NormalizationError
from gridbot.events import FillUpdate, OrderUpdate, PositionUpdate, WalletUpdate
from gridbot.normalize._common import dec, opt_dec, to_int
from gridbot.normalize.binance._records import (
    ALGO_ROW,
    ORDER_ROW,
    POSITION_ROW,
    WALLET_ROW,
    algo_order,
    order,
    position,
    wallet,
)
from gridbot.normalize.binance._wire import (
    EXCHANGE,
    POSITION_IDX,
    SIDES,
    dec_or_zero,
    each_row,
    lookup,
    rest_time,
)

__all__ = [
    "algo_orders_from_rest",
    "fills_from_rest",
    "finished_algo_order_from_rest",
    "orders_from_rest",
    "positions_from_rest",
    "wallets_from_rest",
]


def positions_from_rest(rows: Sequence[Mapping[str, Any]]) -> list[PositionUpdate]:
    """``GET /fapi/v3/positionRisk`` rows; ``cum_realised_pnl`` is None (REST has no ``cr``)."""
    return each_row(rows, "positionRisk", _position_row)


def wallets_from_rest(rows: Sequence[Mapping[str, Any]]) -> list[WalletUpdate]:
    """``GET /fapi/v3/balance`` rows: ``balance`` and ``availableBalance`` per asset."""
    return each_row(rows, "balance", _wallet_row)


def fills_from_rest(rows: Sequence[Mapping[str, Any]]) -> list[FillUpdate]:
    """``GET /fapi/v1/userTrades`` rows, sorted by trade id (the docs do not state an order; a
    symbol's trade ids grow with time)."""
    fills = each_row(rows, "userTrades", _trade_row)
    fills.sort(key=lambda fill: _id_key(fill.trade_id))
    return fills


def orders_from_rest(rows: Sequence[Mapping[str, Any]]) -> list[OrderUpdate]:
    """``GET /fapi/v1/openOrders`` rows (regular orders of the matching engine)."""
    return each_row(rows, "openOrders", _order_row)


def algo_orders_from_rest(rows: Sequence[Mapping[str, Any]]) -> list[OrderUpdate]:
    """``GET /fapi/v1/openAlgoOrders`` rows (conditional orders of the Algo Service)."""
    return each_row(rows, "openAlgoOrders", _algo_row)


def finished_algo_order_from_rest(row: Mapping[str, Any], child: Mapping[str, Any] | None) -> OrderUpdate:
    """A ``GET /fapi/v1/algoOrder`` row, completed with the ``GET /fapi/v1/order`` row of the order it
    triggered (``actualOrderId``).

    The algo row carries no filled quantity, so alone a FINISHED algo order cannot be told Filled from
    Cancelled; the child's ``executedQty`` and ``avgPrice`` decide.
    """
    if child is None:
        return each_row([row], "algoOrder", _algo_row)[0]
    merged = {**row, "executedQty": child.get("executedQty"), "actualPrice": child.get("avgPrice")}
    finished = each_row([merged], "algoOrder", _algo_row)[0]
    return replace(finished, raw=row)


def _position_row(row: Mapping[str, Any]) -> PositionUpdate:
    return position(row, POSITION_ROW, timestamp=rest_time(row), raw=row, snapshot=True)


def _wallet_row(row: Mapping[str, Any]) -> WalletUpdate:
    return wallet(row, WALLET_ROW, timestamp=rest_time(row), raw=row, snapshot=True)


def _order_row(row: Mapping[str, Any]) -> OrderUpdate:
    return order(row, ORDER_ROW, timestamp=rest_time(row), raw=row, snapshot=True)


def _algo_row(row: Mapping[str, Any]) -> OrderUpdate:
    # The documented row has no filled quantity (open algo orders have not filled); one sent is used.
    return algo_order(row, ALGO_ROW, timestamp=rest_time(row), raw=row, snapshot=True)


def _trade_row(row: Mapping[str, Any]) -> FillUpdate:
    idx = lookup(POSITION_IDX, row.get("positionSide", "BOTH"), "positionSide", row)
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
        side=lookup(SIDES, row["side"], "side", row),
        price=dec(row["price"], "price", row),
        qty=dec(row["qty"], "qty", row),
        fee=dec_or_zero(row.get("commission"), "commission", row),
        fee_asset=str(row.get("commissionAsset") or ""),
        realised_pnl=opt_dec(row.get("realizedPnl"), "realizedPnl", row),
        is_maker=maker,
        position_idx=idx,
    )


def _id_key(trade_id: str) -> tuple[int, str]:
    """Numeric ids sort as numbers."""
    return (int(trade_id), "") if trade_id.isdigit() else (0, trade_id)
