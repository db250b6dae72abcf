"""The SDK releases gridbot was tested with, and one warning when another one is installed.

The transports reach into SDK internals (python-binance's ``ReconnectingWebsocket``, pybit's
``_WebSocketManager``, websocket-client's ``WebSocketApp``, requests' ``HTTPAdapter`` pools), so a
release setup.cfg's pins admit can still change what the stream relies on and make it hang or go
silent.  Each transport calls :func:`check_sdk_versions` when it is built: on an untested release it
logs ONE warning per process and exchange naming the installed and the tested versions; it never
refuses to run (the pins decide what may be installed).

``TESTED`` must agree with ``.ci/tested-versions.txt``, the exact releases CI's first run installs
(tests/test_sdk_versions.py checks it).
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "TESTED",
    "Mismatch",
    "SdkVersionCheck",
    "check_sdk_versions",
    "installed_version",
    "is_tested",
    "mismatches",
]

logger = logging.getLogger(__name__)

#: Per exchange, the distributions its transport depends on (the SDK, the websocket library the SDK
#: uses, requests/urllib3 whose pools gridbot/adapters/_http.py extends) and the releases tested.  A
#: tested version matches every installed version it is a prefix of, component by component: "2.8"
#: accepts 2.8.0 and 2.8.1, "1.0.37" only 1.0.37 (and its post releases).  The SDKs are pinned to the
#: exact release; the libraries under them to the minor series, whose patch releases do not change the
#: internals used.
TESTED: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "binance": {
        "python-binance": ("1.0.37",),
        "websockets": ("17.4",),
        "requests": ("2.34",),
        "urllib3": ("2.8",),
    },
    "bybit": {
        "pybit": ("5.17.0",),
        "websocket-client": ("1.9",),
        "requests": ("2.34",),
        "urllib3": ("2.8",),
    },
}

_RELEASE = re.compile(r"\d+(?:\.\d+)*")


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One distribution whose installed release (None: not installed) is not among those tested."""

    distribution: str
    installed: str | None
    tested: tuple[str, ...]

    def describe(self) -> str:
        installed = self.installed if self.installed is not None else "not installed"
        return f"{self.distribution} {installed} (tested: {', '.join(self.tested)})"


def installed_version(distribution: str) -> str | None:
    """The installed release of ``distribution`` from its metadata; None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def is_tested(installed: str, tested: str) -> bool:
    """Whether release ``installed`` is covered by ``tested`` (a prefix of its release components)."""
    have, want = _release(installed), _release(tested)
    return have is not None and want is not None and have[: len(want)] == want


def _release(version: str) -> tuple[int, ...] | None:
    match = _RELEASE.match(version.strip())
    return tuple(int(part) for part in match.group().split(".")) if match else None


def mismatches(
    exchange: str, version_of: Callable[[str], str | None] = installed_version
) -> tuple[Mismatch, ...]:
    """Every distribution ``exchange``'s transport depends on whose installed release is untested."""
    try:
        tested = TESTED[exchange]
    except KeyError:
        raise ValueError(f"unknown exchange {exchange!r}; expected one of {sorted(TESTED)}") from None
    found = []
    for distribution, versions in tested.items():
        installed = version_of(distribution)
        if installed is None or not any(is_tested(installed, version) for version in versions):
            found.append(Mismatch(distribution, installed, versions))
    return tuple(found)


class SdkVersionCheck:
    """Warns once per exchange (for the life of this object) when an untested release is installed.

    Thread-safe: transports of several streams may be built at once; only one of them logs.
    """

    def __init__(self, version_of: Callable[[str], str | None] = installed_version) -> None:
        self._version_of = version_of
        self._lock = threading.Lock()
        self._checked: dict[str, tuple[Mismatch, ...]] = {}

    def __call__(self, exchange: str) -> tuple[Mismatch, ...]:
        """The untested releases for ``exchange`` (empty when all are tested); logs the warning on the
        first call per exchange only."""
        with self._lock:
            if exchange in self._checked:
                return self._checked[exchange]
            found = mismatches(exchange, self._version_of)
            self._checked[exchange] = found
        if found:
            logger.warning(
                "gridbot's %s transport has not been tested with %s; it relies on SDK internals that "
                "another release may change (the stream could hang or go silent): install the tested "
                "releases or watch the stream closely",
                exchange.capitalize(),
                "; ".join(mismatch.describe() for mismatch in found),
            )
        return found


_PROCESS_CHECK = SdkVersionCheck()


def check_sdk_versions(exchange: str) -> tuple[Mismatch, ...]:
    """The process-wide check each transport calls when it is built (see the module docstring)."""
    return _PROCESS_CHECK(exchange)
