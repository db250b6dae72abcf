"""Binance USDⓈ-M account payloads built from the engine: leverage brackets and account information.

Pure functions (engine snapshots in, JSON-ready dicts out).  Shapes: ``GET /fapi/v1/leverageBracket``
(Notional-and-Leverage-Brackets: JSON *numbers*, a list without ``symbol``, one object with it),
``GET /fapi/v2/account`` and ``/fapi/v3/account`` (Account-Information-V2/V3: decimal strings; v2 lists every
symbol's slots with ``leverage``/``isolated``/``maxNotional``, v3 only slots with a position or open orders),
``POST /fapi/v1/leverage`` (Change-Initial-Leverage).  All figures are the engine's (single-asset cross
margin): totals = the ``Wallet``, per slot = the ``Position``.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from gridbot.emulator.engine import Position, Wallet
from gridbot.emulator.margin import LeverageBracket, max_notional

__all__ = ["account_information", "leverage_bracket_row", "leverage_response", "number"]

_PS_BY_IDX = {0: "BOTH", 1: "LONG", 2: "SHORT"}


def number(value: Decimal) -> int | float:
    """A JSON number as Binance sends it in leverageBracket: int when integral, else a float."""
    return int(value) if value == value.to_integral_value() else float(value)


def _fmt(value: Decimal) -> str:
    return "0" if value == 0 else format(value, "f")


def leverage_bracket_row(symbol: str, brackets: Iterable[LeverageBracket]) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "brackets": [
            {
                "bracket": b.bracket,
                "initialLeverage": b.initial_leverage,
                "notionalCap": number(b.notional_cap),
                "notionalFloor": number(b.notional_floor),
                "maintMarginRatio": float(b.maint_margin_ratio),
                "cum": float(b.cum),
            }
            for b in brackets
        ],
    }


def leverage_response(symbol: str, leverage: Decimal,
                      brackets: tuple[LeverageBracket, ...]) -> dict[str, Any]:
    return {"leverage": int(leverage), "maxNotionalValue": _fmt(max_notional(brackets, leverage)),
            "symbol": symbol}


def _asset(wallet: Wallet, *, v2: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "asset": wallet.coin,
        "walletBalance": _fmt(wallet.wallet_balance),
        "unrealizedProfit": _fmt(wallet.unrealised_pnl),
        "marginBalance": _fmt(wallet.margin_balance),
        "maintMargin": _fmt(wallet.maintenance_margin),
        "initialMargin": _fmt(wallet.total_initial_margin),
        "positionInitialMargin": _fmt(wallet.initial_margin),
        "openOrderInitialMargin": _fmt(wallet.order_margin),
        "crossWalletBalance": _fmt(wallet.wallet_balance),
        "crossUnPnl": _fmt(wallet.unrealised_pnl),
        "availableBalance": _fmt(wallet.available_balance),
        "maxWithdrawAmount": _fmt(wallet.available_balance),
        "updateTime": wallet.updated_time,
    }
    if v2:
        row["marginAvailable"] = True
    return row


def _signed_amount(position: Position) -> Decimal:
    return -position.size if position.side == "Sell" else position.size


def _position_v3(position: Position, order_margin: Decimal) -> dict[str, Any]:
    notional = _signed_amount(position) * position.mark_price
    return {
        "symbol": position.symbol,
        "positionSide": _PS_BY_IDX[position.position_idx],
        "positionAmt": _fmt(_signed_amount(position)),
        "unrealizedProfit": _fmt(position.unrealised_pnl),
        "isolatedMargin": "0",
        "notional": _fmt(notional),
        "isolatedWallet": "0",
        "initialMargin": _fmt(position.initial_margin + order_margin),
        "maintMargin": _fmt(position.maintenance_margin),
        "updateTime": position.updated_time,
    }


def _position_v2(position: Position, order_margin: Decimal,
                 brackets: tuple[LeverageBracket, ...]) -> dict[str, Any]:
    return {
        "symbol": position.symbol,
        "initialMargin": _fmt(position.initial_margin + order_margin),
        "maintMargin": _fmt(position.maintenance_margin),
        "unrealizedProfit": _fmt(position.unrealised_pnl),
        "positionInitialMargin": _fmt(position.initial_margin),
        "openOrderInitialMargin": _fmt(order_margin),
        "leverage": _fmt(position.leverage),
        "isolated": False,
        "entryPrice": _fmt(position.entry_price),
        "breakEvenPrice": _fmt(position.entry_price),
        "maxNotional": _fmt(max_notional(brackets, position.leverage)),
        "bidNotional": "0",
        "askNotional": "0",
        "positionSide": _PS_BY_IDX[position.position_idx],
        "positionAmt": _fmt(_signed_amount(position)),
        "updateTime": position.updated_time,
    }


SlotMargins = tuple[Position, Decimal, tuple[LeverageBracket, ...]]


def account_information(wallet: Wallet, positions: list[SlotMargins], *, v2: bool) -> dict[str, Any]:
    """``positions``: (slot, its open orders' initial margin, the symbol's brackets) in symbol order.

    v2 lists them all; v3 only those with a position or open-order margin (the caller passes every slot
    of every symbol, flat ones included).
    """
    totals = {
        "totalInitialMargin": _fmt(wallet.total_initial_margin),
        "totalMaintMargin": _fmt(wallet.maintenance_margin),
        "totalWalletBalance": _fmt(wallet.wallet_balance),
        "totalUnrealizedProfit": _fmt(wallet.unrealised_pnl),
        "totalMarginBalance": _fmt(wallet.margin_balance),
        "totalPositionInitialMargin": _fmt(wallet.initial_margin),
        "totalOpenOrderInitialMargin": _fmt(wallet.order_margin),
        "totalCrossWalletBalance": _fmt(wallet.wallet_balance),
        "totalCrossUnPnl": _fmt(wallet.unrealised_pnl),
        "availableBalance": _fmt(wallet.available_balance),
        "maxWithdrawAmount": _fmt(wallet.available_balance),
    }
    if not v2:
        rows = [_position_v3(p, om) for p, om, _ in positions if p.size != 0 or om != 0]
        return {**totals, "assets": [_asset(wallet, v2=False)], "positions": rows}
    head = {"feeTier": 0, "feeBurn": False, "canTrade": True, "canDeposit": True, "canWithdraw": True,
            "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1}
    return {**head, **totals, "assets": [_asset(wallet, v2=True)],
            "positions": [_position_v2(p, om, b) for p, om, b in positions]}
