"""stream.book and stream.status(): the delivered state, readable from a loop without callbacks."""

from __future__ import annotations

from decimal import Decimal

import pytest

import gridbot._worker as worker_module
from gridbot import ExchangeStream
from gridbot.book import StateBook
from gridbot.events import OrderUpdate, PositionUpdate, StatusUpdate
from tests.stream.fakes import FakeAdapter, fill, make_stream, order, position, ticker, wait_until, wallet

D = Decimal


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "_RESYNC_BACKOFF_FIRST", 0.01)


def _tp(oid: str, status: str = "New", *, ts: int = 10, symbol: str = "BTCUSDT") -> OrderUpdate:
    return order(oid, status, ts=ts, symbol=symbol)  # reduce-only Limit: a take-profit


def test_a_loop_without_callbacks_reads_positions_orders_marks_and_wallet(fake: list[FakeAdapter]) -> None:
    stream = ExchangeStream("bybit", api_key="k", api_secret="s")
    adapter = fake[-1]
    stream.subscribe("btcusdt")  # no callbacks at all
    adapter.snapshot = [position("2", snap=True, cum="5", entry="100"), _tp("7"), wallet("1000", snap=True)]
    stream.start(timeout=5)
    try:
        book = stream.book
        wait_until(lambda: book.position("BTCUSDT") is not None and book.wallet() is not None)
        adapter.push(ticker("110"), channel="public")
        wait_until(lambda: book.mark_price("BTCUSDT") == D("110"))
        wait_until(lambda: (p := book.position("BTCUSDT")) is not None and p.mark_price == D("110"))
        held = book.position("btcusdt")
        # valued at the mark
        assert held is not None and held.size == D("2") and held.unrealised_pnl == D("20")
        assert [o.order_id for o in book.open_orders("BTCUSDT")] == ["7"]
        assert book.take_profit_ids("BTCUSDT") == ("7",)
        wallet_now = book.wallet("USDT")
        assert wallet_now is not None and wallet_now.wallet_balance == D("1000")

        adapter.push(_tp("7", "Filled", ts=20), position("0", ts=20, cum="9"), fill("t9", ts=20))
        wait_until(lambda: not book.open_orders())
        assert book.take_profit_ids("BTCUSDT") == ()
        wait_until(lambda: (p := book.position("BTCUSDT")) is not None and p.size == 0)
        last = book.last_fill("BTCUSDT")
        assert last is not None and last.trade_id == "t9"
        assert book.state == "connected"
        assert book.last_event_at is not None
    finally:
        stream.stop()


def test_the_book_already_holds_the_event_its_callback_is_given(fake: list[FakeAdapter]) -> None:
    stream, adapter, _ = make_stream(fake)
    seen_in_callback: list[tuple[Decimal, Decimal | None]] = []

    def on_position(update: PositionUpdate) -> None:
        in_book = stream.book.position(update.symbol, update.position_idx)
        seen_in_callback.append((update.size, in_book.size if in_book else None))

    stream.subscribe("BTCUSDT", on_position=on_position)
    stream.start(timeout=5)
    try:
        for i, size in enumerate(("1", "2", "3")):
            adapter.push(position(size, ts=20 + i))
        wait_until(lambda: len(seen_in_callback) == 3)
    finally:
        stream.stop()
    assert seen_in_callback == [(D("1"), D("1")), (D("2"), D("2")), (D("3"), D("3"))]


def test_manual_dispatch_advances_the_book_only_when_dispatching(fake: list[FakeAdapter]) -> None:
    stream = ExchangeStream("bybit", api_key="k", api_secret="s", dispatch="manual")
    adapter = fake[-1]
    stream.subscribe("BTCUSDT")
    stream.start(timeout=5)
    try:
        adapter.push(position("4", ts=30))
        assert stream.book.position("BTCUSDT") is None  # queued, not delivered yet
        deadline_hits = 0
        while stream.book.position("BTCUSDT") is None and deadline_hits < 50:
            stream.dispatch_pending(timeout=0.1)
            deadline_hits += 1
        held = stream.book.position("BTCUSDT")
        assert held is not None and held.size == D("4")
    finally:
        stream.stop()


def test_snapshot_is_one_consistent_moment(fake: list[FakeAdapter]) -> None:
    stream, adapter, _ = make_stream(fake)
    stream.subscribe("BTCUSDT")
    stream.subscribe("ETHUSDT")
    stream.start(timeout=5)
    try:
        adapter.push(position("1", ts=20), position("3", ts=20, symbol="ETHUSDT"), _tp("8", symbol="ETHUSDT"))
        adapter.push(ticker("2000", symbol="ETHUSDT"), channel="public")
        wait_until(lambda: stream.book.ticker("ETHUSDT") is not None and len(stream.book.positions()) == 2)
        view = stream.book.snapshot()
    finally:
        stream.stop()
    btc, eth = view.position("BTCUSDT"), view.position("ethusdt")
    assert btc is not None and btc.size == D("1") and eth is not None and eth.size == D("3")
    assert [o.order_id for o in view.orders("ETHUSDT")] == ["8"] and view.orders("BTCUSDT") == ()
    assert view.take_profit_ids == (("ETHUSDT", 0, "8"),)
    eth_ticker = view.ticker("ETHUSDT")
    assert eth_ticker is not None and eth_ticker.mark_price == D("2000")
    assert view.state == "stopped" or view.state == "connected"


def test_an_unsubscribed_symbol_leaves_the_book(fake: list[FakeAdapter]) -> None:
    stream, adapter, _ = make_stream(fake)
    stream.subscribe("BTCUSDT")
    stream.subscribe("ETHUSDT")
    stream.start(timeout=5)
    try:
        adapter.push(position("1", ts=20, symbol="ETHUSDT"), _tp("5", symbol="ETHUSDT"))
        wait_until(lambda: stream.book.take_profit_ids("ETHUSDT") == ("5",))
        stream.unsubscribe("ETHUSDT")
        assert stream.book.position("ETHUSDT") is None
        assert stream.book.open_orders("ETHUSDT") == () and stream.book.take_profit_ids("ETHUSDT") == ()
        adapter.push(position("2", ts=30, symbol="ETHUSDT"))  # no longer subscribed: not recorded
        adapter.push(position("5", ts=30))
        wait_until(lambda: (p := stream.book.position("BTCUSDT")) is not None and p.size == D("5"))
        assert stream.book.position("ETHUSDT") is None
    finally:
        stream.stop()


def test_status_covers_connection_sockets_symbols_positions_and_counters(fake: list[FakeAdapter]) -> None:
    stream, adapter, rec = make_stream(fake)
    assert stream.status().state == "new"
    stream.subscribe("BTCUSDT")
    adapter.snapshot = [position("2", snap=True), position("0", idx=1, snap=True)]  # one open, one flat
    stream.start(timeout=5)
    try:
        wait_until(lambda: "connected" in rec.statuses)
        adapter.push(ticker("101"), channel="public")
        wait_until(lambda: stream.book.ticker("BTCUSDT") is not None)
        status = stream.status()
        assert (status.exchange, status.state, status.connected, status.symbols) == (
            "bybit", "connected", True, ("BTCUSDT",))
        assert {s.channel: s.state for s in status.sockets} == {"private": "up", "public": "up"}
        public = next(s for s in status.sockets if s.channel == "public")
        assert public.last_message_at is not None
        assert [(p.symbol, p.size) for p in status.positions] == [("BTCUSDT", D("2"))]
        assert status.stats.rest_calls == 1 and status.last_event_at is not None

        adapter.is_connected = False
        adapter.sink.link("private", "down", "socket closed")
        wait_until(lambda: stream.book.sockets()[0].state == "down")
        private = next(s for s in stream.status().sockets if s.channel == "private")
        assert (private.state, private.detail) == ("down", "socket closed")
        assert stream.status().state == "reconnecting"
        adapter.is_connected = True
        adapter.sink.link("private", "up", "reconnected")
        wait_until(lambda: stream.status().state == "connected")
    finally:
        stream.stop()
    assert stream.status().state == "stopped"


def test_a_failed_socket_makes_the_stream_state_failed(fake: list[FakeAdapter]) -> None:
    stream, adapter, _ = make_stream(fake)
    stream.subscribe("BTCUSDT")
    stream.start(timeout=5)
    try:
        adapter.sink.link("private", "failed", "keys rejected")
        wait_until(lambda: stream.status().state == "failed")
    finally:
        stream.stop()


def test_a_dead_worker_makes_the_stream_state_failed(fake: list[FakeAdapter],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    stream, adapter, rec = make_stream(fake)
    stream.subscribe("BTCUSDT")
    stream.start(timeout=5)

    def broken() -> None:  # the worker's loop itself breaks (a bug in one frame is survived: test_lifecycle)
        raise RuntimeError("a bug in the worker")

    monkeypatch.setattr(stream._worker, "_until_resync", broken)
    try:
        adapter.sink.link("public", "gap", "an SDK error")  # wakes the worker
        wait_until(lambda: "failed" in rec.statuses)
        assert stream.status().state == "failed"
    finally:
        stream.stop()


def test_status_updates_are_in_the_book() -> None:
    book = StateBook()
    book._apply(StatusUpdate(exchange="bybit", timestamp=1, state="reconnecting"))
    assert book.state == "reconnecting"
    assert repr(book).startswith("<StateBook positions=0")


def test_finished_orders_never_come_back() -> None:
    """A late 'New' after the 'Filled' (Binance orders no pushes across event types) stays out."""
    book = StateBook()
    book._apply(_tp("1", "Filled", ts=20))
    book._apply(_tp("1", "New", ts=10))
    assert book.open_orders() == () and book.take_profit_ids("BTCUSDT") == ()


def test_the_book_and_the_pipeline_share_one_finished_order_memory(fake: list[FakeAdapter]) -> None:
    stream = ExchangeStream("bybit", api_key="k", api_secret="s", dispatch="manual")
    assert stream.book._finished is stream._pipeline.finished_orders


def test_an_order_whose_end_is_still_queued_is_in_the_book_while_its_callback_runs(
        fake: list[FakeAdapter]) -> None:
    """The pipeline records an end when it accepts it, before delivery; the book still shows the open
    state to the callback that receives it (exactly what the callbacks have been given)."""
    stream = ExchangeStream("bybit", api_key="k", api_secret="s", dispatch="manual")
    adapter = fake[-1]
    seen: list[tuple[str, int, tuple[str, ...]]] = []

    def on_order(update: OrderUpdate) -> None:
        seen.append((update.status, len(stream.book.open_orders("BTCUSDT")),
                     stream.book.take_profit_ids("BTCUSDT")))

    stream.subscribe("BTCUSDT", on_order=on_order)
    stream.start(timeout=5)
    try:
        while stream.dispatch_pending(0.05):
            pass
        wait_until(lambda: not stream._worker.gate.worker_owns)
        adapter.push(_tp("9", ts=20))
        adapter.push(_tp("9", "Filled", ts=21))  # accepted (and remembered) before anything is delivered
        assert stream._pipeline.finished_orders.has("BTCUSDT", "9")
        while stream.dispatch_pending(0.05):
            pass
        assert seen == [("New", 1, ("9",)), ("Filled", 0, ())]
    finally:
        stream.stop()


def test_a_finished_order_costs_one_memory_entry_for_the_pipeline_and_the_book() -> None:
    """Under 200 bytes per finished order for the pipeline, the book and its take-profit ids together."""
    import tracemalloc

    from gridbot._pipeline import Pipeline

    pipe = Pipeline(remember=50_000)
    book = StateBook()
    book._share_finished(pipe.finished_orders)

    def feed(count: int, first: int = 1_000) -> None:
        for i in range(first, first + count):
            oid = str(100_000_000_000 + i)
            for status in ("New", "Filled"):
                event = _tp(oid, status, ts=10 + i)
                assert pipe.accept(event)
                book._apply(event)

    feed(100, first=0)  # the symbol's first entries (its tracker, dict slots) are not per-order costs
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        feed(20_000)
        per_order = (tracemalloc.get_traced_memory()[0] - before) / 20_000
    finally:
        tracemalloc.stop()
    assert book.open_orders() == () and book.take_profit_ids("BTCUSDT") == ()
    assert per_order < 200, per_order
