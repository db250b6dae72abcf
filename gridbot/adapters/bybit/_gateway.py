"""Bybit's order gateway (place / cancel, v5 linear) on the adapter's REST session factory and error map.

Re-exported by :mod:`gridbot._gateways` with the rest of the order-control vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from gridbot._credentials import Credentials
from gridbot.adapters._orders import RestOrderGateway
from gridbot.adapters.bybit._errors import SDK_ERRORS, translate
from gridbot.adapters.bybit._rest import new_session
from gridbot.endpoints import Endpoints

__all__ = ["BybitGateway", "bybit_rest_client"]

_T = TypeVar("_T")


def bybit_rest_client(
    api_key: str, api_secret: str, *, testnet: bool = False, demo: bool = False,
    endpoints: Endpoints | None = None,
) -> Any:
    """A pybit ``HTTP`` session (secret masked, one attempt per request), pointed at ``endpoints`` when
    given."""
    return new_session(Credentials(api_key, api_secret), testnet=testnet, demo=demo, endpoints=endpoints)


class BybitGateway(RestOrderGateway):
    """v5 linear orders through pybit (``category="linear"``, ``positionIdx`` as given)."""

    exchange = "bybit"

    def __init__(self, session: Any, credentials: Credentials | None = None) -> None:
        self._session = session
        self._credentials = credentials

    @classmethod
    def connect(
        cls, api_key: str, api_secret: str, *, testnet: bool = False, demo: bool = False,
        endpoints: Endpoints | None = None,
    ) -> BybitGateway:
        credentials = Credentials(api_key, api_secret)
        return cls(new_session(credentials, testnet=testnet, demo=demo, endpoints=endpoints), credentials)

    def __repr__(self) -> str:
        return "<BybitGateway>"

    def cancel(self, symbol: str, order_id: str) -> None:
        self._call("cancel", lambda: self._session.cancel_order(
            category="linear", symbol=symbol, orderId=order_id))

    def _order_params(
        self, symbol: str, side: str, qty: Decimal, position_idx: int, reduce_only: bool,
        client_order_id: str,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "category": "linear", "symbol": symbol, "side": side, "qty": format(qty, "f"),
            "positionIdx": position_idx, "reduceOnly": reduce_only,
        }
        if client_order_id:
            params["orderLinkId"] = client_order_id
        return params

    def _limit_fields(self, price: Decimal) -> dict[str, Any]:
        return {"orderType": "Limit", "timeInForce": "GTC", "price": format(price, "f")}

    def _market_fields(self) -> dict[str, Any]:
        return {"orderType": "Market"}

    def _create(self, params: dict[str, Any]) -> str:
        answer = self._call("place order", lambda: self._session.place_order(**params))
        return str(answer["result"]["orderId"])

    def _call(self, action: str, call: Callable[[], _T]) -> _T:
        """One pybit request; its exceptions become gridbot errors by the one Bybit error map (the
        cause kept, scrubbed of request data)."""
        try:
            return call()
        except SDK_ERRORS as exc:
            raise translate(exc, f"bybit {action}", self._redact, orders=True) from exc

    def _redact(self, text: str) -> str:
        return self._credentials.redact(text) if self._credentials is not None else text
