"""Binance's wire vocabulary: the enum tables and the small field readers every Binance normalizer uses.

Its own module because pushes and REST rows spell the same things (sides, slots, order types, statuses,
"0" for no trigger price) and must read them one way.  Read-only tables, pure functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, TypeVar

from gridbot.errors import NormalizationError
from gridbot.events import OrderStatus, OrderType, PositionSide, Side
from gridbot.normalize._common import opt_dec, to_int

__all__ = [
    "EXCHANGE",
    "POSITION_IDX",
    "SHAPE_ERRORS",
    "SIDES",
    "algo_status",
    "dec_or_zero",
    "each_row",
    "linked_order_id",
    "lookup",
    "malformed",
    "order_status",
    "order_type",
    "position_side",
    "push_time",
    "reduce_only",
    "rest_time",
    "take_profit",
    "trigger_price",
]

EXCHANGE: Final = "binance"

_T = TypeVar("_T")
_ZERO: Final = Decimal(0)
# What a missing/malformed field raises when a wire mapping is subscripted directly (the fast path).
SHAPE_ERRORS: Final = (KeyError, TypeError, AttributeError)

POSITION_IDX: Final[Mapping[str, int]] = MappingProxyType({"BOTH": 0, "LONG": 1, "SHORT": 2})
SIDES: Final[Mapping[str, Side]] = MappingProxyType({"BUY": "Buy", "SELL": "Sell"})
_ORDER_TYPES: Final[Mapping[str, OrderType]] = MappingProxyType(
    {
        "LIMIT": "Limit",
        "STOP": "Limit",
        "TAKE_PROFIT": "Limit",
        "MARKET": "Market",
        "STOP_MARKET": "Market",
        "TAKE_PROFIT_MARKET": "Market",
        "TRAILING_STOP_MARKET": "Market",
        "LIQUIDATION": "Market",
    }
)
_ORDER_STATUSES: Final[Mapping[str, OrderStatus]] = MappingProxyType(
    {
        "NEW": "New",
        "PARTIALLY_FILLED": "PartiallyFilled",
        "FILLED": "Filled",
        "CANCELED": "Cancelled",
        "EXPIRED": "Expired",
        "EXPIRED_IN_MATCH": "Expired",
    }
)
# FINISHED is absent on purpose: it depends on the filled quantity (see algo_status).
_ALGO_STATUSES: Final[Mapping[str, OrderStatus]] = MappingProxyType(
    {
        "NEW": "Untriggered",
        "TRIGGERING": "Triggered",
        "TRIGGERED": "Triggered",
        "CANCELED": "Cancelled",
        "REJECTED": "Rejected",
        "EXPIRED": "Expired",
    }
)
_TAKE_PROFIT_TYPES: Final = frozenset({"TAKE_PROFIT", "TAKE_PROFIT_MARKET"})
_ALGO_LINKED_STATUSES: Final = frozenset({"TRIGGERED", "FINISHED"})


def lookup(table: Mapping[str, _T], value: Any, name: str, raw: Any) -> _T:
    """``table[value]``, or a NormalizationError naming the field and the unknown value."""
    try:
        return table[value]
    except (KeyError, TypeError):
        raise NormalizationError(f"binance field {name!r} has an unknown value: {value!r}", raw) from None


def order_type(value: Any, name: str, raw: Any) -> OrderType:
    """LIMIT, STOP, TAKE_PROFIT -> Limit; MARKET and every *_MARKET type -> Market."""
    found = _ORDER_TYPES.get(value) if isinstance(value, str) else None
    if found is not None:
        return found
    if isinstance(value, str) and value.endswith("_MARKET"):
        return "Market"
    raise NormalizationError(f"binance field {name!r} has an unknown value: {value!r}", raw)


def order_status(value: Any, name: str, raw: Any) -> OrderStatus:
    """A regular order's status (``X`` / ``status``)."""
    return lookup(_ORDER_STATUSES, value, name, raw)


def algo_status(value: Any, filled: Decimal, name: str, raw: Any) -> OrderStatus:
    """FINISHED means filled or cancelled in the matching engine; the filled quantity tells which."""
    if value == "FINISHED":
        return "Filled" if filled > 0 else "Cancelled"
    return lookup(_ALGO_STATUSES, value, name, raw)


def take_profit(*wire_types: Any) -> bool:
    """Whether any of the order's type fields (``o``/``ot``, ``type``/``origType``) is a take-profit."""
    return any(wire_type in _TAKE_PROFIT_TYPES for wire_type in wire_types)


def linked_order_id(status: Any, actual_id: Any) -> str | None:
    """The child order's id once the algo order has placed it (``ai`` is "" before TRIGGERED)."""
    if status in _ALGO_LINKED_STATUSES and actual_id not in (None, "", 0):
        return str(actual_id)
    return None


def position_side(idx: int, amount: Decimal) -> PositionSide:
    """One-way: the sign of the amount; hedge: the slot, or "" when the slot is flat."""
    if not amount:
        return ""
    if idx == 0:
        return "Buy" if amount > 0 else "Sell"
    return "Buy" if idx == 1 else "Sell"


def reduce_only(flag: Any, close_position: Any, side: str, idx: int) -> bool:
    """The reduce-only flag, a close-position order, or a hedge-mode order against its slot."""
    return (
        flag is True
        or close_position is True
        or (idx == 1 and side == "Sell")
        or (idx == 2 and side == "Buy")
    )


def trigger_price(value: Any, name: str, raw: Any) -> Decimal | None:
    """None for absent, empty or zero: "0" is how Binance says "no trigger"."""
    price = opt_dec(value, name, raw)
    return price if price else None


def dec_or_zero(value: Any, name: str, raw: Any) -> Decimal:
    """An optional number where absence means zero (fees, filled quantities of algo orders)."""
    price = opt_dec(value, name, raw)
    return _ZERO if price is None else price


def push_time(msg: Mapping[str, Any]) -> int:
    """Transaction time ``T``, else event time ``E``."""
    value = msg.get("T")
    if value is None:
        return to_int(msg["E"], "E", msg)
    return to_int(value, "T", msg)


def rest_time(row: Mapping[str, Any]) -> int:
    """A REST row's ``updateTime``, else ``time``, else 0."""
    value = row.get("updateTime") or row.get("time")
    return to_int(value, "updateTime", row) if value else 0


def each_row(
    rows: Iterable[Mapping[str, Any]], what: str, build: Callable[[Mapping[str, Any]], _T]
) -> list[_T]:
    """``build(row)`` for every row; a missing field or a non-mapping row raises NormalizationError."""
    events: list[_T] = []
    for row in rows:
        try:
            events.append(build(row))
        except SHAPE_ERRORS as exc:
            raise malformed(what, exc, row) from None
    return events


def malformed(what: str, exc: BaseException, raw: Any) -> NormalizationError:
    """The error for a message or row whose shape is wrong (a missing field, a non-mapping)."""
    detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
    return NormalizationError(f"malformed binance {what}: {detail}", raw)
