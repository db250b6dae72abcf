"""Binance USDⓈ-M margin arithmetic (cross margin, single-asset mode): pure functions on Decimal.

Every formula is Binance's documented one (each source named below; brackets:
https://developers.binance.com/docs/derivatives/usds-margined-futures/account/rest-api/Notional-and-Leverage-Brackets):

- maintenance margin of a position = |notional| * maintMarginRatio - cum, with the bracket whose
  ``notionalFloor < |notional| ≤ notionalCap`` (Binance's tier tables: "0 < Position ≤ 5,000", ...);
  ``cum`` (the "maintenance amount") = floor_n * (rate_n - rate_{n-1}) + cum_{n-1}
  (liquidation-price FAQ, https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93);
- margin balance = wallet balance + unrealised PnL; MM rate = maintenance margin / margin balance
  (liquidation "once Margin Balance <= Maintenance Margin", i.e. at a rate of 1);
- initial margin = notional / leverage ("Initial Margin = Notional Value / Leverage");
- available for order = max(0, crossWalletBalance + Σ cross unrealised PnL - (Σ cross initial margin +
  isolated open order initial margin)) ("How to Check Futures Wallet Balance" FAQ).

``GET /fapi/v1/leverageBracket`` sends JSON *numbers*; they become Decimal through their decimal text
(``str``), never through float arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from gridbot.errors import NormalizationError

__all__ = [
    "Bracket",
    "SymbolBrackets",
    "available_for_order",
    "bracket_for",
    "initial_margin",
    "maintenance_amounts",
    "maintenance_margin",
    "margin_balance",
    "mm_rate",
    "parse_leverage_brackets",
    "unrealised_pnl",
    "wire_decimal",
]

_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)


@dataclass(frozen=True, slots=True)
class Bracket:
    """One notional tier of a symbol: ``notional_floor < |notional| ≤ notional_cap``."""

    bracket: int
    initial_leverage: int
    notional_floor: Decimal
    notional_cap: Decimal
    maint_margin_ratio: Decimal
    cum: Decimal


@dataclass(frozen=True, slots=True)
class SymbolBrackets:
    """The tiers of one symbol, lowest first.

    ``notional_coef`` is Binance's "user symbol bracket multiplier, only appears when user's symbol bracket
    is adjusted".  The docs do not say whether the published floors and caps already include it, so a
    coefficient other than 1 makes the tiers :attr:`ambiguous` and gridbot gives no maintenance margin.
    """

    symbol: str
    brackets: tuple[Bracket, ...]
    notional_coef: Decimal | None = None

    @property
    def ambiguous(self) -> bool:
        return self.notional_coef is not None and self.notional_coef != _ONE


def wire_decimal(value: Any, name: str, raw: Any) -> Decimal:
    """A number that may arrive as a JSON number or a string, as a finite Decimal of its decimal text.

    ``float`` goes through ``str`` (its shortest round-tripping text, i.e. the JSON literal), so
    ``0.0065`` becomes ``Decimal("0.0065")``, not the binary float's expansion.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise NormalizationError(f"field {name!r} is missing or not a number: {value!r}", raw)
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise NormalizationError(f"field {name!r} is not a number: {value!r}", raw) from None
    if not result.is_finite():
        raise NormalizationError(f"field {name!r} is not a finite number: {value!r}", raw)
    return result


def parse_leverage_brackets(payload: Any) -> dict[str, SymbolBrackets]:
    """``GET /fapi/v1/leverageBracket``: a list of ``{symbol, notionalCoef?, brackets[]}`` (no ``symbol``
    parameter) or one such object (with it).  Tiers are sorted by floor and must be contiguous."""
    items: Sequence[Any] = payload if isinstance(payload, list) else [payload]
    result: dict[str, SymbolBrackets] = {}
    for item in items:
        if not isinstance(item, Mapping):
            raise NormalizationError("leverageBracket entry is not an object", payload)
        symbol = item.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise NormalizationError("leverageBracket entry has no symbol", item)
        rows = item.get("brackets")
        if not isinstance(rows, list) or not rows:
            raise NormalizationError(f"leverageBracket {symbol} has no brackets", item)
        coef = item.get("notionalCoef")
        brackets = tuple(sorted((_bracket(row, item) for row in rows), key=lambda b: b.notional_floor))
        _check_contiguous(symbol, brackets, item)
        result[symbol] = SymbolBrackets(
            symbol=symbol,
            brackets=brackets,
            notional_coef=None if coef is None else wire_decimal(coef, "notionalCoef", item),
        )
    return result


def _bracket(row: Any, item: Mapping[str, Any]) -> Bracket:
    if not isinstance(row, Mapping):
        raise NormalizationError("leverageBracket bracket is not an object", item)
    return Bracket(
        bracket=_wire_int(row.get("bracket"), "bracket", item),
        initial_leverage=_wire_int(row.get("initialLeverage"), "initialLeverage", item),
        notional_floor=wire_decimal(row.get("notionalFloor"), "notionalFloor", item),
        notional_cap=wire_decimal(row.get("notionalCap"), "notionalCap", item),
        maint_margin_ratio=wire_decimal(row.get("maintMarginRatio"), "maintMarginRatio", item),
        cum=wire_decimal(row.get("cum"), "cum", item),
    )


def _wire_int(value: Any, name: str, raw: Any) -> int:
    number = wire_decimal(value, name, raw)
    if number != number.to_integral_value():
        raise NormalizationError(f"field {name!r} is not an integer: {value!r}", raw)
    return int(number)


def _check_contiguous(symbol: str, brackets: Sequence[Bracket], raw: Any) -> None:
    """Each tier starts where the previous one ends; otherwise some notional has no tier."""
    previous_cap: Decimal | None = None
    for bracket in brackets:
        if bracket.notional_cap <= bracket.notional_floor:
            raise NormalizationError(f"leverageBracket {symbol} tier {bracket.bracket}: cap ≤ floor", raw)
        if previous_cap is not None and bracket.notional_floor != previous_cap:
            raise NormalizationError(f"leverageBracket {symbol}: tiers are not contiguous", raw)
        previous_cap = bracket.notional_cap


def bracket_for(brackets: SymbolBrackets, notional: Decimal) -> Bracket | None:
    """The tier of ``|notional|`` (``floor < |notional| ≤ cap``; zero is in the first tier), or None
    when it is above the last cap."""
    size = abs(notional)
    tiers = brackets.brackets
    if size == 0:
        return tiers[0]
    for bracket in tiers:
        if bracket.notional_floor < size <= bracket.notional_cap:
            return bracket
    return None


def maintenance_margin(notional: Decimal, brackets: SymbolBrackets) -> Decimal | None:
    """|notional| * maintMarginRatio - cum of its tier; None when no tier applies or tiers are ambiguous."""
    if brackets.ambiguous:
        return None
    bracket = bracket_for(brackets, notional)
    if bracket is None:
        return None
    return abs(notional) * bracket.maint_margin_ratio - bracket.cum


def maintenance_amounts(brackets: Sequence[Bracket]) -> tuple[Decimal, ...]:
    """Each tier's maintenance amount (``cum``) from the FAQ's recurrence, lowest tier first:
    amount_n = floor_n * (rate_n - rate_{n-1}) + amount_{n-1}, amount_1 = 0.

    Binance sends ``cum`` itself; this is how it is defined, used to check what it sends.
    """
    amounts: list[Decimal] = []
    previous_rate = _ZERO
    previous_amount = _ZERO
    for index, bracket in enumerate(brackets):
        rate = bracket.maint_margin_ratio
        amount = _ZERO if index == 0 else bracket.notional_floor * (rate - previous_rate) + previous_amount
        amounts.append(amount)
        previous_rate, previous_amount = rate, amount
    return tuple(amounts)


def unrealised_pnl(side: str, size: Decimal, entry_price: Decimal, mark_price: Decimal) -> Decimal:
    """(mark - entry) * size, negated for a short ("Sell"); zero when flat."""
    if size == 0:
        return _ZERO
    pnl = (mark_price - entry_price) * size
    return -pnl if side == "Sell" else pnl


def initial_margin(notional: Decimal, leverage: int) -> Decimal:
    """|notional| / leverage."""
    if leverage <= 0:
        raise ValueError(f"leverage must be positive, not {leverage}")
    return abs(notional) / Decimal(leverage)


def margin_balance(wallet_balance: Decimal, unrealised: Decimal) -> Decimal:
    """Wallet balance + unrealised PnL."""
    return wallet_balance + unrealised


def mm_rate(maintenance: Decimal, balance: Decimal) -> Decimal | None:
    """Maintenance margin / margin balance; None when the margin balance is not positive (the ratio is
    then undefined: the account is at or past liquidation, or empty)."""
    if balance <= 0:
        return None
    return maintenance / balance


def available_for_order(
    cross_wallet_balance: Decimal,
    cross_unrealised: Decimal,
    cross_initial_margin: Decimal,
    isolated_open_order_margin: Decimal = _ZERO,
) -> Decimal:
    """max(0, crossWalletBalance + Σ cross uPnL - (Σ cross initial margin + isolated open order IM))."""
    free = cross_wallet_balance + cross_unrealised - (cross_initial_margin + isolated_open_order_margin)
    return max(_ZERO, free)
