"""The Binance account view, computed live at delivery time (DESIGN §6).

Binance streams no account totals, so gridbot derives them with Binance's documented formulas
(:mod:`gridbot._margin`) from what the stream already delivers -- the USDT wallet (ACCOUNT_UPDATE
``wb``/``cw`` and the REST seed), every position valued at the merged mark price, the open orders -- plus
:class:`AccountConfig`, which the Binance adapter builds at each seed (leverage brackets, leverage, margin
type, multi-assets mode) and from ACCOUNT_CONFIG_UPDATE pushes.

Where Binance documents no formula, or gridbot cannot see an input, the figure is None, never a guess:

- multi-assets mode: every figure is None (totals are USD values across assets and haircuts);
- an open isolated position: ``maintenance_margin``, ``mm_rate`` and ``initial_margin`` are None (the
  account totals do not define them; ``available_balance`` stays, it is defined on the cross wallet);
- an open order that could open or increase a position (not reduce-only): ``initial_margin`` and
  ``available_balance`` are None (Binance does not document how resting orders' margin is netted);
- an open position in a symbol the stream does not follow (no live mark), without brackets or leverage,
  margined in another asset than USDT, or with an adjusted bracket multiplier (``notionalCoef``): the
  figures that depend on it are None.

Pure: no I/O, no clock, no threads (the Router calls it on its delivery thread).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

from gridbot._margin import (
    SymbolBrackets,
    available_for_order,
    initial_margin,
    maintenance_margin,
    mm_rate,
    unrealised_pnl,
    wire_decimal,
)
from gridbot.errors import NormalizationError
from gridbot.events import (
    OPEN_ORDER_STATUSES,
    AccountUpdate,
    Event,
    OrderUpdate,
    PositionUpdate,
    WalletUpdate,
)

__all__ = ["AccountBatch", "AccountConfig", "BinanceAccountBook", "Delivered"]

_ZERO: Final = Decimal(0)
_MARGIN_COIN: Final = "USDT"
_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
# Orders that hold margin while they rest: conditional orders hold none until they trigger.
_RESTING: Final = frozenset({"New", "PartiallyFilled"})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountConfig:
    """What the Binance account view needs besides events.  Internal: routed, never delivered.

    ``full`` marks the account-wide seed (start and every resync): then ``open_elsewhere`` lists the
    symbols with an open position that the seeded symbols do not cover.  A symbol seed or an
    ACCOUNT_CONFIG_UPDATE carries only what it knows; the rest stays as it was.
    """

    exchange: str
    timestamp: int
    is_snapshot: bool = False
    full: bool = False
    brackets: Mapping[str, SymbolBrackets] = field(default_factory=_empty)
    leverage: Mapping[str, int] = field(default_factory=_empty)
    isolated: Mapping[str, bool] = field(default_factory=_empty)
    multi_assets: bool | None = None
    open_elsewhere: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AccountBatch:
    """Internal marker around events that change the account together -- the rows of one wire message
    (an ACCOUNT_UPDATE carries the position and the wallet it moved), or a whole snapshot: the account
    view is computed once at the end (``start=False``), never on a half-applied state."""

    start: bool
    timestamp: int = 0
    is_snapshot: bool = False


Delivered = Event | AccountConfig | AccountBatch
"""What flows from the stream's worker to its Router: events, the Binance account configuration and
batch markers."""


@dataclass(slots=True)
class _Totals:
    """Sums over positions and orders; a None means a summand was unknown."""

    unrealised: Decimal | None = _ZERO
    cross_unrealised: Decimal | None = _ZERO
    maintenance: Decimal | None = _ZERO
    cross_initial: Decimal | None = _ZERO
    any_isolated: bool = False

    def add(self, name: str, value: Decimal | None) -> None:
        current = getattr(self, name)
        setattr(self, name, None if current is None or value is None else current + value)


class BinanceAccountBook:
    """The inputs of the Binance account view, and the view itself (see the module docstring).

    ``tracked(symbol)`` answers whether the stream follows the symbol's mark price (it is subscribed);
    a position elsewhere has no live value.
    """

    def __init__(self, exchange: str, tracked: Callable[[str], bool]) -> None:
        self._exchange = exchange
        self._tracked = tracked
        self._primed = False
        self._positions: dict[tuple[str, int], PositionUpdate] = {}
        self._marks: dict[str, Decimal] = {}
        self._orders: dict[tuple[str, str], OrderUpdate] = {}
        self._wallet: Decimal | None = None
        self._cross_wallet: Decimal | None = None
        self._brackets: dict[str, SymbolBrackets] = {}
        self._leverage: dict[str, int] = {}
        self._isolated: dict[str, bool] = {}
        self._multi_assets: bool | None = None
        self._elsewhere: set[str] = set()
        self._last: tuple[Any, ...] | None = None

    # ------------------------------------------------------------------ inputs

    def apply(self, item: Delivered) -> bool:
        """Take one delivered item; True when it can change the view."""
        if isinstance(item, PositionUpdate):
            return self._apply_position(item)
        if isinstance(item, WalletUpdate):
            return self._apply_wallet(item)
        if isinstance(item, OrderUpdate):
            return self._apply_order(item)
        if isinstance(item, AccountConfig):
            self._apply_config(item)
            return True
        return False

    def _apply_position(self, position: PositionUpdate) -> bool:
        slot = (position.symbol, position.position_idx)
        if position.mark_price is not None:
            self._marks[position.symbol] = position.mark_price
        if position.size > 0:
            self._positions[slot] = position
            mode = position.raw.get("mt") if position.raw else None
            if mode in ("cross", "isolated"):
                self._isolated[position.symbol] = mode == "isolated"
        elif self._positions.pop(slot, None) is None:
            self._elsewhere.discard(position.symbol)
            return False
        self._elsewhere.discard(position.symbol)
        return True

    def _apply_wallet(self, wallet: WalletUpdate) -> bool:
        if wallet.coin != _MARGIN_COIN or wallet.wallet_balance is None:
            return False
        self._wallet = wallet.wallet_balance
        self._cross_wallet = _cross_wallet(wallet)
        return True

    def _apply_order(self, order: OrderUpdate) -> bool:
        key = (order.symbol, order.order_id)
        if order.status in OPEN_ORDER_STATUSES:
            self._orders[key] = order
            return True
        return self._orders.pop(key, None) is not None

    def _apply_config(self, config: AccountConfig) -> None:
        self._brackets.update(config.brackets)
        self._leverage.update(config.leverage)
        self._isolated.update(config.isolated)
        if config.multi_assets is not None:
            self._multi_assets = config.multi_assets
        if config.full:
            self._elsewhere = set(config.open_elsewhere)
            self._primed = True

    def forget_symbol(self, symbol: str) -> None:
        """The stream stopped following ``symbol``: its open orders leave the book; a position there
        stays (it is still the account's) but has no live mark any more."""
        for key in [k for k in self._orders if k[0] == symbol]:
            del self._orders[key]

    # ------------------------------------------------------------------ the view

    def changed_view(self, timestamp: int, is_snapshot: bool) -> AccountUpdate | None:
        """The view when it differs from the last one returned (None before the first full seed)."""
        if not self._primed:
            return None
        view = self.view(timestamp, is_snapshot)
        key = _figures(view)
        if key == self._last:
            return None
        self._last = key
        return view

    def view(self, timestamp: int, is_snapshot: bool) -> AccountUpdate:
        """The account view now, every figure Decimal or None (see the module docstring)."""
        if self._multi_assets:
            return AccountUpdate(
                exchange=self._exchange, timestamp=timestamp, is_snapshot=is_snapshot, margin_coin="USD",
                wallet_balance=None, unrealised_pnl=None, margin_balance=None, initial_margin=None,
                maintenance_margin=None, available_balance=None, mm_rate=None, computed=True,
            )
        totals = self._position_totals()
        balance = _sum_or_none(self._wallet, totals.unrealised)
        maintenance = None if totals.any_isolated else totals.maintenance
        cross_initial = _sum_or_none(totals.cross_initial, self._order_margin())
        available = None
        cross_wallet, cross_unrealised = self._cross_wallet, totals.cross_unrealised
        if cross_wallet is not None and cross_unrealised is not None and cross_initial is not None:
            available = available_for_order(cross_wallet, cross_unrealised, cross_initial)
        rate = mm_rate(maintenance, balance) if maintenance is not None and balance is not None else None
        return AccountUpdate(
            exchange=self._exchange,
            timestamp=timestamp,
            is_snapshot=is_snapshot,
            margin_coin=_MARGIN_COIN,
            wallet_balance=self._wallet,
            unrealised_pnl=totals.unrealised,
            margin_balance=balance,
            initial_margin=None if totals.any_isolated else cross_initial,
            maintenance_margin=maintenance,
            available_balance=available,
            mm_rate=rate,
            computed=True,
        )

    def _position_totals(self) -> _Totals:
        totals = _Totals()
        if self._elsewhere:
            return _Totals(None, None, None, None)
        for position in self._positions.values():
            self._add_position(totals, position)
        return totals

    def _add_position(self, totals: _Totals, position: PositionUpdate) -> None:
        symbol = position.symbol
        if _margin_asset(symbol) != _MARGIN_COIN:
            if _margin_asset(symbol) is None:  # unknown margin asset: nothing can be summed safely
                for name in ("unrealised", "cross_unrealised", "maintenance", "cross_initial"):
                    totals.add(name, None)
            return  # another asset's position does not count in the USDT account (single-asset mode)
        mark = self._mark_of(position)
        if mark is None or not self._tracked(symbol):
            for name in ("unrealised", "cross_unrealised", "maintenance", "cross_initial"):
                totals.add(name, None)
            return
        notional = position.size * mark
        pnl = unrealised_pnl(position.side, position.size, position.entry_price, mark)
        totals.add("unrealised", pnl)
        isolated = self._isolated.get(symbol)
        if isolated is None:
            for name in ("cross_unrealised", "maintenance", "cross_initial"):
                totals.add(name, None)
            return
        if isolated:
            totals.any_isolated = True
            return
        totals.add("cross_unrealised", pnl)
        brackets = self._brackets.get(symbol)
        totals.add("maintenance", maintenance_margin(notional, brackets) if brackets else None)
        leverage = self._leverage.get(symbol)
        totals.add("cross_initial", initial_margin(notional, leverage) if leverage else None)

    def _mark_of(self, position: PositionUpdate) -> Decimal | None:
        """The merged mark; else the symbol's last known one; else, for a push that came before any
        ticker, the mark Binance valued it at (its ``up``: entry + uPnL / size, minus for a short)."""
        if position.mark_price is not None:
            return position.mark_price
        known = self._marks.get(position.symbol)
        if known is not None:
            return known
        if position.is_snapshot or position.size == 0:
            return None
        move = position.unrealised_pnl / position.size
        return position.entry_price - move if position.side == "Sell" else position.entry_price + move

    def _order_margin(self) -> Decimal | None:
        """Margin held by resting orders: zero for orders that can only reduce; unknown (None) as soon
        as one could open or increase a position (Binance does not document the netting)."""
        for order in self._orders.values():
            if order.status in _RESTING and not order.reduce_only and order.qty > order.filled_qty:
                return None
        return _ZERO


def _figures(view: AccountUpdate) -> tuple[Any, ...]:
    return (view.margin_coin, view.wallet_balance, view.unrealised_pnl, view.margin_balance,
            view.initial_margin, view.maintenance_margin, view.available_balance, view.mm_rate)


def _sum_or_none(*values: Decimal | None) -> Decimal | None:
    total = _ZERO
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _cross_wallet(wallet: WalletUpdate) -> Decimal | None:
    """ACCOUNT_UPDATE ``cw`` or balance v3 ``crossWalletBalance`` (the wallet less isolated margin)."""
    raw = wallet.raw or _EMPTY
    value = raw.get("cw", raw.get("crossWalletBalance"))
    if value is None:
        return None
    try:
        return wire_decimal(value, "cw", raw)
    except NormalizationError:
        return None


def _margin_asset(symbol: str) -> str | None:
    """The quote (= margin) asset of a USDⓈ-M symbol: BTCUSDT, BTCUSDT_260327 -> USDT; BTCUSDC -> USDC."""
    pair = symbol.split("_", 1)[0]
    for asset in ("USDT", "USDC", "BUSD", "FDUSD"):
        if pair.endswith(asset):
            return asset
    return None
