"""The normalized events gridbot delivers: frozen, slotted, keyword-only dataclasses.

Every price, quantity and money field is a :class:`~decimal.Decimal` built from the wire
string, never a float.  ``raw`` keeps the wire mapping for debugging; it takes no part in
equality, hashing or ``repr`` so two events that mean the same thing compare equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

__all__ = [
    "OPEN_ORDER_STATUSES",
    "ORDER_STATUSES",
    "TERMINAL_ORDER_STATUSES",
    "AccountUpdate",
    "Event",
    "Exchange",
    "ExecType",
    "FillUpdate",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "PositionSide",
    "PositionUpdate",
    "Side",
    "StatusState",
    "StatusUpdate",
    "TickerUpdate",
    "WalletUpdate",
]

Exchange = Literal["binance", "bybit"]
Side = Literal["Buy", "Sell"]
PositionSide = Literal["Buy", "Sell", ""]  # "" flat
OrderType = Literal["Limit", "Market"]

OrderStatus = Literal[
    "New",
    "PartiallyFilled",
    "Filled",
    "Cancelled",
    "Rejected",
    "Expired",
    "Untriggered",
    "Triggered",
    "Deactivated",
]
OPEN_ORDER_STATUSES: frozenset[str] = frozenset({"New", "PartiallyFilled", "Untriggered", "Triggered"})
TERMINAL_ORDER_STATUSES: frozenset[str] = frozenset(
    {"Filled", "Cancelled", "Rejected", "Expired", "Deactivated"}
)
ORDER_STATUSES: frozenset[str] = OPEN_ORDER_STATUSES | TERMINAL_ORDER_STATUSES

ExecType = Literal["Trade", "Liquidation", "Adl"]
"""How a fill came about: an ordinary trade, a liquidation (Binance ``x`` CALCULATED with an
``autoclose-`` order, Bybit ``BustTrade``) or auto-deleveraging (Binance ``adl_autoclose``, Bybit
``AdlTrade``)."""

StatusState = Literal["connected", "reconnecting", "resynced", "stopped", "failed"]


def _no_raw() -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class _EventBase:
    exchange: str
    timestamp: int
    is_snapshot: bool = False
    raw: Mapping[str, Any] = field(default_factory=_no_raw, compare=False, repr=False)
    # Delivered at start from a journal: the last state the previous run delivered (see gridbot.Journal).
    restored: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionUpdate(_EventBase):
    """One position slot: ``position_idx`` 0 one-way, 1 hedge long, 2 hedge short."""

    symbol: str
    position_idx: int
    side: PositionSide  # "Buy" long, "Sell" short, "" flat
    size: Decimal  # always >= 0; the side carries the direction
    entry_price: Decimal
    mark_price: Decimal | None
    unrealised_pnl: Decimal
    cum_realised_pnl: Decimal | None
    seq: int | None = None
    """The exchange's sequence of this slot where it sends one (Bybit's cross sequence; -1 = never
    traded), else None.  It orders trades only: Bybit does not bump it for settings changes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WalletUpdate(_EventBase):
    """Balances of one coin in that coin's units; a field is None where the exchange does not send it.

    Account-wide figures (margin balance, maintenance margin, MM rate) are in :class:`AccountUpdate`.
    """

    coin: str
    wallet_balance: Decimal | None
    available_balance: Decimal | None
    equity: Decimal | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountUpdate(_EventBase):
    """The account's risk view, in ``margin_coin`` ("USDT" Binance single-asset, "USD" Bybit UTA).

    ``mm_rate`` = maintenance margin / margin balance (liquidation at 1).  ``computed`` is True when
    gridbot derived the figures (Binance: wallet, positions at the merged mark, leverage brackets) and
    False when the exchange sent them (Bybit's wallet topic).  A field is None where it is not known
    or not defined (e.g. isolated positions or multi-assets mode on Binance) -- never a guess.
    """

    margin_coin: str
    wallet_balance: Decimal | None
    unrealised_pnl: Decimal | None
    margin_balance: Decimal | None
    initial_margin: Decimal | None
    maintenance_margin: Decimal | None
    available_balance: Decimal | None
    mm_rate: Decimal | None
    computed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderUpdate(_EventBase):
    """The state of one order, regular or conditional (take-profit, stop)."""

    symbol: str
    order_id: str
    client_order_id: str
    side: Side
    order_type: OrderType
    status: OrderStatus
    price: Decimal
    qty: Decimal
    filled_qty: Decimal
    avg_price: Decimal
    trigger_price: Decimal | None
    reduce_only: bool
    position_idx: int
    is_take_profit: bool
    linked_order_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FillUpdate(_EventBase):
    """One execution; ``realised_pnl`` is this fill's PnL before fees, None where the exchange's
    answer does not carry it (Bybit's REST execution list, used to backfill a gap, has no ``execPnl``).

    ``exec_type`` marks forced closes ("Liquidation", "Adl"); ``seq`` is Bybit's cross sequence.
    """

    symbol: str
    order_id: str
    trade_id: str
    side: Side
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_asset: str
    realised_pnl: Decimal | None
    is_maker: bool
    position_idx: int
    exec_type: ExecType = "Trade"
    seq: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TickerUpdate(_EventBase):
    """Prices of one symbol; a field is None until the exchange has sent it."""

    symbol: str
    mark_price: Decimal | None
    last_price: Decimal | None
    index_price: Decimal | None
    funding_rate: Decimal | None
    next_funding_time: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusUpdate(_EventBase):
    """A change of the stream's connection state; ``timestamp`` is local wall-clock ms."""

    state: StatusState
    detail: str = ""


Event = (
    PositionUpdate | WalletUpdate | AccountUpdate | OrderUpdate | FillUpdate | TickerUpdate | StatusUpdate
)
