"""Events and a stand-in stream for the fan-out tests that need no exchange."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from gridbot.events import (
    Event,
    FillUpdate,
    OrderUpdate,
    PositionUpdate,
    StatusUpdate,
    TickerUpdate,
    WalletUpdate,
)

SYMBOL = "BTCUSDT"


class SinkHost:
    """What RedisPublisher.attach needs of an ExchangeStream: ``exchange`` and ``add_sink``."""

    exchange = "bybit"

    def __init__(self) -> None:
        self.sinks: list[Callable[[Event], None]] = []

    def add_sink(self, sink: Callable[[Event], None]) -> None:
        self.sinks.append(sink)

    def emit(self, *events: Event) -> None:
        for event in events:
            for sink in self.sinks:
                sink(event)


def fill(n: int, symbol: str = SYMBOL) -> FillUpdate:
    return FillUpdate(exchange="bybit", timestamp=1_700_000_000_000 + n, symbol=symbol, order_id=f"o{n}",
                      trade_id=f"t{n}", side="Buy", price=Decimal("60000.10"), qty=Decimal("0.010"),
                      fee=Decimal("0.33000550"), fee_asset="USDT", realised_pnl=Decimal("0E-8"),
                      is_maker=n % 2 == 0, position_idx=0)


def position(size: str, n: int = 0, symbol: str = SYMBOL, mark: str | None = "60000") -> PositionUpdate:
    return PositionUpdate(exchange="bybit", timestamp=1_700_000_000_000 + n, symbol=symbol, position_idx=0,
                          side="Buy" if Decimal(size) else "", size=Decimal(size),
                          entry_price=Decimal("60000.0"),
                          mark_price=None if mark is None else Decimal(mark), unrealised_pnl=Decimal("0"),
                          cum_realised_pnl=Decimal("-1.25"))


def order(order_id: str, status: str = "New", n: int = 0, symbol: str = SYMBOL) -> OrderUpdate:
    return OrderUpdate(exchange="bybit", timestamp=1_700_000_000_000 + n, symbol=symbol, order_id=order_id,
                       client_order_id=f"c-{order_id}", side="Sell", order_type="Limit",
                       status=status,  # type: ignore[arg-type]
                       price=Decimal("61000"), qty=Decimal("0.01"), filled_qty=Decimal("0"),
                       avg_price=Decimal("0"),
                       trigger_price=None, reduce_only=True, position_idx=0, is_take_profit=True,
                       linked_order_id=None)


def wallet(balance: str, n: int = 0) -> WalletUpdate:
    return WalletUpdate(exchange="bybit", timestamp=1_700_000_000_000 + n, coin="USDT",
                        wallet_balance=Decimal(balance), available_balance=None, equity=Decimal(balance))


def ticker(mark: str, n: int = 0, symbol: str = SYMBOL) -> TickerUpdate:
    return TickerUpdate(exchange="bybit", timestamp=1_700_000_000_000 + n, symbol=symbol,
                        mark_price=Decimal(mark), last_price=Decimal(mark), index_price=None,
                        funding_rate=Decimal("0.0001"),
                        next_funding_time=1_700_003_600_000)


def status(state: str, detail: str = "") -> StatusUpdate:
    return StatusUpdate(exchange="bybit", timestamp=1_700_000_000_000, state=state,  # type: ignore[arg-type]
                        detail=detail)
