"""Order control (place / cancel) through the SDKs' own REST clients: never used to read state.

The grid strategy talks to an :class:`OrderGateway`; the two implementations map its small vocabulary
(side "Buy"/"Sell", ``position_idx`` 0 one-way / 1 hedge long / 2 hedge short) onto python-binance's
``Client`` and pybit's ``HTTP``.  SDK exceptions are translated in one place per exchange; the
translated errors carry the exchange's code and message but never the request (Binance puts the
signature in DELETE query strings), so they are safe to log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from gridbot.endpoints import Endpoints
from gridbot.errors import (
    AuthenticationError,
    ConnectError,
    GridbotError,
    OrderRejected,
    ReduceOnlyRejected,
)

__all__ = ["BinanceGateway", "BybitGateway", "OrderGateway", "OrderRejected", "ReduceOnlyRejected"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Codes that mean "these keys are not accepted", as opposed to "this order is not accepted".
_BINANCE_AUTH_CODES = frozenset({-2014, -2015, -1022, -2008})
_BYBIT_AUTH_CODES = frozenset({10003, 10004, 10005, 10007, 10009, 10010, 33004})
_BINANCE_POSITION_SIDE = {0: "BOTH", 1: "LONG", 2: "SHORT"}
# "ReduceOnly Order is rejected" / "Reduce-only rule not satisfied": nothing (left) to reduce.
_BINANCE_REDUCE_ONLY_CODES = frozenset({-2022})
_BYBIT_REDUCE_ONLY_CODES = frozenset({110017})


class OrderGateway(Protocol):
    """What a strategy needs to control orders; every call is one REST request."""

    def place_limit(
        self, symbol: str, side: str, qty: Decimal, price: Decimal, *,
        position_idx: int, reduce_only: bool, client_order_id: str,
    ) -> str:
        """Place a GTC limit order; returns the exchange's order id."""

    def place_market(
        self, symbol: str, side: str, qty: Decimal, *,
        position_idx: int, reduce_only: bool, client_order_id: str,
    ) -> str:
        """Place a market order; returns the exchange's order id."""

    def cancel(self, symbol: str, order_id: str) -> None:
        """Cancel an open order."""


def _check_side(side: str) -> None:
    if side not in ("Buy", "Sell"):
        raise ValueError(f"side must be 'Buy' or 'Sell', not {side!r}")


def _check_position_idx(position_idx: int) -> None:
    if position_idx not in (0, 1, 2):
        raise ValueError(f"position_idx must be 0, 1 or 2, not {position_idx!r}")


# ---------------------------------------------------------------------------------------------- Binance


def binance_rest_client(
    api_key: str, api_secret: str, *, testnet: bool = False, demo: bool = False,
    endpoints: Endpoints | None = None,
) -> Any:
    """A python-binance ``Client`` for USDⓈ-M futures, pointed at ``endpoints`` when given.

    ``ping=False``: the constructor would otherwise call the real host before we could redirect it.
    """
    from binance.client import Client

    client = Client(api_key, api_secret, testnet=testnet and endpoints is None,
                    demo=demo and endpoints is None, ping=False)
    if endpoints is not None:
        client.API_URL = f"{endpoints.rest}/api"
        client.FUTURES_URL = f"{endpoints.rest}/fapi"
    return client


def _binance_call(action: str, call: Callable[[], _T]) -> _T:
    """Run one python-binance request; translate its exceptions into gridbot errors."""
    import requests
    from binance.exceptions import BinanceAPIException, BinanceRequestException

    try:
        return call()
    except BinanceAPIException as exc:
        code = int(exc.code) if isinstance(exc.code, int) else None
        message = f"binance {action}: {exc.message} (code {exc.code}, HTTP {exc.status_code})"
        if code in _BINANCE_AUTH_CODES or exc.status_code == 401:
            raise AuthenticationError(message) from None
        if code in _BINANCE_REDUCE_ONLY_CODES:
            raise ReduceOnlyRejected(message, code) from None
        raise OrderRejected(message, code) from None
    except BinanceRequestException as exc:
        raise GridbotError(f"binance {action}: invalid response: {exc.message}") from None
    except requests.RequestException as exc:
        # str(exc) may hold the URL, whose query string carries the signature: name the type only.
        raise ConnectError(f"binance {action}: {type(exc).__name__}") from None


class BinanceGateway:
    """USDⓈ-M futures orders through python-binance.

    Hedge mode (``position_idx`` 1/2) sends ``positionSide`` LONG/SHORT and never ``reduceOnly``
    (Binance rejects the flag there: a SELL on LONG can only reduce anyway); one-way mode sends
    ``reduceOnly`` when asked.
    """

    exchange = "binance"

    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    def connect(
        cls, api_key: str, api_secret: str, *, testnet: bool = False, demo: bool = False,
        endpoints: Endpoints | None = None, sync_clock: bool = True,
    ) -> BinanceGateway:
        """A gateway on its own client; ``sync_clock`` measures the server clock offset once
        (``GET /fapi/v1/time``), as python-binance's own start does, so signed requests are not
        refused for a drifting local clock."""
        client = binance_rest_client(api_key, api_secret, testnet=testnet, demo=demo, endpoints=endpoints)
        if sync_clock:
            server = _binance_call("reading the server time", client.futures_time)
            client.timestamp_offset = int(server["serverTime"]) - int(time.time() * 1000)
        return cls(client)

    def __repr__(self) -> str:
        return "<BinanceGateway>"

    def place_limit(
        self, symbol: str, side: str, qty: Decimal, price: Decimal, *,
        position_idx: int, reduce_only: bool, client_order_id: str,
    ) -> str:
        params = self._order_params(symbol, side, qty, position_idx, reduce_only, client_order_id)
        params.update(type="LIMIT", timeInForce="GTC", price=format(price, "f"))
        return self._create(params)

    def place_market(
        self, symbol: str, side: str, qty: Decimal, *,
        position_idx: int, reduce_only: bool, client_order_id: str,
    ) -> str:
        params = self._order_params(symbol, side, qty, position_idx, reduce_only, client_order_id)
        params.update(type="MARKET")
        return self._create(params)

    def cancel(self, symbol: str, order_id: str) -> None:
        _binance_call("cancel", lambda: self._client.futures_cancel_order(
            symbol=symbol, orderId=int(order_id)))

    @staticmethod
    def _order_params(
        symbol: str, side: str, qty: Decimal, position_idx: int, reduce_only: bool, client_order_id: str,
    ) -> dict[str, Any]:
        _check_side(side)
        _check_position_idx(position_idx)
        params: dict[str, Any] = {
            "symbol": symbol, "side": side.upper(), "quantity": format(qty, "f"),
            "positionSide": _BINANCE_POSITION_SIDE[position_idx],
        }
        if client_order_id:
            params["newClientOrderId"] = client_order_id
        if reduce_only and position_idx == 0:
            params["reduceOnly"] = "true"
        return params

    def _create(self, params: dict[str, Any]) -> str:
        answer = _binance_call("place order", lambda: self._client.futures_create_order(**params))
        return str(answer["orderId"])


# ------------------------------------------------------------------------------------------------ Bybit


def bybit_rest_client(
    api_key: str, api_secret: str, *, testnet: bool = False, demo: bool = False,
    endpoints: Endpoints | None = None,
) -> Any:
    """A pybit ``HTTP`` session, pointed at ``endpoints`` when given (its ``endpoint`` attribute is
    the host every request path is appended to)."""
    from pybit.unified_trading import HTTP

    session = HTTP(testnet=testnet, demo=demo, api_key=api_key, api_secret=api_secret, max_retries=1)
    if endpoints is not None:
        session.endpoint = endpoints.rest
    return session


def _bybit_call(action: str, call: Callable[[], _T]) -> _T:
    """Run one pybit request; translate its exceptions into gridbot errors."""
    import requests
    from pybit.exceptions import FailedRequestError, InvalidRequestError

    try:
        return call()
    except InvalidRequestError as exc:
        code = exc.status_code if isinstance(exc.status_code, int) else None
        message = f"bybit {action}: {exc.message} (retCode {exc.status_code})"
        if code in _BYBIT_AUTH_CODES:
            raise AuthenticationError(message) from None
        if code in _BYBIT_REDUCE_ONLY_CODES:
            raise ReduceOnlyRejected(message, code) from None
        raise OrderRejected(message, code) from None
    except FailedRequestError as exc:
        message = f"bybit {action}: {exc.message} (HTTP {exc.status_code})"
        if exc.status_code == 401:
            raise AuthenticationError(message) from None
        raise ConnectError(message) from None
    except requests.RequestException as exc:
        raise ConnectError(f"bybit {action}: {type(exc).__name__}") from None


class BybitGateway:
    """v5 linear orders through pybit (``category="linear"``, ``positionIdx`` as given)."""

    exchange = "bybit"

    def __init__(self, session: Any) -> None:
        self._session = session

    @classmethod
    def connect(
        cls, api_key: str, api_secret: str, *, testnet: bool = False, demo: bool = False,
        endpoints: Endpoints | None = None,
    ) -> BybitGateway:
        return cls(bybit_rest_client(api_key, api_secret, testnet=testnet, demo=demo, endpoints=endpoints))

    def __repr__(self) -> str:
        return "<BybitGateway>"

    def place_limit(
        self, symbol: str, side: str, qty: Decimal, price: Decimal, *,
        position_idx: int, reduce_only: bool, client_order_id: str,
    ) -> str:
        params = self._order_params(symbol, side, qty, position_idx, reduce_only, client_order_id)
        params.update(orderType="Limit", timeInForce="GTC", price=format(price, "f"))
        return self._create(params)

    def place_market(
        self, symbol: str, side: str, qty: Decimal, *,
        position_idx: int, reduce_only: bool, client_order_id: str,
    ) -> str:
        params = self._order_params(symbol, side, qty, position_idx, reduce_only, client_order_id)
        params.update(orderType="Market")
        return self._create(params)

    def cancel(self, symbol: str, order_id: str) -> None:
        _bybit_call("cancel", lambda: self._session.cancel_order(
            category="linear", symbol=symbol, orderId=order_id))

    @staticmethod
    def _order_params(
        symbol: str, side: str, qty: Decimal, position_idx: int, reduce_only: bool, client_order_id: str,
    ) -> dict[str, Any]:
        _check_side(side)
        _check_position_idx(position_idx)
        params: dict[str, Any] = {
            "category": "linear", "symbol": symbol, "side": side, "qty": format(qty, "f"),
            "positionIdx": position_idx, "reduceOnly": reduce_only,
        }
        if client_order_id:
            params["orderLinkId"] = client_order_id
        return params

    def _create(self, params: dict[str, Any]) -> str:
        answer = _bybit_call("place order", lambda: self._session.place_order(**params))
        return str(answer["result"]["orderId"])
