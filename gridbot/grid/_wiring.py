"""How a grid is wired to a stream: the part of the stream it needs, and one status callback for many grids.

Apart from the strategy so that the wiring (a typing Protocol and a fan-out) reads on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gridbot import events as ev

__all__ = ["Subscribable", "fan_out"]


class Subscribable(Protocol):
    """The part of ExchangeStream that :meth:`GridStrategy.attach` uses."""

    def subscribe(
        self,
        symbol: str,
        *,
        on_position: Callable[[ev.PositionUpdate], object] | None = None,
        on_wallet: Callable[[ev.WalletUpdate], object] | None = None,
        on_order: Callable[[ev.OrderUpdate], object] | None = None,
        on_ticker: Callable[[ev.TickerUpdate], object] | None = None,
        on_fill: Callable[[ev.FillUpdate], object] | None = None,
        on_account: Callable[[ev.AccountUpdate], object] | None = None,
    ) -> None: ...


def fan_out(*callbacks: Callable[[ev.StatusUpdate], None]) -> Callable[[ev.StatusUpdate], None]:
    """One ``on_status`` for a stream shared by several grids."""

    def dispatch(status: ev.StatusUpdate) -> None:
        for callback in callbacks:
            callback(status)

    return dispatch
