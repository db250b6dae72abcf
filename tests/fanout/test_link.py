"""The pure parts of the consumer: liveness from observations, URL redaction, entry ids."""

from __future__ import annotations

import pytest

from gridbot.remote._link import Link
from gridbot.remote._redis import Keys, id_key, redact


def live_link() -> Link:
    link = Link(heartbeat_timeout=5.0, now=0.0)
    assert link.producer("connected") is None
    assert link.change() == "connected"
    assert link.heartbeat(1, 0.0) is None
    return link


def test_a_silent_producer_is_reported_once_and_its_return_too() -> None:
    link = live_link()
    assert link.heartbeat(1, 4.9) is None
    assert link.heartbeat(1, 5.1) == "no producer heartbeat for 5.1 s"
    assert link.change() == "reconnecting"
    assert link.heartbeat(1, 9.0) is None and link.change() is None  # said once
    assert link.heartbeat(2, 9.5) == "producer heartbeat is back"
    assert link.change() == "connected"


def test_redis_down_then_back_is_reconnecting_then_the_forced_status() -> None:
    link = live_link()
    link.redis_up = False
    assert link.change() == "reconnecting"
    assert link.change(force="resynced") is None  # not live: nothing to force
    link.redis_up = True
    assert link.change(force="resynced") == "resynced"


def test_producer_statuses() -> None:
    link = live_link()
    assert link.producer("reconnecting") is None and link.change() == "reconnecting"
    assert link.producer("connected") == "resynced"  # live again after an outage: it resynced
    assert link.change(force="resynced") == "resynced"
    assert link.producer("resynced") == "resynced"
    assert link.producer("stopped") is None and link.change() == "reconnecting"


@pytest.mark.parametrize("url, shown", [
    ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
    ("rediss://user:pw@host/0", "rediss://user:***@host/0"),
    ("redis://token@host", "redis://***@host"),
    ("redis://host:6379/0", "redis://host:6379/0"),
])
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_ids_compare_numerically_and_keys_share_a_cluster_slot() -> None:
    assert id_key("1700000000000-10") > id_key("1700000000000-9") > id_key("999-99")
    keys = Keys.of("main")
    assert {keys.stream, keys.state, keys.meta} == {"gridbot:{main}:events", "gridbot:{main}:state",
                                                   "gridbot:{main}:meta"}
    with pytest.raises(ValueError):
        Keys.of("a b")
