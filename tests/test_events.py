"""Event dataclasses: frozen, slotted, keyword-only, Decimal money, raw out of == and repr."""

import dataclasses
from decimal import Decimal

import pytest

from gridbot import FillUpdate, PositionUpdate, StatusUpdate, TickerUpdate, WalletUpdate


def _position(**over: object) -> PositionUpdate:
    fields: dict[str, object] = dict(
        exchange="bybit", timestamp=1, symbol="BTCUSDT", position_idx=0, side="Buy",
        size=Decimal("0.01"), entry_price=Decimal("100"), mark_price=None,
        unrealised_pnl=Decimal("0"), cum_realised_pnl=Decimal("1.5"), raw={"secretish": "x"},
    )
    fields.update(over)
    return PositionUpdate(**fields)  # type: ignore[arg-type]


def test_raw_is_excluded_from_equality_hash_and_repr() -> None:
    a, b = _position(raw={"a": 1}), _position(raw={"b": 2})
    assert a == b and hash(a) == hash(b)
    assert "raw" not in repr(a) and "secretish" not in repr(a)
    assert a != _position(size=Decimal("0.02"))


def test_events_are_frozen_slotted_and_keyword_only() -> None:
    p = _position()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.size = Decimal("1")  # type: ignore[misc]
    assert not hasattr(p, "__dict__")
    with pytest.raises(TypeError):
        TickerUpdate("bybit", 1)  # type: ignore[call-arg]


def test_defaults_for_snapshot_flag_and_status_detail() -> None:
    s = StatusUpdate(exchange="binance", timestamp=5, state="connected")
    assert s.is_snapshot is False and s.detail == "" and s.raw == {}
    w = WalletUpdate(exchange="bybit", timestamp=1, coin="USDT", wallet_balance=None,
                     available_balance=Decimal("1"), equity=None)
    assert w.available_balance == Decimal("1")
    f = FillUpdate(exchange="bybit", timestamp=1, symbol="X", order_id="1", trade_id="t", side="Buy",
                   price=Decimal("1"), qty=Decimal("1"), fee=Decimal("0"), fee_asset="USDT",
                   realised_pnl=Decimal("0"), is_maker=True, position_idx=0)
    assert dataclasses.replace(f, position_idx=1).position_idx == 1
