"""Tests of the emulator's matching and accounting engine, against hand-computed Decimals."""

from __future__ import annotations

import threading
from decimal import Decimal as D

import pytest

from gridbot.emulator.engine import (
    Engine,
    EngineConfig,
    EngineError,
    EngineEvent,
    FillEvent,
    OrderEvent,
    PositionEvent,
    PriceEvent,
    SymbolConfig,
    WalletEvent,
)

BTC = "BTCUSDT"
ETH = "ETHUSDT"
MAKER = D("0.0002")
TAKER = D("0.00055")


class Clock:
    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def make_engine(*, hedge: bool = False, seed: int = 1) -> tuple[Engine, list[EngineEvent], Clock]:
    config = EngineConfig(
        symbols=(SymbolConfig(BTC, D("30000")), SymbolConfig(ETH, D("2000"), tick_size=D("0.01"))),
        seed=seed, hedge_mode=hedge,
    )
    clock = Clock()
    engine = Engine(config, clock)
    events: list[EngineEvent] = []
    engine.add_listener(events.append)
    return engine, events, clock


def market(engine: Engine, side: str, qty: str, **kw: object) -> None:
    engine.place_order(symbol=BTC, side=side, order_type="Market", qty=D(qty), **kw)  # type: ignore[arg-type]


def fills(events: list[EngineEvent]) -> list[FillEvent]:
    return [e for e in events if isinstance(e, FillEvent)]


# ------------------------------------------------------------------------------------------ fills


def test_resting_limit_fills_as_maker_at_its_limit_price_when_crossed() -> None:
    engine, events, _ = make_engine()
    order = engine.place_order(symbol=BTC, side="Buy", order_type="Limit", qty=D("0.01"), price=D("29900"))
    deeper = engine.place_order(symbol=BTC, side="Buy", order_type="Limit", qty=D("0.01"), price=D("29800"))
    assert order.status == "New"
    engine.set_price(BTC, D("29900.1"))
    assert engine.order(order.order_id).status == "New"
    engine.set_price(BTC, D("29900"))  # touching the limit fills it
    filled = engine.order(order.order_id)
    assert (filled.status, filled.filled_qty, filled.avg_price) == ("Filled", D("0.01"), D("29900"))
    [fill] = fills(events)
    assert fill.fill.is_maker is True
    assert fill.fill.price == D("29900")
    assert fill.fill.fee == D("29900") * D("0.01") * MAKER == D("0.0598")
    assert engine.order(deeper.order_id).status == "New"
    engine.set_price(BTC, D("29750"))  # crossing through: filled at the limit, not the last price
    assert fills(events)[-1].fill.price == D("29800")
    assert engine.order(deeper.order_id).avg_price == D("29800")
    assert engine.open_orders() == []


def test_marketable_limit_fills_at_once_as_taker_at_its_limit_price() -> None:
    engine, events, _ = make_engine()
    order = engine.place_order(symbol=BTC, side="Buy", order_type="Limit", qty=D("0.01"), price=D("30100"))
    assert (order.status, order.avg_price) == ("Filled", D("30100"))
    [fill] = fills(events)
    assert fill.fill.is_maker is False
    assert fill.fill.fee == D("0.16555")
    assert engine.position(BTC, 0).entry_price == D("30100")


def test_post_only_that_would_take_is_rejected_not_filled() -> None:
    engine, events, _ = make_engine()
    order = engine.place_order(symbol=BTC, side="Sell", order_type="Limit", qty=D("0.01"), price=D("29000"),
                               post_only=True)
    assert (order.status, order.reason) == ("Rejected", "post_only_would_take")
    assert [(type(e), getattr(e, "exec_type", None)) for e in events] == [(OrderEvent, "Rejected")]
    assert engine.positions() == []


def test_market_order_fills_at_last_price_as_taker() -> None:
    engine, events, _ = make_engine()
    engine.set_price(BTC, D("30123.4"))
    market(engine, "Sell", "0.02")
    [fill] = fills(events)
    assert (fill.fill.price, fill.fill.qty, fill.fill.side, fill.fill.is_maker) == (
        D("30123.4"), D("0.02"), "Sell", False)
    position = engine.position(BTC, 0)
    assert (position.side, position.size, position.entry_price) == ("Sell", D("0.02"), D("30123.4"))


def test_fees_maker_versus_taker() -> None:
    engine, events, _ = make_engine()
    engine.place_order(symbol=BTC, side="Sell", order_type="Limit", qty=D("0.1"), price=D("30500"))
    market(engine, "Buy", "0.1")  # taker at 30000
    engine.set_price(BTC, D("30500"))  # maker at 30500
    taker, maker = (f.fill for f in fills(events))
    assert (taker.is_maker, taker.fee_rate, taker.fee) == (False, TAKER, D("1.65"))
    assert (maker.is_maker, maker.fee_rate, maker.fee) == (True, MAKER, D("0.61"))
    position = engine.position(BTC, 0)
    assert position.cum_fees == D("2.26")
    assert position.cum_realised_gross == D("50")
    assert position.cum_realised_net == D("47.74")
    assert engine.fees_paid() == D("2.26")


# ------------------------------------------------------------------------------------- accounting


def test_average_entry_on_increase() -> None:
    engine, _, _ = make_engine()
    market(engine, "Buy", "0.01")
    engine.set_price(BTC, D("31000"))
    market(engine, "Buy", "0.03")
    position = engine.position(BTC, 0)
    assert (position.size, position.entry_price) == (D("0.04"), D("30750"))  # (300 + 930) / 0.04
    assert position.unrealised_pnl == D("10.00")  # (31000 - 30750) * 0.04


def test_average_entry_is_rounded_to_eight_decimals_only_when_longer() -> None:
    engine, _, _ = make_engine()
    market(engine, "Buy", "0.002")
    engine.set_price(BTC, D("30000.1"))
    market(engine, "Buy", "0.001")
    assert engine.position(BTC, 0).entry_price == D("30000.03333333")  # 90000.1 / 3


def test_realised_pnl_on_partial_and_full_close_of_a_long() -> None:
    engine, events, _ = make_engine()
    market(engine, "Buy", "0.01")
    engine.set_price(BTC, D("31000"))
    market(engine, "Buy", "0.03")  # entry 30750
    engine.set_price(BTC, D("31750"))
    market(engine, "Sell", "0.01")
    assert fills(events)[-1].fill.realised_pnl == D("10")
    position = engine.position(BTC, 0)
    assert (position.size, position.entry_price) == (D("0.03"), D("30750"))
    assert position.cum_realised_gross == D("10")
    engine.set_price(BTC, D("30250"))
    market(engine, "Sell", "0.03")
    assert fills(events)[-1].fill.realised_pnl == D("-15")
    position = engine.position(BTC, 0)
    assert (position.side, position.size, position.entry_price) == ("", D("0"), D("0"))
    assert position.cum_realised_gross == D("-5")
    assert position.unrealised_pnl == 0


def test_realised_pnl_on_partial_and_full_close_of_a_short() -> None:
    engine, events, _ = make_engine()
    market(engine, "Sell", "0.02")
    engine.set_price(BTC, D("29000"))
    market(engine, "Buy", "0.01")
    assert fills(events)[-1].fill.realised_pnl == D("10")
    assert engine.position(BTC, 0).unrealised_pnl == D("10")  # (entry - mark) * 0.01
    engine.set_price(BTC, D("30500"))
    market(engine, "Buy", "0.01")
    assert fills(events)[-1].fill.realised_pnl == D("-5")
    position = engine.position(BTC, 0)
    assert (position.side, position.size, position.cum_realised_gross) == ("", D("0"), D("5"))
    assert engine.realised_gross(BTC) == D("5")


def test_one_way_order_flips_long_to_short() -> None:
    engine, events, _ = make_engine()
    market(engine, "Buy", "0.01")
    engine.set_price(BTC, D("30200"))
    market(engine, "Sell", "0.03")
    fill = fills(events)[-1].fill
    assert (fill.qty, fill.realised_pnl, fill.fee) == (D("0.03"), D("2"), D("30200") * D("0.03") * TAKER)
    position = engine.position(BTC, 0)
    assert (position.side, position.size, position.entry_price) == ("Sell", D("0.02"), D("30200"))
    assert position.cum_realised_gross == D("2")


def test_wallet_balance_equity_available_and_mm_rate() -> None:
    engine, _, _ = make_engine()
    market(engine, "Buy", "0.1")  # fee 30000 * 0.1 * 0.00055 = 1.65
    wallet = engine.wallet()
    assert (wallet.wallet_balance, wallet.equity, wallet.unrealised_pnl) == (D("9998.35"), D("9998.35"), D(0))
    engine.set_price(BTC, D("31000"))
    engine.place_order(symbol=BTC, side="Buy", order_type="Limit", qty=D("0.1"), price=D("29000"))
    wallet = engine.wallet()
    assert wallet.wallet_balance == D("9998.35")
    assert wallet.unrealised_pnl == D("100")
    assert wallet.equity == D("10098.35")
    assert wallet.initial_margin == D("310")  # 3100 notional / 10
    assert wallet.order_margin == D("290")  # 0.1 * 29000 / 10
    assert wallet.available_balance == D("9498.35")
    assert wallet.maintenance_margin == D("12.4")  # 3100 * 0.004 - 0 (first default bracket)
    assert wallet.mm_rate == (D("12.4") / D("10098.35")).quantize(D("1E-8")) == D("0.00122792")
    assert wallet.coin == "USDT"


def test_mm_rate_is_zero_with_nothing_open() -> None:
    engine, _, _ = make_engine()
    assert engine.wallet().mm_rate == 0
    assert engine.wallet().available_balance == D("10000")


def test_order_needing_more_margin_than_available_is_refused_without_events() -> None:
    engine, events, _ = make_engine()
    with pytest.raises(EngineError) as err:
        market(engine, "Buy", "4")  # 120000 notional / 10 = 12000 > 10000
    assert err.value.code == "insufficient_balance"
    assert events == []
    assert engine.open_orders() == []


def test_ledger_totals_equal_the_positions_cumulative_figures() -> None:
    engine, events, _ = make_engine(hedge=False, seed=3)
    for i in range(40):
        engine.step()
        if i % 3 == 0:
            market(engine, "Buy" if i % 2 else "Sell", "0.007")
        if i % 5 == 0:
            engine.place_order(symbol=ETH, side="Buy" if i % 2 else "Sell", order_type="Market", qty=D("0.5"))
    positions = engine.positions()
    assert {p.symbol for p in positions} == {BTC, ETH}
    assert len(engine.ledger) == len(fills(events)) == 22
    assert engine.realised_gross() == sum((p.cum_realised_gross for p in positions), D(0))
    assert engine.fees_paid() == sum((p.cum_fees for p in positions), D(0))
    assert engine.realised_gross() != 0
    assert engine.wallet().wallet_balance == D("10000") + engine.realised_gross() - engine.fees_paid()


# ------------------------------------------------------------------------------------------ modes


def test_hedge_mode_keeps_both_slots_and_applies_the_reduce_rule() -> None:
    engine, events, _ = make_engine(hedge=True)
    market(engine, "Buy", "0.02", position_idx=1)
    market(engine, "Sell", "0.01", position_idx=2)
    long, short = engine.positions(BTC)
    assert (long.position_idx, long.side, long.size) == (1, "Buy", D("0.02"))
    assert (short.position_idx, short.side, short.size) == (2, "Sell", D("0.01"))
    engine.set_price(BTC, D("30100"))
    # a plain Sell on the long slot reduces, capped at the position, and never opens a short there
    market(engine, "Sell", "0.05", position_idx=1)
    fill = fills(events)[-1].fill
    assert (fill.qty, fill.realised_pnl, fill.position_idx) == (D("0.02"), D("2"), 1)
    assert engine.position(BTC, 1).size == 0
    assert (engine.position(BTC, 2).side, engine.position(BTC, 2).size) == ("Sell", D("0.01"))
    with pytest.raises(EngineError) as err:
        market(engine, "Sell", "0.01", position_idx=1)  # nothing left to reduce on the long slot
    assert err.value.code == "reduce_only_rejected"
    market(engine, "Buy", "0.01", position_idx=2)  # a Buy on the short slot reduces it
    assert fills(events)[-1].fill.realised_pnl == D("-1")
    assert engine.position(BTC, 2).size == 0


def test_position_idx_must_match_the_mode() -> None:
    one_way, _, _ = make_engine()
    hedge, _, _ = make_engine(hedge=True)
    with pytest.raises(EngineError) as err:
        market(one_way, "Buy", "0.01", position_idx=1)
    assert err.value.code == "bad_position_idx"
    with pytest.raises(EngineError) as err:
        market(hedge, "Buy", "0.01", position_idx=0)
    assert err.value.code == "bad_position_idx"


def test_hedge_mode_switch_is_refused_with_a_position_open() -> None:
    engine, _, _ = make_engine()
    market(engine, "Buy", "0.01")
    with pytest.raises(EngineError) as err:
        engine.set_hedge_mode(True)
    assert err.value.code == "position_or_order_exists"
    market(engine, "Sell", "0.01")
    engine.set_hedge_mode(True)
    assert engine.hedge_mode is True
    assert engine.positions() == []  # the one-way slot is not listed in hedge mode


def test_reduce_only_is_rejected_when_it_would_increase_and_capped_when_it_fills() -> None:
    engine, events, _ = make_engine()
    with pytest.raises(EngineError) as err:
        market(engine, "Sell", "0.01", reduce_only=True)  # flat
    assert err.value.code == "reduce_only_rejected"
    market(engine, "Buy", "0.01")
    with pytest.raises(EngineError) as err:
        market(engine, "Buy", "0.01", reduce_only=True)  # same side: would increase
    assert err.value.code == "reduce_only_rejected"
    order = engine.place_order(symbol=BTC, side="Sell", order_type="Market", qty=D("0.05"), reduce_only=True)
    assert (order.status, order.qty, order.filled_qty) == ("Filled", D("0.01"), D("0.01"))
    assert fills(events)[-1].fill.qty == D("0.01")
    assert engine.position(BTC, 0).size == 0  # capped: no flip to short


def test_bad_requests_are_refused_with_codes() -> None:
    engine, _, _ = make_engine()
    cases = [
        ({"symbol": "XRPUSDT", "side": "Buy", "order_type": "Market", "qty": D("1")}, "unknown_symbol"),
        ({"symbol": BTC, "side": "Long", "order_type": "Market", "qty": D("1")}, "bad_side"),
        ({"symbol": BTC, "side": "Buy", "order_type": "Stop", "qty": D("1")}, "bad_order_type"),
        ({"symbol": BTC, "side": "Buy", "order_type": "Market", "qty": D("0.0015")}, "bad_qty"),
        ({"symbol": BTC, "side": "Buy", "order_type": "Limit", "qty": D("0.01")}, "bad_price"),
        ({"symbol": BTC, "side": "Buy", "order_type": "Limit", "qty": D("0.01"), "price": D("1.05")},
         "bad_price"),
    ]
    for kwargs, code in cases:
        with pytest.raises(EngineError) as err:
            engine.place_order(**kwargs)  # type: ignore[arg-type]
        assert err.value.code == code, kwargs


# ----------------------------------------------------------------------------------- conditionals


def test_take_profit_triggers_on_mark_and_its_market_child_fills() -> None:
    engine, events, _ = make_engine()
    market(engine, "Buy", "0.01")
    tp = engine.place_conditional(symbol=BTC, side="Sell", order_type="Market", qty=D("0.01"),
                                  trigger_price=D("30500"))
    assert (tp.status, tp.is_conditional, tp.kind) == ("Untriggered", True, "TakeProfit")
    assert tp.reduce_only is True
    engine.set_price(BTC, D("30400"))
    assert engine.order(tp.order_id).status == "Untriggered"
    del events[:]
    engine.set_price(BTC, D("30600"))
    ended = engine.order(tp.order_id)
    assert ended.status == "Filled"
    assert ended.child_id is not None
    child = engine.order(ended.child_id)
    assert (child.status, child.parent_id, child.avg_price, child.order_type) == (
        "Filled", tp.order_id, D("30600"), "Market")
    def describe(e: EngineEvent) -> tuple[str, str, int | None]:
        if isinstance(e, OrderEvent):
            return type(e).__name__, e.exec_type, e.order.order_id
        return type(e).__name__, "", None

    assert [describe(e) for e in events] == [
        ("PriceEvent", "", None),
        ("OrderEvent", "Triggered", tp.order_id),
        ("OrderEvent", "New", child.order_id),
        ("OrderEvent", "Trade", child.order_id),
        ("FillEvent", "", None),
        ("PositionEvent", "", None),
        ("WalletEvent", "", None),
        ("OrderEvent", "Filled", tp.order_id),
    ]
    triggered = events[1]
    assert isinstance(triggered, OrderEvent) and triggered.order.child_id == child.order_id
    assert fills(events)[0].fill.realised_pnl == D("6")
    assert engine.position(BTC, 0).size == 0
    assert engine.open_orders() == []


def test_limit_take_profit_child_fills_as_taker_at_its_price() -> None:
    engine, events, _ = make_engine()
    market(engine, "Sell", "0.01")
    tp = engine.place_conditional(symbol=BTC, side="Buy", order_type="Limit", qty=D("0.01"),
                                  trigger_price=D("29500"), price=D("29550"))
    engine.set_price(BTC, D("29400"))
    assert engine.order(tp.order_id).status == "Filled"
    fill = fills(events)[-1].fill
    assert (fill.price, fill.is_maker, fill.realised_pnl) == (D("29550"), False, D("4.5"))


def test_stop_loss_triggers_the_other_way_and_immediate_triggers_are_refused() -> None:
    engine, _, _ = make_engine()
    market(engine, "Buy", "0.01")
    with pytest.raises(EngineError) as err:
        engine.place_conditional(symbol=BTC, side="Sell", order_type="Market", qty=D("0.01"),
                                 trigger_price=D("29000"))  # a TP below the mark of a long
    assert err.value.code == "would_immediately_trigger"
    sl = engine.place_conditional(symbol=BTC, side="Sell", order_type="Market", qty=D("0.01"),
                                  trigger_price=D("29000"), kind="StopLoss")
    engine.set_price(BTC, D("29500"))
    assert engine.order(sl.order_id).status == "Untriggered"
    engine.set_price(BTC, D("28900"))
    assert engine.order(sl.order_id).status == "Filled"
    assert engine.position(BTC, 0).cum_realised_gross == D("-11")


def test_untriggered_reducing_orders_end_when_the_position_goes_flat() -> None:
    engine, events, _ = make_engine()
    market(engine, "Buy", "0.02")
    tp = engine.place_conditional(symbol=BTC, side="Sell", order_type="Market", qty=D("0.02"),
                                  trigger_price=D("31000"))
    sl = engine.place_conditional(symbol=BTC, side="Sell", order_type="Market", qty=D("0.02"),
                                  trigger_price=D("29000"), kind="StopLoss")
    resting = engine.place_order(symbol=BTC, side="Sell", order_type="Limit", qty=D("0.02"), price=D("30800"),
                                 reduce_only=True)
    market(engine, "Sell", "0.01")
    assert len(engine.open_orders()) == 3  # still a position: nothing ends
    del events[:]
    market(engine, "Sell", "0.01")
    assert engine.order(tp.order_id).status == "Deactivated"
    assert engine.order(sl.order_id).status == "Deactivated"
    assert (engine.order(resting.order_id).status, engine.order(resting.order_id).reason) == (
        "Cancelled", "position_closed")
    ends = [(e.order.order_id, e.exec_type) for e in events if isinstance(e, OrderEvent)][2:]
    assert ends == [
        (tp.order_id, "Deactivated"), (sl.order_id, "Deactivated"), (resting.order_id, "Cancelled"),
    ]
    assert engine.open_orders() == []


def test_cancel_regular_conditional_and_triggered_orders() -> None:
    engine, events, _ = make_engine()
    limit = engine.place_order(symbol=BTC, side="Buy", order_type="Limit", qty=D("0.01"), price=D("29000"),
                               client_order_id="grid-1")
    cancelled = engine.cancel_order(symbol=BTC, order_id=limit.order_id)
    assert cancelled.status == "Cancelled"
    assert isinstance(events[-1], OrderEvent) and events[-1].exec_type == "Cancelled"
    with pytest.raises(EngineError) as err:
        engine.cancel_order(symbol=BTC, order_id=limit.order_id)
    assert err.value.code == "unknown_order"
    with pytest.raises(EngineError) as err:
        engine.cancel_order(symbol=ETH, order_id=12345)
    assert err.value.code == "unknown_order"

    by_client = engine.place_order(symbol=BTC, side="Buy", order_type="Limit", qty=D("0.01"),
                                   price=D("29000"), client_order_id="grid-2")
    assert engine.cancel_order(symbol=BTC, client_order_id="grid-2").order_id == by_client.order_id

    market(engine, "Buy", "0.01")
    tp = engine.place_conditional(symbol=BTC, side="Sell", order_type="Market", qty=D("0.01"),
                                  trigger_price=D("31000"))
    assert engine.cancel_order(symbol=BTC, order_id=tp.order_id).status == "Cancelled"

    # a triggered conditional whose Limit child rests: cancelling it cancels the child too
    tp2 = engine.place_conditional(symbol=BTC, side="Sell", order_type="Limit", qty=D("0.01"),
                                   trigger_price=D("30500"), price=D("30700"))
    engine.set_price(BTC, D("30600"))
    triggered = engine.order(tp2.order_id)
    assert triggered.status == "Triggered" and triggered.child_id is not None
    assert {o.order_id for o in engine.open_orders()} == {tp2.order_id, triggered.child_id}
    assert engine.cancel_order(symbol=BTC, order_id=tp2.order_id).status == "Cancelled"
    assert engine.order(triggered.child_id).status == "Cancelled"
    assert engine.open_orders() == []
    assert engine.position(BTC, 0).size == D("0.01")


# -------------------------------------------------------------------------------- prices, events


def test_same_seed_gives_the_same_price_path_on_the_tick_grid() -> None:
    def path(seed: int) -> list[tuple[D, D]]:
        engine, _, _ = make_engine(seed=seed)
        result = []
        for _ in range(300):
            engine.step()
            result.append((engine.prices(BTC).last, engine.prices(ETH).last))
        return result

    first, again, other = path(7), path(7), path(8)
    assert first == again
    assert first != other
    assert len({btc for btc, _ in first}) > 50  # it really moves
    assert all(btc % D("0.1") == 0 and eth % D("0.01") == 0 for btc, eth in first)


def test_prices_and_price_events() -> None:
    engine, events, clock = make_engine()
    clock.now = 8 * 3_600_000 * 10 + 5
    engine.set_price(ETH, D("2100.005"))
    [event] = events
    assert isinstance(event, PriceEvent)
    prices = event.prices
    assert (prices.symbol, prices.mark, prices.last, prices.index) == (ETH, D("2100.00"), D("2100.00"),
                                                                      D("2100.00"))
    assert prices.next_funding_time == 8 * 3_600_000 * 11
    assert (prices.funding_rate, prices.timestamp, event.timestamp) == (D("0.0001"), clock.now, clock.now)
    del events[:]
    engine.step()
    assert [e.prices.symbol for e in events if isinstance(e, PriceEvent)] == [BTC, ETH]


def test_event_order_for_one_fill() -> None:
    engine, events, clock = make_engine()
    clock.now = 1_700_000_000_123
    market(engine, "Buy", "0.01")
    assert [type(e) for e in events] == [OrderEvent, OrderEvent, FillEvent, PositionEvent, WalletEvent]
    new, trade, fill, position, wallet = events
    assert isinstance(new, OrderEvent) and (new.exec_type, new.order.status) == ("New", "New")
    assert isinstance(trade, OrderEvent) and (trade.exec_type, trade.order.status) == ("Trade", "Filled")
    assert isinstance(fill, FillEvent) and trade.fill == fill.fill
    assert fill.fill.order_id == trade.order.order_id
    assert isinstance(position, PositionEvent) and position.position.size == D("0.01")
    assert isinstance(wallet, WalletEvent) and wallet.wallet.wallet_balance == D("10000") - D("0.165")
    assert {e.timestamp for e in events} == {clock.now}
    assert position.position.seq == 1


def test_listeners_run_under_the_lock_in_order_and_may_not_change_the_engine() -> None:
    engine, _, _ = make_engine()
    calls: list[tuple[str, str, bool]] = []
    reentry: list[str] = []

    def other_thread_can_take_lock() -> bool:
        result: list[bool] = []

        def probe() -> None:
            got = engine.lock.acquire(blocking=False)
            if got:
                engine.lock.release()
            result.append(got)

        thread = threading.Thread(target=probe)
        thread.start()
        thread.join(5)
        return result[0]

    def first(event: EngineEvent) -> None:
        calls.append(("first", type(event).__name__, other_thread_can_take_lock()))
        try:
            engine.set_price(BTC, D("1"))
        except EngineError as exc:
            reentry.append(exc.code)

    def broken(event: EngineEvent) -> None:
        raise RuntimeError("listener bug")

    def second(event: EngineEvent) -> None:
        calls.append(("second", type(event).__name__, other_thread_can_take_lock()))
        engine.wallet()  # reads are allowed

    engine.add_listener(first)
    engine.add_listener(broken)
    engine.add_listener(second)
    market(engine, "Buy", "0.01")
    kinds = ["OrderEvent", "OrderEvent", "FillEvent", "PositionEvent", "WalletEvent"]
    assert calls == [(who, kind, False) for kind in kinds for who in ("first", "second")]
    assert reentry == ["reentrant_call"] * 5
    assert engine.prices(BTC).last == D("30000.0")
    engine.place_order(symbol=BTC, side="Sell", order_type="Market", qty=D("0.01"))  # still usable


def test_ids_are_distinct_ints_and_seed_derived() -> None:
    engine, events, _ = make_engine(seed=5)
    market(engine, "Buy", "0.01")
    market(engine, "Sell", "0.01")
    order_ids = [e.order.order_id for e in events if isinstance(e, OrderEvent)]
    trade_ids = [e.fill.trade_id for e in fills(events)]
    assert order_ids == [8_005_000_001, 8_005_000_001, 8_005_000_002, 8_005_000_002]
    assert trade_ids == [1_005_000_001, 1_005_000_002]


# ---------------------------------------------------------------------------------------- forced closes


def test_liquidation_closes_the_slot_at_its_price_with_a_taker_fee() -> None:
    engine, events, _ = make_engine()
    market(engine, "Buy", "0.1")
    del events[:]
    order = engine.liquidate(BTC, 0, D("29000"))
    assert (order.forced, order.status, order.side, order.qty, order.avg_price) == (
        "liquidation", "Filled", "Sell", D("0.1"), D("29000"))
    [fill] = fills(events)
    assert (fill.fill.forced, fill.fill.realised_pnl, fill.fill.fee) == ("liquidation", D("-100"),
                                                                         D("2900") * TAKER)
    assert [type(e).__name__ for e in events] == ["OrderEvent", "OrderEvent", "FillEvent", "PositionEvent",
                                                  "WalletEvent"]
    position = engine.position(BTC, 0)
    assert position.size == 0 and fill.fill.seq == position.seq
    assert engine.fills(BTC)[-1] == fill.fill and engine.ledger[-1].trade_id == fill.fill.trade_id
    assert engine.wallet().wallet_balance == D("10000") - D("3000") * TAKER - D("100") - D("2900") * TAKER


def test_adl_has_no_fee_and_ends_the_slots_reducing_orders() -> None:
    engine, _, _ = make_engine(hedge=True)
    market(engine, "Sell", "0.1", position_idx=2)
    tp = engine.place_order(symbol=BTC, side="Buy", order_type="Limit", qty=D("0.1"), price=D("25000"),
                            position_idx=2)
    engine.liquidate(BTC, 2, D("31000"), kind="adl")
    forced = engine.fills(BTC)[-1]
    assert (forced.forced, forced.fee, forced.realised_pnl, forced.side) == ("adl", D(0), D("-100"), "Buy")
    assert engine.order(tp.order_id).status == "Cancelled"
    with pytest.raises(EngineError):
        engine.liquidate(BTC, 0, D("31000"))  # one-way index in hedge mode


def test_a_split_step_moves_prices_first_and_fills_on_match() -> None:
    engine, events, _ = make_engine()
    engine.place_order(symbol=BTC, side="Buy", order_type="Limit", qty=D("0.1"), price=D("29999.9"))
    twin, twin_events, _ = make_engine()
    twin.place_order(symbol=BTC, side="Buy", order_type="Limit", qty=D("0.1"), price=D("29999.9"))
    for _ in range(1000):
        if fills(events):
            break
        before = len(events)
        engine.step(match=False)
        assert not fills(events[before:])  # prices only
        engine.match()
        twin.step()  # the same seed walks the same path whole or split
        assert engine.prices(BTC).last == twin.prices(BTC).last
    prices = [f.fill.price for f in fills(events)]
    assert prices == [f.fill.price for f in fills(twin_events)] == [D("29999.9")]
