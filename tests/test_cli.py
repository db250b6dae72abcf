"""The gridbot command: argument parsing, ``watch`` without sockets, and the demo end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gridbot import cli
from gridbot.errors import AuthenticationError, ConnectError
from gridbot.events import StatusUpdate, TickerUpdate

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-value-never-printed"


# ------------------------------------------------------------------------------------------ parsing


def test_demo_defaults() -> None:
    args = cli.build_parser().parse_args(["demo"])
    assert (args.exchange, args.symbols, args.duration, args.seed, args.faults, args.json, args.mode) == (
        "both", ["BTCUSDT", "ETHUSDT"], 20.0, None, False, False, "one-way")


def test_demo_options_are_parsed() -> None:
    args = cli.build_parser().parse_args(
        ["demo", "--exchange", "bybit", "--symbols", "solusdt, BTCUSDT", "--duration", "8", "--seed", "7",
         "--faults", "--json", "--mode", "hedge", "--levels", "2", "--step", "0.25"])
    assert (args.exchange, args.symbols, args.duration, args.seed, args.faults, args.json, args.mode,
            args.levels, args.step) == ("bybit", ["SOLUSDT", "BTCUSDT"], 8.0, 7, True, True, "hedge", 2,
                                        Decimal("0.25"))


@pytest.mark.parametrize("argv", [
    ["demo", "--symbols", "BTCUSDT,ETHUSDT,SOLUSDT,BTCUSDT"],
    ["demo", "--symbols", "DOGEUSDT"],
    ["demo", "--symbols", ""],
    ["demo", "--exchange", "kraken"],
    ["demo", "--duration", "0"],
    ["demo", "--mode", "netting"],
    ["watch", "--symbol", "BTCUSDT"],
    ["watch", "--exchange", "bybit", "--symbol", "BTCUSDT", "--api-key", "k"],
    [],
])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_secrets_cannot_be_passed_as_arguments() -> None:
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["watch"].format_help()  # type: ignore[union-attr]
    assert "--api-key" not in help_text and "--api-secret" not in help_text
    assert "GRIDBOT_API_KEY" in help_text


def test_state_calls_are_the_account_reads() -> None:
    assert cli.is_state_call("GET /fapi/v3/positionRisk")
    assert cli.is_state_call("GET /v5/order/realtime")
    assert cli.is_state_call("GET /fapi/v1/order")
    assert not cli.is_state_call("POST /fapi/v1/order")
    assert not cli.is_state_call("PUT /fapi/v1/listenKey")
    assert not cli.is_state_call("GET /api/v3/ping")
    assert not cli.is_state_call("GET /fapi/v1/time")
    assert not cli.is_state_call("GET /v5/market/time")


def test_plain_prints_equal_decimals_equally() -> None:
    assert cli.plain(Decimal("5.4777790")) == cli.plain(Decimal("5.47777900")) == "5.477779"
    assert cli.plain(Decimal("100")) == "100"
    assert cli.plain(Decimal("-0.000")) == "0"


def test_format_event_shows_fields_without_raw() -> None:
    event = TickerUpdate(exchange="bybit", timestamp=1, symbol="BTCUSDT", mark_price=Decimal("60000.10"),
                         last_price=None, index_price=None, funding_rate=Decimal("0.0001"),
                         next_funding_time=None, raw={"secretish": "x"})
    assert cli.format_event(event) == (
        "TickerUpdate bybit timestamp=1 symbol=BTCUSDT mark_price=60000.10 funding_rate=0.0001")


# -------------------------------------------------------------------------------------------- watch


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cli.KEY_ENV, raising=False)
    monkeypatch.delenv(cli.SECRET_ENV, raising=False)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli.KEY_ENV, "key-id")
    monkeypatch.setenv(cli.SECRET_ENV, SECRET)


@pytest.mark.usefixtures("no_keys")
def test_watch_without_keys_exits_2_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["watch", "--exchange", "bybit", "--symbol", "BTCUSDT"]) == 2
    err = capsys.readouterr().err
    assert "GRIDBOT_API_KEY" in err and "GRIDBOT_API_SECRET" in err


@pytest.mark.usefixtures("no_keys")
def test_watch_with_only_the_key_exits_2(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(cli.KEY_ENV, "key-id")
    assert cli.main(["watch", "--exchange", "binance", "--symbol", "BTCUSDT"]) == 2
    assert "GRIDBOT_API_SECRET" in capsys.readouterr().err


class FakeStream:
    """Stands in for ExchangeStream: records how it was built, plays events at start()."""

    instances: list[FakeStream] = []
    start_error: Exception | None = None

    def __init__(self, exchange: str, **kwargs: Any) -> None:
        self.exchange = exchange
        self.kwargs = kwargs
        self.callbacks: dict[str, Callable[[Any], None]] = {}
        self.symbol = ""
        self.stopped = False
        FakeStream.instances.append(self)

    def subscribe(self, symbol: str, **callbacks: Callable[[Any], None]) -> None:
        self.symbol = symbol
        self.callbacks = callbacks

    def start(self, timeout: float = 30.0) -> None:
        if FakeStream.start_error is not None:
            raise FakeStream.start_error
        self.kwargs["on_status"](StatusUpdate(exchange=self.exchange, timestamp=1, state="connected"))
        self.callbacks["on_ticker"](TickerUpdate(
            exchange=self.exchange, timestamp=2, symbol="BTCUSDT", mark_price=Decimal("60000.5"),
            last_price=None, index_price=None, funding_rate=None, next_funding_time=None))

    def stop(self, timeout: float = 10.0) -> None:
        self.stopped = True


def ctrl_c() -> None:
    raise KeyboardInterrupt


@pytest.fixture
def fake_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeStream]]:
    FakeStream.instances = []
    FakeStream.start_error = None
    monkeypatch.setattr(cli, "ExchangeStream", FakeStream)
    monkeypatch.setattr(cli, "_wait_for_interrupt", ctrl_c)
    yield FakeStream


@pytest.mark.usefixtures("keys")
def test_watch_prints_events_until_ctrl_c(fake_stream: type[FakeStream],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["watch", "--exchange", "bybit", "--symbol", "btcusdt", "--testnet", "--demo"])
    assert code == 0
    [stream] = fake_stream.instances
    assert (stream.exchange, stream.symbol, stream.kwargs["testnet"], stream.kwargs["demo"]) == (
        "bybit", "btcusdt", True, True)
    assert (stream.kwargs["api_key"], stream.kwargs["api_secret"]) == ("key-id", SECRET)
    assert set(stream.callbacks) == {"on_position", "on_wallet", "on_order", "on_ticker", "on_fill"}
    assert stream.stopped
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "StatusUpdate bybit timestamp=1 state=connected",
        "TickerUpdate bybit timestamp=2 symbol=BTCUSDT mark_price=60000.5",
    ]
    assert SECRET not in out + err


@pytest.mark.usefixtures("keys")
def test_watch_reports_rejected_keys(fake_stream: type[FakeStream],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    fake_stream.start_error = AuthenticationError(
        "Bybit GET /v5/position/list: API key rejected (retCode 10003)")
    assert cli.main(["watch", "--exchange", "bybit", "--symbol", "BTCUSDT"]) == 3
    out, err = capsys.readouterr()
    assert "rejected the API key" in err and "10003" in err
    assert SECRET not in out + err


@pytest.mark.usefixtures("keys")
def test_watch_reports_unreachable_hosts(fake_stream: type[FakeStream],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    fake_stream.start_error = ConnectError("binance: the REST seed did not finish within 30 s")
    assert cli.main(["watch", "--exchange", "binance", "--symbol", "BTCUSDT"]) == 1
    assert "could not connect to binance" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ demo failures


class BrokenEmulator:
    """An emulator whose port is taken."""

    stopped = 0

    def start(self, timeout: float = 10.0) -> None:
        raise OSError(98, "address already in use")

    def stop(self, timeout: float = 5.0) -> None:
        BrokenEmulator.stopped += 1


def test_demo_that_cannot_start_exits_1(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    BrokenEmulator.stopped = 0
    monkeypatch.setattr(cli, "_make_emulator", lambda exchange, options: BrokenEmulator())
    assert cli.main(["demo", "--duration", "1", "--json"]) == 1
    out, err = capsys.readouterr()
    assert "the binance demo failed to start" in err and "address already in use" in err
    assert out == ""  # no summary, no JSON
    assert BrokenEmulator.stopped == 2  # every emulator is stopped, started or not


# ------------------------------------------------------------------------------------- end to end


def _run_demo(*extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "gridbot", "demo", "--duration", "8", "--json", "--seed", "1", *extra]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def demo_runs() -> dict[str, tuple[int, str, str]]:
    """Both demo runs at once (they are I/O bound): 'plain' and 'faults' -> (exit code, stdout, stderr)."""
    processes = {"plain": _run_demo(), "faults": _run_demo("--faults")}
    results = {}
    try:
        for name, process in processes.items():
            out, err = process.communicate(timeout=120)
            results[name] = (process.returncode, out, err)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results


def _summary(run: tuple[int, str, str]) -> dict[str, Any]:
    code, out, err = run
    assert code == 0, f"demo exited {code}\nstdout:\n{out}\nstderr:\n{err}"
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary) == {"binance", "bybit"}
    return summary  # type: ignore[no-any-return]


@pytest.mark.timeout(150)
def test_demo_end_to_end(demo_runs: dict[str, tuple[int, str, str]]) -> None:
    summary = _summary(demo_runs["plain"])
    for exchange, result in summary.items():
        assert result["closes"] >= 1, exchange
        assert result["realised_pnl"] == result["ledger_realised_pnl"], (exchange, result)
        assert Decimal(result["realised_pnl"]) != 0, exchange
        assert result["state_rest_calls_after_start"] == 0, exchange
        assert result["resyncs"] == 0, exchange
        assert result["fill_pnl_mismatches"] == [], exchange
        assert len(result["open_tp_ids"]) == result["open_tp_orders_on_exchange"], (exchange, result)
    assert "test-secret" not in demo_runs["plain"][1] + demo_runs["plain"][2]


@pytest.mark.timeout(150)
def test_demo_end_to_end_with_faults(demo_runs: dict[str, tuple[int, str, str]]) -> None:
    summary = _summary(demo_runs["faults"])
    for exchange, result in summary.items():
        assert result["closes"] >= 1, exchange
        assert result["realised_pnl"] == result["ledger_realised_pnl"], (exchange, result)
        assert result["state_rest_calls_after_start"] == 0, exchange
        assert result["resyncs"] >= 1, (exchange, result)
    assert "fault injected: expire_listen_key" in demo_runs["faults"][1]
