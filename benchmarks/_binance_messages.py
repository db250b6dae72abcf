"""Binance wire messages for the normalizer benchmark, in the shapes of the official docs."""

from __future__ import annotations

from typing import Any

ACCOUNT_UPDATE: dict[str, Any] = {
    "e": "ACCOUNT_UPDATE",
    "E": 1564745798939,
    "T": 1564745798938,
    "a": {
        "m": "ORDER",
        "B": [{"a": "USDT", "wb": "122624.12345678", "cw": "100.12345678", "bc": "50.12345678"}],
        "P": [
            {
                "s": "BTCUSDT", "pa": "20", "ep": "6563.66500", "bep": "0", "cr": "0",
                "up": "2850.21200", "mt": "isolated", "iw": "13200.70726908", "ps": "LONG",
            }
        ],
    },
}

ACCOUNT_UPDATE_POSITION_ONLY: dict[str, Any] = {
    **ACCOUNT_UPDATE, "a": {"m": "ORDER", "B": [], "P": ACCOUNT_UPDATE["a"]["P"]},
}

ORDER_TRADE_UPDATE: dict[str, Any] = {
    "e": "ORDER_TRADE_UPDATE",
    "E": 1568879465651,
    "T": 1568879465650,
    "o": {
        "s": "BTCUSDT", "c": "grid-17", "S": "SELL", "o": "LIMIT", "f": "GTC", "q": "0.010",
        "p": "7200.00", "ap": "7200.00", "sp": "0", "x": "TRADE", "X": "FILLED", "i": 8886774,
        "l": "0.010", "z": "0.010", "L": "7200.00", "N": "USDT", "n": "0.02880000",
        "T": 1568879465650, "t": 109100866, "b": "0", "a": "0", "m": True, "R": False,
        "wt": "CONTRACT_PRICE", "ot": "LIMIT", "ps": "LONG", "cp": False, "rp": "6.36650000",
        "pP": False, "si": 0, "ss": 0, "V": "EXPIRE_TAKER", "pm": "NONE", "gtd": 0,
    },
}

ALGO_UPDATE: dict[str, Any] = {
    "e": "ALGO_UPDATE",
    "T": 1750515742297,
    "E": 1750515742303,
    "o": {
        "caid": "Q5xaq5EGKgXXa0fD7fs0Ip", "aid": 2148719, "at": "CONDITIONAL", "o": "TAKE_PROFIT",
        "s": "BNBUSDT", "S": "SELL", "ps": "BOTH", "f": "GTC", "q": "0.01", "X": "TRIGGERED",
        "ai": "8886775", "ap": "0.00000", "aq": "0.00000", "act": "0", "tp": "750", "p": "750",
        "V": "EXPIRE_MAKER", "wt": "CONTRACT_PRICE", "pm": "NONE", "cp": False, "pP": False,
        "R": True, "tt": 0, "gtd": 0,
    },
}

MARK_PRICE: dict[str, Any] = {
    "stream": "btcusdt@markPrice@1s",
    "data": {
        "e": "markPriceUpdate", "E": 1562305380000, "s": "BTCUSDT", "p": "11794.15000000",
        "ap": "11794.15000000", "i": "11784.62659091", "P": "11784.25641265", "r": "0.00038167",
        "T": 1562306400000,
    },
}
