"""The journal file itself: one writer per file, readers beside it, schema versions and migrations,
and a writer killed with SIGKILL mid-stream leaves a consistent file."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

import pytest

from gridbot.errors import GridbotError
from gridbot.journal import SCHEMA_VERSION, Journal, _schema
from gridbot.journal._codec import Codec
from gridbot.journal._schema import TableSpec
from tests.e2e.helpers import wait_until
from tests.journal.events import fill, position

D = Decimal
ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_second_writer_in_this_process_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "j.sqlite")
    with Journal(path):
        with pytest.raises(GridbotError, match=rf"already open for writing by process {os.getpid()}"):
            Journal(path)
    with Journal(path):  # released by close()
        pass


def test_a_writer_in_another_process_is_refused_until_it_dies(tmp_path: Path) -> None:
    path = str(tmp_path / "j.sqlite")
    holder = _python(f"""
        import time
        from gridbot.journal import Journal
        journal = Journal({path!r})
        print("open", flush=True)
        time.sleep(60)
    """)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(GridbotError, match=r"one writer per file.*readonly=True"):
            Journal(path)
        with Journal(path, readonly=True) as reader:  # readers are welcome
            assert reader.fills() == []
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=10)  # waits, and closes its pipes
    with Journal(path):  # the kernel released the lock of the killed process
        pass


def test_readonly_reads_beside_the_writer_and_never_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "j.sqlite")
    with pytest.raises(GridbotError, match="does not exist"):
        Journal(path, readonly=True)
    assert not Path(path).exists()
    with Journal(path) as writer, Journal(path, readonly=True) as reader:
        writer.record(fill("1"))
        assert writer.flush()
        assert [f.trade_id for f in reader.fills()] == ["1"]
        reader.record(fill("2"))
        with pytest.raises(GridbotError, match="readonly"):
            reader.attach("bybit")
        assert writer.flush()
    with Journal(path, readonly=True) as reader:
        assert [f.trade_id for f in reader.fills()] == ["1"]


def test_queries_after_close_raise(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path / "j.sqlite"))
    journal.close()
    journal.close()  # idempotent
    with pytest.raises(GridbotError, match="closed"):
        journal.fills()


def test_not_a_journal_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(GridbotError, match=str(path)):
        Journal(str(path))
    with pytest.raises(ValueError):
        Journal(":memory:")


def test_schema_version_is_recorded(tmp_path: Path) -> None:
    path = str(tmp_path / "j.sqlite")
    with Journal(path) as journal:
        assert journal.schema_version == SCHEMA_VERSION
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),)


def test_a_file_from_a_newer_gridbot_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "j.sqlite")
    Journal(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(GridbotError, match="newer than this gridbot"):
        Journal(path)
    with pytest.raises(GridbotError, match="schema version"):
        Journal(path, readonly=True)


def add_migration(monkeypatch: pytest.MonkeyPatch, version: int,
                  migration: Callable[[sqlite3.Connection], None]) -> None:
    """Pretend a newer gridbot: its migration table has one more entry (the table itself is read-only)."""
    monkeypatch.setattr(_schema, "MIGRATIONS", MappingProxyType({**_schema.MIGRATIONS, version: migration}))


def test_an_older_file_is_migrated_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "j.sqlite")
    with Journal(path) as journal:
        journal.record(fill("kept"))
        assert journal.flush()

    def add_notes(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('migrated')")

    newer = SCHEMA_VERSION + 1
    add_migration(monkeypatch, newer, add_notes)
    monkeypatch.setattr(_schema, "SCHEMA_VERSION", newer)
    with sqlite3.connect(path) as conn:
        assert _schema.migrate(conn, path, now_ms=0) == SCHEMA_VERSION
        assert conn.execute("PRAGMA user_version").fetchone() == (newer,)
        assert conn.execute("SELECT text FROM notes").fetchall() == [("migrated",)]
        assert conn.execute("SELECT trade_id FROM fills").fetchall() == [("kept",)]
        assert _schema.migrate(conn, path, now_ms=0) == newer  # nothing left to do


def test_a_failed_migration_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "j.sqlite")
    Journal(path).close()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("disk I/O error")

    add_migration(monkeypatch, SCHEMA_VERSION + 1, broken)
    monkeypatch.setattr(_schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        _schema.migrate(conn, path, now_ms=0)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchall() == []
    conn.close()


def test_a_field_without_a_column_round_trips_through_extra() -> None:
    # What happens when a newer event field meets this schema: it is kept in the extra JSON.
    spec = TableSpec("fills", "FillUpdate", ("exchange", "symbol", "trade_id"),
                     ("exchange", "timestamp", "is_snapshot", "symbol", "trade_id", "order_id", "side"))
    codec = Codec(spec)
    event = fill("x", fee=D("0.10"), is_maker=False)
    values = codec.values(event)
    assert '"fee":"0.10"' in values[-1] and '"is_maker":false' in values[-1]
    assert codec.event(values, [*spec.columns, "extra"]) == event


def test_a_bad_event_is_skipped_and_counted(tmp_path: Path) -> None:
    with Journal(str(tmp_path / "j.sqlite")) as journal:
        journal.record(fill("bad", price=object()))
        journal.record(fill("good"))
        assert journal.flush()
        assert journal.write_errors == 1
        assert [f.trade_id for f in journal.fills()] == ["good"]


def test_sigkill_while_writing_leaves_a_consistent_file(tmp_path: Path) -> None:
    """Each commit is all or nothing: the PnL total always equals the sum of its logged deltas and
    agrees with the journaled position, whatever moment the writer dies at."""
    path = str(tmp_path / "j.sqlite")
    writer = _python(f"""
        from decimal import Decimal
        from gridbot.journal import Journal
        from tests.journal.events import fill, position
        journal = Journal({path!r})
        n = 0
        while True:
            n += 1
            journal.record(fill(str(n), timestamp=n, fee=Decimal(0)))
            journal.record(position(str(Decimal(n) / 100), timestamp=n))
            if n % 500 == 0:
                journal.flush()
                print(n, flush=True)
    """)
    assert writer.stdout is not None
    wait_until(lambda: writer.stdout is not None and int(writer.stdout.readline() or 0) >= 1500,
               what="the writer to journal 1500 fills")
    time.sleep(0.05)  # land the kill mid-batch, not right after a flush
    writer.send_signal(signal.SIGKILL)
    writer.communicate(timeout=10)  # waits, and closes its pipes
    with Journal(path) as journal:
        fills = journal.fills()
        (slot,) = journal.positions()
        assert len(fills) >= 1500
        assert [int(f.trade_id) for f in fills] == list(range(1, len(fills) + 1))
        assert slot.cum_realised_pnl is not None
        assert journal.realised_pnl() == slot.cum_realised_pnl - D("0.01")
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            deltas = conn.execute("SELECT delta FROM pnl_changes").fetchall()
        assert sum((D(d) for (d,) in deltas), D(0)) == journal.realised_pnl()
        journal.record(position(str(slot.cum_realised_pnl + 1), timestamp=10**9))
        assert journal.flush()
        assert journal.realised_pnl() == slot.cum_realised_pnl + 1 - D("0.01")
