"""Pointing third-party clients at a loopback emulator: only their base URLs change.

python-binance and pybit take a URL attribute each (see the README); CCXT keeps every base URL in the nested
``exchange.urls["api"]`` dict, which :func:`ccxt_urls` rewrites: each ``https://host`` becomes
``endpoints.rest`` and each ``wss://host`` becomes ``endpoints.ws``, the exchange's paths unchanged.
"""

from __future__ import annotations

import re
from typing import Any

from gridbot.endpoints import Endpoints

__all__ = ["ccxt_urls"]

_REST_HOST = re.compile(r"^https?://[^/]+")
_WS_HOST = re.compile(r"^wss?://[^/]+")


def ccxt_urls(api: Any, endpoints: Endpoints) -> Any:
    """A copy of a CCXT ``exchange.urls["api"]`` value with every host replaced by the emulator's.

    ``exchange.urls["api"] = ccxt_urls(exchange.urls["api"], emulator.endpoints)`` is all a CCXT
    ``binanceusdm`` or ``bybit`` (REST and ccxt.pro) instance needs; non-URL values are kept as they are.
    """
    if isinstance(api, dict):
        return {key: ccxt_urls(value, endpoints) for key, value in api.items()}
    if isinstance(api, list):
        return [ccxt_urls(value, endpoints) for value in api]
    if isinstance(api, str):
        if api.startswith("ws"):
            return _WS_HOST.sub(endpoints.ws, api, count=1)
        return _REST_HOST.sub(endpoints.rest, api, count=1)
    return api
