"""The pipeline's rules, pure: dedupe, "never backwards" per identity, reconciliation, fill memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

from gridbot._pipeline import Pipeline
from gridbot._versions import VersionBook
from gridbot.events import AccountUpdate, OrderUpdate, PositionUpdate, WalletUpdate
from tests.stream.fakes import fill, order, position, wallet

D = Decimal


def sizes(events: Sequence[object]) -> list[Decimal]:
    return [e.size for e in events if isinstance(e, PositionUpdate)]


class TestNeverBackwards:
    def test_a_lagging_snapshot_row_is_not_delivered_after_a_newer_push(self) -> None:
        pipe = Pipeline()
        assert pipe.accept(position("2", ts=200))
        reconciled = pipe.reconcile([position("1", ts=150, snap=True)], ["BTCUSDT"])
        assert reconciled.events == []
        # and the push after it still flows
        assert pipe.accept(position("3", ts=210))

    def test_a_newer_snapshot_row_is_delivered_and_older_pushes_after_it_are_dropped(self) -> None:
        pipe = Pipeline()
        assert pipe.accept(position("1", ts=100))
        reconciled = pipe.reconcile([position("5", ts=300, snap=True)], ["BTCUSDT"])
        assert sizes(reconciled.events) == [D("5")]
        assert not pipe.accept(position("4", ts=250))  # queued during the fetch, older than the row
        assert pipe.accept(position("6", ts=301))

    def test_a_snapshot_row_equal_to_what_was_delivered_is_not_repeated(self) -> None:
        pipe = Pipeline()
        assert pipe.accept(position("2", ts=200))
        assert pipe.reconcile([position("2", ts=200, snap=True)], ["BTCUSDT"]).events == []

    def test_bybit_older_seq_is_dropped_even_with_a_later_time(self) -> None:
        pipe = Pipeline()
        assert pipe.accept(position("1", seq=7, ts=100))
        assert not pipe.accept(position("2", seq=6, ts=500))

    def test_bybit_newer_seq_wins_even_with_an_earlier_time(self) -> None:
        pipe = Pipeline()
        assert pipe.accept(position("1", seq=7, ts=100))
        assert pipe.accept(position("2", seq=8, ts=90))

    def test_bybit_equal_seq_is_dropped_only_when_the_content_is_equal(self) -> None:
        pipe = Pipeline()
        assert pipe.accept(position("1", seq=7, ts=100))
        assert not pipe.accept(position("1", seq=7, ts=100))           # a duplicate
        assert not pipe.accept(position("1", seq=7, ts=120))           # a leverage change: same content
        assert pipe.accept(position("1", seq=7, ts=130, entry="101"))  # a real change without a trade

    def test_bybit_seq_minus_one_never_traded_is_not_a_version(self) -> None:
        pipe = Pipeline()
        assert pipe.accept(position("0", seq=-1, ts=100))
        assert pipe.accept(position("0", seq=-1, ts=110, entry="1"))  # settings change of an untraded slot
        assert pipe.accept(position("1", seq=5, ts=120))
        assert not pipe.accept(position("0", seq=-1, ts=90))  # still judged by time

    def test_snapshot_with_older_seq_is_not_delivered(self) -> None:
        pipe = Pipeline()
        assert pipe.accept(position("3", seq=9, ts=100))
        assert pipe.reconcile([position("2", seq=8, ts=400, snap=True)], ["BTCUSDT"]).events == []

    def test_an_order_never_goes_back(self) -> None:
        pipe = Pipeline()
        partially = replace(order("7", "PartiallyFilled", ts=200), filled_qty=D("0.5"))
        assert pipe.accept(partially)
        lagging = replace(order("7", "New", ts=200, snap=True), filled_qty=D("0"))
        assert pipe.reconcile([lagging], ["BTCUSDT"]).events == []
        assert pipe.accept(order("7", "Filled", ts=210))
        assert not pipe.accept(order("7", "PartiallyFilled", ts=220))  # nothing after a terminal status
        assert not pipe.accept(order("7", "Filled", ts=210))          # nor the same end twice

    def test_wallet_rows_are_judged_per_coin(self) -> None:
        pipe = Pipeline()
        assert pipe.accept(wallet("100", ts=200))
        assert not pipe.accept(wallet("90", ts=150))
        other = replace(wallet("5", ts=10), coin="BTC")
        assert pipe.accept(other)

    def test_unknown_time_is_not_taken_as_old(self) -> None:
        pipe = Pipeline()
        assert pipe.accept(position("1", ts=100))
        assert pipe.reconcile([position("2", ts=0, snap=True)], ["BTCUSDT"]).events != []


class TestPerSymbolSeeds:
    def test_seeding_one_symbol_leaves_the_others_bookkeeping_alone(self) -> None:
        pipe = Pipeline()
        pipe.reconcile([position("1", ts=300, snap=True), position("2", ts=300, snap=True, symbol="ETHUSDT")],
                       ["BTCUSDT", "ETHUSDT"])
        pipe.reconcile([position("1", ts=100, snap=True, symbol="SOLUSDT")], ["SOLUSDT"])
        # an ETH push older than ETH's snapshot is still stale after the SOL seed
        assert not pipe.accept(position("9", ts=250, symbol="ETHUSDT"))

    def test_a_slot_missing_from_the_snapshot_goes_flat_only_for_the_seeded_symbols(self) -> None:
        pipe = Pipeline()
        assert pipe.accept(position("1", ts=100))
        assert pipe.accept(position("2", ts=100, symbol="ETHUSDT"))
        reconciled = pipe.reconcile([], ["BTCUSDT"])
        [flat] = reconciled.events
        assert isinstance(flat, PositionUpdate)
        assert (flat.symbol, flat.size, flat.timestamp) == ("BTCUSDT", D("0"), 101)
        assert not pipe.accept(position("1", ts=100))  # the push the flat superseded

    def test_vanished_orders_are_only_those_of_the_seeded_symbols(self) -> None:
        pipe = Pipeline()
        assert pipe.accept(order("1"))
        assert pipe.accept(order("2", symbol="ETHUSDT"))
        assert [o.order_id for o in pipe.reconcile([], ["BTCUSDT"]).vanished_orders] == ["1"]

    def test_forgotten_symbol_is_seeded_in_full_again(self) -> None:
        pipe = Pipeline()
        assert pipe.accept(position("1", ts=100))
        pipe.forget_symbol("BTCUSDT")
        assert sizes(pipe.reconcile([position("1", ts=100, snap=True)], ["BTCUSDT"]).events) == [D("1")]


class TestFills:
    def test_a_fill_is_delivered_once_by_trade_id(self) -> None:
        pipe = Pipeline()
        assert pipe.accept(fill("t1", ts=5))
        assert not pipe.accept(fill("t1", ts=5))
        assert pipe.delivered_fill(fill("t1"))
        assert pipe.accept(fill("t1", symbol="ETHUSDT"))  # ids are per symbol
        assert pipe.last_fill_time("BTCUSDT") == 5


def test_version_book_keeps_finished_orders_bounded() -> None:
    book = VersionBook(finished_capacity=2)
    for oid in ("a", "b", "c"):
        book.record(order(oid, "Filled"))
    assert not book.is_finished(("order", "BTCUSDT", "a"))
    assert book.is_finished(("order", "BTCUSDT", "c"))
    assert book.judge(order("c", "New")) == "stale"
    assert book.judge(order("a", "New")) == "fresh"  # forgotten: the bound keeps memory flat


def test_wallet_equal_time_different_content_is_fresh() -> None:
    book = VersionBook()
    book.record(wallet("100", ts=10))
    assert book.judge(wallet("101", ts=10)) == "fresh"
    assert book.judge(wallet("100", ts=10)) == "duplicate"
    assert isinstance(wallet("1"), WalletUpdate) and isinstance(order("x"), OrderUpdate)


def test_the_account_view_never_goes_back() -> None:
    def account(mm_rate: str, ts: int) -> AccountUpdate:
        return AccountUpdate(exchange="bybit", timestamp=ts, margin_coin="USD", wallet_balance=D("100"),
                             unrealised_pnl=None, margin_balance=None, initial_margin=None,
                             maintenance_margin=None, available_balance=None, mm_rate=D(mm_rate),
                             computed=False)

    pipe = Pipeline()
    assert pipe.accept(account("0.1", 200))
    assert pipe.reconcile([replace(account("0.05", 150), is_snapshot=True)], ["BTCUSDT"]).events == []
    assert pipe.accept(account("0.2", 210))
