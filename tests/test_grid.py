"""GridStrategy without sockets: a fake gateway records order requests, events are fed by hand."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import Decimal as D

import pytest

from gridbot._gateways import OrderRejected, ReduceOnlyRejected
from gridbot.errors import AuthenticationError, ConnectError
from gridbot.events import (
    AccountUpdate,
    FillUpdate,
    OrderUpdate,
    PositionSide,
    PositionUpdate,
    StatusUpdate,
    TickerUpdate,
    WalletUpdate,
)
from gridbot.grid import GridConfig, GridStrategy, LevelState, PnlCrossCheck, fan_out

SYMBOL = "BTCUSDT"


@dataclass
class Placed:
    symbol: str
    side: str
    qty: D
    price: D
    position_idx: int
    reduce_only: bool
    client_order_id: str
    order_id: str


@dataclass
class FakeGateway:
    placed: list[Placed] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    fail_with: list[Exception] = field(default_factory=list)
    reject_side: str = ""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def place_limit(self, symbol: str, side: str, qty: D, price: D, *, position_idx: int, reduce_only: bool,
                    client_order_id: str) -> str:
        if self.fail_with:
            raise self.fail_with.pop(0)
        if side == self.reject_side:
            raise OrderRejected("Margin is insufficient.", -2019)
        order_id = f"o{next(self._ids)}"
        self.placed.append(Placed(symbol, side, qty, price, position_idx, reduce_only, client_order_id,
                                  order_id))
        return order_id

    def place_market(self, symbol: str, side: str, qty: D, *, position_idx: int, reduce_only: bool,
                     client_order_id: str) -> str:
        raise AssertionError("the grid places limit orders only")

    def cancel(self, symbol: str, order_id: str) -> None:
        self.cancelled.append(order_id)

    def find(self, side: str, price: str) -> Placed:
        matches = [p for p in self.placed if p.side == side and p.price == D(price)]
        assert len(matches) == 1, (side, price, self.placed)
        return matches[0]


def make_grid(*, hedge: bool = False, exchange: str = "binance", levels: int = 2,
              start: str | None = None) -> tuple[GridStrategy, FakeGateway]:
    gateway = FakeGateway()
    config = GridConfig(symbol=SYMBOL, qty=D("0.01"), levels=levels, step_pct=D("1"), tick_size=D("0.01"),
                        hedge=hedge, start_price=D(start) if start else None)
    return GridStrategy(config, gateway, exchange=exchange), gateway


def ticker(mark: str) -> TickerUpdate:
    return TickerUpdate(exchange="binance", timestamp=1, symbol=SYMBOL, mark_price=D(mark),
                        last_price=D(mark), index_price=None, funding_rate=None, next_funding_time=None)


def order_event(placed: Placed, status: str, *, filled: str | None = None) -> OrderUpdate:
    filled_qty = placed.qty if status == "Filled" and filled is None else D(filled or "0")
    return OrderUpdate(
        exchange="binance", timestamp=2, symbol=placed.symbol, order_id=placed.order_id,
        client_order_id=placed.client_order_id, side=placed.side, order_type="Limit", status=status,  # type: ignore[arg-type]
        price=placed.price, qty=placed.qty, filled_qty=filled_qty,
        avg_price=placed.price if filled_qty else D(0), trigger_price=None, reduce_only=placed.reduce_only,
        position_idx=placed.position_idx, is_take_profit=False,
    )


def fill_event(placed: Placed, *, pnl: str = "0", fee: str = "0", idx: int | None = None) -> FillUpdate:
    return FillUpdate(
        exchange="binance", timestamp=3, symbol=SYMBOL, order_id=placed.order_id,
        trade_id="t" + placed.order_id, side="Buy" if placed.side == "Buy" else "Sell",
        price=placed.price, qty=placed.qty, fee=D(fee),
        fee_asset="USDT", realised_pnl=D(pnl), is_maker=True,
        position_idx=placed.position_idx if idx is None else idx,
    )


def position(cum: str | None, *, size: str = "0", side: PositionSide = "", idx: int = 0) -> PositionUpdate:
    return PositionUpdate(exchange="binance", timestamp=4, symbol=SYMBOL, position_idx=idx, side=side,
                          size=D(size), entry_price=D("100"), mark_price=None, unrealised_pnl=D(0),
                          cum_realised_pnl=None if cum is None else D(cum))


def status(state: str) -> StatusUpdate:
    return StatusUpdate(exchange="binance", timestamp=5, state=state, detail="test")  # type: ignore[arg-type]


def fill_entry(grid: GridStrategy, entry: Placed) -> None:
    grid.on_order(order_event(entry, "New"))
    grid.on_fill(fill_event(entry))
    grid.on_order(order_event(entry, "Filled"))


def fill_to_take_profit(grid: GridStrategy, gateway: FakeGateway, entry: Placed) -> Placed:
    """Fill ``entry``; returns the order placed next: the level's take-profit."""
    fill_entry(grid, entry)
    return gateway.placed[-1]


def one_level_grid(*, hedge: bool = False,
                   exchange: str = "binance") -> tuple[GridStrategy, FakeGateway, Placed]:
    """A one-level grid started at 100.00, its gateway and its buy entry at 99.00."""
    grid, gateway = make_grid(levels=1, hedge=hedge, exchange=exchange)
    grid.on_ticker(ticker("100.00"))
    return grid, gateway, gateway.find("Buy", "99.00")


# ------------------------------------------------------------------------------------------ levels


def test_no_orders_before_a_start_price_is_known() -> None:
    grid, gateway = make_grid()
    grid.on_status(status("connected"))
    assert gateway.placed == []
    assert grid.levels == []


def test_first_mark_price_places_buy_levels_below_and_sell_levels_above_one_way() -> None:
    grid, gateway = make_grid()
    grid.on_ticker(ticker("100.00"))
    got = sorted((p.side, p.price, p.position_idx, p.reduce_only, p.qty) for p in gateway.placed)
    assert got == [
        ("Buy", D("98.00"), 0, False, D("0.01")),
        ("Buy", D("99.00"), 0, False, D("0.01")),
        ("Sell", D("101.00"), 0, False, D("0.01")),
        ("Sell", D("102.00"), 0, False, D("0.01")),
    ]
    assert len({p.client_order_id for p in gateway.placed}) == 4
    assert all(s is LevelState.ENTRY_OPEN for s in (lv.state for lv in grid.levels))
    grid.on_ticker(ticker("100.50"))  # later ticks re-place nothing
    assert len(gateway.placed) == 4


def test_hedge_mode_uses_the_long_slot_for_buys_and_the_short_slot_for_sells() -> None:
    grid, gateway = make_grid(hedge=True)
    grid.on_ticker(ticker("100.00"))
    assert {(p.side, p.position_idx) for p in gateway.placed} == {("Buy", 1), ("Sell", 2)}
    assert len(gateway.placed) == 4


def test_level_prices_are_rounded_away_from_the_start_to_the_tick() -> None:
    grid, gateway = make_grid(levels=1, start="100.333")
    grid.on_ticker(ticker("100.333"))
    assert gateway.find("Buy", "99.32").position_idx == 0   # 99.32967 rounded down
    assert gateway.find("Sell", "101.34").position_idx == 0  # 101.33633 rounded up


def test_client_order_ids_are_accepted_by_both_exchanges() -> None:
    grid, gateway = make_grid(levels=3)
    grid.on_ticker(ticker("100.00"))
    for placed in gateway.placed:
        assert 1 <= len(placed.client_order_id) <= 36
        assert all(c.isalnum() or c in "-_" for c in placed.client_order_id)


# ------------------------------------------------------------------------------------ take-profits


@pytest.mark.parametrize(
    ("hedge", "entry_side", "entry_price", "tp_side", "tp_price", "idx"),
    [
        (False, "Buy", "99.00", "Sell", "99.99", 0),
        (False, "Sell", "101.00", "Buy", "99.99", 0),
        (True, "Buy", "99.00", "Sell", "99.99", 1),
        (True, "Sell", "101.00", "Buy", "99.99", 2),
    ],
)
def test_a_filled_level_gets_a_reduce_only_take_profit_one_step_back(
    hedge: bool, entry_side: str, entry_price: str, tp_side: str, tp_price: str, idx: int,
) -> None:
    grid, gateway = make_grid(hedge=hedge)
    grid.on_ticker(ticker("100.00"))
    entry = gateway.find(entry_side, entry_price)
    before = len(gateway.placed)
    fill_entry(grid, entry)
    assert len(gateway.placed) == before + 1
    tp = gateway.placed[-1]
    got = (tp.side, tp.price, tp.qty, tp.position_idx, tp.reduce_only)
    assert got == (tp_side, D(tp_price), D("0.01"), idx, True)
    level = next(lv for lv in grid.levels if lv.price == D(entry_price))
    assert level.state is LevelState.TP_OPEN
    assert level.order_id == tp.order_id


def test_take_profit_ids_come_from_the_tracker_and_a_close_rearms_the_level() -> None:
    grid, gateway, entry = one_level_grid()
    tp = fill_to_take_profit(grid, gateway, entry)
    grid.on_order(order_event(tp, "New"))
    assert grid.open_tp_ids() == [tp.order_id]

    grid.on_fill(fill_event(tp, pnl="0.0099", fee="0.0002"))
    grid.on_order(order_event(tp, "Filled"))

    assert grid.open_tp_ids() == []
    assert len(grid.closes) == 1
    close = grid.closes[0]
    assert (close.level, close.side, close.qty, close.entry_price, close.exit_price) == (
        -1, "Sell", D("0.01"), D("99.00"), D("99.99"))
    assert (close.fill_pnl, close.fees) == (D("0.0099"), D("0.0002"))
    rearmed = gateway.placed[-1]
    assert (rearmed.side, rearmed.price, rearmed.reduce_only) == ("Buy", D("99.00"), False)
    assert rearmed.client_order_id not in (entry.client_order_id, tp.client_order_id)


def test_a_long_running_grid_keeps_bounded_memory_of_its_orders_and_closes() -> None:
    from gridbot.grid import _strategy

    grid, gateway = make_grid(levels=1)
    grid.on_ticker(ticker("100.00"))
    rounds = _strategy._HISTORY + 50
    for _ in range(rounds):  # entry filled -> TP filled -> the level re-arms with a new entry
        entry = gateway.placed[-1]
        tp = fill_to_take_profit(grid, gateway, entry)
        grid.on_fill(fill_event(tp, pnl="0.0099", fee="0.0002"))
        grid.on_order(order_event(tp, "Filled"))
    assert grid.close_count == rounds
    assert len(grid.closes) == _strategy._HISTORY  # the latest closes only
    assert grid.view().closes == rounds
    # only the orders still open are remembered by client id: one resting entry per level
    assert len(grid.levels) == 2
    assert set(grid._by_client_id) == {gateway.placed[0].client_order_id, gateway.placed[-1].client_order_id}
    assert grid._tp_fills == {}


def test_a_partially_filled_entry_that_is_cancelled_protects_what_filled() -> None:
    grid, gateway, entry = one_level_grid()
    grid.on_order(order_event(entry, "Cancelled", filled="0.004"))
    tp = gateway.placed[-1]
    assert (tp.side, tp.qty, tp.reduce_only) == ("Sell", D("0.004"), True)


def test_a_take_profit_ended_by_the_exchange_rearms_the_level() -> None:
    grid, gateway, entry = one_level_grid()
    tp = fill_to_take_profit(grid, gateway, entry)
    grid.on_order(order_event(tp, "New"))
    grid.on_order(order_event(tp, "Cancelled"))  # e.g. one-way netting made the slot flat
    assert list(grid.closes) == [] and grid.close_count == 0
    assert grid.open_tp_ids() == []
    assert (gateway.placed[-1].side, gateway.placed[-1].price) == ("Buy", D("99.00"))


def test_events_of_an_older_order_of_the_level_are_ignored() -> None:
    grid, gateway, entry = one_level_grid()
    tp = fill_to_take_profit(grid, gateway, entry)
    grid.on_order(order_event(tp, "Filled"))
    placed = len(gateway.placed)
    grid.on_order(order_event(entry, "Filled"))  # a replay (e.g. after a resync) of the first entry
    assert len(gateway.placed) == placed


def test_cancel_entries_cancels_resting_entries_only() -> None:
    grid, gateway = make_grid(levels=1)
    grid.on_ticker(ticker("100.00"))
    buy, sell = gateway.find("Buy", "99.00"), gateway.find("Sell", "101.00")
    tp = fill_to_take_profit(grid, gateway, buy)
    grid.stop_placing()
    assert grid.cancel_entries() == 1
    assert gateway.cancelled == [sell.order_id]
    assert tp.order_id not in gateway.cancelled
    grid.on_order(order_event(sell, "Cancelled"))
    grid.on_ticker(ticker("100.10"))
    assert gateway.placed[-1] is tp  # nothing placed after stop_placing()


# ------------------------------------------------------------------------------------------- pause


def test_reconnecting_pauses_placing_and_the_resync_catches_up() -> None:
    grid, gateway, entry = one_level_grid()
    placed = len(gateway.placed)

    grid.on_status(status("reconnecting"))
    assert grid.paused
    fill_entry(grid, entry)            # e.g. the final state fetched for a vanished order
    grid.on_ticker(ticker("99.50"))
    assert len(gateway.placed) == placed

    grid.on_status(status("resynced"))
    assert not grid.paused
    tp = gateway.placed[-1]
    assert (tp.side, tp.price, tp.reduce_only) == ("Sell", D("99.99"), True)
    assert len(gateway.placed) == placed + 1


def test_a_levels_entry_is_not_placed_while_paused_even_after_a_close() -> None:
    grid, gateway = make_grid(levels=1)
    grid.on_ticker(ticker("100.00"))
    fill_entry(grid, gateway.find("Buy", "99.00"))
    tp = gateway.placed[-1]
    grid.on_status(status("reconnecting"))
    grid.on_order(order_event(tp, "Filled"))
    assert gateway.placed[-1] is tp
    grid.on_status(status("connected"))  # a public-only outage ends with "connected"
    assert (gateway.placed[-1].side, gateway.placed[-1].price) == ("Buy", D("99.00"))


def test_a_failed_stream_stops_placing() -> None:
    grid, gateway = make_grid(levels=1)
    grid.on_status(status("failed"))
    grid.on_ticker(ticker("100.00"))
    assert gateway.placed == []


def test_fan_out_forwards_status_to_every_grid() -> None:
    first, _ = make_grid()
    second, _ = make_grid()
    fan_out(first.on_status, second.on_status)(status("reconnecting"))
    assert first.paused and second.paused


# ---------------------------------------------------------------------------------------- failures


def test_a_rejected_entry_is_retried_then_the_level_is_disabled() -> None:
    grid, gateway = make_grid(levels=1)
    gateway.reject_side = "Buy"
    for _ in range(3):
        grid.on_ticker(ticker("100.00"))
    states = {lv.index: lv.state for lv in grid.levels}
    assert states == {-1: LevelState.DISABLED, 1: LevelState.ENTRY_OPEN}
    assert grid.order_errors == 3
    gateway.reject_side = ""
    grid.on_ticker(ticker("100.00"))
    assert [p.side for p in gateway.placed] == ["Sell"]


def test_a_take_profit_netted_away_in_one_way_mode_rearms_the_level_without_an_error() -> None:
    grid, gateway, entry = one_level_grid()
    gateway.fail_with = [ReduceOnlyRejected("ReduceOnly Order is rejected.", -2022)]
    fill_entry(grid, entry)
    level = next(lv for lv in grid.levels if lv.index == -1)
    assert level.state is LevelState.IDLE
    assert (grid.netted, grid.order_errors, level.failures) == (1, 0, 0)
    grid.on_ticker(ticker("99.50"))
    assert next(lv for lv in grid.levels if lv.index == -1).state is LevelState.ENTRY_OPEN
    rearmed = gateway.placed[-1]
    assert (rearmed.side, rearmed.price) == ("Buy", D("99.00"))
    assert rearmed.client_order_id != entry.client_order_id


@pytest.mark.parametrize(("hedge", "error"), [
    (True, ReduceOnlyRejected("Reduce-only rule not satisfied", 110017)),
    (False, OrderRejected("Margin is insufficient.", -2019)),
])
def test_other_take_profit_rejections_are_errors_and_rearm_the_level(hedge: bool, error: Exception) -> None:
    grid, gateway, entry = one_level_grid(hedge=hedge)
    gateway.fail_with = [error]
    fill_entry(grid, entry)
    level = next(lv for lv in grid.levels if lv.index == -1)
    assert level.state is LevelState.IDLE
    assert (grid.netted, grid.order_errors, grid.view().order_errors) == (0, 1, 1)


def test_a_connection_error_on_a_take_profit_retries_it_at_the_next_tick() -> None:
    grid, gateway, entry = one_level_grid()
    gateway.fail_with = [ConnectError("timeout")]
    fill_entry(grid, entry)
    assert next(lv for lv in grid.levels if lv.index == -1).state is LevelState.FILLED
    grid.on_ticker(ticker("99.20"))
    assert (gateway.placed[-1].side, gateway.placed[-1].reduce_only) == ("Sell", True)


def test_rejected_keys_stop_placing() -> None:
    grid, gateway = make_grid(levels=2)
    gateway.fail_with = [AuthenticationError("bad key")]
    grid.on_ticker(ticker("100.00"))
    grid.on_ticker(ticker("100.00"))
    assert gateway.placed == []
    assert grid.view().placing is False


# ------------------------------------------------------------------------------- realised PnL check


def test_realised_pnl_comes_from_cumulative_deltas_and_matches_fills_binance() -> None:
    grid, gateway, entry = one_level_grid(exchange="binance")
    fill_entry(grid, entry)                       # before any baseline: not counted
    grid.on_position(position("0", size="0.01", side="Buy"))   # the baseline
    tp = gateway.placed[-1]
    grid.on_order(order_event(tp, "New"))
    grid.on_fill(fill_event(tp, pnl="0.0099", fee="0.0002"))
    grid.on_order(order_event(tp, "Filled"))
    grid.on_position(position("0.0099", size="0", side=""))

    assert grid.realised_pnl() == D("0.0099")
    change = grid.pnl_changes[-1]
    got = (change.delta, change.fill_pnl, change.matched, change.is_close)
    assert got == (D("0.0099"), D("0.0099"), True, True)
    assert grid.cross_check.mismatches() == []
    assert grid.view().closes == 1


def test_bybit_cumulative_pnl_is_checked_net_of_fees() -> None:
    grid, gateway = make_grid(levels=1, exchange="bybit")
    grid.on_position(position("5", size="0"))  # the seed: baseline
    grid.on_ticker(ticker("100.00"))
    entry = gateway.find("Buy", "99.00")
    grid.on_order(order_event(entry, "New"))
    grid.on_fill(fill_event(entry, fee="0.0002"))
    grid.on_order(order_event(entry, "Filled"))
    grid.on_position(position("4.9998", size="0.01", side="Buy"))  # the opening fee
    tp = gateway.placed[-1]
    grid.on_fill(fill_event(tp, pnl="0.0099", fee="0.0002"))
    grid.on_order(order_event(tp, "Filled"))
    grid.on_position(position("5.0095", size="0"))

    assert grid.realised_pnl() == D("0.0095")
    assert [(c.delta, c.matched, c.is_close) for c in grid.pnl_changes] == [
        (D("-0.0002"), True, False), (D("0.0097"), True, True)]
    assert grid.cross_check.mismatches() == []


def test_a_delta_the_fills_do_not_explain_is_reported() -> None:
    grid, gateway = make_grid(levels=1, exchange="binance")
    grid.on_position(position("0", size="0.01", side="Buy"))
    grid.on_ticker(ticker("100.00"))
    entry = gateway.find("Buy", "99.00")
    grid.on_fill(fill_event(entry, pnl="1.5"))
    grid.on_position(position("2.5", size="0"))
    [mismatch] = grid.cross_check.mismatches()
    assert (mismatch.symbol, mismatch.position_idx, mismatch.from_cum_realised, mismatch.from_fills,
            mismatch.after_gap) == (SYMBOL, 0, D("2.5"), D("1.5"), False)
    assert grid.pnl_changes[-1].matched is False
    assert grid.view().mismatches == (mismatch,)


def test_a_mismatch_after_a_reconnect_is_flagged_as_such() -> None:
    grid, _ = make_grid(levels=1, exchange="binance")
    grid.on_position(position("0", size="0.01", side="Buy"))
    grid.on_status(status("reconnecting"))
    grid.on_status(status("resynced"))
    grid.on_position(position("1", size="0"))  # PnL realised while disconnected: no fill seen
    [mismatch] = grid.cross_check.mismatches()
    assert mismatch.after_gap is True
    assert grid.realised_pnl() == D("1")


def test_cross_check_does_not_depend_on_the_order_of_fills_and_positions() -> None:
    check = PnlCrossCheck(net_of_fees=False)
    grid, gateway = make_grid(levels=1)
    grid.on_ticker(ticker("100.00"))
    fill = fill_event(gateway.find("Buy", "99.00"), pnl="2")
    check.add_delta((SYMBOL, 0), D("2"))   # Binance may push ACCOUNT_UPDATE first
    assert len(check.mismatches()) == 1
    check.add_fill((SYMBOL, 0), fill)
    assert check.mismatches() == []


def test_fills_are_attributed_to_the_slot_of_their_order() -> None:
    grid, gateway = make_grid(levels=1, hedge=True, exchange="bybit")
    grid.on_position(position("0", idx=1))
    grid.on_position(position("0", idx=2))
    grid.on_ticker(ticker("100.00"))
    entry = gateway.find("Buy", "99.00")
    grid.on_order(order_event(entry, "New"))
    grid.on_fill(fill_event(entry, fee="0.1", idx=0))  # Bybit: 0 when the stream had not seen the order
    grid.on_position(position("-0.1", size="0.01", side="Buy", idx=1))
    assert grid.cross_check.mismatches() == []


def test_view_reports_wallet_positions_and_marks() -> None:
    grid, _ = make_grid(levels=1)
    grid.on_ticker(ticker("100.00"))
    grid.on_wallet(WalletUpdate(exchange="bybit", timestamp=1, coin="USDT", wallet_balance=D("10000"),
                                available_balance=None, equity=D("10001")))
    grid.on_account(AccountUpdate(exchange="bybit", timestamp=1, margin_coin="USD", wallet_balance=D("10000"),
                                  unrealised_pnl=D("1"), margin_balance=D("10001"), initial_margin=D("1000"),
                                  maintenance_margin=D("20"), available_balance=D("9000"), mm_rate=D("0.002"),
                                  computed=False))
    grid.on_position(position("0", size="0.01", side="Buy"))
    view = grid.view()
    assert (view.symbol, view.mark_price, view.wallet_balance, view.available_balance, view.mm_rate) == (
        SYMBOL, D("100.00"), D("10000"), D("9000"), D("0.002"))
    assert [p.size for p in view.positions] == [D("0.01")]
    assert view.levels == ((-1, "entry"), (1, "entry"))


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        GridConfig(symbol=SYMBOL, qty=D("0"))
    with pytest.raises(ValueError):
        GridConfig(symbol=SYMBOL, qty=D("1"), levels=0)
    with pytest.raises(ValueError):
        GridConfig(symbol=SYMBOL, qty=D("1"), levels=10, step_pct=D("10"))
    assert GridConfig(symbol="btcusdt", qty=D("1")).symbol == SYMBOL


def test_a_known_baseline_counts_pnl_realised_before_a_slots_first_update() -> None:
    # Binance: REST has no cr, so a short slot first seen after a disconnect arrives with PnL in it.
    unknown, _ = make_grid(hedge=True)
    fresh, _ = make_grid(hedge=True)
    fresh = GridStrategy(fresh.config, FakeGateway(), exchange="binance", realised_baseline=D(0))
    for grid in (unknown, fresh):
        grid.on_position(position("0.6", size="0", idx=2))
    assert unknown.realised_pnl() == D(0)
    assert fresh.realised_pnl() == D("0.6")
    assert fresh.last_cum_realised(1) == D(0)
