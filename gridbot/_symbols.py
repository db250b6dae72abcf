"""The exchanges' symbol syntax, checked at ``subscribe()`` before a symbol reaches a URL or a topic."""

from __future__ import annotations

import re

__all__ = ["normalize_symbol"]

# The exchanges' symbol syntax.  Binance documents the legal range of ``symbol`` (error -1100):
# ``^[A-Z0-9-_.]{1,20}$``.  Bybit documents none; its linear symbols are letters and digits
# (``BTCUSDT``, ``1000PEPEUSDT``), dated futures add ``-`` (``BTC-26DEC25``), and ``.`` would split
# the ``tickers.<SYM>`` topic.  Anything else would land unescaped in a stream URL or topic.
_SYMBOL_SYNTAX: dict[str, re.Pattern[str]] = {
    "binance": re.compile(r"[A-Z0-9_.-]{1,20}"),
    "bybit": re.compile(r"[A-Z0-9][A-Z0-9_-]{0,24}"),
}


def normalize_symbol(symbol: str, exchange: str) -> str:
    """The symbol upper-cased, or ValueError when it cannot be an ``exchange`` symbol."""
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError(f"symbol must be a non-empty string, not {symbol!r}")
    clean = symbol.strip().upper()
    if not symbol.isascii() or not _SYMBOL_SYNTAX[exchange].fullmatch(clean):  # "ß".upper() is "SS"
        raise ValueError(
            f"{symbol[:40]!r} is not a {exchange} symbol: expected letters and digits like 'BTCUSDT' "
            f"(pattern {_SYMBOL_SYNTAX[exchange].pattern}), no spaces, slashes or URL characters")
    return clean
