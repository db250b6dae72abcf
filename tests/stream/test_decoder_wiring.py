"""The stream owns the decoders: real Bybit decoders over the fake adapter (frames as the wire sends them).

The decoders' own behaviour is in tests/normalize/test_decoders.py; here: that the stream seeds the
private decoder with REST events, resets a channel's decoder when it goes down, and forgets a symbol's
state when it is unsubscribed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

import gridbot._worker as worker_module
import gridbot.stream as stream_module
from gridbot.events import FillUpdate, TickerUpdate
from tests.stream.fakes import FakeAdapter, Recorder, fill, make_stream, order, wait_until


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeAdapter]]:
    """The fake adapter with the stream's real decoders (the shared fixture fakes those too)."""
    made: list[FakeAdapter] = []

    def factory(exchange: str, **kwargs: Any) -> FakeAdapter:
        made.append(FakeAdapter(**kwargs))
        return made[-1]

    monkeypatch.setattr(stream_module, "_make_adapter", factory)
    monkeypatch.setattr(worker_module, "_RESYNC_BACKOFF_FIRST", 0.01)
    monkeypatch.setattr(worker_module, "_GAP_GRACE", 0.0)
    yield made


def ticker_frame(kind: str, **data: str) -> dict[str, Any]:
    return {"topic": "tickers.BTCUSDT", "type": kind, "ts": 1, "data": {"symbol": "BTCUSDT", **data}}


def execution_frame(order_id: str, exec_id: str, ts: int) -> dict[str, Any]:
    row = {"category": "linear", "symbol": "BTCUSDT", "execFee": "0.01", "execId": exec_id,
           "execPrice": "100", "execQty": "1", "execType": "Trade", "feeRate": "0.0001", "orderId": order_id,
           "orderLinkId": "", "side": "Buy", "execTime": str(ts), "isMaker": True, "seq": ts,
           "closedSize": "0", "execPnl": "0"}
    return {"topic": "execution", "id": "x", "creationTime": ts, "data": [row]}


def started(fake: list[FakeAdapter]) -> tuple[Any, FakeAdapter, Recorder]:
    s, adapter, rec = make_stream(fake)
    s.subscribe("BTCUSDT", **rec.callbacks())
    return s, adapter, rec


def tickers(rec: Recorder) -> list[tuple[Decimal | None, Decimal | None]]:
    return [(t.mark_price, t.last_price) for t in rec.of(TickerUpdate)]


def test_a_public_socket_down_resets_the_ticker_merge(fake: list[FakeAdapter]) -> None:
    s, adapter, rec = started(fake)
    s.start(timeout=5)
    try:
        adapter.sink.frame("public", ticker_frame("snapshot", markPrice="100", lastPrice="99"))
        wait_until(lambda: len(rec.of(TickerUpdate)) == 1)  # one at a time: queued tickers conflate
        adapter.sink.frame("public", ticker_frame("delta", markPrice="101"))
        wait_until(lambda: len(rec.of(TickerUpdate)) == 2)
        adapter.sink.link("public", "down", "dropped")
        adapter.sink.link("public", "up", "back")
        adapter.sink.frame("public", ticker_frame("delta", markPrice="102"))
        wait_until(lambda: len(rec.of(TickerUpdate)) == 3)
    finally:
        s.stop()
    assert tickers(rec) == [(Decimal(100), Decimal(99)), (Decimal(101), Decimal(99)), (Decimal(102), None)]


def test_an_unsubscribed_symbol_starts_afresh(fake: list[FakeAdapter]) -> None:
    s, adapter, rec = started(fake)
    s.start(timeout=5)
    try:
        adapter.sink.frame("public", ticker_frame("snapshot", markPrice="100", lastPrice="99"))
        wait_until(lambda: len(rec.of(TickerUpdate)) == 1)
        s.unsubscribe("BTCUSDT")
        s.subscribe("BTCUSDT", **rec.callbacks())
        adapter.sink.frame("public", ticker_frame("delta", markPrice="100"))
        wait_until(lambda: len(rec.of(TickerUpdate)) == 2)
    finally:
        s.stop()
    assert tickers(rec)[-1] == (Decimal(100), None)  # the old last price is not merged in


def test_seeded_and_fetched_orders_give_their_slot_to_pushed_and_backfilled_fills(
    fake: list[FakeAdapter]
) -> None:
    s, adapter, rec = started(fake)
    adapter.snapshot = [replace(order("seeded", snap=True), position_idx=2)]  # hedge short
    s.start(timeout=5)
    try:
        t0 = time.time_ns() // 1_000_000
        adapter.sink.frame("private", execution_frame("seeded", "pushed", t0))
        wait_until(lambda: len(rec.of(FillUpdate)) == 1)
        adapter.sink.link("private", "down", "dropped")
        adapter.fills = [fill("backfilled", ts=t0 + 10, order_id="seeded")]  # REST: no slot (0)
        adapter.sink.link("private", "up", "back")
        wait_until(lambda: "resynced" in rec.statuses)
    finally:
        s.stop()
    assert [(f.trade_id, f.position_idx) for f in rec.of(FillUpdate)] == [("pushed", 2), ("backfilled", 2)]
