"""Soak: every ledger fill delivered exactly once through drops, listenKey expiries, bad frames and an outage.

Run: ``python benchmarks/soak_lossless.py [seconds] [outage_seconds]`` (defaults 210 and 40).

For each exchange (Binance and Bybit side by side, each in its own process with its own emulator):
a driver thread trades market orders (~3 per second, buys and sells around a small position) and now
and then force-closes the position (liquidation or ADL), while a fault thread every 2-4 s drops the
private socket (most often), drops the public one, expires the Binance listenKey, sends a non-JSON frame
or duplicates the next private frame; in the middle the exchange refuses every WebSocket for
``outage_seconds`` after dropping both sockets (trading goes on).  At the end the faults stop, the driver
stops, and the stream must deliver every fill of the emulator's ledger: the script counts what was
delivered once, twice or never, fills backfilled by REST, resyncs and their durations (``resynced``
status details), reconnects and bad messages.  Exit status 1 if any fill is missing or doubled.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import statistics
import sys
import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import gridbot
from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.bybit import BybitEmulator
from gridbot.emulator.engine import EngineConfig, SymbolConfig
from gridbot.events import FillUpdate, StatusUpdate

KEY, SECRET = "soak-key", "soak-secret"
SYMBOL = "BTCUSDT"
SETTLE_TIMEOUT = 120.0


def _wire_ids(exchange: str, fills: Any) -> list[str]:
    if exchange == "binance":
        return [str(f.trade_id) for f in fills]
    from gridbot.emulator.bybit._wire import _IdBook

    return [_IdBook.exec_id(f.trade_id) for f in fills]


class Collector:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fills: list[FillUpdate] = []
        self.statuses: list[tuple[float, StatusUpdate]] = []

    def on_fill(self, fill: FillUpdate) -> None:
        with self.lock:
            self.fills.append(fill)

    def on_status(self, status: StatusUpdate) -> None:
        with self.lock:
            self.statuses.append((time.monotonic(), status))


def _drive(emulator: Any, stop: threading.Event, rng: random.Random, forced: list[str]) -> None:
    engine = emulator.engine
    last_forced = time.monotonic()
    while not stop.wait(rng.uniform(0.2, 0.45)):
        try:
            size = engine.position(SYMBOL, 0).size
            signed = size if engine.position(SYMBOL, 0).side == "Buy" else -size
            if time.monotonic() - last_forced > 45 and size > 0:
                mark = engine.prices(SYMBOL).mark
                kind = rng.choice(["liquidation", "adl"])
                engine.liquidate(SYMBOL, 0, mark, kind)
                forced.append(kind)
                last_forced = time.monotonic()
                continue
            side = "Sell" if signed > Decimal("0.02") else "Buy" if signed < Decimal("-0.02") else \
                rng.choice(["Buy", "Sell"])
            qty = Decimal(rng.randint(1, 5)) / 1000
            engine.place_order(symbol=SYMBOL, side=side, order_type="Market", qty=qty)
        except Exception as exc:  # noqa: BLE001 - a refused order (margin) is no reason to stop the soak
            print(f"driver: {exc}", file=sys.stderr)


def _faults(exchange: str, emulator: Any, stop: threading.Event, rng: random.Random, seconds: float,
            outage: float, counts: Counter[str]) -> None:
    faults = emulator.faults
    began = time.monotonic()
    outage_at = seconds / 2 - outage / 2
    outage_done = False
    kinds = ["drop_private"] * 4 + ["drop_public", "bad_frame", "duplicate"]
    if exchange == "binance":
        kinds += ["expire_listen_key"] * 2
    while not stop.wait(rng.uniform(2.0, 4.0)):
        if not outage_done and time.monotonic() - began >= outage_at:
            faults.refuse_ws(True)
            faults.drop_private()
            faults.drop_public()
            counts["outage"] += 1
            stop.wait(outage)
            faults.refuse_ws(False)
            outage_done = True
            continue
        kind = rng.choice(kinds)
        counts[kind] += 1
        if kind == "drop_private":
            faults.drop_private()
        elif kind == "drop_public":
            faults.drop_public()
        elif kind == "expire_listen_key":
            faults.expire_listen_key()
        elif kind == "bad_frame":
            faults.send_raw("private", "<html>502 Bad Gateway</html>")
        elif kind == "duplicate":
            faults.duplicate_next("private", 2)


def soak(exchange: str, seconds: float, outage: float, seed: int) -> dict[str, Any]:
    config = EngineConfig(symbols=(SymbolConfig(SYMBOL, Decimal("60000"), tick_size=Decimal("0.1"),
                                                qty_step=Decimal("0.001")),), seed=seed)
    cls = BinanceEmulator if exchange == "binance" else BybitEmulator
    emulator = cls(config, api_key=KEY, api_secret=SECRET, price_interval=0.5)
    emulator.start()
    collector = Collector()
    stream = gridbot.ExchangeStream(exchange, api_key=KEY, api_secret=SECRET,  # type: ignore[arg-type]
                                    endpoints=emulator.endpoints, on_status=collector.on_status)
    stream.subscribe(SYMBOL, on_fill=collector.on_fill)
    stream.start(timeout=30)
    rng = random.Random(seed)
    stop = threading.Event()
    forced: list[str] = []
    counts: Counter[str] = Counter()
    driver = threading.Thread(target=_drive, args=(emulator, stop, rng, forced), daemon=True)
    chaos = threading.Thread(target=_faults, args=(exchange, emulator, stop, random.Random(seed + 1), seconds,
                                                   outage, counts), daemon=True)
    driver.start()
    chaos.start()
    time.sleep(seconds)
    stop.set()
    driver.join(10)
    chaos.join(outage + 10)
    expected = _wire_ids(exchange, emulator.engine.fills(SYMBOL))
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        with collector.lock:
            got = {f.trade_id for f in collector.fills}
        if set(expected) <= got and stream.connected:
            break
        time.sleep(0.2)
    time.sleep(1.0)  # late duplicates, if any, would arrive now
    stats = stream.stats
    stream.stop()
    emulator.stop()
    with collector.lock:
        delivered = Counter(f.trade_id for f in collector.fills)
        statuses = list(collector.statuses)
        forced_delivered = sum(1 for f in collector.fills if f.exec_type != "Trade")
    parsed = [_resync_ms(s.detail) for _t, s in statuses if s.state == "resynced"]
    durations = [d for d in parsed if d is not None]
    return {
        "exchange": exchange,
        "seconds": seconds,
        "ledger_fills": len(expected),
        "delivered_once": sum(1 for i in expected if delivered[i] == 1),
        "doubled": sum(1 for i in expected if delivered[i] > 1),
        "missing": sum(1 for i in expected if delivered[i] == 0),
        "unknown_delivered": sum(1 for i in delivered if i not in set(expected)),
        "forced_closes": len(forced),
        "forced_marked_live": forced_delivered,
        "backfilled_fills": stats.backfilled_fills,
        "resyncs": stats.resyncs,
        "reconnects": stats.reconnects,
        "bad_messages": stats.bad_messages,
        "faults": dict(counts),
        "resync_ms_median": statistics.median(durations) if durations else None,
        "resync_ms_max": max(durations) if durations else None,
        "outage_to_resynced_s": _outage_recovery(statuses),
    }


def _resync_ms(detail: str) -> float | None:
    marker = " in "
    if marker not in detail or not detail.endswith(" ms"):
        return None
    try:
        return float(detail.rsplit(marker, 1)[1][:-3])
    except ValueError:
        return None


def _outage_recovery(statuses: list[tuple[float, StatusUpdate]]) -> float | None:
    """Longest reconnecting -> resynced span (the outage's)."""
    longest = None
    began = None
    for at, status in statuses:
        if status.state == "reconnecting" and began is None:
            began = at
        elif status.state in ("resynced", "connected") and began is not None:
            span = at - began
            longest = span if longest is None or span > longest else longest
            began = None
    return round(longest, 1) if longest is not None else None


def _run(args: tuple[str, float, float, int], queue: Any) -> None:
    queue.put(soak(*args))


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 210.0
    outage = float(sys.argv[2]) if len(sys.argv) > 2 else 40.0
    results: multiprocessing.Queue[dict[str, Any]] = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_run, args=((ex, seconds, outage, 11 + i), results))
             for i, ex in enumerate(("binance", "bybit"))]
    for proc in procs:
        proc.start()
    reports = [results.get(timeout=seconds + outage + SETTLE_TIMEOUT + 120) for _ in procs]
    for proc in procs:
        proc.join(30)
    failed = False
    for report in sorted(reports, key=lambda r: r["exchange"]):
        print(json.dumps(report))
        failed |= report["missing"] > 0 or report["doubled"] > 0 or report["unknown_delivered"] > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
