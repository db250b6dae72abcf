"""ExchangeStream on Bybit v5 against the loopback emulator, through the real, unmodified pybit."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

import gridbot
from gridbot.emulator.bybit import BybitEmulator
from gridbot.events import FillUpdate, OrderUpdate, PositionUpdate, TickerUpdate, WalletUpdate
from tests.e2e.helpers import (
    KEY,
    SECRET,
    SYMBOL,
    WAIT,
    Recorder,
    engine_config,
    make_stream,
    state_calls,
    unrealised,
    wait_until,
)

QTY = Decimal("0.01")
StartStream = Callable[[], gridbot.ExchangeStream]


@pytest.fixture
def emulator() -> Iterator[BybitEmulator]:
    emu = BybitEmulator(engine_config(), api_key=KEY, api_secret=SECRET, price_interval=0)
    try:
        emu.start()
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def start_stream(emulator: BybitEmulator, rec: Recorder) -> Iterator[StartStream]:
    streams: list[gridbot.ExchangeStream] = []

    def start() -> gridbot.ExchangeStream:
        stream = make_stream("bybit", emulator, rec)
        streams.append(stream)
        stream.start(timeout=WAIT)
        wait_until(lambda: "connected" in rec.statuses(), what="StatusUpdate connected delivered")
        return stream

    try:
        yield start
    finally:
        for stream in streams:
            stream.stop(timeout=10.0)


def buy(emulator: BybitEmulator, qty: Decimal = QTY) -> None:
    emulator.engine.place_order(symbol=SYMBOL, side="Buy", order_type="Market", qty=qty)


def place_tp(emulator: BybitEmulator, trigger: Decimal) -> None:
    """A reduce-only conditional TP (createType CreateByTakeProfit); the stream tells its wire id."""
    emulator.engine.place_conditional(symbol=SYMBOL, side="Sell", order_type="Market", qty=QTY,
                                      trigger_price=trigger)


def test_seed_is_a_snapshot_of_positions_orders_and_wallet(emulator: BybitEmulator, rec: Recorder,
                                                          start_stream: StartStream) -> None:
    buy(emulator)
    emulator.engine.place_order(symbol=SYMBOL, side="Buy", order_type="Limit", qty=QTY,
                                price=Decimal("59000"), client_order_id="resting-1")
    start_stream()
    position = rec.wait(PositionUpdate, lambda p: p.size > 0, symbol=SYMBOL)
    assert position.is_snapshot
    assert (position.side, position.size, position.entry_price, position.position_idx) == (
        "Buy", QTY, Decimal("60000"), 0)
    order = rec.wait(OrderUpdate, client_order_id="resting-1")
    assert order.is_snapshot
    assert (order.status, order.side, order.order_type, order.price, order.qty) == (
        "New", "Buy", "Limit", Decimal("59000"), QTY)
    wallet = rec.wait(WalletUpdate, coin="USDT")
    assert wallet.is_snapshot
    expected_balance = Decimal("10000") - emulator.engine.fees_paid()
    assert wallet.wallet_balance == expected_balance


def test_live_updates_mark_merge_and_no_state_rest_in_steady_state(
        emulator: BybitEmulator, rec: Recorder, start_stream: StartStream) -> None:
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


def test_conditional_tp_keeps_one_id_and_the_realised_pnl_delta_matches_the_ledger(
        emulator: BybitEmulator, rec: Recorder, start_stream: StartStream) -> None:
    pnl = gridbot.RealisedPnlTracker()
    tps = gridbot.TakeProfitTracker()
    tp_history: list[str | None] = []
    lock = threading.Lock()

    def on_position(position: PositionUpdate) -> None:
        rec(position)
        with lock:
            pnl.update(position)

    def on_order(order: OrderUpdate) -> None:
        rec(order)
        with lock:
            tps.update(order)
            current = tps.get(SYMBOL, 0)
            if not tp_history or tp_history[-1] != current:
                tp_history.append(current)

    stream = make_stream("bybit", emulator, rec)
    stream.subscribe(SYMBOL, on_position=on_position, on_order=on_order, on_fill=rec, on_wallet=rec,
                     on_ticker=rec)
    try:
        stream.start(timeout=WAIT)
        wait_until(lambda: pnl.baseline(SYMBOL, 0) is not None, what="the cumRealisedPnl baseline")
        assert pnl.baseline(SYMBOL, 0) == Decimal(0)
        emulator_calls = state_calls(emulator.rest_calls)
        stream_calls = stream.stats.rest_calls

        buy(emulator)
        rec.wait(PositionUpdate, lambda p: p.size == QTY)
        place_tp(emulator, Decimal("60300"))
        untriggered = rec.wait(OrderUpdate, status="Untriggered")
        tp_id = untriggered.order_id
        assert untriggered.is_take_profit and untriggered.trigger_price == Decimal("60300")
        wait_until(lambda: tps.get(SYMBOL, 0) == tp_id, what="the TP tracked")

        emulator.engine.set_price(SYMBOL, Decimal("60300"))
        rec.wait(OrderUpdate, order_id=tp_id, status="Filled")
        rec.wait(PositionUpdate, lambda p: p.size == 0 and not p.is_snapshot)
        expected = emulator.engine.realised_gross() - emulator.engine.fees_paid()
        assert expected == Decimal("3.0") - Decimal("0.33") - Decimal("0.331650")
        wait_until(lambda: pnl.total(SYMBOL, 0) == expected, what=f"realised PnL total {expected}")

        statuses = [o.status for o in rec.orders(tp_id)]
        assert statuses == ["Untriggered", "Triggered", "Filled"]
        assert all(o.is_take_profit for o in rec.orders(tp_id))
        with lock:
            assert tp_history == [None, tp_id, None] or tp_history == [tp_id, None]
        assert tps.get(SYMBOL, 0) is None
        assert state_calls(emulator.rest_calls) == emulator_calls
        assert stream.stats.rest_calls == stream_calls
    finally:
        stream.stop(timeout=10.0)


def test_private_drop_reconnects_and_resyncs_a_position_changed_while_down(
        emulator: BybitEmulator, rec: Recorder, start_stream: StartStream) -> None:
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


def test_public_drop_reconnects_and_tickers_resume(emulator: BybitEmulator, rec: Recorder,
                                                   start_stream: StartStream) -> None:
    stream = start_stream()
    since = rec.mark()
    emulator.faults.drop_public()
    wait_until(lambda: "reconnecting" in rec.statuses(since), what="StatusUpdate reconnecting")
    wait_until(lambda: stream.stats.reconnects >= 1 and stream.connected, what="public socket back")
    # the worker counts the reconnect before it queues the status; the dispatcher delivers it a moment later
    wait_until(lambda: set(rec.statuses(since)) & {"connected", "resynced"}, what="StatusUpdate connected")
    since = rec.mark()
    emulator.engine.set_price(SYMBOL, Decimal("60555.5"))
    # the resubscription's snapshot (the old price) may still be on its way: wait for the new price itself
    rec.wait(TickerUpdate, lambda t: t.mark_price == Decimal("60555.5"), since=since)


def test_tp_filled_while_disconnected_gets_its_final_state_at_resync(
        emulator: BybitEmulator, rec: Recorder, start_stream: StartStream) -> None:
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

    final = rec.wait(OrderUpdate, order_id=tp_id, since=since, status="Filled",
                     what="the TP's final state")
    assert final.filled_qty == QTY and final.is_take_profit
    flat = rec.wait(PositionUpdate, lambda p: p.size == 0, since=since)
    expected_net = emulator.engine.realised_gross() - emulator.engine.fees_paid()
    assert flat.cum_realised_pnl == expected_net
    realtime = "GET /v5/order/realtime"
    asked = emulator.rest_calls.get(realtime, 0) - calls_before.get(realtime, 0)
    assert asked >= 2  # the open-orders snapshot, then the order by id
    assert stream.stats.resyncs >= 1


def test_bad_credentials_raise_authentication_error_and_leave_no_thread(emulator: BybitEmulator,
                                                                       rec: Recorder) -> None:
    before = set(threading.enumerate())
    stream = make_stream("bybit", emulator, rec, api_secret="wrong-secret")
    try:
        with pytest.raises(gridbot.AuthenticationError):
            stream.start(timeout=WAIT)
        left = [t.name for t in threading.enumerate()
                if t not in before and t.name.startswith("gridbot-") and t.is_alive()]
        assert left == []
    finally:
        stream.stop(timeout=10.0)
