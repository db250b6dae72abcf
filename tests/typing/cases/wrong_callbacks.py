"""Mistakes mypy must catch.  Each line marked ``# E: <code>`` must get exactly that error, and no
other line any error (tests/typing/test_mypy.py).  Excluded from ``mypy tests`` (setup.cfg)."""

from __future__ import annotations

from gridbot import ExchangeStream, OrderUpdate, PositionUpdate, StatusUpdate, WalletUpdate


def handle_wallet(wallet: WalletUpdate) -> None:
    del wallet


def handle_position(position: PositionUpdate) -> None:
    del position


def handle_order(order: OrderUpdate) -> None:
    if order.side == "BUY":  # E: comparison-overlap
        pass
    if order.order_type == "LIMIT":  # E: comparison-overlap
        pass


def handle_status(status: StatusUpdate) -> None:
    if status.state == "disconnected":  # E: comparison-overlap
        pass


stream = ExchangeStream("bybit", api_key="k", api_secret="s", on_status=handle_position)  # E: arg-type
stream.subscribe("BTCUSDT", on_position=handle_wallet)  # E: arg-type
stream.subscribe("BTCUSDT", on_order=handle_position)  # E: arg-type
stream.subscribe("BTCUSDT", on_fill=42)  # E: arg-type
stream.subscribe("BTCUSDT", on_account=handle_wallet)  # E: arg-type
stream.subscribe("BTCUSDT", on_trade=handle_order)  # E: call-arg
stream2 = ExchangeStream("kraken", api_key="k", api_secret="s")  # E: arg-type
stream3 = ExchangeStream("bybit", api_key="k", api_secret="s", dispatch="threads")  # E: arg-type
