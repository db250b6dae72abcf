"""gridbot vs the raw SDKs, side by side in one run: throughput, latency, memory, GC pauses.

Run: ``python benchmarks/run.py`` (about 8-9 minutes on 2 cores) or ``python benchmarks/run.py --quick``
(about 2-4 minutes: smaller counts, one rep); ``--json FILE`` also writes every figure.

Setup.  A flood server runs in its own process (``_flood.py``): pre-encoded frames of both exchanges'
protocols over loopback WebSockets, REST seeds from gridbot's emulators.  Each consumer is a fresh
process (``_consumer.py``): the raw SDK with its defaults (python-binance ``ThreadedWebsocketManager``,
pybit ``WebSocket``; only the hosts point at loopback) subscribed to what gridbot subscribes, or gridbot
``ExchangeStream`` with ``dispatch="thread"`` or ``"manual"``.  Consumers alternate (raw, thread,
manual, rotating the order each rep) so machine noise spreads over all of them; figures are medians
with the range over reps.

Workloads: ``public`` (Binance markPrice combined stream / Bybit tickers deltas, 2 symbols),
``private`` (per fill: Binance ORDER_TRADE_UPDATE + ACCOUNT_UPDATE; Bybit order + execution + wallet +
position), ``fills`` (one fill per frame).  Max rate: the server writes as fast as the consumer reads;
throughput = frames / (last frame consumed - first frame sent).  Fixed rate: frames paced at 1k and 5k/s,
latency = callback time - the frame's send time (both ``time.time_ns()``, same host).  Memory: peak RSS
of a consumer over a long ``fills`` flood (200k fills: every 100k-id memory filled twice, so RSS has
reached its plateau; ``--memory-fills 1000000`` for 1M), and the longest GC pause of every run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import _flood

HERE = Path(__file__).resolve().parent
CONSUMERS = ("raw", "thread", "manual")
EXCHANGES = ("binance", "bybit")
_SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None
RAW_NAME = {"binance": "python-binance", "bybit": "pybit"}


@dataclass
class Plan:
    reps: int
    throughput_frames: int
    latency_seconds: float
    rates: tuple[int, ...]
    memory_fills: int
    timeout: float


FULL = Plan(reps=2, throughput_frames=20_000, latency_seconds=3.0, rates=(1000, 5000),
            memory_fills=200_000, timeout=240.0)
QUICK = Plan(reps=1, throughput_frames=8_000, latency_seconds=1.5, rates=(1000, 5000),
             memory_fills=100_000, timeout=60.0)


@dataclass
class Results:
    runs: list[dict[str, Any]] = field(default_factory=list)

    def select(self, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self.runs if all(r["spec"].get(k) == v for k, v in match.items())]


class Bench:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.results = Results()
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._server = ctx.Process(target=_flood.serve, args=(child,), name="flood-server", daemon=True)
        self._server.start()
        self.hosts = self._conn.recv()
        self.symbols: list[str] = self.hosts["symbols"]

    def close(self) -> None:
        self._conn.send(("stop",))
        self._server.join(10)

    def run(self, exchange: str, consumer: str, workload: str, count: int,
            rate: float = 0.0) -> dict[str, Any]:
        progress = tempfile.NamedTemporaryFile(prefix="gridbot-bench-", dir=_SHM, delete=False)
        progress.write(bytes(8))
        progress.close()
        spec = {
            "progress": progress.name, "exchange": exchange, "consumer": consumer, "workload": workload,
            "count": count, "rate": rate,
            "symbols": self.symbols, "timeout": self.plan.timeout, **self.hosts[exchange],
        }
        proc = subprocess.Popen([sys.executable, str(HERE / "_consumer.py"), json.dumps(spec)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stderr: list[str] = []
        drain = threading.Thread(target=lambda: stderr.extend(proc.stderr or ()), daemon=True)
        drain.start()
        outcome: dict[str, Any] = {"spec": spec}
        try:
            line = _readline(proc, 60.0)
            if line.strip() != "READY":
                proc.kill()
                drain.join(5)
                output = (line + "".join(stderr[-20:]))[-2000:]
                outcome["error"] = f"consumer did not start (exit {proc.wait()}): {output}"
                return outcome
            self._conn.send(("flood", exchange, workload, count, rate, self.symbols, progress.name))
            sent = self._conn.recv()
            if "error" in sent:
                outcome["error"] = sent["error"]
                return outcome
            result = json.loads(_readline(proc, self.plan.timeout + 30) or "{}")
            outcome.update(result)
            outcome["sent"] = sent
            if result.get("ok"):
                outcome["rate"] = count / ((result["t_done"] - sent["t0"]) / 1e9)
            else:
                outcome["error"] = f"timed out: consumed {result.get('seen')} of {count}"
            return outcome
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            os.unlink(progress.name)
            self.results.runs.append(outcome)
            _progress(outcome)


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline() if proc.stdout else ""),
                              daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0] if box else ""


def _progress(outcome: dict[str, Any]) -> None:
    spec = outcome["spec"]
    what = f"{spec['exchange']:<8}{spec['workload']:<8}{spec['consumer']:<7}"
    what += f"{'max' if not spec['rate'] else str(int(spec['rate'])) + '/s':<7}"
    if "error" in outcome:
        print(f"  {what} ERROR {outcome['error']}", file=sys.stderr, flush=True)
        return
    extra = f" {outcome['rate']:>9,.0f} frames/s"
    if outcome.get("latency"):
        lat = outcome["latency"]
        extra += f"  p50 {lat['p50_us']:.0f} p99 {lat['p99_us']:.0f} max {lat['max_us']:.0f} us"
    extra += f"  rss {outcome['rss_peak_kb'] / 1024:.0f} MB  gc {outcome['gc_max_ms']:.1f} ms"
    print(f"  {what}{extra}", file=sys.stderr, flush=True)


def _rotated(rep: int) -> list[str]:
    shift = rep % len(CONSUMERS)
    return list(CONSUMERS[shift:] + CONSUMERS[:shift])


# ------------------------------------------------------------------------------------------ phases


def throughput(bench: Bench) -> None:
    plan = bench.plan
    for rep in range(plan.reps):
        for exchange in EXCHANGES:
            for workload in ("public", "private"):
                for consumer in _rotated(rep):
                    bench.run(exchange, consumer, workload, plan.throughput_frames)


def latency(bench: Bench) -> None:
    plan = bench.plan
    for rep, rate in enumerate(plan.rates):
        for exchange in EXCHANGES:
            for workload in ("fills", "public"):
                for consumer in _rotated(rep):
                    bench.run(exchange, consumer, workload, int(rate * plan.latency_seconds), rate)


def memory(bench: Bench) -> None:
    for exchange in EXCHANGES:
        for consumer in CONSUMERS:
            bench.run(exchange, consumer, "fills", bench.plan.memory_fills)


# ------------------------------------------------------------------------------------------ report


def _median_range(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} [{format(min(values), fmt)}-{format(max(values), fmt)}]"


def report(res: Results, plan: Plan) -> list[str]:
    return [*_throughput_table(res, plan), *_latency_table(res, plan), *_memory_table(res, plan),
            *_problems(res)]


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _throughput_table(res: Results, plan: Plan) -> list[str]:
    lines = ["", f"## Throughput (frames/s at max rate; median [range] of {plan.reps} rep(s) of "
             f"{plan.throughput_frames:,} frames)", "",
             _row("exchange", "workload", "raw SDK (defaults)", "gridbot thread", "gridbot manual",
                  "thread/raw", "manual/raw"),
             _row(*["---"] * 7)]
    for exchange in EXCHANGES:
        for workload in ("public", "private"):
            rates = {c: [r["rate"] for r in res.select(exchange=exchange, workload=workload, consumer=c,
                                                         rate=0.0, count=plan.throughput_frames)
                         if "rate" in r] for c in CONSUMERS}
            raw = statistics.median(rates["raw"]) if rates["raw"] else None
            ratios = [f"{statistics.median(rates[c]) / raw:.2f}" if raw and rates[c] else "-"
                      for c in ("thread", "manual")]
            lines.append(_row(f"{exchange} ({RAW_NAME[exchange]})", workload,
                              *(_median_range(rates[c], ",.0f") for c in CONSUMERS), *ratios))
    return lines


def _latency_table(res: Results, plan: Plan) -> list[str]:
    lines = ["", f"## Latency (send -> callback, µs; fixed rate, {plan.latency_seconds:g} s each)", "",
             _row("exchange", "workload", "rate/s", "raw p50 / p99 / max", "thread p50 / p99 / max",
                  "manual p50 / p99 / max", "thread p50 over raw"),
             _row(*["---"] * 7)]
    for exchange in EXCHANGES:
        for workload in ("fills", "public"):
            for rate in plan.rates:
                cells, p50 = [], {}
                for c in CONSUMERS:
                    runs = res.select(exchange=exchange, workload=workload, consumer=c, rate=float(rate))
                    measured = [r for r in runs if r.get("latency")]
                    if not measured:
                        cells.append("failed" if runs else "-")
                        continue
                    lat = measured[-1]["latency"]
                    p50[c] = lat["p50_us"]
                    cells.append(f"{lat['p50_us']:.0f} / {lat['p99_us']:.0f} / {lat['max_us']:,.0f}")
                delta = f"{p50['thread'] - p50['raw']:+.0f}" if "thread" in p50 and "raw" in p50 else "-"
                lines.append(_row(exchange, workload, f"{rate:,}", *cells, delta))
    return lines


def _memory_table(res: Results, plan: Plan) -> list[str]:
    lines = ["", f"## Memory and GC ({plan.memory_fills:,} fills at max rate; longest GC pause while a flood "
             "ran: at fixed rate (1k, 5k/s) and at max rate, where a backlog of up to "
             f"{_flood.WINDOW:,} frames is in flight)",
             "", _row("exchange", "consumer", "fills/s", "peak RSS MB", "RSS growth MB", "over raw MB",
                      "GC pause ms, fixed rate", "GC pause ms, max rate"),
             _row(*["---"] * 8)]
    for exchange in EXCHANGES:
        raw_peak = None
        for c in CONSUMERS:
            runs = [r for r in res.select(exchange=exchange, consumer=c, workload="fills", rate=0.0,
                                          count=plan.memory_fills) if "rate" in r]
            pauses = [f"{_longest_pause(res, exchange, c, fixed):.1f}" for fixed in (True, False)]
            if not runs:
                lines.append(_row(exchange, c, "failed", "", "", "", *pauses))
                continue
            run = runs[-1]
            peak = run["rss_peak_kb"] / 1024
            raw_peak = peak if c == "raw" else raw_peak
            over = f"{peak - raw_peak:+.0f}" if raw_peak is not None and c != "raw" else ""
            growth = (run["rss_end_kb"] - run["rss_ready_kb"]) / 1024
            lines.append(_row(exchange, c, f"{run['rate']:,.0f}", f"{peak:.0f}", f"{growth:.0f}", over,
                              *pauses))
    return lines


def _longest_pause(res: Results, exchange: str, consumer: str, fixed_rate: bool) -> float:
    return max((r["gc_max_ms"] for r in res.select(exchange=exchange, consumer=consumer)
                if "gc_max_ms" in r and (r["spec"]["rate"] > 0) == fixed_rate), default=0.0)


def _problems(res: Results) -> list[str]:
    lost = [r for r in res.runs if r.get("counts") and r["spec"]["workload"] in ("fills", "private")
            and r["counts"]["fills"] < _expected_fills(r["spec"])]
    errors = [r for r in res.runs if "error" in r]
    lines = ["", f"runs: {len(res.runs)}, errors: {len(errors)}, gridbot runs missing fills: {len(lost)}"]
    for r in errors:
        s = r["spec"]
        lines.append(f"  error: {s['exchange']} {s['workload']} {s['consumer']} rate={s['rate']}: "
                     f"{r['error'][:300]}")
    return lines


def _expected_fills(spec: dict[str, Any]) -> int:
    if spec["workload"] == "fills":
        return int(spec["count"])
    return int(spec["count"]) // {"binance": 2, "bybit": 4}[spec["exchange"]]


def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = ", ".join(f"{p} {_version(p)}" for p in ("python-binance", "pybit", "websocket-client",
                                                          "websockets"))
    return [f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; {versions}",
            f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one rep (CI-sized)")
    parser.add_argument("--only", choices=("throughput", "latency", "memory"), action="append",
                        help="run only these phases (repeatable)")
    parser.add_argument("--reps", type=int, help="override the number of throughput reps")
    parser.add_argument("--memory-fills", type=int, help="override the fills of the memory runs (200k)")
    parser.add_argument("--frames", type=int, help="override the frames of each throughput run")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--report", type=Path, metavar="JSON",
                        help="print the tables of a run saved with --json (no new runs)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    saved = json.loads(args.report.read_text()) if args.report else None
    if saved:
        plan.__dict__.update(saved.get("plan", {}))
        plan.rates = tuple(plan.rates)
    if args.reps:
        plan.reps = args.reps
    if args.memory_fills:
        plan.memory_fills = args.memory_fills
    if args.frames:
        plan.throughput_frames = args.frames
    if saved:
        tables = report(Results(saved["runs"]), plan)
        print("\n".join([*saved["machine"], *tables, *saved.get("footer", [])]))
        return
    header = machine()
    print("\n".join(header), flush=True)
    started = time.monotonic()
    bench = Bench(plan)
    try:
        phases = args.only or ["throughput", "latency", "memory"]
        for name, phase in (("throughput", throughput), ("latency", latency), ("memory", memory)):
            if name in phases:
                print(f"{name}...", file=sys.stderr, flush=True)
                phase(bench)
    finally:
        bench.close()
    lines = report(bench.results, plan)
    footer = [f"wall time {time.monotonic() - started:.0f} s; load average at end: "
                 f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"]
    print("\n".join([*lines, *footer]))
    if args.json:
        args.json.write_text(json.dumps({"machine": header, "plan": plan.__dict__, "footer": footer,
                                         "runs": bench.results.runs}, indent=1))


if __name__ == "__main__":
    main()
