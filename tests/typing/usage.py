"""How the public API is meant to be typed: this module must pass ``mypy --strict`` (CI checks tests/).

Nothing here runs; test_mypy.py also checks it next to the cases that must fail.
"""

from __future__ import annotations

from decimal import Decimal

from gridbot import (
    ExchangeStream,
    FillUpdate,
    OrderUpdate,
    PositionUpdate,
    StatusUpdate,
    TickerUpdate,
    WalletUpdate,
)
from gridbot.book import BookSnapshot, StreamStatus
from gridbot.events import OrderType, PositionSide, Side, StatusState


def on_position(position: PositionUpdate) -> None:
    side: PositionSide = position.side
    if side == "Buy" and position.size > 0:
        pass


def on_wallet(wallet: WalletUpdate) -> None:
    balance: Decimal | None = wallet.wallet_balance
    del balance


def on_order(order: OrderUpdate) -> None:
    side: Side = order.side
    kind: OrderType = order.order_type
    del side, kind


def on_fill(fill: FillUpdate) -> None:
    del fill


def on_ticker(ticker: TickerUpdate) -> None:
    del ticker


def on_status(status: StatusUpdate) -> None:
    state: StatusState = status.state
    del state


def wire() -> None:
    stream = ExchangeStream("bybit", api_key="k", api_secret="s", on_status=on_status)
    stream.subscribe("BTCUSDT", on_position=on_position, on_wallet=on_wallet, on_order=on_order,
                     on_fill=on_fill, on_ticker=on_ticker)
    seen: list[PositionUpdate] = []
    stream.subscribe("ETHUSDT", on_position=seen.append, on_ticker=lambda t: t.mark_price)
    view: BookSnapshot = stream.book.snapshot()
    status: StreamStatus = stream.status()
    del view, status
