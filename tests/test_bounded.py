"""Bounded dedupe memories: the bound, the order of forgetting, and the memory per remembered id."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace

import pytest

from gridbot._bounded import BoundedMap, BoundedSet, FinishedOrders, IdKeys
from gridbot._pipeline import Pipeline
from tests.stream.fakes import fill, order


def test_bounded_set_forgets_the_first_added_first() -> None:
    ids = BoundedSet[str](2)
    for item in ("a", "b", "a", "c"):  # re-adding "a" keeps its place in line
        ids.add(item)
    assert "a" not in ids and "b" in ids and "c" in ids and len(ids) == 2


def test_bounded_map_replaces_values_and_forgets_the_first_key_first() -> None:
    finished = BoundedMap[str, str](2)
    finished["a"] = "Filled"
    finished["b"] = "Filled"
    finished["a"] = "Cancelled"
    assert finished.get("a") == "Cancelled" and len(finished) == 2
    finished["c"] = "Filled"
    assert "a" not in finished and finished.get("a") is None and finished.get("c") == "Filled"


@pytest.mark.parametrize("cls", [BoundedSet, BoundedMap])
def test_capacity_must_be_positive(cls: type) -> None:
    with pytest.raises(ValueError, match="capacity"):
        cls(0)


def _retained_bytes_per_item(feed: object, count: int) -> float:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        feed(count)  # type: ignore[operator]
        return (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()


def test_a_remembered_fill_costs_under_200_bytes() -> None:
    pipe = Pipeline(remember=50_000)

    def feed(count: int) -> None:
        for i in range(count):
            assert pipe.accept_fill(fill(f"{100_000_000_000 + i}", symbol="".join(["BTC", "USDT"])))

    assert _retained_bytes_per_item(feed, 20_000) < 200


def test_a_finished_order_is_remembered_without_its_event() -> None:
    pipe = Pipeline(remember=50_000)
    raw = {"o": {f"field{i}": "x" * 20 for i in range(40)}}  # a wire message is kilobytes

    def feed(count: int) -> None:
        for i in range(count):
            finished = replace(order(f"{100_000_000_000 + i}", "Filled"), raw={**raw})
            assert pipe.accept(finished)
            assert not pipe.accept(finished)  # the duplicate end is still recognised

    assert _retained_bytes_per_item(feed, 20_000) < 300


def test_id_keys_never_confuse_two_ids() -> None:
    keys = IdKeys()
    ids = ["123", "0123", "0", "00", "٣", "3", "²", "9" * 19, "9" * 20, "18446744073709551616", "-1", "1e3",
           "a1b2-uuid", ""]
    made = {(symbol, ident): keys.key(symbol, ident) for symbol in ("BTCUSDT", "ETHUSDT") for ident in ids}
    assert len(set(made.values())) == len(made)  # one key per (symbol, id), exactly
    assert isinstance(made[("BTCUSDT", "123")], int) and isinstance(made[("BTCUSDT", "0123")], str)
    assert all(keys.find(s, i) == k for (s, i), k in made.items())
    assert keys.find("XRPUSDT", "123") is None  # a reader never numbers a new symbol


def test_finished_orders_are_bounded_and_read_without_writing() -> None:
    finished = FinishedOrders(2)
    finished.add("BTCUSDT", "1", "Filled")
    finished.add("BTCUSDT", "x-uuid", "Cancelled")
    assert finished.status("BTCUSDT", "1") == "Filled" and finished.has("BTCUSDT", "x-uuid")
    assert not finished.has("ETHUSDT", "1") and finished.status("ETHUSDT", "1") is None
    finished.add("ETHUSDT", "1", "Filled")
    assert not finished.has("BTCUSDT", "1") and len(finished) == 2  # the oldest forgotten first


def test_a_remembered_numeric_fill_id_costs_less_than_a_string_one() -> None:
    def cost(prefix: str) -> float:
        pipe = Pipeline(remember=50_000)

        def feed(count: int) -> None:
            for i in range(count):
                assert pipe.accept_fill(fill(f"{prefix}{100_000_000_000 + i}", symbol="BTCUSDT"))

        return _retained_bytes_per_item(feed, 20_000)

    numeric, text = cost(""), cost("x")
    assert numeric < 160 and numeric < text - 25  # an int key (~40 B) instead of a ~70-byte string
