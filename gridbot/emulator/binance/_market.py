"""Binance market data and the spot-wallet reads CCXT makes first: exchangeInfo symbols, 24-hour tickers
(REST ``GET /fapi/v1/ticker/24hr`` and the ``<symbol>@ticker`` stream), ``GET /sapi/v1/capital/config/getall``
and ``GET /sapi/v1/margin/allPairs``.  Pure functions and one small per-symbol accumulator (_DayStats).

The emulator has no order book and no other traders: 24-hour figures are those of the emulated price path
since the emulator started (open = the start price), volumes and trade counts are 0, and the spot wallet of
``capital/config/getall`` is empty (every balance "0"), as for a futures-only account.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gridbot.emulator.binance._wire import _fmt
from gridbot.emulator.engine import Prices, SymbolConfig

__all__ = [
    "DAY_MS",
    "_DayStats",
    "book_ticker",
    "coin_config",
    "exchange_symbol",
    "margin_pair",
    "mini_ticker_event",
    "premium_index",
    "price_ticker",
    "ticker_24hr",
    "ticker_event",
]

DAY_MS = 24 * 60 * 60 * 1000
_PERCENT = Decimal("0.001")


@dataclass
class _DayStats:
    """Open, high and low of a symbol's emulated price path (the emulator's whole life stands for 24 h)."""

    open_price: Decimal
    high: Decimal
    low: Decimal
    last: Decimal

    @classmethod
    def starting_at(cls, price: Decimal) -> _DayStats:
        return cls(price, price, price, price)

    def update(self, last: Decimal) -> None:
        self.last = last
        self.high = max(self.high, last)
        self.low = min(self.low, last)

    @property
    def change(self) -> Decimal:
        return self.last - self.open_price

    @property
    def change_percent(self) -> Decimal:
        return (self.change * 100 / self.open_price).quantize(_PERCENT) if self.open_price else Decimal(0)


def ticker_24hr(symbol: str, stats: _DayStats, now: int) -> dict[str, Any]:
    """A row of GET /fapi/v1/ticker/24hr (decimal strings; ids and times ints)."""
    return {
        "symbol": symbol,
        "priceChange": _fmt(stats.change),
        "priceChangePercent": _fmt(stats.change_percent),
        "weightedAvgPrice": _fmt(stats.last),
        "lastPrice": _fmt(stats.last),
        "lastQty": "0",
        "openPrice": _fmt(stats.open_price),
        "highPrice": _fmt(stats.high),
        "lowPrice": _fmt(stats.low),
        "volume": "0",
        "quoteVolume": "0",
        "openTime": now - DAY_MS,
        "closeTime": now,
        "firstId": 0,
        "lastId": 0,
        "count": 0,
    }


def ticker_event(prices: Prices, stats: _DayStats) -> dict[str, Any]:
    """A ``24hrTicker`` event of the ``<symbol>@ticker`` stream."""
    return {
        "e": "24hrTicker",
        "E": prices.timestamp,
        "s": prices.symbol,
        "p": _fmt(stats.change),
        "P": _fmt(stats.change_percent),
        "w": _fmt(stats.last),
        "c": _fmt(stats.last),
        "Q": "0",
        "o": _fmt(stats.open_price),
        "h": _fmt(stats.high),
        "l": _fmt(stats.low),
        "v": "0",
        "q": "0",
        "O": prices.timestamp - DAY_MS,
        "C": prices.timestamp,
        "F": 0,
        "L": 0,
        "n": 0,
    }


def mini_ticker_event(prices: Prices, stats: _DayStats) -> dict[str, Any]:
    """A ``24hrMiniTicker`` event of the ``<symbol>@miniTicker`` stream."""
    return {"e": "24hrMiniTicker", "E": prices.timestamp, "s": prices.symbol, "c": _fmt(stats.last),
            "o": _fmt(stats.open_price), "h": _fmt(stats.high), "l": _fmt(stats.low), "v": "0", "q": "0"}


def premium_index(prices: Prices, now: int) -> dict[str, Any]:
    """A row of GET /fapi/v1/premiumIndex (mark price and funding)."""
    return {"symbol": prices.symbol, "markPrice": _fmt(prices.mark), "indexPrice": _fmt(prices.index),
            "estimatedSettlePrice": _fmt(prices.index), "lastFundingRate": _fmt(prices.funding_rate),
            "interestRate": "0.00010000", "nextFundingTime": prices.next_funding_time, "time": now}


def price_ticker(prices: Prices, now: int) -> dict[str, Any]:
    """A row of GET /fapi/v1|v2/ticker/price."""
    return {"symbol": prices.symbol, "price": _fmt(prices.last), "time": now}


def book_ticker(prices: Prices, tick: Decimal, now: int) -> dict[str, Any]:
    """A row of GET /fapi/v1/ticker/bookTicker: no order book here, so bid = last, ask = last + one tick
    (as the Bybit emulator's ticker), sizes 1."""
    return {"symbol": prices.symbol, "bidPrice": _fmt(prices.last), "bidQty": "1",
            "askPrice": _fmt(prices.last + tick), "askQty": "1", "time": now, "lastUpdateId": 0}


def _places(step: Decimal) -> int:
    return max(0, -int(step.normalize().as_tuple().exponent))


def exchange_symbol(cfg: SymbolConfig, onboard_date: int, coin: str) -> dict[str, Any]:
    """A ``symbols[]`` row of GET /fapi/v1/exchangeInfo, with the filters of a real perpetual."""
    base = cfg.symbol[: -len(coin)] if cfg.symbol.endswith(coin) else cfg.symbol
    return {
        "symbol": cfg.symbol,
        "pair": cfg.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": onboard_date,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": base,
        "quoteAsset": coin,
        "marginAsset": coin,
        "pricePrecision": _places(cfg.tick_size),
        "quantityPrecision": _places(cfg.qty_step),
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        "filters": [
            {"filterType": "PRICE_FILTER", "tickSize": _fmt(cfg.tick_size), "minPrice": _fmt(cfg.tick_size),
             "maxPrice": "10000000"},
            {"filterType": "LOT_SIZE", "stepSize": _fmt(cfg.qty_step), "minQty": _fmt(cfg.qty_step),
             "maxQty": "100000"},
            {"filterType": "MARKET_LOT_SIZE", "stepSize": _fmt(cfg.qty_step), "minQty": _fmt(cfg.qty_step),
             "maxQty": "100000"},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": _fmt(cfg.min_notional)},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
             "multiplierDecimal": "4"},
        ],
    }


def coin_config(coin: str) -> dict[str, Any]:
    """A row of GET /sapi/v1/capital/config/getall: the spot wallet's view of a coin (balances 0)."""
    network = {
        "addressRegex": "", "coin": coin, "depositDesc": "", "depositEnable": True, "isDefault": True,
        "memoRegex": "", "minConfirm": 1, "name": coin, "network": coin, "specialTips": "",
        "unLockConfirm": 0, "withdrawDesc": "", "withdrawEnable": True, "withdrawFee": "0",
        "withdrawIntegerMultiple": "0.00000001", "withdrawMax": "9999999", "withdrawMin": "0",
        "sameAddress": False, "estimatedArrivalTime": 1, "busy": False, "contractAddressUrl": "",
        "contractAddress": "",
    }
    return {
        "coin": coin, "depositAllEnable": True, "free": "0", "freeze": "0", "ipoable": "0", "ipoing": "0",
        "isLegalMoney": False, "locked": "0", "name": coin, "networkList": [network], "storage": "0",
        "trading": True, "withdrawAllEnable": True, "withdrawing": "0",
    }


def margin_pair(number: int, base: str, quote: str) -> dict[str, Any]:
    """A row of GET /sapi/v1/margin/allPairs."""
    return {"base": base, "id": number, "isBuyAllowed": True, "isMarginTrade": True, "isSellAllowed": True,
            "quote": quote, "symbol": base + quote}
