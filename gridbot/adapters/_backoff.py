"""Reconnect backoff: doubling delays up to a cap, scaled by jitter, reset after a healthy period.

Jitter keeps many clients (or both sockets of one account) from reconnecting in lockstep after an
exchange-wide drop.  The attempt count is reset only once a connection has stayed up for
``reset_after`` seconds: a server that accepts and then drops at once must not be hammered at the
shortest delay for ever.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "BackoffPolicy", "backoff_delay"]


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """``initial * 2**attempt`` capped at ``cap``, times a uniform factor in ``[jitter_low, 1]``."""

    initial: float = 0.5
    cap: float = 30.0
    jitter_low: float = 0.5
    reset_after: float = 10.0

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.cap):
            raise ValueError(f"BackoffPolicy needs 0 < initial <= cap, got {self.initial}, {self.cap}")
        if not 0 <= self.jitter_low <= 1:
            raise ValueError(f"BackoffPolicy.jitter_low must be in [0, 1], got {self.jitter_low}")
        if self.reset_after < 0:
            raise ValueError(f"BackoffPolicy.reset_after must be >= 0, got {self.reset_after}")


def backoff_delay(attempt: int, policy: BackoffPolicy, rng: random.Random) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based), jittered."""
    ceiling = min(policy.cap, policy.initial * 2.0 ** min(max(attempt, 0), 60))
    return ceiling * rng.uniform(policy.jitter_low, 1.0)


class Backoff:
    """The attempt count of one channel (not thread-safe: its owner's lock guards it)."""

    __slots__ = ("attempts", "policy", "rng")

    def __init__(self, policy: BackoffPolicy, rng: random.Random) -> None:
        self.policy = policy
        self.rng = rng
        self.attempts = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; counts the attempt."""
        delay = backoff_delay(self.attempts, self.policy, self.rng)
        self.attempts += 1
        return delay

    def healthy(self, up_for: float) -> None:
        """The connection has been up for ``up_for`` seconds: long enough resets the count."""
        if up_for >= self.policy.reset_after:
            self.attempts = 0
