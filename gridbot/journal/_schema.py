"""The journal's SQLite schema: plain tables a dashboard can read with SQL, versioned with migrations.

``PRAGMA user_version`` holds the schema version (also in ``meta`` for readers that prefer SQL).
Opening a file for writing applies every migration from its version up to :data:`SCHEMA_VERSION`
in one transaction; a file written by a newer gridbot is refused rather than misread.

Conventions every table follows (documented in the README):

- money, prices and quantities are TEXT holding the exact decimal string (``CAST(x AS REAL)`` for
  charts; sum them in Python with ``decimal.Decimal`` to stay exact);
- booleans are INTEGER 0/1; times are INTEGER milliseconds (``timestamp``: the exchange's time of the
  event; ``journaled_ms``: local wall-clock time of the write);
- ``extra`` is a JSON object with any event field this schema version has no column for (normally
  ``{}``), so an event round-trips exactly even when a newer gridbot added a field.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from gridbot.errors import GridbotError

__all__ = ["SCHEMA_VERSION", "TABLES", "TableSpec", "migrate", "schema_version"]


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One latest-state or history table: the event fields kept in columns, and its key."""

    name: str
    event: str  # the events.py class name
    key: tuple[str, ...]
    columns: tuple[str, ...]  # event fields with a column of their own, in table order


_COMMON = ("exchange", "timestamp", "is_snapshot")

TABLES: Final[Mapping[str, TableSpec]] = MappingProxyType({
    "fills": TableSpec(
        "fills", "FillUpdate", ("exchange", "symbol", "trade_id"),
        (*_COMMON, "symbol", "trade_id", "order_id", "side", "price", "qty", "fee", "fee_asset",
         "realised_pnl", "is_maker", "position_idx", "exec_type", "seq"),
    ),
    "orders": TableSpec(
        "orders", "OrderUpdate", ("exchange", "symbol", "order_id"),
        (*_COMMON, "symbol", "order_id", "client_order_id", "side", "order_type", "status", "price",
         "qty", "filled_qty", "avg_price", "trigger_price", "reduce_only", "position_idx",
         "is_take_profit", "linked_order_id"),
    ),
    "positions": TableSpec(
        "positions", "PositionUpdate", ("exchange", "symbol", "position_idx"),
        (*_COMMON, "symbol", "position_idx", "side", "size", "entry_price", "mark_price",
         "unrealised_pnl", "cum_realised_pnl", "seq"),
    ),
    "wallets": TableSpec(
        "wallets", "WalletUpdate", ("exchange", "coin"),
        (*_COMMON, "coin", "wallet_balance", "available_balance", "equity"),
    ),
    "accounts": TableSpec(
        "accounts", "AccountUpdate", ("exchange",),
        (*_COMMON, "margin_coin", "wallet_balance", "unrealised_pnl", "margin_balance", "initial_margin",
         "maintenance_margin", "available_balance", "mm_rate", "computed"),
    ),
})

_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Every fill delivered to the callbacks, once: unique by (exchange, symbol, trade_id) because
-- Binance numbers trades per symbol.  id is the order the journal received them in.
CREATE TABLE fills (
    id            INTEGER PRIMARY KEY,
    exchange      TEXT    NOT NULL,
    timestamp     INTEGER NOT NULL,
    is_snapshot   INTEGER NOT NULL,
    symbol        TEXT    NOT NULL,
    trade_id      TEXT    NOT NULL,
    order_id      TEXT    NOT NULL,
    side          TEXT    NOT NULL,
    price         TEXT,
    qty           TEXT,
    fee           TEXT,
    fee_asset     TEXT,
    realised_pnl  TEXT,
    is_maker      INTEGER,
    position_idx  INTEGER NOT NULL,
    extra         TEXT    NOT NULL DEFAULT '{}',
    journaled_ms  INTEGER NOT NULL,
    UNIQUE (exchange, symbol, trade_id)
);
CREATE INDEX fills_by_time ON fills (exchange, symbol, timestamp);
-- The latest delivered state of each order (is_open: 1 while its status is an open one).
CREATE TABLE orders (
    exchange         TEXT    NOT NULL,
    timestamp        INTEGER NOT NULL,
    is_snapshot      INTEGER NOT NULL,
    symbol           TEXT    NOT NULL,
    order_id         TEXT    NOT NULL,
    client_order_id  TEXT,
    side             TEXT,
    order_type       TEXT,
    status           TEXT    NOT NULL,
    price            TEXT,
    qty              TEXT,
    filled_qty       TEXT,
    avg_price        TEXT,
    trigger_price    TEXT,
    reduce_only      INTEGER,
    position_idx     INTEGER,
    is_take_profit   INTEGER,
    linked_order_id  TEXT,
    is_open          INTEGER NOT NULL,
    extra            TEXT    NOT NULL DEFAULT '{}',
    journaled_ms     INTEGER NOT NULL,
    PRIMARY KEY (exchange, symbol, order_id)
);
CREATE INDEX orders_open ON orders (exchange, is_open);
-- The latest delivered state of each position slot (flat ones too: their cum_realised_pnl matters).
CREATE TABLE positions (
    exchange          TEXT    NOT NULL,
    timestamp         INTEGER NOT NULL,
    is_snapshot       INTEGER NOT NULL,
    symbol            TEXT    NOT NULL,
    position_idx      INTEGER NOT NULL,
    side              TEXT    NOT NULL,
    size              TEXT    NOT NULL,
    entry_price       TEXT,
    mark_price        TEXT,
    unrealised_pnl    TEXT,
    cum_realised_pnl  TEXT,
    extra             TEXT    NOT NULL DEFAULT '{}',
    journaled_ms      INTEGER NOT NULL,
    PRIMARY KEY (exchange, symbol, position_idx)
);
-- The latest balances of each coin; a field an update leaves NULL keeps its last known value.
CREATE TABLE wallets (
    exchange           TEXT    NOT NULL,
    timestamp          INTEGER NOT NULL,
    is_snapshot        INTEGER NOT NULL,
    coin               TEXT    NOT NULL,
    wallet_balance     TEXT,
    available_balance  TEXT,
    equity             TEXT,
    extra              TEXT    NOT NULL DEFAULT '{}',
    journaled_ms       INTEGER NOT NULL,
    PRIMARY KEY (exchange, coin)
);
-- RealisedPnlTracker semantics per slot: cum_realised_pnl is the last known cumulative value (the
-- baseline), realised the sum of its changes since the journal began.  Updated in the same
-- transaction as the position row, so the two never disagree after a crash.
CREATE TABLE pnl (
    exchange          TEXT    NOT NULL,
    symbol            TEXT    NOT NULL,
    position_idx      INTEGER NOT NULL,
    cum_realised_pnl  TEXT    NOT NULL,
    realised          TEXT    NOT NULL,
    timestamp         INTEGER NOT NULL,
    PRIMARY KEY (exchange, symbol, position_idx)
);
-- Each change of a slot's cumulative realised PnL (one row per delta): realised PnL over time.
CREATE TABLE pnl_changes (
    id                INTEGER PRIMARY KEY,
    exchange          TEXT    NOT NULL,
    symbol            TEXT    NOT NULL,
    position_idx      INTEGER NOT NULL,
    delta             TEXT    NOT NULL,
    cum_realised_pnl  TEXT    NOT NULL,
    timestamp         INTEGER NOT NULL,
    journaled_ms      INTEGER NOT NULL
);
-- The stream's fill bookkeeping per symbol: a restart backfills fills from backfill_from_ms
-- (every fill before it is in the journal); last_fill_ms is the newest journaled fill;
-- live_since_ms (v2) when the symbol first went live on this journal.
CREATE TABLE cursors (
    exchange          TEXT    NOT NULL,
    symbol            TEXT    NOT NULL,
    backfill_from_ms  INTEGER NOT NULL,
    last_fill_ms      INTEGER,
    PRIMARY KEY (exchange, symbol)
);
"""


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Run each statement of ``script`` inside the caller's transaction (executescript would commit)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""


def _create_v1(conn: sqlite3.Connection) -> None:
    _execute_script(conn, _V1)


_V2_ACCOUNTS = """
-- The latest account view per exchange (AccountUpdate: margin balance, maintenance margin, MM rate).
CREATE TABLE accounts (
    exchange            TEXT    NOT NULL PRIMARY KEY,
    timestamp           INTEGER NOT NULL,
    is_snapshot         INTEGER NOT NULL,
    margin_coin         TEXT,
    wallet_balance      TEXT,
    unrealised_pnl      TEXT,
    margin_balance      TEXT,
    initial_margin      TEXT,
    maintenance_margin  TEXT,
    available_balance   TEXT,
    mm_rate             TEXT,
    computed            INTEGER,
    extra               TEXT    NOT NULL DEFAULT '{}',
    journaled_ms        INTEGER NOT NULL
);
"""


def _v2_live_since(conn: sqlite3.Connection) -> None:
    """When each symbol first went live on this journal (a restart never replays older fills), when
    each slot's PnL baseline was first observed (journaled fills up to then count too), the
    fields lossless delivery added (exec_type marks forced closes; Bybit's seq), and the account
    view."""
    conn.execute("ALTER TABLE cursors ADD COLUMN live_since_ms INTEGER")
    conn.execute("ALTER TABLE pnl ADD COLUMN observed_from_ms INTEGER")
    conn.execute("ALTER TABLE fills ADD COLUMN exec_type TEXT")  # Trade, Liquidation, Adl
    conn.execute("ALTER TABLE fills ADD COLUMN seq INTEGER")
    conn.execute("ALTER TABLE positions ADD COLUMN seq INTEGER")
    _execute_script(conn, _V2_ACCOUNTS)


# Migration N takes a file from version N-1 to N.  Add a function here (never edit an old one) and
# bump SCHEMA_VERSION; tests/journal/test_schema.py checks that every version upgrades to the latest.
MIGRATIONS: Final[Mapping[int, Callable[[sqlite3.Connection], None]]] = MappingProxyType({
    1: _create_v1,
    2: _v2_live_since,
})
SCHEMA_VERSION = max(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, path: str, *, now_ms: int, latest: int | None = None) -> int:
    """Bring the file to the latest schema in one transaction; returns the version it had before.

    ``conn`` must be in autocommit mode (``isolation_level=None``).
    """
    target = SCHEMA_VERSION if latest is None else latest
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(conn)
        if found > target:
            raise GridbotError(
                f"journal {path} has schema version {found}, newer than this gridbot knows "
                f"({target}); upgrade gridbot to use it"
            )
        for version in range(found + 1, target + 1):
            MIGRATIONS[version](conn)
        if found < target:
            conn.execute(f"PRAGMA user_version = {int(target)}")
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                         (str(target),))
            if found == 0:
                conn.execute("INSERT INTO meta (key, value) VALUES ('created_ms', ?)", (str(now_ms),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found
