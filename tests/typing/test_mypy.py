"""The public API's types do their job: wrong callbacks and misspelt enumerations fail ``mypy --strict``.

One mypy run over tests/typing/usage.py (must be clean) and tests/typing/cases/*.py, where every line
marked ``# E: <code>`` must get an error of that code and no unmarked line may get one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
_MARK = re.compile(r"#\s*E:\s*([a-z-]+)")
_ERROR = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


def _expected() -> set[tuple[str, int, str]]:
    found = set()
    for path in sorted((HERE / "cases").glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = _MARK.search(line)
            if match:
                found.add((path.name, number, match.group(1)))
    return found


@pytest.mark.timeout(300)
def test_mypy_rejects_the_marked_mistakes_and_nothing_else(tmp_path: Path) -> None:
    from mypy import api

    files = [str(HERE / "usage.py"), *(str(p) for p in sorted((HERE / "cases").glob("*.py")))]
    out, err, _ = api.run(["--strict", "--no-error-summary", "--show-error-codes", "--no-pretty",
                           "--config-file", str(ROOT / "setup.cfg"),
                           "--cache-dir", str(tmp_path / "mypy-cache"), *files])
    assert not err, err
    errors = set()
    for line in out.splitlines():
        match = _ERROR.match(line)
        if match:
            errors.add((Path(match["path"]).name, int(match["line"]), match["code"]))
    expected = _expected()
    assert len(expected) >= 10
    assert errors == expected, f"mypy output:\n{out}"


@pytest.mark.timeout(600)
def test_the_package_and_the_tests_are_strictly_typed() -> None:
    """``mypy --strict gridbot tests`` (as CI runs it), so a test that loosens the types fails here too."""
    from mypy import api

    out, err, status = api.run(["--strict", "--no-error-summary", "--config-file", str(ROOT / "setup.cfg"),
                                "--cache-dir", str(ROOT / ".mypy_cache"), str(ROOT / "gridbot"),
                                str(ROOT / "tests")])
    assert status == 0, out + err
