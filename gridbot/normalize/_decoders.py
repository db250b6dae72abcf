"""Per-channel decoders: the stateful part of normalizing, owned by the stream, not by the adapters.

Most frames normalize alone (the pure parsers of :mod:`gridbot.normalize.binance` / ``bybit``), but two
need memory: Bybit's executions carry no ``positionIdx`` (the fill takes its order's slot, so the
decoder remembers order -> slot from pushes and REST), and Bybit's ticker deltas carry only what changed
(:class:`~gridbot.normalize.bybit.TickerMerger`).  One decoder object per channel keeps that state;
the stream calls it from one thread at a time (the worker, or perf's SDK-thread path outside seed and
resync windows).  Pure: no SDK, socket, clock, logging or global state.

Hooks the stream calls besides :meth:`Decoder.decode`:

* :meth:`Decoder.seed` with events REST fetched (snapshot, final order states, backfilled fills): the
  decoder learns from them (Bybit: the orders' slots) and completes them (Bybit: fills' slots).
* :meth:`Decoder.reset` when the channel went ``down`` or may have a ``gap``: the next connection
  starts afresh (Bybit's public socket sends a new snapshot per topic).
* :meth:`Decoder.forget` when a symbol is unsubscribed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final, Literal, Protocol

from gridbot._account import AccountConfig
from gridbot.errors import NormalizationError
from gridbot.events import Event, FillUpdate, OrderUpdate
from gridbot.normalize._common import Ignored, ListenKeyExpired
from gridbot.normalize.binance import parse_market_message, parse_user_message
from gridbot.normalize.binance_account import account_config_from_push
from gridbot.normalize.bybit import TickerMerger, parse_private_message

__all__ = [
    "BinancePrivateDecoder",
    "BinancePublicDecoder",
    "BybitPrivateDecoder",
    "BybitPublicDecoder",
    "Decoded",
    "Decoder",
    "new_decoder",
]

Decoded = Sequence[Event | AccountConfig] | Ignored | ListenKeyExpired

# Orders whose slot a Bybit private decoder remembers (least recently seen dropped first): far more
# than a grid keeps open, and the slot is only needed until the order's last fill.
ORDER_SLOT_CAPACITY: Final = 50_000


class Decoder(Protocol):
    """One channel's decoding state (see the module docstring)."""

    def decode(self, payload: Any) -> Decoded:
        """Normalize one raw frame; raises NormalizationError on bad input."""

    def seed(self, events: Sequence[Event]) -> list[Event]:
        """REST-fetched ``events`` as the stream should deliver them (learned from, completed)."""

    def reset(self) -> None:
        """The channel's connection was replaced or may have missed frames."""

    def forget(self, symbol: str) -> None:
        """``symbol`` was unsubscribed."""


def new_decoder(exchange: str, channel: Literal["private", "public"]) -> Decoder:
    """A fresh decoder for ``exchange``'s ``channel`` ("binance" or "bybit")."""
    decoders: dict[tuple[str, str], type[Decoder]] = {
        ("binance", "private"): BinancePrivateDecoder,
        ("binance", "public"): BinancePublicDecoder,
        ("bybit", "private"): BybitPrivateDecoder,
        ("bybit", "public"): BybitPublicDecoder,
    }
    try:
        return decoders[exchange, channel]()
    except KeyError:
        raise ValueError(f"no decoder for {exchange!r} {channel!r}") from None


class _Stateless:
    """Hooks of a decoder without memory."""

    __slots__ = ()

    def seed(self, events: Sequence[Event]) -> list[Event]:
        return list(events)

    def reset(self) -> None:
        return None

    def forget(self, symbol: str) -> None:
        return None


class BinancePrivateDecoder(_Stateless):
    """The user data stream: account, order and algo-order pushes, ``ACCOUNT_CONFIG_UPDATE``,
    ``listenKeyExpired``."""

    __slots__ = ()

    def decode(self, payload: Any) -> Decoded:
        if isinstance(payload, dict) and payload.get("e") == "ACCOUNT_CONFIG_UPDATE":
            return [account_config_from_push(payload)]
        return parse_user_message(payload)


class BinancePublicDecoder(_Stateless):
    """The combined market streams (``<sym>@markPrice@1s``)."""

    __slots__ = ()

    def decode(self, payload: Any) -> Decoded:
        result = parse_market_message(payload)
        return result if isinstance(result, Ignored) else list[Event](result)


class BybitPrivateDecoder:
    """Position, order, execution and wallet frames; fills take their order's ``position_idx``.

    Executions carry no ``positionIdx``; in hedge mode the slot matters (which side a fill reduced).
    The decoder remembers the slot of every order it sees (pushed or seeded from REST, the latest
    :data:`ORDER_SLOT_CAPACITY`) and gives it to the order's fills; a fill of an order never seen
    keeps slot 0 (the stream fetches such orders after a gap and fills the slot in itself).
    """

    __slots__ = ("_capacity", "_slots")

    def __init__(self, capacity: int = ORDER_SLOT_CAPACITY) -> None:
        self._slots: OrderedDict[str, int] = OrderedDict()
        self._capacity = capacity

    def decode(self, payload: Any) -> Decoded:
        if not isinstance(payload, Mapping):
            raise NormalizationError("Bybit private frame is not a JSON object", payload)
        result = parse_private_message(payload)
        return result if isinstance(result, Ignored) else self.seed(result)

    def seed(self, events: Sequence[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            if isinstance(event, OrderUpdate):
                self._remember((event,))
            elif isinstance(event, FillUpdate):
                slot = self._slots.get(event.order_id, 0)
                if slot != event.position_idx:  # one-way accounts (idx 0) need no copy
                    event = replace(event, position_idx=slot)
            out.append(event)
        return out

    def reset(self) -> None:
        """Orders outlive a connection: their slots are kept."""

    def forget(self, symbol: str) -> None:
        """Kept too: a fill of an order of ``symbol`` may still arrive after a resubscribe."""

    def slot_of(self, order_id: str) -> int | None:
        """The remembered slot of ``order_id`` (None when not seen or dropped)."""
        return self._slots.get(order_id)

    def _remember(self, orders: Iterable[OrderUpdate]) -> None:
        slots = self._slots
        for order in orders:
            slots[order.order_id] = order.position_idx
            slots.move_to_end(order.order_id)
        while len(slots) > self._capacity:
            slots.popitem(last=False)


class BybitPublicDecoder(_Stateless):
    """``tickers.<SYM>`` snapshots and deltas merged into full tickers (:class:`TickerMerger`)."""

    __slots__ = ("_merger",)

    def __init__(self) -> None:
        self._merger = TickerMerger()

    def decode(self, payload: Any) -> Decoded:
        if not isinstance(payload, Mapping):
            raise NormalizationError("Bybit public frame is not a JSON object", payload)
        ticker = self._merger.apply(payload)
        return ticker if isinstance(ticker, Ignored) else [ticker]

    def reset(self) -> None:
        """A new connection starts with a fresh snapshot per topic."""
        self._merger.reset()

    def forget(self, symbol: str) -> None:
        self._merger.reset(symbol)
