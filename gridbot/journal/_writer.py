"""The journal's writer thread: group commits of delivered events, one transaction per batch.

The stream's dispatcher hands over each delivered event (a queue put, never blocking, never
raising); this thread takes everything queued at that moment, writes it in one transaction and
commits.  Under load batches grow by themselves; idle, each event is committed at once.  A batch
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

from gridbot.events import OPEN_ORDER_STATUSES, FillUpdate, OrderUpdate, PositionUpdate, WalletUpdate
from gridbot.journal._codec import codec_for, decimal_text
from gridbot.journal._schema import TABLES, TableSpec

__all__ = ["Cursor", "Flush", "Writer", "connect"]

logger = logging.getLogger(__name__)

_MAX_BATCH = 5_000
_RETRY_FIRST = 0.1
_RETRY_MAX = 5.0
_ZERO = Decimal(0)
_Slot = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class Cursor:
    """The stream's fill bookkeeping for one symbol: every fill before ``backfill_from_ms`` is delivered."""

    exchange: str
    symbol: str
    backfill_from_ms: int


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
_INSERT_FILL = (f"INSERT OR IGNORE INTO fills ({', '.join(_FILLS.columns)}, extra, journaled_ms) "
                f"VALUES ({', '.join('?' * (len(_FILLS.columns) + 2))})")
_UPSERT_ORDER = _upsert_sql(_ORDERS, derived=("is_open",))
_UPSERT_POSITION = _upsert_sql(_POSITIONS)
_UPSERT_WALLET = _upsert_sql(_WALLETS, keep_known=("wallet_balance", "available_balance", "equity"))
_FILL_CURSOR = (
    "INSERT INTO cursors (exchange, symbol, backfill_from_ms, last_fill_ms) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (exchange, symbol) DO UPDATE SET "
    "last_fill_ms = MAX(COALESCE(cursors.last_fill_ms, excluded.last_fill_ms), excluded.last_fill_ms)"
)
_STREAM_CURSOR = (
    "INSERT INTO cursors (exchange, symbol, backfill_from_ms) VALUES (?, ?, ?) "
    "ON CONFLICT (exchange, symbol) DO UPDATE SET backfill_from_ms = excluded.backfill_from_ms"
)
_UPSERT_PNL = (
    "INSERT INTO pnl (exchange, symbol, position_idx, cum_realised_pnl, realised, timestamp) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (exchange, symbol, position_idx) DO UPDATE SET "
    "cum_realised_pnl = excluded.cum_realised_pnl, realised = excluded.realised, "
    "timestamp = excluded.timestamp"
)
_INSERT_PNL_CHANGE = (
    "INSERT INTO pnl_changes (exchange, symbol, position_idx, delta, cum_realised_pnl, timestamp, "
    "journaled_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class Writer:
    """Owns the writing connection and its thread; ``put`` is safe from any thread."""

    def __init__(self, path: str, *, synchronous: str) -> None:
        self._path = path
        self._synchronous = synchronous
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pnl: dict[_Slot, tuple[Decimal, Decimal]] = {}
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self.committed_fills = 0
        self.write_errors = 0

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
            self._load_pnl(conn)
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
        batch = [self._queue.get()]
        while len(batch) < _MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write_until_done(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        backoff = _RETRY_FIRST
        while True:
            pnl_before = dict(self._pnl)
            try:
                self._write(conn, batch)
                break
            except sqlite3.Error:
                self._pnl = pnl_before
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
        now = time.time_ns() // 1_000_000
        new_fills = 0
        conn.execute("BEGIN")
        for item in batch:
            try:
                new_fills += self._write_item(conn, item, now)
            except (sqlite3.OperationalError, sqlite3.InternalError):
                raise  # the file or the disk: retry the whole batch
            except Exception as exc:
                if type(exc) is sqlite3.DatabaseError:
                    raise  # a damaged file: retrying is all that can be done
                # Bad input, not a bad disk: skip this item, keep the rest of the batch.
                self.write_errors += 1
                logger.exception("journal %s: could not journal %r; skipped", self._path, item)
        conn.execute("COMMIT")
        self.committed_fills += new_fills

    def _write_item(self, conn: sqlite3.Connection, item: Any, now: int) -> int:
        """Write one item; returns 1 for a fill the journal did not have yet."""
        if isinstance(item, FillUpdate):
            return self._fill(conn, item, now)
        if isinstance(item, PositionUpdate):
            self._position(conn, item, now)
        elif isinstance(item, OrderUpdate):
            values = codec_for(_ORDERS).values(item)
            values.insert(len(_ORDERS.columns), int(item.status in OPEN_ORDER_STATUSES))
            conn.execute(_UPSERT_ORDER, (*values, now))
        elif isinstance(item, WalletUpdate):
            conn.execute(_UPSERT_WALLET, (*codec_for(_WALLETS).values(item), now))
        elif isinstance(item, Cursor):
            conn.execute(_STREAM_CURSOR, (item.exchange, item.symbol, item.backfill_from_ms))
        return 0

    @staticmethod
    def _fill(conn: sqlite3.Connection, fill: FillUpdate, now: int) -> int:
        cursor = conn.execute(_INSERT_FILL, (*codec_for(_FILLS).values(fill), now))
        conn.execute(_FILL_CURSOR, (fill.exchange, fill.symbol, fill.timestamp, fill.timestamp))
        return cursor.rowcount

    def _position(self, conn: sqlite3.Connection, position: PositionUpdate, now: int) -> None:
        conn.execute(_UPSERT_POSITION, (*codec_for(_POSITIONS).values(position), now))
        cumulative = position.cum_realised_pnl
        if cumulative is None:
            return  # unknown (Binance REST): never resets the baseline
        slot = (position.exchange, position.symbol, position.position_idx)
        known = self._pnl.get(slot)
        if known is not None and known[0] == cumulative:
            return
        realised = _ZERO if known is None else known[1]
        if known is not None:
            delta = cumulative - known[0]
            realised += delta
            conn.execute(_INSERT_PNL_CHANGE, (*slot, decimal_text(delta), decimal_text(cumulative),
                                              position.timestamp, now))
        self._pnl[slot] = (cumulative, realised)
        conn.execute(_UPSERT_PNL, (*slot, decimal_text(cumulative), decimal_text(realised),
                                   position.timestamp))

    def _load_pnl(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute("SELECT exchange, symbol, position_idx, cum_realised_pnl, realised FROM pnl")
        self._pnl = {(e, s, int(i)): (Decimal(c), Decimal(r)) for e, s, i, c, r in rows}
