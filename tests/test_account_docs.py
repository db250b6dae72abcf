"""The README's account-view section stays true to the code: every AccountUpdate field is mapped per
exchange, with the sources it names (the None cases are tested in tests/test_account_book.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gridbot import events

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
_BASE_FIELDS = {f.name for f in dataclasses.fields(events.StatusUpdate)} - {"state", "detail"}


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else len(README)]


def test_every_account_field_is_mapped_for_both_exchanges() -> None:
    section = _section("## The account risk view")
    header = next(line for line in section.splitlines() if line.startswith("| field |"))
    assert "Bybit" in header and "Binance" in header
    rows = {line.split("|")[1].strip().strip("`") for line in section.splitlines() if line.startswith("| `")}
    fields = {f.name for f in dataclasses.fields(events.AccountUpdate)} - _BASE_FIELDS - {"computed"}
    assert fields <= rows, fields - rows
    assert "computed=True" in section and "computed=False" in section
    for source in ("GET /fapi/v1/leverageBracket", "GET /fapi/v2/account", "ACCOUNT_CONFIG_UPDATE",
                   "totalMaintenanceMargin", "accountMMRate"):
        assert source in section, source
