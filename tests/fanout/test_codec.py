"""The fan-out wire format: every event type survives the trip exactly; bad entries are refused."""

from __future__ import annotations

import dataclasses
import json
import typing
from decimal import Decimal

import pytest

from gridbot import events
from gridbot.errors import NormalizationError
from gridbot.events import Event, FillUpdate, OrderUpdate, StatusUpdate
from gridbot.remote._codec import SCHEMA_VERSION, Marker, decode, encode, state_identity
from tests.fanout.helpers import fill, order, position, status, ticker, wallet

ALL_TYPES = {cls.__name__ for cls in typing.get_args(Event)} | (
    {"AccountUpdate"} if hasattr(events, "AccountUpdate") else set())


def _sample(cls: type[typing.Any]) -> Event:
    """An instance of ``cls`` with a distinct, awkward value in every field (built from its fields,
    so a field added to an event is covered without touching this test)."""
    hints = typing.get_type_hints(cls)
    values: dict[str, typing.Any] = {}
    for i, f in enumerate(dataclasses.fields(cls)):
        hint = hints[f.name]
        args = typing.get_args(hint)
        if f.name == "raw":
            values[f.name] = {"secret": "not sent"}
        elif f.name == "state":
            values[f.name] = "resynced"
        elif f.name == "status":
            values[f.name] = "PartiallyFilled"
        elif hint is Decimal or Decimal in args:
            values[f.name] = Decimal(f"-{i}.{i}0100")  # trailing zeros and sign must survive
        elif hint is bool or bool in args:
            values[f.name] = i % 2 == 0
        elif hint is int or int in args:
            values[f.name] = 1_700_000_000_000 + i
        else:
            values[f.name] = f"v{i}-ünï"
    return typing.cast(Event, cls(**values))


@pytest.mark.parametrize("name", sorted(ALL_TYPES))
def test_every_event_type_round_trips_exactly(name: str) -> None:
    cls = getattr(events, name)
    event = _sample(cls)
    decoded = decode(encode(event))
    assert decoded == event
    assert type(decoded) is cls
    for f in dataclasses.fields(cls):
        if f.name != "raw":
            assert repr(getattr(decoded, f.name)) == repr(getattr(event, f.name)), f.name  # same exponent


@pytest.mark.parametrize("event", [fill(1), position("0.010"), order("o-1"), wallet("10.50"),
                                   ticker("60000.1"), status("reconnecting", "private: closed")])
def test_round_trip_of_typical_events(event: Event) -> None:
    assert decode(encode(event)) == event


def test_none_fields_stay_none_and_decimals_are_strings_on_the_wire() -> None:
    event = position("0", mark=None)
    body = json.loads(encode(event))
    assert body["v"] == SCHEMA_VERSION and body["type"] == "PositionUpdate"
    assert body["f"]["mark_price"] is None
    assert body["f"]["size"] == "0" and body["f"]["entry_price"] == "60000.0"
    assert decode(encode(event)) == event


def test_raw_is_not_sent() -> None:
    event = dataclasses.replace(fill(1), raw={"apiKey": "k-123", "whatever": 1})
    payload = encode(event)
    assert b"k-123" not in payload and b"raw" not in payload
    decoded = decode(payload)
    assert isinstance(decoded, FillUpdate) and decoded.raw == {}


def test_markers_round_trip_with_their_state() -> None:
    marker = Marker("resync", "Redis lost its data", (position("0.01"), order("a"), wallet("5")))
    assert decode(encode(marker)) == marker
    assert decode(encode(Marker("reset", "producer started"))) == Marker("reset", "producer started")


def test_a_newer_producer_field_is_ignored_and_a_missing_default_is_filled() -> None:
    body = json.loads(encode(order("a")))
    body["f"]["field_from_the_future"] = 1
    del body["f"]["linked_order_id"]  # has a default
    decoded = decode(json.dumps(body))
    assert isinstance(decoded, OrderUpdate) and decoded == order("a")


@pytest.mark.parametrize("payload, message", [
    (b"not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (json.dumps({"v": 2, "type": "FillUpdate", "f": {}}).encode(), "schema version 2"),
    (json.dumps({"type": "FillUpdate", "f": {}}).encode(), "schema version None"),
    (json.dumps({"v": SCHEMA_VERSION, "type": "Nope", "f": {}}).encode(), "unknown event type"),
    (json.dumps({"v": SCHEMA_VERSION, "type": "StatusUpdate", "f": {"exchange": "x"}}).encode(),
     "is missing"),
])
def test_bad_entries_raise_normalization_error(payload: bytes, message: str) -> None:
    with pytest.raises(NormalizationError, match=message):
        decode(payload)


def test_a_decimal_field_must_be_a_decimal_string() -> None:
    body = json.loads(encode(fill(1)))
    body["f"]["price"] = 60000.1  # a float on the wire would lose exactness: refused
    with pytest.raises(NormalizationError, match="decimal string"):
        decode(json.dumps(body))
    body["f"]["price"] = "sixty"
    with pytest.raises(NormalizationError, match="not a number"):
        decode(json.dumps(body))


def test_state_identity() -> None:
    assert state_identity(position("1")) == ("position|BTCUSDT|0", True)
    assert state_identity(order("a")) == ("order|BTCUSDT|a", True)
    assert state_identity(order("a", "Filled")) == ("order|BTCUSDT|a", False)
    assert state_identity(wallet("1")) == ("wallet|USDT", True)
    assert state_identity(ticker("1")) == ("ticker|BTCUSDT", True)
    assert state_identity(fill(1)) is None
    assert state_identity(status("connected")) is None
    assert isinstance(fill(1), FillUpdate) and isinstance(status("connected"), StatusUpdate)
