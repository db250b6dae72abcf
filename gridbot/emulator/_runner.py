"""Run an aiohttp application on 127.0.0.1 in its own thread and event loop, for the loopback exchanges.

The emulated exchanges must live beside synchronous callers (tests, the demo, benchmarks) and beside the
SDKs' own threads and loops, so each server owns one non-daemon thread ("gridbot-emulator-<name>") with a
private event loop.  ``stop()`` is bounded: it closes tracked websockets with 1001 (going away) first,
because aiohttp's graceful shutdown otherwise waits for every long-lived websocket handler to return.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import WSCloseCode, web

__all__ = ["LOOPBACK_SERVER_KEY", "LoopbackServer", "Ticker"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_SHUTDOWN_MESSAGE = b"server shutting down"


class Ticker:
    """A periodic callback on a server's loop; first call one ``interval`` after it starts.

    Calls never overlap (an awaitable result is awaited before the next wait).  ``interval`` may be changed
    from any thread and takes effect at once (the accelerable price cadence); an exception raised by the
    callback is logged and the ticker keeps going.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float,
                 fn: Callable[[], Awaitable[None] | None]) -> None:
        _check_interval(interval)
        self._loop = loop
        self._interval = interval
        self._fn = fn
        self._cancelled = False
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self.calls = 0  # completed calls, for tests and diagnostics

    @property
    def interval(self) -> float:
        return self._interval

    @interval.setter
    def interval(self, value: float) -> None:
        _check_interval(value)
        self._interval = value
        self._threadsafe(self._wake_up)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Stop calling; safe from any thread, idempotent, a no-op once the loop is closed."""
        self._cancelled = True
        self._threadsafe(self._cancel_task)

    def _start(self) -> None:
        if not self._cancelled:
            self._task = self._loop.create_task(self._run())

    def _threadsafe(self, fn: Callable[[], None]) -> None:
        try:
            self._loop.call_soon_threadsafe(fn)
        except RuntimeError:  # loop closed: nothing left to wake or cancel
            logger.debug("ticker: loop already closed")

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _cancel_task(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _run(self) -> None:
        self._wake = asyncio.Event()
        last = self._loop.time()
        while not self._cancelled:
            delay = last + self._interval - self._loop.time()
            if delay > 0:
                await self._sleep(delay)
                continue  # re-check: cancelled, or the interval changed meanwhile
            last = self._loop.time()
            await self._call()

    async def _sleep(self, delay: float) -> None:
        assert self._wake is not None
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except asyncio.TimeoutError:
            return

    async def _call(self) -> None:
        try:
            result = self._fn()
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("ticker callback %r failed", self._fn)
        self.calls += 1


def _check_interval(interval: float) -> None:
    if not interval > 0:
        raise ValueError(f"interval must be > 0, got {interval!r}")


class LoopbackServer:
    """One aiohttp application served on ``host:port`` (0 = ephemeral) from a background thread.

    ``app_factory`` is called on the server's loop, so it may create loop-bound objects; the app also gets
    ``app[LOOPBACK_SERVER_KEY] = self`` so handlers can reach ``track_websocket``/``untrack``.
    """

    def __init__(self, app_factory: Callable[[], web.Application], *, name: str, host: str = "127.0.0.1",
                 port: int = 0, shutdown_timeout: float = 1.0) -> None:
        self._app_factory = app_factory
        self._name = name
        self._host = host
        self._requested_port = port
        self._shutdown_timeout = shutdown_timeout
        self._state_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stopped = False
        self._websockets: set[web.WebSocketResponse] = set()
        self._tickers: list[Ticker] = []

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> None:
        """Return once the server listens; on failure raise (the original error) and leave no thread."""
        with self._state_lock:
            if self._thread is not None or self._stopped:
                raise RuntimeError(f"loopback server {self._name!r} can only be started once")
            thread = threading.Thread(target=self._thread_main, name=f"gridbot-emulator-{self._name}",
                                      daemon=False)
            self._thread = thread
            thread.start()
        if not self._ready.wait(timeout):
            self._abort_start(thread, timeout)
            raise TimeoutError(f"loopback server {self._name!r} did not start within {timeout} s")
        if self._start_error is not None:
            thread.join(timeout)
            self._stopped = True
            raise self._start_error

    def _abort_start(self, thread: threading.Thread, timeout: float) -> None:
        self._stopped = True
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                logger.debug("loopback server %s: loop closed during aborted start", self._name)
        thread.join(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Close websockets (1001), clean the runner up and join the thread, all within ``timeout``."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("stop() called from the server's own loop thread would deadlock")
        with self._state_lock:
            if self._stopped or self._thread is None:
                return
            self._stopped = True
            thread, loop, tickers = self._thread, self._loop, list(self._tickers)
            self._tickers.clear()
        deadline = time.monotonic() + timeout
        for ticker in tickers:
            ticker.cancel()
        if loop is not None:
            self._shutdown_on_loop(loop, timeout)
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                logger.debug("loopback server %s: loop already closed", self._name)
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            logger.error("loopback server %s: thread did not end within %.1f s", self._name, timeout)

    def _shutdown_on_loop(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        coro = self._shutdown(0.8 * timeout)
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop is already closed: nothing left to shut down
            coro.close()
            return
        try:
            future.result(0.9 * timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            logger.warning("loopback server %s: shutdown exceeded %.1f s", self._name, 0.9 * timeout)
        except Exception:
            logger.exception("loopback server %s: shutdown failed", self._name)

    async def _shutdown(self, budget: float) -> None:
        deadline = asyncio.get_running_loop().time() + budget
        await self._close_websockets(0.5 * budget)
        if self._runner is not None:
            remaining = max(0.01, deadline - asyncio.get_running_loop().time())
            await self._cleanup_runner(remaining)

    async def _cleanup_runner(self, budget: float) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            await asyncio.wait_for(runner.cleanup(), budget)
        except asyncio.TimeoutError:
            logger.warning("loopback server %s: runner cleanup timed out", self._name)

    async def _close_websockets(self, budget: float) -> None:
        sockets = [ws for ws in self._websockets if not ws.closed]
        self._websockets.clear()
        if not sockets:
            return
        closes = [ws.close(code=WSCloseCode.GOING_AWAY, message=_SHUTDOWN_MESSAGE) for ws in sockets]
        try:
            await asyncio.wait_for(asyncio.gather(*closes, return_exceptions=True), budget)
        except asyncio.TimeoutError:  # a peer that never answers the close: its transport is dropped
            logger.warning("loopback server %s: %d websocket(s) did not close in time", self._name,
                           len(sockets))

    # --------------------------------------------------------------------------------------- thread

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # noqa: BLE001 -- handed to start(), which re-raises it
            self._start_error = exc
            self._ready.set()
            self._close_loop(loop)
            return
        self._ready.set()
        try:
            if not self._stopped:  # an aborted start may have stopped us before the loop ran
                loop.run_forever()
            if self._runner is not None:  # stop() ran out of time, or never ran its shutdown
                loop.run_until_complete(self._cleanup_runner(0.5))
        except Exception:
            logger.exception("loopback server %s: event loop failed", self._name)
        finally:
            self._close_loop(loop)

    async def _startup(self) -> None:
        app = self._app_factory()
        app[LOOPBACK_SERVER_KEY] = self
        runner = web.AppRunner(app, handle_signals=False, access_log=None,
                               shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(runner, self._host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = int(runner.addresses[0][1])

    def _close_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel what is left (bounded), then close the loop so no resource outlives the thread."""
        try:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=1.0))
            loop.run_until_complete(loop.shutdown_asyncgens())
        except Exception:
            logger.exception("loopback server %s: loop cleanup failed", self._name)
        finally:
            loop.close()

    # ------------------------------------------------------------------------------------ accessors

    @property
    def name(self) -> str:
        return self._name

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"loopback server {self._name!r} is not started")
        return self._port

    @property
    def http_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._host}:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or not self._ready.is_set() or self._start_error is not None or self._stopped:
            raise RuntimeError(f"loopback server {self._name!r} is not running")
        return self._loop

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and self._ready.is_set() and not self._stopped

    # ------------------------------------------------------------------------------ cross-thread use

    def run_coroutine(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """Schedule ``coro`` on the server loop from any thread."""
        try:
            loop = self.loop
        except RuntimeError:
            coro.close()  # never awaited: close it so Python does not warn
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` on the server loop (thread-safe); an exception is logged, not lost."""
        self.loop.call_soon_threadsafe(self._call_logged, fn, args)

    def _call_logged(self, fn: Callable[..., object], args: tuple[object, ...]) -> None:
        try:
            fn(*args)
        except Exception:
            logger.exception("loopback server %s: callback %r failed", self._name, fn)

    def every(self, interval: float, fn: Callable[[], Awaitable[None] | None]) -> Ticker:
        """Call ``fn`` every ``interval`` seconds on the loop until the ticker is cancelled or stop()."""
        with self._state_lock:
            loop = self.loop
            if self._stopped:
                raise RuntimeError(f"loopback server {self._name!r} is stopped")
            ticker = Ticker(loop, interval, fn)
            self._tickers.append(ticker)
        loop.call_soon_threadsafe(ticker._start)
        return ticker

    # ---------------------------------------------------------------------------- websocket registry

    def track_websocket(self, ws: web.WebSocketResponse) -> None:
        """Register a prepared server websocket so stop() closes it (1001); call on the server loop."""
        self._websockets.add(ws)

    def untrack(self, ws: web.WebSocketResponse) -> None:
        """Forget a websocket (its handler is ending); unknown ones are ignored."""
        self._websockets.discard(ws)

    @property
    def websocket_count(self) -> int:
        return len(self._websockets)


LOOPBACK_SERVER_KEY = web.AppKey("gridbot_loopback_server", LoopbackServer)
