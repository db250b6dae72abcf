"""`gridbot journal PATH`: the reader subcommand, on a journal a writer still holds open."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from gridbot.cli import main
from gridbot.journal import Journal
from tests.journal.events import fill, order, position

D = Decimal


@pytest.fixture
def path(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "j.sqlite")
    with Journal(path) as journal:  # still open for writing while the CLI reads
        for event in (fill("1", timestamp=1_500), fill("2", timestamp=2_500, fee=D("1E-8"), side="Sell",
                                                            realised_pnl=D("0.5")),
                      position("10", timestamp=1_000), position("12.25", timestamp=2_000),
                      position("0", symbol="ETHUSDT"), order("7"), order("8", "Filled")):
            journal.record(event)
        assert journal.flush()
        yield path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["journal", *args])
    return code, capsys.readouterr().out


def test_summary(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, path)
    assert code == 0
    assert "fills: 2 (1970-01-01T00:00:01.500+00:00 .. 1970-01-01T00:00:02.500+00:00)" in out
    assert "realised pnl: 2.25" in out and "open orders: 1" in out
    assert "position bybit BTCUSDT idx 0: Buy 0.002 @ 60000.5" in out


def test_fills_as_json_keep_exact_decimals(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, path, "--fills", "--json")
    assert code == 0
    fills = json.loads(out)["fills"]
    assert [(f["trade_id"], f["side"], f["fee"], f["realised_pnl"]) for f in fills] == [
        ("1", "Buy", "0.00000001", "0"), ("2", "Sell", "0.00000001", "0.5")]


def test_pnl_per_slot(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, path, "--pnl")
    assert code == 0
    assert out.splitlines() == ["bybit BTCUSDT idx 0: realised 2.25 (cum 12.25)",
                                "bybit ETHUSDT idx 0: realised 0 (cum 0)", "total realised 2.25"]
    _, out = run(capsys, path, "--pnl", "--json", "--symbol", "ethusdt")
    assert json.loads(out)["realised_pnl"] == "0"


def test_orders_and_open_only(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run(capsys, path, "--orders")
    assert [line.split()[3:5] for line in out.splitlines()] == [["7", "New"], ["8", "Filled"]]
    _, out = run(capsys, path, "--orders", "--open", "--json")
    assert [o["order_id"] for o in json.loads(out)["orders"]] == ["7"]


def test_a_missing_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["journal", str(tmp_path / "nope.sqlite")]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "does not exist" in captured.err
    assert not (tmp_path / "nope.sqlite").exists()


def test_one_view_at_a_time(path: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["journal", path, "--fills", "--pnl"])
    assert exit_info.value.code == 2
