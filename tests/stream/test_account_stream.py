"""on_account over a fake adapter: Bybit's AccountUpdate passes through, Binance's is computed at
delivery (seed, pushes, mark moves, leverage changes), one call per distinct callback."""
# ruff: noqa: E501

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest

import gridbot._worker as worker_module
from gridbot import AccountState, AccountUpdate, ExchangeStream, PositionUpdate, WalletUpdate
from gridbot._account import AccountConfig
from gridbot._margin import parse_leverage_brackets
from tests.stream.fakes import FakeAdapter, Recorder, order, ticker, wait_until

D = Decimal
FAQ = parse_leverage_brackets(json.loads(
    (Path(__file__).parent.parent / "fixtures" / "binance" / "leverage_bracket_faq_btcusdt.json").read_text()))


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "_RESYNC_BACKOFF_FIRST", 0.01)


def bn_position(size: str, *, idx: int = 0, side: Literal["Buy", "Sell"] = "Buy", mark: str | None = "50000", snap: bool = False,
                ts: int = 10) -> PositionUpdate:
    return PositionUpdate(
        exchange="binance", timestamp=ts, is_snapshot=snap, symbol="BTCUSDT", position_idx=idx,
        side=side if D(size) else "", size=D(size), entry_price=D("50000"),
        mark_price=None if mark is None else D(mark), unrealised_pnl=D("0"), cum_realised_pnl=None,
    )


def bn_wallet(wb: str, *, snap: bool = False) -> WalletUpdate:
    return WalletUpdate(exchange="binance", timestamp=9, is_snapshot=snap, coin="USDT", wallet_balance=D(wb),
                        available_balance=None, equity=None, raw={"a": "USDT", "wb": wb, "cw": wb})


def bn_config(*, full: bool = True, leverage: int = 20) -> AccountConfig:
    return AccountConfig(exchange="binance", timestamp=11, is_snapshot=True, full=full, brackets=FAQ,
                         leverage={"BTCUSDT": leverage}, isolated={"BTCUSDT": False}, multi_assets=False)


def binance_stream(fake: list[FakeAdapter], **kwargs: Any) -> tuple[ExchangeStream, FakeAdapter]:
    s = ExchangeStream("binance", api_key="k", api_secret="s", dispatch="manual", **kwargs)
    adapter = fake[-1]
    adapter.exchange = "binance"
    return s, adapter


def drain(s: ExchangeStream) -> None:
    while s.dispatch_pending(timeout=0.05):
        pass


class Holder:
    """A strategy object: its bound method registered for two symbols must count once."""

    def __init__(self) -> None:
        self.accounts: list[AccountUpdate] = []
        self.wallets: list[WalletUpdate] = []

    def on_account(self, account: AccountUpdate) -> None:
        self.accounts.append(account)

    def on_wallet(self, wallet: WalletUpdate) -> None:
        self.wallets.append(wallet)


def test_binance_account_is_computed_after_the_whole_seed(fake: list[FakeAdapter]) -> None:
    s, adapter = binance_stream(fake)
    state, rec = AccountState(), Recorder()
    s.subscribe("BTCUSDT", on_account=state.update, on_position=rec)
    adapter.snapshot = [bn_position("1", snap=True), bn_wallet("10000", snap=True)]
    adapter.account_config = bn_config()
    s.start(timeout=5)
    try:
        drain(s)
        assert adapter.account_config_calls == [(["BTCUSDT"], True)]
        latest = state.latest
        assert latest is not None and latest.is_snapshot and latest.computed
        assert (latest.maintenance_margin, latest.margin_balance, latest.mm_rate) == (D("200"), D("10000"), D("0.02"))
        assert latest.initial_margin == D("2500") and latest.available_balance == D("7500")
        assert s.book.account() == latest and s.book.snapshot().account == latest  # readable without callbacks
    finally:
        s.stop()


def test_binance_mark_moves_and_pushes_recompute_once_each(fake: list[FakeAdapter]) -> None:
    s, adapter = binance_stream(fake)
    got: list[AccountUpdate] = []
    s.subscribe("BTCUSDT", on_account=got.append)
    adapter.snapshot = [bn_position("1", idx=1, snap=True), bn_position("1", idx=2, side="Sell", snap=True),
                        bn_wallet("10000", snap=True)]
    adapter.account_config = bn_config()
    s.start(timeout=5)
    try:
        drain(s)
        assert len(got) == 1
        # Two open slots move with one tick: one account update, not two.
        adapter.push(ticker("50100"), channel="public")
        drain(s)
        assert len(got) == 2 and not got[-1].is_snapshot
        assert got[-1].unrealised_pnl == D("0")  # hedged: +100 and -100
        assert got[-1].maintenance_margin == 2 * (D("50100") * D("0.005") - D("50"))
        # The same mark again changes nothing: no update.
        adapter.push(ticker("50100"), channel="public")
        drain(s)
        assert len(got) == 2
        # A fill grows the long slot: recomputed at the latest mark.
        adapter.push(bn_position("2", idx=1, mark=None, ts=20))
        drain(s)
        assert len(got) == 3 and got[-1].unrealised_pnl == D("100")
        # A leverage change (ACCOUNT_CONFIG_UPDATE) moves the initial margin.
        adapter.push(AccountConfig(  # type: ignore[arg-type]  # a config item, decoded like an event
            exchange="binance", timestamp=30, leverage={"BTCUSDT": 10}))
        drain(s)
        assert len(got) == 4 and got[-1].initial_margin == (D("100200") + D("50100")) / 10
        # A resting order that could open a position: available balance becomes unknown.
        adapter.push(replace(order("9"), exchange="binance", side="Buy", reduce_only=False))
        drain(s)
        assert len(got) == 5 and got[-1].available_balance is None and got[-1].mm_rate is not None
    finally:
        s.stop()


def test_binance_symbol_seed_fetches_its_config_and_resync_refetches(fake: list[FakeAdapter]) -> None:
    s, adapter = binance_stream(fake)
    s.subscribe("BTCUSDT", on_account=lambda a: None)
    adapter.snapshot = [bn_wallet("10000", snap=True)]
    adapter.account_config = bn_config()
    s.start(timeout=5)
    try:
        s.subscribe("ETHUSDT", on_account=lambda a: None)
        wait_until(lambda: len(adapter.account_config_calls) == 2)
        assert adapter.account_config_calls[1] == (["ETHUSDT"], False)
        adapter.sink.link("private", "down", "test")
        adapter.sink.link("private", "up", "test")
        wait_until(lambda: len(adapter.account_config_calls) == 3)
        assert adapter.account_config_calls[2][1] is True
    finally:
        s.stop()


def test_without_a_seed_there_is_no_binance_account_view(fake: list[FakeAdapter]) -> None:
    s, adapter = binance_stream(fake, snapshot=False)
    got: list[AccountUpdate] = []
    s.subscribe("BTCUSDT", on_account=got.append)
    s.start(timeout=5)
    try:
        adapter.push(bn_wallet("10000"), bn_position("1"))
        drain(s)
        assert got == [] and adapter.account_config_calls == []
    finally:
        s.stop()


def test_bybit_account_updates_go_to_each_distinct_callback_once(fake: list[FakeAdapter]) -> None:
    s = ExchangeStream("bybit", api_key="k", api_secret="s", dispatch="manual")
    adapter = fake[-1]
    holder, other = Holder(), Holder()
    s.subscribe("BTCUSDT", on_account=holder.on_account, on_wallet=holder.on_wallet)
    s.subscribe("ETHUSDT", on_account=holder.on_account, on_wallet=holder.on_wallet)  # a new bound method object
    s.subscribe("SOLUSDT", on_account=other.on_account)
    s.start(timeout=5)
    try:
        account = AccountUpdate(exchange="bybit", timestamp=5, margin_coin="USD", wallet_balance=D("1"),
                                unrealised_pnl=D("0"), margin_balance=D("1"), initial_margin=D("0"),
                                maintenance_margin=D("0"), available_balance=D("1"), mm_rate=D("0"),
                                computed=False)
        wallet = WalletUpdate(exchange="bybit", timestamp=5, coin="USDT", wallet_balance=D("1"),
                              available_balance=None, equity=D("1"))
        adapter.push(wallet, account)
        drain(s)
        assert holder.accounts == [account] and other.accounts == [account]
        assert holder.wallets == [wallet]
    finally:
        s.stop()


def test_binance_one_message_one_account_update(fake: list[FakeAdapter]) -> None:
    # An ACCOUNT_UPDATE carries the position and the wallet a fill moved: the view is computed once, on
    # both -- never on the new position with the old wallet.
    s, adapter = binance_stream(fake)
    got: list[AccountUpdate] = []
    s.subscribe("BTCUSDT", on_account=got.append)
    adapter.snapshot = [bn_position("1", snap=True), bn_wallet("10000", snap=True)]
    adapter.account_config = bn_config()
    s.start(timeout=5)
    try:
        drain(s)
        assert len(got) == 1
        adapter.push(bn_position("0", mark=None, ts=20), bn_wallet("10100"))  # closed with +100 realised
        drain(s)
        assert len(got) == 2
        assert (got[-1].wallet_balance, got[-1].maintenance_margin, got[-1].margin_balance) == (
            D("10100"), D("0"), D("10100"))
    finally:
        s.stop()
