"""The contract between an exchange adapter and :class:`gridbot.ExchangeStream`.

Threads: SDK threads call the :class:`Sink` (it only enqueues, never blocks, never raises).
The stream's worker thread calls ``fetch_snapshot`` and the other REST reads; the stream's caller calls
``open``, ``close``, ``add_symbol`` and ``remove_symbol``.  Adapters forward frames only: decoding is the
stream's (one :func:`gridbot.normalize.new_decoder` per channel).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Literal, Protocol

from gridbot._account import AccountConfig
from gridbot.events import Event, FillUpdate, OrderUpdate
from gridbot.normalize import Decoded

__all__ = ["Adapter", "Channel", "Decoded", "LinkState", "Sink"]

Channel = Literal["private", "public"]
LinkState = Literal["up", "down", "gap", "failed"]


class Sink(Protocol):
    """Where an adapter reports.  Both methods return at once and never raise."""

    def frame(self, channel: Channel, payload: Any) -> None:
        """A raw message exactly as the SDK delivered it (dict or list), in arrival order."""

    def link(self, channel: Channel, state: LinkState, detail: str) -> None:
        """A socket went ``down``; came ``up`` (connected and subscribed again); may have missed
        frames (``gap``, e.g. an SDK error dict); or ``failed`` (keys rejected while running: reported once,
        the adapter keeps retrying with backoff and reports ``up`` when the keys work again).
        After ``down`` or ``gap`` (a ``failed`` socket went ``down`` first) the next ``up`` makes the stream
        resync."""

    def symbol_rejected(self, symbol: str, detail: str) -> None:
        """A socket refused ``symbol`` (e.g. Bybit's answer to a ticker topic of an unknown symbol);
        ``detail`` holds the exchange's words.  The stream drops that subscription, as it does for the
        symbols :meth:`Adapter.check_symbols` rejects."""


class Adapter(Protocol):
    """One exchange account: its private socket, its public ticker socket and its REST seed."""

    exchange: str

    def open(self, symbols: Collection[str], timeout: float) -> None:
        """Connect both sockets (tickers for ``symbols``) and return once both are live.

        Raises AuthenticationError for rejected keys, ConnectError for unreachable hosts or a
        timeout; on failure every thread it started is stopped before it raises.
        """

    def close(self, timeout: float) -> None:
        """Stop the sockets and join every thread the adapter started; idempotent; bounded by ``timeout``."""

    def add_symbol(self, symbol: str) -> None:
        """Start the ticker stream of ``symbol`` (after ``open``); must not block for long."""

    def remove_symbol(self, symbol: str) -> None:
        """Stop the ticker stream of ``symbol``."""

    def check_symbols(self, symbols: Sequence[str]) -> dict[str, str]:
        """REST: the ``symbols`` the exchange does not list as trading linear perpetuals, each with the
        exchange's words for why (unknown, delivery contract, not trading...).  Called by the stream's
        worker before it seeds new symbols; counts each request; raises like ``fetch_snapshot``."""

    def fetch_snapshot(self, symbols: Sequence[str], *, include_wallet: bool) -> list[Event]:
        """REST seed: positions and open orders of ``symbols`` (and the wallet), ``is_snapshot=True``.

        Counts each request in ``counters.rest_calls``.  Raises AuthenticationError or ConnectError
        (or another GridbotError) on failure, translated from the SDK's exception.
        """

    def fetch_account_config(self, symbols: Sequence[str], *, full: bool) -> AccountConfig | None:
        """REST: what a computed account view needs besides the snapshot's events (Binance: leverage
        brackets of symbols not fetched before, leverage, margin type, multi-assets mode); None where the
        exchange sends its account figures (Bybit).  ``full``: the account-wide seed.  Counts each request."""

    def fetch_orders(self, orders: Sequence[OrderUpdate]) -> list[Event]:
        """REST: the final state of orders that were open before a gap and are missing from the
        open-orders snapshot (filled or cancelled while disconnected), so trackers learn how they
        ended.  Orders the exchange no longer knows are left out.  Counts each request."""

    def fetch_fills(self, symbol: str, since_ms: int, until_ms: int) -> list[FillUpdate]:
        """REST: every fill of ``symbol`` with ``since_ms <= time <= until_ms`` (exchange ms), oldest
        first, ``is_snapshot=True`` — the fills a gap may have swallowed.  The adapter splits the
        window and pages as its exchange documents.  Counts each request; raises like
        ``fetch_snapshot`` (a malformed answer is an error, never "no fills")."""

    @property
    def connected(self) -> bool:
        """True while both sockets are up."""
