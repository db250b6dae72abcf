"""CCXT (REST and ccxt.pro websockets), unmodified, against both emulators: only its base URLs change
(``gridbot.emulator.ccxt_urls``) and it logs in with the test keys.  Every figure it parses is checked against
the emulator's engine, the source of truth.

ccxt is in the ``test`` extra: this module is never skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any, TypeVar

import ccxt
import ccxt.pro as ccxtpro
import pytest

from gridbot.emulator import BinanceEmulator, BybitEmulator, ccxt_urls
from gridbot.emulator.engine import EngineConfig, SymbolConfig

pytestmark = pytest.mark.timeout(90)

KEY, SECRET = "test-key", "test-secret"
SYMBOL, MARKET = "BTCUSDT", "BTC/USDT:USDT"
CONFIG = EngineConfig(symbols=(SymbolConfig(SYMBOL, Decimal("60000"), volatility=0.0),
                               SymbolConfig("ETHUSDT", Decimal("3000"), tick_size=Decimal("0.01"))))
WAIT = 20.0
T = TypeVar("T")
Emulator = BinanceEmulator | BybitEmulator


@pytest.fixture(params=["binance", "bybit"])
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    cls = BinanceEmulator if request.param == "binance" else BybitEmulator
    with cls(CONFIG, api_key=KEY, api_secret=SECRET, price_interval=0) as emu:
        yield emu


def client(emu: Emulator) -> Any:
    """The user's CCXT instance: the test keys and the emulator's URLs, nothing else."""
    if isinstance(emu, BinanceEmulator):
        exchange = ccxtpro.binanceusdm({"apiKey": KEY, "secret": SECRET})
    else:
        exchange = ccxtpro.bybit({"apiKey": KEY, "secret": SECRET, "options": {"defaultType": "swap"}})
    exchange.urls["api"] = ccxt_urls(exchange.urls["api"], emu.endpoints)
    return exchange


def run(emu: Emulator, scenario: Callable[[Any], Awaitable[None]]) -> None:
    async def main() -> None:
        exchange = client(emu)
        try:
            await asyncio.wait_for(scenario(exchange), 60)
        finally:
            await exchange.close()

    asyncio.run(main())


async def until(watch: Callable[[], Awaitable[T]], accept: Callable[[T], bool]) -> T:
    """Await ``watch()`` until an answer passes ``accept`` (watchers return every update), bounded."""
    async def loop() -> T:
        while True:
            value = await watch()
            if accept(value):
                return value

    return await asyncio.wait_for(loop(), WAIT)


def test_rest_markets_ticker_balance_positions_orders_trades(emulator: Emulator) -> None:
    engine = emulator.engine

    async def scenario(ex: Any) -> None:
        markets = await ex.load_markets()
        market = markets[MARKET]
        assert (market["id"], market["linear"], market["contract"]) == (SYMBOL, True, True)
        assert market["precision"]["amount"] == 0.001 and market["precision"]["price"] == 0.1
        assert market["limits"]["amount"]["min"] == 0.001 and market["limits"]["cost"]["min"] == 5

        engine.set_price(SYMBOL, Decimal("60100"))
        ticker = await ex.fetch_ticker(MARKET)
        assert Decimal(str(ticker["last"])) == Decimal("60100")

        balance = await ex.fetch_balance()
        assert Decimal(str(balance["USDT"]["total"])) == engine.wallet().wallet_balance

        resting = await ex.create_order(MARKET, "limit", "buy", 0.01, 59000)
        fetched = await ex.fetch_order(resting["id"], MARKET, {"acknowledged": True})
        assert (fetched["status"], fetched["price"], fetched["amount"]) == ("open", 59000, 0.01)
        assert [o["id"] for o in await ex.fetch_open_orders(MARKET)] == [resting["id"]]
        await ex.cancel_order(resting["id"], MARKET)
        assert (await ex.fetch_order(resting["id"], MARKET, {"acknowledged": True}))["status"] == "canceled"
        assert await ex.fetch_open_orders(MARKET) == []

        await ex.create_order(MARKET, "market", "buy", 0.02)
        [position] = [p for p in await ex.fetch_positions([MARKET]) if p["contracts"]]
        slot = engine.position(SYMBOL, 0)
        assert (position["side"], position["contracts"]) == ("long", 0.02) and slot.size == Decimal("0.02")
        assert Decimal(str(position["entryPrice"])) == slot.entry_price == Decimal("60100")

        trades = await ex.fetch_my_trades(MARKET)
        [fill] = engine.fills(SYMBOL)
        assert [(t["side"], t["amount"], t["price"]) for t in trades] == [("buy", 0.02, 60100)]
        assert Decimal(str(trades[0]["fee"]["cost"])) == fill.fee

    run(emulator, scenario)


async def pumping(action: Callable[[], Awaitable[None] | None], until_done: Awaitable[T]) -> T:
    """Repeat ``action`` every 0.1 s until ``until_done`` completes: a watcher sees only what happens after
    it subscribed, and ccxt offers no hook for that moment, so the change is repeated until one is seen."""
    task = asyncio.ensure_future(until_done)
    while not task.done():
        result = action()
        if result is not None:
            await result
        await asyncio.wait({task}, timeout=0.1)
    return task.result()


def test_pro_watchers_see_prices_orders_fills_positions_and_balance(emulator: Emulator) -> None:
    engine = emulator.engine
    prices = iter(Decimal(60000) + step for step in range(1, 10_000))

    async def scenario(ex: Any) -> None:
        await ex.load_markets()
        pumped: list[Decimal] = []

        def move() -> None:
            pumped.append(next(prices))
            engine.set_price(SYMBOL, pumped[-1])

        ticker = await pumping(move, until(lambda: ex.watch_ticker(MARKET),
                                           lambda t: Decimal(str(t["last"])) in pumped))
        assert ticker["symbol"] == MARKET

        placed: list[str] = []

        async def buy() -> None:
            placed.append((await ex.create_order(MARKET, "market", "buy", 0.001))["id"])

        watchers = asyncio.gather(
            until(lambda: ex.watch_orders(MARKET), lambda os: any(o["status"] == "closed" for o in os)),
            until(lambda: ex.watch_my_trades(MARKET), bool),
            until(lambda: ex.watch_positions([MARKET]), lambda ps: any(p["contracts"] for p in ps)),
            until(ex.watch_balance, lambda b: b.get("USDT", {}).get("total") is not None),
        )
        orders, trades, positions, balance = await pumping(buy, watchers)

        fills = engine.fills(SYMBOL)
        closed = [o for o in orders if o["status"] == "closed"]
        assert closed and all(o["id"] in placed and o["filled"] == 0.001 for o in closed)
        engine_fills = {(f.side.lower(), f.qty, f.price) for f in fills}
        seen = {(t["side"], Decimal(str(t["amount"])), Decimal(str(t["price"]))) for t in trades}
        assert seen <= engine_fills
        sizes = {Decimal("0.001") * n for n in range(1, len(fills) + 1)}
        held = [p for p in positions if p["contracts"]]
        assert all(p["side"] == "long" and Decimal(str(p["contracts"])) in sizes for p in held)
        start = CONFIG.wallet_balance
        balances = {start - sum((f.fee for f in fills[:n]), Decimal(0)) for n in range(len(fills) + 1)}
        assert Decimal(str(balance["USDT"]["total"])) in balances

    run(emulator, scenario)


def test_rejections_carry_the_exchange_codes(emulator: Emulator) -> None:
    """ccxt picks Binance's futures error table by hostname (fapi.binance.com), so on 127.0.0.1 the
    futures codes -4164 and -2019 surface as the base ExchangeError; Bybit's map to their own classes."""
    binance = isinstance(emulator, BinanceEmulator)
    below_minimum = ccxt.ExchangeError if binance else ccxt.InvalidOrder
    no_margin = ccxt.ExchangeError if binance else ccxt.InsufficientFunds

    async def scenario(ex: Any) -> None:
        await ex.load_markets()
        with pytest.raises(below_minimum) as info:
            await ex.create_order("ETH/USDT:USDT", "market", "buy", 0.001)  # 3 USDT, below the 5 minimum
        assert ("-4164" if binance else "110094") in str(info.value)
        with pytest.raises(no_margin) as info:
            await ex.create_order(MARKET, "market", "buy", 100)  # 6,000,000 USDT at 10x on 10,000
        assert ("-2019" if binance else "110007") in str(info.value)

    run(emulator, scenario)


def test_wrong_secret_is_an_authentication_error(emulator: Emulator) -> None:
    async def main() -> None:
        exchange = client(emulator)
        exchange.secret = "not-the-secret"
        try:
            with pytest.raises(ccxt.AuthenticationError):
                await exchange.fetch_balance()
        finally:
            await exchange.close()

    asyncio.run(main())
