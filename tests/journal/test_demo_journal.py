"""`gridbot demo --journal PATH`: the streams restart on the journal midway while the account trades."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from gridbot.cli import main
from gridbot.journal import Journal

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(150)
def test_the_demo_restarts_on_its_journal_and_the_books_agree(tmp_path: Path) -> None:
    path = tmp_path / "demo.sqlite"
    argv = [sys.executable, "-m", "gridbot", "demo", "--duration", "8", "--json", "--seed", "2",
            "--journal", str(path)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=140)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    for exchange, result in summary.items():
        assert result["journal_realised_pnl"] == result["ledger_realised_pnl"], (exchange, result)
        assert result["realised_pnl"] == result["ledger_realised_pnl"], (exchange, result)
        assert result["journal_restored_fills"] >= 0 and "journal_pnl_while_down" in result
        assert result["state_rest_calls_after_start"] == 0, (exchange, result)
    assert "journal restored fills" in done.stderr  # the summary table's rows
    assert f"{'binance'}: restarted on the journal" in done.stderr
    with Journal(path, readonly=True) as journal:
        for exchange, result in summary.items():
            assert journal.realised_pnl(exchange=exchange) == Decimal(result["ledger_realised_pnl"])
            fills = journal.fills(exchange=exchange)
            assert len({f.trade_id for f in fills}) == len(fills) > 0


def test_the_demo_wants_a_new_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "old.sqlite"
    path.write_bytes(b"")
    assert main(["demo", "--journal", str(path)]) == 2
    assert "exists" in capsys.readouterr().err
