"""The stream's lifecycle: one meaning per state, threads that cannot die silently, subscription
changes through the dispatcher's queue.  Races are forced with events, never with sleeps."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import gridbot._worker as worker_module
from gridbot import ExchangeStream, GridbotError, TickerUpdate
from gridbot.events import FillUpdate, WalletUpdate
from tests.stream.fakes import (
    FakeAdapter,
    Recorder,
    fill,
    make_stream,
    no_gridbot_threads,
    ticker,
    wait_until,
    wallet,
)


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "_RESYNC_BACKOFF_FIRST", 0.01)


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run, name="test-caller")
    thread.start()
    return thread, errors


def gate(adapter: FakeAdapter, hook: str) -> tuple[threading.Event, threading.Event]:
    """Make the adapter's ``hook`` (open_hook / snapshot_hook) announce itself and wait for release."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        assert release.wait(10)

    setattr(adapter, hook, hold)
    return entered, release


class TestStates:
    def test_a_stream_stopped_before_start_is_stopped_for_good(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = make_stream(fake)
        s.subscribe("BTCUSDT", **rec.callbacks())
        s.stop()
        with pytest.raises(GridbotError, match="stopped"):
            s.start(timeout=5)
        assert adapter.opened_with is None and no_gridbot_threads()
        assert "stopped" in repr(s) and s.status().state == "stopped" and not s.connected
        s.stop()  # still idempotent

    @pytest.mark.parametrize("hook", ["open_hook", "snapshot_hook"])
    def test_stop_during_start_makes_start_raise(self, fake: list[FakeAdapter], hook: str) -> None:
        s, adapter, rec = make_stream(fake)
        s.subscribe("BTCUSDT", **rec.callbacks())
        entered, release = gate(adapter, hook)
        starter, start_errors = in_thread(lambda: s.start(timeout=10))
        assert entered.wait(5)
        stopper, stop_errors = in_thread(lambda: s.stop(timeout=5))
        wait_until(lambda: s._lifecycle.phase in ("stopping", "stopped"))
        release.set()
        starter.join(10)
        stopper.join(10)
        assert not stop_errors
        assert len(start_errors) == 1 and isinstance(start_errors[0], GridbotError)
        assert "stop()" in str(start_errors[0])
        wait_until(no_gridbot_threads)
        assert adapter.closed >= 1 and not s.connected and s.status().state == "stopped"
        with pytest.raises(GridbotError):
            s.start(timeout=1)

    def test_start_twice_and_after_stop_raise(self, fake: list[FakeAdapter]) -> None:
        s, _, _ = make_stream(fake)
        s.start(timeout=5)
        with pytest.raises(GridbotError, match="once"):
            s.start(timeout=5)
        s.stop()
        with pytest.raises(GridbotError, match="stopped"):
            s.start(timeout=5)
        assert no_gridbot_threads()


class TestSubscriptions:
    def test_subscribe_during_start_is_seeded_and_gets_its_ticker(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = make_stream(fake)
        s.subscribe("BTCUSDT", **rec.callbacks())
        entered, release = gate(adapter, "snapshot_hook")
        starter, errors = in_thread(lambda: s.start(timeout=10))
        assert entered.wait(5)
        s.subscribe("ETHUSDT", **rec.callbacks())
        adapter.snapshot_hook = None
        release.set()
        starter.join(10)
        assert not errors
        assert "ETHUSDT" in adapter.added
        wait_until(lambda: any("ETHUSDT" in symbols for symbols, _ in adapter.snapshot_calls))
        adapter.push(ticker("5", symbol="ETHUSDT"), channel="public")
        wait_until(lambda: any(isinstance(e, TickerUpdate) and e.symbol == "ETHUSDT" for e in rec.events))
        s.stop()

    def test_unsubscribe_never_waits_for_a_running_callback(self, fake: list[FakeAdapter]) -> None:
        """The caller holds a lock its callback needs: unsubscribe() must not wait for the callback."""
        user_lock = threading.Lock()
        in_callback = threading.Event()

        def on_ticker(update: TickerUpdate) -> None:
            in_callback.set()
            with user_lock:
                pass

        s, adapter, _ = make_stream(fake)
        s.subscribe("BTCUSDT", on_ticker=on_ticker)
        s.subscribe("ETHUSDT", on_ticker=on_ticker)
        s.start(timeout=5)
        with user_lock:
            adapter.push(ticker("1"), channel="public")
            assert in_callback.wait(5)  # the dispatcher now waits for user_lock
            caller, errors = in_thread(lambda: s.unsubscribe("ETHUSDT"))
            caller.join(5)
            assert not caller.is_alive() and not errors
        s.stop()
        assert no_gridbot_threads()

    def test_unsubscribe_racing_deliveries_is_safe(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = make_stream(fake)
        s.subscribe("BTCUSDT", **rec.callbacks())
        s.start(timeout=5)
        for i in range(2_000):
            symbol = f"S{i % 7}USDT"
            s.subscribe(symbol, **rec.callbacks())
            adapter.push(ticker(str(i + 1), symbol=symbol), channel="public")
            s.unsubscribe(symbol)
        adapter.push(fill("last"))
        wait_until(lambda: any(isinstance(e, FillUpdate) for e in rec.events))
        assert s.stats.internal_errors == 0
        s.stop()
        assert s.stats.internal_errors == 0 and no_gridbot_threads()

    def test_a_bound_method_shared_by_symbols_is_called_once(self, fake: list[FakeAdapter]) -> None:
        class Wallet:
            def __init__(self) -> None:
                self.updates: list[WalletUpdate] = []

            def update(self, event: WalletUpdate) -> None:
                self.updates.append(event)

        book = Wallet()
        s, adapter, rec = make_stream(fake)
        for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
            s.subscribe(symbol, on_wallet=book.update, on_fill=rec)  # a fresh bound method each time
        s.start(timeout=5)
        adapter.push(wallet("7"))
        adapter.push(fill("after"))
        wait_until(lambda: len(rec.events) == 1)
        s.stop()
        assert len(book.updates) == 1

    @pytest.mark.parametrize(("exchange", "bad"), [
        *((exchange, bad) for exchange in ("binance", "bybit")
          for bad in ("BTC/USDT", "ÄÖÜ", "X" * 300, "ETHUSDT@markPrice@1s/btcusdt", "BTCUSDT&x=1", "BTC USDT",
                      "", "  ", "ß")),
        ("bybit", "tickers.BTCUSDT"),  # '.' is legal on Binance, but splits a Bybit topic
    ])
    def test_symbols_outside_the_exchange_syntax_are_a_value_error(
        self, fake: list[FakeAdapter], exchange: str, bad: str
    ) -> None:
        s = ExchangeStream(exchange, api_key="k", api_secret="s")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="symbol"):
            s.subscribe(bad)
        assert s.status().symbols == ()

    @pytest.mark.parametrize(("exchange", "good"), [("binance", "btcusdt"), ("binance", "BTCUSDT_250328"),
                                                    ("bybit", "1000PEPEUSDT"), ("bybit", "BTC-26DEC25")])
    def test_documented_symbols_are_accepted(self, fake: list[FakeAdapter], exchange: str, good: str) -> None:
        s = ExchangeStream(exchange, api_key="k", api_secret="s")  # type: ignore[arg-type]
        s.subscribe(good)
        assert s.status().symbols == (good.upper(),)


class TestNoRestWithoutSnapshot:
    def test_a_gap_and_a_reconnect_make_no_rest_call(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = make_stream(fake, snapshot=False)
        s.subscribe("BTCUSDT", **rec.callbacks())
        s.start(timeout=5)
        adapter.sink.link("private", "gap", "error dict")
        adapter.sink.link("private", "down", "lost")
        adapter.sink.link("private", "up", "back")
        s.subscribe("ETHUSDT", **rec.callbacks())
        adapter.push(fill("after"))
        wait_until(lambda: rec.statuses.count("connected") == 2 and len(rec.of(FillUpdate)) == 1)
        s.stop()
        assert adapter.snapshot_calls == [] and adapter.fill_calls == []
        assert adapter.account_config_calls == []
        assert s.stats.rest_calls == 0


class TestThreadsSurvive:
    def test_the_worker_survives_a_bug_in_a_resync_and_retries_it(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = make_stream(fake)
        s.subscribe("BTCUSDT", **rec.callbacks())
        s.start(timeout=5)
        failures = iter([RuntimeError("bug 1"), RuntimeError("bug 2")])

        def buggy() -> None:
            exc = next(failures, None)
            if exc is not None:
                raise exc

        adapter.snapshot_hook = buggy
        adapter.sink.link("private", "down", "lost")
        adapter.sink.link("private", "up", "back")
        wait_until(lambda: "resynced" in rec.statuses)
        adapter.push(fill("alive"))
        wait_until(lambda: len(rec.of(FillUpdate)) == 1)
        assert s.stats.internal_errors == 2 and s.connected
        s.stop()

    def test_the_worker_survives_a_bug_while_seeding_a_new_symbol(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = make_stream(fake)
        s.subscribe("BTCUSDT", **rec.callbacks())
        s.start(timeout=5)
        adapter.snapshot_error = ZeroDivisionError("bug")
        s.subscribe("ETHUSDT", **rec.callbacks())
        wait_until(lambda: s.stats.internal_errors >= 1)
        adapter.snapshot_error = None
        adapter.push(fill("alive"))
        wait_until(lambda: len(rec.of(FillUpdate)) == 1)
        s.stop()
        assert no_gridbot_threads()

    def test_the_dispatcher_survives_a_base_exception_from_a_callback(self, fake: list[FakeAdapter]) -> None:
        rec = Recorder()

        def exits(event: Any) -> None:
            raise SystemExit(3)

        s, adapter, _ = make_stream(fake)
        s.subscribe("BTCUSDT", on_ticker=exits, on_fill=rec)
        s.start(timeout=5)
        adapter.push(ticker("1"), channel="public")
        adapter.push(fill("after"))
        wait_until(lambda: len(rec.events) == 1)
        assert s.stats.callback_errors == 1 and s.connected
        s.stop()
        assert no_gridbot_threads()

    def test_manual_dispatch_leaves_a_base_exception_to_the_caller(self, fake: list[FakeAdapter]) -> None:
        def interrupted(event: Any) -> None:
            raise KeyboardInterrupt

        s, adapter, _ = make_stream(fake, dispatch="manual")
        s.subscribe("BTCUSDT", on_fill=interrupted)
        s.start(timeout=5)
        adapter.push(fill("x"))
        with pytest.raises(KeyboardInterrupt):
            while True:
                s.dispatch_pending(timeout=5)
        s.stop()

    def test_the_dispatcher_survives_a_bug_in_delivery(self, fake: list[FakeAdapter],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
        s, adapter, rec = make_stream(fake)
        s.subscribe("BTCUSDT", **rec.callbacks())
        s.start(timeout=5)
        real = s._router.deliver
        broken = threading.Event()

        def deliver_once_broken(event: Any) -> None:
            if isinstance(event, FillUpdate) and not broken.is_set():
                broken.set()
                raise AttributeError("bug")
            real(event)

        monkeypatch.setattr(s._router, "deliver", deliver_once_broken)
        adapter.push(fill("lost-to-the-bug"))
        adapter.push(fill("delivered"))
        wait_until(lambda: len(rec.of(FillUpdate)) == 1)
        assert s.stats.internal_errors == 1 and rec.of(FillUpdate)[0].trade_id == "delivered"
        s.stop()

    def test_a_stream_that_cannot_go_on_says_failed_and_closes(self, fake: list[FakeAdapter],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
        s, adapter, rec = make_stream(fake)
        s.subscribe("BTCUSDT", **rec.callbacks())
        s.start(timeout=5)

        def broken() -> Any:
            raise MemoryError("the worker's loop itself breaks")

        monkeypatch.setattr(s._worker, "_until_resync", broken)
        adapter.sink.link("public", "gap", "an SDK error")  # handled; then the loop breaks before it waits
        wait_until(lambda: "failed" in rec.statuses)
        assert not s.connected and s.status().state == "failed" and adapter.closed >= 1
        adapter.push(fill("dropped"))
        assert s._worker.inbox.qsize() == 0  # sealed: SDK threads cannot fill a queue nobody reads
        s.stop()
        assert no_gridbot_threads() and s.status().state == "stopped"


class TestRecovery:
    def test_keys_rejected_then_restored_recover_the_stream(self, fake: list[FakeAdapter]) -> None:
        s, adapter, rec = make_stream(fake)
        s.subscribe("BTCUSDT", **rec.callbacks())
        s.start(timeout=5)
        adapter.sink.link("private", "down", "lost")
        adapter.sink.link("private", "failed", "keys rejected; retrying with backoff")
        wait_until(lambda: s.status().state == "failed")
        adapter.sink.link("private", "up", "keys work again")
        wait_until(lambda: "resynced" in rec.statuses)
        assert rec.statuses.index("failed") < rec.statuses.index("resynced")
        wait_until(lambda: s.status().state == "connected")
        s.stop()
