"""The README's emulator section runs as written: each of its Python blocks is executed against live
emulators (real python-binance, pybit, CCXT and ExchangeStream), so the recipes cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SECTION = "## Testing your own strategy against the emulator"


def _blocks() -> list[str]:
    start = README.index(SECTION)
    end = README.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", README[start:end], flags=re.DOTALL)


BLOCKS = _blocks()


def test_the_section_shows_every_client() -> None:
    text = "\n".join(BLOCKS)
    for needle in ("ExchangeStream", "from binance import Client", "from pybit.unified_trading import HTTP",
                   "ccxt.pro", "engine.set_price", "engine.liquidate", "faults."):
        assert needle in text, needle


@pytest.mark.timeout(90)
@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_each_recipe_runs(number: int) -> None:
    exec(compile(BLOCKS[number], f"README.md emulator block {number + 1}", "exec"), {"__name__": "recipe"})
