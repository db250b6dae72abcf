"""The order-control vocabulary every exchange's order gateway speaks (side, position slot), and the
:class:`OrderGateway` protocol the grid strategy talks to: REST place/cancel, never used to read state."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

__all__ = ["OrderGateway", "check_position_idx", "check_side"]


class OrderGateway(Protocol):
    """What a strategy needs to control orders; every call is one REST request."""

    def place_limit(
        self, symbol: str, side: str, qty: Decimal, price: Decimal, *,
        position_idx: int, reduce_only: bool, client_order_id: str,
    ) -> str:
        """Place a GTC limit order; returns the exchange's order id."""

    def place_market(
        self, symbol: str, side: str, qty: Decimal, *,
        position_idx: int, reduce_only: bool, client_order_id: str,
    ) -> str:
        """Place a market order; returns the exchange's order id."""

    def cancel(self, symbol: str, order_id: str) -> None:
        """Cancel an open order."""


def check_side(side: str) -> None:
    """``side`` is "Buy" or "Sell" (a ValueError otherwise)."""
    if side not in ("Buy", "Sell"):
        raise ValueError(f"side must be 'Buy' or 'Sell', not {side!r}")


def check_position_idx(position_idx: int) -> None:
    """``position_idx`` is 0 (one-way), 1 (hedge long) or 2 (hedge short) (a ValueError otherwise)."""
    if position_idx not in (0, 1, 2):
        raise ValueError(f"position_idx must be 0, 1 or 2, not {position_idx!r}")
