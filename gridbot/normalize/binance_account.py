"""Binance USDⓈ-M account configuration: wire mappings in, :class:`~gridbot._account.AccountConfig` out.

Pure: no SDK, socket, clock or logging.  Sources: ``GET /fapi/v1/leverageBracket`` (tiers, JSON numbers),
``GET /fapi/v2/account`` (per symbol ``leverage`` and ``isolated``, account ``multiAssetsMargin``; its
``positions`` list every symbol), and the ACCOUNT_CONFIG_UPDATE push (``ac``: a symbol's new leverage;
``ai``: the multi-assets mode ``j``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final

from gridbot._account import AccountConfig
from gridbot._margin import SymbolBrackets, parse_leverage_brackets, wire_decimal
from gridbot.errors import NormalizationError
from gridbot.normalize._common import to_int

__all__ = ["account_config_from_push", "account_config_from_rest"]

EXCHANGE: Final = "binance"


def account_config_from_rest(
    account: Any,
    brackets: Mapping[str, SymbolBrackets],
    symbols: Collection[str],
    *,
    full: bool,
    timestamp: int,
) -> AccountConfig:
    """The seed's configuration of ``symbols`` from a ``GET /fapi/v2/account`` answer and their tiers.

    ``full`` (the account-wide seed): symbols outside ``symbols`` with an open position are listed in
    ``open_elsewhere`` -- their value cannot be followed, so the account totals are unknown.
    """
    if not isinstance(account, Mapping):
        raise NormalizationError("account answer is not an object", account)
    rows = account.get("positions")
    if not isinstance(rows, list):
        raise NormalizationError("account answer has no positions list", account)
    wanted = frozenset(symbols)
    leverage: dict[str, int] = {}
    isolated: dict[str, bool] = {}
    elsewhere: set[str] = set()
    for row in rows:
        if not isinstance(row, Mapping) or not isinstance(row.get("symbol"), str):
            raise NormalizationError("account position row has no symbol", account)
        symbol = row["symbol"]
        if symbol in wanted:
            leverage[symbol] = _leverage(row.get("leverage"), row)
            if isinstance(row.get("isolated"), bool):
                isolated[symbol] = row["isolated"]
        elif full and wire_decimal(row.get("positionAmt", "0"), "positionAmt", row) != 0:
            elsewhere.add(symbol)
    multi = account.get("multiAssetsMargin")
    return AccountConfig(
        exchange=EXCHANGE,
        timestamp=timestamp,
        is_snapshot=True,
        full=full,
        brackets={s: b for s, b in brackets.items() if s in wanted},
        leverage=leverage,
        isolated=isolated,
        multi_assets=multi if isinstance(multi, bool) else None,
        open_elsewhere=frozenset(elsewhere),
    )


def brackets_from_rest(payload: Any) -> dict[str, SymbolBrackets]:
    """``GET /fapi/v1/leverageBracket`` (one object with ``symbol``, a list without)."""
    return parse_leverage_brackets(payload)


def account_config_from_push(msg: Mapping[str, Any]) -> AccountConfig:
    """ACCOUNT_CONFIG_UPDATE: ``ac`` = ``{s, l}`` (a symbol's leverage), ``ai`` = ``{j}`` (multi-assets)."""
    timestamp = to_int(msg.get("T", msg.get("E")), "T", msg)
    leverage: dict[str, int] = {}
    multi: bool | None = None
    trade = msg.get("ac")
    if isinstance(trade, Mapping):
        symbol = trade.get("s")
        if not isinstance(symbol, str) or not symbol:
            raise NormalizationError("ACCOUNT_CONFIG_UPDATE ac has no symbol", msg)
        leverage[symbol] = _leverage(trade.get("l"), msg)
    info = msg.get("ai")
    if isinstance(info, Mapping):
        if not isinstance(info.get("j"), bool):
            raise NormalizationError("ACCOUNT_CONFIG_UPDATE ai.j is not a boolean", msg)
        multi = info["j"]
    if not leverage and multi is None:
        raise NormalizationError("ACCOUNT_CONFIG_UPDATE has neither ac nor ai", msg)
    return AccountConfig(exchange=EXCHANGE, timestamp=timestamp, leverage=leverage, multi_assets=multi)


def _leverage(value: Any, raw: Any) -> int:
    number = wire_decimal(value, "leverage", raw)
    if number <= 0 or number != number.to_integral_value():
        raise NormalizationError(f"leverage is not a positive integer: {value!r}", raw)
    return int(number)
