"""The public surface: one sorted __all__, every name importable, nothing private leaking."""

import gridbot

EXPECTED = {
    "AccountState",
    "AccountUpdate",
    "AuthenticationError",
    "BookSnapshot",
    "ConnectError",
    "Endpoints",
    "Event",
    "ExchangeStream",
    "FillUpdate",
    "GridbotError",
    "Journal",
    "NormalizationError",
    "OrderUpdate",
    "PositionUpdate",
    "PublisherStats",
    "RealisedPnlTracker",
    "RedactingFilter",
    "RedisPublisher",
    "RemoteStream",
    "SocketStatus",
    "StateBook",
    "StatusUpdate",
    "StreamStats",
    "StreamStatus",
    "TakeProfitTracker",
    "TickerUpdate",
    "WalletState",
    "WalletUpdate",
}


def test_all_is_sorted_and_unique() -> None:
    assert list(gridbot.__all__) == sorted(set(gridbot.__all__))


def test_exports_match_the_design() -> None:
    assert set(gridbot.__all__) == EXPECTED
    for name in gridbot.__all__:
        assert getattr(gridbot, name) is not None


def test_error_tree_is_rooted_in_gridbot_error() -> None:
    for name in ("AuthenticationError", "ConnectError", "NormalizationError"):
        assert issubclass(getattr(gridbot, name), gridbot.GridbotError)


def test_emulator_exports() -> None:
    import gridbot.emulator as emulator

    assert list(emulator.__all__) == sorted(emulator.__all__)
    wanted = {"BinanceEmulator", "BybitEmulator", "Engine", "EngineConfig", "SymbolConfig"}
    assert wanted <= set(emulator.__all__)
    for name in emulator.__all__:
        assert getattr(emulator, name) is not None
