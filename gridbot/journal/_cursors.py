"""Where a restart's fill backfill must begin, per symbol, kept true while events are in flight.

The journal writes what the callbacks were given, after they ran.  A fill is therefore "safe" only
once committed; until then a restart must fetch it again.  The stream's worker reports two things:

- each fill it accepts for delivery (``accepted``): in flight until the writer commits it;
- its own backfill bound per symbol (``publish``): every fill older than it has been accepted
  (the time it went live, the newest delivered fill, or the frozen start of an open gap).

The cursor the writer journals is the older of the bound and the oldest fill still in flight, so a
fill that was accepted, even delivered, but not committed when the process died is fetched again.
Thread-safe: the worker calls ``accepted``/``publish``, the writer ``cursors``/``committed``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from gridbot.events import FillUpdate

__all__ = ["FillCursors"]


class FillCursors:
    """The fill bookkeeping of one exchange's stream, as the journal must persist it."""

    __slots__ = ("_bounds", "_changed", "_in_flight", "_lock", "exchange")

    def __init__(self, exchange: str) -> None:
        self.exchange = exchange
        self._lock = threading.Lock()
        self._bounds: dict[str, tuple[int, int]] = {}  # symbol -> (live_since, bound)
        self._in_flight: dict[tuple[str, str], int] = {}  # (symbol, trade id) -> time
        self._changed = False

    def accepted(self, fill: FillUpdate) -> None:
        with self._lock:
            self._in_flight[(fill.symbol, fill.trade_id)] = fill.timestamp
            self._changed = True

    def publish(self, bounds: Mapping[str, tuple[int, int]]) -> None:
        """symbol -> (the time it went live, the stream's backfill bound)."""
        with self._lock:
            if bounds != self._bounds:
                self._bounds = dict(bounds)
                self._changed = True

    def cursors(self) -> dict[str, tuple[int, int]] | None:
        """symbol -> (live_since, backfill_from) to journal, or None when nothing changed."""
        with self._lock:
            if not self._changed:
                return None
            self._changed = False
            oldest: dict[str, int] = {}
            for (symbol, _), at in self._in_flight.items():
                oldest[symbol] = min(at, oldest.get(symbol, at))
            return {symbol: (live, min(bound, oldest.get(symbol, bound)))
                    for symbol, (live, bound) in self._bounds.items()}

    def mark_changed(self) -> None:
        """The cursors handed out were not written (the batch failed): hand them out again."""
        with self._lock:
            self._changed = True

    def committed(self, fills: Iterable[FillUpdate]) -> None:
        with self._lock:
            for fill in fills:
                if self._in_flight.pop((fill.symbol, fill.trade_id), None) is not None:
                    self._changed = True

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)
