"""gridbot.Journal: a SQLite file that keeps what the stream delivered, so a restart is a long disconnect.

One writer per file (an OS lock, released by the kernel even on SIGKILL); any number of readers,
in this or other processes, while it is written (WAL).  Queries answer what is committed; the
writer commits each batch of delivered events within milliseconds (:meth:`Journal.flush` waits for
it).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, TypeVar

from gridbot.errors import GridbotError
from gridbot.events import AccountUpdate, Event, FillUpdate, OrderUpdate, PositionUpdate, WalletUpdate
from gridbot.journal._codec import codec_for
from gridbot.journal._cursors import FillCursors
from gridbot.journal._lock import WriterLock
from gridbot.journal._schema import SCHEMA_VERSION, TABLES, migrate, schema_version
from gridbot.journal._writer import COMMIT_INTERVAL, Writer, connect

__all__ = ["Journal", "Restored"]

logger = logging.getLogger(__name__)

Synchronous = Literal["NORMAL", "FULL"]
_T = TypeVar("_T")

# A restart dedupes backfilled fills against the journaled ones from this long before the symbol's
# backfill cursor (REST answers overlap the cursor by a few ms; this is a wide margin).
_RESTORE_FILL_MARGIN_MS = 3_600_000
_RESTORE_FILL_LIMIT = 100_000
_JOURNALED = (FillUpdate, OrderUpdate, PositionUpdate, WalletUpdate, AccountUpdate)


@dataclass(frozen=True, slots=True)
class Restored:
    """What a stream starting on this journal takes over from the previous run of the same exchange."""

    positions: list[PositionUpdate]
    open_orders: list[OrderUpdate]
    wallets: list[WalletUpdate]
    fills: list[FillUpdate]  # the recent ones, exchange order: the dedupe memory of a backfill
    backfill_from: dict[str, int]  # symbol -> ms: every fill before it is journaled
    live_since: dict[str, int]  # symbol -> ms: when it first went live on this journal


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Journal:
    """A SQLite journal of one account per exchange (stdlib ``sqlite3``, WAL, created if absent).

    ``Journal(path)`` opens for writing: it takes the file's writer lock (a second writer, in any
    process, gets :class:`~gridbot.GridbotError`) and migrates the schema.  ``readonly=True`` opens an
    existing file for queries only, next to a running writer.  ``synchronous`` is SQLite's fsync
    policy: "NORMAL" (default) survives any process crash and never tears a transaction; on power
    loss the last commits may roll back, and a restart fetches those events again from the exchange.
    "FULL" fsyncs every commit.  ``commit_interval`` (seconds): events delivered within it after a
    first one are committed together.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False,
                 synchronous: Synchronous = "NORMAL", commit_interval: float = COMMIT_INTERVAL) -> None:
        self.path = os.fspath(path)
        if self.path in ("", ":memory:") or self.path.startswith("file:"):
            raise ValueError(f"a journal needs a file path, not {self.path!r}")
        if not 0 <= commit_interval <= 10:
            raise ValueError(f"commit_interval must be from 0 to 10 seconds, not {commit_interval!r}")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        self.readonly = readonly
        self._lock: WriterLock | None = None
        self._writer: Writer | None = None
        self._read_lock = threading.Lock()
        self._attached: set[str] = set()
        self._closed = False
        if readonly:
            self._conn = self._open_readonly()
        else:
            self._lock = WriterLock(self.path)
            try:
                self._conn = self._open_for_writing()
            except BaseException:
                self._lock.release()
                raise
            self._writer = Writer(self.path, synchronous=synchronous, commit_interval=commit_interval)

    def _open_readonly(self) -> sqlite3.Connection:
        if not os.path.exists(self.path):
            raise GridbotError(f"journal {self.path} does not exist")
        uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro"
        conn = _translated(lambda: sqlite3.connect(uri, uri=True, isolation_level=None,
                                                    check_same_thread=False), self.path)
        version = _translated(lambda: schema_version(conn), self.path)
        if version != SCHEMA_VERSION:
            conn.close()
            raise GridbotError(f"journal {self.path} has schema version {version}, this gridbot reads "
                               f"{SCHEMA_VERSION}; open it once for writing to migrate it")
        return conn

    def _open_for_writing(self) -> sqlite3.Connection:
        def open_and_migrate() -> sqlite3.Connection:
            conn = connect(self.path, synchronous="NORMAL")
            try:
                before = migrate(conn, self.path, now_ms=_now_ms())
            except BaseException:
                conn.close()
                raise
            if before != SCHEMA_VERSION:
                logger.info("journal %s: schema %d -> %d", self.path, before, SCHEMA_VERSION)
            return conn

        return _translated(open_and_migrate, self.path)

    def __repr__(self) -> str:
        mode = "closed" if self._closed else "readonly" if self.readonly else "writer"
        return f"<gridbot.Journal {self.path!r} {mode}>"

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self, timeout: float = 10.0) -> None:
        """Commit what was handed over, stop the writer thread, release the file; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close(timeout)
        with self._read_lock:
            self._conn.close()
        if self._lock is not None:
            self._lock.release()

    @property
    def schema_version(self) -> int:
        return SCHEMA_VERSION

    # ------------------------------------------------------------------ writing (the stream's side)

    def record(self, event: Event | object) -> None:
        """Hand a delivered event to the writer (returns at once; never raises).

        Fills, orders, positions, wallets and account views are journaled; tickers and statuses are
        not, nor events delivered as ``restored`` (they came from here).
        """
        if self._writer is None or not isinstance(event, _JOURNALED) or event.restored:
            return
        self._writer.put(event)

    def track_fills(self, exchange: str) -> FillCursors:
        """The stream's fill bookkeeping, journaled with every batch (see ``_cursors``)."""
        self._check_writable()
        cursors = FillCursors(exchange)
        assert self._writer is not None
        self._writer.track(cursors)
        return cursors

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is committed; False on timeout."""
        return True if self._writer is None else self._writer.flush(timeout)

    @property
    def write_errors(self) -> int:
        """Batches or items the writer failed to write (each logged with its traceback)."""
        return 0 if self._writer is None else self._writer.write_errors

    def attach(self, exchange: str) -> None:
        """Claim the journal for a stream of ``exchange`` (one stream per exchange per journal)."""
        self._check_writable()
        with self._read_lock:
            if exchange in self._attached:
                raise GridbotError(f"journal {self.path} is already used by a running {exchange} stream")
            self._attached.add(exchange)

    def detach(self, exchange: str) -> None:
        if self._writer is not None:
            self._writer.untrack(exchange)
        with self._read_lock:
            self._attached.discard(exchange)

    def _check_writable(self) -> None:
        if self._closed:
            raise GridbotError(f"journal {self.path} is closed")
        if self._writer is None:
            raise GridbotError(f"journal {self.path} was opened readonly")

    # ------------------------------------------------------------------ queries

    def fills(self, symbol: str | None = None, since_ms: int | None = None, *,
              exchange: str | None = None) -> list[FillUpdate]:
        """Every journaled fill once, in exchange order (time, then arrival); ``since_ms`` inclusive."""
        where, args = _filters(exchange=exchange, symbol=_upper(symbol))
        if since_ms is not None:
            where.append("timestamp >= ?")
            args.append(int(since_ms))
        return self._select("fills", where, args, order="timestamp, id")

    def orders(self, symbol: str | None = None, open_only: bool = False, *,
               exchange: str | None = None) -> list[OrderUpdate]:
        """The latest delivered state of each order (open ones only with ``open_only``)."""
        where, args = _filters(exchange=exchange, symbol=_upper(symbol))
        if open_only:
            where.append("is_open = 1")
        return self._select("orders", where, args, order="timestamp, symbol, order_id")

    def positions(self, symbol: str | None = None, *, exchange: str | None = None) -> list[PositionUpdate]:
        """The latest delivered state of each position slot, flat ones included."""
        where, args = _filters(exchange=exchange, symbol=_upper(symbol))
        return self._select("positions", where, args, order="exchange, symbol, position_idx")

    def wallets(self, *, exchange: str | None = None) -> list[WalletUpdate]:
        """The latest balances per coin (a field an update left None keeps its last known value)."""
        where, args = _filters(exchange=exchange)
        return self._select("wallets", where, args, order="exchange, coin")

    def accounts(self, *, exchange: str | None = None) -> list[AccountUpdate]:
        """The latest account view per exchange."""
        where, args = _filters(exchange=exchange)
        return self._select("accounts", where, args, order="exchange")

    def realised_pnl(self, symbol: str | None = None, position_idx: int | None = None, *,
                     exchange: str | None = None) -> Decimal:
        """The sum of cum-realised-PnL deltas since the journal began (RealisedPnlTracker semantics)."""
        where, args = _filters(exchange=exchange, symbol=_upper(symbol))
        if position_idx is not None:
            where.append("position_idx = ?")
            args.append(int(position_idx))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._query(f"SELECT realised FROM pnl{clause}", args)
        return sum((Decimal(r[0]) for r in rows), Decimal(0))

    def restore(self, exchange: str) -> Restored:
        """The bookkeeping a stream of ``exchange`` resumes from (see ExchangeStream's journal)."""
        rows = self._query("SELECT symbol, backfill_from_ms, live_since_ms FROM cursors WHERE exchange = ?",
                           [exchange])
        cursors = {symbol: int(since) for symbol, since, _ in rows}
        live = {symbol: int(since if live is None else live) for symbol, since, live in rows}
        fills: list[FillUpdate] = []
        for symbol, since in cursors.items():
            fills.extend(self.fills(symbol, since - _RESTORE_FILL_MARGIN_MS, exchange=exchange))
        fills.sort(key=lambda f: f.timestamp)
        return Restored(
            positions=self.positions(exchange=exchange),
            open_orders=self.orders(open_only=True, exchange=exchange),
            wallets=self.wallets(exchange=exchange),
            fills=fills[-_RESTORE_FILL_LIMIT:],
            backfill_from=cursors,
            live_since=live,
        )

    def _select(self, table: str, where: list[str], args: list[Any], *, order: str) -> list[Any]:
        codec = codec_for(TABLES[table])
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._read_lock:
            self._check_open()
            cursor = self._conn.execute(f"SELECT * FROM {table}{clause} ORDER BY {order}", args)
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        return [codec.event(row, names) for row in rows]

    def _query(self, sql: str, args: Sequence[Any]) -> list[Any]:
        with self._read_lock:
            self._check_open()
            return self._conn.execute(sql, list(args)).fetchall()

    def _check_open(self) -> None:
        if self._closed:
            raise GridbotError(f"journal {self.path} is closed")


def _upper(symbol: str | None) -> str | None:
    return symbol.strip().upper() if symbol is not None else None


def _filters(**equal: str | None) -> tuple[list[str], list[Any]]:
    where = [f"{column} = ?" for column, value in equal.items() if value is not None]
    args: list[Any] = [value for value in equal.values() if value is not None]
    return where, args


def _translated(open_it: Callable[[], _T], path: str) -> _T:
    """Run ``open_it``; an SQLite error becomes a GridbotError that names the file."""
    try:
        return open_it()
    except sqlite3.Error as exc:
        raise GridbotError(f"journal {path}: {exc}") from exc
