"""The order-control vocabulary every exchange's order gateway speaks (side, position slot), and the
:class:`OrderGateway` protocol the grid strategy talks to: REST place/cancel, never used to read state."""

from __future__ import annotations

import abc
from decimal import Decimal
from typing import Any, Protocol

__all__ = ["OrderGateway", "RestOrderGateway", "check_position_idx", "check_side"]


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


class RestOrderGateway(abc.ABC):
    """The steps every exchange's gateway takes for an order (validate, the exchange's fields, one REST
    request); subclasses name the fields and make the request."""

    def place_limit(
        self, symbol: str, side: str, qty: Decimal, price: Decimal, *,
        position_idx: int, reduce_only: bool, client_order_id: str,
    ) -> str:
        """Place a GTC limit order; returns the exchange's order id."""
        params = self._checked_params(symbol, side, qty, position_idx, reduce_only, client_order_id)
        params.update(self._limit_fields(price))
        return self._create(params)

    def place_market(
        self, symbol: str, side: str, qty: Decimal, *,
        position_idx: int, reduce_only: bool, client_order_id: str,
    ) -> str:
        """Place a market order; returns the exchange's order id."""
        params = self._checked_params(symbol, side, qty, position_idx, reduce_only, client_order_id)
        params.update(self._market_fields())
        return self._create(params)

    def _checked_params(
        self, symbol: str, side: str, qty: Decimal, position_idx: int, reduce_only: bool,
        client_order_id: str,
    ) -> dict[str, Any]:
        check_side(side)
        check_position_idx(position_idx)
        return self._order_params(symbol, side, qty, position_idx, reduce_only, client_order_id)

    @abc.abstractmethod
    def _order_params(
        self, symbol: str, side: str, qty: Decimal, position_idx: int, reduce_only: bool,
        client_order_id: str,
    ) -> dict[str, Any]:
        """The exchange's fields for what every order has (side and slot already validated)."""

    @abc.abstractmethod
    def _limit_fields(self, price: Decimal) -> dict[str, Any]:
        """The exchange's fields of a GTC limit order at ``price``."""

    @abc.abstractmethod
    def _market_fields(self) -> dict[str, Any]:
        """The exchange's fields of a market order."""

    @abc.abstractmethod
    def _create(self, params: dict[str, Any]) -> str:
        """Send the order; the exchange's order id."""
