"""Binance USDⓈ-M futures order control (place / cancel) through python-binance's ``Client``.

Errors go through the one Binance error map (:func:`~gridbot.adapters.binance._errors.translate_order_error`,
``raise ... from`` the scrubbed SDK exception), so an order error names the exchange's code and message
but never the signed request.  The keys live in a :class:`~gridbot._credentials.Credentials` and the
client's secret attribute is masked: no repr reachable from a gateway shows the secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final, TypeVar

from gridbot._credentials import Credentials
from gridbot.adapters._orders import RestOrderGateway
from gridbot.adapters.binance._errors import translate_order_error
from gridbot.adapters.binance._manager import Hosts
from gridbot.adapters.binance._rest import new_client
from gridbot.endpoints import Endpoints
from gridbot.errors import GridbotError

__all__ = ["BinanceGateway", "binance_rest_client"]

_T = TypeVar("_T")

_POSITION_SIDE: Final = {0: "BOTH", 1: "LONG", 2: "SHORT"}
_NO_CREDENTIALS: Final = Credentials("", "")  # a gateway on a client it did not build: redacts signatures


def binance_rest_client(
    api_key: str, api_secret: str, *, testnet: bool = False, demo: bool = False,
    endpoints: Endpoints | None = None,
) -> Any:
    """A python-binance ``Client`` for USDⓈ-M futures, pointed at ``endpoints`` when given, its secret
    masked (``ping=False``: the constructor would otherwise call the real host before it is redirected)."""
    return new_client(Credentials(api_key, api_secret), Hosts.choose(endpoints, testnet=testnet, demo=demo),
                      testnet=testnet, demo=demo)


class BinanceGateway(RestOrderGateway):
    """USDⓈ-M futures orders through python-binance.

    Hedge mode (``position_idx`` 1/2) sends ``positionSide`` LONG/SHORT and never ``reduceOnly``
    (Binance rejects the flag there: a SELL on LONG can only reduce anyway); one-way mode sends
    ``reduceOnly`` when asked.
    """

    exchange = "binance"

    def __init__(self, client: Any, credentials: Credentials | None = None) -> None:
        self._client = client
        self._credentials = credentials or _NO_CREDENTIALS

    @classmethod
    def connect(
        cls, api_key: str, api_secret: str, *, testnet: bool = False, demo: bool = False,
        endpoints: Endpoints | None = None, sync_clock: bool = True,
    ) -> BinanceGateway:
        """A gateway on its own client; ``sync_clock`` measures the server clock offset once
        (``GET /fapi/v1/time``), as python-binance's own start does, so signed requests are not
        refused for a drifting local clock."""
        credentials = Credentials(api_key, api_secret)
        client = new_client(credentials, Hosts.choose(endpoints, testnet=testnet, demo=demo),
                            testnet=testnet, demo=demo)
        gateway = cls(client, credentials)
        if sync_clock:
            server = gateway._call("reading the server time", client.futures_time)
            client.timestamp_offset = int(server["serverTime"]) - int(time.time() * 1000)
        return gateway

    def __repr__(self) -> str:
        return "<BinanceGateway>"

    def cancel(self, symbol: str, order_id: str) -> None:
        self._call("cancel", lambda: self._client.futures_cancel_order(symbol=symbol, orderId=int(order_id)))

    def _order_params(
        self, symbol: str, side: str, qty: Decimal, position_idx: int, reduce_only: bool,
        client_order_id: str,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "symbol": symbol, "side": side.upper(), "quantity": format(qty, "f"),
            "positionSide": _POSITION_SIDE[position_idx],
        }
        if client_order_id:
            params["newClientOrderId"] = client_order_id
        if reduce_only and position_idx == 0:
            params["reduceOnly"] = "true"
        return params

    def _limit_fields(self, price: Decimal) -> dict[str, Any]:
        return {"type": "LIMIT", "timeInForce": "GTC", "price": format(price, "f")}

    def _market_fields(self) -> dict[str, Any]:
        return {"type": "MARKET"}

    def _create(self, params: dict[str, Any]) -> str:
        answer = self._call("place order", lambda: self._client.futures_create_order(**params))
        return str(answer["orderId"])

    def _call(self, action: str, call: Callable[[], _T]) -> _T:
        """One python-binance request, its exceptions translated by the Binance error map."""
        try:
            return call()
        except GridbotError:
            raise
        except Exception as exc:
            raise translate_order_error(exc, action, self._credentials) from exc
