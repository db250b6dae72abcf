"""Helpers shared by the pure normalizers: wire strings to Decimal, and non-event results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from gridbot.errors import NormalizationError

__all__ = ["Ignored", "ListenKeyExpired", "dec", "opt_dec", "require", "to_int"]


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed message that carries nothing for gridbot (another event type, an ack, a pong)."""

    kind: str


@dataclass(frozen=True, slots=True)
class ListenKeyExpired:
    """Binance's ``listenKeyExpired``: the user stream is dead until a new key is used."""

    timestamp: int


def dec(value: Any, name: str, raw: Any) -> Decimal:
    """A required number from its wire string (JSON ints accepted; floats refused: money is never float)."""
    if isinstance(value, str) and value:
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise NormalizationError(f"field {name!r} is not a number: {value!r}", raw) from None
        if result.is_finite():
            return result
        raise NormalizationError(f"field {name!r} is not a finite number: {value!r}", raw)
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise NormalizationError(f"field {name!r} is missing or not a number: {value!r}", raw)


def opt_dec(value: Any, name: str, raw: Any) -> Decimal | None:
    """An optional number: None for absent or empty ("" is how Bybit says 'not applicable')."""
    if value is None or value == "":
        return None
    return dec(value, name, raw)


def to_int(value: Any, name: str, raw: Any) -> int:
    """An integer that may arrive as a JSON number or a string (Binance's ``E`` can be either)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise NormalizationError(f"field {name!r} is not an integer: {value!r}", raw)


def require(mapping: Mapping[str, Any], key: str, raw: Any) -> Any:
    """``mapping[key]``, or a NormalizationError that names the missing field."""
    try:
        return mapping[key]
    except (KeyError, TypeError):
        raise NormalizationError(f"field {key!r} is missing", raw) from None
