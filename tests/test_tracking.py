"""RealisedPnlTracker, TakeProfitTracker and WalletState (DESIGN §4)."""

from decimal import Decimal

from gridbot.events import AccountUpdate, OrderUpdate, PositionUpdate, WalletUpdate
from gridbot.tracking import AccountState, RealisedPnlTracker, TakeProfitTracker, WalletState

D = Decimal


def pos(cum: str | None, *, idx: int = 0, symbol: str = "BTCUSDT", snap: bool = False) -> PositionUpdate:
    return PositionUpdate(
        exchange="bybit", timestamp=1, is_snapshot=snap, symbol=symbol, position_idx=idx, side="Buy",
        size=D("1"), entry_price=D("100"), mark_price=None, unrealised_pnl=D("0"),
        cum_realised_pnl=None if cum is None else D(cum),
    )


def order(oid: str, status: str, *, idx: int = 0, tp: bool = True, reduce_only: bool = False,
          order_type: str = "Market", linked: str | None = None, symbol: str = "BTCUSDT") -> OrderUpdate:
    return OrderUpdate(
        exchange="binance", timestamp=1, symbol=symbol, order_id=oid, client_order_id="", side="Sell",
        order_type=order_type, status=status, price=D("0"), qty=D("1"), filled_qty=D("0"),  # type: ignore[arg-type]
        avg_price=D("0"), trigger_price=None, reduce_only=reduce_only, position_idx=idx,
        is_take_profit=tp, linked_order_id=linked,
    )


class TestRealisedPnl:
    def test_first_value_is_the_baseline_then_deltas(self) -> None:
        t = RealisedPnlTracker()
        assert t.update(pos("10")) is None
        assert t.update(pos("12.5")) == D("2.5")
        assert t.update(pos("11")) == D("-1.5")
        assert t.total("BTCUSDT") == D("1.0")
        assert t.baseline("btcusdt") == D("11")

    def test_no_change_is_none(self) -> None:
        t = RealisedPnlTracker()
        t.update(pos("5"))
        assert t.update(pos("5")) is None
        assert t.total("BTCUSDT") == 0

    def test_gap_shows_as_one_delta_at_the_snapshot(self) -> None:
        t = RealisedPnlTracker()
        t.update(pos("1"))
        # disconnected: two closes happened; the resync snapshot carries their sum
        assert t.update(pos("4", snap=True)) == D("3")

    def test_none_never_resets_the_baseline(self) -> None:
        t = RealisedPnlTracker()
        t.update(pos("7"))
        assert t.update(pos(None, snap=True)) is None  # Binance REST has no `cr`
        assert t.update(pos("9")) == D("2")

    def test_two_slots_of_one_symbol_are_independent(self) -> None:
        t = RealisedPnlTracker()
        t.update(pos("1", idx=1))
        t.update(pos("-3", idx=2))
        assert t.update(pos("2", idx=1)) == D("1")
        assert t.update(pos("-1", idx=2)) == D("2")
        assert (t.total("BTCUSDT", 1), t.total("BTCUSDT", 2), t.grand_total()) == (D("1"), D("2"), D("3"))


class TestTakeProfit:
    def test_open_sets_and_terminal_clears(self) -> None:
        t = TakeProfitTracker()
        assert t.update(order("1", "Untriggered")) == "1"
        assert t.get("BTCUSDT") == "1"
        assert t.update(order("1", "Filled")) is None
        assert t.get("BTCUSDT") is None

    def test_terminal_of_another_order_does_not_clear(self) -> None:
        t = TakeProfitTracker()
        t.update(order("1", "New"))
        assert t.update(order("2", "Cancelled")) == "1"

    def test_predicate_reduce_only_limit_counts_plain_order_does_not(self) -> None:
        t = TakeProfitTracker()
        t.update(order("5", "New", tp=False, reduce_only=False, order_type="Limit"))
        assert t.get("BTCUSDT") is None
        t.update(order("6", "New", tp=False, reduce_only=True, order_type="Limit"))
        assert t.get("BTCUSDT") == "6"
        t.update(order("7", "New", tp=False, reduce_only=True, order_type="Market"))
        assert t.get("BTCUSDT") == "6"

    def test_custom_predicate(self) -> None:
        t = TakeProfitTracker(lambda o: o.order_id.startswith("tp-"))
        t.update(order("x", "New"))
        t.update(order("tp-1", "New", tp=False))
        assert t.get("BTCUSDT") == "tp-1"

    def test_slots_are_separate(self) -> None:
        t = TakeProfitTracker()
        t.update(order("L", "New", idx=1))
        t.update(order("S", "New", idx=2))
        assert (t.get("BTCUSDT", 1), t.get("BTCUSDT", 2), t.get("BTCUSDT", 0)) == ("L", "S", None)

    def test_algo_trigger_moves_to_linked_child(self) -> None:
        t = TakeProfitTracker()
        t.update(order("algo", "Untriggered"))
        assert t.update(order("algo", "Triggered", linked="child")) == "child"
        t.update(order("child", "New"))
        assert t.get("BTCUSDT") == "child"
        assert t.update(order("algo", "Filled", linked="child")) == "child"
        assert t.update(order("child", "Filled")) is None

    def test_child_fill_before_trigger_is_never_tracked(self) -> None:
        t = TakeProfitTracker()
        t.update(order("algo", "Untriggered"))
        t.update(order("child", "Filled"))  # arrives first: Binance does not order across types
        assert t.update(order("algo", "Triggered", linked="child")) is None
        assert t.update(order("algo", "Filled", linked="child")) is None
        assert list(t) == []

    def test_terminal_id_is_never_tracked_again(self) -> None:
        t = TakeProfitTracker()
        t.update(order("1", "Filled"))
        assert t.update(order("1", "New")) is None  # a stale push after the terminal one

    def test_several_tps_per_slot(self) -> None:
        t = TakeProfitTracker()
        t.update(order("a", "New"))
        t.update(order("b", "New"))
        assert t.get("BTCUSDT") == "b" and t.open_ids("BTCUSDT") == ("a", "b")
        t.update(order("b", "Filled"))
        assert t.get("BTCUSDT") == "a"

    def test_terminal_memory_is_bounded(self) -> None:
        t = TakeProfitTracker(remember_terminal=2)
        for oid in ("1", "2", "3"):
            t.update(order(oid, "Cancelled"))
        assert t.update(order("1", "New")) == "1"  # forgotten: the oldest left the window
        assert t.update(order("3", "New")) == "1"  # still remembered as terminal


class TestWallet:
    def test_latest_values_and_none_keeps_known(self) -> None:
        w = WalletState()
        w.update(WalletUpdate(exchange="binance", timestamp=1, coin="USDT", wallet_balance=D("100"),
                              available_balance=D("80"), equity=None, is_snapshot=True))
        w.update(WalletUpdate(exchange="binance", timestamp=2, coin="USDT", wallet_balance=D("101"),
                              available_balance=None, equity=None))
        assert (w.wallet_balance, w.available_balance, w.equity) == (D("101"), D("80"), None)

    def test_other_coins_are_kept_apart(self) -> None:
        w = WalletState()
        w.update(WalletUpdate(exchange="bybit", timestamp=5, coin="BTC", wallet_balance=D("1"),
                              available_balance=None, equity=D("1")))
        assert w.wallet_balance is None
        assert w.get("BTC") is not None and w.get("BTC").equity == D("1")  # type: ignore[union-attr]


def _account(mm_rate: str | None, available: str | None, *, ts: int = 1) -> AccountUpdate:
    return AccountUpdate(
        exchange="binance", timestamp=ts, margin_coin="USDT", wallet_balance=D("100"), unrealised_pnl=D("-5"),
        margin_balance=D("95"), initial_margin=D("10"), maintenance_margin=D("1"),
        available_balance=None if available is None else D(available),
        mm_rate=None if mm_rate is None else D(mm_rate), computed=True,
    )


class TestAccount:
    def test_empty_state_answers_none(self) -> None:
        a = AccountState()
        assert (a.latest, a.mm_rate, a.available_balance, a.margin_balance, a.computed) == (None,) * 5

    def test_latest_update_wins_and_a_none_replaces_the_last_value(self) -> None:
        a = AccountState()
        a.update(_account("0.0105", "85"))
        assert (a.mm_rate, a.available_balance, a.margin_balance, a.maintenance_margin) == (
            D("0.0105"), D("85"), D("95"), D("1"))
        assert (a.wallet_balance, a.unrealised_pnl, a.initial_margin, a.margin_coin, a.computed) == (
            D("100"), D("-5"), D("10"), "USDT", True)
        # None on the account view means "not known now": a stale rate must not survive it.
        a.update(_account(None, "80", ts=2))
        assert (a.mm_rate, a.available_balance) == (None, D("80"))
        assert a.latest is not None and a.latest.timestamp == 2
