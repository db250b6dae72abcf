"""The unmodified SDK clients, pointed at a loopback emulator: only their base URLs change."""

from __future__ import annotations

from binance import Client
from pybit.unified_trading import HTTP

from gridbot.endpoints import Endpoints


def binance_client(endpoints: Endpoints, key: str, secret: str) -> Client:
    """python-binance's REST client on the emulator (no ping at construction)."""
    client = Client(key, secret, ping=False)
    client.API_URL = endpoints.rest + "/api"
    client.FUTURES_URL = endpoints.rest + "/fapi"
    return client


def bybit_http(endpoints: Endpoints, key: str, secret: str) -> HTTP:
    """pybit's HTTP session on the emulator: one attempt per request, no sleeping between retries."""
    session = HTTP(api_key=key, api_secret=secret, max_retries=1, retry_delay=0)
    session.endpoint = endpoints.rest  # pybit builds https://api.bybit.com; point it at the emulator
    return session
