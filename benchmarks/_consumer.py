"""One consumer in a fresh process: the raw SDK with its defaults, or gridbot (thread or manual dispatch).

Run by ``benchmarks/run.py`` as ``python _consumer.py '<json spec>'``.  It connects to the flood server,
subscribes as a grid strategy would (private account streams and the symbols' mark prices / tickers),
prints ``READY``, counts the flood, and prints one JSON line of figures:

- ``t_done``: ``time.time_ns()`` when the last frame of the flood had been seen (raw: the SDK callback
  got it; gridbot: the callback of the event that frame produced ran — for tickers, conflated ones count
  as consumed, latest wins by design);
- latency samples (fixed-rate runs only): send time stamped by the server -> callback, for fills or
  tickers; ``p50``/``p99``/``max`` in microseconds;
- RSS now and peak (``VmRSS``/``VmHWM``) at ready and at the end; the longest GC pause and collections;
- gridbot's counts (fills, positions, tickers delivered, conflated) to check nothing was lost.
"""

from __future__ import annotations

import gc
import json
import mmap
import os
import struct
import sys
import threading
import time
from array import array
from typing import Any

KEY, SECRET = "bench-key", "bench-secret"


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


class GcWatch:
    """The longest collection pause, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.max_ns = 0
        self.collections = [0, 0, 0]
        self._start = 0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter_ns()
            return
        pause = time.perf_counter_ns() - self._start
        if pause > self.max_ns:
            self.max_ns = pause
        self.collections[info["generation"]] += 1


class Probe:
    """Counts flood frames (or the events they produced), records latency, and publishes progress (the
    latest frame consumed) for the server's max-rate window."""

    def __init__(self, expected: int, record_latency: bool, progress: str) -> None:
        with open(progress, "r+b") as file:
            self._shared = mmap.mmap(file.fileno(), 8)
        self.expected = expected
        self._reported = 0
        self.count = 0
        self.done = threading.Event()
        self.t_done = 0
        self.latency = array("q") if record_latency else None

    def seen(self, bn: int | None = None) -> None:
        now = time.time_ns()
        if bn is not None and self.latency is not None:
            self.latency.append(now - bn)
        self.count += 1
        if not self.count & 63:
            struct.pack_into("<q", self._shared, 0, self.count)
        if self.count == self.expected:
            self.t_done = now
            self.done.set()

    def at(self, frame: int) -> None:
        """gridbot consumers: the event of flood frame ``frame`` was delivered."""
        if frame - self._reported >= 64:  # conflated tickers skip frames: not "every 64th"
            self._reported = frame
            struct.pack_into("<q", self._shared, 0, frame)

    def last(self) -> None:
        self.t_done = time.time_ns()
        self.done.set()


# ------------------------------------------------------------------------------------------ raw SDKs


def raw_binance(spec: dict[str, Any], probe: Probe) -> Any:
    from binance import ThreadedWebsocketManager
    from binance.async_client import AsyncClient
    from binance.ws.streams import BinanceSocketManager

    # Only the hosts change (class attributes the SDK formats per instance); every other setting is the SDK's.
    AsyncClient.API_URL = spec["rest"] + "/api"
    AsyncClient.FUTURES_URL = spec["rest"] + "/fapi"
    BinanceSocketManager.FSTREAM_URL = spec["ws"] + "/"
    latency = probe.latency is not None

    def on_private(msg: Any) -> None:
        bq = msg.get("bq")
        if bq is not None:
            probe.seen(msg.get("bn") if latency and msg.get("e") == "ORDER_TRADE_UPDATE" else None)

    def on_public(msg: Any) -> None:
        data = msg.get("data")
        if data is not None and "bq" in data:
            probe.seen(data["bn"] if latency else None)

    # python-binance's default read-loop queue (100 frames) ends the socket with BinanceWebsocketQueueOverflow
    # as soon as a flood gets ahead of the callback: the raw consumer gets the queue gridbot configures.
    twm = ThreadedWebsocketManager(api_key=KEY, api_secret=SECRET, max_queue_size=2**62)
    twm.start()
    twm.start_futures_user_socket(callback=on_private)
    streams = [f"{s.lower()}@markPrice@1s" for s in spec["symbols"]]
    twm.start_futures_multiplex_socket(callback=on_public, streams=streams)
    return twm


def raw_bybit(spec: dict[str, Any], probe: Probe) -> Any:
    from pybit import unified_trading

    unified_trading.PRIVATE_WSS = spec["ws"] + "/v5/private"
    unified_trading.PUBLIC_WSS = spec["ws"] + "/v5/public/{CHANNEL_TYPE}"
    latency = probe.latency is not None

    def on_frame(msg: Any) -> None:
        if "bq" in msg:
            probe.seen(msg["bn"] if latency and msg.get("topic") == "execution" else None)

    def on_ticker(msg: Any) -> None:
        if "bq" in msg:
            probe.seen(msg["bn"] if latency else None)

    public = unified_trading.WebSocket(channel_type="linear", testnet=False)
    private = unified_trading.WebSocket(channel_type="private", testnet=False, api_key=KEY, api_secret=SECRET)
    private.execution_stream(on_frame)
    private.order_stream(on_frame)
    private.position_stream(on_frame)
    private.wallet_stream(on_frame)
    public.ticker_stream(spec["symbols"], on_ticker)
    return public, private


# ------------------------------------------------------------------------------------------ gridbot


def through_gridbot(spec: dict[str, Any], probe: Probe) -> Any:
    import gridbot

    workload = spec["workload"]
    latency = probe.latency is not None
    last = spec["count"] - 1
    base = 10**11  # _wire's sequence numbers start here
    counts = {"fills": 0, "positions": 0, "tickers": 0, "orders": 0, "wallets": 0}

    def on_fill(fill: Any) -> None:
        counts["fills"] += 1
        probe.at(fill.raw["bq"] - base)
        if workload == "fills":
            probe.seen(fill.raw["bn"] if latency else None)

    def on_position(position: Any) -> None:
        counts["positions"] += 1
        bq = position.raw.get("bq")
        if bq is not None:
            probe.at(bq - base)
            if bq == base + last and workload == "private":
                probe.last()

    def on_ticker(ticker: Any) -> None:
        counts["tickers"] += 1
        raw = ticker.raw
        bq = raw.get("bq")
        if bq is None:
            return
        if latency:
            probe.latency.append(time.time_ns() - raw["bn"])  # type: ignore[union-attr]
        probe.at(bq - base)
        if bq == base + last:
            probe.last()

    def on_order(order: Any) -> None:
        counts["orders"] += 1

    def on_wallet(wallet: Any) -> None:
        counts["wallets"] += 1

    stream = gridbot.ExchangeStream(
        spec["exchange"], api_key=KEY, api_secret=SECRET, dispatch=spec["consumer"],
        endpoints=gridbot.Endpoints(rest=spec["rest"], ws=spec["ws"]),
    )
    for symbol in spec["symbols"]:
        stream.subscribe(symbol, on_fill=on_fill, on_position=on_position, on_ticker=on_ticker,
                         on_order=on_order, on_wallet=on_wallet)
    stream.start(timeout=30)
    stream.bench_counts = counts  # type: ignore[attr-defined]
    return stream


# ------------------------------------------------------------------------------------------ main


def _percentiles(samples: array[int] | None) -> dict[str, float] | None:
    if not samples:
        return None
    ordered = sorted(samples)
    n = len(ordered)
    return {
        "n": n,
        "p50_us": ordered[n // 2] / 1000,
        "p99_us": ordered[min(n - 1, int(n * 0.99))] / 1000,
        "max_us": ordered[-1] / 1000,
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    count = spec["count"]
    probe = Probe(count, record_latency=spec["rate"] > 0, progress=spec["progress"])
    watch = GcWatch()
    gridbot_run = spec["consumer"] in ("thread", "manual")
    if spec["consumer"] == "raw":
        handle = raw_binance(spec, probe) if spec["exchange"] == "binance" else raw_bybit(spec, probe)
    else:
        handle = through_gridbot(spec, probe)
    rss_ready = _status_kb("VmRSS:")
    watch.max_ns, watch.collections = 0, [0, 0, 0]  # pauses while the flood runs, not at start-up
    print("READY", flush=True)
    deadline = time.monotonic() + spec["timeout"]
    if spec["consumer"] == "manual":
        while not probe.done.is_set() and time.monotonic() < deadline:
            handle.dispatch_pending(timeout=0.05)
    else:
        probe.done.wait(max(0.0, deadline - time.monotonic()))
    result: dict[str, Any] = {
        "ok": probe.done.is_set(),
        "t_done": probe.t_done,
        "seen": probe.count,
        "latency": _percentiles(probe.latency),
        "rss_ready_kb": rss_ready,
        "rss_end_kb": _status_kb("VmRSS:"),
        "rss_peak_kb": _status_kb("VmHWM:"),
        "gc_max_ms": watch.max_ns / 1e6,
        "gc_collections": watch.collections,
    }
    if gridbot_run:
        if spec["consumer"] == "manual":
            handle.dispatch_pending(timeout=0.2)
        else:
            time.sleep(0.2)
        stats = handle.stats
        result["counts"] = dict(handle.bench_counts)
        result["conflated"] = stats.conflated
        result["bad_messages"] = stats.bad_messages
        result["reconnects"] = stats.reconnects
    print(json.dumps(result), flush=True)
    os._exit(0)  # the raw SDKs' threads take seconds to stop; the figures are out


if __name__ == "__main__":
    main()
