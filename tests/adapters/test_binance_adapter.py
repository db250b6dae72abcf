# ruff: noqa: F811 - the fixtures are imported from tests.adapters.binance_fakes and named as parameters
"""BinanceAdapter over faked SDK seams (tests.adapters.binance_fakes): opening, links and rebuilds,
symbols, close and secrets."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import requests
from binance.exceptions import BinanceAPIException

from gridbot._credentials import Credentials
from gridbot.adapters._backoff import BackoffPolicy
from gridbot.adapters.binance import _manager as manager_mod
from gridbot.endpoints import Endpoints
from gridbot.errors import AuthenticationError, ConnectError, GridbotError
from tests.adapters.binance_fakes import (  # noqa: F401 - pytest fixtures
    FAKE_ENDPOINTS,
    KEY,
    OPEN_ORDER_ROW,
    REST,
    SECRET,
    WS,
    FakeClient,
    FakeSdk,
    FakeSocket,
    RecordingSink,
    api_error,
    fixture,
    make_adapter,
    new_threads,
    sdk,
    sink,
    threads_before,
)
from tests.helpers import wait_until

# --------------------------------------------------------------------------- open


def test_open_connects_both_sockets_on_endpoint_hosts(sdk: FakeSdk, make_adapter: Any) -> None:
    adapter = make_adapter()
    adapter.open(["btcusdt", "ETHUSDT"], timeout=5)

    assert adapter.connected
    user, market = sdk.latest("private"), sdk.latest("public")
    assert (user.url, user.listen_key) == (f"{WS}/private/", "K1")
    assert market.url == f"{WS}/market/"
    assert market.streams == ("btcusdt@markPrice@1s", "ethusdt@markPrice@1s")
    assert sdk.control_rest.calls == [("listen_key", {})]
    hosts = sdk.hosts[0]
    assert (hosts.rest_api, hosts.rest_fapi) == (f"{REST}/api", f"{REST}/fapi")
    for client in sdk.clients:
        assert client.kwargs["ping"] is False
    assert sdk.seed_rest.kwargs["requests_params"] == {"timeout": 10.0}


def test_hosts_without_endpoints_are_the_sdk_futures_hosts() -> None:
    main = manager_mod.Hosts.choose(None, testnet=False, demo=False)
    test = manager_mod.Hosts.choose(None, testnet=True, demo=False)
    assert (main.ws_private, main.ws_market) == ("wss://fstream.binance.com/private/",
                                                 "wss://fstream.binance.com/market/")
    assert test.ws_private == "wss://fstream.binancefuture.com/private/"
    assert main.rest_api is None  # the SDK's own REST hosts per testnet/demo

    client = SimpleNamespace(FUTURES_URL="https://fapi.binance.com/fapi")
    main.apply_to(client)
    assert client.FUTURES_URL == "https://fapi.binance.com/fapi"
    manager_mod.Hosts.choose(Endpoints("http://h:1/", "ws://h:1"), testnet=True, demo=True).apply_to(client)
    assert client.FUTURES_URL == client.FUTURES_TESTNET_URL == client.FUTURES_DEMO_URL == "http://h:1/fapi"
    assert client.API_URL == "http://h:1/api"


def test_auth_rejection_raises_authentication_error_and_stops_everything(
        threads_before: set[threading.Thread],
        sdk: FakeSdk, make_adapter: Any) -> None:
    sdk.answers["listen_key"] = api_error(401, -2015, "Invalid API-key, IP, or permissions for action.")
    adapter = make_adapter()

    with pytest.raises(AuthenticationError) as caught:
        adapter.open(["BTCUSDT"], timeout=5)

    assert "-2015" in str(caught.value)
    assert KEY not in str(caught.value) and SECRET not in str(caught.value)
    assert isinstance(caught.value.__cause__, BinanceAPIException)
    assert new_threads(threads_before) == []
    assert not adapter.connected


@pytest.mark.parametrize("error", [ConnectionRefusedError(111, "Connection refused"),
                                   aiohttp.ClientConnectionError("cannot connect"), TimeoutError()])
def test_unreachable_rest_raises_connect_error(threads_before: set[threading.Thread],
        sdk: FakeSdk, make_adapter: Any, error: Exception) -> None:
    sdk.ping_error = error
    with pytest.raises(ConnectError) as caught:
        make_adapter().open(["BTCUSDT"], timeout=5)
    assert caught.value.__cause__ is error
    assert new_threads(threads_before) == []


def test_unreachable_socket_host_raises_connect_error(threads_before: set[threading.Thread],
        sdk: FakeSdk, make_adapter: Any) -> None:
    sdk.connect_behaviours = [OSError(111, "Connect call failed")]
    started = time.monotonic()
    with pytest.raises(ConnectError, match="private socket"):
        make_adapter().open(["BTCUSDT"], timeout=5)
    assert time.monotonic() - started < 2  # fails at once, not at the timeout
    assert new_threads(threads_before) == []


def test_open_times_out_with_connect_error(threads_before: set[threading.Thread],
        sdk: FakeSdk, make_adapter: Any) -> None:
    sdk.connect_behaviours = ["ok", "hang"]
    started = time.monotonic()
    with pytest.raises(ConnectError, match="public socket did not connect in time"):
        make_adapter().open(["BTCUSDT"], timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert new_threads(threads_before) == []


def test_open_twice_is_refused(sdk: FakeSdk, make_adapter: Any) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    with pytest.raises(GridbotError, match="needs a new adapter"):
        adapter.open(["BTCUSDT"], timeout=5)


# --------------------------------------------------------------------------- frames and links


def test_frames_are_forwarded_in_order_on_their_channel(sdk: FakeSdk, make_adapter: Any,
                                                        sink: RecordingSink) -> None:
    make_adapter().open(["BTCUSDT"], timeout=5)
    user_frames = [{"e": "ORDER_TRADE_UPDATE", "n": n} for n in range(200)]
    market_frames = [{"stream": "btcusdt@markPrice@1s", "data": {"n": n}} for n in range(200)]

    sdk.latest("private").feed(*user_frames)
    sdk.latest("public").feed(*market_frames)
    wait_until(lambda: len(sink.frames("private")) == 200 and len(sink.frames("public")) == 200)

    assert sink.frames("private") == user_frames
    assert sink.frames("public") == market_frames
    assert sink.links("private") == sink.links("public") == []  # the initial connect is open()'s


def test_error_dict_is_a_gap_not_a_frame_and_flowing_frames_resync_it(sdk: FakeSdk, make_adapter: Any,
                                                                      sink: RecordingSink) -> None:
    make_adapter().open(["BTCUSDT"], timeout=5)
    user = sdk.latest("private")

    user.sdk_error({"e": "error", "type": "IncompleteReadError", "m": "boom"})  # raised in the read loop
    user.feed({"e": "error", "type": "SomethingElse", "m": "from the listener"})  # only the listener saw it
    wait_until(lambda: sink.links("private") == ["gap", "gap"])
    assert sink.frames("private") == []

    user.feed({"e": "ACCOUNT_UPDATE"})  # the same connection kept going: resync what the gap lost
    wait_until(lambda: sink.links("private") == ["gap", "gap", "up"])
    assert sink.frames("private") == [{"e": "ACCOUNT_UPDATE"}]


def test_a_lost_connection_is_rebuilt_not_retried_by_the_sdk(sdk: FakeSdk, make_adapter: Any,
                                                              sink: RecordingSink) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    market = sdk.latest("public")

    market.loop.call_soon_threadsafe(market.hooks.sdk_reconnecting, market.link)  # before_reconnect
    wait_until(lambda: sink.links("public") == ["down", "up"])
    assert adapter.connected
    assert len(sdk.sockets_of("public")) == 2 and market.exited.wait(2)  # a new socket, the old one gone


def test_listen_key_expired_renews_key_restarts_user_socket(sdk: FakeSdk, make_adapter: Any,
                                                            sink: RecordingSink) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    old = sdk.latest("private")
    expired = fixture("listen_key_expired.json")

    old.feed(expired)
    wait_until(lambda: sink.links("private") == ["down", "up"])

    assert sink.frames("private") == [expired]  # forwarded, before the down
    assert [item[2] for item in sink.items[:2]] == [expired, "down"]
    new = sdk.latest("private")
    assert new is not old and new.listen_key == "K2"
    assert old.exited.wait(2)
    assert sdk.control_rest.calls == [("listen_key", {}), ("listen_key", {})]
    assert adapter.connected
    new.feed({"e": "ACCOUNT_UPDATE"})
    wait_until(lambda: sink.frames("private")[-1] == {"e": "ACCOUNT_UPDATE"})


def test_sdk_giving_up_rebuilds_with_backoff(sdk: FakeSdk, make_adapter: Any, sink: RecordingSink) -> None:
    adapter = make_adapter()
    adapter.backoff = BackoffPolicy(initial=0.05, cap=0.2, jitter_low=1.0)
    adapter.open(["BTCUSDT"], timeout=5)
    dead = sdk.latest("public")
    sdk.connect_behaviours = [OSError(111, "refused"), OSError(111, "refused")]  # two failed rebuilds

    dead.sdk_gives_up()
    wait_until(lambda: sink.links("public") == ["down", "up"])

    rebuilds = [s.created for s in sdk.sockets_of("public")[1:]]
    assert len(rebuilds) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(rebuilds)]
    assert gaps[0] >= 0.05 * 0.9 and gaps[1] >= 0.1 * 0.9  # exponential backoff between failed rebuilds
    assert sdk.latest("public").streams == ("btcusdt@markPrice@1s",)
    assert dead.exited.wait(2)
    assert adapter.connected
    # the ReadLoopClosed flood was neither forwarded nor reported as gaps
    assert sink.frames("public") == []


def test_user_socket_rebuild_gets_a_fresh_listen_key(sdk: FakeSdk, make_adapter: Any,
                                                     sink: RecordingSink) -> None:
    make_adapter().open([], timeout=5)
    sdk.latest("private").sdk_gives_up()
    wait_until(lambda: sink.links("private") == ["down", "up"])
    assert [s.listen_key for s in sdk.sockets_of("private")] == ["K1", "K2"]


def test_key_rejected_during_rebuild_reports_failed_once_and_recovers_when_restored(
    sdk: FakeSdk, make_adapter: Any, sink: RecordingSink
) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    working = sdk.answers["listen_key"]
    attempts: list[int] = []

    def revoked() -> Any:
        attempts.append(1)
        raise api_error(401, -2015, "Invalid API-key, IP, or permissions for action.")

    sdk.answers["listen_key"] = revoked
    sdk.latest("private").sdk_gives_up()
    wait_until(lambda: sink.links("private") == ["down", "failed"])
    assert not adapter.connected
    wait_until(lambda: len(attempts) >= 3)  # retried with backoff
    assert sink.links("private") == ["down", "failed"]  # reported once
    sdk.answers["listen_key"] = working  # keys restored
    wait_until(lambda: sink.links("private") == ["down", "failed", "up"])
    wait_until(lambda: adapter.connected)


def test_a_raising_sink_never_reaches_the_sdk_listener(sdk: FakeSdk, make_adapter: Any, sink: RecordingSink,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    make_adapter().open(["BTCUSDT"], timeout=5)
    sink.raise_on_frame = True
    user = sdk.latest("private")

    user.feed({"e": "A"}, {"e": "B"})
    wait_until(lambda: len(sink.frames("private")) == 2)  # the listener survived the first raise

    assert [r for r in caplog.records if r.exc_info and "sink exploded" in str(r.exc_info[1])]
    sink.raise_on_frame = False
    user.feed({"e": "C"})
    wait_until(lambda: sink.frames("private")[-1] == {"e": "C"})


# --------------------------------------------------------------------------- symbols


def test_add_and_remove_symbol_restart_the_market_socket(sdk: FakeSdk, make_adapter: Any,
                                                         sink: RecordingSink) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    first = sdk.latest("public")

    adapter.add_symbol("ethusdt")
    wait_until(lambda: len(sdk.sockets_of("public")) == 2 and first.exited.is_set())
    assert sdk.latest("public").streams == ("btcusdt@markPrice@1s", "ethusdt@markPrice@1s")

    adapter.add_symbol("ETHUSDT")  # already there: nothing to do
    adapter.remove_symbol("BTCUSDT")
    wait_until(lambda: len(sdk.sockets_of("public")) == 3)
    assert sdk.latest("public").streams == ("ethusdt@markPrice@1s",)

    adapter.remove_symbol("ETHUSDT")  # no symbols: no market socket
    wait_until(lambda: sdk.latest("public").exited.is_set())
    assert len(sdk.sockets_of("public")) == 3
    assert adapter.connected
    assert sink.links("public") == []  # make-before-break: tickers never went away


def test_first_symbol_added_while_running_starts_the_market_socket(sdk: FakeSdk, make_adapter: Any) -> None:
    adapter = make_adapter()
    adapter.open([], timeout=5)
    assert sdk.sockets_of("public") == [] and adapter.connected
    adapter.add_symbol("BTCUSDT")
    wait_until(lambda: len(sdk.sockets_of("public")) == 1)
    assert sdk.latest("public").streams == ("btcusdt@markPrice@1s",)


# --------------------------------------------------------------------------- close


def test_close_is_bounded_idempotent_and_joins_every_thread(threads_before: set[threading.Thread],
        sdk: FakeSdk, make_adapter: Any) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)
    assert len(new_threads(threads_before)) == 3  # the manager's thread and a supervisor runner per channel

    started = time.monotonic()
    adapter.close(timeout=3.0)
    assert time.monotonic() - started < 1.0
    assert new_threads(threads_before) == []
    assert all(s.exited.is_set() for s in sdk.sockets)
    assert all(c.closed for c in sdk.clients)
    assert not adapter.connected

    adapter.close(timeout=3.0)  # idempotent
    make_adapter().close(timeout=1.0)  # never opened


def test_close_abandons_a_stuck_socket_within_its_budget(threads_before: set[threading.Thread],
        sdk: FakeSdk, make_adapter: Any, mocker: Any) -> None:
    adapter = make_adapter()
    adapter.open(["BTCUSDT"], timeout=5)

    async def stuck_exit(self: FakeSocket, *exc: Any) -> None:
        while True:  # an SDK exit that ignores cancellation
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue

    mocker.patch.object(FakeSocket, "__aexit__", stuck_exit)
    started = time.monotonic()
    adapter.close(timeout=0.5)
    assert time.monotonic() - started < 1.0
    wait_until(lambda: new_threads(threads_before) == [], timeout=1.0)


# --------------------------------------------------------------------------- secrets


def test_secret_never_appears_in_repr_errors_or_logs(sdk: FakeSdk, make_adapter: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = make_adapter()
    assert KEY not in repr(adapter) and SECRET not in repr(adapter)
    adapter.open(["BTCUSDT"], timeout=5)
    # requests puts the signed URL (signature) into its connection errors: it must be scrubbed
    url = f"/fapi/v3/positionRisk?timestamp=1&signature=deadbeefcafe&key={KEY}"
    try:
        raise requests.ConnectionError(f"HTTPConnectionPool: Max retries exceeded with url: {url}")
    except requests.ConnectionError as exc:
        sdk.answers["positions"] = exc
    with pytest.raises(ConnectError) as caught:
        adapter.fetch_snapshot(["BTCUSDT"], include_wallet=False)
    logging.getLogger("test").error("seed failed", exc_info=caught.value)
    sdk.latest("private").sdk_gives_up()
    wait_until(lambda: sdk.latest("private").listen_key == "K2")
    adapter.close(3.0)

    text = "\n".join(caplog.text.splitlines()) + str(caught.value) + repr(adapter)
    assert "Max retries exceeded" in caplog.text  # the traceback was logged...
    for secret in (KEY, SECRET, "deadbeefcafe"):
        assert secret not in text  # ...without any secret


def test_redaction_removes_whole_secrets_and_signatures_only() -> None:
    credentials = Credentials("k", "s")
    assert repr(credentials) == "<credentials hidden>"
    text = "Invalid API-key, IP, or permissions for action. url=/x?apiKey=k&signature=ab12&secret=s"
    assert credentials.redact(text) == (
        "Invalid API-key, IP, or permissions for action. url=/x?apiKey=<redacted>&signature=<redacted>"
        "&secret=<redacted>")
