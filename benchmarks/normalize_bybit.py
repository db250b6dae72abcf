"""Throughput of the pure Bybit normalizer on one core: messages per second per message kind.

Run: ``python benchmarks/normalize_bybit.py [seconds-per-case]``.  Messages are built in memory in the
shapes of the official docs examples (one row each), so nothing but the normalizer is measured.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gridbot.normalize.bybit import TickerMerger, parse_private_message

POSITION = {
    "topic": "position",
    "id": "bench",
    "creationTime": 1697682317044,
    "data": [
        {
            "positionIdx": 0,
            "symbol": "BTCUSDT",
            "side": "Buy",
            "size": "0.5",
            "entryPrice": "28100.5",
            "markPrice": "28184.5",
            "unrealisedPnl": "42",
            "cumRealisedPnl": "-25.06579337",
            "updatedTime": "1697682317038",
            "category": "linear",
        }
    ],
}
ORDER = {
    "topic": "order",
    "id": "bench",
    "creationTime": 1763095434847,
    "data": [
        {
            "category": "linear",
            "symbol": "BTCUSDT",
            "orderId": "8e91f790-0d27-4c26-92ec-d3467da90d07",
            "orderLinkId": "grid-1",
            "side": "Sell",
            "positionIdx": 0,
            "orderStatus": "Filled",
            "price": "28300",
            "qty": "0.01",
            "avgPrice": "28300",
            "cumExecQty": "0.01",
            "orderType": "Limit",
            "stopOrderType": "",
            "triggerPrice": "",
            "reduceOnly": True,
            "closeOnTrigger": False,
            "createType": "CreateByUser",
            "updatedTime": "1763095434846",
        }
    ],
}
EXECUTION = {
    "topic": "execution",
    "id": "bench",
    "creationTime": 1746270400355,
    "data": [
        {
            "category": "linear",
            "symbol": "BTCUSDT",
            "execFee": "26.3725275",
            "execId": "0ab1bdf7-4219-438b-b30a-32ec863018f7",
            "execPrice": "95900.1",
            "execQty": "0.5",
            "execType": "Trade",
            "orderId": "9aac161b-8ed6-450d-9cab-c5cc67c21784",
            "side": "Sell",
            "execTime": "1746270400353",
            "isMaker": False,
            "execPnl": "0.05",
            "feeCurrency": "USDT",
        }
    ],
}
WALLET = {
    "topic": "wallet",
    "id": "bench",
    "creationTime": 1700034722104,
    "data": [
        {
            "accountMMRate": "0.0012",
            "totalAvailableBalance": "9556.6056555",
            "coin": [{"coin": "USDT", "equity": "10262.91", "walletBalance": "9684.46297164"}],
        }
    ],
}


def _ticker_snapshot(mark: str) -> dict[str, Any]:
    return {
        "topic": "tickers.BTCUSDT",
        "type": "snapshot",
        "data": {
            "symbol": "BTCUSDT",
            "lastPrice": "66666.60",
            "markPrice": mark,
            "indexPrice": "66660.19",
            "nextFundingTime": "1760342400000",
            "fundingRate": "-0.005",
            "bid1Price": "66666.60",
            "ask1Price": "66666.70",
        },
        "cs": 9532239429,
        "ts": 1760325052630,
    }


def _ticker_delta(**fields: str) -> dict[str, Any]:
    return {
        "topic": "tickers.BTCUSDT",
        "type": "delta",
        "data": {"symbol": "BTCUSDT", **fields},
        "cs": 9532239430,
        "ts": 1760325052730,
    }


def _rate(
    handle: Callable[[Mapping[str, Any]], object], messages: Sequence[Mapping[str, Any]], seconds: float
) -> float:
    """Messages per second, cycling through ``messages`` for about ``seconds``."""
    handled = 0
    batch = 10_000
    count = len(messages)
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        for i in range(batch):
            handle(messages[i % count])
        handled += batch
        elapsed = time.perf_counter() - start
    return handled / elapsed


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    merger = TickerMerger()
    cases: list[tuple[str, Callable[[Mapping[str, Any]], object], list[dict[str, Any]]]] = [
        ("position", parse_private_message, [POSITION]),
        ("order", parse_private_message, [ORDER]),
        ("execution", parse_private_message, [EXECUTION]),
        ("wallet (1 coin)", parse_private_message, [WALLET]),
        (
            "ticker snapshot (mark moves)",
            merger.apply,
            [_ticker_snapshot("66666.60"), _ticker_snapshot("66667.10")],
        ),
        (
            "ticker delta (mark moves)",
            merger.apply,
            [_ticker_delta(markPrice="66666.6"), _ticker_delta(markPrice="66667.1")],
        ),
        (
            "ticker delta (bid/ask only)",
            merger.apply,
            [_ticker_delta(bid1Price="66666.5", ask1Price="66666.7")],
        ),
    ]
    print(f"gridbot.normalize.bybit, one core, {seconds:g} s per case")
    for name, handle, messages in cases:
        print(f"  {name:<30} {_rate(handle, messages, seconds):>12,.0f} msgs/s")


if __name__ == "__main__":
    main()
