"""Bybit's public ``tickers.<SYM>`` frames merged into full :class:`~gridbot.events.TickerUpdate` events.

The one stateful Bybit parser (a delta carries only what changed), kept apart from the stateless private and
REST parsers in :mod:`gridbot.normalize.bybit`, which re-exports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from gridbot.errors import NormalizationError
from gridbot.events import TickerUpdate
from gridbot.normalize._bybit_wire import EXCHANGE, MALFORMED, control_frame
from gridbot.normalize._common import Ignored, opt_dec, to_int

__all__ = ["TickerMerger"]

_NO_FUNDING_TIME: Final = frozenset({"", "0", 0})
_TICKER_PREFIX: Final = "tickers."
_EMPTY_TICKER: Final[tuple[Any, ...]] = (None, None, None, None, None)


class TickerMerger:
    """Keeps the last full ``tickers.<SYM>`` state per symbol so a delta never loses a field.

    A ``snapshot`` replaces the state, a ``delta`` overwrites only the fields it carries (a delta before
    any snapshot merges onto an empty ticker).  Only the five wire strings gridbot uses are kept, as
    strings.  ``apply`` returns ``Ignored("unchanged")`` when none of markPrice, lastPrice, indexPrice,
    fundingRate, nextFundingTime changed, so bid/ask-only updates emit nothing.  This matters with pybit,
    which merges deltas itself and hands every frame on as ``type: "snapshot"``.  A frame with a bad number
    raises and leaves the state as it was.  Not thread-safe: one owner.

    ``raw`` of the returned update is the frame; under pybit its ``data`` is pybit's own dict, which pybit
    keeps mutating, so consumers on another thread should copy the frame before queueing it.
    """

    __slots__ = ("_merged",)

    def __init__(self) -> None:
        self._merged: dict[str, tuple[Any, ...]] = {}

    def apply(self, msg: Mapping[str, Any]) -> TickerUpdate | Ignored:
        """Merge one public-socket frame; op answers give ``Ignored(op)``/``Ignored("ack")``, other topics
        ``Ignored(topic)``."""
        topic = msg.get("topic")
        if topic is None:
            return control_frame(msg)
        if not isinstance(topic, str) or not topic.startswith(_TICKER_PREFIX):
            return Ignored(str(topic))
        try:
            return self._apply(topic[len(_TICKER_PREFIX) :], msg)
        except MALFORMED as exc:
            raise NormalizationError(f"malformed {topic} message: {exc!r}", msg) from exc

    def reset(self, symbol: str | None = None) -> None:
        """Forget one symbol (unsubscribed) or all of them (reconnect: the next frame is a snapshot)."""
        if symbol is None:
            self._merged.clear()
        else:
            self._merged.pop(symbol, None)

    def _apply(self, symbol: str, msg: Mapping[str, Any]) -> TickerUpdate | Ignored:
        data = msg["data"]
        kind = msg.get("type")
        previous = self._merged.get(symbol, _EMPTY_TICKER)
        get = data.get
        if kind == "snapshot":
            merged = (
                get("markPrice"),
                get("lastPrice"),
                get("indexPrice"),
                get("fundingRate"),
                get("nextFundingTime"),
            )
        elif kind == "delta":
            merged = (
                get("markPrice", previous[0]),
                get("lastPrice", previous[1]),
                get("indexPrice", previous[2]),
                get("fundingRate", previous[3]),
                get("nextFundingTime", previous[4]),
            )
        else:
            raise NormalizationError(f"unknown ticker frame type {kind!r}", msg)
        if merged == previous:
            return Ignored("unchanged")
        ticker = _ticker(symbol, merged, msg)
        self._merged[symbol] = merged
        return ticker


def _ticker(symbol: str, merged: tuple[Any, ...], msg: Mapping[str, Any]) -> TickerUpdate:
    mark, last, index, funding, next_funding = merged
    return TickerUpdate(
        exchange=EXCHANGE,
        timestamp=to_int(msg.get("ts"), "ts", msg),
        raw=msg,
        symbol=symbol,
        mark_price=opt_dec(mark, "markPrice", msg),
        last_price=opt_dec(last, "lastPrice", msg),
        index_price=opt_dec(index, "indexPrice", msg),
        funding_rate=opt_dec(funding, "fundingRate", msg),
        next_funding_time=(
            None
            if next_funding is None or next_funding in _NO_FUNDING_TIME
            else to_int(next_funding, "nextFundingTime", msg)
        ),
    )
