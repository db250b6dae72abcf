"""The SDK version check as users meet it: a stream built over an untested SDK release logs one
WARNING naming the installed and the tested versions, however many streams the process builds."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from gridbot import _sdk_versions
from gridbot._sdk_versions import TESTED, SdkVersionCheck, installed_version
from tests.e2e.helpers import Recorder, make_stream

SDK = {"binance": "python-binance", "bybit": "pybit"}


def test_an_untested_sdk_release_is_named_once_per_process(
    exchange: str, emulator: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = SDK[exchange]
    monkeypatch.setattr(_sdk_versions, "_PROCESS_CHECK", SdkVersionCheck(
        lambda name: "0.0.1" if name == sdk else installed_version(name)))
    caplog.set_level(logging.WARNING, logger="gridbot._sdk_versions")
    for _ in range(2):  # two streams, one process: one warning
        recorder = Recorder()
        stream = make_stream(exchange, emulator, recorder)
        try:
            stream.start(timeout=20)
            recorder.wait_statuses("connected")
        finally:
            stream.stop(timeout=10)
    warnings = [r.getMessage() for r in caplog.records if r.name == "gridbot._sdk_versions"]
    assert len(warnings) == 1, warnings
    assert f"{sdk} 0.0.1 (tested: {', '.join(TESTED[exchange][sdk])})" in warnings[0]
