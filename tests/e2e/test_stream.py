"""ExchangeStream against the loopback emulator through the real, unmodified SDKs (python-binance for
Binance USDⓈ-M, pybit for Bybit v5): one test per behaviour, run on both exchanges; the take-profit
shapes (Binance's algo order and its child, Bybit's conditional order) and Binance's listenKey have
tests of their own."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

import gridbot
from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.bybit import BybitEmulator
from gridbot.events import FillUpdate, OrderUpdate, PositionUpdate, TickerUpdate, WalletUpdate
from tests.e2e.helpers import (
    SYMBOL,
    WAIT,
    Recorder,
    make_stream,
    state_calls,
    unrealised,
    wait_until,
)

QTY = Decimal("0.01")
TERMINAL = ("Filled", "Cancelled", "Rejected", "Expired", "Deactivated")
Emulator = BinanceEmulator | BybitEmulator  # the conftest's `emulator` fixture, for this exchange
StartStream = Callable[[], gridbot.ExchangeStream]
BINANCE_ONLY = pytest.mark.parametrize("exchange", ["binance"], indirect=True)
BYBIT_ONLY = pytest.mark.parametrize("exchange", ["bybit"], indirect=True)


@pytest.fixture
def start_stream(exchange: str, emulator: Emulator, rec: Recorder) -> Iterator[StartStream]:
    streams: list[gridbot.ExchangeStream] = []

    def start() -> gridbot.ExchangeStream:
        stream = make_stream(exchange, emulator, rec)
        streams.append(stream)
        stream.start(timeout=WAIT)
        wait_until(lambda: "connected" in rec.statuses(), what="StatusUpdate connected delivered")
        return stream

    try:
        yield start
    finally:
        for stream in streams:
            stream.stop(timeout=10.0)


def buy(emulator: Emulator, qty: Decimal = QTY) -> None:
    emulator.engine.place_order(symbol=SYMBOL, side="Buy", order_type="Market", qty=qty)


def place_tp(emulator: Emulator, trigger: Decimal) -> None:
    """A reduce-only take-profit: Binance's TAKE_PROFIT_MARKET algo order (the stream tells its algo id),
    Bybit's conditional order (createType CreateByTakeProfit; the stream tells its wire id)."""
    emulator.engine.place_conditional(symbol=SYMBOL, side="Sell", order_type="Market", qty=QTY,
                                      trigger_price=trigger)


def test_seed_is_a_snapshot_of_positions_orders_and_wallet(
        exchange: str, emulator: Emulator, rec: Recorder, start_stream: StartStream) -> None:
    buy(emulator)
    emulator.engine.place_order(symbol=SYMBOL, side="Buy", order_type="Limit", qty=QTY,
                                price=Decimal("59000"), client_order_id="resting-1")
    start_stream()
    position = rec.wait(PositionUpdate, lambda p: p.size > 0, symbol=SYMBOL)
    assert position.is_snapshot
    assert (position.side, position.size, position.entry_price, position.position_idx) == (
        "Buy", QTY, Decimal("60000"), 0)
    if exchange == "binance":
        assert position.cum_realised_pnl is None  # REST positionRisk has no `cr`
    order = rec.wait(OrderUpdate, client_order_id="resting-1")
    assert order.is_snapshot
    assert (order.status, order.side, order.order_type, order.price, order.qty) == (
        "New", "Buy", "Limit", Decimal("59000"), QTY)
    wallet = rec.wait(WalletUpdate, coin="USDT")
    assert wallet.is_snapshot
    expected_balance = Decimal("10000") - emulator.engine.fees_paid()
    assert wallet.wallet_balance == expected_balance


def test_live_updates_mark_merge_and_no_state_rest_in_steady_state(
        emulator: Emulator, rec: Recorder, start_stream: StartStream) -> None:
    stream = start_stream()
    emulator_calls = state_calls(emulator.rest_calls)
    stream_calls = stream.stats.rest_calls
    since = rec.mark()

    buy(emulator)
    position = rec.wait(PositionUpdate, lambda p: p.size == QTY, since=since)
    assert not position.is_snapshot and position.side == "Buy" and position.entry_price == Decimal("60000")
    fill = rec.wait(FillUpdate, since=since)
    assert (fill.side, fill.price, fill.qty, fill.is_maker) == ("Buy", Decimal("60000"), QTY, False)
    assert fill.fee == Decimal("60000") * QTY * Decimal("0.00055")
    assert rec.wait(OrderUpdate, since=since, status="Filled").filled_qty == QTY

    since = rec.mark()
    emulator.engine.set_price(SYMBOL, Decimal("60123.4"))
    ticker = rec.wait(TickerUpdate, since=since)
    assert ticker.mark_price == Decimal("60123.4")
    merged = rec.wait(PositionUpdate, lambda p: p.mark_price == Decimal("60123.4"), since=since)
    assert not merged.is_snapshot and merged.size == QTY
    assert merged.unrealised_pnl == unrealised(merged) == Decimal("1.234")

    since = rec.mark()
    emulator.engine.set_price(SYMBOL, Decimal("59900"))
    merged = rec.wait(PositionUpdate, lambda p: p.mark_price == Decimal("59900"), since=since)
    assert merged.unrealised_pnl == Decimal("-1.00")

    assert state_calls(emulator.rest_calls) == emulator_calls
    assert stream.stats.rest_calls == stream_calls
    assert stream.stats.resyncs == 0 and stream.stats.reconnects == 0


class TpWatch:
    """The strategy's view of one symbol's take-profit and realised PnL, fed by the stream's callbacks."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.pnl = gridbot.RealisedPnlTracker()
        self.tps = gridbot.TakeProfitTracker()
        self.history: list[str | None] = []
        self.lock = threading.Lock()

    def on_position(self, position: PositionUpdate) -> None:
        self.rec(position)
        with self.lock:
            self.pnl.update(position)

    def on_order(self, order: OrderUpdate) -> None:
        self.rec(order)
        with self.lock:
            self.tps.update(order)
            current = self.tps.get(SYMBOL, 0)
            if (self.history or [None])[-1] != current:  # each change of the tracked TP, from none
                self.history.append(current)

    def stream(self, exchange: str, emulator: Emulator) -> gridbot.ExchangeStream:
        stream = make_stream(exchange, emulator, self.rec)
        stream.subscribe(SYMBOL, on_position=self.on_position, on_order=self.on_order, on_fill=self.rec,
                         on_wallet=self.rec, on_ticker=self.rec)
        return stream


@BINANCE_ONLY
def test_binance_algo_tp_is_tracked_through_its_child_and_the_realised_pnl_delta_matches_the_ledger(
        exchange: str, emulator: Emulator, rec: Recorder) -> None:
    watch = TpWatch(rec)
    stream = watch.stream(exchange, emulator)
    try:
        stream.start(timeout=WAIT)
        emulator_calls = state_calls(emulator.rest_calls)
        stream_calls = stream.stats.rest_calls

        buy(emulator)
        rec.wait(PositionUpdate, lambda p: p.size == QTY)
        # REST has no `cr`: the baseline is the first ACCOUNT_UPDATE's, 0 on a fresh account
        wait_until(lambda: watch.pnl.baseline(SYMBOL, 0) is not None, what="the `cr` baseline")
        assert watch.pnl.baseline(SYMBOL, 0) == Decimal(0)
        place_tp(emulator, Decimal("60300"))
        untriggered = rec.wait(OrderUpdate, status="Untriggered")
        algo_id = untriggered.order_id
        assert untriggered.is_take_profit and untriggered.trigger_price == Decimal("60300")
        wait_until(lambda: watch.tps.get(SYMBOL, 0) == algo_id, what="the algo TP tracked")

        emulator.engine.set_price(SYMBOL, Decimal("60300"))
        # TRIGGERING then TRIGGERED: both are "Triggered", the second names the order it placed (`ai`)
        triggered = rec.wait(OrderUpdate, lambda o: o.linked_order_id is not None, order_id=algo_id,
                             status="Triggered")
        child_id = triggered.linked_order_id
        assert child_id is not None and child_id != algo_id
        rec.wait(OrderUpdate, order_id=algo_id, status="Filled")
        child_fill = rec.wait(OrderUpdate, order_id=child_id, status="Filled")
        assert child_fill.is_take_profit and child_fill.filled_qty == QTY
        rec.wait(PositionUpdate, lambda p: p.size == 0)
        expected = emulator.engine.realised_gross()  # Binance `cr` is before fees
        assert expected == Decimal("3.0")
        wait_until(lambda: watch.pnl.total(SYMBOL, 0) == expected, what=f"realised PnL total {expected}")

        statuses = [o.status for o in rec.orders(algo_id)]
        assert [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s] == [
            "Untriggered", "Triggered", "Filled"]
        wait_until(lambda: watch.tps.get(SYMBOL, 0) is None, what="the TP cleared")
        with watch.lock:
            assert watch.history == [algo_id, child_id, None]
        assert state_calls(emulator.rest_calls) == emulator_calls
        assert stream.stats.rest_calls == stream_calls
    finally:
        stream.stop(timeout=10.0)


@BYBIT_ONLY
def test_bybit_conditional_tp_keeps_one_id_and_the_realised_pnl_delta_matches_the_ledger(
        exchange: str, emulator: Emulator, rec: Recorder) -> None:
    watch = TpWatch(rec)
    stream = watch.stream(exchange, emulator)
    try:
        stream.start(timeout=WAIT)
        wait_until(lambda: watch.pnl.baseline(SYMBOL, 0) is not None, what="the cumRealisedPnl baseline")
        assert watch.pnl.baseline(SYMBOL, 0) == Decimal(0)
        emulator_calls = state_calls(emulator.rest_calls)
        stream_calls = stream.stats.rest_calls

        buy(emulator)
        rec.wait(PositionUpdate, lambda p: p.size == QTY)
        place_tp(emulator, Decimal("60300"))
        untriggered = rec.wait(OrderUpdate, status="Untriggered")
        tp_id = untriggered.order_id
        assert untriggered.is_take_profit and untriggered.trigger_price == Decimal("60300")
        wait_until(lambda: watch.tps.get(SYMBOL, 0) == tp_id, what="the TP tracked")

        emulator.engine.set_price(SYMBOL, Decimal("60300"))
        rec.wait(OrderUpdate, order_id=tp_id, status="Filled")
        rec.wait(PositionUpdate, lambda p: p.size == 0 and not p.is_snapshot)
        expected = emulator.engine.realised_gross() - emulator.engine.fees_paid()
        assert expected == Decimal("3.0") - Decimal("0.33") - Decimal("0.331650")
        wait_until(lambda: watch.pnl.total(SYMBOL, 0) == expected, what=f"realised PnL total {expected}")

        statuses = [o.status for o in rec.orders(tp_id)]
        assert statuses == ["Untriggered", "Triggered", "Filled"]
        assert all(o.is_take_profit for o in rec.orders(tp_id))
        with watch.lock:
            assert watch.history == [tp_id, None]
        assert watch.tps.get(SYMBOL, 0) is None
        assert state_calls(emulator.rest_calls) == emulator_calls
        assert stream.stats.rest_calls == stream_calls
    finally:
        stream.stop(timeout=10.0)


def test_private_drop_reconnects_and_resyncs_a_position_changed_while_down(
        emulator: Emulator, rec: Recorder, start_stream: StartStream) -> None:
    stream = start_stream()
    since = rec.mark()
    emulator.faults.refuse_ws(True)
    emulator.faults.drop_private()
    wait_until(lambda: "reconnecting" in rec.statuses(since), what="StatusUpdate reconnecting")
    buy(emulator)  # nobody is connected: only the resync can tell the stream
    emulator.faults.refuse_ws(False)
    rec.wait_statuses("reconnecting", "resynced", since=since)
    position = rec.wait(PositionUpdate, lambda p: p.size == QTY, since=since)
    assert position.is_snapshot and position.side == "Buy"
    stats = stream.stats
    assert stats.reconnects >= 1 and stats.resyncs >= 1
    wait_until(lambda: stream.connected, what="connected again")

    since = rec.mark()  # live pushes flow again on the new socket
    buy(emulator)
    live = rec.wait(PositionUpdate, lambda p: p.size == 2 * QTY, since=since)
    assert not live.is_snapshot


def test_public_drop_reconnects_and_tickers_resume(
        exchange: str, emulator: Emulator, rec: Recorder, start_stream: StartStream) -> None:
    stream = start_stream()
    since = rec.mark()
    emulator.faults.drop_public()
    wait_until(lambda: "reconnecting" in rec.statuses(since), what="StatusUpdate reconnecting")
    wait_until(lambda: stream.stats.reconnects >= 1 and stream.connected, what="public socket back")
    # the worker counts the reconnect before it queues the status; the dispatcher delivers it a moment later
    wait_until(lambda: set(rec.statuses(since)) & {"connected", "resynced"}, what="StatusUpdate connected")
    since = rec.mark()
    emulator.engine.set_price(SYMBOL, Decimal("60555.5"))
    if exchange == "binance":
        assert rec.wait(TickerUpdate, since=since).mark_price == Decimal("60555.5")
    else:  # Bybit's resubscription snapshot (the old price) may still be on its way: wait for the new one
        rec.wait(TickerUpdate, lambda t: t.mark_price == Decimal("60555.5"), since=since)


def test_tp_filled_while_disconnected_gets_its_final_state_at_resync(
        exchange: str, emulator: Emulator, rec: Recorder, start_stream: StartStream) -> None:
    stream = start_stream()
    buy(emulator)
    rec.wait(PositionUpdate, lambda p: p.size == QTY)
    place_tp(emulator, Decimal("60300"))
    tp_id = rec.wait(OrderUpdate, status="Untriggered").order_id
    calls_before = emulator.rest_calls

    since = rec.mark()
    emulator.faults.refuse_ws(True)
    emulator.faults.drop_private()
    wait_until(lambda: "reconnecting" in rec.statuses(since), what="StatusUpdate reconnecting")
    emulator.engine.set_price(SYMBOL, Decimal("60300"))  # the TP triggers and fills unseen
    assert emulator.engine.positions(SYMBOL)[0].size == 0
    emulator.faults.refuse_ws(False)
    rec.wait_statuses("reconnecting", "resynced", since=since)

    terminal = TERMINAL if exchange == "binance" else ("Filled",)
    final = rec.wait(OrderUpdate, lambda o: o.status in terminal, order_id=tp_id, since=since,
                     what="the TP's final state")
    assert final.is_take_profit and final.status == "Filled"
    flat = rec.wait(PositionUpdate, lambda p: p.size == 0, since=since)
    if exchange == "binance":  # the algo order names the child that filled; REST asked for the algo order
        assert final.linked_order_id is not None
        assert flat.is_snapshot
        query, least = "GET /fapi/v1/algoOrder", 1
    else:  # the same order id filled; REST asked for the open orders, then for the order by id
        assert final.filled_qty == QTY
        assert flat.cum_realised_pnl == emulator.engine.realised_gross() - emulator.engine.fees_paid()
        query, least = "GET /v5/order/realtime", 2
    assert emulator.rest_calls.get(query, 0) - calls_before.get(query, 0) >= least
    assert stream.stats.resyncs >= 1


def test_bad_credentials_raise_authentication_error_and_leave_no_thread(
        exchange: str, emulator: Emulator, rec: Recorder) -> None:
    before = set(threading.enumerate())
    stream = make_stream(exchange, emulator, rec, api_secret="wrong-secret")
    try:
        with pytest.raises(gridbot.AuthenticationError):
            stream.start(timeout=WAIT)
        left = [t.name for t in threading.enumerate()
                if t not in before and t.name.startswith("gridbot-") and t.is_alive()]
        assert left == []
    finally:
        stream.stop(timeout=10.0)


@BINANCE_ONLY
def test_binance_listen_key_expiry_resyncs_and_the_stream_keeps_delivering(
        emulator: BinanceEmulator, rec: Recorder, start_stream: StartStream) -> None:
    stream = start_stream()
    first_key = emulator.listen_key
    since = rec.mark()
    emulator.faults.expire_listen_key()
    wait_until(lambda: "resynced" in rec.statuses(since), what="StatusUpdate resynced")
    assert emulator.listen_key not in (None, first_key)
    assert stream.stats.resyncs >= 1
    wait_until(lambda: stream.connected, what="connected again")

    since = rec.mark()
    buy(emulator)
    live = rec.wait(PositionUpdate, lambda p: p.size == QTY and not p.is_snapshot, since=since)
    assert live.side == "Buy"
    assert rec.wait(FillUpdate, since=since).qty == QTY


@BINANCE_ONLY
def test_binance_listen_key_expired_while_disconnected_is_renewed_at_the_first_refusal(
        emulator: BinanceEmulator, rec: Recorder, start_stream: StartStream) -> None:
    """The socket drops and the key expires with nobody connected, so no listenKeyExpired frame arrives.

    python-binance would retry the dead key up to five times with growing waits (at least ~4 s, often
    15-30 s) before giving up; gridbot must take the exchange's refusal of the first reconnect as the
    sign of a stale key and rebuild with a new one at once (the SDK's first retry waits 1-2 s)."""
    stream = start_stream()
    first_key = emulator.listen_key
    since = rec.mark()
    emulator.faults.drop_private()
    emulator.faults.expire_listen_key()  # nobody is connected: the frame is lost

    def renewed_and_resynced() -> bool:
        after_drop = iter(rec.statuses(since))
        resynced_after_reconnecting = "reconnecting" in after_drop and "resynced" in after_drop
        renewed = emulator.listen_key not in (None, first_key)
        return resynced_after_reconnecting and renewed and stream.connected

    wait_until(renewed_and_resynced, timeout=3.5, what="new key and resync before the SDK's retries end")

    since = rec.mark()
    buy(emulator)
    assert rec.wait(FillUpdate, since=since).qty == QTY
