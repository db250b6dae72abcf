"""Order control (place / cancel) through the SDKs' own REST clients: never used to read state.

The grid strategy talks to an :class:`OrderGateway` (:mod:`gridbot.adapters._orders`); the two
implementations map its small vocabulary (side "Buy"/"Sell", ``position_idx`` 0 one-way / 1 hedge long /
2 hedge short) onto python-binance's ``Client`` (:mod:`gridbot.adapters.binance._gateway`) and pybit's
``HTTP`` (:mod:`gridbot.adapters.bybit._gateway`).  SDK exceptions are translated by each exchange's one
error map; the translated errors carry the exchange's code and message, and their SDK causes are
scrubbed of signed requests and key headers, so they are safe to log.
"""

from __future__ import annotations

from gridbot.adapters._orders import OrderGateway
from gridbot.adapters.binance._gateway import BinanceGateway, binance_rest_client
from gridbot.adapters.bybit._gateway import BybitGateway, bybit_rest_client
from gridbot.errors import OrderRejected, ReduceOnlyRejected

__all__ = ["BinanceGateway", "BybitGateway", "OrderGateway", "OrderRejected", "ReduceOnlyRejected",
           "binance_rest_client", "bybit_rest_client"]
