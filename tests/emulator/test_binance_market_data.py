"""Binance market data and exchange info as python-binance's ``Client`` reads them: exchangeInfo filters
(MIN_NOTIONAL, precisions, onboardDate), 24-hour ticker, price and book tickers, premium index, the
``<symbol>@ticker`` / ``@miniTicker`` streams, and the spot-wallet reads CCXT starts with."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from binance import Client
from websockets.sync.client import connect

from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.engine import EngineConfig, SymbolConfig
from tests.emulator.sdk_clients import binance_client

pytestmark = pytest.mark.timeout(60)

KEY, SECRET = "test-key", "test-secret"
T0 = 1_700_000_000_000
CONFIG = EngineConfig(symbols=(SymbolConfig("BTCUSDT", Decimal("60000"), volatility=0.0),
                               SymbolConfig("ETHUSDT", Decimal("3000"), tick_size=Decimal("0.01"),
                                            qty_step=Decimal("0.01"), min_notional=Decimal("20"))))


@pytest.fixture
def emu() -> Iterator[BinanceEmulator]:
    with BinanceEmulator(CONFIG, api_key=KEY, api_secret=SECRET, price_interval=0,
                         clock=lambda: T0) as server:
        yield server


@pytest.fixture
def client(emu: BinanceEmulator) -> Iterator[Client]:
    sdk = binance_client(emu.endpoints, KEY, SECRET)
    yield sdk
    sdk.close_connection()


def test_exchange_info_has_the_filters_and_precisions(client: Client) -> None:
    info = client.futures_exchange_info()
    eth = next(s for s in info["symbols"] if s["symbol"] == "ETHUSDT")
    filters = {f["filterType"]: f for f in eth["filters"]}
    assert filters["MIN_NOTIONAL"]["notional"] == "20" and filters["PRICE_FILTER"]["tickSize"] == "0.01"
    assert filters["LOT_SIZE"]["stepSize"] == "0.01" and {"MAX_NUM_ORDERS", "PERCENT_PRICE"} <= set(filters)
    assert (eth["pricePrecision"], eth["quantityPrecision"], eth["onboardDate"]) == (2, 2, T0)
    assert (eth["baseAsset"], eth["quoteAsset"], eth["contractType"]) == ("ETH", "USDT", "PERPETUAL")


def test_tickers_and_premium_index(emu: BinanceEmulator, client: Client) -> None:
    emu.engine.set_price("BTCUSDT", Decimal("61000"))
    emu.engine.set_price("BTCUSDT", Decimal("59500"))
    day = client.futures_ticker(symbol="BTCUSDT")
    assert [Decimal(day[k]) for k in ("openPrice", "highPrice", "lowPrice", "lastPrice", "priceChange")] == [
        60000, 61000, 59500, 59500, -500]
    assert day["priceChangePercent"] == "-0.833" and day["closeTime"] == T0
    assert [row["symbol"] for row in client.futures_ticker()] == ["BTCUSDT", "ETHUSDT"]
    price = client.futures_symbol_ticker(symbol="BTCUSDT")
    assert (Decimal(price["price"]), price["time"]) == (Decimal("59500"), T0)
    book = client.futures_orderbook_ticker(symbol="BTCUSDT")
    assert (Decimal(book["bidPrice"]), Decimal(book["askPrice"])) == (Decimal("59500"), Decimal("59500.1"))
    mark = client.futures_mark_price(symbol="BTCUSDT")
    assert Decimal(mark["markPrice"]) == Decimal("59500") and mark["lastFundingRate"] == "0.0001"
    assert len(client.futures_mark_price()) == 2


def test_ticker_streams_carry_the_day_figures(emu: BinanceEmulator) -> None:
    with connect(f"{emu.endpoints.ws}/market/stream?streams=btcusdt@ticker/btcusdt@miniTicker",
                 open_timeout=5) as ws:
        emu.engine.set_price("BTCUSDT", Decimal("60300"))
        frames: dict[str, Any] = {}
        while len(frames) < 2:
            frame = json.loads(ws.recv(timeout=5))
            frames[frame["stream"]] = frame["data"]
    full, mini = frames["btcusdt@ticker"], frames["btcusdt@miniTicker"]
    assert full["e"] == "24hrTicker" and mini["e"] == "24hrMiniTicker"
    assert [Decimal(full[k]) for k in ("c", "o", "h", "p")] == [60300, 60000, 60300, 300]
    assert [Decimal(mini[k]) for k in ("c", "l")] == [60300, 60000]


def test_the_spot_wallet_reads_ccxt_starts_with(emu: BinanceEmulator, client: Client) -> None:
    client.MARGIN_API_URL = emu.endpoints.rest + "/sapi"
    coins = client._request_margin_api("get", "capital/config/getall", True, data={})
    assert [c["coin"] for c in coins] == ["USDT", "BTC", "ETH"]
    assert all(c["free"] == "0" and c["networkList"] for c in coins)
    pairs = client._request_margin_api("get", "margin/allPairs", data={})
    assert [p["symbol"] for p in pairs] == ["BTCUSDT", "ETHUSDT"]
    assert emu.rest_calls["GET /sapi/v1/capital/config/getall"] == 1
