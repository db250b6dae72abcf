"""ExchangeStream(journal=...): what is journaled, and a restart handled as a long disconnect.

The exchange is the scripted FakeAdapter of the stream tests; the journal is a real SQLite file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import gridbot
from gridbot.errors import GridbotError
from gridbot.journal import Journal
from tests.stream.conftest import fake as fake
from tests.stream.fakes import (
    FakeAdapter,
    Recorder,
    fill,
    make_stream,
    no_gridbot_threads,
    order,
    position,
    wait_until,
    wallet,
)

D = Decimal


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "bybit.sqlite")


def run(fake: list[FakeAdapter], journal: Any, snapshot: list[Any], *, fills: list[Any] = (),  # type: ignore[assignment]
        pushes: list[Any] = ()) -> tuple[Recorder, FakeAdapter, gridbot.ExchangeStream]:  # type: ignore[assignment]
    stream, adapter, rec = make_stream(fake, journal=journal)
    adapter.snapshot = list(snapshot)
    adapter.fills = list(fills)
    stream.subscribe("BTCUSDT", **rec.callbacks())
    stream.start(timeout=5)
    if pushes:
        adapter.push(*pushes)
    return rec, adapter, stream


@pytest.fixture
def T() -> int:
    """Exchange times of this test's fills: after its streams went live."""
    return time.time_ns() // 1_000_000 + 2_000


@pytest.fixture
def first_run(fake: list[FakeAdapter], path: str, T: int) -> Iterator[Recorder]:
    """A previous run: a long position with cum PnL 5, an open TP, a wallet, two fills."""
    rec, _adapter, stream = run(
        fake, path, [position("1", ts=10, cum="5", snap=True), order("tp", ts=10, snap=True), wallet("100")],
        pushes=[fill("t1", ts=T + 20), fill("t2", ts=T + 30), position("2", ts=T + 30, cum="5")])
    wait_until(lambda: len(rec.of(gridbot.FillUpdate)) == 2)
    stream.stop()
    yield rec


def test_delivered_events_are_journaled_and_the_owned_journal_closed(first_run: Recorder, path: str) -> None:
    with Journal(path) as journal:  # stop() released the writer lock
        assert [f.trade_id for f in journal.fills()] == ["t1", "t2"]
        assert [(p.size, p.cum_realised_pnl) for p in journal.positions()] == [(D("2"), D("5"))]
        assert [o.order_id for o in journal.orders(open_only=True)] == ["tp"]
        assert [w.wallet_balance for w in journal.wallets()] == [D("100")]
        assert journal.realised_pnl() == 0


def test_a_restart_restores_then_resyncs_like_a_long_disconnect(
    fake: list[FakeAdapter], path: str, first_run: Recorder, T: int
) -> None:
    pnl = gridbot.RealisedPnlTracker()
    tps = gridbot.TakeProfitTracker()
    made_while_down = fill("t3", ts=T + 40)
    rec, adapter, stream = run(
        fake, path, [position("0", ts=T + 40, cum="7.5", snap=True), wallet("102.5")],  # the TP filled
        fills=[fill("t2", ts=T + 30), made_while_down])
    adapter.final_orders = []
    try:
        wait_until(lambda: made_while_down in rec.of(gridbot.FillUpdate))
        restored = [e for e in rec.events if e.restored]
        assert [type(e).__name__ for e in restored] == ["PositionUpdate", "OrderUpdate", "WalletUpdate"]
        assert rec.events[:3] == restored  # the journal's state first, then the fresh snapshot
        for event in rec.events:
            if isinstance(event, gridbot.PositionUpdate):
                pnl.update(event)
            elif isinstance(event, gridbot.OrderUpdate):
                tps.update(event)
        assert pnl.grand_total() == D("2.5")  # realised while the process was down: one delta
        # the vanished-order path for the journaled TP, then the backfill looks up the order of the
        # fill made while down (placed and filled inside the gap, never seen by the stream)
        assert adapter.fetch_orders_calls == [["tp"], ["o1"]]
        assert [f.trade_id for f in rec.of(gridbot.FillUpdate)] == ["t3"]  # t2 was journaled: not again
        symbol, since, _ = adapter.fill_calls[0]
        assert symbol == "BTCUSDT" and since <= T + 30
        assert stream.stats.backfilled_fills == 1
    finally:
        stream.stop()
    with Journal(path, readonly=True) as journal:
        assert [f.trade_id for f in journal.fills()] == ["t1", "t2", "t3"]
        assert journal.realised_pnl() == D("2.5")


def test_a_journal_object_is_shared_and_left_open(fake: list[FakeAdapter], path: str) -> None:
    with Journal(path) as journal:
        _rec, _, stream = run(fake, journal, [position("1", ts=10, cum="1", snap=True)])
        other, *_ = make_stream(fake, journal=journal)
        other.subscribe("BTCUSDT")
        with pytest.raises(GridbotError, match="already used by a running bybit stream"):
            other.start(timeout=5)
        stream.stop()
        assert journal.flush()
        assert [p.cum_realised_pnl for p in journal.positions()] == [D("1")]  # still open after stop()
    assert no_gridbot_threads()


def test_a_journal_locked_by_another_writer_fails_start_cleanly(fake: list[FakeAdapter], path: str) -> None:
    with Journal(path):
        stream, *_ = make_stream(fake, journal=path)
        stream.subscribe("BTCUSDT")
        with pytest.raises(GridbotError, match="one writer per file"):
            stream.start(timeout=5)
    wait_until(no_gridbot_threads)


def test_a_journal_must_be_a_journal_or_a_path(fake: list[FakeAdapter]) -> None:
    with pytest.raises(TypeError, match="journal must be"):
        make_stream(fake, journal=42)


def test_streams_of_two_exchanges_share_one_journal(fake: list[FakeAdapter], path: str) -> None:
    with Journal(path) as journal:
        bybit, *_ = make_stream(fake, journal=journal)
        binance = gridbot.ExchangeStream("binance", api_key="k", api_secret="s", journal=journal)
        for stream in (bybit, binance):
            stream.subscribe("BTCUSDT")
            stream.start(timeout=5)
        fake[-1].push(fill("only-binance"))
        wait_until(lambda: journal.flush() and len(journal.fills()) == 1)
        bybit.stop()
        binance.stop()
    assert no_gridbot_threads()
