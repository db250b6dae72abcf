"""How a grid is wired to a stream: the part of the stream it needs, and one status callback for many grids.

Apart from the strategy so that the wiring (a typing Protocol and a fan-out) reads on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gridbot.events import (
    AccountUpdate,
    FillUpdate,
    OrderUpdate,
    PositionUpdate,
    StatusUpdate,
    TickerUpdate,
    WalletUpdate,
)

__all__ = ["Subscribable", "fan_out"]


class Subscribable(Protocol):
    """The part of ExchangeStream that :meth:`GridStrategy.attach` uses."""

    def subscribe(
        self,
        symbol: str,
        *,
        on_position: Callable[[PositionUpdate], object] | None = None,
        on_wallet: Callable[[WalletUpdate], object] | None = None,
        on_order: Callable[[OrderUpdate], object] | None = None,
        on_ticker: Callable[[TickerUpdate], object] | None = None,
        on_fill: Callable[[FillUpdate], object] | None = None,
        on_account: Callable[[AccountUpdate], object] | None = None,
    ) -> None: ...


def fan_out(*callbacks: Callable[[StatusUpdate], None]) -> Callable[[StatusUpdate], None]:
    """One ``on_status`` for a stream shared by several grids."""

    def dispatch(status: StatusUpdate) -> None:
        for callback in callbacks:
            callback(status)

    return dispatch
