"""What a grid strategy keeps from the stream: realised PnL deltas, open take-profit ids, wallet and account.

Pure objects: no I/O, no clock, no threads.  Feed them events from the callbacks, in the order received.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Protocol

from gridbot._bounded import BoundedSet
from gridbot.events import (
    OPEN_ORDER_STATUSES,
    TERMINAL_ORDER_STATUSES,
    AccountUpdate,
    OrderUpdate,
    PositionUpdate,
    WalletUpdate,
)

__all__ = ["AccountState", "RealisedPnlTracker", "TakeProfitTracker", "WalletState", "is_take_profit_order"]

_Slot = tuple[str, int]
_ZERO = Decimal(0)


class IdMemory(Protocol):
    """Where a TakeProfitTracker remembers the ids that must never open again (the stream's book
    gives its trackers a view of the stream's one finished-order memory)."""

    def __contains__(self, order_id: object) -> bool: ...

    def add(self, order_id: str) -> None: ...


class RealisedPnlTracker:
    """Turns the exchange's cumulative realised PnL into per-change deltas, per (symbol, position_idx).

    The first known value is the baseline (no delta).  Snapshot values are observations like any
    other, so PnL realised while disconnected shows up as one delta at the resync.  A position
    without ``cum_realised_pnl`` (Binance REST) never resets the baseline.
    """

    __slots__ = ("_last", "_totals")

    def __init__(self) -> None:
        self._last: dict[_Slot, Decimal] = {}
        self._totals: dict[_Slot, Decimal] = {}

    def update(self, position: PositionUpdate) -> Decimal | None:
        """The change since the last known value, or None for the baseline and for no change."""
        cumulative = position.cum_realised_pnl
        if cumulative is None:
            return None
        slot = (position.symbol, position.position_idx)
        previous = self._last.get(slot)
        self._last[slot] = cumulative
        if previous is None or cumulative == previous:
            return None
        delta = cumulative - previous
        self._totals[slot] = self._totals.get(slot, _ZERO) + delta
        return delta

    def total(self, symbol: str, position_idx: int = 0) -> Decimal:
        """Sum of the deltas of one slot since the tracker started."""
        return self._totals.get((symbol.upper(), position_idx), _ZERO)

    def grand_total(self) -> Decimal:
        """Sum of the deltas of every slot since the tracker started."""
        return sum(self._totals.values(), _ZERO)

    def baseline(self, symbol: str, position_idx: int = 0) -> Decimal | None:
        """The last known cumulative value of a slot (None before the first observation)."""
        return self._last.get((symbol.upper(), position_idx))


def is_take_profit_order(order: OrderUpdate) -> bool:
    """The default predicate: a flagged take-profit, or a reduce-only Limit order (a grid's TP)."""
    return order.is_take_profit or (order.reduce_only and order.order_type == "Limit")


class TakeProfitTracker:
    """The open take-profit order ids of each (symbol, position_idx) slot the TP closes.

    Open statuses track an id, terminal ones untrack it.  A Binance algo TP that triggers is
    replaced by the regular order it placed (``linked_order_id``).  An id once seen terminal is
    never tracked again: Binance does not order pushes across event types, so the child's fill
    can arrive before the ``TRIGGERED`` algo update that names it.

    A grid can hold several TPs per slot; :meth:`get` answers the most recently opened one that
    is still open and :meth:`open_ids` all of them, oldest first.
    """

    __slots__ = ("_open", "_predicate", "_records_ends", "_terminal")

    def __init__(
        self,
        predicate: Callable[[OrderUpdate], bool] = is_take_profit_order,
        *,
        remember_terminal: int = 100_000,
    ) -> None:
        self._predicate = predicate
        self._open: dict[_Slot, dict[str, None]] = {}
        self._terminal: IdMemory = BoundedSet[str](remember_terminal)
        self._records_ends = True

    @classmethod
    def _with_memory(cls, terminal: IdMemory) -> TakeProfitTracker:
        """A tracker whose terminal ids are ``terminal``, which records orders' ends itself (the state
        book's view of the stream's finished-order memory); the tracker adds only the ids it retires."""
        tracker = cls(remember_terminal=1)
        tracker._terminal = terminal
        tracker._records_ends = False
        return tracker

    def update(self, order: OrderUpdate) -> str | None:
        """Apply one order update; returns the slot's current TP id afterwards."""
        slot = (order.symbol, order.position_idx)
        if order.status in TERMINAL_ORDER_STATUSES:
            self._close(slot, order.order_id)
        elif order.status in OPEN_ORDER_STATUSES and order.order_id not in self._terminal:
            if self._predicate(order):
                self._open_tp(slot, order)
        return self.get(*slot)

    def _open_tp(self, slot: _Slot, order: OrderUpdate) -> None:
        linked = order.linked_order_id
        ids = self._open.setdefault(slot, {})
        if linked:
            # The trigger placed a regular order: that order is the TP from now on.
            ids.pop(order.order_id, None)
            self._terminal.add(order.order_id)
            if linked not in self._terminal:
                ids[linked] = None
        else:
            ids[order.order_id] = None
        if not ids:
            del self._open[slot]

    def _close(self, slot: _Slot, order_id: str) -> None:
        if self._records_ends:
            self._terminal.add(order_id)
        ids = self._open.get(slot)
        if ids is not None:
            ids.pop(order_id, None)
            if not ids:
                del self._open[slot]

    def get(self, symbol: str, position_idx: int = 0) -> str | None:
        """The most recently opened TP id of the slot that is still open, or None."""
        ids = self._open.get((symbol.upper(), position_idx))
        return next(reversed(ids)) if ids else None

    def open_ids(self, symbol: str, position_idx: int = 0) -> tuple[str, ...]:
        """Every open TP id of the slot, oldest first."""
        return tuple(self._open.get((symbol.upper(), position_idx), ()))

    def __iter__(self) -> Iterator[tuple[str, int, str]]:
        """(symbol, position_idx, order_id) for every open TP."""
        for (symbol, idx), ids in self._open.items():
            for order_id in ids:
                yield symbol, idx, order_id


class WalletState:
    """The latest balances per coin.  A field an update leaves None keeps its last known value
    (Binance's ACCOUNT_UPDATE has no available balance; the seed's value stays until the next one)."""

    __slots__ = ("_coins", "coin")

    def __init__(self, coin: str = "USDT") -> None:
        self.coin = coin
        self._coins: dict[str, WalletUpdate] = {}

    def update(self, wallet: WalletUpdate) -> None:
        known = self._coins.get(wallet.coin)
        if known is None:
            self._coins[wallet.coin] = wallet
            return
        self._coins[wallet.coin] = replace(
            wallet,
            wallet_balance=_latest(wallet.wallet_balance, known.wallet_balance),
            available_balance=_latest(wallet.available_balance, known.available_balance),
            equity=_latest(wallet.equity, known.equity),
        )

    def get(self, coin: str | None = None) -> WalletUpdate | None:
        """The merged latest state of ``coin`` (default: this state's coin)."""
        return self._coins.get(coin or self.coin)

    @property
    def wallet_balance(self) -> Decimal | None:
        return self._field("wallet_balance")

    @property
    def available_balance(self) -> Decimal | None:
        return self._field("available_balance")

    @property
    def equity(self) -> Decimal | None:
        return self._field("equity")

    def _field(self, name: str) -> Decimal | None:
        wallet = self._coins.get(self.coin)
        value = getattr(wallet, name) if wallet else None
        return value if isinstance(value, Decimal) else None


class AccountState:
    """The latest account view (:class:`~gridbot.events.AccountUpdate`): margin balance, maintenance margin,
    MM rate, available balance.

    Unlike :class:`WalletState`, a None in an update replaces the last value: on the account view None means
    "not known or not defined now" (e.g. an isolated position was opened on Binance), and a stale number
    there would look right and not be.  Every property is None before the first update.
    """

    __slots__ = ("_latest",)

    def __init__(self) -> None:
        self._latest: AccountUpdate | None = None

    def update(self, account: AccountUpdate) -> None:
        self._latest = account

    @property
    def latest(self) -> AccountUpdate | None:
        """The last update received, or None."""
        return self._latest

    @property
    def margin_coin(self) -> str | None:
        return self._latest.margin_coin if self._latest else None

    @property
    def wallet_balance(self) -> Decimal | None:
        return self._latest.wallet_balance if self._latest else None

    @property
    def unrealised_pnl(self) -> Decimal | None:
        return self._latest.unrealised_pnl if self._latest else None

    @property
    def margin_balance(self) -> Decimal | None:
        return self._latest.margin_balance if self._latest else None

    @property
    def initial_margin(self) -> Decimal | None:
        return self._latest.initial_margin if self._latest else None

    @property
    def maintenance_margin(self) -> Decimal | None:
        return self._latest.maintenance_margin if self._latest else None

    @property
    def available_balance(self) -> Decimal | None:
        return self._latest.available_balance if self._latest else None

    @property
    def mm_rate(self) -> Decimal | None:
        """Maintenance margin / margin balance: the account is liquidated at 1."""
        return self._latest.mm_rate if self._latest else None

    @property
    def computed(self) -> bool | None:
        """True when gridbot derived the view (Binance), False when the exchange sent it (Bybit)."""
        return self._latest.computed if self._latest else None


def _latest(new: Decimal | None, old: Decimal | None) -> Decimal | None:
    return old if new is None else new
