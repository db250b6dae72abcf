from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fanout.redis_server import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port (fails, never skips, when none is installed)."""
    try:
        server = RedisServer(tmp_path)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)
