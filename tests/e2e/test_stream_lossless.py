"""Lossless and never backwards, end to end: the real SDKs (python-binance, pybit) against the emulator.

Every fill the exchange's ledger holds reaches ``on_fill`` exactly once — also those made while the private
socket was down or silent (backfilled by REST before ``resynced``) and forced closes (liquidation, ADL);
a bad frame is counted and skipped without a reconnect; a garbage REST answer fails the resync instead of
flattening the account; a REST answer that lags the socket never moves state backwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

import gridbot
from gridbot.adapters.bybit import BybitTimings
from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.bybit import BybitEmulator
from gridbot.events import FillUpdate, OrderUpdate, PositionUpdate, StatusUpdate
from tests.e2e.helpers import (
    KEY,
    SECRET,
    SYMBOL,
    WAIT,
    Recorder,
    engine_config,
    make_stream,
    wait_until,
    wire_trade_ids,
)

QTY = Decimal("0.01")


class ScriptedBinance(BinanceEmulator):
    """The emulator with a seam to answer ``GET /fapi/v3/positionRisk`` differently (garbage, stale)."""

    position_answer: Callable[[dict[str, str]], Any] | None = None

    def _position_risk(self, params: dict[str, str]) -> list[dict[str, Any]]:
        answer = self.position_answer
        return super()._position_risk(params) if answer is None else answer(params)


class ScriptedBybit(BybitEmulator):
    """The emulator with a seam to answer ``GET /v5/position/list`` differently (stale)."""

    position_answer: Callable[[dict[str, Any]], Any] | None = None

    def _position_list(self, params: dict[str, Any]) -> dict[str, Any]:
        answer = self.position_answer
        return super()._position_list(params) if answer is None else answer(params)


Emulator = ScriptedBinance | ScriptedBybit


@pytest.fixture
def emulator_classes() -> dict[str, type[Any]]:
    """The conftest's ``emulator`` fixture builds these: the emulators with their REST seams."""
    return {"binance": ScriptedBinance, "bybit": ScriptedBybit}


@pytest.fixture
def streams() -> Iterator[list[gridbot.ExchangeStream]]:
    made: list[gridbot.ExchangeStream] = []
    yield made
    for stream in made:
        stream.stop(timeout=10.0)


def start(exchange: str, emulator: Emulator, rec: Recorder, streams: list[gridbot.ExchangeStream],
          *, silence: float | None = None) -> gridbot.ExchangeStream:
    stream = make_stream(exchange, emulator, rec)
    streams.append(stream)
    if silence is not None:  # the liveness bounds, shortened for a test
        adapter: Any = stream._adapter
        if exchange == "binance":
            adapter.private_silence_timeout = silence
        else:
            adapter.timings = BybitTimings(ping_interval=silence / 2, pong_timeout=silence / 2)
    stream.start(timeout=WAIT)
    wait_until(lambda: "connected" in rec.statuses(), what="StatusUpdate connected delivered")
    return stream


def buy(emulator: Emulator, qty: Decimal = QTY) -> None:
    emulator.engine.place_order(symbol=SYMBOL, side="Buy", order_type="Market", qty=qty)


def delivered_ids(rec: Recorder) -> list[str]:
    return [f.trade_id for f in rec.of(FillUpdate)]


def wait_all_fills(exchange: str, emulator: Emulator, rec: Recorder) -> list[str]:
    """Wait until the stream delivered every fill of the ledger; return the ledger's wire ids."""
    expected = wire_trade_ids(exchange, emulator.engine.fills(SYMBOL))
    wait_until(lambda: sorted(delivered_ids(rec)) == sorted(expected),
               what=f"the {len(expected)} ledger fills delivered")
    return expected


def before_resynced(rec: Recorder, trade_ids: set[str], since: int) -> bool:
    """Whether every fill of ``trade_ids`` was delivered before the first ``resynced`` after ``since``."""
    seen: set[str] = set()
    for event in rec.all()[since:]:
        if isinstance(event, FillUpdate):
            seen.add(event.trade_id)
        elif isinstance(event, StatusUpdate) and event.state == "resynced":
            return trade_ids <= seen
    return False


# --------------------------------------------------------------------------- fills of a gap


def test_fills_made_while_the_private_socket_is_down_arrive_once_before_resynced(
        exchange: str, emulator: Emulator, rec: Recorder, streams: list[gridbot.ExchangeStream]) -> None:
    stream = start(exchange, emulator, rec, streams)
    buy(emulator)
    wait_all_fills(exchange, emulator, rec)
    since = rec.mark()
    emulator.faults.refuse_ws(True)
    emulator.faults.drop_private()
    wait_until(lambda: "reconnecting" in rec.statuses(since), what="StatusUpdate reconnecting")
    for _ in range(3):  # nobody is connected: only the backfill can tell the stream
        buy(emulator)
    gap = set(wire_trade_ids(exchange, emulator.engine.fills(SYMBOL))[1:])
    emulator.faults.refuse_ws(False)
    rec.wait_statuses("reconnecting", "resynced", since=since)
    wait_until(lambda: stream.connected, what="connected again")
    buy(emulator)  # live again
    expected = wait_all_fills(exchange, emulator, rec)

    assert delivered_ids(rec) == expected  # each once, in exchange order
    assert before_resynced(rec, gap, since)
    assert stream.stats.backfilled_fills == 3
    backfilled = [f for f in rec.of(FillUpdate) if f.trade_id in gap]
    assert all(f.is_snapshot and f.qty == QTY and f.side == "Buy" for f in backfilled)
    if exchange == "bybit":  # the REST execution list has no execPnl
        assert all(f.realised_pnl is None for f in backfilled)
    # the orders were placed and filled while disconnected: on_order still learns how they ended,
    # before their fills
    events = rec.all()
    for fill in backfilled:
        ended = [i for i, e in enumerate(events) if isinstance(e, OrderUpdate) and e.order_id == fill.order_id
                 and e.status == "Filled"]
        assert ended and ended[0] < events.index(fill), fill.order_id


def test_fills_of_a_silent_private_socket_are_backfilled(
        exchange: str, emulator: Emulator, rec: Recorder, streams: list[gridbot.ExchangeStream]) -> None:
    stream = start(exchange, emulator, rec, streams, silence=1.5)
    since = rec.mark()
    emulator.faults.pause("private")  # no frames, no close (and no Binance server pings in the emulator)
    buy(emulator)
    buy(emulator)
    wait_until(lambda: "reconnecting" in rec.statuses(since), what="the silence noticed")
    if exchange == "bybit":
        # the emulator holds the new socket's auth answer too: the stall must end for a reconnect
        emulator.faults.resume("private")
    rec.wait_statuses("reconnecting", "resynced", since=since)
    expected = wait_all_fills(exchange, emulator, rec)
    assert before_resynced(rec, set(expected), since)
    emulator.faults.resume("private")  # Binance: the held pushes arrive late on the new socket
    buy(emulator)
    wait_all_fills(exchange, emulator, rec)
    assert len(delivered_ids(rec)) == len(set(delivered_ids(rec))) == 3
    assert stream.stats.backfilled_fills == 2


# --------------------------------------------------------------------------- forced closes


@pytest.mark.parametrize(("kind", "marked"), [("liquidation", "Liquidation"), ("adl", "Adl")])
def test_a_forced_close_is_a_marked_fill_and_its_order_update_arrives(
        exchange: str, emulator: Emulator, rec: Recorder, streams: list[gridbot.ExchangeStream],
        kind: str, marked: str) -> None:
    start(exchange, emulator, rec, streams)
    buy(emulator)
    rec.wait(PositionUpdate, lambda p: p.size == QTY)
    since = rec.mark()
    order = emulator.engine.liquidate(SYMBOL, 0, Decimal("59000.0"), kind)
    fill = rec.wait(FillUpdate, lambda f: f.exec_type != "Trade", since=since, what="the forced-close fill")
    assert (fill.exec_type, fill.side, fill.qty, fill.price) == (marked, "Sell", QTY, Decimal("59000.0"))
    assert fill.realised_pnl == Decimal("-10.00")  # (59000 - 60000) x 0.01, before fees
    assert fill.order_id in {o.order_id for o in rec.of(OrderUpdate, since) if o.status == "Filled"}
    rec.wait(PositionUpdate, lambda p: p.size == 0, since=since, what="the slot flat")
    assert delivered_ids(rec) == wire_trade_ids(exchange, emulator.engine.fills(SYMBOL))
    assert order.symbol == SYMBOL


def test_a_forced_close_while_disconnected_is_backfilled(
        exchange: str, emulator: Emulator, rec: Recorder, streams: list[gridbot.ExchangeStream]) -> None:
    start(exchange, emulator, rec, streams)
    buy(emulator)
    rec.wait(PositionUpdate, lambda p: p.size == QTY)
    since = rec.mark()
    emulator.faults.refuse_ws(True)
    emulator.faults.drop_private()
    wait_until(lambda: "reconnecting" in rec.statuses(since), what="StatusUpdate reconnecting")
    emulator.engine.liquidate(SYMBOL, 0, Decimal("59000.0"), "liquidation")
    emulator.faults.refuse_ws(False)
    rec.wait_statuses("reconnecting", "resynced", since=since)
    expected = wait_all_fills(exchange, emulator, rec)
    [forced] = [f for f in rec.of(FillUpdate, since) if f.trade_id == expected[-1]]
    # Bybit's REST row says BustTrade; Binance's userTrades row cannot tell a forced close
    assert forced.exec_type == ("Liquidation" if exchange == "bybit" else "Trade")
    assert rec.last_position() is not None and rec.last_position().size == 0  # type: ignore[union-attr]


# --------------------------------------------------------------------------- bad frames and answers


def test_a_non_json_frame_is_counted_and_the_socket_stays(
        exchange: str, emulator: Emulator, rec: Recorder, streams: list[gridbot.ExchangeStream]) -> None:
    stream = start(exchange, emulator, rec, streams)
    emulator.faults.send_raw("private", "this is not JSON {")
    buy(emulator)
    wait_all_fills(exchange, emulator, rec)
    assert stream.stats.bad_messages == 1
    assert stream.stats.reconnects == 0 and "reconnecting" not in rec.statuses()


def test_a_garbage_position_answer_fails_the_resync_and_never_flattens(
        rec: Recorder, streams: list[gridbot.ExchangeStream]) -> None:
    emulator = ScriptedBinance(engine_config(), api_key=KEY, api_secret=SECRET, price_interval=0)
    emulator.start()
    try:
        start("binance", emulator, rec, streams)
        buy(emulator)
        rec.wait(PositionUpdate, lambda p: p.size == QTY)
        since = rec.mark()
        emulator.position_answer = lambda params: ["a", "b"]
        emulator.faults.drop_private()
        wait_until(lambda: emulator.rest_calls.get("GET /fapi/v3/positionRisk", 0) >= 3,
                   what="the resync retried")
        assert "resynced" not in rec.statuses(since)
        emulator.position_answer = None
        rec.wait_statuses("resynced", since=since)
        assert [p.size for p in rec.of(PositionUpdate, since)] in ([], [QTY])  # never flat
    finally:
        for stream in streams:
            stream.stop(timeout=10.0)
        streams.clear()
        emulator.stop()


# --------------------------------------------------------------------------- never backwards


def test_a_snapshot_lagging_the_socket_does_not_move_the_position_back(
        exchange: str, emulator: Emulator, rec: Recorder, streams: list[gridbot.ExchangeStream]) -> None:
    start(exchange, emulator, rec, streams)
    buy(emulator)
    rec.wait(PositionUpdate, lambda p: p.size == QTY)
    stale: Any = emulator._position_risk({}) if isinstance(emulator, ScriptedBinance) else \
        emulator._position_list({"category": "linear", "symbol": SYMBOL})
    buy(emulator)
    rec.wait(PositionUpdate, lambda p: p.size == 2 * QTY)
    since = rec.mark()
    emulator.position_answer = lambda params: stale  # REST still shows the state before the last trade
    emulator.faults.drop_private()
    rec.wait_statuses("reconnecting", "resynced", since=since)
    assert [p.size for p in rec.of(PositionUpdate, since)] == []  # the stale 0.01 is not delivered
    emulator.position_answer = None
    since = rec.mark()
    buy(emulator)
    rec.wait(PositionUpdate, lambda p: p.size == 3 * QTY, since=since)
