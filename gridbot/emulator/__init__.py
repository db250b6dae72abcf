"""A loopback Binance USDⓈ-M and Bybit v5 exchange (REST + WebSocket) for tests, the demo and benchmarks.

Like httpx's ``MockTransport``, it lets code that uses the *real* SDKs run offline: each emulator
serves its exchange's wire protocol on 127.0.0.1, and ``emulator.endpoints`` points
:class:`gridbot.ExchangeStream` (or python-binance / pybit clients) at it::

    from gridbot import ExchangeStream
    from gridbot.emulator import BybitEmulator

    with BybitEmulator(price_interval=0.05) as exchange:
        stream = ExchangeStream("bybit", api_key="test-key", api_secret="test-secret",
                                endpoints=exchange.endpoints)
        ...

Any other client needs only its base URLs and the test keys (``"test-key"`` / ``"test-secret"``)::

    client = binance.Client("test-key", "test-secret", ping=False)       # python-binance
    client.API_URL, client.FUTURES_URL = rest + "/api", rest + "/fapi"   # rest = exchange.endpoints.rest

    session = pybit.unified_trading.HTTP(api_key="test-key", api_secret="test-secret")
    session.endpoint = exchange.endpoints.rest                           # pybit

    ex = ccxt.pro.binanceusdm({"apiKey": "test-key", "secret": "test-secret"})   # or ccxt.pro.bybit
    ex.urls["api"] = ccxt_urls(ex.urls["api"], exchange.endpoints)               # CCXT, REST and ccxt.pro

(the README's emulator section has each as a complete, tested example).

``exchange.engine`` is the matching and accounting engine behind both (place orders, move prices with
``set_price`` or a seeded ``step``, change leverage, force-close with ``liquidate``, read the fills, the
ledger and the account); ``exchange.faults`` injects disconnects, listenKey expiry, malformed, duplicate
and out-of-order frames, paused streams, auth rejection and slow or failing REST;
``exchange.rest_calls`` counts REST requests per path.  Known differences from the real exchanges
are listed in the docstrings of :mod:`gridbot.emulator.engine`, :mod:`gridbot.emulator.binance`
and :mod:`gridbot.emulator.bybit`.
"""

from gridbot.emulator._clients import ccxt_urls
from gridbot.emulator.binance import BinanceEmulator, BinanceFaults
from gridbot.emulator.bybit import BybitEmulator, BybitFaults
from gridbot.emulator.engine import Engine, EngineConfig, EngineError, SymbolConfig
from gridbot.emulator.margin import LeverageBracket, leverage_brackets

__all__ = [
    "BinanceEmulator",
    "BinanceFaults",
    "BybitEmulator",
    "BybitFaults",
    "Engine",
    "EngineConfig",
    "EngineError",
    "LeverageBracket",
    "SymbolConfig",
    "ccxt_urls",
    "leverage_brackets",
]
