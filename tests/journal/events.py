"""Event builders for the journal tests (plain values, so each test says only what matters to it)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gridbot.events import FillUpdate, OrderUpdate, PositionUpdate, WalletUpdate

D = Decimal


def fill(trade_id: str, *, timestamp: int = 1_000, symbol: str = "BTCUSDT", exchange: str = "bybit",
         **over: Any) -> FillUpdate:
    values: dict[str, Any] = dict(
        exchange=exchange, timestamp=timestamp, symbol=symbol, order_id="o-" + trade_id,
        trade_id=trade_id, side="Buy", price=D("60000.10"), qty=D("0.001"), fee=D("0.00000001"),
        fee_asset="USDT", realised_pnl=D("0"), is_maker=True, position_idx=0,
    )
    values.update(over)
    return FillUpdate(**values)


def position(cum: str | None, *, timestamp: int = 1_000, symbol: str = "BTCUSDT", idx: int = 0,
             exchange: str = "bybit", size: str = "0.002", **over: Any) -> PositionUpdate:
    values: dict[str, Any] = dict(
        exchange=exchange, timestamp=timestamp, symbol=symbol, position_idx=idx,
        side="Buy" if D(size) > 0 else "", size=D(size), entry_price=D("60000.5"), mark_price=None,
        unrealised_pnl=D("0"), cum_realised_pnl=None if cum is None else D(cum),
    )
    values.update(over)
    return PositionUpdate(**values)


def order(order_id: str, status: str = "New", *, timestamp: int = 1_000, symbol: str = "BTCUSDT",
          exchange: str = "bybit", **over: Any) -> OrderUpdate:
    values: dict[str, Any] = dict(
        exchange=exchange, timestamp=timestamp, symbol=symbol, order_id=order_id,
        client_order_id="c-" + order_id, side="Sell", order_type="Limit", status=status,
        price=D("61000.0"), qty=D("0.001"), filled_qty=D("0"), avg_price=D("0"), trigger_price=None,
        reduce_only=True, position_idx=0, is_take_profit=False,
    )
    values.update(over)
    return OrderUpdate(**values)


def wallet(balance: str | None, available: str | None, *, timestamp: int = 1_000, coin: str = "USDT",
           exchange: str = "bybit", **over: Any) -> WalletUpdate:
    values: dict[str, Any] = dict(
        exchange=exchange, timestamp=timestamp, coin=coin,
        wallet_balance=None if balance is None else D(balance),
        available_balance=None if available is None else D(available), equity=None,
    )
    values.update({k: None for k in ("mm_rate",) if k in WalletUpdate.__dataclass_fields__})
    values.update(over)
    return WalletUpdate(**values)
