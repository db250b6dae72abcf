"""What was delivered per identity, so nothing older is ever delivered after it ("never backwards").

An identity is a position slot (symbol, position_idx), an order (symbol, order id), a wallet coin or
the account view (its margin coin).
For each, the book keeps the last delivered event; a candidate — pushed or from a REST snapshot — is
judged against it:

1. a sequence number, where both carry one (Bybit's position ``seq``; -1 means "never traded" and
   counts as none): older is stale, newer is fresh, equal goes on to the content rule;
2. the exchange time (``timestamp``; 0 means unknown and is skipped): older is stale;
3. at an equal version (same ``seq``, or same time), a candidate whose content equals what was
   delivered is a duplicate; different content is a real update (Bybit does not bump ``seq`` for
   leverage, risk-limit or TP/SL changes, and several updates can share one millisecond);
4. an open order's filled quantity never decreases; nothing follows its terminal status (a finished
   order is remembered by key and final status only, bounded: a repeat of that status is a duplicate,
   anything else stale).

Pure bookkeeping: no I/O, no clock; owned by the stream's worker thread.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Literal

from gridbot._bounded import FinishedOrders
from gridbot.events import (
    TERMINAL_ORDER_STATUSES,
    AccountUpdate,
    Event,
    OrderUpdate,
    PositionUpdate,
    WalletUpdate,
)

__all__ = ["StateKey", "Verdict", "VersionBook", "state_key"]

StateKey = tuple[str, ...]
Verdict = Literal["fresh", "stale", "duplicate"]


def state_key(event: Event) -> StateKey | None:
    """The identity whose latest state an event carries (fills, tickers and statuses have none)."""
    if isinstance(event, PositionUpdate):
        return ("position", event.symbol, str(event.position_idx))
    if isinstance(event, OrderUpdate):
        return ("order", sys.intern(event.symbol), event.order_id)
    if isinstance(event, WalletUpdate):
        return ("wallet", event.coin)
    if isinstance(event, AccountUpdate):
        return ("account", event.margin_coin)
    return None


def _seq(event: Event) -> int | None:
    seq = event.seq if isinstance(event, PositionUpdate) else None
    return seq if seq is not None and seq >= 0 else None


def _same_content(candidate: Event, delivered: Event) -> bool:
    """Equal apart from the version fields (time, snapshot origin; ``raw`` never compares)."""
    aligned = replace(candidate, timestamp=delivered.timestamp, is_snapshot=delivered.is_snapshot)
    return aligned == delivered


class VersionBook:
    """The last delivered event per identity (see the module docstring for the rules)."""

    __slots__ = ("_delivered", "_finished")

    def __init__(self, finished_capacity: int = 100_000, *, finished: FinishedOrders | None = None) -> None:
        self._delivered: dict[StateKey, Event] = {}
        # Orders in a terminal state move here, as their final status only (a whole event with its raw
        # message is kilobytes): bounded, oldest forgotten first; shared with the state book.
        self._finished = finished if finished is not None else FinishedOrders(finished_capacity)

    def judge(self, event: Event) -> Verdict:
        """Whether ``event`` may be delivered after what this identity already delivered."""
        key = state_key(event)
        if key is None:
            return "fresh"
        last = self._delivered.get(key)
        if last is None:
            if not isinstance(event, OrderUpdate):
                return "fresh"
            final = self._finished.status(event.symbol, event.order_id)
            if final is None:
                return "fresh"
            return "duplicate" if event.status == final else "stale"
        new_seq, old_seq = _seq(event), _seq(last)
        if new_seq is not None and old_seq is not None and new_seq != old_seq:
            return "fresh" if new_seq > old_seq else "stale"
        if event.timestamp and last.timestamp and event.timestamp < last.timestamp:
            return "stale"
        if (
            isinstance(event, OrderUpdate)
            and isinstance(last, OrderUpdate)
            and event.filled_qty < last.filled_qty
            and event.status not in TERMINAL_ORDER_STATUSES  # an end is never withheld
        ):
            return "stale"
        equal_version = (new_seq is not None and new_seq == old_seq) or event.timestamp == last.timestamp
        if (equal_version or event.is_snapshot) and _same_content(event, last):
            return "duplicate"
        return "fresh"

    def record(self, event: Event) -> None:
        """Remember ``event`` as the latest delivered state of its identity."""
        key = state_key(event)
        if key is None:
            return
        if isinstance(event, OrderUpdate) and event.status in TERMINAL_ORDER_STATUSES:
            self._delivered.pop(key, None)
            self._finished.add(event.symbol, event.order_id, event.status)
        else:
            self._delivered[key] = event

    def knows(self, key: StateKey) -> bool:
        return key in self._delivered or self.is_finished(key)

    def is_finished(self, key: StateKey) -> bool:
        return key[0] == "order" and self._finished.has(key[1], key[2])

    def forget_symbol(self, symbol: str) -> None:
        """Drop the live positions and orders of ``symbol`` (an unsubscribe), so a later seed of the
        symbol is delivered in full; finished orders stay remembered; wallets are account-wide."""
        for key in [k for k in self._delivered if k[0] in ("position", "order") and k[1] == symbol]:
            del self._delivered[key]
