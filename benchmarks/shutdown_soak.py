"""Shutdown soak: start/stop cycles of real ExchangeStreams (real SDKs) against the loopback emulators,
in the states where stopping is hardest, and what each cycle leaves behind.

States: ``plain`` (live, idle), ``flood`` (tickers every millisecond), ``reconnect`` (private socket
dropped just before stop), ``slow-resync`` (the resync's REST answer delayed 30 s, stop() while it is
in flight), ``during-start`` (the seed's REST answer delayed 30 s, stop() from another thread while
start() waits: start() must raise).  The emulators run in their own process, so the thread and fd
figures are this process's only: after every cycle, threads other than the main one and file
descriptors above the baseline taken before the first stream.

    python benchmarks/shutdown_soak.py              # 30 cycles: 3 per state per exchange
    python benchmarks/shutdown_soak.py --rounds 1   # 10 cycles
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from multiprocessing.connection import Connection
from typing import Any

import gridbot

KEY, SECRET = "soak-key", "soak-secret-never-printed"
SYMBOL = "BTCUSDT"
STOP_TIMEOUT = 3.0
STATES = ("plain", "flood", "reconnect", "slow-resync", "during-start")
POSITION_PATH = {"binance": "/fapi/v3/positionRisk", "bybit": "/v5/position/list"}


# ------------------------------------------------------------------ the emulators' process

def serve(conn: Connection) -> None:
    from gridbot.emulator.binance import BinanceEmulator
    from gridbot.emulator.bybit import BybitEmulator
    from gridbot.emulator.engine import EngineConfig, SymbolConfig

    config = EngineConfig(symbols=(SymbolConfig(SYMBOL, Decimal("60000"), tick_size=Decimal("0.1"),
                                                qty_step=Decimal("0.001")),), seed=7)
    emulators: dict[str, Any] = {
        "binance": BinanceEmulator(config, api_key=KEY, api_secret=SECRET, price_interval=1.0),
        "bybit": BybitEmulator(config, api_key=KEY, api_secret=SECRET, price_interval=1.0),
    }
    for emulator in emulators.values():
        emulator.start()
    try:
        while True:
            command, exchange, *args = conn.recv()
            emulator = emulators.get(exchange)
            if command == "quit":
                return
            if command == "endpoints":
                conn.send((emulator.endpoints.rest, emulator.endpoints.ws))
            elif command == "price_interval":
                emulator.price_interval = args[0]
                conn.send(None)
            elif command == "delay":
                emulator.faults.rest_delay(POSITION_PATH[exchange], args[0])
                conn.send(None)
            elif command == "drop_private":
                emulator.faults.drop_private()
                conn.send(None)
    finally:
        for emulator in emulators.values():
            emulator.stop()


class Emulators:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=serve, args=(child,), daemon=True)
        self._process.start()

    def ask(self, *command: Any) -> Any:
        self._conn.send(command)
        return self._conn.recv()

    def close(self) -> None:
        self._conn.send(("quit", ""))
        self._process.join(10)


# ------------------------------------------------------------------ measuring

def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def other_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.005)


def cycle(emus: Emulators, exchange: str, state: str) -> dict[str, Any]:
    rest, ws = emus.ask("endpoints", exchange)
    statuses: list[str] = []
    stream = gridbot.ExchangeStream(exchange, api_key=KEY, api_secret=SECRET,  # type: ignore[arg-type]
                                    endpoints=gridbot.Endpoints(rest=rest, ws=ws),
                                    on_status=lambda s: statuses.append(s.state))
    stream.subscribe(SYMBOL, on_ticker=lambda t: None, on_position=lambda p: None)
    start_error: BaseException | None = None
    if state == "during-start":
        emus.ask("delay", exchange, 30.0)
        errors: list[BaseException] = []

        def start() -> None:
            try:
                stream.start(timeout=60)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        starter = threading.Thread(target=start, name="soak-starter")
        starter.start()
        wait_for(lambda: stream.stats.rest_calls > 0)  # the seed request is in flight
    else:
        stream.start(timeout=30)
        if state == "flood":
            emus.ask("price_interval", exchange, 0.001)
            time.sleep(0.5)  # let the flood build up (a load, not a condition)
        elif state == "reconnect":
            emus.ask("drop_private", exchange)
            wait_for(lambda: "reconnecting" in statuses)
        elif state == "slow-resync":
            emus.ask("delay", exchange, 30.0)
            before = stream.stats.rest_calls
            emus.ask("drop_private", exchange)
            wait_for(lambda: stream.stats.rest_calls > before)  # the resync request is in flight
    began = time.monotonic()
    stream.stop(timeout=STOP_TIMEOUT)
    took = time.monotonic() - began
    if state == "during-start":
        starter.join(STOP_TIMEOUT + 5)
        start_error = errors[0] if errors else None
    emus.ask("delay", exchange, 0)
    emus.ask("price_interval", exchange, 1.0)
    return {"exchange": exchange, "state": state, "stop_s": took, "threads": other_threads(),
            "start_raised": type(start_error).__name__ if start_error else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="cycles per state per exchange (default 3)")
    args = parser.parse_args()
    emus = Emulators()
    for exchange in ("binance", "bybit"):
        emus.ask("endpoints", exchange)
    import binance.client  # noqa: F401 - import the SDKs before the baseline (their import opens nothing)
    import pybit.unified_trading  # noqa: F401

    baseline = fds()
    results: list[dict[str, Any]] = []
    print(f"{'exchange':8} {'state':13} {'stop() s':>9} {'threads':>7} {'fds':>4}  start()")
    for _ in range(args.rounds):
        for exchange in ("binance", "bybit"):
            for state in STATES:
                result = cycle(emus, exchange, state)
                result["fds"] = fds() - baseline
                results.append(result)
                print(f"{exchange:8} {state:13} {result['stop_s']:9.3f} {len(result['threads']):7d} "
                      f"{result['fds']:4d}  {result['start_raised'] or '-'}"
                      + (f"  left: {result['threads']}" if result["threads"] else ""), flush=True)
    emus.close()
    stops = [r["stop_s"] for r in results]
    over = [r for r in results if r["stop_s"] > STOP_TIMEOUT]
    leaks = [r for r in results if r["threads"] or r["fds"] > 0]
    bad_start = [r for r in results if r["state"] == "during-start" and r["start_raised"] is None]
    print(f"\n{len(results)} cycles; stop(timeout={STOP_TIMEOUT:g}) took median "
          f"{statistics.median(stops):.3f} s, max {max(stops):.3f} s; over the timeout: {len(over)}; "
          f"cycles leaving threads or fds: {len(leaks)}; "
          f"fds above baseline at the end: {fds() - baseline}; threads at the end: {len(other_threads())}; "
          f"start() returning normally after stop(): {len(bad_start)}")
    return 1 if over or leaks or bad_start else 0


if __name__ == "__main__":
    sys.exit(main())
