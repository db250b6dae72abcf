"""The wire format of the fan-out: events as schema-versioned JSON, Decimals as strings.

Pure functions, no Redis: ``encode(event)`` and ``decode(payload)`` round-trip every event type
exactly (``==`` before and after, the same Decimal digits and exponent).  ``raw`` is not sent: it
takes no part in ``==`` and a consumer has no use for another process's wire frames.

The encoding is generic over the event dataclasses, so a field added to an event travels without a
codec change; a consumer ignores fields it does not know (a newer producer) and fills a missing field
from its default (an older producer), and refuses another schema version.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Final

from gridbot import events as _events
from gridbot.errors import NormalizationError
from gridbot.events import Event

__all__ = ["SCHEMA_VERSION", "Marker", "decode", "decode_event", "encode", "encode_event", "state_identity"]

SCHEMA_VERSION = 1



def _event_types() -> dict[str, type[Any]]:
    types_by_name: dict[str, type[Any]] = {cls.__name__: cls for cls in typing.get_args(Event)}
    for name in ("AccountUpdate",):  # event types that may not exist in every version of gridbot
        if hasattr(_events, name) and name not in types_by_name:
            types_by_name[name] = getattr(_events, name)
    return types_by_name


_EVENT_TYPES: Final[Mapping[str, type[Any]]] = MappingProxyType(_event_types())


@dataclasses.dataclass(frozen=True, slots=True)
class Marker:
    """A control entry of the stream, not an event.

    ``kind`` "reset": a producer started; the state is rebuilt by the events that follow.
    ``kind`` "resync": continuity was broken (Redis lost data, or the producer's buffer overflowed
    while Redis was away); ``state`` is the full latest state at this point of the stream.
    """

    kind: str
    detail: str
    state: tuple[Event, ...] = ()


def _is_decimal_field(hint: Any) -> bool:
    if hint is Decimal:
        return True
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return Decimal in typing.get_args(hint)
    return False


def _field_plan(cls: type[Any]) -> tuple[tuple[str, bool, bool], ...]:
    """(name, is_decimal, required) for each field of ``cls`` except ``raw``."""
    hints = typing.get_type_hints(cls)
    plan = []
    for f in dataclasses.fields(cls):
        if f.name == "raw":
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        plan.append((f.name, _is_decimal_field(hints[f.name]), required))
    return tuple(plan)


_PLANS: Final[Mapping[str, tuple[tuple[str, bool, bool], ...]]] = MappingProxyType({
    name: _field_plan(cls) for name, cls in _EVENT_TYPES.items()
})


def encode_event(event: Event) -> dict[str, Any]:
    """The JSON-ready mapping of one event: ``{"type": ..., "f": {field: value}}``."""
    name = type(event).__name__
    plan = _PLANS.get(name)
    if plan is None:
        raise TypeError(f"not a gridbot event: {event!r}")
    fields: dict[str, Any] = {}
    for field_name, is_decimal, _ in plan:
        value = getattr(event, field_name)
        fields[field_name] = str(value) if is_decimal and value is not None else value
    return {"type": name, "f": fields}


def decode_event(data: Any) -> Event:
    """The event of :func:`encode_event`'s mapping; NormalizationError when it is not one."""
    if not isinstance(data, dict):
        raise NormalizationError("fan-out entry: an event must be a JSON object", data)
    name = data.get("type")
    fields = data.get("f")
    cls = _EVENT_TYPES.get(name) if isinstance(name, str) else None
    plan = _PLANS.get(name) if isinstance(name, str) else None
    if cls is None or plan is None or not isinstance(fields, dict):
        raise NormalizationError(f"fan-out entry: unknown event type {name!r}", data)
    kwargs: dict[str, Any] = {}
    for field_name, is_decimal, required in plan:
        if field_name not in fields:
            if required:
                raise NormalizationError(f"fan-out entry: {name}.{field_name} is missing", data)
            continue
        value = fields[field_name]
        if is_decimal and value is not None:
            if not isinstance(value, str):
                raise NormalizationError(f"fan-out entry: {name}.{field_name} must be a decimal string", data)
            try:
                value = Decimal(value)
            except InvalidOperation as exc:
                raise NormalizationError(f"fan-out entry: {name}.{field_name} is not a number", data) from exc
        kwargs[field_name] = value
    try:
        return typing.cast(Event, cls(**kwargs))
    except TypeError as exc:
        raise NormalizationError(f"fan-out entry: {name}: {exc}", data) from exc


def encode(item: Event | Marker) -> bytes:
    """One stream entry's payload."""
    if isinstance(item, Marker):
        body: dict[str, Any] = {"v": SCHEMA_VERSION, "type": "_" + item.kind, "detail": item.detail,
                                "state": [encode_event(e) for e in item.state]}
    else:
        body = {"v": SCHEMA_VERSION, **encode_event(item)}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def decode(payload: bytes | str) -> Event | Marker:
    """The event or marker of one entry's payload; NormalizationError when it cannot be read."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NormalizationError("fan-out entry: not JSON", payload) from exc
    if not isinstance(body, dict):
        raise NormalizationError("fan-out entry: not a JSON object", payload)
    version = body.get("v")
    if version != SCHEMA_VERSION:
        raise NormalizationError(
            f"fan-out entry: schema version {version!r}, this gridbot reads {SCHEMA_VERSION}", payload)
    name = body.get("type")
    if name in ("_reset", "_resync"):
        state = body.get("state", [])
        if not isinstance(state, list):
            raise NormalizationError("fan-out marker: state must be a list", payload)
        return Marker(kind=str(name)[1:], detail=str(body.get("detail", "")),
                      state=tuple(decode_event(e) for e in state))
    return decode_event(body)


def state_identity(event: Event) -> tuple[str, bool] | None:
    """The key of ``event`` in the latest-state hash and whether it stays there.

    None for events that are history, not state (fills, status).  An order leaves the state when it
    reaches a terminal status: the stored state is what a fresh REST seed would return.
    """
    if isinstance(event, _events.PositionUpdate):
        return f"position|{event.symbol}|{event.position_idx}", True
    if isinstance(event, _events.OrderUpdate):
        return f"order|{event.symbol}|{event.order_id}", event.status in _events.OPEN_ORDER_STATUSES
    if isinstance(event, _events.WalletUpdate):
        return f"wallet|{event.coin}", True
    if isinstance(event, _events.TickerUpdate):
        return f"ticker|{event.symbol}", True
    if isinstance(event, (_events.FillUpdate, _events.StatusUpdate)):
        return None
    coin = getattr(event, "margin_coin", None)  # AccountUpdate: one view per margin coin
    return f"account|{coin or ''}", True
