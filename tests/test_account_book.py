"""The Binance account view computed from events (gridbot._account.BinanceAccountBook)."""
# ruff: noqa: E501

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest

from gridbot._account import AccountConfig, BinanceAccountBook
from gridbot._margin import parse_leverage_brackets
from gridbot.events import AccountUpdate, OrderUpdate, PositionUpdate, WalletUpdate

D = Decimal
FIXTURES = Path(__file__).parent / "fixtures" / "binance"
FAQ = parse_leverage_brackets(json.loads((FIXTURES / "leverage_bracket_faq_btcusdt.json").read_text()))


def position(size: str, *, side: Literal["Buy", "Sell"] = "Buy", entry: str = "50000", mark: str | None = "50000",
             idx: int = 0, symbol: str = "BTCUSDT", raw: dict[str, Any] | None = None,
             snap: bool = False) -> PositionUpdate:
    return PositionUpdate(
        exchange="binance", timestamp=5, is_snapshot=snap, symbol=symbol, position_idx=idx, side=side if D(size) else "",
        size=D(size), entry_price=D(entry), mark_price=None if mark is None else D(mark),
        unrealised_pnl=D(0), cum_realised_pnl=None, raw=raw or {},
    )


def wallet(wb: str, cw: str | None = None, *, coin: str = "USDT", seed: bool = False) -> WalletUpdate:
    raw = {"crossWalletBalance": cw} if seed else {"a": coin, "wb": wb, "cw": cw if cw is not None else wb}
    return WalletUpdate(exchange="binance", timestamp=4, coin=coin, wallet_balance=D(wb), available_balance=None,
                        equity=None, raw=raw)


def order(oid: str, *, side: Literal["Buy", "Sell"] = "Buy", reduce_only: bool = False, status: str = "New", idx: int = 0) -> OrderUpdate:
    return OrderUpdate(
        exchange="binance", timestamp=6, symbol="BTCUSDT", order_id=oid, client_order_id="", side=side,
        order_type="Limit", status=status, price=D("49000"), qty=D("0.1"), filled_qty=D("0"),  # type: ignore[arg-type]
        avg_price=D("0"), trigger_price=None, reduce_only=reduce_only, position_idx=idx, is_take_profit=False,
    )


def config(*, full: bool = True, leverage: int = 20, isolated: bool = False, multi: bool | None = False,
           elsewhere: frozenset[str] = frozenset()) -> AccountConfig:
    return AccountConfig(exchange="binance", timestamp=7, is_snapshot=True, full=full, brackets=FAQ,
                         leverage={"BTCUSDT": leverage}, isolated={"BTCUSDT": isolated}, multi_assets=multi,
                         open_elsewhere=elsewhere)


def book(tracked: set[str] | None = None) -> BinanceAccountBook:
    symbols = {"BTCUSDT"} if tracked is None else tracked
    return BinanceAccountBook("binance", tracked=lambda s: s in symbols)


def primed(*items: Any, tracked: set[str] | None = None) -> BinanceAccountBook:
    b = book(tracked)
    for item in (wallet("10000"), *items, config()):
        b.apply(item)
    return b


def test_nothing_before_the_first_full_seed() -> None:
    b = book()
    b.apply(wallet("10000"))
    b.apply(position("1"))
    assert b.changed_view(1, True) is None
    b.apply(config(full=False))  # a symbol seed does not prime: the account-wide seed is not in yet
    assert b.changed_view(1, True) is None
    b.apply(config())
    assert b.changed_view(1, True) is not None


def test_flat_account() -> None:
    view = primed().view(1, True)
    assert view == AccountUpdate(
        exchange="binance", timestamp=1, is_snapshot=True, margin_coin="USDT", wallet_balance=D("10000"),
        unrealised_pnl=D("0"), margin_balance=D("10000"), initial_margin=D("0"), maintenance_margin=D("0"),
        available_balance=D("10000"), mm_rate=D("0"), computed=True,
    )


def test_long_position_at_mark_uses_the_tier_and_leverage() -> None:
    # 10 BTC long from 50,000, marked at 50,000: notional 500,000 -> FAQ tier 3 (1 %, cum 1,300).
    b = primed(position("10", mark="50000"))
    view = b.view(1, False)
    assert view.maintenance_margin == D("3700")
    assert view.unrealised_pnl == D("0") and view.margin_balance == D("10000")
    assert view.mm_rate == D("0.37")
    assert view.initial_margin == D("25000")  # 500,000 / 20
    assert view.available_balance == D("0")  # max(0, 10,000 - 25,000)


def test_mark_move_changes_pnl_tier_and_rate() -> None:
    b = primed(position("1", mark="50000"))
    first = b.changed_view(1, False)
    assert first is not None and first.maintenance_margin == D("200")  # 50,000 exactly at the first cap: 0.4 %
    b.apply(position("1", mark="50100"))  # the router re-emits the position valued at the new mark
    moved = b.changed_view(2, False)
    assert moved is not None
    assert moved.unrealised_pnl == D("100") and moved.margin_balance == D("10100")
    assert moved.maintenance_margin == D("50100") * D("0.005") - D("50")  # tier 2 now
    assert moved.mm_rate == moved.maintenance_margin / D("10100")
    assert b.changed_view(3, False) is None  # nothing changed: nothing to deliver


def test_short_and_hedge_slots_add_up() -> None:
    b = primed(position("1", idx=1, mark="50000"), position("0.5", side="Sell", idx=2, entry="51000", mark="50000"))
    view = b.view(1, False)
    assert view.unrealised_pnl == D("500")  # short gains 0.5 * 1,000
    assert view.maintenance_margin == D("200") + D("25000") * D("0.004")
    assert view.initial_margin == (D("50000") + D("25000")) / 20


def test_position_without_mark_uses_the_last_known_mark_of_its_symbol() -> None:
    b = primed(position("1", mark="50000"))
    b.apply(position("2", mark=None))  # an ACCOUNT_UPDATE before any ticker: the seed's mark still holds
    assert b.view(1, False).maintenance_margin == D("100000") * D("0.005") - D("50")


def test_no_mark_at_all_is_unknown() -> None:
    view = primed(position("1", mark=None, snap=True)).view(1, False)
    assert (view.unrealised_pnl, view.margin_balance, view.maintenance_margin, view.mm_rate) == (None,) * 4
    assert view.wallet_balance == D("10000")


def test_an_untracked_symbol_has_no_live_value() -> None:
    view = primed(position("1", symbol="ETHUSDT", mark="3000")).view(1, False)
    assert view.maintenance_margin is None and view.mm_rate is None and view.margin_balance is None


def test_open_position_elsewhere_at_the_seed_is_unknown_until_it_closes() -> None:
    b = book()
    for item in (wallet("10000"), config(elsewhere=frozenset({"ETHUSDT"}))):
        b.apply(item)
    assert b.view(1, True).mm_rate is None
    b.apply(position("0", symbol="ETHUSDT", mark=None))  # its ACCOUNT_UPDATE: closed
    assert b.view(2, False).mm_rate == D("0")


def test_another_margin_asset_is_not_in_the_usdt_account() -> None:
    view = primed(position("1", symbol="BTCUSDC", mark="50000"), tracked={"BTCUSDT", "BTCUSDC"}).view(1, False)
    assert view.maintenance_margin == D("0") and view.margin_balance == D("10000")


def test_missing_brackets_or_leverage_give_none_for_what_needs_them() -> None:
    b = book()
    for item in (wallet("10000"), position("1"),
                 AccountConfig(exchange="binance", timestamp=1, full=True, isolated={"BTCUSDT": False})):
        b.apply(item)
    view = b.view(1, False)
    assert view.margin_balance == D("10000")
    assert (view.maintenance_margin, view.mm_rate, view.initial_margin, view.available_balance) == (None,) * 4


def test_isolated_position_keeps_balance_and_available_but_no_rate() -> None:
    b = primed()
    b.apply(position("1", mark="50000", raw={"mt": "isolated", "iw": "2500"}))  # ACCOUNT_UPDATE says isolated
    b.apply(wallet("10000", cw="7500"))
    view = b.view(1, False)
    assert view.margin_balance == D("10000")
    assert (view.maintenance_margin, view.mm_rate, view.initial_margin) == (None, None, None)
    assert view.available_balance == D("7500")  # the cross wallet: isolated margin is not available


def test_the_seed_margin_type_applies_until_a_push_says_otherwise() -> None:
    b = book()
    for item in (wallet("10000"), position("1"), config(isolated=True)):
        b.apply(item)
    assert b.view(1, True).mm_rate is None
    b.apply(position("1", raw={"mt": "cross"}))
    assert b.view(2, False).mm_rate == D("200") / D("10000")


def test_multi_assets_mode_gives_nothing() -> None:
    b = primed(position("1"))
    b.apply(AccountConfig(exchange="binance", timestamp=9, multi_assets=True))
    view = b.view(1, False)
    assert view.margin_coin == "USD"
    assert all(getattr(view, f) is None for f in ("wallet_balance", "margin_balance", "maintenance_margin", "mm_rate",
                                                  "available_balance", "initial_margin", "unrealised_pnl"))
    b.apply(AccountConfig(exchange="binance", timestamp=10, multi_assets=False))
    assert b.view(2, False).mm_rate == D("0.02")


def test_leverage_change_moves_initial_margin() -> None:
    b = primed(position("1"))
    assert b.view(1, False).initial_margin == D("2500")
    b.apply(AccountConfig(exchange="binance", timestamp=9, leverage={"BTCUSDT": 10}))
    assert b.view(2, False).initial_margin == D("5000")
    assert b.view(2, False).available_balance == D("5000")


@pytest.mark.parametrize(
    ("resting", "known"),
    [
        (order("1", side="Sell", reduce_only=True), True),       # a take-profit: holds no margin
        (order("1", status="Untriggered"), True),                 # conditional: no margin until triggered
        (order("1"), False),                                      # opens a position: netting undocumented
    ],
)
def test_open_orders(resting: OrderUpdate, known: bool) -> None:
    view = primed(position("1"), resting).view(1, False)
    assert (view.initial_margin is not None, view.available_balance is not None) == (known, known)
    assert view.mm_rate == D("0.02")  # the MM rate never depends on orders


def test_finished_orders_leave_the_book() -> None:
    b = primed(position("1"), order("1"))
    assert b.view(1, False).available_balance is None
    b.apply(order("1", status="Cancelled"))
    assert b.view(2, False).available_balance == D("7500")


def test_other_coins_and_forgotten_symbols() -> None:
    b = primed(position("1"), order("1"))
    assert not b.apply(wallet("3", coin="BNB"))
    assert b.view(1, False).wallet_balance == D("10000")
    b.forget_symbol("BTCUSDT")  # its orders go; the position stays the account's
    assert b.view(2, False).available_balance == D("7500")


def test_seed_wallet_row_gives_the_cross_wallet() -> None:
    b = book()
    for item in (wallet("10000", cw="9000", seed=True), config()):
        b.apply(item)
    assert b.view(1, True).available_balance == D("9000")


def test_a_push_before_any_mark_is_valued_where_binance_valued_it() -> None:
    # A new position's ACCOUNT_UPDATE arrives before its symbol's first ticker: its `up` tells the mark.
    b = book()
    for item in (wallet("10000"), config()):
        b.apply(item)
    short = PositionUpdate(exchange="binance", timestamp=5, symbol="BTCUSDT", position_idx=0, side="Sell",
                           size=D("2"), entry_price=D("50000"), mark_price=None, unrealised_pnl=D("-200"),
                           cum_realised_pnl=D("0"))
    b.apply(short)
    view = b.view(1, False)
    assert view.unrealised_pnl == D("-200")
    assert view.maintenance_margin == D("100200") * D("0.005") - D("50")  # valued at 50,100
    snapshot_row = PositionUpdate(exchange="binance", timestamp=5, is_snapshot=True, symbol="ETHUSDT",
                                  position_idx=0, side="Buy", size=D("1"), entry_price=D("3000"), mark_price=None,
                                  unrealised_pnl=D("0"), cum_realised_pnl=None)
    b2 = primed(snapshot_row, tracked={"BTCUSDT", "ETHUSDT"})
    assert b2.view(1, True).unrealised_pnl is None  # a REST row without markPrice: no mark, no guess
