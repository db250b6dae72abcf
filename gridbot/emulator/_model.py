"""The engine's data model: configuration, the frozen snapshots it hands out, its events and its error.

Plain frozen dataclasses (Decimal money, ints for ids and ms times), shared by the engine and the wire
servers; :mod:`gridbot.emulator.engine` re-exports every name, so ``from gridbot.emulator.engine import
SymbolConfig`` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from gridbot.emulator.margin import DEFAULT_BRACKETS, LeverageBracket

__all__ = [
    "EngineConfig",
    "EngineError",
    "EngineEvent",
    "Fill",
    "FillEvent",
    "LedgerEntry",
    "LeverageEvent",
    "Order",
    "OrderEvent",
    "Position",
    "PositionEvent",
    "PriceEvent",
    "Prices",
    "SymbolConfig",
    "Wallet",
    "WalletEvent",
]

_ZERO = Decimal("0")


# --------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SymbolConfig:
    symbol: str
    start_price: Decimal
    tick_size: Decimal = Decimal("0.1")
    qty_step: Decimal = Decimal("0.001")
    volatility: float = 0.0005  # relative std-dev of one step of the random walk
    funding_rate: Decimal = Decimal("0.0001")
    brackets: tuple[LeverageBracket, ...] = DEFAULT_BRACKETS  # notional / leverage brackets (Binance's)
    leverage: Decimal | None = None  # the symbol's initial leverage; None: EngineConfig.leverage
    min_notional: Decimal = Decimal("5")  # smallest price * qty of an order that opens or increases


@dataclass(frozen=True)
class EngineConfig:
    symbols: tuple[SymbolConfig, ...]
    seed: int = 1
    wallet_balance: Decimal = Decimal("10000")
    coin: str = "USDT"
    maker_fee: Decimal = Decimal("0.0002")
    taker_fee: Decimal = Decimal("0.00055")
    leverage: Decimal = Decimal("10")  # initial leverage of every symbol without its own
    hedge_mode: bool = False


class EngineError(Exception):
    """A refused request; ``code`` is engine-level and stable, the wire servers map it to their errors."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# ------------------------------------------------------------------------------------------ snapshots


@dataclass(frozen=True)
class Order:
    order_id: int
    client_order_id: str
    symbol: str
    side: str  # "Buy" | "Sell"
    order_type: str  # "Limit" | "Market"
    qty: Decimal
    price: Decimal | None  # None for Market
    trigger_price: Decimal | None  # conditionals only
    reduce_only: bool  # the flag as given; see Engine.is_reducing for the hedge-mode rule
    position_idx: int
    status: str  # New Filled Cancelled Rejected Untriggered Triggered Deactivated
    filled_qty: Decimal
    avg_price: Decimal  # 0 until filled
    is_conditional: bool
    kind: str  # "" | "TakeProfit" | "StopLoss"
    parent_id: int | None
    child_id: int | None
    created_time: int
    updated_time: int
    post_only: bool = False
    reason: str = ""  # why it was Rejected / Cancelled by the engine ("" when asked for)
    forced: str = ""  # "" | "liquidation" | "adl": an exchange-made close (Engine.liquidate)


@dataclass(frozen=True)
class Fill:
    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_rate: Decimal
    is_maker: bool
    realised_pnl: Decimal  # gross, before fees
    position_idx: int
    timestamp: int
    forced: str = ""  # "" | "liquidation" | "adl" (the order's ``forced``)
    seq: int = 0  # the slot's ``seq`` after this fill (Bybit's cross sequence ties both)


@dataclass(frozen=True)
class Position:
    symbol: str
    position_idx: int
    side: str  # "Buy" | "Sell" | ""
    size: Decimal  # >= 0
    entry_price: Decimal  # 0 when flat
    mark_price: Decimal
    unrealised_pnl: Decimal
    cum_realised_gross: Decimal
    cum_fees: Decimal
    cum_realised_net: Decimal
    updated_time: int
    seq: int  # engine-global, +1 per change of any slot
    leverage: Decimal = _ZERO  # the symbol's leverage
    initial_margin: Decimal = _ZERO  # |size * mark| / leverage
    maintenance_margin: Decimal = _ZERO  # |size * mark| * maintMarginRatio - cum of its bracket
    maint_margin_ratio: Decimal = _ZERO  # of the bracket the notional falls in


@dataclass(frozen=True)
class Wallet:
    coin: str
    wallet_balance: Decimal
    available_balance: Decimal
    equity: Decimal
    unrealised_pnl: Decimal
    maintenance_margin: Decimal
    mm_rate: Decimal
    updated_time: int
    initial_margin: Decimal = _ZERO  # positions' initial margin (Binance totalPositionInitialMargin)
    order_margin: Decimal = _ZERO  # open orders' initial margin (totalOpenOrderInitialMargin)

    @property
    def margin_balance(self) -> Decimal:
        """Wallet balance + unrealised PnL (Binance's definition; = ``equity``)."""
        return self.wallet_balance + self.unrealised_pnl

    @property
    def total_initial_margin(self) -> Decimal:
        """Positions' plus open orders' initial margin (Binance totalInitialMargin)."""
        return self.initial_margin + self.order_margin


@dataclass(frozen=True)
class Prices:
    symbol: str
    mark: Decimal
    last: Decimal
    index: Decimal
    funding_rate: Decimal
    next_funding_time: int
    timestamp: int


@dataclass(frozen=True)
class LedgerEntry:
    trade_id: int
    symbol: str
    position_idx: int
    side: str
    qty: Decimal
    price: Decimal
    realised_gross: Decimal
    fee: Decimal
    timestamp: int


# --------------------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class OrderEvent:
    order: Order
    # "New", "Trade", "Cancelled", "Rejected", "Triggered", "Expired", "Deactivated", "Filled"
    exec_type: str
    timestamp: int
    fill: Fill | None = None  # set on "Trade": the fill the following FillEvent carries


@dataclass(frozen=True)
class FillEvent:
    fill: Fill
    timestamp: int


@dataclass(frozen=True)
class PositionEvent:
    position: Position
    timestamp: int


@dataclass(frozen=True)
class WalletEvent:
    wallet: Wallet
    timestamp: int


@dataclass(frozen=True)
class PriceEvent:
    prices: Prices
    timestamp: int


@dataclass(frozen=True)
class LeverageEvent:
    """A symbol's leverage changed: its slots (current mode, flat ones too) and the account, re-margined."""

    symbol: str
    leverage: Decimal
    positions: tuple[Position, ...]
    wallet: Wallet
    timestamp: int


EngineEvent = OrderEvent | FillEvent | PositionEvent | WalletEvent | PriceEvent | LeverageEvent
