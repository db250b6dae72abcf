"""gridbot's one error tree.  SDK exceptions are translated in the adapters with ``raise ... from``."""

from __future__ import annotations

from typing import Any

__all__ = ["AuthenticationError", "ConnectError", "GridbotError", "NormalizationError", "OrderRejected",
           "ReduceOnlyRejected"]


class GridbotError(Exception):
    """Base of every error gridbot raises."""


class AuthenticationError(GridbotError):
    """The exchange rejected the API key or signature."""


class ConnectError(GridbotError):
    """A host could not be reached, or the stream did not become live in time."""


class NormalizationError(GridbotError):
    """A wire message could not be turned into an event (bad number, unknown enum value).

    ``raw`` is the offending wire message, kept for the log line; wire messages carry no secrets.
    """

    def __init__(self, message: str, raw: Any = None) -> None:
        super().__init__(message)
        self.raw = raw


class OrderRejected(GridbotError):
    """The exchange refused an order request (bad price, margin, reduce-only, unknown order...)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ReduceOnlyRejected(OrderRejected):
    """A reduce-only order found nothing to reduce: the position is flat or on the other side."""
