"""Worker-thread bookkeeping between decoding and dispatch: dedupe and snapshot reconciliation.

Owned by one worker thread (not thread-safe).  No I/O: the stream feeds it decoded events and REST
snapshots and gets back what to deliver.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from gridbot._bounded import BoundedSet
from gridbot.events import (
    OPEN_ORDER_STATUSES,
    TERMINAL_ORDER_STATUSES,
    AccountUpdate,
    Event,
    FillUpdate,
    OrderUpdate,
    PositionUpdate,
    WalletUpdate,
)

__all__ = ["Pipeline", "Reconciled"]

logger = logging.getLogger(__name__)

_ZERO = Decimal(0)
_StateKey = tuple[str, ...]


def _state_key(event: Event) -> _StateKey | None:
    """The identity whose latest state an event carries (fills and tickers have none)."""
    if isinstance(event, PositionUpdate):
        return ("position", event.symbol, str(event.position_idx))
    if isinstance(event, OrderUpdate):
        return ("order", event.symbol, event.order_id)
    if isinstance(event, WalletUpdate):
        return ("wallet", event.coin)
    if isinstance(event, AccountUpdate):
        return ("account", event.margin_coin)
    return None


@dataclass(frozen=True, slots=True)
class Reconciled:
    """The result of applying a snapshot: events to deliver, and the open orders it no longer lists."""

    events: list[Event]
    vanished_orders: list[OrderUpdate]


class Pipeline:
    """Drops what must not be delivered twice or late, and remembers what a resync must reconcile.

    - fills: by (symbol, trade id);
    - orders: nothing after a terminal status (so duplicate ``Filled`` pushes are dropped);
    - positions: by the exchange's ``seq`` where it sends one (Bybit);
    - after a snapshot, a push older than the snapshot's row for the same identity is stale.
    """

    def __init__(self, remember: int = 100_000) -> None:
        self._trade_ids: BoundedSet[tuple[str, str]] = BoundedSet(remember)
        self._terminal_orders: BoundedSet[tuple[str, str]] = BoundedSet(remember)
        self._position_seq: dict[tuple[str, int], int] = {}
        self._snapshot_time: dict[_StateKey, int] = {}
        self._open_positions: dict[tuple[str, int], PositionUpdate] = {}
        self._open_orders: dict[tuple[str, str], OrderUpdate] = {}

    def accept(self, event: Event) -> bool:
        """True when a pushed event should be delivered; records it if so."""
        if isinstance(event, FillUpdate):
            return self._accept_fill(event)
        if isinstance(event, OrderUpdate) and (event.symbol, event.order_id) in self._terminal_orders:
            logger.debug("dropping update of finished order %s %s", event.symbol, event.order_id)
            return False
        if isinstance(event, PositionUpdate) and not self._newer_seq(event):
            return False
        key = _state_key(event)
        if key is not None and event.timestamp < self._snapshot_time.get(key, -1):
            logger.debug("dropping push older than the snapshot: %s", key)
            return False
        self._record(event)
        return True

    def _accept_fill(self, fill: FillUpdate) -> bool:
        key = (fill.symbol, fill.trade_id)
        if key in self._trade_ids:
            logger.debug("dropping duplicate fill %s %s", fill.symbol, fill.trade_id)
            return False
        self._trade_ids.add(key)
        return True

    def _newer_seq(self, position: PositionUpdate) -> bool:
        seq = position.raw.get("seq") if position.raw else None
        if not isinstance(seq, int) or isinstance(seq, bool):
            return True
        slot = (position.symbol, position.position_idx)
        if seq <= self._position_seq.get(slot, -1):
            logger.debug("dropping position %s idx %s with old seq %s", *slot, seq)
            return False
        self._position_seq[slot] = seq
        return True

    def _record(self, event: Event) -> None:
        if isinstance(event, PositionUpdate):
            slot = (event.symbol, event.position_idx)
            if event.size > 0:
                self._open_positions[slot] = event
            else:
                self._open_positions.pop(slot, None)
        elif isinstance(event, OrderUpdate):
            key = (event.symbol, event.order_id)
            if event.status in TERMINAL_ORDER_STATUSES:
                self._terminal_orders.add(key)
                self._open_orders.pop(key, None)
            elif event.status in OPEN_ORDER_STATUSES:
                self._open_orders[key] = event

    def reconcile(
        self, snapshot: Sequence[Event], symbols: Collection[str], *, timestamp: int
    ) -> Reconciled:
        """Apply a REST snapshot of ``symbols``.

        Returns the snapshot events to deliver, plus a flat position for every slot that was open
        but the snapshot no longer lists (closed while disconnected), and the open orders it no
        longer lists (finished while disconnected: their final state must be fetched).
        """
        self._snapshot_time = {}
        seen_positions: set[tuple[str, int]] = set()
        seen_orders: set[tuple[str, str]] = set()
        deliver: list[Event] = []
        for event in snapshot:
            if isinstance(event, OrderUpdate) and (event.symbol, event.order_id) in self._terminal_orders:
                continue
            key = _state_key(event)
            if key is not None:
                self._snapshot_time[key] = max(event.timestamp, self._snapshot_time.get(key, -1))
            if isinstance(event, PositionUpdate):
                seen_positions.add((event.symbol, event.position_idx))
                self._newer_seq(event)
            elif isinstance(event, OrderUpdate):
                seen_orders.add((event.symbol, event.order_id))
            self._record(event)
            deliver.append(event)
        wanted = set(symbols)
        for slot, last in list(self._open_positions.items()):
            if slot[0] in wanted and slot not in seen_positions:
                flat = _flat(last, timestamp)
                self._record(flat)
                deliver.append(flat)
        vanished = [
            order
            for key, order in self._open_orders.items()
            if key[0] in wanted and key not in seen_orders
        ]
        return Reconciled(deliver, vanished)

    def forget_symbol(self, symbol: str) -> None:
        """Drop the open state of an unsubscribed symbol (dedupe memory stays)."""
        for slot in [s for s in self._open_positions if s[0] == symbol]:
            del self._open_positions[slot]
        for key in [k for k in self._open_orders if k[0] == symbol]:
            del self._open_orders[key]


def _flat(last: PositionUpdate, timestamp: int) -> PositionUpdate:
    """The slot closed while we were away; its cumulative PnL is unknown until the next push."""
    return replace(
        last,
        timestamp=timestamp,
        is_snapshot=True,
        side="",
        size=_ZERO,
        entry_price=_ZERO,
        unrealised_pnl=_ZERO,
        cum_realised_pnl=None,
        raw={},
    )
