"""Binance's one error map: python-binance, requests, aiohttp and websockets exceptions → gridbot errors.

Used by the stream adapter (:func:`translated`) and the order gateway (:func:`translate_order_error`),
so a code means the same everywhere.  Every translation is ``raise ... from`` the SDK exception, after
:meth:`~gridbot._credentials.Credentials.scrub` removed what it keeps of the request: python-binance's
``.request``/``.response`` (signed URL, ``X-MBX-APIKEY`` header), requests' signed URL in the message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import aiohttp
import requests
import websockets.exceptions
from binance.exceptions import BinanceAPIException, BinanceRequestException

from gridbot._credentials import Credentials
from gridbot.errors import (
    AuthenticationError,
    ConnectError,
    GridbotError,
    OrderRejected,
    ReduceOnlyRejected,
)

__all__ = ["AUTH_CODES", "UNKNOWN_ORDER_CODES", "is_unknown_order", "translate", "translate_order_error",
           "translated"]

# Codes that mean "these keys are not accepted", as opposed to "this request is not accepted":
# -2014 bad API-key format, -2015 invalid API-key, IP or permissions, -1022 invalid signature,
# -2008 invalid API-key ID.  HTTP 401 is the status Binance answers them with.
AUTH_CODES: Final = frozenset({-2014, -2015, -1022, -2008})
# "Order does not exist" / "Unknown order sent": the exchange no longer knows the order.
UNKNOWN_ORDER_CODES: Final = frozenset({-2013, -2011})
# "ReduceOnly Order is rejected": nothing (left) to reduce.
REDUCE_ONLY_CODES: Final = frozenset({-2022})
_NETWORK_ERRORS: Final = (requests.RequestException, aiohttp.ClientError, OSError, asyncio.TimeoutError,
                          concurrent.futures.TimeoutError, websockets.exceptions.WebSocketException)


def _is_auth_failure(exc: BinanceAPIException) -> bool:
    return exc.code in AUTH_CODES or exc.status_code == 401


def is_unknown_order(error: GridbotError) -> bool:
    """``error`` was translated from Binance's "no such order" answer."""
    cause = error.__cause__
    return isinstance(cause, BinanceAPIException) and cause.code in UNKNOWN_ORDER_CODES


def translate(exc: BaseException, action: str, credentials: Credentials) -> GridbotError:
    """The gridbot error for ``exc`` raised while ``action`` (scrubs ``exc`` in place)."""
    credentials.scrub(exc)
    if isinstance(exc, BinanceAPIException):
        code, message = exc.code, credentials.redact(str(exc.message))
        if _is_auth_failure(exc):
            return AuthenticationError(
                f"Binance rejected the API key or signature while {action}: code {code}: {message}")
        return GridbotError(f"Binance refused {action}: code {code}: {message} (HTTP {exc.status_code})")
    detail = f"{type(exc).__name__}: {credentials.redact(str(exc))}"
    if isinstance(exc, _NETWORK_ERRORS):
        return ConnectError(f"cannot reach Binance while {action}: {detail}")
    if isinstance(exc, BinanceRequestException):
        return GridbotError(f"Binance sent an invalid answer while {action}: {detail}")
    return GridbotError(f"unexpected error while {action}: {detail}")


def translate_order_error(exc: BaseException, action: str, credentials: Credentials) -> GridbotError:
    """Like :func:`translate`, for an order request: a refusal that is not about the keys is an
    :class:`OrderRejected` (a :class:`ReduceOnlyRejected` when there was nothing to reduce) carrying
    Binance's code."""
    error = translate(exc, action, credentials)
    if not isinstance(exc, BinanceAPIException) or _is_auth_failure(exc):
        return error
    code = exc.code if isinstance(exc.code, int) else None
    reason = credentials.redact(str(exc.message))
    message = f"binance {action}: {reason} (code {exc.code}, HTTP {exc.status_code})"
    if code in REDUCE_ONLY_CODES:
        return ReduceOnlyRejected(message, code)
    return OrderRejected(message, code)


@contextmanager
def translated(action: str, credentials: Credentials) -> Iterator[None]:
    """The one place the stream adapter's SDK exceptions become gridbot errors (``raise ... from``)."""
    try:
        yield
    except GridbotError:
        raise
    except Exception as exc:
        raise translate(exc, action, credentials) from exc
