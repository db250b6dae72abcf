"""Fill backfill at resync, over the fake adapter: every fill of a gap exactly once, before "resynced"."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

import gridbot._backfill as backfill_module
import gridbot._worker as worker_module
from gridbot import ConnectError, StatusUpdate
from gridbot._backfill import REORDER_MARGIN_MS
from gridbot.events import FillUpdate
from tests.stream.fakes import FakeAdapter, Recorder, fill, make_stream, order, wait_until


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "_RESYNC_BACKOFF_FIRST", 0.01)
    monkeypatch.setattr(worker_module, "_GAP_GRACE", 0.0)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def started(fake: list[FakeAdapter], *symbols: str) -> tuple[Any, FakeAdapter, Recorder]:
    s, adapter, rec = make_stream(fake)
    for symbol in symbols or ("BTCUSDT",):
        s.subscribe(symbol, **rec.callbacks())
    s.start(timeout=5)
    return s, adapter, rec


def in_order(rec: Recorder) -> list[str]:
    """Trade ids and statuses in delivery order."""
    out = []
    for event in rec.timeline:
        if isinstance(event, FillUpdate):
            out.append(event.trade_id)
        elif isinstance(event, StatusUpdate):
            out.append(event.state)
    return out


def reconnect(adapter: FakeAdapter) -> None:
    adapter.sink.link("private", "down", "dropped")
    adapter.sink.link("private", "up", "back")


class TestBackfill:
    def test_fills_made_while_down_arrive_once_in_exchange_order_before_resynced(
        self, fake: list[FakeAdapter]
    ) -> None:
        s, adapter, rec = started(fake)
        t0 = now_ms()
        adapter.push(fill("1", ts=t0 + 1))
        wait_until(lambda: len(rec.of(FillUpdate)) == 1)
        adapter.sink.link("private", "down", "dropped")
        # the exchange's history: the delivered fill, two made while down (REST lists them out of order)
        adapter.fills = [fill("3", ts=t0 + 30), fill("1", ts=t0 + 1), fill("2", ts=t0 + 20)]
        adapter.sink.link("private", "up", "back")
        wait_until(lambda: "resynced" in rec.statuses)
        adapter.push(fill("3", ts=t0 + 30), fill("4", ts=t0 + 40))  # held frames flushed late, a new one
        wait_until(lambda: len(rec.of(FillUpdate)) == 4)
        s.stop()
        assert in_order(rec) == ["connected", "1", "reconnecting", "2", "3", "resynced", "4", "stopped"]
        assert s.stats.backfilled_fills == 2
        [resynced] = [e for e in rec.timeline if isinstance(e, StatusUpdate) and e.state == "resynced"]
        assert "2 fill(s) backfilled, in " in resynced.detail and resynced.detail.endswith(" ms")
        [(symbol, since, until)] = adapter.fill_calls
        assert symbol == "BTCUSDT" and since <= t0 + 1 and until >= t0 + 40

    def test_the_window_starts_at_the_gap_not_at_later_fills(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = started(fake)
        t0 = now_ms()
        adapter.fills = [fill("5", ts=t0 + 30)]
        adapter.push(fill("1", ts=t0 + 1))
        adapter.sink.link("private", "down", "dropped")
        adapter.sink.link("private", "up", "back")
        # the reconnected socket delivers a later fill before the resync runs
        adapter.push(fill("9", ts=t0 + 60))
        wait_until(lambda: "resynced" in rec.statuses)
        s.stop()
        assert sorted(f.trade_id for f in rec.of(FillUpdate)) == ["1", "5", "9"]
        since = adapter.fill_calls[0][1]
        assert since <= t0 + 1 and since >= t0 + 1 - REORDER_MARGIN_MS - 1_000  # not moved by fill 9

    def test_fills_from_before_the_stream_went_live_are_never_replayed(self, fake: list[FakeAdapter]) -> None:
        before = now_ms() - 1_000
        s, adapter, rec = started(fake)
        adapter.fills = [fill("old", ts=before), fill("new", ts=now_ms() + 5)]
        reconnect(adapter)
        wait_until(lambda: "resynced" in rec.statuses)
        s.stop()
        assert [f.trade_id for f in rec.of(FillUpdate)] == ["new"]

    def test_a_failing_fill_fetch_fails_the_resync_which_is_retried_without_loss(
        self, fake: list[FakeAdapter]
    ) -> None:
        s, adapter, rec = started(fake)
        t0 = now_ms()
        adapter.fills = [fill("a", ts=t0 + 10)]
        adapter.fill_error = ConnectError("REST down")
        reconnect(adapter)
        wait_until(lambda: len(adapter.fill_calls) >= 2)
        assert "resynced" not in rec.statuses and rec.of(FillUpdate) == []
        adapter.fill_error = None
        wait_until(lambda: "resynced" in rec.statuses)
        s.stop()
        assert [f.trade_id for f in rec.of(FillUpdate)] == ["a"]
        assert s.stats.resyncs == 1 and s.stats.backfilled_fills == 1

    def test_every_subscribed_symbol_is_backfilled_and_merged_in_time_order(
        self, fake: list[FakeAdapter]
    ) -> None:
        s, adapter, rec = started(fake, "BTCUSDT", "ETHUSDT")
        t0 = now_ms()
        adapter.fills = [fill("b2", ts=t0 + 30), fill("e1", ts=t0 + 20, symbol="ETHUSDT"),
                         fill("b1", ts=t0 + 10)]
        reconnect(adapter)
        wait_until(lambda: "resynced" in rec.statuses)
        s.stop()
        assert [f.trade_id for f in rec.of(FillUpdate)] == ["b1", "e1", "b2"]
        assert sorted(call[0] for call in adapter.fill_calls) == ["BTCUSDT", "ETHUSDT"]

    def test_a_gap_report_while_up_is_backfilled_too(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = started(fake)
        adapter.fills = [fill("g", ts=now_ms() + 5)]
        adapter.sink.link("private", "gap", "SDK error dict")
        wait_until(lambda: "resynced" in rec.statuses)
        s.stop()
        assert [f.trade_id for f in rec.of(FillUpdate)] == ["g"]

    def test_no_backfill_at_the_initial_seed(self, fake: list[FakeAdapter]) -> None:
        s, adapter, _rec = started(fake)
        s.stop()
        assert adapter.fill_calls == []

    def test_a_later_gap_starts_where_the_previous_backfill_ended(
        self, fake: list[FakeAdapter], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(backfill_module, "REORDER_MARGIN_MS", 0)
        s, adapter, rec = started(fake)
        time.sleep(0.01)  # let the clock pass the moment the stream went live (ms resolution)
        reconnect(adapter)
        wait_until(lambda: rec.statuses.count("resynced") == 1)
        time.sleep(0.01)
        reconnect(adapter)
        wait_until(lambda: rec.statuses.count("resynced") == 2)
        s.stop()
        (_, since_1, until_1), (_, since_2, _) = adapter.fill_calls
        assert since_1 < since_2 <= until_1  # a quiet symbol is not searched from go-live again

    def test_orders_placed_and_finished_inside_the_gap_reach_on_order_before_their_fills(
        self, fake: list[FakeAdapter]
    ) -> None:
        s, adapter, rec = started(fake)
        t0 = now_ms()
        adapter.push(order("known", "New", ts=t0), fill("k1", ts=t0 + 1, order_id="known"))
        wait_until(lambda: len(rec.of(FillUpdate)) == 1)
        adapter.fills = [fill("k2", ts=t0 + 5, order_id="known"), fill("g1", ts=t0 + 10, order_id="gap"),
                         fill("g2", ts=t0 + 11, order_id="gap")]
        adapter.final_orders = [replace(order("gap", "Filled", ts=t0 + 11), position_idx=2)]
        adapter.snapshot = [order("known", "PartiallyFilled", ts=t0 + 5, snap=True)]  # still open
        reconnect(adapter)
        wait_until(lambda: "resynced" in rec.statuses)
        s.stop()
        assert adapter.fetch_orders_calls == [["gap"]]  # once per unseen order; "known" was seen
        gap_events = [e for e in rec.timeline if getattr(e, "order_id", None) == "gap"]
        assert [type(e).__name__ for e in gap_events] == ["OrderUpdate", "FillUpdate", "FillUpdate"]
        assert [f.position_idx for f in gap_events[1:]] == [2, 2]  # the slot learnt from the order
