"""End to end: ``gridbot serve`` (its own process, real pybit) on the loopback Bybit emulator, a real
redis-server, and RemoteStream consumers - in this process and in processes of their own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import gridbot
from gridbot.emulator.bybit import BybitEmulator
from gridbot.events import FillUpdate, PositionUpdate, StatusUpdate
from tests.e2e.helpers import KEY, SECRET, SYMBOL, Recorder, engine_config, wait_until
from tests.fanout.redis_server import RedisServer

ACCOUNT = "e2e"
QTY = Decimal("0.01")
WAIT = 30.0
STREAM_KEY = f"gridbot:{{{ACCOUNT}}}:events"


class Serve:
    """``gridbot serve`` as a child process; keys in its environment only."""

    def __init__(self, emulator: BybitEmulator, redis_url: str, log: Path, *extra: str) -> None:
        self.args = [sys.executable, "-m", "gridbot", "-v", "serve", "--exchange", "bybit",
                     "--symbols", SYMBOL, "--redis", redis_url, "--account", ACCOUNT,
                     "--rest-url", emulator.endpoints.rest, "--ws-url", emulator.endpoints.ws, *extra]
        self.env = {**os.environ, "GRIDBOT_API_KEY": KEY, "GRIDBOT_API_SECRET": SECRET}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=log)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process is None:
            return 0
        self.process.send_signal(sig)
        code = self.process.wait(30)
        self.process = None
        return code

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class ConsumerProcess:
    """tests/fanout/consumer_proc.py in its own process; its events are JSON lines in a file."""

    def __init__(self, redis_url: str, out: Path, *extra: str) -> None:
        self.out = out
        args = [sys.executable, "-m", "tests.fanout.consumer_proc", redis_url, ACCOUNT,
                "--out", str(out), *extra]
        self.process = subprocess.Popen(args, cwd=Path(__file__).parents[2])

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        lines = [json.loads(line) for line in self.out.read_text().splitlines() if line.endswith("}")]
        return [r for r in lines if kind is None or r["kind"] == kind]

    def fills(self) -> list[str]:
        return [r["trade_id"] for r in self.records("fill")]

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def emulator() -> Iterator[BybitEmulator]:
    with BybitEmulator(engine_config(), api_key=KEY, api_secret=SECRET, price_interval=0) as emu:
        yield emu


@pytest.fixture
def cleanup() -> Iterator[list[Any]]:
    things: list[Any] = []
    try:
        yield things
    finally:
        for thing in reversed(things):
            thing.stop()


def buy(emulator: BybitEmulator, n: int = 1) -> None:
    for _ in range(n):
        emulator.engine.place_order(symbol=SYMBOL, side="Buy", order_type="Market", qty=QTY)


def fill_ids(rec: Recorder) -> list[str]:
    return [f.trade_id for f in rec.of(FillUpdate)]


def test_two_consumers_get_every_fill_once_across_a_redis_restart_and_a_producer_restart(
        emulator: BybitEmulator, redis_server: RedisServer, tmp_path: Path, cleanup: list[Any]) -> None:
    serve = Serve(emulator, redis_server.url, tmp_path / "serve.log", "--journal", str(tmp_path / "j.sqlite"))
    serve.start()
    cleanup.append(serve)
    recs = [Recorder(), Recorder()]
    consumers = []
    for rec in recs:
        remote = gridbot.RemoteStream(redis_server.url, ACCOUNT, on_status=rec, heartbeat_timeout=2.0)
        remote.subscribe(SYMBOL, on_fill=rec, on_position=rec)
        remote.start(timeout=WAIT)
        cleanup.append(remote)
        consumers.append(remote)
    wait_until(lambda: all(r.connected for r in consumers), WAIT, "consumers connected to a live producer")

    def every_consumer_has(count: int) -> None:
        wait_until(lambda: all(len(fill_ids(r)) >= count for r in recs), WAIT, f"{count} fills")

    buy(emulator, 3)
    every_consumer_has(3)

    # Redis restarts (persistent: append-only file); fills happen at the exchange meanwhile
    marks = [rec.mark() for rec in recs]
    redis_server.stop()
    buy(emulator, 3)
    for rec, since in zip(recs, marks, strict=True):
        rec.wait_statuses("reconnecting", since=since)
    redis_server.start()
    for rec, since in zip(recs, marks, strict=True):
        rec.wait_statuses("reconnecting", "resynced", since=since)
    every_consumer_has(6)

    # the producer restarts
    marks = [rec.mark() for rec in recs]
    assert serve.stop() == 0, serve.output()
    for rec, since in zip(recs, marks, strict=True):
        stopped = rec.wait(StatusUpdate, lambda s: s.state == "reconnecting", since=since)
        assert "stop" in stopped.detail
    buy(emulator, 2)  # while no producer runs: the journal makes the next one fetch these fills
    serve.start()
    wait_until(lambda: all(r.connected for r in consumers), WAIT, "consumers connected to the new producer")
    buy(emulator, 3)
    every_consumer_has(11)

    exchange_fills = len(emulator.engine.fills(SYMBOL))
    assert exchange_fills == 11
    for rec in recs:
        ids = fill_ids(rec)
        assert len(ids) == len(set(ids)) == exchange_fills, "every fill exactly once"
    assert fill_ids(recs[0]) == fill_ids(recs[1])
    for rec in recs:
        rec.wait(PositionUpdate, lambda p: p.size == 11 * QTY and p.side == "Buy")
    assert KEY not in serve.output() and SECRET not in serve.output()
    assert_no_secret_in_redis(redis_server)


def assert_no_secret_in_redis(server: RedisServer) -> None:
    client = server.client()
    blobs = [client.dump(key) or b"" for key in client.keys("*")]
    assert blobs, "Redis holds the account"
    for blob in blobs:
        assert KEY.encode() not in blob and SECRET.encode() not in blob


def test_a_group_of_two_splits_the_fills_and_none_is_lost_when_one_is_killed(
        emulator: BybitEmulator, redis_server: RedisServer, tmp_path: Path, cleanup: list[Any]) -> None:
    serve = Serve(emulator, redis_server.url, tmp_path / "serve.log")
    serve.start()
    cleanup.append(serve)
    # a takes part, then hangs on its 3rd fill (a stuck process) and is killed
    a = ConsumerProcess(redis_server.url, tmp_path / "a.jsonl", "--group", "g", "--consumer", "a",
                        "--claim-idle", "1", "--hang-on-fill", "3")
    b = ConsumerProcess(redis_server.url, tmp_path / "b.jsonl", "--group", "g", "--consumer", "b",
                        "--claim-idle", "1")
    cleanup += [a, b]
    wait_until(lambda: a.records("started") and b.records("started"), WAIT, "consumer processes started")
    client = redis_server.client()

    def pending_of(name: str) -> list[str]:
        """Trade ids of the entries consumer ``name`` holds unacknowledged."""
        rows = client.xpending_range(STREAM_KEY, "g", min="-", max="+", count=1000, consumername=name)
        ids = []
        for row in rows:
            for _, fields in client.xrange(STREAM_KEY, row["message_id"], row["message_id"]) or []:
                assert fields is not None
                body = json.loads(fields[b"e"])
                if body["type"] == "FillUpdate":
                    ids.append(body["f"]["trade_id"])
        return ids

    def accounted_for(count: int) -> bool:
        return len(a.fills()) + len(b.fills()) + len(pending_of("a")) >= count

    placed = 0
    while not a.records("fill") or not pending_of("a"):
        assert placed < 40, "consumer a never got its share"
        buy(emulator)
        placed += 1
        wait_until(partial(accounted_for, placed), WAIT, f"fill {placed} delivered or held")
    # a's processed fills are acknowledged; what it holds is only what it never processed
    wait_until(lambda: not set(pending_of("a")) & set(a.fills()), WAIT, "a's processed fills acknowledged")
    held = pending_of("a")
    a.signal(signal.SIGKILL)
    a.process.wait(10)
    buy(emulator, 5)
    placed += 5
    wait_until(lambda: len(set(a.fills()) | set(b.fills())) >= placed, WAIT, "every fill processed")
    assert len(emulator.engine.fills(SYMBOL)) == placed
    assert not set(a.fills()) & set(b.fills()), "split: no fill processed by both"
    assert len(b.fills()) == len(set(b.fills())), "b processed nothing twice"
    assert set(held) <= set(b.fills()), "b claimed what a held when it died"
    wait_until(lambda: client.xpending(STREAM_KEY, "g")["pending"] == 0, WAIT, "everything acknowledged")


def test_a_consumer_trimmed_past_resyncs_from_the_state(
        emulator: BybitEmulator, redis_server: RedisServer, tmp_path: Path, cleanup: list[Any]) -> None:
    serve = Serve(emulator, redis_server.url, tmp_path / "serve.log", "--maxlen", "100")
    serve.start()
    cleanup.append(serve)
    buy(emulator)
    consumer = ConsumerProcess(redis_server.url, tmp_path / "c.jsonl")
    cleanup.append(consumer)
    wait_until(lambda: consumer.records("started"), WAIT, "consumer started")
    wait_until(lambda: any(r["kind"] == "position" and Decimal(r["size"]) == QTY for r in consumer.records()),
               WAIT, "the position")
    client = redis_server.client()
    price = Decimal("60000")

    def newest() -> bytes | str:
        entries = client.xrevrange(STREAM_KEY, count=1)
        assert entries and entries[0][0] is not None
        return entries[0][0]

    def trim_past(entry_id: bytes | str) -> None:
        nonlocal price
        while client.xrange(STREAM_KEY, entry_id, entry_id):
            price += 1
            emulator.engine.set_price(SYMBOL, price)
            assert price < 64000, "the stream was never trimmed"

    consumer.signal(signal.SIGSTOP)  # a consumer that stalls (GC pause, laptop lid, SIGSTOP)
    try:
        trim_past(newest())  # the consumer read no further than the newest entry when it stopped...
        trim_past(newest())  # ...but a reply to its blocked read may hold the first batch written after
        buy(emulator)  # the latest state: 2 x QTY at the last price
    finally:
        consumer.signal(signal.SIGCONT)
    try:
        wait_until(lambda: [r for r in consumer.records("status") if r["state"] == "resynced"], WAIT,
                   "resynced")
    except AssertionError as exc:
        statuses = consumer.records("status")
        raise AssertionError(f"{exc}; the consumer's statuses: {statuses}") from None
    resynced = next(r for r in consumer.records("status") if r["state"] == "resynced")
    assert "no longer holds" in resynced["detail"] and "not delivered" in resynced["detail"]
    wait_until(lambda: [r for r in consumer.records("position") if Decimal(r["size"]) == 2 * QTY], WAIT,
               "the latest position after the resync")
