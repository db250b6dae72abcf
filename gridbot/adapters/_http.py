"""A requests transport that ``stop()`` can interrupt, for the SDKs' blocking REST clients.

A REST call in flight cannot be cancelled in requests: the worker would sit in ``recv`` for the
client's whole timeout (and pybit retries on top), far beyond ``stop(timeout)``.  Mounted on an SDK's
``requests.Session``, :class:`AbortableTransport` remembers the connections it opens; :meth:`abort`
shuts their sockets down (a blocked read returns at once and the SDK raises a ``ConnectionError``,
which the adapter translates) and refuses every later request, so the caller's thread ends now, and
no socket is left for the garbage collector to close.
"""

from __future__ import annotations

import logging
import socket
import threading
import weakref
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["AbortableTransport", "mount_abortable"]

logger = logging.getLogger(__name__)


class AbortableTransport(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections can all be cut at once (see the module docstring)."""

    def __init__(self) -> None:
        self._gb_lock = threading.Lock()
        self._gb_connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._gb_aborted = False
        self._gb_in_flight = 0
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": self._tracked(HTTPConnectionPool),
            "https": self._tracked(HTTPSConnectionPool),
        }

    def _tracked(self, pool: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
        """``pool`` whose connections report themselves to this transport once connected."""
        register = self._gb_register
        base: Any = pool.ConnectionCls

        class TrackedConnection(base):  # type: ignore[misc]
            def connect(self) -> None:
                super().connect()
                register(self)

        return type(f"Tracked{pool.__name__}", (pool,), {"ConnectionCls": TrackedConnection})

    def _gb_register(self, connection: Any) -> None:
        with self._gb_lock:
            self._gb_connections.add(connection)
            aborted = self._gb_aborted
        if aborted:  # connected while abort() ran: cut it too
            _shut(connection)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        with self._gb_lock:
            if self._gb_aborted:
                raise requests.exceptions.ConnectionError("request not sent: the stream is stopping")
            self._gb_in_flight += 1
        try:
            return super().send(request, *args, **kwargs)
        finally:
            with self._gb_lock:
                self._gb_in_flight -= 1
                last = self._gb_aborted and self._gb_in_flight == 0
            if last:
                self._gb_close_all()  # the request abort() cut has unwound: close what is left

    def abort(self) -> None:
        """Cut every connection (in flight or idle) and refuse later requests; from any thread."""
        with self._gb_lock:
            self._gb_aborted = True
            connections = list(self._gb_connections)
            idle = self._gb_in_flight == 0
        for connection in connections:
            _shut(connection)
        if idle:  # else the last request in flight closes them once it has unwound (send())
            self._gb_close_all()
        try:
            self.close()  # the pools' idle connections, closed now
        except Exception:
            logger.debug("closing an aborted HTTP pool failed", exc_info=True)

    def _gb_close_all(self) -> None:
        """Close every tracked connection (only when no request uses one: no fd is closed under a
        thread still reading it)."""
        with self._gb_lock:
            connections = list(self._gb_connections)
        for connection in connections:
            try:
                connection.close()
            except Exception:
                logger.debug("closing an aborted HTTP connection failed", exc_info=True)

    @property
    def aborted(self) -> bool:
        return self._gb_aborted


def _shut(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by its owner


def mount_abortable(session: object) -> AbortableTransport | None:
    """Route every request of ``session`` through a new :class:`AbortableTransport`; None when it is
    not a ``requests.Session`` (a test double)."""
    if not isinstance(session, requests.Session):
        return None
    transport = AbortableTransport()
    session.mount("http://", transport)
    session.mount("https://", transport)
    return transport
