"""The realised-PnL records of a grid and the cross-check that proves no fill went missing.

Apart from the strategy because the check is bookkeeping on events alone: the exchange's cumulative
realised PnL against the fills' own PnL, per position slot, whatever places the orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from gridbot.events import FillUpdate, Side

__all__ = ["Close", "PnlChange", "PnlCrossCheck", "PnlMismatch", "Slot"]

_ZERO = Decimal(0)
Slot = tuple[str, int]
"""(symbol, position_idx): one position slot of the account."""


@dataclass(frozen=True)
class Close:
    """A take-profit that filled: one round trip of one level."""

    symbol: str
    level: int
    position_idx: int
    side: Side           # the take-profit's side
    qty: Decimal
    entry_price: Decimal
    exit_price: Decimal
    fill_pnl: Decimal    # the take-profit's fills' realised PnL, before fees
    fees: Decimal        # the take-profit's fills' fees
    timestamp: int


@dataclass(frozen=True)
class PnlChange:
    """One change of the exchange's cumulative realised PnL, next to what the fills since the last
    change of the same slot account for (before fees on Binance, net of fees on Bybit)."""

    symbol: str
    position_idx: int
    delta: Decimal
    fill_pnl: Decimal
    size_before: Decimal
    size_after: Decimal
    timestamp: int

    @property
    def is_close(self) -> bool:
        """The position shrank: a (partial) close, not an opening fee."""
        return self.size_after < self.size_before

    @property
    def matched(self) -> bool:
        return self.delta == self.fill_pnl


@dataclass(frozen=True)
class PnlMismatch:
    """A slot whose cumulative-PnL deltas and fills disagree.  ``after_gap``: the stream reconnected
    since start.  That is no excuse any more: a resync delivers the fills made while the socket was
    down (backfilled by REST), so every mismatch is worth a look.  Slots where a fill came without
    its PnL (Bybit's REST execution list has no ``execPnl``) cannot be checked and are reported by
    :meth:`PnlCrossCheck.unverified` instead."""

    symbol: str
    position_idx: int
    from_cum_realised: Decimal
    from_fills: Decimal
    after_gap: bool


class PnlCrossCheck:
    """Running per-slot totals of cumulative-PnL deltas and of fill PnL; equal when nothing is missing.

    Totals rather than pairs, because Binance does not order ``ACCOUNT_UPDATE`` and
    ``ORDER_TRADE_UPDATE`` against each other.  ``net_of_fees``: Bybit's ``cumRealisedPnl`` is net of
    fees, so a fill counts ``execPnl - execFee`` there; Binance's ``cr`` is before fees.  Fills on a slot
    without a baseline yet are left out: the baseline already includes them.
    """

    def __init__(self, *, net_of_fees: bool) -> None:
        self.net_of_fees = net_of_fees
        self._deltas: dict[Slot, Decimal] = {}
        self._fills: dict[Slot, Decimal] = {}
        self._pending: dict[Slot, Decimal] = {}
        self._unknown: dict[Slot, int] = {}
        self.gaps = 0

    def note_gap(self) -> None:
        """The stream is reconnecting: fills may be missed from here on."""
        self.gaps += 1

    def fill_pnl(self, fill: FillUpdate) -> Decimal | None:
        """What one fill contributes to the cumulative figure; None when the fill has no PnL."""
        if fill.realised_pnl is None:
            return None
        return fill.realised_pnl - fill.fee if self.net_of_fees else fill.realised_pnl

    def add_fill(self, slot: Slot, fill: FillUpdate) -> None:
        amount = self.fill_pnl(fill)
        if amount is None:
            self._unknown[slot] = self._unknown.get(slot, 0) + 1
            return
        self._fills[slot] = self._fills.get(slot, _ZERO) + amount
        self._pending[slot] = self._pending.get(slot, _ZERO) + amount

    def add_delta(self, slot: Slot, delta: Decimal) -> Decimal:
        """Record a delta; returns the fill PnL seen on the slot since its previous delta."""
        self._deltas[slot] = self._deltas.get(slot, _ZERO) + delta
        return self._pending.pop(slot, _ZERO)

    def unverified(self) -> dict[Slot, int]:
        """Slots that received fills without a PnL, and how many: their totals cannot be compared."""
        return dict(self._unknown)

    def mismatches(self) -> list[PnlMismatch]:
        found = []
        for slot in sorted(self._deltas.keys() | self._fills.keys()):
            if slot in self._unknown:
                continue
            deltas, fills = self._deltas.get(slot, _ZERO), self._fills.get(slot, _ZERO)
            if deltas != fills:
                found.append(PnlMismatch(slot[0], slot[1], deltas, fills, after_gap=self.gaps > 0))
        return found
