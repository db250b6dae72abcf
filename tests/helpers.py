"""Test helpers every test directory shares: the one way to wait for a condition.

Tests never sleep and hope: they poll a condition with a timeout generous enough for a loaded 2-core
machine (it only costs time when the test fails) and fail naming what they waited for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["WAIT", "wait_until"]

T = TypeVar("T")

WAIT = 20.0


def wait_until(predicate: Callable[[], T], timeout: float = WAIT, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy (returned); fail with ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.005)
