"""Binance's one REST layer: the stream's seed, order look-ups, fill backfill, account config and
leverage brackets, listen keys — blocking python-binance ``Client`` calls, each counted in
``rest_calls`` and translated by :mod:`~gridbot.adapters.binance._errors`.

Two clients: one for the stream's worker (seed and resyncs), one for listen keys (``open()``, then the
supervisor), so a slow resync never delays a socket rebuild.  Both are built on the manager's loop (the
SDK constructor calls ``get_loop()``, which would otherwise create and set an event loop in the caller's
thread), have their secret masked, and run on an :class:`~gridbot.adapters._http.AbortableTransport`
that ``close()`` cuts, so no REST call outlives the adapter.  Signed requests use the server clock offset
the manager's AsyncClient measured at start (``clock_offset``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from binance.client import Client

from gridbot._account import AccountConfig
from gridbot._credentials import Credentials, mask_attribute
from gridbot._margin import SymbolBrackets
from gridbot.adapters._http import AbortableTransport, mount_abortable
from gridbot.adapters.binance._errors import is_unknown_order, translated
from gridbot.adapters.binance._manager import Hosts
from gridbot.errors import AuthenticationError, GridbotError
from gridbot.events import Event, FillUpdate, OrderUpdate
from gridbot.normalize.binance import (
    algo_orders_from_rest,
    fills_from_rest,
    finished_algo_order_from_rest,
    orders_from_rest,
    positions_from_rest,
    wallets_from_rest,
)
from gridbot.normalize.binance_account import account_config_from_rest, brackets_from_rest
from gridbot.stats import Counters

__all__ = ["Rest", "new_client"]

logger = logging.getLogger(__name__)

_REST_TIMEOUT: Final = 10.0  # seconds per REST request
_TRADES_LIMIT: Final = 1000  # userTrades: "Default 500; max 1000"
_TRADES_WINDOW_MS: Final = 7 * 24 * 3600 * 1000  # "startTime and endTime cannot be longer than 7 days"
_TRADES_HISTORY_MS: Final = 180 * 24 * 3600 * 1000  # "Only support querying trade in the past 6 months"
_MAX_TRADE_PAGES: Final = 1000  # per window: 1M fills; more means the answers do not advance
_LISTING_TTL: Final = 60.0  # seconds an exchangeInfo listing answers check_symbols (subscribe bursts)
_UNKNOWN_SYMBOL: Final = "Invalid symbol."  # Binance's words for an unknown symbol (code -1121)


def _is_algo_order(order: OrderUpdate) -> bool:
    """Algo Service orders come from ALGO_UPDATE pushes or ``openAlgoOrders`` rows (``algoId``)."""
    raw = order.raw
    return raw.get("e") == "ALGO_UPDATE" or "algoId" in raw


def new_client(credentials: Credentials, hosts: Hosts, *, testnet: bool, demo: bool, **options: Any) -> Any:
    """A python-binance ``Client`` on ``hosts`` (this instance only), its secret masked; ``ping=False``:
    the constructor would otherwise call the SDK's host before it could be redirected."""
    client = Client(api_key=credentials.key, api_secret=credentials.secret, testnet=testnet, demo=demo,
                    ping=False, **options)
    hosts.apply_to(client)
    return mask_attribute(client, "API_SECRET")


def _close_client(client: Any) -> None:
    try:
        client.close_connection()
    except Exception:  # closing a session must not fail close()
        logger.warning("binance: closing a REST session failed", exc_info=True)


class Rest:
    """The adapter's REST calls (see the module docstring).  Build it with :meth:`build` on the manager's
    loop; :meth:`close` (any thread) ends every request in flight and refuses later ones."""

    def __init__(self, *, seed: Any, control: Any, transports: Sequence[AbortableTransport],
                 credentials: Credentials, counters: Counters, clock_offset: Callable[[], int]) -> None:
        self._seed_rest = seed
        self._control_rest = control
        self._transports = tuple(transports)
        self._credentials = credentials
        self._counters = counters
        self._clock_offset = clock_offset
        self._brackets: dict[str, SymbolBrackets] = {}  # fetched once per symbol (fetch_account_config)
        self._listing: dict[str, dict[str, Any]] = {}  # exchangeInfo symbols[] rows by symbol
        self._listing_at = float("-inf")  # monotonic time of the listing

    @classmethod
    async def build(cls, *, credentials: Credentials, hosts: Hosts, testnet: bool, demo: bool,
                    counters: Counters, clock_offset: Callable[[], int]) -> Rest:
        """Both clients, built on the manager's loop (see the module docstring)."""
        seed = new_client(credentials, hosts, testnet=testnet, demo=demo,
                          requests_params={"timeout": _REST_TIMEOUT})
        control = new_client(credentials, hosts, testnet=testnet, demo=demo)
        transports = []
        for client in (seed, control):
            transport = mount_abortable(getattr(client, "session", None))
            if transport is not None:
                transports.append(transport)
        return cls(seed=seed, control=control, transports=transports, credentials=credentials,
                   counters=counters, clock_offset=clock_offset)

    def abort(self) -> None:
        """A seed, resync or listen-key request in flight ends now; later ones are refused (any thread)."""
        for transport in self._transports:
            transport.abort()

    def close(self) -> None:
        """Close both HTTP sessions (after :meth:`abort`)."""
        for client in (self._seed_rest, self._control_rest):
            _close_client(client)

    def check_symbols(self, symbols: Sequence[str]) -> dict[str, str]:
        """The ``symbols`` Binance does not list as trading USDⓈ-M perpetuals (``GET /fapi/v1/exchangeInfo``,
        one listing for up to ``_LISTING_TTL`` seconds), each with why, in Binance's words and fields."""
        listing = self._symbol_listing()
        rejected: dict[str, str] = {}
        for symbol in symbols:
            row = listing.get(symbol)
            if row is None:
                rejected[symbol] = f"{_UNKNOWN_SYMBOL} (not in GET /fapi/v1/exchangeInfo)"
            elif row.get("contractType") != "PERPETUAL":
                rejected[symbol] = f"contractType {row.get('contractType')}, not PERPETUAL"
            elif row.get("status") != "TRADING":
                rejected[symbol] = f"status {row.get('status')}, not TRADING"
        return rejected

    def _symbol_listing(self) -> dict[str, dict[str, Any]]:
        if time.monotonic() - self._listing_at < _LISTING_TTL:
            return self._listing
        action = "listing the symbols (GET /fapi/v1/exchangeInfo)"
        self._counters.add("rest_calls")
        with translated(action, self._credentials):
            info = self._seed().futures_exchange_info()
        rows = info.get("symbols") if isinstance(info, dict) else None
        if not isinstance(rows, list):
            raise GridbotError(f"Binance answered {action} without a symbols list")
        self._listing = {row["symbol"]: row for row in rows
                         if isinstance(row, dict) and isinstance(row.get("symbol"), str)}
        self._listing_at = time.monotonic()
        return self._listing

    def fetch_snapshot(self, symbols: Sequence[str], *, include_wallet: bool) -> list[Event]:
        client = self._seed()
        wanted = frozenset(symbol.upper() for symbol in symbols)
        events: list[Event] = []
        if wanted:
            rows = self._rest_rows("fetching positions (GET /fapi/v3/positionRisk)",
                                   client.futures_position_information, wanted)
            events.extend(positions_from_rest(rows))
        if include_wallet:
            rows = self._rest_rows("fetching the balance (GET /fapi/v3/balance)",
                                   client.futures_account_balance, None)
            events.extend(wallets_from_rest(rows))
        if wanted:
            rows = self._rest_rows("fetching open orders (GET /fapi/v1/openOrders)",
                                   client.futures_get_open_orders, wanted)
            events.extend(orders_from_rest(rows))
            rows = self._rest_rows("fetching open algo orders (GET /fapi/v1/openAlgoOrders)",
                                   client.futures_get_open_algo_orders, wanted)
            events.extend(algo_orders_from_rest(rows))
        return events

    def fetch_fills(self, symbol: str, since_ms: int, until_ms: int) -> list[FillUpdate]:
        """``GET /fapi/v1/userTrades`` of ``symbol`` in windows of at most 7 days (the documented span);
        a full page (1000 rows) continues with ``fromId`` = the highest id + 1 (inclusive per the zh-CN
        docs; ``fromId`` cannot be combined with times), until a page is short or passes the window.
        The docs state no order: rows are sorted by trade id."""
        client = self._seed()
        found: dict[str, FillUpdate] = {}
        start = max(since_ms, until_ms - _TRADES_HISTORY_MS)  # "only ... the past 6 months"
        while start <= until_ms:
            end = min(until_ms, start + _TRADES_WINDOW_MS - 1)
            for fill in self._trades_window(client, symbol, start, end):
                if fill.symbol == symbol and start <= fill.timestamp <= end:
                    found[fill.trade_id] = fill
            start = end + 1
        return sorted(found.values(), key=lambda fill: int(fill.trade_id))

    def _trades_window(self, client: Any, symbol: str, start: int, end: int) -> list[FillUpdate]:
        action = f"fetching the fills of {symbol} (GET /fapi/v1/userTrades)"
        rows = self._rest_rows(action, functools.partial(
            client.futures_account_trades, symbol=symbol, startTime=start, endTime=end, limit=_TRADES_LIMIT),
            None)
        fills = fills_from_rest(rows)
        for _page in range(_MAX_TRADE_PAGES):
            if len(rows) < _TRADES_LIMIT or not fills or fills[-1].timestamp > end:
                return fills
            next_id = int(fills[-1].trade_id) + 1
            rows = self._rest_rows(action, functools.partial(
                client.futures_account_trades, symbol=symbol, fromId=next_id, limit=_TRADES_LIMIT), None)
            page = fills_from_rest(rows)
            if page and int(page[0].trade_id) < next_id:
                raise GridbotError(f"Binance {action}: fromId={next_id} answered older trades")
            fills.extend(page)
        raise GridbotError(f"Binance {action}: more than {_MAX_TRADE_PAGES} pages in one window")

    def fetch_account_config(self, symbols: Sequence[str], *, full: bool) -> AccountConfig | None:
        """Leverage brackets of ``symbols`` not fetched before (``GET /fapi/v1/leverageBracket?symbol=S``,
        once per symbol), and their leverage and margin type plus the multi-assets mode
        (``GET /fapi/v2/account``, every seed: they may change while disconnected).

        A failure here does not fail the seed -- positions, orders and the wallet matter more than the
        computed account view: it is logged, the figures that need the missing input are None, and the
        next seed (every resync) fetches it again.
        """
        client = self._seed()
        wanted = [symbol.upper() for symbol in symbols]
        for symbol in wanted:
            if symbol not in self._brackets:
                self._brackets.update(self._fetch_brackets(client, symbol))
        timestamp = time.time_ns() // 1_000_000
        self._counters.add("rest_calls")
        try:
            with translated("fetching the account (GET /fapi/v2/account)", self._credentials):
                account = client.futures_account()
            return account_config_from_rest(account, self._brackets, wanted, full=full, timestamp=timestamp)
        except AuthenticationError:
            raise
        except GridbotError as exc:
            logger.warning("binance: no leverage or margin type for the account view (%s); its margin "
                           "figures are unknown until the next resync", exc)
            brackets = {s: b for s, b in self._brackets.items() if s in wanted}
            return AccountConfig(exchange="binance", timestamp=timestamp, is_snapshot=True, full=full,
                                 brackets=brackets)

    def _fetch_brackets(self, client: Any, symbol: str) -> dict[str, SymbolBrackets]:
        self._counters.add("rest_calls")
        action = f"fetching the leverage brackets of {symbol} (GET /fapi/v1/leverageBracket)"
        try:
            with translated(action, self._credentials):
                return brackets_from_rest(client.futures_leverage_bracket(symbol=symbol))
        except AuthenticationError:
            raise
        except GridbotError as exc:
            logger.warning("binance: %s (%s); its maintenance margin is unknown until the next resync",
                           action, exc)
            return {}

    def fetch_orders(self, orders: Sequence[OrderUpdate]) -> list[Event]:
        """Final states by REST: ``GET /fapi/v1/order`` for regular orders, ``GET /fapi/v1/algoOrder``
        for Algo Service orders (told apart by their wire origin: ALGO_UPDATE or an ``algoId`` row)."""
        client = self._seed()
        events: list[Event] = []
        for order in orders:
            if _is_algo_order(order):
                row = self._rest_order(
                    f"querying algo order {order.order_id} (GET /fapi/v1/algoOrder)",
                    functools.partial(client.futures_get_algo_order, algoId=order.order_id))
                if row is not None:
                    events.extend(self._finished_algo_order(order, row))
            else:
                row = self._rest_order(
                    f"querying order {order.symbol} {order.order_id} (GET /fapi/v1/order)",
                    functools.partial(client.futures_get_order, symbol=order.symbol, orderId=order.order_id))
                if row is not None:
                    events.extend(orders_from_rest([row]))
        return events

    def _finished_algo_order(self, order: OrderUpdate, row: dict[str, Any]) -> list[Event]:
        """The algo order's final state; for a triggered one, also the order it placed, whose fill
        decides Filled or Cancelled (the algo row has no filled quantity)."""
        child_id = row.get("actualOrderId")
        if row.get("algoStatus") != "FINISHED" or child_id in (None, "", 0, "0"):
            return list(algo_orders_from_rest([row]))
        query = functools.partial(self._seed().futures_get_order, symbol=order.symbol,
                                  orderId=child_id)
        child = self._rest_order(
            f"querying order {order.symbol} {child_id} placed by algo {order.order_id} (GET /fapi/v1/order)",
            query)
        events: list[Event] = list(orders_from_rest([child])) if child is not None else []
        events.append(finished_algo_order_from_rest(row, child))
        return events

    def new_listen_key(self, timeout: float) -> str:
        client = self._control_rest
        client.REQUEST_TIMEOUT = max(0.1, min(_REST_TIMEOUT, timeout))  # this instance only
        with translated("creating a listen key (POST /fapi/v1/listenKey)", self._credentials):
            key = client.futures_stream_get_listen_key()
        if not isinstance(key, str) or not key:
            raise GridbotError("Binance returned no listen key")
        return key

    def _seed(self) -> Any:
        client = self._seed_rest
        if client is None:
            raise GridbotError("the Binance adapter is not open")
        client.timestamp_offset = self._clock_offset()  # the SDK's measured clock offset, for signing
        return client

    def _rest_order(self, action: str, call: Callable[[], Any]) -> dict[str, Any] | None:
        """One order row, or None when the exchange no longer knows the order."""
        self._counters.add("rest_calls")
        try:
            with translated(action, self._credentials):
                row = call()
        except GridbotError as exc:
            if is_unknown_order(exc):
                return None
            raise
        if not isinstance(row, dict):
            raise GridbotError(f"Binance answered {action} with a {type(row).__name__}, not an object")
        return row

    def _rest_rows(self, action: str, call: Callable[[], Any],
                   wanted: frozenset[str] | None) -> list[dict[str, Any]]:
        """A documented list-of-objects answer, filtered to ``wanted`` symbols.  Any other shape (an
        object, a list holding strings...) is an error: it must fail the seed or resync (which is
        retried), never pass for "no positions/orders"."""
        self._counters.add("rest_calls")
        with translated(action, self._credentials):
            rows = call()
        if not isinstance(rows, list):
            raise GridbotError(f"Binance answered {action} with a {type(rows).__name__}, not a list")
        odd = next((row for row in rows if not isinstance(row, dict)), None)
        if odd is not None:
            raise GridbotError(f"Binance answered {action} with a list holding a "
                               f"{type(odd).__name__} ({str(odd)[:80]!r}), not objects")
        if wanted is None:
            return rows
        return [row for row in rows if row.get("symbol") in wanted]

