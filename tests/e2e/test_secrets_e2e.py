"""No object a running stream holds has a repr showing the secret (both exchanges, real SDKs): a walk of
``gc.get_referents`` from the stream, over instance state (modules, classes and functions' globals are
shared code, not the stream's)."""

from __future__ import annotations

import gc
import types
from collections.abc import Iterator
from typing import Any

import pytest

from gridbot._credentials import Credentials
from gridbot.emulator.binance import BinanceEmulator
from gridbot.emulator.bybit import BybitEmulator
from tests.e2e.helpers import KEY, SECRET, Recorder, engine_config, make_stream, wait_until

_SHARED = (types.ModuleType, type, types.CodeType, types.BuiltinFunctionType, types.FrameType)


def reachable(root: object, limit: int = 500_000) -> Iterator[object]:
    seen = {id(root)}
    todo = [root]
    while todo:
        obj = todo.pop()
        yield obj
        if isinstance(obj, types.FunctionType):  # its closure and defaults, not its module's globals
            nexts: list[Any] = [c.cell_contents for c in obj.__closure__ or () if _filled(c)]
            nexts += list(obj.__defaults__ or ()) + list((obj.__kwdefaults__ or {}).values())
        else:
            nexts = gc.get_referents(obj)
        for nxt in nexts:
            if id(nxt) not in seen and not isinstance(nxt, _SHARED):
                seen.add(id(nxt))
                todo.append(nxt)
        assert len(seen) < limit, "the walk left the stream's own objects"


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


@pytest.fixture(params=["binance", "bybit"])
def emulator(request: pytest.FixtureRequest) -> Iterator[Any]:
    cls: Any = BinanceEmulator if request.param == "binance" else BybitEmulator
    emu = cls(engine_config(), api_key=KEY, api_secret=SECRET, price_interval=0.05)
    emu.start()
    emu.exchange_name = request.param
    try:
        yield emu
    finally:
        emu.stop()


def test_no_repr_reachable_from_a_running_stream_shows_the_secret(emulator: Any) -> None:
    rec = Recorder()
    stream = make_stream(emulator.exchange_name, emulator, rec)
    stream.start(timeout=20)
    try:
        wait_until(lambda: rec.statuses() and len(rec.all()) > 3, what="events flowing")
        sdk_objects = 0
        leaks: list[str] = []
        for obj in reachable(stream):
            sdk_objects += type(obj).__module__.split(".")[0] in ("binance", "pybit", "websocket", "requests")
            try:
                text = repr(obj)
            except Exception:  # noqa: BLE001 - an object whose repr fails shows nothing
                continue
            if SECRET in text:
                leaks.append(f"{type(obj).__module__}.{type(obj).__qualname__}: {text[:120]}")
        assert sdk_objects > 3  # the walk did reach the SDK clients and sockets
        assert leaks == []
    finally:
        stream.stop(timeout=5)


def test_masking_replaces_whole_tokens_only() -> None:
    creds = Credentials("k", "s")
    assert creds.redact("keys and secrets: s, k") == "keys and secrets: <redacted>, <redacted>"
    assert creds.redact("GET /x?a=1&signature=abc123&b=2") == "GET /x?a=1&signature=<redacted>&b=2"
    assert repr(creds) == "<credentials hidden>" and creds.secret == "s" and creds.key == "k"
