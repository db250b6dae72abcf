"""Batched hand-offs: the worker queues the events of consecutive frames together, the dispatcher takes
them in bounded batches; order per kind and symbol, conflation and no-loss are unchanged."""

from __future__ import annotations

import gc

from gridbot._dispatch import DispatchQueue
from gridbot.events import FillUpdate, PositionUpdate, TickerUpdate
from gridbot.stats import Counters
from tests.stream.fakes import FakeAdapter, fill, make_stream, order, position, ticker, wait_until


def test_put_many_keeps_order_and_conflates_tickers() -> None:
    counters = Counters()
    q = DispatchQueue(counters)
    q.put_many([ticker("1"), fill("a"), ticker("2"), ticker("3", symbol="ETHUSDT"), fill("b")])
    q.put_many([])
    taken = q.take_all(0, limit=2)
    assert [type(e) for e in taken] == [TickerUpdate, FillUpdate]
    assert taken[0].mark_price == 2  # type: ignore[union-attr]  # latest wins
    q.put(ticker("4", symbol="ETHUSDT"))  # not taken yet: still replaceable
    rest = q.take_all(0, limit=10)
    assert [getattr(e, "mark_price", None) for e in rest] == [4, None]
    assert counters.snapshot().conflated == 2
    assert q.take_all(0.01, limit=10) == []
    q.close()
    assert q.take_all(None, limit=10) == []  # closed and empty: at once


def test_a_flood_of_frames_arrives_complete_and_in_order(fake: list[FakeAdapter]) -> None:
    s, adapter, rec = make_stream(fake)
    s.subscribe("BTCUSDT", **rec.callbacks())
    s.start(timeout=5)
    try:
        for i in range(500):
            adapter.push(order(f"o{i}", ts=10 + i), fill(f"t{i}", ts=10 + i), position(str(i + 1), ts=10 + i))
        wait_until(lambda: len([e for e in rec.events if isinstance(e, FillUpdate)]) == 500)
        fills = [e.trade_id for e in rec.events if isinstance(e, FillUpdate)]
        assert fills == [f"t{i}" for i in range(500)]
        sizes = [e.size for e in rec.events if isinstance(e, PositionUpdate)]
        assert sizes == sorted(sizes) and len(sizes) == 500
    finally:
        s.stop()


def test_start_freezes_what_exists_and_stop_gives_collection_back(fake: list[FakeAdapter]) -> None:
    gc.unfreeze()
    s, _adapter, rec = make_stream(fake)
    s.subscribe("BTCUSDT", **rec.callbacks())
    s.start(timeout=5)
    try:
        assert gc.get_freeze_count() > 0
    finally:
        s.stop()
    # frozen objects are never collected: once stopped, a process's reference cycles must be collectable again
    assert gc.get_freeze_count() == 0


def test_an_application_that_froze_its_heap_keeps_it_frozen(fake: list[FakeAdapter]) -> None:
    gc.freeze()
    frozen = gc.get_freeze_count()
    try:
        s, _adapter, rec = make_stream(fake)
        s.subscribe("BTCUSDT", **rec.callbacks())
        s.start(timeout=5)
        s.stop()
        assert gc.get_freeze_count() >= frozen  # not unfrozen behind the application's back
    finally:
        gc.unfreeze()
