"""AbortableTransport: stop() cuts a REST call in flight at once and leaves no socket open."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from gridbot.adapters._http import AbortableTransport, mount_abortable
from tests.helpers import wait_until


@pytest.fixture
def silent_server() -> Iterator[tuple[str, threading.Event]]:
    """Accepts connections, reads the request, never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = threading.Event()
    peers: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                peer, _ = listener.accept()
            except OSError:
                return
            peers.append(peer)
            accepted.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/slow", accepted
    finally:
        listener.close()
        for peer in peers:
            peer.close()
        thread.join(5)


def client_sockets(transport: AbortableTransport) -> list[socket.socket]:
    return [c.sock for c in list(transport._gb_connections) if getattr(c, "sock", None) is not None]


def test_abort_ends_a_request_in_flight_and_closes_its_socket(
    silent_server: tuple[str, threading.Event],
) -> None:
    url, accepted = silent_server
    session = requests.Session()
    transport = mount_abortable(session)
    assert transport is not None
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            session.get(url, timeout=30)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert accepted.wait(5)  # the request is in flight: the server will never answer
    wait_until(lambda: bool(client_sockets(transport)))
    sockets = client_sockets(transport)
    began = time.monotonic()
    transport.abort()
    caller.join(5)
    assert not caller.is_alive() and time.monotonic() - began < 2
    assert len(outcome) == 1 and isinstance(outcome[0], requests.ConnectionError)
    assert all(sock.fileno() == -1 for sock in sockets)  # closed now, not left to the collector
    with pytest.raises(requests.ConnectionError, match="stopping"):
        session.get(url, timeout=30)  # refused at once after abort()
    session.close()


def test_abort_closes_idle_keep_alive_connections() -> None:
    """An answered request leaves its connection pooled; abort() closes it."""
    listener = socket.create_server(("127.0.0.1", 0))
    served = threading.Event()

    def serve() -> None:
        peer, _ = listener.accept()
        peer.recv(65536)
        peer.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}")
        served.set()
        peer.recv(1)  # until the client closes
        peer.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    session = requests.Session()
    transport = mount_abortable(session)
    assert transport is not None
    assert session.get(f"http://127.0.0.1:{listener.getsockname()[1]}/", timeout=5).json() == {}
    sockets = client_sockets(transport)
    assert len(sockets) == 1 and sockets[0].fileno() != -1  # kept alive in the pool
    transport.abort()
    assert sockets[0].fileno() == -1
    thread.join(5)
    listener.close()


def test_only_real_sessions_are_mounted() -> None:
    assert mount_abortable(object()) is None
