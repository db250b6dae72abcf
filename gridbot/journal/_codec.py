"""Events to journal rows and back, exactly: Decimals as their decimal string, driven by type hints.

Pure functions: no SQL, no I/O.  A field the table has a column for goes there; any other field
(one a newer gridbot added) goes to the row's ``extra`` JSON, so nothing is lost and the event read
back compares equal to the one written.  ``raw`` is not kept (it is debugging data, not state).
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Sequence
from dataclasses import fields
from decimal import Decimal
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from gridbot import events
from gridbot.journal._schema import TableSpec

__all__ = ["Codec", "codec_for", "decimal_text"]

_SKIPPED = frozenset({"raw", "restored"})
_Convert = Callable[[Any], Any]


def decimal_text(value: Decimal) -> str:
    """Fixed-point text of a Decimal (no exponent), exact: ``Decimal(decimal_text(d)) == d``."""
    return format(value, "f")


def _identity(value: Any) -> Any:
    return value


def _to_bool(value: Any) -> bool:
    return bool(value)


def _to_int(value: Any) -> int:
    return int(value)


def _to_str(value: Any) -> str:
    return str(value)


def _to_decimal(value: Any) -> Decimal:
    return Decimal(str(value))


def _optional(convert: _Convert) -> _Convert:
    def optional(value: Any) -> Any:
        return None if value is None else convert(value)

    return optional


def _decoder(hint: Any) -> _Convert:
    """How a stored value becomes the field's type again."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        inner = _decoder(args[0]) if len(args) == 1 else _identity
        return _optional(inner)
    if origin is Literal:
        return _to_str
    if hint is Decimal:
        return _to_decimal
    if hint is bool:
        return _to_bool
    if hint is int:
        return _to_int
    if hint is str:
        return _to_str
    return _identity


def _encode_decimal(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is not Decimal:
        raise TypeError(f"expected a Decimal, not {type(value).__name__}")
    return format(value, "f")


def _encode_bool(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def _encode_plain(value: Any) -> Any:
    if value is None or type(value) in (int, str):
        return value
    raise TypeError(f"expected an int or a str, not {type(value).__name__}")


def _encoder(hint: Any) -> _Convert:
    """How a field's value is stored: Decimal -> exact text, bool -> 0/1, int and str as they are."""
    args = [a for a in get_args(hint) if a is not type(None)] if get_origin(hint) in (
        Union, types.UnionType) else [hint]
    if Decimal in args:
        return _encode_decimal
    if bool in args:
        return _encode_bool
    return _encode_plain


class Codec:
    """Row conversion for one table; build once per table (``codec_for``)."""

    __slots__ = ("_cls", "_columns", "_decoders", "_encoders", "_extra_fields", "spec")

    def __init__(self, spec: TableSpec) -> None:
        cls: type[Any] = getattr(events, spec.event)
        hints = get_type_hints(cls)
        names = [f.name for f in fields(cls) if f.name not in _SKIPPED]
        self.spec = spec
        self._cls = cls
        self._columns = spec.columns
        self._extra_fields = tuple(n for n in names if n not in spec.columns)
        self._decoders = {name: _decoder(hints[name]) for name in names}
        self._encoders = tuple((name, _encoder(hints.get(name))) for name in spec.columns)

    def values(self, event: Any) -> list[Any]:
        """The column values of ``event`` in table order, then its ``extra`` JSON.

        Raises TypeError or ValueError for a value of the wrong type (bad input, never stored)."""
        row = [encode(getattr(event, name, None)) for name, encode in self._encoders]
        row.append(self.extra_json(event))
        return row

    def extra_json(self, event: Any) -> str:
        if not self._extra_fields:
            return "{}"
        extra = {name: _json_value(getattr(event, name)) for name in self._extra_fields}
        return json.dumps(extra, separators=(",", ":"), sort_keys=True)

    def event(self, row: Sequence[Any], names: Sequence[str]) -> Any:
        """The event stored in ``row`` (a result row whose column names are ``names``)."""
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, value in zip(names, row, strict=False):
            if name == "extra":
                extra = json.loads(value) if value else {}
            elif name in self._decoders:
                kwargs[name] = self._decoders[name](value)
        for name, value in extra.items():
            decode = self._decoders.get(name)
            if decode is not None and name not in kwargs:
                kwargs[name] = decode(value)
        return self._cls(**kwargs)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_text(value)
    return value


@cache
def codec_for(spec: TableSpec) -> Codec:
    return Codec(spec)
