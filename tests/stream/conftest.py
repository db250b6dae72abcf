"""Fixtures for the stream tests: the adapter factory replaced by FakeAdapter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import gridbot.stream as stream_module
from tests.stream.fakes import FakeAdapter, FakeDecoder


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeAdapter]]:
    made: list[FakeAdapter] = []

    def factory(exchange: str, **kwargs: Any) -> FakeAdapter:
        adapter = FakeAdapter(**kwargs)
        made.append(adapter)
        return adapter

    monkeypatch.setattr(stream_module, "_make_adapter", factory)
    monkeypatch.setattr(stream_module, "_make_decoder", lambda exchange, channel: FakeDecoder(channel))
    yield made


