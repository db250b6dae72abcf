"""A grid's shape: its configuration, its levels and where their prices fall.

Kept apart from the strategy because it is pure arithmetic on a start price (no orders, no stream,
no lock): the prices of every level can be checked on their own.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from gridbot.events import Side

__all__ = ["GridConfig", "Level", "LevelState", "build_levels"]

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class GridConfig:
    """One symbol's grid.  ``start_price`` None: the first mark price the stream delivers."""

    symbol: str
    qty: Decimal
    levels: int = 3
    step_pct: Decimal = Decimal("0.2")
    tick_size: Decimal = Decimal("0.1")
    hedge: bool = False
    start_price: Decimal | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", self.symbol.upper())
        if self.levels < 1:
            raise ValueError("levels must be >= 1")
        if self.qty <= 0 or self.step_pct <= 0 or self.tick_size <= 0:
            raise ValueError("qty, step_pct and tick_size must be > 0")
        if self.step_pct * self.levels >= _HUNDRED:
            raise ValueError("step_pct * levels must stay below 100 %")


class LevelState(enum.Enum):
    """Where a level is in its round trip: entry, then take-profit, then armed again."""

    IDLE = "idle"              # nothing open: the entry is (re)placed when placing is allowed
    ENTRY_OPEN = "entry"       # the entry order rests
    FILLED = "filled"          # the entry filled; its take-profit is (re)placed when allowed
    TP_OPEN = "tp"             # the take-profit rests
    DISABLED = "disabled"      # repeated failures: left alone


@dataclass
class Level:
    """One grid level: ``index`` < 0 buys below the start price, > 0 sells above it."""

    index: int
    side: Side
    price: Decimal
    tp_price: Decimal
    position_idx: int
    state: LevelState = LevelState.IDLE
    entry_client_id: str = ""
    tp_client_id: str = ""
    order_id: str = ""             # the open entry or take-profit order
    held_qty: Decimal = _ZERO      # filled by the entry, not yet closed by the take-profit
    failures: int = 0
    cancel_requested: bool = False

    @property
    def tp_side(self) -> Side:
        return "Sell" if self.side == "Buy" else "Buy"


def build_levels(config: GridConfig, start: Decimal) -> dict[int, Level]:
    """The levels around ``start``: buys below (index -1, -2, ...), sells above (1, 2, ...), prices on
    the tick, rounded away from the start; each take-profit one step back towards it."""
    step = config.step_pct / _HUNDRED
    tick = config.tick_size
    levels: dict[int, Level] = {}
    for i in range(1, config.levels + 1):
        buy = _round(start * (1 - step * i), tick, ROUND_FLOOR)
        sell = _round(start * (1 + step * i), tick, ROUND_CEILING)
        levels[-i] = Level(index=-i, side="Buy", price=buy, position_idx=1 if config.hedge else 0,
                           tp_price=_round(buy * (1 + step), tick, ROUND_CEILING))
        levels[i] = Level(index=i, side="Sell", price=sell, position_idx=2 if config.hedge else 0,
                          tp_price=_round(sell * (1 - step), tick, ROUND_FLOOR))
    return levels


def _round(value: Decimal, tick: Decimal, rounding: str) -> Decimal:
    return (value / tick).to_integral_value(rounding=rounding) * tick


