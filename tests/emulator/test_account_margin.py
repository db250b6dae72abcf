"""Account accounting by Binance's documented formulas (brackets, maintenance / initial margin, available
balance) in the engine, and the endpoints that serve it: Binance leverageBracket, v2/v3 account, change
leverage (+ ACCOUNT_CONFIG_UPDATE), Bybit wallet-balance and set-leverage; real python-binance and pybit.

Golden numbers: Binance liquidation-price FAQ (https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93):
"if the position ... is 264,000 USDT, then the maintenance margin rate would be 1%"; "Maintenance Amount on
Level 5 = 250,000 * (1% - 0.5%) + 50 USDT = 1,300 USDT" for a 500,000 USDT position.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal as D
from typing import Any

import pytest
from binance import Client
from binance.exceptions import BinanceAPIException
from pybit.exceptions import InvalidRequestError
from pybit.unified_trading import HTTP
from websockets.sync.client import connect

from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.bybit import BybitEmulator
from gridbot.emulator.engine import Engine, EngineConfig, EngineError, SymbolConfig
from gridbot.emulator.margin import (
    DEFAULT_BRACKETS,
    bracket_for,
    initial_margin,
    leverage_brackets,
    maintenance_margin,
    max_notional,
)
from tests.emulator.sdk_clients import binance_client, bybit_http

pytestmark = pytest.mark.timeout(60)

KEY, SECRET = "test-key", "test-secret"
BTC, ETH = "BTCUSDT", "ETHUSDT"
SMALL = leverage_brackets(((1000, "0.01", 50), (10_000, "0.02", 10)))
CONFIG = EngineConfig(symbols=(SymbolConfig(BTC, D("60000"), volatility=0.0),
                               SymbolConfig(ETH, D("3000"), tick_size=D("0.01"), volatility=0.0)))


# ------------------------------------------------------------------------------------------- formulas


def test_cum_follows_the_faq_recurrence_and_its_worked_numbers() -> None:
    second, third = DEFAULT_BRACKETS[1], DEFAULT_BRACKETS[2]
    assert (second.notional_floor, second.cum) == (D(50_000), D(50))  # 50,000 * (0.5% - 0.4%) + 0
    assert (third.notional_floor, third.maint_margin_ratio, third.cum) == (D(250_000), D("0.01"), D(1300))
    assert bracket_for(DEFAULT_BRACKETS, D(264_000)).maint_margin_ratio == D("0.01")
    assert maintenance_margin(DEFAULT_BRACKETS, D(500_000)) == D(3700)  # 500,000 * 1% - 1,300
    assert maintenance_margin(DEFAULT_BRACKETS, D(-500_000)) == D(3700)  # a short's notional is negative


def test_bracket_edges_floor_exclusive_cap_inclusive() -> None:
    assert bracket_for(DEFAULT_BRACKETS, D(0)).bracket == 1
    assert bracket_for(DEFAULT_BRACKETS, D(50_000)).bracket == 1  # exactly at the cap
    assert maintenance_margin(DEFAULT_BRACKETS, D(50_000)) == D(200)
    assert bracket_for(DEFAULT_BRACKETS, D("50000.1")).bracket == 2
    assert maintenance_margin(DEFAULT_BRACKETS, D("50000.1")) == D("200.0005")  # continuous at the edge
    assert bracket_for(DEFAULT_BRACKETS, D(10) ** 12).bracket == len(DEFAULT_BRACKETS)
    assert initial_margin(D(-3000), D(3)) == D(1000) and initial_margin(D(100), D(3)) == D("33.33333333")
    assert (max_notional(SMALL, D(50)), max_notional(SMALL, D(10)), max_notional(SMALL, D(51))) == (
        D(1000), D(10_000), D(0))
    with pytest.raises(ValueError):
        leverage_brackets(((100, "0.01", 10), (50, "0.02", 5)))


class Clock:
    now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


def test_engine_account_sums_slots_by_their_own_brackets_and_leverage() -> None:
    config = EngineConfig(symbols=(SymbolConfig(BTC, D("60000")),
                                   SymbolConfig(ETH, D("3000"), tick_size=D("0.01"), brackets=SMALL,
                                                leverage=D(5))),
                          wallet_balance=D(100_000))
    engine = Engine(config, Clock())
    engine.place_order(symbol=BTC, side="Buy", order_type="Market", qty=D("1"))  # 60,000: bracket 2
    engine.place_order(symbol=ETH, side="Sell", order_type="Market", qty=D("1"))  # 3,000: SMALL bracket 2
    engine.place_order(symbol=ETH, side="Sell", order_type="Limit", qty=D("1"), price=D("3100"))
    engine.set_price(BTC, D("61000"))
    btc, eth = engine.position(BTC, 0), engine.position(ETH, 0)
    assert (btc.maintenance_margin, btc.initial_margin) == (D(255), D(6100))  # 61,000 * 0.5% - 50
    assert btc.maint_margin_ratio == D("0.005")
    assert (eth.maintenance_margin, eth.initial_margin, eth.leverage) == (D(50), D(600), D(5))  # 60 - 10
    wallet = engine.wallet()
    fees = (D(60_000) + D(3000)) * config.taker_fee
    assert wallet.wallet_balance == D(100_000) - fees
    assert wallet.unrealised_pnl == D(1000)
    assert wallet.maintenance_margin == D(305)
    assert (wallet.initial_margin, wallet.order_margin) == (D(6700), D(620))  # 3100 / 5
    assert wallet.available_balance == wallet.margin_balance - D(6700) - D(620)
    assert wallet.mm_rate == (D(305) / wallet.margin_balance).quantize(D("1E-8"))
    assert engine.open_order_margin(ETH, 0) == D(620)


def test_engine_set_leverage_rules() -> None:
    config = EngineConfig(symbols=(SymbolConfig(ETH, D("3000"), tick_size=D("0.01"), brackets=SMALL),))
    engine = Engine(config, Clock())
    events: list[Any] = []
    engine.add_listener(events.append)
    engine.place_order(symbol=ETH, side="Buy", order_type="Market", qty=D("1"))
    assert engine.set_leverage(ETH, 10) == D(10_000)
    assert engine.leverage(ETH) == 10 and engine.position(ETH, 0).initial_margin == D(300)
    assert type(events[-1]).__name__ == "LeverageEvent" and events[-1].positions[0].leverage == 10
    for bad, code in ((51, "bad_leverage"), (0, "bad_leverage"), (D("2.5"), "bad_leverage"),
                      (20, "leverage_exceeds_notional")):  # 3,000 > 1,000, the most 20x allows
        with pytest.raises(EngineError) as info:
            engine.set_leverage(ETH, bad)
        assert info.value.code == code


# ------------------------------------------------------------------------------------------- Binance


@pytest.fixture
def binance() -> Iterator[BinanceEmulator]:
    with BinanceEmulator(CONFIG, api_key=KEY, api_secret=SECRET, price_interval=0) as emu:
        yield emu


@pytest.fixture
def client(binance: BinanceEmulator) -> Iterator[Client]:
    sdk = binance_client(binance.endpoints, KEY, SECRET)
    yield sdk
    sdk.close_connection()


def error_code(call: Any) -> int:
    with pytest.raises(BinanceAPIException) as info:
        call()
    return int(info.value.code)


def test_leverage_bracket_numbers_list_and_single_object(client: Client) -> None:
    every = client.futures_leverage_bracket()
    assert [row["symbol"] for row in every] == [BTC, ETH]
    one = client.futures_leverage_bracket(symbol=BTC)
    assert isinstance(one, dict) and one == every[0]
    first, second = one["brackets"][:2]
    assert first == {"bracket": 1, "initialLeverage": 125, "notionalCap": 50000, "notionalFloor": 0,
                     "maintMarginRatio": 0.004, "cum": 0.0}
    assert isinstance(second["notionalCap"], int) and isinstance(second["cum"], float)
    assert D(str(second["cum"])) == DEFAULT_BRACKETS[1].cum


def test_account_v2_v3_are_the_engine_figures(binance: BinanceEmulator, client: Client) -> None:
    client.futures_create_order(symbol=BTC, side="BUY", type="MARKET", quantity="0.1")
    client.futures_create_order(symbol=ETH, side="BUY", type="LIMIT", timeInForce="GTC", quantity="1",
                                price="2900")
    binance.engine.set_price(BTC, D("60500"))
    wallet = binance.engine.wallet()
    v3 = client.futures_account(version=3)
    v2 = client.futures_account()
    for account in (v2, v3):
        assert D(account["totalMaintMargin"]) == wallet.maintenance_margin == D("24.2")  # 6050 * 0.4%
        assert D(account["totalPositionInitialMargin"]) == D(605)
        assert D(account["totalOpenOrderInitialMargin"]) == D(290)
        assert D(account["totalInitialMargin"]) == D(895)
        assert D(account["totalUnrealizedProfit"]) == D(50)
        assert D(account["totalMarginBalance"]) == wallet.wallet_balance + D(50)
        assert D(account["availableBalance"]) == wallet.margin_balance - D(895)
        assert all(isinstance(v, str) for k, v in account.items() if k.startswith("total"))
        [asset] = account["assets"]
        assert (asset["asset"], D(asset["maintMargin"])) == ("USDT", D("24.2"))
    assert [(p["symbol"], p["positionAmt"], D(p["initialMargin"])) for p in v3["positions"]] == [
        (BTC, "0.1", D(605)), (ETH, "0", D(290))]
    assert D(v3["positions"][0]["notional"]) == D(6050)
    assert [(p["symbol"], p["leverage"], p["positionSide"]) for p in v2["positions"]] == [
        (BTC, "10", "BOTH"), (ETH, "10", "BOTH")]
    assert {"feeTier", "canTrade", "multiAssetsMargin"} <= set(v2) and "feeTier" not in v3
    risk = {row["symbol"]: row for row in client.futures_position_information()}
    assert [D(risk[BTC][k]) for k in ("initialMargin", "positionInitialMargin", "openOrderInitialMargin",
                                      "maintMargin")] == [D(605), D(605), D(0), D("24.2")]
    assert [D(risk[ETH][k]) for k in ("initialMargin", "openOrderInitialMargin")] == [D(290), D(290)]


def test_change_leverage_pushes_account_config_update(binance: BinanceEmulator, client: Client) -> None:
    key = client.futures_stream_get_listen_key()
    with connect(f"{binance.endpoints.ws}/private/ws?listenKey={key}", open_timeout=5) as ws:
        answer = client.futures_change_leverage(symbol=BTC, leverage=20)
        assert answer == {"leverage": 20, "maxNotionalValue": "15000000", "symbol": BTC}
        frame = json.loads(ws.recv(timeout=5))
    assert frame["e"] == "ACCOUNT_CONFIG_UPDATE" and frame["ac"] == {"s": BTC, "l": 20}
    assert binance.engine.leverage(BTC) == 20
    client.futures_create_order(symbol=BTC, side="BUY", type="MARKET", quantity="0.1")
    assert D(client.futures_account(version=3)["totalInitialMargin"]) == D(300)  # 6000 / 20
    assert error_code(lambda: client.futures_change_leverage(symbol=BTC, leverage=126)) == -4028


def test_orders_below_the_minimum_notional_are_rejected(binance: BinanceEmulator, client: Client) -> None:
    assert error_code(lambda: client.futures_create_order(symbol=ETH, side="BUY", type="MARKET",
                                                          quantity="0.001")) == -4164  # 3 USDT < 5
    client.futures_create_order(symbol=ETH, side="BUY", type="MARKET", quantity="0.002")
    client.futures_create_order(symbol=ETH, side="SELL", type="MARKET", quantity="0.001", reduceOnly="true")
    assert binance.engine.position(ETH, 0).size == D("0.001")  # reducing: any size


# --------------------------------------------------------------------------------------------- Bybit


@pytest.fixture
def bybit() -> Iterator[BybitEmulator]:
    with BybitEmulator(CONFIG, api_key=KEY, api_secret=SECRET, price_interval=0) as emu:
        yield emu


@pytest.fixture
def http(bybit: BybitEmulator) -> HTTP:
    return bybit_http(bybit.endpoints, KEY, SECRET)


def test_bybit_wallet_totals_are_the_engine_figures(bybit: BybitEmulator, http: HTTP) -> None:
    http.place_order(category="linear", symbol=BTC, side="Buy", orderType="Market", qty="0.1")
    http.place_order(category="linear", symbol=ETH, side="Buy", orderType="Limit", qty="1", price="2900")
    bybit.engine.set_price(BTC, D("60500"))
    [account] = http.get_wallet_balance(accountType="UNIFIED")["result"]["list"]
    wallet = bybit.engine.wallet()
    assert D(account["totalMaintenanceMargin"]) == wallet.maintenance_margin == D("24.2")
    assert D(account["totalInitialMargin"]) == D(895)
    assert D(account["totalMarginBalance"]) == wallet.margin_balance
    assert D(account["totalAvailableBalance"]) == wallet.margin_balance - D(895)
    expected_rate = (D("24.2") / wallet.margin_balance).quantize(D("1E-8"))
    assert D(account["accountMMRate"]) == wallet.mm_rate == expected_rate
    [coin] = account["coin"]
    assert (D(coin["totalPositionIM"]), D(coin["totalOrderIM"]), D(coin["totalPositionMM"])) == (
        D(605), D(290), D("24.2"))
    [row] = http.get_positions(category="linear", symbol=BTC)["result"]["list"]
    assert (D(row["positionIM"]), D(row["positionMM"]), row["leverage"]) == (D(605), D("24.2"), "10")
    [flat] = http.get_positions(category="linear", symbol=ETH)["result"]["list"]
    assert flat["createdTime"] != "0" and flat["seq"] == -1


def test_bybit_set_leverage(bybit: BybitEmulator, http: HTTP) -> None:
    http.set_leverage(category="linear", symbol=BTC, buyLeverage="25", sellLeverage="25")
    assert bybit.engine.leverage(BTC) == 25
    [row] = http.get_positions(category="linear", symbol=BTC)["result"]["list"]
    assert row["leverage"] == "25"
    for bad, code in (({"buyLeverage": "25", "sellLeverage": "25"}, 110043),
                      ({"buyLeverage": "20", "sellLeverage": "30"}, 10001),
                      ({"buyLeverage": "500", "sellLeverage": "500"}, 10001)):
        with pytest.raises(InvalidRequestError) as info:
            http.set_leverage(category="linear", symbol=BTC, **bad)
        assert info.value.status_code == code
    with pytest.raises(InvalidRequestError) as info:
        http.place_order(category="linear", symbol=ETH, side="Buy", orderType="Market", qty="0.001")
    assert info.value.status_code == 110094
