"""The gridbot command: argument parsing, ``watch`` without sockets, and the demo end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gridbot import cli
from gridbot.cli import _demo_run, _display
from gridbot.cli import demo as demo_command
from gridbot.cli import watch as watch_command
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
    ["demo", "--duration", "abc"],
    ["demo", "--duration", "inf"],
    ["demo", "--mode", "netting"],
    ["demo", "--seed", "abc"],
    ["demo", "--seed", "-1"],
    ["demo", "--exchange"],
    ["demo", "--bogus"],
    ["demo", "--levels", "0"],
    ["demo", "--levels", "-3"],
    ["demo", "--levels", "1000"],
    ["demo", "--levels", "2.5"],
    ["demo", "--step", "0"],
    ["demo", "--step", "abc"],
    ["demo", "--step", "nan"],
    ["demo", "--step", "-1"],
    ["demo", "--levels", "50", "--step", "2"],
    ["watch", "--symbol", "BTCUSDT"],
    ["watch", "--exchange", "bybit", "--symbol", ""],
    ["watch", "--exchange", "bybit", "--symbol", "BTC/USDT"],
    ["watch", "--exchange", "bybit", "--symbol", "BTCUSDT", "--api-key", "k"],
    ["watch", "--exchange", "bybit", "--symbol", "BTCUSDT", "--rest-url", "http://127.0.0.1:1"],
    ["watch", "--exchange", "bybit", "--symbol", "BTCUSDT", "--rest-url", "127.0.0.1:1", "--ws-url", "ws://x"],
    [],
])
def test_bad_arguments_are_one_line_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert "error:" in err and "--help" in err
    assert "Traceback" not in err and "_positive" not in err and "invalid" not in err.replace(
        "invalid choice", "")


@pytest.mark.parametrize("argv", [
    ["-v", "demo", "--duration", "1"],
    ["demo", "-v", "--duration", "1"],
    ["demo", "--duration", "1", "--verbose"],
])
def test_verbose_is_accepted_before_or_after_the_command(argv: list[str]) -> None:
    args = cli.build_parser().parse_args(argv)
    assert args.verbose is True


def test_verbose_defaults_to_off() -> None:
    assert getattr(cli.build_parser().parse_args(["demo"]), "verbose", False) is False


def _subparser(name: str) -> Any:
    return cli.build_parser()._subparsers._group_actions[0].choices[name]  # type: ignore[union-attr,index]


@pytest.mark.parametrize("name", cli.COMMAND_MODULES)
def test_every_option_has_help_and_the_command_a_description(name: str) -> None:
    parser = _subparser(name)
    assert parser.description and len(parser.description) > 40
    for action in parser._actions:
        assert action.help, f"{name} {action.option_strings} has no help text"


def test_demo_help_explains_levels_step_and_the_summary_rows() -> None:
    text = _subparser("demo").format_help()
    assert "percent" in text and "take-profit" in text
    for row in _display.SUMMARY_ROWS:
        assert row.replace("_", " ") in text, row


def test_commands_are_registered_modules() -> None:
    assert [c.name for c in cli.commands()] == list(cli.COMMAND_MODULES)


def test_secrets_cannot_be_passed_as_arguments() -> None:
    help_text = _subparser("watch").format_help()
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
    assert demo_command.plain(Decimal("5.4777790")) == demo_command.plain(Decimal("5.47777900")) == "5.477779"
    assert demo_command.plain(Decimal("100")) == "100"
    assert demo_command.plain(Decimal("-0.000")) == "0"


def test_format_event_shows_fields_without_raw() -> None:
    event = TickerUpdate(exchange="bybit", timestamp=1, symbol="BTCUSDT", mark_price=Decimal("60000.10"),
                         last_price=None, index_price=None, funding_rate=Decimal("0.0001"),
                         next_funding_time=None, raw={"secretish": "x"})
    assert watch_command.format_event(event) == (
        "TickerUpdate bybit timestamp=1 symbol=BTCUSDT mark_price=60000.10 funding_rate=0.0001")


# -------------------------------------------------------------------------------------------- watch


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(watch_command.KEY_ENV, raising=False)
    monkeypatch.delenv(watch_command.SECRET_ENV, raising=False)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(watch_command.KEY_ENV, "key-id")
    monkeypatch.setenv(watch_command.SECRET_ENV, SECRET)


@pytest.mark.usefixtures("no_keys")
def test_watch_without_keys_exits_2_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["watch", "--exchange", "bybit", "--symbol", "BTCUSDT"]) == 2
    err = capsys.readouterr().err
    assert "GRIDBOT_API_KEY" in err and "GRIDBOT_API_SECRET" in err


@pytest.mark.usefixtures("no_keys")
def test_watch_with_only_the_key_exits_2(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(watch_command.KEY_ENV, "key-id")
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
    monkeypatch.setattr(watch_command, "ExchangeStream", FakeStream)
    monkeypatch.setattr(watch_command, "_wait_for_interrupt", ctrl_c)
    yield FakeStream


@pytest.mark.usefixtures("keys")
def test_watch_prints_events_until_ctrl_c(fake_stream: type[FakeStream],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["watch", "--exchange", "bybit", "--symbol", "btcusdt", "--testnet", "--demo"])
    assert code == 0
    [stream] = fake_stream.instances
    assert (stream.exchange, stream.symbol, stream.kwargs["testnet"], stream.kwargs["demo"]) == (
        "bybit", "BTCUSDT", True, True)
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


@pytest.mark.timeout(60)
def test_watch_can_be_pointed_at_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--rest-url``/``--ws-url``: the real stream against a loopback Bybit, printing live events."""
    from gridbot.emulator import BybitEmulator
    from gridbot.emulator.engine import EngineConfig, SymbolConfig
    from tests.e2e.helpers import wait_until

    monkeypatch.setenv(watch_command.KEY_ENV, "watch-key")
    monkeypatch.setenv(watch_command.SECRET_ENV, SECRET)
    lines: list[str] = []
    config = EngineConfig(symbols=(SymbolConfig("BTCUSDT", Decimal("60000")),), seed=3)
    with BybitEmulator(config, api_key="watch-key", api_secret=SECRET, price_interval=0.02) as exchange:
        def until_a_ticker() -> None:
            wait_until(lambda: any(line.startswith("TickerUpdate bybit") for line in lines), what="a ticker")
            raise KeyboardInterrupt

        monkeypatch.setattr(watch_command, "_wait_for_interrupt", until_a_ticker)
        monkeypatch.setattr(watch_command, "say", lines.append)
        code = cli.main(["watch", "--exchange", "bybit", "--symbol", "BTCUSDT",
                         "--rest-url", exchange.endpoints.rest, "--ws-url", exchange.endpoints.ws])
    assert code == 0
    assert any(line.startswith("StatusUpdate bybit") and "state=connected" in line for line in lines)
    assert any(line.startswith("TickerUpdate bybit") and "symbol=BTCUSDT" in line for line in lines)
    assert SECRET not in "\n".join(lines)


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
    monkeypatch.setattr(_demo_run, "_make_emulator", lambda exchange, options: BrokenEmulator())
    assert cli.main(["demo", "--duration", "1", "--json"]) == 1
    out, err = capsys.readouterr()
    assert "the binance demo failed to start" in err and "address already in use" in err
    assert out == ""  # no summary, no JSON
    assert BrokenEmulator.stopped == 2  # every emulator is stopped, started or not


# ------------------------------------------------------------------------------------- end to end


def _run_demo(*extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "gridbot", "demo", "--duration", "8", "--json", "--seed", "1", *extra]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class TerminalRun:
    """``gridbot demo --faults`` on a pseudo-terminal of 80x24, its output collected by a thread."""

    def __init__(self) -> None:
        import fcntl
        import os
        import pty
        import struct
        import termios
        import threading

        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
        argv = [sys.executable, "-m", "gridbot", "demo", "--duration", "8", "--seed", "1", "--faults"]
        self.process = subprocess.Popen(argv, cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, env=env)
        os.close(slave)
        self._master = master
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, name="test-pty-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        import os

        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            self.output.extend(chunk)
        os.close(self._master)

    def wait(self, timeout: float) -> tuple[int, str, str]:
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code, self.output.decode("utf-8", "replace"), ""

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def demo_runs() -> dict[str, tuple[int, str, str]]:
    """The demo runs at once (they are I/O bound): 'plain' and 'faults' -> (exit code, stdout, stderr);
    'terminal' -> (exit code, everything written to the 80x24 terminal, "")."""
    processes = {"plain": _run_demo(), "faults": _run_demo("--faults")}
    terminal = TerminalRun()
    results = {}
    try:
        for name, process in processes.items():
            out, err = process.communicate(timeout=120)
            results[name] = (process.returncode, out, err)
        results["terminal"] = terminal.wait(timeout=120)
    finally:
        terminal.kill()
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results


def _summary(run: tuple[int, str, str]) -> dict[str, Any]:
    code, out, err = run
    assert code == 0, f"demo exited {code}\nstdout:\n{out}\nstderr:\n{err}"
    summary = json.loads(out)  # stdout is exactly one JSON document: `gridbot demo --json | jq` works
    assert set(summary) == {"binance", "bybit"}
    assert "gridbot demo: summary" in err  # the table and progress went to stderr
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
        # The account view at the end (Bybit: sent; Binance: computed by gridbot).
        assert Decimal(result["margin_balance"]) > 0 and Decimal(result["mm_rate"]) >= 0, (exchange, result)
        assert "available_balance" in result, exchange
    assert summary["bybit"]["available_balance"] is not None
    assert "test-secret" not in demo_runs["plain"][1] + demo_runs["plain"][2]


@pytest.mark.timeout(150)
def test_demo_end_to_end_with_faults(demo_runs: dict[str, tuple[int, str, str]]) -> None:
    summary = _summary(demo_runs["faults"])
    for exchange, result in summary.items():
        assert result["closes"] >= 1, exchange
        assert result["realised_pnl"] == result["ledger_realised_pnl"], (exchange, result)
        assert result["state_rest_calls_after_start"] == 0, exchange
        assert result["resyncs"] >= 1, (exchange, result)
    assert "fault injected: expire_listen_key" in demo_runs["faults"][2]


_RAW_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (WARNING|ERROR|INFO)")


@pytest.mark.timeout(150)
def test_demo_with_faults_in_an_80x24_terminal_shows_one_clean_view(
        demo_runs: dict[str, tuple[int, str, str]]) -> None:
    """Replays what the demo wrote to its terminal through a terminal emulator (pyte): the live view is
    redrawn in place from start to the summary - one frame header in the whole scrollback, no log line
    written around it, both exchanges on screen - and the summary follows."""
    import pyte

    code, written, _ = demo_runs["terminal"]
    assert code == 0, written[-3000:]
    screen = pyte.HistoryScreen(80, 24, history=5000)
    stream = pyte.ByteStream(screen)
    frames_with_both = 0
    fault_shown = False
    data = written.encode()
    for start in range(0, len(data), 1024):  # look at the screen as it evolves, not only at the end
        stream.feed(data[start:start + 1024])
        shown = screen.display
        assert not any(_RAW_LOG_LINE.search(line) for line in shown), "\n".join(shown)
        # Any fault's log line proves the routing; which faults fit in 8 s depends on how fast each
        # outage recovers (the next one waits for the stream to be live again).
        fault_shown = fault_shown or any("fault injected: " in line for line in shown)
        starts = {line.split(" ", 1)[0] for line in shown}
        if {"binance", "bybit"} <= starts:
            frames_with_both += 1
    everything = [line.rstrip() for line in [*_history_lines(screen), *screen.display]]
    assert frames_with_both > 0
    assert sum(1 for line in everything if line.startswith("gridbot demo ")) == 1, "\n".join(everything)
    assert sum(1 for line in everything if "gridbot demo: summary" in line) == 1
    assert fault_shown  # in the view's log lines while it ran
    assert not any(_RAW_LOG_LINE.search(line) for line in everything)
    assert any("state rest calls after start" in line for line in screen.display)


def _history_lines(screen: Any) -> list[str]:
    lines = []
    for row in screen.history.top:
        lines.append("".join(row[x].data for x in sorted(row)) if row else "")
    return lines
