"""python-binance's receive path without a Task per message: same order, same end, no Tasks."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
from binance.exceptions import ReadLoopClosed
from binance.ws.constants import WSListenerState
from websockets.protocol import State

from gridbot.adapters.binance._receive import TasklessReceive

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 runs the SDK's own loop")


class FakeConnection:
    """The websockets connection the SDK reads: frames, then silence."""

    def __init__(self, frames: list[str]) -> None:
        self.state = State.OPEN
        self._frames = list(frames)

    async def recv(self) -> str:
        if self._frames:
            return self._frames.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


async def _run(count: int) -> tuple[list[Any], int, BaseException | None]:
    """Read ``count`` frames through ``recv()``, then cancel the read loop as ``close()`` does."""
    created = 0
    loop = asyncio.get_running_loop()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        nonlocal created
        created += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    sock = TasklessReceive(url="ws://127.0.0.1:1/", path="streams=a", prefix="stream?",
                           max_queue_size=2**62)
    sock.ws = FakeConnection([json.dumps({"n": i}) for i in range(count)])
    sock.ws_state = WSListenerState.STREAMING
    sock._handle_read_loop = True  # type: ignore[assignment]  # as connect() leaves it
    loop.set_task_factory(factory)
    try:
        reader = loop.create_task(sock._read_frames())
        received = [await sock.recv() for _ in range(count)]
        tasks_during_flood = created
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        received.append(sock._queue.get_nowait())  # the SDK's error dict for the cancelled loop
        ended: BaseException | None = None
        try:
            await sock.recv()
        except ReadLoopClosed as exc:
            ended = exc
        return received, tasks_during_flood, ended
    finally:
        loop.set_task_factory(None)


def test_frames_arrive_in_order_without_a_task_per_frame_and_the_end_is_the_sdks() -> None:
    received, tasks, ended = asyncio.run(_run(500))
    assert received[:500] == [{"n": i} for i in range(500)]
    assert tasks == 1  # the read loop itself; the SDK's read loop alone makes one per frame (502)
    assert received[500] == {"e": "error", "type": "CancelledError", "m": ""}
    assert isinstance(ended, ReadLoopClosed)
