"""The account view end to end: the live AccountUpdate equals the exchange's own account answer.

Binance (computed by gridbot from the stream) against the emulator's ``GET /fapi/v2/account``; Bybit
(sent by the exchange) against ``GET /v5/account/wallet-balance`` -- both read with the real SDKs, after
fills, mark moves, a bracket change and a leverage change.  Prices move only when the test moves them.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from binance.client import Client
from pybit.unified_trading import HTTP

import gridbot
from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.bybit import BybitEmulator
from tests.e2e.helpers import KEY, SECRET, SYMBOL, WAIT, Recorder, engine_config, wait_until

D = Decimal
# The emulator rounds each slot's margins to 8 decimals, as Binance does; gridbot keeps them exact.
MONEY_TOLERANCE = D("1E-7")
RATE_TOLERANCE = D("1E-10")


def binance_client(emulator: BinanceEmulator) -> Client:
    client = Client(KEY, SECRET, ping=False)
    client.API_URL = emulator.endpoints.rest + "/api"
    client.FUTURES_URL = emulator.endpoints.rest + "/fapi"
    return client


class Latest:
    """The latest AccountUpdate delivered (on_account), readable from the test thread."""

    def __init__(self) -> None:
        self.state = gridbot.AccountState()
        self.count = 0

    def __call__(self, account: gridbot.AccountUpdate) -> None:
        self.state.update(account)
        self.count += 1


def binance_differences(account: gridbot.AccountUpdate | None, answer: dict[str, Any]) -> dict[str, Decimal]:
    """|stream - exchange| per figure (the MM rate against totalMaintMargin / totalMarginBalance)."""
    assert account is not None
    expected = {
        "wallet_balance": D(answer["totalWalletBalance"]),
        "unrealised_pnl": D(answer["totalUnrealizedProfit"]),
        "margin_balance": D(answer["totalMarginBalance"]),
        "maintenance_margin": D(answer["totalMaintMargin"]),
        "initial_margin": D(answer["totalInitialMargin"]),
        "available_balance": D(answer["availableBalance"]),
    }
    balance = expected["margin_balance"]
    expected["mm_rate"] = expected["maintenance_margin"] / balance if balance > 0 else D(0)
    diffs: dict[str, Decimal] = {}
    for name, value in expected.items():
        got = getattr(account, name)
        if got is None:
            continue  # checked separately: None only where documented
        diffs[name] = abs(got - value)
    return diffs


def within(diffs: dict[str, Decimal], required: tuple[str, ...]) -> bool:
    if any(name not in diffs for name in required):
        return False
    return all(d <= (RATE_TOLERANCE if name == "mm_rate" else MONEY_TOLERANCE) for name, d in diffs.items())


@pytest.fixture
def binance() -> Iterator[BinanceEmulator]:
    emu = BinanceEmulator(engine_config(), api_key=KEY, api_secret=SECRET, price_interval=0)
    try:
        emu.start()
        yield emu
    finally:
        emu.stop()


ALL = ("wallet_balance", "unrealised_pnl", "margin_balance", "maintenance_margin", "mm_rate",
       "initial_margin", "available_balance")
RISK = ("wallet_balance", "unrealised_pnl", "margin_balance", "maintenance_margin", "mm_rate")


def test_binance_live_account_equals_the_account_endpoint(binance: BinanceEmulator) -> None:
    latest = Latest()
    client = binance_client(binance)
    worst: dict[str, Decimal] = {}

    def agree(required: tuple[str, ...] = ALL) -> dict[str, Decimal]:
        def check() -> dict[str, Decimal] | None:
            diffs = binance_differences(latest.state.latest, client.futures_account())
            return diffs if within(diffs, required) else None

        diffs = wait_until(check, what=f"the stream's account view to equal /fapi/v2/account ({required})")
        assert diffs is not None
        for name, d in diffs.items():
            worst[name] = max(worst.get(name, D(0)), d)
        return diffs

    stream = gridbot.ExchangeStream("binance", api_key=KEY, api_secret=SECRET, endpoints=binance.endpoints)
    stream.subscribe(SYMBOL, on_account=latest)
    with stream:
        wait_until(lambda: latest.count, what="the first AccountUpdate")
        first = latest.state.latest
        assert first is not None and first.is_snapshot and first.computed and first.margin_coin == "USDT"
        agree()
        engine = binance.engine
        engine.place_order(symbol=SYMBOL, side="Buy", order_type="Market", qty=D("0.5"))  # 30,000: tier 1
        agree()
        engine.set_price(SYMBOL, D("61000"))  # a mark move alone: uPnL, MM and the rate follow
        agree()
        engine.place_order(symbol=SYMBOL, side="Buy", order_type="Market", qty=D("0.5"))  # 61,000: tier 2
        agree()
        assert latest.state.maintenance_margin is not None
        engine.set_price(SYMBOL, D("59000.5"))
        agree()
        client.futures_change_leverage(symbol=SYMBOL, leverage=20)  # ACCOUNT_CONFIG_UPDATE
        agree()
        assert latest.state.initial_margin == D("59000.5") / 20  # 1 BTC at the mark, leverage 20
        # A resting order that could open: Binance documents no netting -> None; the rest still equal.
        resting = engine.place_order(symbol=SYMBOL, side="Buy", order_type="Limit", qty=D("0.1"),
                                     price=D("58000"))
        wait_until(lambda: latest.state.available_balance is None, what="available balance unknown")
        assert latest.state.initial_margin is None
        agree(RISK)
        engine.cancel_order(symbol=SYMBOL, order_id=resting.order_id)
        agree()
        # A take-profit (reduce-only) holds no margin on either side.
        engine.place_order(symbol=SYMBOL, side="Sell", order_type="Limit", qty=D("0.5"), price=D("65000"),
                           reduce_only=True)
        agree()
        engine.place_order(symbol=SYMBOL, side="Sell", order_type="Market", qty=D("1"), reduce_only=True)
        agree()
        assert latest.state.maintenance_margin == 0
    print(f"\nlargest |stream - /fapi/v2/account| per figure: { {k: str(v) for k, v in worst.items()} }")
    assert worst["maintenance_margin"] <= MONEY_TOLERANCE and worst["mm_rate"] <= RATE_TOLERANCE


# ------------------------------------------------------------------------------------------ Bybit


BYBIT_FIELDS = {
    "wallet_balance": "totalWalletBalance",
    "unrealised_pnl": "totalPerpUPL",
    "margin_balance": "totalMarginBalance",
    "initial_margin": "totalInitialMargin",
    "maintenance_margin": "totalMaintenanceMargin",
    "available_balance": "totalAvailableBalance",
    "mm_rate": "accountMMRate",
}


@pytest.fixture
def bybit() -> Iterator[BybitEmulator]:
    emu = BybitEmulator(engine_config(), api_key=KEY, api_secret=SECRET, price_interval=0)
    try:
        emu.start()
        yield emu
    finally:
        emu.stop()


def test_bybit_account_update_equals_wallet_balance(bybit: BybitEmulator) -> None:
    latest = Latest()
    wallets = Recorder()
    http = HTTP(api_key=KEY, api_secret=SECRET, testnet=False)
    http.endpoint = bybit.endpoints.rest

    def answer() -> dict[str, Decimal | None]:
        row = http.get_wallet_balance(accountType="UNIFIED")["result"]["list"][0]
        return {name: D(row[wire]) if row[wire] != "" else None for name, wire in BYBIT_FIELDS.items()}

    def agree() -> None:
        def same() -> bool:
            account = latest.state.latest
            return account is not None and all(getattr(account, n) == v for n, v in answer().items())

        wait_until(same, what="the stream's AccountUpdate to equal GET /v5/account/wallet-balance")

    stream = gridbot.ExchangeStream("bybit", api_key=KEY, api_secret=SECRET, endpoints=bybit.endpoints)
    stream.subscribe(SYMBOL, on_account=latest, on_wallet=wallets)
    with stream:
        wait_until(lambda: latest.count, what="the seed's AccountUpdate", timeout=WAIT)
        seeded = latest.state.latest
        assert seeded is not None and seeded.is_snapshot and not seeded.computed
        assert seeded.margin_coin == "USD"
        agree()
        engine = bybit.engine
        engine.place_order(symbol=SYMBOL, side="Buy", order_type="Market", qty=D("0.5"))
        agree()
        # Bybit pushes no wallet when only the mark moves ("The unrealised PnL change does not trigger an
        # event"): the next fill brings the account up to date.
        engine.set_price(SYMBOL, D("61000"))
        engine.place_order(symbol=SYMBOL, side="Buy", order_type="Market", qty=D("0.01"))
        agree()
        assert latest.state.maintenance_margin is not None and latest.state.maintenance_margin > 0
        engine.place_order(symbol=SYMBOL, side="Sell", order_type="Market", qty=D("0.51"), reduce_only=True)
        agree()
    # The coin rows carry the coin's own figures only.
    coin_rows = [w for w in wallets.all() if isinstance(w, gridbot.WalletUpdate)]
    assert coin_rows and all(w.available_balance is None for w in coin_rows)
