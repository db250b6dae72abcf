"""Bybit wire messages for the normalizer benchmark, in the shapes of the official docs."""

from __future__ import annotations

from typing import Any

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


def ticker_snapshot(mark: str) -> dict[str, Any]:
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


def ticker_delta(**fields: str) -> dict[str, Any]:
    return {
        "topic": "tickers.BTCUSDT",
        "type": "delta",
        "data": {"symbol": "BTCUSDT", **fields},
        "cs": 9532239430,
        "ts": 1760325052730,
    }
