"""Bybit v5 linear over pybit 5.17: the adapter (private socket with position, order, execution and
wallet; public ``tickers.<SYM>``; REST seed).  It supervises one :class:`~._transport.BybitSocket` per
channel: a supervisor thread per channel sends the text pings, notices a dead socket and rebuilds it
with the whole subscription set, exponential backoff and jitter, reporting ``down`` then ``up`` so
the stream resyncs.  REST is :mod:`._rest`; errors are translated by :mod:`._errors`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Final

from websocket import WebSocketException

from gridbot._credentials import Credentials
from gridbot.adapters._base import Channel, LinkState, Sink
from gridbot.adapters.bybit._errors import AuthRejected, ConnectFailed, Stopped, SubscribeRejected, translate
from gridbot.adapters.bybit._rest import BybitRest
from gridbot.adapters.bybit._transport import BybitSocket
from gridbot.endpoints import Endpoints
from gridbot.errors import ConnectError, GridbotError
from gridbot.events import Event, FillUpdate, OrderUpdate
from gridbot.stats import Counters

__all__ = ["BybitAdapter", "BybitTimings"]

logger = logging.getLogger(__name__)

_MAINNET_WS: Final = "wss://stream.bybit.com"
_TESTNET_WS: Final = "wss://stream-testnet.bybit.com"
_DEMO_WS: Final = "wss://stream-demo.bybit.com"
_DEMO_TESTNET_WS: Final = "wss://stream-demo-testnet.bybit.com"  # pybit's DEMO_SUBDOMAIN_TESTNET
_PRIVATE_PATH: Final = "/v5/private"
_PUBLIC_PATH: Final = "/v5/public/linear"
_PRIVATE_TOPICS: Final = ("position", "order", "execution", "wallet")
_TICKER_PREFIX: Final = "tickers."


@dataclass(frozen=True, slots=True)
class BybitTimings:
    """Supervision timings (seconds).  Defaults follow Bybit's advice: a text ping every 20 s."""

    ping_interval: float = 20.0
    pong_timeout: float = 10.0
    connect_timeout: float = 10.0
    ack_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    join_grace: float = 2.0



def _backoff_delay(attempt: int, initial: float, cap: float, jitter: float) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): doubling up to ``cap``, scaled by ``jitter``."""
    return min(cap, initial * (2.0 ** min(attempt, 30))) * jitter



@dataclass(slots=True, eq=False)
class _Link:
    """One channel's current socket and what the stream was last told about it."""

    channel: Channel
    current: BybitSocket | None = None
    reported_up: bool = True
    failed: bool = False
    last_ping: float = 0.0
    thread: threading.Thread | None = None


# ---------------------------------------------------------------------------------------------- adapter


class BybitAdapter:
    """Bybit v5 linear: private socket (position, order, execution, wallet), public ``tickers.<SYM>``,
    REST seed.  See :class:`gridbot.adapters._base.Adapter` for the contract."""

    exchange = "bybit"

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        testnet: bool,
        demo: bool,
        endpoints: Endpoints | None,
        sink: Sink,
        counters: Counters,
        timings: BybitTimings | None = None,
    ) -> None:
        self._credentials = Credentials(api_key, api_secret)
        self._testnet = testnet
        self._demo = demo
        self._endpoints = endpoints
        self._sink = sink
        self._counters = counters
        self.timings = timings or BybitTimings()
        self._urls: dict[Channel, str] = _ws_urls(testnet=testnet, demo=demo, endpoints=endpoints)
        self._rest = BybitRest(self._credentials, testnet=testnet, demo=demo, endpoints=endpoints,
                               counters=counters)
        self._cond = threading.Condition(threading.RLock())
        self._stop = threading.Event()
        self._version = 0
        self._state = "idle"  # idle -> open -> closed
        self._symbols: set[str] = set()
        self._rejected_topics: set[str] = set()
        self._links: dict[Channel, _Link] = {"private": _Link("private"), "public": _Link("public")}
        self._sockets: list[BybitSocket] = []
        self._rng = random.Random()

    def __repr__(self) -> str:
        return (
            f"BybitAdapter(testnet={self._testnet}, demo={self._demo}, endpoints={self._endpoints!r}, "
            f"state={self._state!r})"
        )

    # ------------------------------------------------------------------ lifecycle

    def open(self, symbols: Collection[str], timeout: float) -> None:
        """Connect and authenticate the private socket, connect the public one, subscribe, and return
        once every auth/subscribe answer is in.  On failure everything started is stopped first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._state != "idle":
                raise GridbotError(f"BybitAdapter.open() called in state {self._state!r}")
            self._state = "opening"
            self._symbols.update(symbols)  # add_symbol() may already have added some (subscribe during start)
            self._rejected_topics.clear()
        try:
            sockets = self._open_sockets(deadline, timeout)
        except Exception as exc:
            self._shutdown(time.monotonic() + self.timings.join_grace)
            with self._cond:
                self._state = "idle"
                self._stop.clear()
            raise self._translate(exc, "Bybit: opening the streams") from exc
        with self._cond:
            closed_meanwhile = self._state == "closed"
        if closed_meanwhile:  # close() ran while the sockets were settling: they stay closed
            self._shutdown(time.monotonic() + self.timings.join_grace)
            raise ConnectError("Bybit: opening the streams: stopped by close()")
        with self._cond:
            for channel, sock in sockets.items():
                link = self._links[channel]
                link.current, link.reported_up, link.failed = sock, True, False
                link.last_ping = time.monotonic()
            self._state = "open"
        for link in self._links.values():
            link.thread = threading.Thread(
                target=self._supervise,
                args=(link,),
                name=f"gridbot-bybit-{link.channel}-supervisor",
                daemon=True,
            )
            link.thread.start()

    def close(self, timeout: float) -> None:
        """Stop supervisors and sockets and join every thread started, within ``timeout``; idempotent
        (a second call only retries joining what the first could not)."""
        deadline = time.monotonic() + timeout
        self._rest.abort()  # a seed or resync request in flight ends now
        with self._cond:
            if self._state == "idle":
                return
            self._state = "closed"
        self._shutdown(deadline)

    @property
    def connected(self) -> bool:
        with self._cond:
            if self._state != "open":
                return False
            return all(link.current is not None and link.current.gb_live() for link in self._links.values())

    def add_symbol(self, symbol: str) -> None:
        """Ask the public supervisor to subscribe ``tickers.<symbol>`` (it never blocks the caller; a dead
        socket is rebuilt with the whole symbol set instead)."""
        with self._cond:
            self._symbols.add(symbol)
            self._rejected_topics.discard(_TICKER_PREFIX + symbol)
            self._changed()

    def remove_symbol(self, symbol: str) -> None:
        with self._cond:
            self._symbols.discard(symbol)
            self._rejected_topics.discard(_TICKER_PREFIX + symbol)
            self._changed()

    # ------------------------------------------------------------------ REST

    def check_symbols(self, symbols: Sequence[str]) -> dict[str, str]:
        """Symbols Bybit does not list as trading linear perpetuals (see ``BybitRest.unlisted``)."""
        return self._rest.unlisted([symbol.upper() for symbol in symbols])

    def fetch_snapshot(self, symbols: Sequence[str], *, include_wallet: bool) -> list[Event]:
        """Positions per symbol, the wallet (optional) and the open linear USDT orders of ``symbols``."""
        return self._rest.snapshot(symbols, include_wallet=include_wallet)

    def fetch_account_config(self, symbols: Sequence[str], *, full: bool) -> None:
        """Bybit sends its account figures (the wallet topic's account fields): nothing to fetch."""
        return None

    def fetch_orders(self, orders: Sequence[OrderUpdate]) -> list[Event]:
        """Final states of orders that left the open orders while disconnected (see ``BybitRest``)."""
        return self._rest.final_orders(orders)

    def fetch_fills(self, symbol: str, since_ms: int, until_ms: int) -> list[FillUpdate]:
        """Every execution of ``symbol`` in the window, oldest first (see ``BybitRest.fills``); slot 0:
        the stream's private decoder gives each fill its order's ``position_idx``."""
        return self._rest.fills(symbol, since_ms, until_ms)

    # ------------------------------------------------------------------ opening

    def _open_sockets(self, deadline: float, timeout: float) -> dict[Channel, BybitSocket]:
        sockets: dict[Channel, BybitSocket] = {
            "private": self._build("private", deadline),
        }
        sockets["public"] = self._build("public", deadline)
        self._await_settled(list(sockets.values()), deadline, timeout)
        for sock in sockets.values():
            self._check_outcome(sock, fatal_rejections=True)
        return sockets

    def _build(self, channel: Channel, deadline: float) -> BybitSocket:
        with self._cond:
            if channel == "private":
                initial: list[list[str]] = [list(_PRIVATE_TOPICS)]
            else:
                topics = {_TICKER_PREFIX + symbol for symbol in self._symbols} - self._rejected_topics
                initial = [[topic] for topic in sorted(topics)]
        private = channel == "private"
        return BybitSocket(
            owner=self,
            channel=channel,
            url=self._urls[channel],
            initial=initial,
            deadline=deadline,
            api_key=self._credentials.key if private else None,
            api_secret=self._credentials.secret if private else None,
        )

    def _await_settled(self, sockets: list[BybitSocket], deadline: float, timeout: float) -> None:
        def done() -> bool:
            if self._stop.is_set() or any(s._gb_auth is False for s in sockets):
                return True
            return all(s._gb_closed or s.gb_settled() for s in sockets)

        with self._cond:
            finished = self._cond.wait_for(done, timeout=max(0.0, deadline - time.monotonic()))
            if self._stop.is_set():
                raise Stopped
            if finished:
                return
            waiting = [s._gb_channel for s in sockets if not s.gb_settled()]
        raise ConnectFailed(
            f"timed out after {timeout:g} s waiting for the {' and '.join(waiting)} socket(s) "
            "to confirm authentication/subscriptions"
        )

    def _check_outcome(self, sock: BybitSocket, *, fatal_rejections: bool) -> None:
        """Raise what went wrong on a settled socket; public ticker refusals are fatal only at open."""
        with self._cond:
            auth, detail = sock._gb_auth, sock._gb_auth_detail
            closed, reason = sock._gb_closed, sock._gb_close_reason
            rejections = list(sock._gb_rejections)
        if auth is False:
            raise AuthRejected(
                f"Bybit rejected the API key on the private socket ({detail or 'no reason given'})"
            )
        if rejections and (fatal_rejections or sock._gb_channel == "private"):
            text = "; ".join(f"{','.join(topics)}: {why}" for topics, why in rejections)
            raise SubscribeRejected(f"Bybit refused the {sock._gb_channel} subscription ({text})")
        if closed or not sock.gb_live():
            raise ConnectFailed(
                f"the {sock._gb_channel} socket closed before it was live ({reason or 'closed'})"
            )

    # ------------------------------------------------------------------ supervision

    def _supervise(self, link: _Link) -> None:
        """Per-channel supervisor: text pings, dead-object detection, rebuild with backoff, ticker sync."""
        while not self._stop.is_set():
            with self._cond:
                seen = self._version
            try:
                wait = self._supervise_once(link)
            except Exception:
                logger.exception("Bybit %s supervisor: unexpected error", link.channel)
                wait = min(1.0, self.timings.ping_interval)
            self._wait_for_change(seen, wait)

    def _wait_for_change(self, seen: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._version != seen or self._stop.is_set(), timeout=timeout)

    def _supervise_once(self, link: _Link) -> float:
        sock = link.current
        if sock is None:
            if link.failed:
                return 3600.0
            self._rebuild(link)
            return 0.0
        now = time.monotonic()
        with self._cond:
            reason = sock.gb_dead_reason(now, self.timings.pong_timeout)
        if reason is not None:
            self._replace(link, sock, reason)
            return 0.0
        if link.channel == "public":
            self._sync_tickers(sock)
        if now - link.last_ping >= self.timings.ping_interval:
            sock.gb_ping(now)
            link.last_ping = now
        wait = link.last_ping + self.timings.ping_interval - now
        ping_at = sock._gb_ping_at
        if ping_at is not None and sock._gb_last_rx < ping_at:
            wait = min(wait, ping_at + self.timings.pong_timeout - now + 0.01)
        return max(0.01, wait)

    def _sync_tickers(self, sock: BybitSocket) -> None:
        """Make the live public socket's subscriptions match the wanted symbols (add/remove_symbol)."""
        with self._cond:
            wanted = {_TICKER_PREFIX + symbol for symbol in self._symbols} - self._rejected_topics
            have = {topic for topic in sock.gb_topics() if topic.startswith(_TICKER_PREFIX)}
        for topic in sorted(wanted - have):
            sock.gb_subscribe([topic])
        for topic in sorted(have - wanted):
            sock.gb_unsubscribe(topic)

    def _replace(self, link: _Link, sock: BybitSocket, reason: str) -> None:
        logger.warning("Bybit %s socket lost (%s); reconnecting", link.channel, reason)
        with self._cond:
            sock._gb_forward = False
            link.current = None
            was_up, link.reported_up = link.reported_up, False
        if was_up:
            self._report(link.channel, "down", reason)
        self._dispose(link, sock)
        self._rebuild(link)

    def _rebuild(self, link: _Link) -> None:
        attempt = 0
        while not self._stop.is_set():
            delay = _backoff_delay(
                attempt, self.timings.backoff_initial, self.timings.backoff_max, self._rng.uniform(0.5, 1.0)
            )
            if self._stop.wait(delay):
                return
            sock: BybitSocket | None = None
            try:
                deadline = time.monotonic() + self.timings.connect_timeout
                sock = self._build(link.channel, deadline)
                self._await_settled([sock], deadline + self.timings.ack_timeout, self.timings.ack_timeout)
                self._check_outcome(sock, fatal_rejections=False)
            except Stopped:
                if sock is not None:
                    self._dispose(link, sock)
                return
            except AuthRejected as exc:
                # Keys revoked (or IP no longer allowed): say so once, then keep trying with backoff,
                # so the stream recovers by itself when they work again.
                if sock is not None:
                    self._dispose(link, sock)
                attempt += 1
                if not link.failed:
                    self._fail(link, f"{exc}; retrying with backoff until the keys work again")
                continue
            except SubscribeRejected as exc:
                if sock is not None:
                    self._dispose(link, sock)
                self._fail(link, str(exc))
                return
            except (ConnectFailed, WebSocketException, OSError) as exc:
                attempt += 1
                logger.warning("Bybit %s reconnect attempt %d failed: %s", link.channel, attempt, exc)
                if sock is not None:
                    self._dispose(link, sock)
                continue
            with self._cond:
                if self._stop.is_set():
                    stopped = True
                else:
                    stopped = False
                    link.current, link.reported_up, link.last_ping = sock, True, time.monotonic()
                    link.failed = False
            if stopped:
                self._dispose(link, sock)
                return
            logger.info("Bybit %s socket reconnected after %d attempt(s)", link.channel, attempt + 1)
            self._report(link.channel, "up", f"reconnected after {attempt + 1} attempt(s)")
            return

    def _fail(self, link: _Link, detail: str) -> None:
        logger.error("Bybit %s socket failed: %s", link.channel, detail)
        with self._cond:
            link.failed = True
        self._report(link.channel, "failed", detail)

    def _dispose(self, link: _Link, sock: BybitSocket) -> None:
        """Exit an old socket and join its thread briefly; a thread that lingers is joined by close()."""
        with self._cond:
            sock._gb_forward = False
        if sock.gb_stop(time.monotonic() + self.timings.join_grace, self._stop.is_set):
            self._unregister(sock)
        elif not self._stop.is_set():
            logger.warning("Bybit %s: old socket thread still running; close() will join it", link.channel)

    def _shutdown(self, deadline: float) -> None:
        """Stop everything; join supervisors then socket threads until ``deadline``."""
        with self._cond:
            self._stop.set()
            self._changed()
            sockets = list(self._sockets)
        for sock in sockets:
            sock.exit()
        for link in self._links.values():
            if link.thread is not None and link.thread is not threading.current_thread():
                link.thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            sockets = list(self._sockets)
        for sock in sockets:
            sock.exit()  # sockets registered by a supervisor after the first pass
        lingering = [sock for sock in sockets if not sock.gb_stop(deadline)]
        with self._cond:
            self._sockets = lingering
            for link in self._links.values():
                link.current = None
        alive = [
            link.channel
            for link in self._links.values()
            if link.thread is not None and link.thread.is_alive()
        ]
        if lingering or alive:
            logger.warning(
                "Bybit: %d socket thread(s) and supervisor(s) %s still running after the close budget",
                len(lingering),
                alive,
            )

    # ------------------------------------------------------------------ hooks for BybitSocket

    def _register(self, sock: BybitSocket) -> None:
        with self._cond:
            if self._stop.is_set():
                raise Stopped
            self._sockets.append(sock)

    def _unregister(self, sock: BybitSocket) -> None:
        with self._cond:
            if sock in self._sockets:
                self._sockets.remove(sock)

    def _changed(self) -> None:
        """Wake every waiter (callers hold or take the condition; cheap, never blocks for long)."""
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    def _report(self, channel: Channel, state: LinkState, detail: str) -> None:
        try:
            self._sink.link(channel, state, self._scrub(detail))
        except Exception:
            logger.exception("Bybit %s: the sink raised on a link change", channel)

    # ------------------------------------------------------------------ errors

    def _scrub(self, text: str) -> str:
        """Mask the key and secret wherever foreign text might echo them."""
        return self._credentials.redact(text)

    def _translate(self, exc: BaseException, what: str) -> GridbotError:
        """The gridbot error for ``exc`` (callers ``raise ... from exc``), by the one Bybit error map."""
        return translate(exc, what, self._credentials.redact)


def _ws_urls(*, testnet: bool, demo: bool, endpoints: Endpoints | None) -> dict[Channel, str]:
    """Socket URLs: ``endpoints.ws`` when given; else Bybit's hosts (demo: private on the demo host,
    public on the real one, which is what Bybit's demo trading documents)."""
    if endpoints is not None:
        private_host = public_host = endpoints.ws
    else:
        public_host = _TESTNET_WS if testnet else _MAINNET_WS
        if demo:
            private_host = _DEMO_TESTNET_WS if testnet else _DEMO_WS
        else:
            private_host = public_host
    return {"private": private_host + _PRIVATE_PATH, "public": public_host + _PUBLIC_PATH}
