"""Bybit's one REST layer (pybit ``HTTP``): the seed, order look-ups and fill backfill of the stream,
and the session the order gateway signs with.  Every request is counted and goes through the one
error map (:mod:`gridbot.adapters.bybit._errors`).  Reads only; nothing here watches."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from pybit.unified_trading import HTTP

from gridbot._credentials import Credentials, mask_attribute
from gridbot.adapters._http import AbortableTransport, mount_abortable
from gridbot.adapters.bybit._errors import check_ret_code, translate
from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, GridbotError
from gridbot.events import Event, FillUpdate, OrderUpdate
from gridbot.normalize.bybit import fills_from_rest, orders_from_rest, positions_from_rest, wallets_from_rest
from gridbot.stats import Counters

__all__ = ["BybitRest", "new_session"]

logger = logging.getLogger(__name__)

_ORDERS_PAGE_LIMIT: Final = 50
_MAX_ORDER_PAGES: Final = 1_000
_EXECUTIONS_LIMIT: Final = 100  # execution/list: "[1, 100]. Default: 50"
_EXECUTIONS_WINDOW_MS: Final = 7 * 24 * 3600 * 1000  # "endTime - startTime <= 7 days"
_MAX_EXECUTION_PAGES: Final = 1_000
_PARAMS_ERROR: Final = 10001  # "params error": Bybit's answer to a symbol it does not know


def new_session(credentials: Credentials, *, testnet: bool, demo: bool, endpoints: Endpoints | None) -> Any:
    """A pybit ``HTTP`` session: one attempt per request, no sleeping between attempts (pybit would
    sleep 3 s per retry, uninterruptibly; callers retry with backoff themselves); the secret masked
    (pybit's ``HTTP`` is a dataclass whose repr printed it); every URL built on ``endpoints.rest``
    when given (pybit appends each request path to the instance's ``endpoint``)."""
    session = HTTP(testnet=testnet, demo=demo, api_key=credentials.key, api_secret=credentials.secret,
                   max_retries=1, retry_delay=0)
    mask_attribute(session, "api_secret")
    if endpoints is not None:
        session.endpoint = endpoints.rest
    return session


class BybitRest:
    """The stream's REST reads: positions, wallet, open orders, order look-ups, executions."""

    def __init__(
        self, credentials: Credentials, *, testnet: bool, demo: bool, endpoints: Endpoints | None,
        counters: Counters,
    ) -> None:
        self._credentials = credentials
        self._counters = counters
        self.session = new_session(credentials, testnet=testnet, demo=demo, endpoints=endpoints)
        self._transport: AbortableTransport | None = mount_abortable(getattr(self.session, "client", None))

    def __repr__(self) -> str:
        return "<BybitRest (credentials hidden)>"

    def abort(self) -> None:
        """Cut a request in flight and refuse later ones; close the HTTP session (from any thread)."""
        if self._transport is not None:
            self._transport.abort()
            self.session.client.close()

    def snapshot(self, symbols: Sequence[str], *, include_wallet: bool) -> list[Event]:
        """Positions per symbol, the wallet (optional) and the open linear USDT orders of ``symbols``."""
        events: list[Event] = []
        for symbol in symbols:
            response = self.call("position/list", self.session.get_positions,
                                 category="linear", symbol=symbol)
            events.extend(positions_from_rest(response))
        if include_wallet:
            response = self.call("account/wallet-balance", self.session.get_wallet_balance,
                                 accountType="UNIFIED")
            events.extend(wallets_from_rest(response))
        if symbols:
            wanted = set(symbols)
            events.extend(order for order in self._open_orders() if order.symbol in wanted)
        return events

    def unlisted(self, symbols: Sequence[str]) -> dict[str, str]:
        """The ``symbols`` Bybit does not list as trading linear perpetuals, with why:
        ``GET /v5/market/instruments-info?category=linear&symbol=S`` per symbol; an empty list (or
        Bybit's "params error" refusal of the symbol, retCode 10001) means it does not exist."""
        rejected: dict[str, str] = {}
        for symbol in symbols:
            try:
                response = self.call("market/instruments-info", self.session.get_instruments_info,
                                     category="linear", symbol=symbol)
            except GridbotError as exc:
                if getattr(exc.__cause__, "status_code", None) != _PARAMS_ERROR:  # pybit's retCode
                    raise
                rejected[symbol] = str(exc)
                continue
            rows = [row for row in (response.get("result") or {}).get("list") or []
                    if isinstance(row, Mapping) and row.get("symbol") == symbol]
            if not rows:
                rejected[symbol] = "not listed (GET /v5/market/instruments-info, category linear)"
            elif rows[0].get("contractType") != "LinearPerpetual":
                rejected[symbol] = f"contractType {rows[0].get('contractType')}, not LinearPerpetual"
            elif rows[0].get("status") != "Trading":
                rejected[symbol] = f"status {rows[0].get('status')}, not Trading"
        return rejected

    def final_orders(self, orders: Sequence[OrderUpdate]) -> list[Event]:
        """Final states of orders that left the open orders while disconnected.

        ``/v5/order/realtime`` by ``orderId`` answers in real time for open and the 500 most recent closed
        orders; ``/v5/order/history`` (asynchronous, may lag) is asked only when realtime does not know the
        order.  A failing history lookup leaves that order out (logged) rather than failing the resync;
        rejected keys still raise.
        """
        found: list[Event] = []
        for order in orders:
            rows = self._order_by_id("order/realtime", self.session.get_open_orders, order)
            found.extend(rows or self._order_from_history(order))
        return found

    def fills(self, symbol: str, since_ms: int, until_ms: int) -> list[FillUpdate]:
        """``GET /v5/execution/list`` (category linear) of ``symbol`` in windows of at most 7 days, each
        paged by ``nextPageCursor`` until it is empty (the end-of-data signal is not documented: an
        empty or absent cursor ends the window; a repeated one is an error).  Trade, BustTrade and
        AdlTrade rows, deduplicated by ``execId``, oldest first; ``position_idx`` 0 (executions carry
        none: the caller knows the orders)."""
        found: dict[str, FillUpdate] = {}
        start = since_ms
        while start <= until_ms:
            end = min(until_ms, start + _EXECUTIONS_WINDOW_MS)
            for fill in self._executions_window(symbol, start, end):
                if fill.symbol == symbol and start <= fill.timestamp <= end:
                    found[fill.trade_id] = fill
            start = end + 1
        return sorted(found.values(), key=lambda f: (f.timestamp, -1 if f.seq is None else f.seq, f.trade_id))

    def call(self, what: str, method: Callable[..., Any], **params: Any) -> Mapping[str, Any]:
        """One counted request; SDK exceptions and non-zero ``retCode`` become GridbotErrors."""
        self._counters.add("rest_calls")
        label = f"Bybit GET /v5/{what}"
        try:
            response = method(**params)
        except Exception as exc:
            raise translate(exc, label, self._credentials.redact) from exc
        return check_ret_code(response, label, self._credentials.redact)

    def _executions_window(self, symbol: str, start: int, end: int) -> list[FillUpdate]:
        fills: list[FillUpdate] = []
        params: dict[str, Any] = {"category": "linear", "symbol": symbol, "startTime": start,
                                  "endTime": end, "limit": _EXECUTIONS_LIMIT}
        pages = self._pages("execution/list", self.session.get_executions, params, _MAX_EXECUTION_PAGES)
        for response in pages:
            fills.extend(fills_from_rest(response))
        return fills

    def _open_orders(self) -> list[OrderUpdate]:
        orders: list[OrderUpdate] = []
        params: dict[str, Any] = {"category": "linear", "settleCoin": "USDT", "limit": _ORDERS_PAGE_LIMIT}
        for response in self._pages("order/realtime", self.session.get_open_orders, params, _MAX_ORDER_PAGES):
            orders.extend(orders_from_rest(response))
        return orders

    def _pages(
        self, what: str, method: Callable[..., Any], params: dict[str, Any], max_pages: int,
    ) -> Iterator[Mapping[str, Any]]:
        """Every page of a cursor-paged list (``nextPageCursor``; empty or absent ends it)."""
        cursor = ""
        seen: set[str] = set()
        for _page in range(max_pages):
            response = self.call(what, method, **({**params, "cursor": cursor} if cursor else params))
            yield response
            result = response.get("result")
            cursor = str(result.get("nextPageCursor") or "") if isinstance(result, Mapping) else ""
            if not cursor:
                return
            if cursor in seen:
                raise GridbotError(f"Bybit GET /v5/{what}: pagination repeats cursor {cursor!r}")
            seen.add(cursor)
        raise GridbotError(f"Bybit GET /v5/{what}: more than {max_pages} pages")

    def _order_by_id(self, what: str, method: Callable[..., Any], order: OrderUpdate) -> list[OrderUpdate]:
        response = self.call(what, method, category="linear", symbol=order.symbol, orderId=order.order_id)
        return [row for row in orders_from_rest(response) if row.order_id == order.order_id]

    def _order_from_history(self, order: OrderUpdate) -> list[OrderUpdate]:
        try:
            return self._order_by_id("order/history", self.session.get_order_history, order)
        except AuthenticationError:
            raise
        except GridbotError as exc:
            logger.warning("Bybit: order history of %s %s unavailable: %s", order.symbol, order.order_id, exc)
            return []
