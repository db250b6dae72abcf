"""The journal's writer thread: group commits of delivered events, one transaction per batch.

The stream's dispatcher hands over each delivered event (a queue put, never blocking, never
raising); this thread gathers what arrives within the commit interval after a first event (at most
_MAX_BATCH), writes it in one transaction and commits: one commit per interval, whatever the rate.  A batch
that fails (disk full, I/O error) is rolled back, logged and retried with backoff: events are kept,
in order, until they are written.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gridbot.events import (
    OPEN_ORDER_STATUSES,
    AccountUpdate,
    FillUpdate,
    OrderUpdate,
    PositionUpdate,
    WalletUpdate,
)
from gridbot.journal._codec import codec_for
from gridbot.journal._cursors import FillCursors
from gridbot.journal._pnl import PnlBook
from gridbot.journal._schema import TABLES, TableSpec

__all__ = ["COMMIT_INTERVAL", "Flush", "Writer", "connect"]

logger = logging.getLogger(__name__)

_MAX_BATCH = 5_000
# How long the writer gathers events after the first one before it commits them together: a commit
# costs far more than a row, and what is not committed yet is fetched again after a crash anyway.
COMMIT_INTERVAL = 0.05
_RETRY_FIRST = 0.1
_RETRY_MAX = 5.0
_ZERO = Decimal(0)
_Slot = tuple[str, str, int]


@dataclass(slots=True)
class _Prepared:
    fills: list[tuple[FillUpdate, tuple[Any, ...]]]
    positions: list[PositionUpdate]  # every one, in order: each may change the realised PnL
    latest: dict[tuple[str, ...], tuple[str, tuple[Any, ...]]]  # key -> (upsert, row): the last wins


_WALLET_KEEP = tuple(TABLES["wallets"].columns.index(c)
                     for c in ("wallet_balance", "available_balance", "equity"))


def _keep_known(row: tuple[Any, ...], earlier: tuple[Any, ...]) -> tuple[Any, ...]:
    """A wallet row whose None balances keep the earlier row's values (as the upsert does)."""
    merged = list(row)
    for i in _WALLET_KEEP:
        if merged[i] is None:
            merged[i] = earlier[i]
    return tuple(merged)


class Flush:
    """Set once every item queued before it is committed."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Close:
    pass


def connect(path: str, *, synchronous: str) -> sqlite3.Connection:
    """A writing connection: autocommit mode (explicit transactions), WAL, the chosen fsync policy."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


def _upsert_sql(spec: TableSpec, *, derived: tuple[str, ...] = (), keep_known: tuple[str, ...] = ()) -> str:
    columns = (*spec.columns, *derived, "extra", "journaled_ms")
    updates = ", ".join(
        f"{c} = COALESCE(excluded.{c}, {spec.name}.{c})" if c in keep_known else f"{c} = excluded.{c}"
        for c in columns if c not in spec.key
    )
    return (f"INSERT INTO {spec.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT ({', '.join(spec.key)}) DO UPDATE SET {updates}")


_FILLS = TABLES["fills"]
_ORDERS = TABLES["orders"]
_POSITIONS = TABLES["positions"]
_WALLETS = TABLES["wallets"]
_ACCOUNTS = TABLES["accounts"]
_INSERT_FILL = (f"INSERT OR IGNORE INTO fills ({', '.join(_FILLS.columns)}, extra, journaled_ms) "
                f"VALUES ({', '.join('?' * (len(_FILLS.columns) + 2))})")
_UPSERT_ORDER = _upsert_sql(_ORDERS, derived=("is_open",))
_UPSERT_POSITION = _upsert_sql(_POSITIONS)
_UPSERT_WALLET = _upsert_sql(_WALLETS, keep_known=("wallet_balance", "available_balance", "equity"))
_UPSERT_ACCOUNT = _upsert_sql(_ACCOUNTS)
_FILL_CURSOR = (
    "INSERT INTO cursors (exchange, symbol, backfill_from_ms, last_fill_ms) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (exchange, symbol) DO UPDATE SET "
    "last_fill_ms = MAX(COALESCE(cursors.last_fill_ms, excluded.last_fill_ms), excluded.last_fill_ms)"
)
_STREAM_CURSOR = (
    "INSERT INTO cursors (exchange, symbol, backfill_from_ms, live_since_ms) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (exchange, symbol) DO UPDATE SET backfill_from_ms = excluded.backfill_from_ms, "
    "live_since_ms = COALESCE(cursors.live_since_ms, excluded.live_since_ms)"
)


class Writer:
    """Owns the writing connection and its thread; ``put`` is safe from any thread."""

    def __init__(self, path: str, *, synchronous: str, commit_interval: float = COMMIT_INTERVAL) -> None:
        self._path = path
        self._interval = commit_interval
        self._synchronous = synchronous
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pnl = PnlBook()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._cursor_sources: list[FillCursors] = []
        self.committed_fills = 0
        self.write_errors = 0

    def track(self, cursors: FillCursors) -> None:
        """Journal ``cursors`` with every batch (see :mod:`gridbot.journal._cursors`)."""
        self._cursor_sources = [*[c for c in self._cursor_sources if c.exchange != cursors.exchange],
                                cursors]

    def untrack(self, exchange: str) -> None:
        self._cursor_sources = [c for c in self._cursor_sources if c.exchange != exchange]

    # -------------------------------------------------------------- any thread

    def put(self, item: Any) -> None:
        if self._closed:
            logger.debug("journal %s is closed; %s not journaled", self._path, type(item).__name__)
            return
        if self._thread is None:
            self._start()
        self._queue.put(item)

    def flush(self, timeout: float) -> bool:
        """Wait until everything put so far is committed; False on timeout."""
        if self._thread is None:
            return True
        marker = Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float) -> bool:
        """Commit what is queued, then stop the thread; False when it did not finish in time."""
        self._closed = True
        thread = self._thread
        if thread is None:
            return True
        self._queue.put(_Close())
        thread.join(timeout)
        if thread.is_alive():
            logger.error("journal %s: the writer did not finish within %.1f s; uncommitted events are "
                         "fetched again at the next start", self._path, timeout)
            return False
        return True

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="gridbot-journal-writer", daemon=True)
                thread.start()
                self._thread = thread

    # -------------------------------------------------------------- writer thread

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = connect(self._path, synchronous=self._synchronous)
            self._pnl.load(conn)
            closing = False
            while not closing:
                batch = self._take()
                closing = any(isinstance(item, _Close) for item in batch)
                self._write_until_done(conn, batch)
        except BaseException:
            logger.exception("journal %s: the writer thread failed; events are no longer journaled "
                             "(a restart backfills them)", self._path)
        finally:
            if conn is not None:
                conn.close()

    def _take(self) -> list[Any]:
        """The next batch: what arrives within the commit interval after its first item (at once
        for a flush or close), at most _MAX_BATCH items."""
        batch = [self._queue.get()]
        deadline = time.monotonic() + self._interval
        while len(batch) < _MAX_BATCH and not isinstance(batch[-1], (Flush, _Close)):
            try:
                batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _write_until_done(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        backoff = _RETRY_FIRST
        while True:
            pnl_before = self._pnl.checkpoint()
            try:
                self._write(conn, batch)
                break
            except sqlite3.Error:
                self._pnl.rollback(pnl_before)
                for source in self._cursor_sources:
                    source.mark_changed()
                self.write_errors += 1
                if self._closed:
                    logger.exception("journal %s: closing; %d item(s) could not be written (a restart "
                                     "fetches them again)", self._path, len(batch))
                    break
                logger.exception("journal %s: writing %d item(s) failed; retrying in %.1f s",
                                 self._path, len(batch), backoff)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                time.sleep(backoff)
                backoff = min(backoff * 2, _RETRY_MAX)
        for item in batch:
            if isinstance(item, Flush):
                item.done.set()

    def _write(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        """One transaction: every fill; of the latest-state rows only the last per key (a batch under
        load updates a slot or a wallet many times); PnL from every position, in order."""
        now = time.time_ns() // 1_000_000
        prepared = self._prepare(batch, now)
        new_fills = 0
        conn.execute("BEGIN")
        newest: dict[tuple[str, str], int] = {}
        for fill, row in prepared.fills:
            if conn.execute(_INSERT_FILL, row).rowcount == 1:
                new_fills += 1
                self._pnl.new_fill(conn, fill, now)
            key = (fill.exchange, fill.symbol)
            newest[key] = max(fill.timestamp, newest.get(key, fill.timestamp))
        conn.executemany(_FILL_CURSOR, [(*key, at, at) for key, at in newest.items()])
        by_sql: dict[str, list[tuple[Any, ...]]] = {}
        for sql, row in prepared.latest.values():
            by_sql.setdefault(sql, []).append(row)
        for sql, rows in by_sql.items():
            conn.executemany(sql, rows)
        for position in prepared.positions:
            self._pnl.position(conn, position, now)
        sources = self._cursor_sources
        for source in sources:
            self._write_cursors(conn, source)
        conn.execute("COMMIT")
        self.committed_fills += new_fills
        for source in sources:
            source.committed(f for f, _ in prepared.fills if f.exchange == source.exchange)

    def _prepare(self, batch: list[Any], now: int) -> _Prepared:
        """Rows of a batch; an item that cannot be encoded is logged, counted and skipped."""
        prepared = _Prepared([], [], {})
        for item in batch:
            try:
                _prepare_item(prepared, item, now)
            except Exception:
                self.write_errors += 1
                logger.exception("journal %s: could not journal %r; skipped", self._path, item)
        return prepared

    @staticmethod
    def _write_cursors(conn: sqlite3.Connection, source: FillCursors) -> None:
        """In the batch's transaction, before its fills count as committed: a cursor never runs ahead."""
        cursors = source.cursors()
        for symbol, (live_since, backfill_from) in (cursors or {}).items():
            conn.execute(_STREAM_CURSOR, (source.exchange, symbol, backfill_from, live_since))


def _prepare_item(prepared: _Prepared, item: Any, now: int) -> None:
    latest = prepared.latest
    if isinstance(item, FillUpdate):
        prepared.fills.append((item, (*codec_for(_FILLS).values(item), now)))
    elif isinstance(item, PositionUpdate):
        row = (*codec_for(_POSITIONS).values(item), now)
        prepared.positions.append(item)
        latest[("position", item.exchange, item.symbol, str(item.position_idx))] = (_UPSERT_POSITION, row)
    elif isinstance(item, OrderUpdate):
        values = codec_for(_ORDERS).values(item)
        values.insert(len(_ORDERS.columns), int(item.status in OPEN_ORDER_STATUSES))
        latest[("order", item.exchange, item.symbol, item.order_id)] = (_UPSERT_ORDER, (*values, now))
    elif isinstance(item, WalletUpdate):
        key = ("wallet", item.exchange, item.coin)
        row = (*codec_for(_WALLETS).values(item), now)
        known = latest.get(key)
        latest[key] = (_UPSERT_WALLET, row if known is None else _keep_known(row, known[1]))
    elif isinstance(item, AccountUpdate):
        latest[("account", item.exchange)] = (_UPSERT_ACCOUNT, (*codec_for(_ACCOUNTS).values(item), now))
