"""The Binance manager thread: one ``ThreadedWebsocketManager`` per adapter — its own thread and event
loop, an ``AsyncClient`` on our REST hosts (the listen-key keep-alive signs with it), a bounded stop.

The SDK's own ``stop()`` waits for receive timeouts (10 s) and its threads are non-daemon.
:meth:`_SocketThread.request_stop` instead asks the loop to cancel every task on it (listeners, read loops,
keep-alive) — cancellation interrupts the pending ``recv`` at once — then closes the aiohttp session and
the default executor, all within the budget.  The thread is a daemon so a stuck SDK can never keep the
process alive.  The ``BinanceSocketManager`` factory is not used: it caches sockets per kind and registers
the user socket under a ``None`` path; sockets are built by :mod:`~gridbot.adapters.binance._transport`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Final

from binance.async_client import AsyncClient
from binance.ws.streams import BinanceSocketManager, ThreadedWebsocketManager

from gridbot._credentials import Credentials, mask_attribute
from gridbot.endpoints import Endpoints

__all__ = ["Hosts"]

logger = logging.getLogger(__name__)

_SDK_QUEUE_SIZE: Final = 2**62  # "never full": the SDK kills the socket when its queue is full


@dataclass(frozen=True, slots=True)
class Hosts:
    """Where REST and the two sockets go.  ``rest_*`` None means "the SDK's own host for testnet/demo"."""

    rest_api: str | None
    rest_fapi: str | None
    ws_private: str
    ws_market: str

    @classmethod
    def choose(cls, endpoints: Endpoints | None, *, testnet: bool, demo: bool) -> Hosts:
        if endpoints is not None:
            return cls(f"{endpoints.rest}/api", f"{endpoints.rest}/fapi",
                       f"{endpoints.ws}/private/", f"{endpoints.ws}/market/")
        # The SDK's own futures stream hosts (read, never modified), chosen as the SDK chooses them.
        base = BinanceSocketManager.FSTREAM_URL.format("com")
        if testnet:
            base = BinanceSocketManager.FSTREAM_TESTNET_URL
        elif demo:
            base = BinanceSocketManager.FSTREAM_DEMO_URL
        return cls(None, None, f"{base}private/", f"{base}market/")

    def apply_to(self, client: Any) -> None:
        """Point one SDK client (sync or async) at our REST hosts, on that instance only."""
        if self.rest_api is None or self.rest_fapi is None:
            return
        for name in ("API_URL", "API_TESTNET_URL", "API_DEMO_URL"):
            setattr(client, name, self.rest_api)
        for name in ("FUTURES_URL", "FUTURES_TESTNET_URL", "FUTURES_DEMO_URL"):
            setattr(client, name, self.rest_fapi)


async def _create_async_client(credentials: Credentials, hosts: Hosts, *, testnet: bool,
                               demo: bool) -> Any:
    """The manager's AsyncClient, on our hosts, started as ``AsyncClient.create`` starts it.

    ``create`` pings before one could change its hosts, so it is replicated: ``GET /api/v3/ping``,
    then ``GET /api/v3/time`` for the signing clock offset.
    """
    client = AsyncClient(api_key=credentials.key, api_secret=credentials.secret, testnet=testnet, demo=demo)
    hosts.apply_to(client)
    mask_attribute(client, "API_SECRET")  # the clear secret stays out of its attributes
    try:
        await client.ping()
        server = await client.get_server_time()
        client.timestamp_offset = server["serverTime"] - int(time.time() * 1000)
    except BaseException:
        await client.close_connection()
        raise
    return client


class _SocketThread(ThreadedWebsocketManager):  # type: ignore[misc]
    """The ThreadedWebsocketManager of one adapter: its own loop, our REST hosts, a bounded stop.

    ``socket_listener`` (what ``run()`` runs) is replaced: it starts the AsyncClient on our hosts,
    signals ``ready``, then idles until ``request_stop`` and cancels everything on the loop.
    """

    def __init__(self, *, credentials: Credentials, hosts: Hosts, testnet: bool, demo: bool) -> None:
        # Keys go to our own AsyncClient only; the base class would keep a copy it never uses here.
        super().__init__(testnet=testnet, loop=asyncio.new_event_loop(), max_queue_size=_SDK_QUEUE_SIZE)
        self.name = "gridbot-binance-ws"
        self.daemon = True
        self._gb_credentials = credentials
        self._gb_hosts = hosts
        self._gb_testnet = testnet
        self._gb_demo = demo
        self.ready = threading.Event()
        self.startup_error: BaseException | None = None
        self._stop_requested = asyncio.Event()
        self._stop_budget = 1.0  # for an end without request_stop (a failed start)
        self._startup: asyncio.Task[Any] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop = self._loop
        return loop

    @property
    def async_client(self) -> Any:
        return self._client

    def run(self) -> None:
        try:
            self._loop.run_until_complete(self.socket_listener())
        except BaseException:
            logger.exception("binance socket thread failed")
        finally:
            self._loop.close()

    async def socket_listener(self) -> None:
        try:
            if await self._start_client():
                await self._stop_requested.wait()
        finally:
            await self._shutdown()

    async def _start_client(self) -> bool:
        try:
            if self._stop_requested.is_set():
                return False
            self._startup = asyncio.ensure_future(_create_async_client(
                self._gb_credentials, self._gb_hosts, testnet=self._gb_testnet, demo=self._gb_demo))
            self._client = await self._startup
            return True
        except asyncio.CancelledError:
            return False  # request_stop() during the start
        except Exception as exc:  # noqa: BLE001 - handed to open(), which translates it
            self.startup_error = exc
            return False
        finally:
            self.ready.set()

    def request_stop(self, budget: float) -> None:
        """Ask the loop to cancel everything and end; from any thread; returns at once."""
        self._running = False
        self._stop_budget = budget
        try:
            self._loop.call_soon_threadsafe(self._begin_stop)
        except RuntimeError:
            pass  # the loop is already closed: the thread has ended

    def _begin_stop(self) -> None:
        self._stop_requested.set()
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()

    async def _shutdown(self) -> None:
        """Cancel every task on this loop (listeners, read loops, keep-alives), close the HTTP session
        and the default executor, all within the budget; anything still stuck is abandoned."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._stop_budget
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            _done, stuck = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
            if stuck:
                logger.warning("binance: %d socket task(s) did not stop in time", len(stuck))
        self._socket_running.clear()
        await self._bounded(self._close_client(), deadline)
        await self._bounded(loop.shutdown_default_executor(), deadline)

    async def _close_client(self) -> None:
        if self._client is not None:
            await self._client.close_connection()

    @staticmethod
    async def _bounded(coro: Coroutine[Any, Any, None], deadline: float) -> None:
        try:
            await asyncio.wait_for(coro, max(0.0, deadline - asyncio.get_running_loop().time()))
        except Exception:  # shutdown goes on; the cause is logged
            logger.warning("binance: shutdown step did not finish cleanly", exc_info=True)
