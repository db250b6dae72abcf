"""Order control (place / cancel) through the SDKs' own REST clients: never used to read state.

The grid strategy talks to an :class:`OrderGateway` (:mod:`gridbot.adapters._orders`); the two
implementations map its small vocabulary (side "Buy"/"Sell", ``position_idx`` 0 one-way / 1 hedge long /
2 hedge short) onto python-binance's ``Client`` (:mod:`gridbot.adapters.binance._gateway`) and pybit's
``HTTP``.  SDK exceptions are translated in one place per exchange; the translated errors carry the
exchange's code and message but never the request (Binance puts the signature in DELETE query strings),
so they are safe to log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from gridbot.adapters._orders import OrderGateway
from gridbot.adapters._orders import check_position_idx as _check_position_idx
from gridbot.adapters._orders import check_side as _check_side
from gridbot.adapters.binance._gateway import BinanceGateway, binance_rest_client
from gridbot.endpoints import Endpoints
from gridbot.errors import (
    AuthenticationError,
    ConnectError,
    OrderRejected,
    ReduceOnlyRejected,
)

__all__ = ["BinanceGateway", "BybitGateway", "OrderGateway", "OrderRejected", "ReduceOnlyRejected",
           "binance_rest_client", "bybit_rest_client"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# Codes that mean "these keys are not accepted", as opposed to "this order is not accepted".
_BYBIT_AUTH_CODES = frozenset({10003, 10004, 10005, 10007, 10009, 10010, 33004})
# "Reduce-only rule not satisfied": nothing (left) to reduce.
_BYBIT_REDUCE_ONLY_CODES = frozenset({110017})


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
