"""Per-channel decoders (gridbot.normalize.new_decoder): golden frames in, events out, and their state."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gridbot._account import AccountConfig
from gridbot.errors import NormalizationError
from gridbot.events import FillUpdate, OrderUpdate, PositionUpdate, TickerUpdate
from gridbot.normalize import Ignored, ListenKeyExpired, new_decoder
from gridbot.normalize._decoders import (
    BinancePrivateDecoder,
    BinancePublicDecoder,
    BybitPrivateDecoder,
    BybitPublicDecoder,
)
from gridbot.normalize.bybit import orders_from_rest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def load(exchange: str, name: str) -> Any:
    return json.loads((FIXTURES / exchange / name).read_text(encoding="utf-8"))


def order_frame(order_id: str, position_idx: int) -> dict[str, Any]:
    frame: dict[str, Any] = load("bybit", "private.order.linear.filled.observed.json")
    frame["data"][0].update(orderId=order_id, positionIdx=position_idx, symbol="BTCUSDT")
    return frame


def execution_frame(order_id: str) -> dict[str, Any]:
    frame: dict[str, Any] = load("bybit", "private.execution.stream.json")
    frame["data"][0]["orderId"] = order_id
    return frame


def ticker_frame(symbol: str, kind: str, **data: str) -> dict[str, Any]:
    return {"topic": f"tickers.{symbol}", "type": kind, "ts": 1, "data": {"symbol": symbol, **data}}


@pytest.mark.parametrize(("exchange", "channel", "kind"), [
    ("binance", "private", BinancePrivateDecoder), ("binance", "public", BinancePublicDecoder),
    ("bybit", "private", BybitPrivateDecoder), ("bybit", "public", BybitPublicDecoder),
])
def test_new_decoder_gives_a_fresh_decoder_per_channel(exchange: str, channel: Any, kind: type) -> None:
    first, second = new_decoder(exchange, channel), new_decoder(exchange, channel)
    assert type(first) is kind and first is not second


def test_an_unknown_exchange_has_no_decoder() -> None:
    with pytest.raises(ValueError, match="okx"):
        new_decoder("okx", "private")


# ------------------------------------------------------------------------------------------- Bybit private


def test_bybit_private_golden_frames() -> None:
    decoder = new_decoder("bybit", "private")
    [position] = decoder.decode(load("bybit", "private.position.linear.flat.observed.json"))  # type: ignore[misc]
    assert isinstance(position, PositionUpdate) and not position.is_snapshot
    [order] = decoder.decode(load("bybit", "private.order.linear.filled.observed.json"))  # type: ignore[misc]
    assert isinstance(order, OrderUpdate)
    assert (order.symbol, order.status, order.position_idx) == ("ESPORTSUSDT", "Filled", 2)
    [fill] = decoder.decode(load("bybit", "private.execution.stream.json"))  # type: ignore[misc]
    assert isinstance(fill, FillUpdate)
    assert (fill.symbol, fill.qty, fill.price, fill.position_idx) == (
        "BTCUSDT", Decimal("0.5"), Decimal("95900.1"), 0)
    assert decoder.decode(load("bybit", "auth.response.success.json")) == Ignored("auth")
    assert isinstance(decoder.decode(load("bybit", "pong.private.json")), Ignored)


def test_bybit_private_refuses_what_is_not_an_object() -> None:
    with pytest.raises(NormalizationError, match="not a JSON object"):
        BybitPrivateDecoder().decode([1, 2])


def test_a_fill_takes_the_position_idx_of_its_pushed_order() -> None:
    decoder = BybitPrivateDecoder()
    [order] = decoder.decode(order_frame("o-1", 2))  # type: ignore[misc]
    assert isinstance(order, OrderUpdate) and order.position_idx == 2
    [fill] = decoder.decode(execution_frame("o-1"))  # type: ignore[misc]
    assert isinstance(fill, FillUpdate)
    assert (fill.order_id, fill.position_idx, fill.qty) == ("o-1", 2, Decimal("0.5"))
    [unknown] = decoder.decode(execution_frame("o-2"))  # type: ignore[misc]
    assert isinstance(unknown, FillUpdate) and unknown.position_idx == 0


def test_seeded_rest_orders_give_their_slot_to_pushed_and_rest_fills() -> None:
    response = load("bybit", "rest.order_realtime.response.json")
    response["result"]["list"][0].update(orderId="rest-1", positionIdx=1)
    decoder = BybitPrivateDecoder()
    seeded = decoder.seed(orders_from_rest(response))
    assert [o.order_id for o in seeded if isinstance(o, OrderUpdate)] == ["rest-1"]
    assert decoder.slot_of("rest-1") == 1
    [pushed] = decoder.decode(execution_frame("rest-1"))  # type: ignore[misc]
    assert isinstance(pushed, FillUpdate) and pushed.position_idx == 1
    [rest_fill] = decoder.seed([replace(pushed, position_idx=0, is_snapshot=True)])  # as REST gives it
    assert isinstance(rest_fill, FillUpdate) and rest_fill.position_idx == 1


def test_order_slot_memory_is_bounded_least_recent_first() -> None:
    decoder = BybitPrivateDecoder(capacity=2)
    for n in (1, 2, 3):
        decoder.decode(order_frame(f"o-{n}", 1))
    assert [decoder.slot_of(f"o-{n}") for n in (1, 2, 3)] == [None, 1, 1]
    [fill] = decoder.decode(execution_frame("o-1"))  # type: ignore[misc]
    assert isinstance(fill, FillUpdate) and fill.position_idx == 0


def test_order_slots_survive_a_reset_and_an_unsubscribe() -> None:
    decoder = BybitPrivateDecoder()
    decoder.decode(order_frame("o-1", 2))
    decoder.reset()
    decoder.forget("BTCUSDT")
    assert decoder.slot_of("o-1") == 2


# -------------------------------------------------------------------------------------------- Bybit public


def test_bybit_public_golden_snapshot_then_delta() -> None:
    decoder = new_decoder("bybit", "public")
    [snapshot] = decoder.decode(load("bybit", "public.tickers.linear.snapshot.observed.json"))  # type: ignore[misc]
    assert isinstance(snapshot, TickerUpdate)
    assert (snapshot.symbol, snapshot.mark_price, snapshot.last_price) == (
        "NKNUSDT", Decimal("0.13946"), Decimal("0.13947"))
    # a bid/ask-only delta changes nothing gridbot reports
    assert decoder.decode(load("bybit", "public.tickers.linear.delta.observed.json")) == Ignored("unchanged")


def test_ticker_deltas_merge_until_a_reset() -> None:
    decoder = BybitPublicDecoder()
    [first] = decoder.decode(ticker_frame("BTCUSDT", "snapshot", markPrice="100", lastPrice="99"))  # type: ignore[misc]
    [second] = decoder.decode(ticker_frame("BTCUSDT", "delta", markPrice="101"))  # type: ignore[misc]
    assert isinstance(first, TickerUpdate) and isinstance(second, TickerUpdate)
    assert (first.mark_price, second.mark_price, second.last_price) == (
        Decimal(100), Decimal(101), Decimal(99))
    decoder.reset()  # the public socket was replaced: its state is gone
    [after] = decoder.decode(ticker_frame("BTCUSDT", "delta", markPrice="102"))  # type: ignore[misc]
    assert isinstance(after, TickerUpdate) and after.last_price is None


def test_forget_drops_one_symbols_ticker_state() -> None:
    decoder = BybitPublicDecoder()
    decoder.decode(ticker_frame("BTCUSDT", "snapshot", markPrice="100", lastPrice="99"))
    decoder.decode(ticker_frame("ETHUSDT", "snapshot", markPrice="10", lastPrice="9"))
    decoder.forget("BTCUSDT")
    [btc] = decoder.decode(ticker_frame("BTCUSDT", "delta", markPrice="100"))  # type: ignore[misc]
    [eth] = decoder.decode(ticker_frame("ETHUSDT", "delta", markPrice="11"))  # type: ignore[misc]
    assert isinstance(btc, TickerUpdate) and isinstance(eth, TickerUpdate)
    assert (btc.mark_price, btc.last_price, eth.last_price) == (Decimal(100), None, Decimal(9))


def test_bybit_public_control_frames_are_ignored_and_bad_numbers_raise() -> None:
    decoder = BybitPublicDecoder()
    assert isinstance(decoder.decode(load("bybit", "pong.public_linear.json")), Ignored)
    assert isinstance(decoder.decode(load("bybit", "subscribe.response.public_linear.json")), Ignored)
    with pytest.raises(NormalizationError):
        decoder.decode(ticker_frame("BTCUSDT", "snapshot", markPrice="abc"))
    with pytest.raises(NormalizationError, match="not a JSON object"):
        decoder.decode("text")


# ------------------------------------------------------------------------------------------------ Binance


def test_binance_private_routes_account_config_and_listen_key_expiry() -> None:
    decoder = new_decoder("binance", "private")
    [config] = decoder.decode(load("binance", "account_config_update.json"))  # type: ignore[misc]
    assert isinstance(config, AccountConfig) and dict(config.leverage) == {"BTCUSDT": 25}
    assert isinstance(decoder.decode(load("binance", "listen_key_expired.json")), ListenKeyExpired)
    events = decoder.decode(load("binance", "order_trade_update.json"))
    assert isinstance(events, list) and any(isinstance(e, OrderUpdate) for e in events)


def test_binance_public_decodes_mark_prices_and_ignores_acks() -> None:
    decoder = new_decoder("binance", "public")
    tickers = decoder.decode(load("binance", "combined_stream_mark_price.json"))
    assert isinstance(tickers, list) and isinstance(tickers[0], TickerUpdate)
    assert decoder.decode({"result": None, "id": 1}) == Ignored("ack")


def test_binance_decoders_keep_no_state() -> None:
    for decoder in (BinancePrivateDecoder(), BinancePublicDecoder()):
        events: list[Any] = [object()]
        assert decoder.seed(events) == events
        decoder.reset()
        decoder.forget("BTCUSDT")
