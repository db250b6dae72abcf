"""Binance USDⓈ-M margin arithmetic for the emulator's engine: leverage brackets, maintenance, initial margin.

Pure functions over Decimals, so the engine's accounting and the tests can share them.  Sources (see
EXCHANGE-FACTS §5):

- brackets (``GET /fapi/v1/leverageBracket``): a notional belongs to the bracket with
  ``notionalFloor < notional <= notionalCap`` (Binance's tier announcements write
  "5,000 < Position <= 25,000"; the API doc states no inclusivity); a zero notional is in the first
  bracket, one above the last cap in the last bracket;
- maintenance amount ``cum`` (liquidation-price FAQ): "Floor of Position Bracket on Level n * difference
  between Maintenance Margin Rate on Level n and Maintenance Margin Rate on Level n-1 + Maintenance Amount
  on Level n-1";
- maintenance margin: "Notional Position Value * Maintenance Margin Rate - Maintenance Amount";
- initial margin: |notional at mark| / leverage ("determined by the leverage you selected").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

__all__ = [
    "DEFAULT_BRACKETS",
    "LeverageBracket",
    "bracket_for",
    "initial_margin",
    "leverage_brackets",
    "maintenance_margin",
    "max_notional",
    "round8",
]

_ZERO = Decimal(0)
_EIGHT_DP = Decimal("1E-8")


@dataclass(frozen=True)
class LeverageBracket:
    """One row of Binance's notional and leverage brackets (``brackets[]`` of leverageBracket)."""

    bracket: int
    initial_leverage: int  # the highest leverage allowed in this bracket
    notional_floor: Decimal
    notional_cap: Decimal
    maint_margin_ratio: Decimal
    cum: Decimal  # maintenance amount


Tier = tuple[Decimal | int | str, Decimal | str, int]


def leverage_brackets(tiers: Iterable[Tier]) -> tuple[LeverageBracket, ...]:
    """Brackets from ``(notional cap, maintenance margin ratio, max leverage)`` rows in ascending order.

    Each floor is the previous cap (0 for the first) and ``cum`` follows the FAQ's recurrence, so a table
    copied from a Binance tier announcement needs only these three columns.
    """
    brackets: list[LeverageBracket] = []
    floor, previous_rate, cum = _ZERO, _ZERO, _ZERO
    for number, (cap, rate, max_leverage) in enumerate(tiers, start=1):
        cap_d, rate_d = Decimal(cap), Decimal(rate)
        if cap_d <= floor or not _ZERO <= rate_d < 1 or max_leverage < 1:
            raise ValueError(f"bracket {number}: cap {cap} must exceed {floor}, ratio must be in [0, 1), "
                             "leverage >= 1")
        cum = floor * (rate_d - previous_rate) + cum
        brackets.append(LeverageBracket(number, max_leverage, floor, cap_d, rate_d, cum))
        floor, previous_rate = cap_d, rate_d
    if not brackets:
        raise ValueError("at least one bracket is needed")
    return tuple(brackets)


# Binance's published BTCUSDT tiers of the liquidation FAQ's era (caps, rates and leverage as announced).
DEFAULT_BRACKETS: tuple[LeverageBracket, ...] = leverage_brackets((
    (50_000, "0.004", 125),
    (250_000, "0.005", 100),
    (3_000_000, "0.01", 50),
    (15_000_000, "0.025", 20),
    (30_000_000, "0.05", 10),
    (80_000_000, "0.1", 5),
    (100_000_000, "0.125", 4),
    (200_000_000, "0.15", 3),
    (300_000_000, "0.25", 2),
    (500_000_000, "0.5", 1),
))


def bracket_for(brackets: tuple[LeverageBracket, ...], notional: Decimal) -> LeverageBracket:
    """The bracket with ``floor < |notional| <= cap`` (the first for 0, the last above every cap)."""
    value = abs(notional)
    for bracket in brackets:
        if value <= bracket.notional_cap:
            return bracket
    return brackets[-1]


def maintenance_margin(brackets: tuple[LeverageBracket, ...], notional: Decimal) -> Decimal:
    """|notional| * maintMarginRatio - cum of its bracket (0 for a flat position)."""
    if notional == 0:
        return _ZERO
    bracket = bracket_for(brackets, notional)
    return round8(abs(notional) * bracket.maint_margin_ratio - bracket.cum)


def initial_margin(notional: Decimal, leverage: Decimal) -> Decimal:
    return round8(abs(notional) / leverage)


def max_notional(brackets: tuple[LeverageBracket, ...], leverage: Decimal) -> Decimal:
    """The largest position notional allowed at ``leverage`` (the top cap of the brackets allowing it)."""
    caps = [b.notional_cap for b in brackets if b.initial_leverage >= leverage]
    return max(caps) if caps else _ZERO


def round8(value: Decimal) -> Decimal:
    """Round to 8 decimals when longer (Binance's precision), leaving shorter values untouched."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -8:
        return value.quantize(_EIGHT_DP, rounding=ROUND_HALF_EVEN)
    return value
