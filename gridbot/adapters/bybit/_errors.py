"""Bybit's one error map: pybit, requests and socket exceptions become gridbot errors here, for the
adapter (stream REST and sockets) and the order gateway alike.

Bybit's error list (https://bybit-exchange.github.io/docs/v5/error) names seven ``retCode`` values that
mean "these keys cannot be used from here", whatever the request: 10003 "API key is invalid", 10004
"Error sign", 10005 "Permission denied, please check your API key permissions", 10007 "User
authentication failed", 10009 "IP has been banned", 10010 "Unmatched IP, please check your API key's
bound IP addresses" and 33004 "(Derivatives) Your api key has expired".  They are
:class:`~gridbot.errors.AuthenticationError` everywhere (the adapter used to know four, the gateway
seven); HTTP 401 too ("Need to use the correct key to access").

SDK causes are kept (``raise ... from``) but scrubbed first (:func:`scrub_chain`): requests' exceptions
hold the signed ``PreparedRequest`` (``X-BAPI-API-KEY`` / ``X-BAPI-SIGN`` headers) and its response,
pybit's hold the request line, and their tracebacks' frames hold the signing locals.  After scrubbing,
nothing reachable from an error gridbot raises carries a signature, the key header or the secret.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from pybit.exceptions import FailedRequestError, InvalidRequestError, UnauthorizedExceptionError
from websocket import WebSocketException

from gridbot.adapters import _supervisor as supervisor
from gridbot.errors import (
    AuthenticationError,
    ConnectError,
    GridbotError,
    OrderRejected,
    ReduceOnlyRejected,
)

__all__ = [
    "AUTH_RET_CODES",
    "REDUCE_ONLY_RET_CODES",
    "SDK_ERRORS",
    "AuthRejected",
    "ConnectFailed",
    "Stopped",
    "SubscribeRejected",
    "check_ret_code",
    "describe",
    "scrub_chain",
    "translate",
]

Redact = Callable[[str], str]

AUTH_RET_CODES: Final = frozenset({10003, 10004, 10005, 10007, 10009, 10010, 33004})
# 110017 "Reduce-only rule not satisfied": nothing (left) to reduce.
REDUCE_ONLY_RET_CODES: Final = frozenset({110017})
_SECRET_ATTRIBUTES: Final = ("request", "response")
# What pybit and the libraries under it raise for a failed request (requests' exceptions are OSErrors).
SDK_ERRORS: Final = (InvalidRequestError, FailedRequestError, UnauthorizedExceptionError, OSError,
                     WebSocketException)


class ConnectFailed(supervisor.ConnectFailed):
    """A socket could not be connected, or lost its connection before it was live."""


class AuthRejected(supervisor.AuthRejected):
    """The private socket's auth answer said ``success: false``."""


class SubscribeRejected(Exception):
    """The server refused a subscription."""


class Stopped(supervisor.ConnectFailed):
    """The supervisor gave up on the attempt (``close()``, a timeout) while its socket was being built."""


def describe(exc: BaseException) -> str:
    """``Type: message`` (or the type alone), for log lines and error texts."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def translate(exc: BaseException, what: str, redact: Redact, *, orders: bool = False) -> GridbotError:
    """The gridbot error for ``exc`` (callers ``raise translate(...) from exc``); scrubs ``exc``'s chain.

    ``orders``: a refused order request becomes :class:`~gridbot.errors.OrderRejected` (or
    :class:`~gridbot.errors.ReduceOnlyRejected`) with its ``retCode``; elsewhere a plain GridbotError.
    """
    scrub_chain(exc, redact)
    if isinstance(exc, GridbotError):
        return exc
    if isinstance(exc, AuthRejected):
        return AuthenticationError(f"{what}: {redact(str(exc))}")
    if isinstance(exc, UnauthorizedExceptionError):
        return AuthenticationError(f"{what}: API key or secret missing")
    if isinstance(exc, InvalidRequestError):
        code = exc.status_code if isinstance(exc.status_code, int) else None
        return _refused(what, code, redact(str(exc.message)), orders=orders)
    if isinstance(exc, FailedRequestError):
        message = redact(str(exc.message))
        if exc.status_code == 401:
            return AuthenticationError(f"{what}: HTTP 401: {message}")
        return ConnectError(f"{what}: HTTP {exc.status_code}: {message}")
    if isinstance(exc, (ConnectFailed, SubscribeRejected)):
        return ConnectError(f"{what}: {redact(str(exc))}")
    if isinstance(exc, Stopped):
        return ConnectError(f"{what}: stopped by close()")
    if isinstance(exc, (OSError, WebSocketException)):  # requests' exceptions are OSErrors
        return ConnectError(f"{what}: {redact(describe(exc))}")
    return GridbotError(f"{what}: {redact(describe(exc))}")


def check_ret_code(response: object, what: str, redact: Redact) -> Mapping[str, Any]:
    """``response`` when it is a JSON object with ``retCode`` 0; else the error that code means."""
    if not isinstance(response, Mapping):
        raise GridbotError(f"{what}: unexpected response type {type(response).__name__}")
    code = response.get("retCode")
    if code != 0:
        raise _refused(what, code if isinstance(code, int) else None, redact(str(response.get("retMsg"))))
    return response


def _refused(what: str, code: int | None, message: str, *, orders: bool = False) -> GridbotError:
    if code in AUTH_RET_CODES:
        return AuthenticationError(f"{what}: API key rejected (retCode {code}: {message})")
    if not orders:
        return GridbotError(f"{what}: retCode {code}: {message}")
    if code in REDUCE_ONLY_RET_CODES:
        return ReduceOnlyRejected(f"{what}: {message} (retCode {code})", code)
    return OrderRejected(f"{what}: {message} (retCode {code})", code)


def scrub_chain(exc: BaseException, redact: Redact) -> None:
    """Strip request data and frame locals from ``exc`` and every exception in its cause/context chain,
    in place: SDK causes stay inspectable (type, code, message, where it was raised) and carry no
    signed request, key header or secret."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        _scrub_one(current, redact)
        pending.extend((current.__cause__, current.__context__))


def _scrub_one(exc: BaseException, redact: Redact) -> None:
    for name in _SECRET_ATTRIBUTES:
        value = getattr(exc, name, None)
        if value is not None and not isinstance(value, str):
            _set(exc, name, _request_line(value) if name == "request" else None)
        elif isinstance(value, str):
            _set(exc, name, redact(value))
    for name in ("message", "url"):
        value = getattr(exc, name, None)
        if isinstance(value, str):
            _set(exc, name, redact(value))
    exc.args = tuple(arg if isinstance(arg, (int, float)) or arg is None else redact(str(arg))
                     for arg in exc.args)
    traceback.clear_frames(exc.__traceback__)  # finished SDK frames: their locals held the signing data


def _request_line(request: object) -> str:
    """``METHOD /path`` of a requests ``PreparedRequest`` (no query, no headers, no body)."""
    method = getattr(request, "method", None) or "?"
    url = getattr(request, "url", None)
    path = urlsplit(url).path if isinstance(url, str) else "?"
    return f"{method} {path}"


def _set(exc: BaseException, name: str, value: object) -> None:
    try:
        setattr(exc, name, value)
    except (AttributeError, TypeError):  # a read-only property: nothing we can do but leave it
        pass
