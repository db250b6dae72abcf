"""What a production install pulls and what ``import gridbot`` loads: the SDKs, not the demo."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from gridbot._sdk_versions import TESTED

ROOT = Path(__file__).resolve().parents[1]
SETUP = configparser.ConfigParser()
SETUP.read(ROOT / "setup.cfg")


def requirements(text: str) -> dict[str, Requirement]:
    found = (Requirement(line) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {requirement.name: requirement for requirement in found}


INSTALL = requirements(SETUP["options"]["install_requires"])
EXTRAS = {name: requirements(text) for name, text in SETUP["options.extras_require"].items()}


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_import_gridbot_loads_neither_the_demo_nor_the_emulator_nor_optional_libraries() -> None:
    banned = ["rich", "redis", "gridbot.grid", "gridbot.emulator", "gridbot.cli"]
    result = run_python(
        "import sys, gridbot\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {banned!r} or "
        f"any(m == b or m.startswith(b + '.') for b in {banned!r})))\n"
        "print(len(gridbot.__all__))"
    )
    assert result.returncode == 0, result.stderr
    loaded, count = result.stdout.splitlines()
    assert loaded == "[]"
    assert int(count) > 0


def test_every_public_name_resolves_without_the_extras() -> None:
    """rich, redis and aiohttp blocked: every name in gridbot.__all__ still imports."""
    result = run_python(
        "import sys\n"
        "for name in ('rich', 'redis', 'aiohttp'): sys.modules[name] = None\n"
        "import gridbot\n"
        "missing = [n for n in gridbot.__all__ if getattr(gridbot, n, None) is None]\n"
        "print(missing)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_gridbot_demo_without_its_extra_says_which_install_command_brings_it() -> None:
    result = run_python(
        "import sys\n"
        "sys.modules['rich'] = None\n"
        "from gridbot.cli import main\n"
        "sys.exit(main(['demo', '--duration', '1']))"
    )
    assert result.returncode == 1
    assert "needs rich" in result.stderr and "pip install 'gridbot[demo]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_production_install_pulls_only_the_sdks_and_the_libraries_under_them() -> None:
    sdks = {"python-binance", "pybit", "websockets", "websocket-client", "requests", "urllib3"}
    assert set(INSTALL) == sdks
    assert {"rich", "aiohttp"} <= set(EXTRAS["demo"])
    assert "aiohttp" in EXTRAS["emulator"]
    assert set(EXTRAS["demo"]) | set(EXTRAS["redis"]) <= set(EXTRAS["test"])


def test_every_pin_has_an_upper_bound_and_admits_the_tested_release() -> None:
    pinned = dict(
        line.split("==") for line in (ROOT / ".ci" / "tested-versions.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    for name, requirement in INSTALL.items():
        assert any(spec.operator in ("<", "~=") for spec in requirement.specifier), requirement
        assert Version(pinned[name]) in requirement.specifier, (requirement, pinned[name])
    for distributions in TESTED.values():
        for name in distributions:
            assert name in INSTALL, f"{name} is version-checked but not pinned in setup.cfg"
