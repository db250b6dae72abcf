"""benchmarks/account_accuracy.py, shortened: during a demo run on the Binance emulator every computed
AccountUpdate equals the emulator's account figures for the same state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "account_accuracy.py"


@pytest.mark.timeout(120)
def test_every_computed_update_equals_the_exchange_figures_in_a_demo_run() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--duration", "6", "--seed", "3"],
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    assert int(lines["fills during the run"]) > 0, done.stdout  # positions changed, not only marks
    assert int(lines["compared with the exchange's figures"]) > 50, done.stdout
    assert int(lines["  in any other state the engine never had"]) == 0, done.stdout
    assert lines["largest |maintenance_margin - totalMaintMargin|"].strip() == "0", done.stdout
