"""The documentation stays true: constructor and event fields documented, set-up lines, API reference."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import pytest

import gridbot
from gridbot import events

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
EVENT_CLASSES = (events.PositionUpdate, events.WalletUpdate, events.OrderUpdate, events.FillUpdate,
                 events.TickerUpdate, events.StatusUpdate)
_BASE_FIELDS = {f.name for f in dataclasses.fields(events.StatusUpdate)} - {"state", "detail"}


def _constructor_args() -> list[str]:
    return [name for name in inspect.signature(gridbot.ExchangeStream.__init__).parameters if name != "self"]


def test_the_readme_names_the_fields_every_event_has() -> None:
    reference = _section("### Events and where each field comes from")
    for name in _BASE_FIELDS:
        assert f"`{name}`" in reference.split("| `PositionUpdate`")[0], name


def test_the_constructor_docstring_documents_every_argument() -> None:
    doc = inspect.getdoc(gridbot.ExchangeStream) or ""
    documented = set(re.findall(r"^\s{4}(\w+(?:, \w+)*):", doc, flags=re.MULTILINE))
    names = {name for entry in documented for name in entry.split(", ")}
    assert set(_constructor_args()) <= names, set(_constructor_args()) - names


def test_no_public_docstring_points_at_files_users_do_not_have() -> None:
    public = [getattr(gridbot, name) for name in gridbot.__all__]
    modules = {importlib.import_module(obj.__module__) for obj in public if hasattr(obj, "__module__")}
    for obj in [*public, *modules, gridbot]:
        text = inspect.getdoc(obj) or ""
        assert "DESIGN" not in text and "../shared" not in text, obj
    for name, member in inspect.getmembers(gridbot.ExchangeStream):
        if not name.startswith("_"):
            assert "DESIGN" not in (inspect.getdoc(member) or ""), name


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else len(README)]


def test_the_readme_table_lists_every_constructor_argument() -> None:
    table = _section("### `ExchangeStream(")
    for name in _constructor_args():
        assert f"`{name}`" in table, name


@pytest.mark.parametrize("event", EVENT_CLASSES, ids=lambda e: e.__name__)
def test_the_readme_maps_every_event_field_per_exchange(event: type) -> None:
    reference = _section("### Events and where each field comes from")
    start = reference.index(f"| `{event.__name__}` |")
    end = reference.find("\n\n", start)
    table = reference[start:end]
    for field in dataclasses.fields(event):
        if field.name not in _BASE_FIELDS:
            assert f"`{field.name}`" in table, (event.__name__, field.name)
    if event is not events.StatusUpdate:
        assert "Binance" in table.splitlines()[0] and "Bybit" in table.splitlines()[0]


def test_the_readme_states_the_pnl_semantics_next_to_the_numbers() -> None:
    demo = _section("## Try it, then test it")
    assert "before any fee" in demo and "net of every fee" in demo
    assert "opening fee" in _section("### Events and where each field comes from")


def test_the_set_up_lines_make_a_virtualenv_in_two_commands() -> None:
    block = _section("## Try it, then test it").split("```bash\n", 1)[1].split("```", 1)[0]
    lines = block.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[demo]' ")
    assert lines[0].endswith("gridbot demo") and lines[1] == "pip install -e '.[test]' && pytest"


def test_the_manual_dispatch_example_drains_the_final_status() -> None:
    quickstart = _section("## Quickstart")
    assert 'dispatch="manual"' in quickstart
    after_stop = quickstart[quickstart.index("stream.stop()"):]
    assert "while stream.dispatch_pending():" in after_stop


@pytest.mark.timeout(120)
def test_the_api_reference_is_generated_from_the_docstrings(tmp_path: Path) -> None:
    import pdoc

    pdoc.pdoc("gridbot", "gridbot.book", "gridbot.events", output_directory=tmp_path)
    page = (tmp_path / "gridbot.html").read_text()
    for name in (*_constructor_args(), "dispatch_pending", "status", "book"):
        assert name in page, name
    assert "StateBook" in (tmp_path / "gridbot" / "book.html").read_text()
