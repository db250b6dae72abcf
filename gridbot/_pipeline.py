"""Worker-thread bookkeeping between decoding and dispatch: dedupe, "never backwards", reconciliation.

Owned by one worker thread (not thread-safe).  No I/O: the stream feeds it decoded events, REST
snapshots and backfilled fills, and gets back what to deliver.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from gridbot._bounded import BoundedSet, FinishedOrders, IdKey, IdKeys
from gridbot._versions import VersionBook, state_key
from gridbot.events import (
    OPEN_ORDER_STATUSES,
    TERMINAL_ORDER_STATUSES,
    Event,
    FillUpdate,
    OrderUpdate,
    PositionUpdate,
    TickerUpdate,
)

__all__ = ["Pipeline", "Reconciled"]

logger = logging.getLogger(__name__)

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Reconciled:
    """The result of applying a snapshot: events to deliver, and the open orders it no longer lists."""

    events: list[Event]
    vanished_orders: list[OrderUpdate]


class Pipeline:
    """Drops what must not be delivered twice or late, and remembers what a resync must reconcile.

    - fills: once per (symbol, trade id), across pushes and backfills;
    - positions, orders, wallets: never older than what was delivered for the same identity
      (:class:`~gridbot._versions.VersionBook`: ``seq`` where the exchange sends one, then exchange
      time, then content), whether the candidate is a push or a snapshot row;
    - orders: nothing after a terminal status.
    """

    def __init__(self, remember: int = 100_000) -> None:
        self._fill_keys = IdKeys()
        self._trade_ids: BoundedSet[IdKey] = BoundedSet(remember)
        self.finished_orders = FinishedOrders(remember)  # shared with the state book (read-only there)
        self._versions = VersionBook(finished=self.finished_orders)
        self._open_positions: dict[tuple[str, int], PositionUpdate] = {}
        self._open_orders: dict[tuple[str, str], OrderUpdate] = {}
        self._last_fill_time: dict[str, int] = {}

    # ------------------------------------------------------------------ pushes

    def accept(self, event: Event) -> bool:
        """True when a pushed event should be delivered; records it if so."""
        kind = type(event)
        if kind is TickerUpdate:  # no identity: always delivered (the dispatch queue conflates)
            return True
        if kind is FillUpdate:
            return self.accept_fill(event)  # type: ignore[arg-type]
        verdict = self._versions.judge(event)
        if verdict != "fresh":
            logger.debug("dropping %s %s: %s", verdict, type(event).__name__, state_key(event))
            return False
        self._record(event)
        return True

    def accept_fill(self, fill: FillUpdate) -> bool:
        """True the first time a fill's (symbol, trade id) is seen, pushed or backfilled."""
        key = self._fill_keys.key(fill.symbol, fill.trade_id)
        if key in self._trade_ids:
            logger.debug("dropping duplicate fill %s %s", fill.symbol, fill.trade_id)
            return False
        self._trade_ids.add(key)
        if fill.timestamp > self._last_fill_time.get(fill.symbol, 0):
            self._last_fill_time[fill.symbol] = fill.timestamp
        return True

    def last_fill_time(self, symbol: str) -> int | None:
        """Exchange time of the newest fill delivered for ``symbol``, or None."""
        return self._last_fill_time.get(symbol)

    def _record(self, event: Event) -> None:
        self._versions.record(event)
        if isinstance(event, PositionUpdate):
            slot = (event.symbol, event.position_idx)
            if event.size > 0:
                self._open_positions[slot] = event
            else:
                self._open_positions.pop(slot, None)
        elif isinstance(event, OrderUpdate):
            key = (event.symbol, event.order_id)
            if event.status in TERMINAL_ORDER_STATUSES:
                self._open_orders.pop(key, None)
            elif event.status in OPEN_ORDER_STATUSES:
                self._open_orders[key] = event

    # ------------------------------------------------------------------ snapshots

    def reconcile(self, snapshot: Sequence[Event], symbols: Collection[str]) -> Reconciled:
        """Apply a REST snapshot of ``symbols`` (and the wallet, if it holds wallet rows).

        Delivers each row that is newer than what its identity delivered (a REST answer can lag the
        socket), plus a flat position for every open slot of ``symbols`` the snapshot no longer lists
        (closed while disconnected), and returns the open orders of ``symbols`` it no longer lists
        (finished while disconnected: their final state must be fetched).  Other symbols' bookkeeping
        is untouched.
        """
        wanted = set(symbols)
        seen_positions: set[tuple[str, int]] = set()
        seen_orders: set[tuple[str, str]] = set()
        deliver: list[Event] = []
        for event in snapshot:
            if isinstance(event, PositionUpdate):
                seen_positions.add((event.symbol, event.position_idx))
            elif isinstance(event, OrderUpdate):
                seen_orders.add((event.symbol, event.order_id))
            if self.accept(event):
                deliver.append(event)
        for slot, last in list(self._open_positions.items()):
            if slot[0] in wanted and slot not in seen_positions:
                flat = _flat(last)
                self._record(flat)
                deliver.append(flat)
        vanished = [
            order
            for key, order in self._open_orders.items()
            if key[0] in wanted and key not in seen_orders
        ]
        return Reconciled(deliver, vanished)

    def knows_order(self, symbol: str, order_id: str) -> bool:
        """Whether any state of this order was delivered (open or finished, still remembered)."""
        return self._versions.knows(("order", symbol, order_id))

    def delivered_fill(self, fill: FillUpdate) -> bool:
        """Whether this fill's (symbol, trade id) was already delivered."""
        return self._fill_keys.key(fill.symbol, fill.trade_id) in self._trade_ids

    def forget_symbol(self, symbol: str) -> None:
        """Drop the open state of an unsubscribed symbol (fill and finished-order memory stays)."""
        for slot in [s for s in self._open_positions if s[0] == symbol]:
            del self._open_positions[slot]
        for key in [k for k in self._open_orders if k[0] == symbol]:
            del self._open_orders[key]
        self._versions.forget_symbol(symbol)


def _flat(last: PositionUpdate) -> PositionUpdate:
    """The slot closed while we were away.  Its cumulative PnL is unknown until the next push; its
    time is just after the last delivered state (the REST answer said nothing newer)."""
    return replace(
        last,
        timestamp=last.timestamp + 1 if last.timestamp else 0,
        is_snapshot=True,
        side="",
        size=_ZERO,
        entry_price=_ZERO,
        unrealised_pnl=_ZERO,
        cum_realised_pnl=None,
        raw={},
    )
