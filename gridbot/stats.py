"""Stream counters: a thread-safe mutable tally inside, a frozen snapshot outside."""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields

__all__ = ["StreamStats"]


@dataclass(frozen=True, slots=True)
class StreamStats:
    """A consistent snapshot of one stream's counters.

    ``events`` counts events delivered to callbacks; ``rest_calls`` counts REST requests made to
    watch state (seed and resyncs, never control calls); ``conflated`` counts ticker updates
    replaced by a newer one before delivery; ``backfilled_fills`` counts fills a resync fetched by
    REST and delivered because the socket had not (made while it was down or silent);
    ``internal_errors`` counts faults of gridbot's own threads that were logged and survived;
    ``rejected_symbols`` counts subscriptions dropped because the exchange does not list the symbol as a
    trading linear perpetual (or a socket refused it), each logged as a WARNING.
    """

    events: int = 0
    rest_calls: int = 0
    reconnects: int = 0
    resyncs: int = 0
    conflated: int = 0
    callback_errors: int = 0
    bad_messages: int = 0
    backfilled_fills: int = 0
    internal_errors: int = 0
    rejected_symbols: int = 0


_FIELDS = tuple(f.name for f in fields(StreamStats))


class Counters:
    """The mutable tally behind :class:`StreamStats`; safe to bump from any thread."""

    __slots__ = ("_lock", "_values")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(_FIELDS, 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def snapshot(self) -> StreamStats:
        with self._lock:
            return StreamStats(**self._values)
