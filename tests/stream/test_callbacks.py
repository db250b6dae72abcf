"""Callbacks: validated at registration, and a raising one is counted exactly but logged sparingly."""

from __future__ import annotations

import dataclasses
import logging
from decimal import Decimal
from typing import Any

import pytest

from gridbot import ExchangeStream
from gridbot._dispatch import CallbackErrorLog, Callbacks, Router, Subscriptions
from gridbot.events import PositionUpdate, StatusUpdate, TickerUpdate
from gridbot.stats import Counters
from tests.stream.fakes import FakeAdapter, make_stream, position, ticker, wait_until

D = Decimal


@pytest.mark.parametrize("kind", [f.name for f in dataclasses.fields(Callbacks)])
@pytest.mark.parametrize("value", [42, "handler", object()])
def test_a_non_callable_is_a_type_error_at_subscribe(fake: list[FakeAdapter], kind: str, value: Any) -> None:
    stream, _, _ = make_stream(fake)
    with pytest.raises(TypeError, match=kind):
        stream.subscribe("BTCUSDT", **{kind: value})
    assert stream.status().symbols == ()  # nothing half-registered


def test_a_non_callable_on_status_is_a_type_error_at_construction(fake: list[FakeAdapter]) -> None:
    with pytest.raises(TypeError, match="on_status"):
        ExchangeStream("bybit", api_key="k", api_secret="s", on_status=123)  # type: ignore[arg-type]


def test_callbacks_returning_values_are_accepted(fake: list[FakeAdapter]) -> None:
    stream, adapter, _ = make_stream(fake)
    seen: list[PositionUpdate] = []
    stream.subscribe("BTCUSDT", on_position=seen.append, on_ticker=lambda t: t.mark_price)
    stream.start(timeout=5)
    try:
        adapter.push(position("1", ts=20))
        wait_until(lambda: len(seen) == 1)
    finally:
        stream.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _router(clock: FakeClock, counters: Counters, on_ticker: Any) -> Router:
    subscriptions = Subscriptions()
    subscriptions.set("BTCUSDT", Callbacks(on_ticker=on_ticker))
    log = CallbackErrorLog("bybit", interval=10.0, clock=clock)
    return Router("bybit", subscriptions, None, counters, error_log=log)


def _boom(_: TickerUpdate) -> None:
    raise ValueError("bad handler")


def _records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "gridbot._dispatch"]


def test_repeated_errors_log_once_with_traceback_then_a_periodic_count(
        caplog: pytest.LogCaptureFixture) -> None:
    clock, counters = FakeClock(), Counters()
    router = _router(clock, counters, _boom)
    caplog.set_level(logging.ERROR, logger="gridbot._dispatch")
    for i in range(21):  # a second of a 21-per-second callback error
        clock.now += 0.05
        router.deliver(ticker(str(100 + i), ts=i))
    assert counters.snapshot().callback_errors == 21
    [first] = _records(caplog)
    assert first.exc_info is not None and "on_ticker" in first.getMessage()

    clock.now += 10.0
    router.deliver(ticker("200", ts=99))
    records = _records(caplog)
    assert len(records) == 2
    assert records[1].exc_info is None
    summary = records[1].getMessage()
    assert "21 more time(s)" in summary and "ValueError: bad handler" in summary

    clock.now += 1.0
    router.deliver(ticker("201", ts=100))
    router.deliver(ticker("202", ts=101))
    assert len(_records(caplog)) == 2  # within the interval: counted only
    router.errors.flush()
    records = _records(caplog)
    assert len(records) == 3 and "2 more time(s)" in records[2].getMessage()
    router.errors.flush()
    assert len(_records(caplog)) == 3  # nothing pending, nothing written
    assert counters.snapshot().callback_errors == 24


def test_each_callback_and_exception_type_gets_its_own_first_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    clock, counters = FakeClock(), Counters()
    calls = iter([ValueError("a"), KeyError("b"), ValueError("c")])

    def flaky(_: TickerUpdate) -> None:
        raise next(calls)

    router = _router(clock, counters, flaky)
    caplog.set_level(logging.ERROR, logger="gridbot._dispatch")
    for i in range(3):
        router.deliver(ticker(str(100 + i), ts=i))
    with_traceback = [r for r in _records(caplog) if r.exc_info is not None]
    assert [r.exc_info[0] for r in with_traceback if r.exc_info] == [ValueError, KeyError]
    assert counters.snapshot().callback_errors == 3


def test_the_stream_flushes_pending_counts_at_stop(
        fake: list[FakeAdapter], caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: StatusUpdate) -> None:
        raise RuntimeError("status handler broke")

    stream = ExchangeStream("bybit", api_key="k", api_secret="s", on_status=broken)
    adapter = fake[-1]
    stream.subscribe("BTCUSDT", on_ticker=_boom)
    caplog.set_level(logging.ERROR, logger="gridbot._dispatch")
    stream.start(timeout=5)
    try:
        for i in range(5):
            adapter.push(ticker(str(100 + i), ts=20 + i), channel="public")
            wait_until(lambda i=i: stream.stats.callback_errors >= i + 2)  # type: ignore[misc]
    finally:
        stream.stop()
    stats = stream.stats
    assert stats.callback_errors == 7  # connected + 5 tickers + stopped
    messages = [r.getMessage() for r in _records(caplog)]
    assert sum(1 for r in _records(caplog) if r.exc_info) == 2  # one traceback per callback
    assert any("on_ticker raised ValueError 4 more time(s)" in m for m in messages)
    assert any("on_status raised RuntimeError 1 more time(s)" in m for m in messages)


def test_positions_still_flow_after_a_raising_callback(fake: list[FakeAdapter]) -> None:
    stream, adapter, _ = make_stream(fake)
    got: list[PositionUpdate] = []

    def sometimes(update: PositionUpdate) -> None:
        got.append(update)
        if update.size == D("1"):
            raise ValueError("first one")

    stream.subscribe("BTCUSDT", on_position=sometimes)
    stream.start(timeout=5)
    try:
        adapter.push(position("1", ts=20))
        adapter.push(position("2", ts=21))
        wait_until(lambda: len(got) == 2)
    finally:
        stream.stop()
    assert stream.stats.callback_errors == 1


def test_the_readme_manual_shutdown_pattern_delivers_the_final_stopped(fake: list[FakeAdapter]) -> None:
    states: list[str] = []
    stream = ExchangeStream("bybit", api_key="k", api_secret="s", dispatch="manual",
                            on_status=lambda s: states.append(s.state))
    adapter = fake[-1]
    got: list[PositionUpdate] = []
    stream.subscribe("BTCUSDT", on_position=got.append)
    stream.start(timeout=5)
    try:
        stream.dispatch_pending(timeout=1.0)
        adapter.push(position("1", ts=20))
    finally:
        stream.stop()
        while stream.dispatch_pending():
            pass
    assert states[0] == "connected" and states[-1] == "stopped"
    assert [p.size for p in got] == [D("1")]  # received before stop(): delivered, not lost
