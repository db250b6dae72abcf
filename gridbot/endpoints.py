"""Host overrides: how tests, the demo and self-hosted proxies point the real SDKs elsewhere."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Endpoints"]


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Replacement hosts; the exchange's own paths are appended unchanged.

    ``rest`` is e.g. ``http://127.0.0.1:8080`` and ``ws`` e.g. ``ws://127.0.0.1:8080``
    (no trailing slash needed).  When given, they win over ``testnet`` and ``demo``.
    """

    rest: str
    ws: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "rest", self.rest.rstrip("/"))
        object.__setattr__(self, "ws", self.ws.rstrip("/"))
