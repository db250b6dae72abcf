"""RedactingFilter on the exact line shapes the libraries under the SDKs log at DEBUG."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

import gridbot
from gridbot._log_redaction import REDACTED, redact

SIGNATURE = "135aa618a9f72875ce854180264c8550d8c23192d019c0fb825951697f75df50"
LISTEN_KEY = "EqLTbavfzpyhqLaN58aKn5bs7Kjsoz9FI3pZ04YFbB1VRJyz4ZwqcRk8YquqZWZO"
KEY = "xQ9kL2mN8pR4tV6wY0zA3bC5dE7fG9hJ1kL3mN5pQ7rS9tU1vW3xY5zA7bC9dE1f"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        # urllib3.connectionpool, a signed Binance REST call
        (f'http://127.0.0.1:1 "GET /fapi/v2/account?recvWindow=10000&timestamp=1&signature={SIGNATURE} '
         'HTTP/1.1" 200 1138', SIGNATURE),
        # websockets.client handshake and python-binance's close line
        (f"> GET /private/ws?listenKey={LISTEN_KEY} HTTP/1.1", LISTEN_KEY),
        (f"Closing Websocket ws://127.0.0.1:1/private/ws?listenKey={LISTEN_KEY}", LISTEN_KEY),
        # the older path form and combined streams
        (f"> GET /ws/{LISTEN_KEY} HTTP/1.1", LISTEN_KEY),
        (f"wss://fstream.binance.com/stream?streams={LISTEN_KEY}/btcusdt@markPrice", LISTEN_KEY),
        # a listenKey in a JSON body
        (f'Response: {{"listenKey": "{LISTEN_KEY}"}}', LISTEN_KEY),
        # header lines and pybit's log_requests dict
        (f"> X-MBX-APIKEY: {KEY}", KEY),
        (f"Request -> GET /v5/account/wallet-balance?accountType=UNIFIED. Headers: {{'X-BAPI-API-KEY': "
         f"'{KEY}', 'X-BAPI-SIGN': '{SIGNATURE}', 'X-BAPI-SIGN-TYPE': '2'}}", KEY),
        (f"Headers: {{'X-BAPI-API-KEY': '{KEY}', 'X-BAPI-SIGN': '{SIGNATURE}'}}", SIGNATURE),
        # Bybit's sign= (form) and websocket-client's trace of the socket auth frame
        (f"POST /v5/x body: a=1&sign={SIGNATURE}", SIGNATURE),
        (f"++Sent decoded: fin=1 opcode=1 data=b'{{\"op\": \"auth\", \"args\": [\"short-key\", 1700000000, "
         f"\"{SIGNATURE}\"]}}'", SIGNATURE),
        ("++Sent decoded: data=b'{\"op\": \"auth\", \"args\": [\"short-key\", 1, \"abc\"]}'", "short-key"),
    ],
)
def test_each_logged_shape_is_masked(line: str, secret: str) -> None:
    masked = redact(line)
    assert secret not in masked
    assert REDACTED in masked


@pytest.mark.parametrize(
    "line",
    [
        'http://127.0.0.1:1 "GET /fapi/v1/exchangeInfo HTTP/1.1" 200 812',
        "> GET /stream?streams=btcusdt@markPrice@1s/ethusdt@markPrice@1s HTTP/1.1",
        "order 1234567890123 filled: BTCUSDT Buy 0.001 @ 60000.1, design=signed, assignment",
        "Subscription to tickers.BTCUSDT successful.",
    ],
)
def test_ordinary_lines_are_left_alone(line: str) -> None:
    assert redact(line) == line


def test_tokens_given_are_masked_as_whole_tokens_only() -> None:
    assert redact("key k1 in k10 and k1", ["k1"]) == f"key {REDACTED} in k10 and {REDACTED}"
    assert redact("nothing", [""]) == "nothing"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    logger = logging.getLogger("tests.redaction")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(gridbot.RedactingFilter("my-api-key"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_the_filter_masks_arguments_tracebacks_and_stacks(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    logger.debug("%s%s", "GET /x?signature=", SIGNATURE)  # the signature only exists once formatted
    try:
        raise ConnectionError(f"GET /fapi/v1/order?timestamp=1&signature={SIGNATURE} failed")
    except ConnectionError:
        logger.exception("REST call failed for my-api-key")
    logger.warning("stack", stack_info=True, extra={"note": "my-api-key"})
    text = out.getvalue()
    assert SIGNATURE not in text and "my-api-key" not in text
    assert "Traceback" in text and "ConnectionError" in text and text.count(REDACTED) >= 3


def test_the_filter_never_drops_a_record_nor_shows_its_tokens(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    logger.info("plain line")
    assert "plain line" in out.getvalue()
    assert "my-api-key" not in repr(gridbot.RedactingFilter("my-api-key"))
