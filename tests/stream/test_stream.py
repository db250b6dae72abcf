"""ExchangeStream behaviour over a fake adapter: seeding, dispatch, conflation, resync, stop."""

from __future__ import annotations

import logging
import threading
from decimal import Decimal
from typing import Any

import pytest

import gridbot._worker as worker_module
from gridbot import AuthenticationError, ConnectError, GridbotError, PositionUpdate
from gridbot.events import FillUpdate, OrderUpdate, TickerUpdate, WalletUpdate
from tests.stream.fakes import (
    FakeAdapter,
    Recorder,
    fill,
    make_stream,
    no_gridbot_threads,
    order,
    position,
    ticker,
    wait_until,
    wallet,
)

D = Decimal


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "_RESYNC_BACKOFF_FIRST", 0.01)


def started(fake: list[FakeAdapter], *symbols: str, **kwargs: Any) -> tuple[Any, FakeAdapter, Recorder]:
    s, adapter, rec = make_stream(fake, **kwargs)
    for symbol in symbols or ("BTCUSDT",):
        s.subscribe(symbol, **rec.callbacks())
    return s, adapter, rec


class TestStartAndSeed:
    def test_seed_is_delivered_then_connected(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = started(fake)
        adapter.snapshot = [
            position("2", snap=True, cum="5"), order("7", snap=True), wallet("100", snap=True),
        ]
        s.start(timeout=5)
        try:
            wait_until(lambda: "connected" in rec.statuses)
            assert adapter.opened_with == ["BTCUSDT"]
            assert adapter.snapshot_calls == [(["BTCUSDT"], True)]
            kinds = [type(e) for e in rec.events]
            assert kinds == [PositionUpdate, OrderUpdate, WalletUpdate]
            assert all(e.is_snapshot for e in rec.events)
            assert s.connected and s.stats.rest_calls == 1
        finally:
            s.stop()
        assert no_gridbot_threads()

    def test_symbols_are_upper_cased(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = make_stream(fake)
        s.subscribe(" btcusdt ", on_position=rec)
        s.start(timeout=5)
        s.stop()
        assert adapter.opened_with == ["BTCUSDT"]

    def test_pushes_during_the_seed_are_neither_lost_nor_applied_twice(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = started(fake)
        adapter.snapshot = [position("2", ts=50, cum="5", snap=True), order("9", ts=50, snap=True)]

        def pushes_while_rest_runs() -> None:
            adapter.push(position("1", ts=40, cum="4"))      # older than the snapshot: stale
            adapter.push(fill("t1", ts=45))                   # fills are never stale
            adapter.push(order("9", "Filled", ts=60))         # newer: applied after the snapshot
            adapter.push(position("0", ts=60, cum="6"))       # newer

        adapter.snapshot_hook = pushes_while_rest_runs
        s.start(timeout=5)
        wait_until(lambda: len(rec.of(PositionUpdate)) == 2 and len(rec.of(OrderUpdate)) == 2)
        s.stop()
        sizes = [p.size for p in rec.of(PositionUpdate)]
        assert sizes == [D("2"), D("0")]
        assert [o.status for o in rec.of(OrderUpdate)] == ["New", "Filled"]
        assert [f.trade_id for f in rec.of(FillUpdate)] == ["t1"]

    def test_auth_error_in_open_raises_and_leaves_no_thread(self, fake: list[FakeAdapter]) -> None:
        s, adapter, _ = started(fake)
        adapter.open_error = AuthenticationError("bybit rejected the API key")
        with pytest.raises(AuthenticationError):
            s.start(timeout=5)
        assert no_gridbot_threads() and adapter.closed >= 1
        s.stop()  # still safe

    def test_auth_error_in_seed_raises(self, fake: list[FakeAdapter]) -> None:
        s, adapter, _ = started(fake)
        adapter.snapshot_error = AuthenticationError("rejected")
        with pytest.raises(AuthenticationError):
            s.start(timeout=5)
        assert no_gridbot_threads()

    def test_seed_that_keeps_failing_is_a_connect_error(self, fake: list[FakeAdapter]) -> None:
        s, adapter, _ = started(fake)
        adapter.snapshot_error = GridbotError("HTTP 502")
        with pytest.raises(ConnectError):
            s.start(timeout=0.5)
        assert len(adapter.snapshot_calls) >= 2  # retried before giving up
        assert no_gridbot_threads()

    def test_start_twice_is_an_error(self, fake: list[FakeAdapter]) -> None:
        s, _, _ = started(fake)
        s.start(timeout=5)
        with pytest.raises(GridbotError):
            s.start(timeout=5)
        s.stop()

    def test_snapshot_false_skips_rest(self, fake: list[FakeAdapter]) -> None:
        s, adapter, _ = started(fake, snapshot=False)
        s.start(timeout=5)
        s.stop()
        assert adapter.snapshot_calls == [] and s.stats.rest_calls == 0

    def test_bad_arguments(self, fake: list[FakeAdapter]) -> None:
        from gridbot import ExchangeStream

        with pytest.raises(ValueError):
            ExchangeStream("kraken", api_key="k", api_secret="s")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            ExchangeStream("bybit", api_key="k", api_secret="s", dispatch="async")  # type: ignore[arg-type]
        s, _, _ = make_stream(fake)
        with pytest.raises(ValueError):
            s.subscribe("  ")

    def test_repr_hides_secrets(self, fake: list[FakeAdapter]) -> None:
        from gridbot import ExchangeStream

        s = ExchangeStream("bybit", api_key="KEY123", api_secret="SECRET456")
        assert "KEY123" not in repr(s) and "SECRET456" not in repr(s)


class TestDelivery:
    def test_mark_price_is_merged_and_positions_re_emitted_on_mark_moves(
        self, fake: list[FakeAdapter]
    ) -> None:
        s, adapter, rec = started(fake)
        s.start(timeout=5)
        adapter.push(position("2", entry="100", ts=11))
        adapter.push(position("1", side="Sell", entry="200", idx=2, ts=11))
        adapter.push(ticker("110", ts=12), channel="public")
        wait_until(lambda: len(rec.of(PositionUpdate)) == 4)
        adapter.push(ticker("110", ts=13), channel="public")  # mark unchanged: no re-emit
        adapter.push(position("3", entry="100", ts=14))       # new push carries the known mark
        wait_until(lambda: len(rec.of(PositionUpdate)) == 5)
        s.stop()
        long_moved, short_moved = rec.of(PositionUpdate)[2:4]
        assert (long_moved.mark_price, long_moved.unrealised_pnl) == (D("110"), D("20"))
        assert (short_moved.mark_price, short_moved.unrealised_pnl) == (D("110"), D("90"))
        assert long_moved.is_snapshot is False and long_moved.timestamp == 12
        latest = rec.of(PositionUpdate)[4]
        assert (latest.size, latest.mark_price, latest.unrealised_pnl) == (D("3"), D("110"), D("30"))
        assert len(rec.of(TickerUpdate)) == 2

    def test_raising_callback_is_logged_counted_and_harmless(
        self, fake: list[FakeAdapter], caplog: pytest.LogCaptureFixture
    ) -> None:
        s, adapter, rec = make_stream(fake)
        got: list[Any] = []

        def explode(event: Any) -> None:
            got.append(event)
            raise RuntimeError("strategy bug")

        s.subscribe("BTCUSDT", on_fill=explode, on_order=rec)
        s.start(timeout=5)
        with caplog.at_level(logging.ERROR, logger="gridbot"):
            adapter.push(fill("a"), fill("b"), order("1"))
            wait_until(lambda: len(rec.of(OrderUpdate)) == 1)
        s.stop()
        assert len(got) == 2 and s.stats.callback_errors == 2
        assert any("strategy bug" in (r.exc_text or "") for r in caplog.records)

    def test_wallet_goes_to_every_distinct_on_wallet(self, fake: list[FakeAdapter]) -> None:
        s, adapter, _ = make_stream(fake)
        shared, other = Recorder(), Recorder()
        s.subscribe("BTCUSDT", on_wallet=shared)
        s.subscribe("ETHUSDT", on_wallet=shared)
        s.subscribe("SOLUSDT", on_wallet=other)
        s.start(timeout=5)
        adapter.push(wallet("5"))
        wait_until(lambda: len(other.events) == 1)
        s.stop()
        assert len(shared.events) == 1

    def test_events_of_unsubscribed_symbols_are_not_delivered(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = started(fake)
        s.start(timeout=5)
        adapter.push(fill("x", symbol="ETHUSDT"), fill("y"))
        wait_until(lambda: len(rec.of(FillUpdate)) == 1)
        s.stop()
        assert rec.of(FillUpdate)[0].symbol == "BTCUSDT"

    def test_duplicates_are_dropped(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = started(fake)
        s.start(timeout=5)
        adapter.push(fill("t1"), fill("t1"))
        adapter.push(order("5", "Filled"), order("5", "Filled"), order("5", "New"))
        adapter.push(position("1", seq=7), position("2", seq=7), position("3", seq=6), position("4", seq=8))
        adapter.push(order("end"))
        wait_until(lambda: any(o.order_id == "end" for o in rec.of(OrderUpdate)))
        s.stop()
        assert len(rec.of(FillUpdate)) == 1
        assert [o.order_id for o in rec.of(OrderUpdate)] == ["5", "end"]
        # an equal seq with other content is a real update (Bybit does not bump seq for settings)
        assert [p.size for p in rec.of(PositionUpdate)] == [D("1"), D("2"), D("4")]

    def test_bad_message_is_logged_counted_and_the_stream_goes_on(
        self, fake: list[FakeAdapter], caplog: pytest.LogCaptureFixture
    ) -> None:
        s, adapter, rec = started(fake)
        s.start(timeout=5)
        with caplog.at_level(logging.ERROR, logger="gridbot"):
            adapter.sink.frame("private", "bad")
            adapter.sink.frame("private", "boom")
            adapter.sink.frame("private", "ignored")
            adapter.push(fill("after"))
            wait_until(lambda: len(rec.of(FillUpdate)) == 1)
        s.stop()
        assert s.stats.bad_messages == 2
        assert any("could not be normalized" in r.getMessage() and "'bad'" in r.getMessage()
                   for r in caplog.records)

    def test_callbacks_never_run_concurrently(self, fake: list[FakeAdapter]) -> None:
        s, adapter, _ = make_stream(fake)
        active, overlaps, seen = [0], [0], [0]
        lock = threading.Lock()

        def slow(event: Any) -> None:
            with lock:
                active[0] += 1
                overlaps[0] = max(overlaps[0], active[0])
            threading.Event().wait(0.0005)
            with lock:
                active[0] -= 1
                seen[0] += 1

        s.subscribe("BTCUSDT", on_fill=slow, on_order=slow, on_position=slow)
        s.start(timeout=5)
        def feed(n: int) -> None:
            for i in range(50):
                adapter.push(fill(f"{n}-{i}"))

        feeders = [threading.Thread(target=feed, args=(n,)) for n in range(4)]
        for t in feeders:
            t.start()
        for t in feeders:
            t.join()
        wait_until(lambda: seen[0] == 200)
        s.stop()
        assert overlaps[0] == 1

    def test_ticker_conflation_behind_a_slow_callback(self, fake: list[FakeAdapter]) -> None:
        s, adapter, _ = make_stream(fake)
        gate = threading.Event()
        tickers: list[TickerUpdate] = []
        fills: list[FillUpdate] = []

        def on_ticker(t: TickerUpdate) -> None:
            tickers.append(t)
            gate.wait(5)

        s.subscribe("BTCUSDT", on_ticker=on_ticker, on_fill=fills.append)
        s.start(timeout=5)
        adapter.push(ticker("1", ts=1), channel="public")
        wait_until(lambda: len(tickers) == 1)  # the callback is now blocked
        for i in range(2, 102):
            adapter.push(ticker(str(i), ts=i), channel="public")
            adapter.push(fill(f"f{i}"))
        wait_until(lambda: s.stats.conflated >= 99)
        gate.set()
        wait_until(lambda: len(fills) == 100)
        wait_until(lambda: tickers[-1].mark_price == D("101"))
        s.stop()
        assert len(tickers) == 2 and s.stats.conflated == 99


class TestManualDispatch:
    def test_nothing_runs_until_dispatch_pending(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = started(fake, dispatch="manual")
        adapter.snapshot = [wallet("1", snap=True)]
        s.start(timeout=5)
        adapter.push(fill("a"), fill("b"))
        wait_until(lambda: s._queue.__len__() >= 4)  # wallet, connected status, two fills
        assert rec.events == [] and rec.statuses == []
        caller = threading.current_thread()
        ran_in: list[threading.Thread] = []
        s.subscribe("BTCUSDT", on_fill=lambda e: ran_in.append(threading.current_thread()), on_wallet=rec)
        assert s.dispatch_pending(timeout=1) == 4
        assert rec.statuses == ["connected"] and ran_in == [caller, caller]
        assert s.dispatch_pending(timeout=0) == 0
        s.stop()
        assert s.dispatch_pending(timeout=0) == 1 and rec.statuses[-1] == "stopped"

    def test_thread_mode_refuses_dispatch_pending(self, fake: list[FakeAdapter]) -> None:
        s, _, _ = make_stream(fake)
        with pytest.raises(GridbotError):
            s.dispatch_pending()


class TestReconnects:
    def test_down_up_resyncs_and_reports(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = started(fake)
        adapter.snapshot = [position("1", cum="1", snap=True, ts=5)]
        s.start(timeout=5)
        adapter.sink.link("private", "down", "socket closed")
        adapter.sink.link("private", "down", "again")  # one reconnecting status only
        adapter.snapshot = [position("1", cum="3", snap=True, ts=20)]
        adapter.sink.link("private", "up", "reconnected")
        wait_until(lambda: "resynced" in rec.statuses)
        s.stop()
        assert rec.statuses == ["connected", "reconnecting", "resynced", "stopped"]
        assert [p.cum_realised_pnl for p in rec.of(PositionUpdate)] == [D("1"), D("3")]
        assert (s.stats.reconnects, s.stats.resyncs) == (1, 1)

    def test_public_reconnect_needs_no_resync(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = started(fake)
        s.start(timeout=5)
        adapter.sink.link("public", "down", "closed")
        adapter.sink.link("public", "up", "back")
        wait_until(lambda: rec.statuses.count("connected") == 2)
        s.stop()
        assert len(adapter.snapshot_calls) == 1 and s.stats.resyncs == 0

    def test_gap_while_up_resyncs(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = started(fake)
        s.start(timeout=5)
        adapter.sink.link("private", "gap", "SDK error dict")
        wait_until(lambda: "resynced" in rec.statuses)
        s.stop()
        assert len(adapter.snapshot_calls) == 2

    def test_gap_then_reconnect_is_one_resync(
        self, fake: list[FakeAdapter], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # python-binance reports the error before its own reconnect as a gap: resync once, after the reconnect
        monkeypatch.setattr(worker_module, "_GAP_GRACE", 5.0)
        s, adapter, rec = started(fake)
        s.start(timeout=5)
        adapter.sink.link("private", "gap", "ConnectionClosedError")
        adapter.sink.link("private", "down", "the SDK is reconnecting")
        adapter.sink.link("private", "up", "the SDK reconnected")
        wait_until(lambda: "resynced" in rec.statuses)
        adapter.push(fill("marker"))
        wait_until(lambda: len(rec.of(FillUpdate)) == 1)  # the worker is past every link report
        s.stop()
        assert len(adapter.snapshot_calls) == 2 and s.stats.resyncs == 1

    def test_failed_resync_is_retried(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = started(fake)
        s.start(timeout=5)
        adapter.snapshot_error = ConnectError("REST down")
        adapter.sink.link("private", "down", "x")
        adapter.sink.link("private", "up", "y")
        wait_until(lambda: len(adapter.snapshot_calls) >= 3)
        adapter.snapshot_error = None
        wait_until(lambda: "resynced" in rec.statuses)
        s.stop()

    def test_position_closed_while_away_goes_flat_and_vanished_orders_are_fetched(
        self, fake: list[FakeAdapter]
    ) -> None:
        s, adapter, rec = started(fake)
        adapter.snapshot = [position("2", snap=True, cum="1"), order("tp", snap=True)]
        s.start(timeout=5)
        wait_until(lambda: len(rec.of(OrderUpdate)) == 1)
        adapter.snapshot = []  # Binance REST lists no flat positions
        adapter.final_orders = [order("tp", "Filled", ts=30)]
        adapter.sink.link("private", "gap", "missed frames")
        wait_until(lambda: "resynced" in rec.statuses)
        s.stop()
        flat = rec.of(PositionUpdate)[-1]
        assert (flat.size, flat.side, flat.cum_realised_pnl, flat.is_snapshot) == (D("0"), "", None, True)
        assert adapter.fetch_orders_calls == [["tp"]]
        assert rec.of(OrderUpdate)[-1].status == "Filled"

    def test_failed_link_reports_failed(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = started(fake)
        s.start(timeout=5)
        adapter.sink.link("private", "failed", "keys revoked")
        wait_until(lambda: "failed" in rec.statuses)
        s.stop()


class TestSubscriptions:
    def test_subscribe_while_running_adds_ticker_and_seeds_the_symbol(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = started(fake)
        adapter.snapshot = [position("1", symbol="ETHUSDT", snap=True)]
        s.start(timeout=5)
        s.subscribe("ethusdt", on_position=rec)
        wait_until(lambda: len(rec.of(PositionUpdate)) == 1)
        s.stop()
        assert adapter.added == ["ETHUSDT"]
        assert adapter.snapshot_calls[-1] == (["ETHUSDT"], False)

    def test_unsubscribe_stops_callbacks_and_ticker(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = started(fake)
        s.start(timeout=5)
        s.unsubscribe("btcusdt")
        adapter.push(fill("late"))
        s.subscribe("ETHUSDT", on_fill=rec)
        adapter.push(fill("eth", symbol="ETHUSDT"))
        wait_until(lambda: len(rec.of(FillUpdate)) == 1)
        s.stop()
        assert adapter.removed == ["BTCUSDT"] and rec.of(FillUpdate)[0].symbol == "ETHUSDT"


class TestStop:
    def test_stop_is_idempotent_and_reports_stopped_last(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = started(fake)
        s.start(timeout=5)
        s.stop()
        s.stop()
        assert rec.statuses[-1] == "stopped" and adapter.closed == 1 and not s.connected
        assert no_gridbot_threads()

    def test_stop_before_start_is_harmless(self, fake: list[FakeAdapter]) -> None:
        s, _, _ = started(fake)
        s.stop()
        assert no_gridbot_threads()

    def test_stop_during_a_flood_is_bounded(self, fake: list[FakeAdapter]) -> None:
        import time

        s, adapter, _ = make_stream(fake)
        s.subscribe("BTCUSDT", on_fill=lambda e: threading.Event().wait(0.001))
        s.start(timeout=5)
        for i in range(20_000):
            adapter.push(fill(str(i)))
        begun = time.monotonic()
        s.stop(timeout=1.0)
        assert time.monotonic() - begun < 1.5
        assert no_gridbot_threads()

    def test_stop_from_inside_a_callback(self, fake: list[FakeAdapter]) -> None:
        s, adapter, _ = make_stream(fake)
        done = threading.Event()

        def stop_now(event: Any) -> None:
            s.stop(timeout=2)
            done.set()

        s.subscribe("BTCUSDT", on_fill=stop_now)
        s.start(timeout=5)
        adapter.push(fill("x"))
        assert done.wait(5)
        wait_until(no_gridbot_threads)

    def test_context_manager(self, fake: list[FakeAdapter]) -> None:
        s, _, rec = started(fake)
        with s as running:
            assert running is s and s.connected
        assert rec.statuses[-1] == "stopped" and no_gridbot_threads()
