"""The journal's realised PnL per slot: RealisedPnlTracker semantics, kept in the batch's transaction.

Each change of a slot's cumulative realised PnL is a delta; the first known value is the baseline.
One addition makes it exact across crashes: a baseline may be first observed *after* fills the
journal already holds (Binance's REST has no ``cr``, so a slot's first value comes with a push; if the
process died before that push was committed, the next run's first value includes PnL realised
meanwhile).  The PnL of journaled fills at or before the first observation is therefore counted too,
whenever such a fill is journaled — before or after that observation, but once, as each fill is.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal

from gridbot.events import FillUpdate, PositionUpdate
from gridbot.journal._codec import decimal_text

__all__ = ["PnlBook"]

_ZERO = Decimal(0)
_Slot = tuple[str, str, int]
_State = tuple[Decimal, Decimal, int]  # cumulative, realised, observed_from_ms

_UPSERT_PNL = (
    "INSERT INTO pnl (exchange, symbol, position_idx, cum_realised_pnl, realised, timestamp, "
    "observed_from_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (exchange, symbol, position_idx) DO UPDATE SET "
    "cum_realised_pnl = excluded.cum_realised_pnl, realised = excluded.realised, "
    "timestamp = excluded.timestamp"
)
_INSERT_CHANGE = (
    "INSERT INTO pnl_changes (exchange, symbol, position_idx, delta, cum_realised_pnl, timestamp, "
    "journaled_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_FILLS_UP_TO = (
    "SELECT realised_pnl, fee FROM fills WHERE exchange = ? AND symbol = ? AND position_idx = ? "
    "AND timestamp <= ?"
)


def in_cumulative(exchange: str, realised: Decimal | None, fee: Decimal | None) -> Decimal | None:
    """What one fill adds to its slot's cumulative PnL as the exchange counts it: Binance ``cr`` is
    before fees, Bybit ``cumRealisedPnl`` after them.  None when the fill's PnL is unknown."""
    if realised is None:
        return None
    return realised if exchange == "binance" else realised - (fee or _ZERO)


class PnlBook:
    """The writer thread's view of the ``pnl`` table (it is the file's only writer)."""

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: dict[_Slot, _State] = {}

    def load(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute("SELECT exchange, symbol, position_idx, cum_realised_pnl, realised, "
                            "observed_from_ms FROM pnl")
        self._slots = {(e, s, int(i)): (Decimal(c), Decimal(r), -1 if at is None else int(at))
                       for e, s, i, c, r, at in rows}

    def checkpoint(self) -> dict[_Slot, _State]:
        return dict(self._slots)

    def rollback(self, saved: dict[_Slot, _State]) -> None:
        self._slots = saved

    def position(self, conn: sqlite3.Connection, position: PositionUpdate, now: int) -> None:
        cumulative = position.cum_realised_pnl
        if cumulative is None:
            return  # unknown (Binance REST): never resets the baseline
        slot = (position.exchange, position.symbol, position.position_idx)
        known = self._slots.get(slot)
        if known is None:
            earlier = self._fills_up_to(conn, slot, position.timestamp)
            self._save(conn, slot, (cumulative, earlier, position.timestamp), position.timestamp)
            if earlier:
                conn.execute(_INSERT_CHANGE, (*slot, decimal_text(earlier), decimal_text(cumulative),
                                              position.timestamp, now))
            return
        previous, realised, observed_from = known
        if cumulative == previous:
            return
        delta = cumulative - previous
        self._save(conn, slot, (cumulative, realised + delta, observed_from), position.timestamp)
        conn.execute(_INSERT_CHANGE, (*slot, decimal_text(delta), decimal_text(cumulative),
                                      position.timestamp, now))

    def new_fill(self, conn: sqlite3.Connection, fill: FillUpdate, now: int) -> None:
        """A fill journaled for the first time: counted if its slot's baseline already includes it."""
        slot = (fill.exchange, fill.symbol, fill.position_idx)
        known = self._slots.get(slot)
        if known is None or fill.timestamp > known[2]:
            return
        amount = in_cumulative(fill.exchange, fill.realised_pnl, fill.fee)
        if not amount:
            return
        cumulative, realised, observed_from = known
        self._save(conn, slot, (cumulative, realised + amount, observed_from), None)
        conn.execute(_INSERT_CHANGE, (*slot, decimal_text(amount), decimal_text(cumulative),
                                      fill.timestamp, now))

    def _fills_up_to(self, conn: sqlite3.Connection, slot: _Slot, until_ms: int) -> Decimal:
        total = _ZERO
        for realised, fee in conn.execute(_FILLS_UP_TO, (*slot, until_ms)):
            amount = in_cumulative(slot[0], None if realised is None else Decimal(realised),
                                   None if fee is None else Decimal(fee))
            total += amount or _ZERO
        return total

    def _save(self, conn: sqlite3.Connection, slot: _Slot, state: _State, timestamp: int | None) -> None:
        self._slots[slot] = state
        cumulative, realised, observed_from = state
        if timestamp is None:
            conn.execute("UPDATE pnl SET realised = ? WHERE exchange = ? AND symbol = ? AND position_idx = ?",
                         (decimal_text(realised), *slot))
        else:
            conn.execute(_UPSERT_PNL, (*slot, decimal_text(cumulative), decimal_text(realised), timestamp,
                                       observed_from))
