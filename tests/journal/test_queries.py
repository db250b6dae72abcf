"""Journal queries on a real SQLite file: each fill once, latest states, exact Decimals, PnL semantics."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

import gridbot
from gridbot.journal import Journal
from tests.journal.events import fill, order, position, wallet

D = Decimal


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "account.sqlite")


@pytest.fixture
def journal(path: str) -> Iterator[Journal]:
    with Journal(path) as j:
        yield j


def write(journal: Journal, *events: object) -> None:
    for event in events:
        journal.record(event)
    assert journal.flush(10.0)


def sql(path: str, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(query).fetchall()


def test_public_and_created_on_disk(path: str) -> None:
    assert gridbot.Journal is Journal
    with Journal(path):
        assert Path(path).exists()
        assert sql(path, "PRAGMA journal_mode") == [("wal",)]


def test_fills_are_kept_once_in_exchange_order(journal: Journal, path: str) -> None:
    late, early = fill("t3", timestamp=3_000), fill("t1", timestamp=1_000)
    same_ms = fill("t2", timestamp=3_000)
    write(journal, late, early, late, same_ms, early)
    assert journal.fills() == [early, late, same_ms]  # by time, then arrival
    assert sql(path, "SELECT COUNT(*) FROM fills") == [(3,)]


def test_fill_ids_are_unique_per_symbol_and_exchange(journal: Journal) -> None:
    # Binance numbers trades per symbol: the same id on another symbol or exchange is another fill.
    fills = [fill("7"), fill("7", symbol="ETHUSDT"), fill("7", exchange="binance")]
    write(journal, *fills, *fills)
    assert len(journal.fills()) == 3
    assert journal.fills("ethusdt") == [fills[1]]
    assert journal.fills(exchange="binance") == [fills[2]]


def test_fills_since_is_inclusive(journal: Journal) -> None:
    write(journal, fill("a", timestamp=10), fill("b", timestamp=20), fill("c", timestamp=30))
    assert [f.trade_id for f in journal.fills(since_ms=20)] == ["b", "c"]


def test_decimals_are_stored_as_exact_text(journal: Journal, path: str) -> None:
    f = fill("x", price=D("60000.10"), fee=D("1E-8"), realised_pnl=D("-0.000000012345678901234567"))
    write(journal, f)
    assert sql(path, "SELECT price, fee, realised_pnl FROM fills") == [
        ("60000.10", "0.00000001", "-0.000000012345678901234567")]
    (back,) = journal.fills()
    assert back == f and back.realised_pnl == D("-0.000000012345678901234567")


def test_orders_keep_the_latest_state_and_open_only(journal: Journal, path: str) -> None:
    write(journal, order("1"), order("2"), order("1", "PartiallyFilled", timestamp=2_000),
          order("2", "Filled", timestamp=3_000, filled_qty=D("0.001")))
    states = {o.order_id: o.status for o in journal.orders()}
    assert states == {"1": "PartiallyFilled", "2": "Filled"}
    assert [o.order_id for o in journal.orders(open_only=True)] == ["1"]
    assert journal.orders("ETHUSDT") == []
    assert sql(path, "SELECT order_id, is_open FROM orders ORDER BY order_id") == [("1", 1), ("2", 0)]


def test_positions_keep_the_latest_state_per_slot(journal: Journal) -> None:
    first, hedge_short = position("1"), position("0", idx=2)
    closed = position("3", timestamp=2_000, size="0")
    write(journal, first, hedge_short, closed)
    assert journal.positions() == [closed, hedge_short]


def test_wallet_fields_an_update_leaves_none_keep_their_value(journal: Journal) -> None:
    write(journal, wallet("100", "90"), wallet("101", None, timestamp=2_000))
    (latest,) = journal.wallets()
    assert (latest.wallet_balance, latest.available_balance, latest.timestamp) == (D("101"), D("90"), 2_000)


def test_realised_pnl_follows_the_tracker_semantics(journal: Journal, path: str) -> None:
    tracker = gridbot.RealisedPnlTracker()
    updates = [position("5"), position(None), position("7.5"), position("7.5"), position("7.25"),
               position("0", symbol="ETHUSDT"), position("-1.125", symbol="ETHUSDT"),
               position("2", idx=1), position("3", idx=1)]
    write(journal, *updates)
    for p in updates:
        tracker.update(p)
    assert journal.realised_pnl() == tracker.grand_total() == D("2.25") - D("1.125") + D("1")
    assert journal.realised_pnl("BTCUSDT") == D("3.25")
    assert journal.realised_pnl("BTCUSDT", 0) == tracker.total("BTCUSDT", 0) == D("2.25")
    assert journal.realised_pnl("ETHUSDT", 0) == D("-1.125")
    assert journal.realised_pnl("SOLUSDT") == D("0")
    deltas = sql(path, "SELECT symbol, position_idx, delta FROM pnl_changes ORDER BY id")
    assert deltas == [("BTCUSDT", 0, "2.5"), ("BTCUSDT", 0, "-0.25"), ("ETHUSDT", 0, "-1.125"),
                      ("BTCUSDT", 1, "1")]


def test_realised_pnl_baseline_survives_reopening(path: str) -> None:
    with Journal(path) as journal:
        write(journal, position("5"), position("6"))
    with Journal(path) as journal:
        assert journal.realised_pnl() == D("1")
        write(journal, position("10"))  # the delta from the journaled baseline, not a new baseline
        assert journal.realised_pnl() == D("5")


def test_restored_events_are_not_journaled_again(journal: Journal) -> None:
    write(journal, position("5"))
    write(journal, dataclasses.replace(position("9"), restored=True))
    assert journal.realised_pnl() == D("0")


def test_restore_gives_the_stream_its_bookkeeping(journal: Journal) -> None:
    write(journal, position("5"), order("1"), order("2", "Cancelled"), wallet("100", "90"),
          fill("old", timestamp=1_000), fill("new", timestamp=9_000_000), fill("eth", symbol="ETHUSDT"),
          fill("other", exchange="binance"))
    cursors = journal.track_fills("bybit")
    cursors.publish({"BTCUSDT": (500, 9_000_000)})
    journal.record(position("6", timestamp=9_000_001))  # cursors are written with a batch
    assert journal.flush()
    restored = journal.restore("bybit")
    assert [p.cum_realised_pnl for p in restored.positions] == [D("6")]
    assert [o.order_id for o in restored.open_orders] == ["1"]
    assert [w.wallet_balance for w in restored.wallets] == [D("100")]
    assert restored.backfill_from == {"BTCUSDT": 9_000_000, "ETHUSDT": 1_000}
    assert restored.live_since == {"BTCUSDT": 500, "ETHUSDT": 1_000}
    # the dedupe memory covers an hour before each cursor: "old" (2.5 h earlier) is not needed
    assert [f.trade_id for f in restored.fills] == ["eth", "new"]


def test_the_backfill_cursor_never_runs_ahead_of_uncommitted_fills(journal: Journal) -> None:
    cursors = journal.track_fills("bybit")
    cursors.publish({"BTCUSDT": (100, 5_000)})  # the stream's bound: every older fill was accepted
    in_flight = fill("backfilled", timestamp=2_000)
    cursors.accepted(in_flight)  # accepted (a gap's fill), not delivered yet
    write(journal, fill("live", timestamp=5_000))
    assert journal.restore("bybit").backfill_from == {"BTCUSDT": 2_000}
    write(journal, in_flight)  # its own batch still journals the older cursor...
    assert journal.restore("bybit").backfill_from == {"BTCUSDT": 2_000}
    write(journal, position("1"))  # ...the next one, once it is committed, the stream's bound
    assert journal.restore("bybit").backfill_from == {"BTCUSDT": 5_000}
    assert journal.restore("bybit").live_since == {"BTCUSDT": 100}


def test_pnl_of_fills_before_a_late_first_baseline_is_counted(journal: Journal) -> None:
    """Binance's REST has no cr: when the first process died before its first cr was journaled, the
    next run's first cr already includes the PnL of fills the journal holds.  They count, once each,
    whether journaled before that first value or after it."""
    def binance_fill(trade_id: str, at: int, pnl: str) -> object:
        return fill(trade_id, timestamp=at, exchange="binance", realised_pnl=D(pnl), fee=D("0.02"))

    write(journal, binance_fill("2", 200, "1.5"), binance_fill("3", 300, "-0.5"))
    write(journal, position("40", timestamp=400, exchange="binance"))  # includes 2 and 3
    assert journal.realised_pnl() == D("1.0")
    write(journal, binance_fill("4", 350, "2"))  # Binance does not order fills and account updates
    assert journal.realised_pnl() == D("3.0")
    write(journal, binance_fill("5", 500, "9"), binance_fill("4", 350, "2"))  # later: by the next cr
    assert journal.realised_pnl() == D("3.0")
    write(journal, position("49", timestamp=500, exchange="binance"))
    assert journal.realised_pnl() == D("12.0")


def test_a_late_first_bybit_baseline_counts_fills_net_of_fees(journal: Journal) -> None:
    write(journal, fill("a", timestamp=100, realised_pnl=D("2"), fee=D("0.25")),
          fill("b", timestamp=150, realised_pnl=None, fee=D("0.25")))  # REST backfill: no execPnl
    write(journal, position("7", timestamp=200))
    assert journal.realised_pnl() == D("1.75")
