"""The SDK version check: one warning per exchange naming installed and tested releases."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from gridbot import _sdk_versions
from gridbot._sdk_versions import TESTED, Mismatch, SdkVersionCheck, check_sdk_versions, is_tested

ROOT = Path(__file__).resolve().parents[1]
LOGGER = "gridbot._sdk_versions"


def release_tested(distribution: str) -> str:
    """A full release string covered by every exchange's tested versions of ``distribution``."""
    for versions in TESTED.values():
        if distribution in versions:
            return versions[distribution][0] + ".0" * (3 - versions[distribution][0].count(".") - 1)
    raise KeyError(distribution)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def test_release_testeds_raise_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    check = SdkVersionCheck(release_tested)
    with caplog.at_level(logging.WARNING, LOGGER):
        assert check("binance") == ()
        assert check("bybit") == ()
    assert warnings_of(caplog) == []


def test_an_untested_sdk_is_named_with_installed_and_tested_versions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    versions = {"python-binance": "1.0.38"}
    check = SdkVersionCheck(lambda name: versions.get(name) or release_tested(name))
    with caplog.at_level(logging.WARNING, LOGGER):
        found = check("binance")
    assert found == (Mismatch("python-binance", "1.0.38", TESTED["binance"]["python-binance"]),)
    [record] = warnings_of(caplog)
    message = record.getMessage()
    assert "Binance" in message and "python-binance 1.0.38" in message
    assert f"tested: {TESTED['binance']['python-binance'][0]}" in message


def test_the_websocket_library_under_each_sdk_is_checked(caplog: pytest.LogCaptureFixture) -> None:
    versions = {"websockets": "18.0", "websocket-client": "2.0.0"}
    check = SdkVersionCheck(lambda name: versions.get(name) or release_tested(name))
    with caplog.at_level(logging.WARNING, LOGGER):
        assert [m.distribution for m in check("binance")] == ["websockets"]
        assert [m.distribution for m in check("bybit")] == ["websocket-client"]
    messages = [r.getMessage() for r in warnings_of(caplog)]
    assert len(messages) == 2
    assert "websockets 18.0" in messages[0] and "websocket-client 2.0.0" in messages[1]


def test_one_warning_per_exchange_however_often_and_from_however_many_threads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    check = SdkVersionCheck(lambda name: "0.1")
    barrier = threading.Barrier(8)

    def build_transports() -> None:
        barrier.wait()
        for _ in range(50):
            check("bybit")
            check("binance")

    threads = [threading.Thread(target=build_transports) for _ in range(8)]
    with caplog.at_level(logging.WARNING, LOGGER):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    named = sorted(r.getMessage().split("'s ")[1].split()[0] for r in warnings_of(caplog))
    assert named == ["Binance", "Bybit"]


def test_a_missing_distribution_is_reported_not_installed(caplog: pytest.LogCaptureFixture) -> None:
    check = SdkVersionCheck(lambda name: None if name == "pybit" else release_tested(name))
    with caplog.at_level(logging.WARNING, LOGGER):
        [mismatch] = check("bybit")
    assert mismatch.installed is None
    assert "pybit not installed" in warnings_of(caplog)[0].getMessage()


def test_an_unknown_exchange_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown exchange 'kraken'"):
        SdkVersionCheck()("kraken")


@pytest.mark.parametrize(
    ("installed", "tested", "expected"),
    [
        ("1.0.37", "1.0.37", True),
        ("1.0.37.post1", "1.0.37", True),
        ("1.0.38", "1.0.37", False),
        ("1.0.3", "1.0.37", False),
        ("2.8.1", "2.8", True),
        ("2.80.0", "2.8", False),
        ("2.9.0", "2.8", False),
        ("17.4", "17.4", True),
        ("17.4rc1", "17.4", True),
        ("17", "17.4", False),
        ("garbage", "17.4", False),
    ],
)
def test_a_tested_version_covers_the_releases_it_is_a_prefix_of(
    installed: str, tested: str, expected: bool
) -> None:
    assert is_tested(installed, tested) is expected


def test_the_process_wide_check_reads_the_installed_metadata(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real metadata: with the tested set emptied of the installed release, the warning names it."""
    import importlib.metadata

    installed = importlib.metadata.version("python-binance")
    monkeypatch.setattr(_sdk_versions, "_PROCESS_CHECK", SdkVersionCheck())
    monkeypatch.setitem(TESTED, "binance", {**TESTED["binance"], "python-binance": ("0.0.1",)})
    with caplog.at_level(logging.WARNING, LOGGER):
        found = check_sdk_versions("binance")
        check_sdk_versions("binance")
    assert Mismatch("python-binance", installed, ("0.0.1",)) in found
    [record] = warnings_of(caplog)
    assert f"python-binance {installed} (tested: 0.0.1)" in record.getMessage()


def test_ci_installs_exactly_the_release_testeds() -> None:
    """.ci/tested-versions.txt (CI's first run) pins each checked distribution to a tested release."""
    pinned = {}
    for line in (ROOT / ".ci" / "tested-versions.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pinned[name.strip()] = version.strip()
    for exchange, distributions in TESTED.items():
        for name, versions in distributions.items():
            assert name in pinned, (exchange, name)
            assert any(is_tested(pinned[name], v) for v in versions), (exchange, name, pinned[name], versions)
