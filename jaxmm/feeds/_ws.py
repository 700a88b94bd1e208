"""WebSocket market data: the JSON message format, the :class:`WebSocketFeed` client and the
:func:`serve_feed` publisher (``websockets`` asyncio API, host side).

One JSON object per text (or UTF-8 binary) frame; ``ts`` is the exchange timestamp in integer
nanoseconds since the epoch; prices and strikes in currency, expiries in years ACT/365F, vols
annualised fractions. Extra keys are ignored. The full specification is in docs/feeds.md::

    {"type": "price", "underlying": "BTC", "price": 100.5, "ts": 1700000000000000000}
    {"type": "trade", "symbol": "BTC-0030D-100-C", "price": 4.2, "quantity": 3,
     "aggressor": "buy", "ts": 1700000000000000000}
    {"type": "surface", "underlying": "BTC", "expiries": [0.1, 0.25], "strikes": [90, 110],
     "vols": [[0.62, 0.55], [0.6, 0.56]], "forward": 100.2, "ts": 1700000000000000000}
    {"type": "heartbeat", "ts": 1700000000000000000}

Client to server, optional, right after connecting::

    {"type": "subscribe", "underlyings": ["BTC", "SPX"]}

A server closing the connection with code 1000 (normal closure) ends the feed; any other
closure, a socket error or ``heartbeat_timeout`` seconds without any message is a lost
connection (a :data:`~jaxmm.feeds.CONNECTION_ERRORS` exception, so a
:class:`~jaxmm.feeds.ReconnectingFeed` reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from ._protocol import FeedEvent, MarketDataFeed, SurfaceUpdate, TradePrint, UnderlyingPrice, merge

__all__ = [
    "MalformedMessage",
    "HeartbeatTimeout",
    "format_message",
    "heartbeat_message",
    "parse_message",
    "WebSocketFeed",
    "FeedServer",
    "serve_feed",
]

logger = logging.getLogger("jaxmm.feeds")

_KINDS = ("price", "trade", "surface")


class MalformedMessage(ValueError):
    """A message that is not valid JSON of the documented format (the text says why)."""


class HeartbeatTimeout(ConnectionError):
    """No message (heartbeat or data) arrived within ``heartbeat_timeout`` seconds."""


# ------------------------------------------------------------------------------ the format
def format_message(event: FeedEvent) -> str:
    """The JSON text of ``event`` (its ``exchange_ts_ns`` as ``ts``; ``local_ts_ns`` not sent).

    Floats are written with ``repr`` precision, so :func:`parse_message` gives them back
    bit for bit.

    Example:
        >>> format_message(UnderlyingPrice("BTC", 100.5, 7, 9))
        '{"type": "price", "underlying": "BTC", "price": 100.5, "ts": 7}'
    """
    if isinstance(event, UnderlyingPrice):
        msg: dict[str, Any] = {
            "type": "price",
            "underlying": event.underlying,
            "price": event.price,
        }
    elif isinstance(event, TradePrint):
        msg = {
            "type": "trade",
            "symbol": event.symbol,
            "price": event.price,
            "quantity": event.quantity,
            "aggressor": event.aggressor,
        }
    elif isinstance(event, SurfaceUpdate):
        msg = {
            "type": "surface",
            "underlying": event.underlying,
            "expiries": list(event.expiries),
            "strikes": list(event.strikes),
            "vols": [list(row) for row in event.vols],
            "forward": event.forward,
        }
    else:
        raise ValueError(f"event: must be a feed event, got {type(event).__name__}")
    msg["ts"] = event.exchange_ts_ns
    return json.dumps(msg, allow_nan=False)


def heartbeat_message(ts_ns: int) -> str:
    """The JSON text of a heartbeat stamped ``ts_ns``.

    Example:
        >>> heartbeat_message(5)
        '{"type": "heartbeat", "ts": 5}'
    """
    return json.dumps({"type": "heartbeat", "ts": int(ts_ns)})


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-finite number {name}")


def _field(msg: Mapping[str, Any], kind: str, key: str) -> Any:
    if key not in msg:
        raise MalformedMessage(f"{kind}: missing field {key!r}")
    return msg[key]


def parse_message(text: str | bytes, local_ts_ns: int) -> FeedEvent | None:
    """The event of one message, stamped ``local_ts_ns``; ``None`` for a heartbeat.

    Raises:
        MalformedMessage: not JSON, not an object, unknown ``type``, a missing field, or a
            field the event's constructor rejects (the message names it).

    Example:
        >>> parse_message('{"type": "price", "underlying": "BTC", "price": 100.5, "ts": 7}', 9)
        UnderlyingPrice(underlying='BTC', price=100.5, exchange_ts_ns=7, local_ts_ns=9)
        >>> parse_message('{"type": "price", "underlying": "BTC", "price": -1, "ts": 7}', 9)
        Traceback (most recent call last):
        ...
        jaxmm.feeds._ws.MalformedMessage: price: price: must be > 0, got -1.0
    """
    if isinstance(text, bytes | bytearray | memoryview):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMessage(f"message: binary frame is not UTF-8 ({exc})") from None
    try:
        msg = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise MalformedMessage(f"message: not valid JSON ({exc})") from None
    if not isinstance(msg, dict):
        raise MalformedMessage(f"message: must be a JSON object, got {type(msg).__name__}")
    kind = msg.get("type")
    try:
        if kind == "heartbeat":
            return None
        ts = _field(msg, str(kind), "ts")
        if isinstance(ts, float):
            raise ValueError(f"ts: must be an integer (nanoseconds), got {ts!r}")
        if kind == "price":
            return UnderlyingPrice(
                _field(msg, kind, "underlying"), _field(msg, kind, "price"), ts, local_ts_ns
            )
        if kind == "trade":
            return TradePrint(
                _field(msg, kind, "symbol"),
                _field(msg, kind, "price"),
                _field(msg, kind, "quantity"),
                _field(msg, kind, "aggressor"),
                ts,
                local_ts_ns,
            )
        if kind == "surface":
            return SurfaceUpdate(
                _field(msg, kind, "underlying"),
                _field(msg, kind, "expiries"),
                _field(msg, kind, "strikes"),
                _field(msg, kind, "vols"),
                _field(msg, kind, "forward"),
                ts,
                local_ts_ns,
            )
    except MalformedMessage:
        raise
    except ValueError as exc:
        raise MalformedMessage(f"{kind}: {exc}") from None
    raise MalformedMessage(
        f"type: must be one of 'price', 'trade', 'surface', 'heartbeat', got {kind!r}"
    )


# ------------------------------------------------------------------------------ the client
_END = object()


class _Channel:
    """Events of one kind received on one connection, waiting for their reader."""

    __slots__ = ("buf", "end", "event")

    def __init__(self) -> None:
        self.buf: deque[FeedEvent] = deque()
        self.end: object = None  # None: open; _END: ended; an exception: failed
        self.event = asyncio.Event()

    def finish(self, end: object) -> None:
        if self.end is None:
            self.end = end
        self.event.set()


class WebSocketFeed:
    """:class:`~jaxmm.feeds.MarketDataFeed` reading the JSON format of this module's docstring.

    One connection, one reader task: every message is stamped ``local_ts_ns = clock()`` on
    receipt, parsed and queued for its stream (prices, trades, surfaces); the streams deliver
    the queued events in arrival order and then, when the connection is gone, end (server
    closed with code 1000) or raise the connection error (any other loss, including
    :class:`HeartbeatTimeout`). A malformed message is counted (``malformed``), described
    (``last_malformed``) and logged as a warning on the ``"jaxmm.feeds"`` logger, and the feed
    goes on; with ``strict=True`` the streams raise :class:`MalformedMessage` instead (and the
    connection is closed). A stream's queue holds at most ``max_buffer`` events: the oldest is
    dropped beyond that (counted in ``dropped``; logged once), so a stream nobody reads does not
    grow without bound. Each stream is meant for one reader. The connection is opened by
    :meth:`connect` (or lazily by the first read); one feed object is one connection; wrap a
    factory in :class:`~jaxmm.feeds.ReconnectingFeed` to survive disconnects.

    Args:
        url: ``ws://`` or ``wss://`` address.
        subscribe: underlyings to subscribe to (sent as the subscribe message), or ``None``.
        heartbeat_timeout: seconds without any message that count as a lost connection
            (> 0), or ``None`` (no timeout).
        strict: raise :class:`MalformedMessage` on a bad message instead of counting it.
        max_buffer: queue length per stream (>= 1).
        clock: ``local_ts_ns`` source (ns since the epoch).
        open_timeout: seconds allowed for the opening handshake (> 0).
        connect_kwargs: extra keyword arguments of ``websockets.asyncio.client.connect``.

    Attributes:
        received: messages received (all, heartbeats and malformed ones included).
        heartbeats: heartbeat messages received.
        malformed: malformed messages received.
        last_malformed: why the last malformed message was rejected (``""`` before any).
        dropped: events dropped from a full stream queue.
        error: the exception that ended the connection (``None`` while open or after code 1000).

    Example:
        >>> feed = WebSocketFeed("ws://127.0.0.1:8765", subscribe=["BTC"], heartbeat_timeout=5)
        >>> feed.malformed, feed.connected
        (0, False)
        >>> WebSocketFeed("http://x")
        Traceback (most recent call last):
        ...
        ValueError: url: must start with ws:// or wss://, got 'http://x'
    """

    def __init__(
        self,
        url: str,
        *,
        subscribe: Sequence[str] | None = None,
        heartbeat_timeout: float | None = None,
        strict: bool = False,
        max_buffer: int = 10_000,
        clock: Callable[[], int] = time.time_ns,
        open_timeout: float = 10.0,
        connect_kwargs: Mapping[str, Any] | None = None,
    ):
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ValueError(f"url: must start with ws:// or wss://, got {url!r}")
        subs: tuple[str, ...] | None = None
        if subscribe is not None:
            if isinstance(subscribe, str):
                raise ValueError(f"subscribe: must be a list of symbols, got {subscribe!r}")
            subs = tuple(subscribe)
            for s in subs:
                if not isinstance(s, str) or not s:
                    raise ValueError(f"subscribe: symbols must be non-empty strings, got {s!r}")
        if heartbeat_timeout is not None:
            heartbeat_timeout = float(heartbeat_timeout)
            if not (math.isfinite(heartbeat_timeout) and heartbeat_timeout > 0.0):
                raise ValueError(
                    f"heartbeat_timeout: must be finite and > 0 or None, got {heartbeat_timeout!r}"
                )
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
            raise ValueError(f"max_buffer: must be an integer >= 1, got {max_buffer!r}")
        open_timeout = float(open_timeout)
        if not (math.isfinite(open_timeout) and open_timeout > 0.0):
            raise ValueError(f"open_timeout: must be finite and > 0, got {open_timeout!r}")
        self.url = url
        self.subscribe = subs
        self.heartbeat_timeout = heartbeat_timeout
        self.strict = bool(strict)
        self.max_buffer = max_buffer
        self.clock = clock
        self.open_timeout = open_timeout
        self.connect_kwargs = dict(connect_kwargs or {})
        self.received = 0
        self.heartbeats = 0
        self.malformed = 0
        self.last_malformed = ""
        self.dropped = 0
        self.error: BaseException | None = None
        self._ws: Any = None
        self._reader: asyncio.Task | None = None
        self._channels = {k: _Channel() for k in _KINDS}
        self._lock: asyncio.Lock | None = None
        self._closed = False

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> WebSocketFeed:
        """Build and :meth:`connect` (a factory for :class:`~jaxmm.feeds.ReconnectingFeed`)."""
        return await cls(url, **kwargs).connect()

    @property
    def connected(self) -> bool:
        """True between a successful connect and the end of the connection."""
        return self._reader is not None and not self._reader.done()

    async def connect(self) -> WebSocketFeed:
        """Open the connection, send the subscribe message, start reading. Idempotent."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._closed:
                raise ConnectionError(f"feed: {self.url} was closed")
            if self._ws is not None:
                return self
            from websockets.asyncio.client import connect

            kwargs = {"open_timeout": self.open_timeout, **self.connect_kwargs}
            ws = await connect(self.url, **kwargs)
            if self.subscribe is not None:
                from websockets.exceptions import ConnectionClosed

                # a server that already closed may have sent data first: the reader delivers
                # it and then reports the closure
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(
                        json.dumps({"type": "subscribe", "underlyings": list(self.subscribe)})
                    )
            self._ws = ws
            self._reader = asyncio.ensure_future(self._read(ws))
            return self

    async def close(self) -> None:
        """Close the connection (code 1000); the streams end. Idempotent."""
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        for ch in self._channels.values():
            ch.finish(_END)

    async def __aenter__(self) -> WebSocketFeed:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def prices(self) -> AsyncIterator[UnderlyingPrice]:
        """Underlying prices in arrival order."""
        return self._stream("price")

    def trades(self) -> AsyncIterator[TradePrint]:
        """Trade prints in arrival order."""
        return self._stream("trade")

    def surfaces(self) -> AsyncIterator[SurfaceUpdate]:
        """Surface updates in arrival order."""
        return self._stream("surface")

    # ---------------------------------------------------------------- internals
    async def _stream(self, kind: str) -> AsyncIterator:
        ch = self._channels[kind]
        if self._ws is None and not self._closed:
            await self.connect()
        while not self._closed:
            if ch.buf:
                yield ch.buf.popleft()
                continue
            if ch.end is _END:
                return
            if ch.end is not None:
                raise ch.end  # type: ignore[misc]
            ch.event.clear()
            await ch.event.wait()

    def _reject(self, exc: MalformedMessage) -> None:
        self.malformed += 1
        self.last_malformed = str(exc)
        logger.warning("feed %s: malformed message #%d: %s", self.url, self.malformed, exc)

    async def _read(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        end: object = _END
        try:
            while True:
                if self.heartbeat_timeout is None:
                    text = await ws.recv()
                else:
                    try:
                        text = await asyncio.wait_for(ws.recv(), self.heartbeat_timeout)
                    except TimeoutError:
                        raise HeartbeatTimeout(
                            f"feed {self.url}: no message for {self.heartbeat_timeout} s"
                        ) from None
                local = self.clock()
                self.received += 1
                try:
                    event = parse_message(text, local)
                except MalformedMessage as exc:
                    self._reject(exc)
                    if self.strict:
                        raise
                    continue
                if event is None:
                    self.heartbeats += 1
                    continue
                kind = (
                    "price"
                    if isinstance(event, UnderlyingPrice)
                    else "trade"
                    if isinstance(event, TradePrint)
                    else "surface"
                )
                ch = self._channels[kind]
                if len(ch.buf) >= self.max_buffer:
                    ch.buf.popleft()
                    self.dropped += 1
                    if self.dropped == 1:
                        logger.warning(
                            "feed %s: %s queue full (%d); dropping the oldest events",
                            self.url,
                            kind,
                            self.max_buffer,
                        )
                ch.buf.append(event)
                ch.event.set()
        except ConnectionClosed as exc:
            if not (exc.rcvd is not None and exc.rcvd.code == 1000):
                end = exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # HeartbeatTimeout, MalformedMessage (strict), OSError
            end = exc
        finally:
            if end is not _END:
                self.error = end  # type: ignore[assignment]
                logger.warning(
                    "feed %s: connection lost (%s: %s)", self.url, type(end).__name__, end
                )
                with contextlib.suppress(Exception):
                    await asyncio.shield(ws.close())
            for ch in self._channels.values():
                ch.finish(end)


# ------------------------------------------------------------------------------ the server
def _wants(subs: frozenset[str] | None, event: FeedEvent) -> bool:
    if subs is None:
        return True
    if isinstance(event, TradePrint):
        return any(event.symbol == u or event.symbol.startswith(u + "-") for u in subs)
    return event.underlying in subs


class _Client:
    __slots__ = ("conn", "subs", "ready")

    def __init__(self, conn: Any, ready: bool):
        self.conn = conn
        self.subs: frozenset[str] | None = None
        self.ready = ready


class FeedServer:
    """A running :func:`serve_feed` publisher (also an async context manager).

    Attributes:
        url: ``ws://host:port`` to connect to.
        port: the bound port.
        published: events taken from the feed and sent.
        connections: connections accepted so far.
        error: the exception that stopped the source feed, if any.
    """

    def __init__(
        self,
        feed: MarketDataFeed,
        host: str,
        port: int,
        wait_for_clients: int,
        require_subscribe: bool,
        heartbeat_interval: float | None,
        close_when_done: bool,
        clock: Callable[[], int],
    ):
        self.feed = feed
        self.host = host
        self._port = port
        self.wait_for_clients = wait_for_clients
        self.require_subscribe = require_subscribe
        self.heartbeat_interval = heartbeat_interval
        self.close_when_done = close_when_done
        self.clock = clock
        self.published = 0
        self.connections = 0
        self.error: BaseException | None = None
        self._clients: list[_Client] = []
        self._changed = asyncio.Event()
        self._server: Any = None
        self._tasks: list[asyncio.Task] = []
        self._publisher: asyncio.Task | None = None

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return self._port

    @property
    def url(self) -> str:
        """``ws://host:port``."""
        return f"ws://{self.host}:{self._port}"

    @property
    def clients(self) -> int:
        """Clients connected and ready (subscribed, if ``require_subscribe``)."""
        return sum(c.ready for c in self._clients)

    async def _start(self) -> None:
        from websockets.asyncio.server import serve

        self._server = await serve(self._handle, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        self._publisher = asyncio.ensure_future(self._publish())
        self._tasks.append(self._publisher)
        if self.heartbeat_interval is not None:
            self._tasks.append(asyncio.ensure_future(self._heartbeat()))

    async def _handle(self, conn: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        client = _Client(conn, ready=not self.require_subscribe)
        self._clients.append(client)
        self.connections += 1
        self._changed.set()
        try:
            # a client going away ends its handler quietly; any other error is a bug, and
            # websockets logs the handler's exception
            with contextlib.suppress(ConnectionClosed, OSError):
                async for text in conn:
                    try:
                        msg = json.loads(text)
                    except ValueError:
                        continue
                    if isinstance(msg, dict) and msg.get("type") == "subscribe":
                        subs = msg.get("underlyings")
                        if isinstance(subs, list) and all(isinstance(s, str) for s in subs):
                            client.subs = frozenset(subs)
                            client.ready = True
                            self._changed.set()
        finally:
            self._clients.remove(client)
            self._changed.set()

    async def _send(self, client: _Client, text: str) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            await client.conn.send(text)

    async def _publish(self) -> None:
        code, reason = 1000, "feed ended"
        try:
            async for event in merge(self.feed):
                while self.clients < self.wait_for_clients:
                    self._changed.clear()
                    await self._changed.wait()
                text = format_message(event)
                for client in list(self._clients):
                    if client.ready and _wants(client.subs, event):
                        await self._send(client, text)
                self.published += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error = exc
            code, reason = 1011, "feed failed"
            logger.warning("serve_feed: source feed failed (%s: %s)", type(exc).__name__, exc)
        if self.close_when_done:
            await self.disconnect_all(code, reason)

    async def _heartbeat(self) -> None:
        assert self.heartbeat_interval is not None
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            text = heartbeat_message(self.clock())
            for client in list(self._clients):
                if client.ready:
                    await self._send(client, text)

    async def disconnect_all(self, code: int = 1012, reason: str = "restart") -> None:
        """Close every client connection with ``code`` (1012 "service restart" by default)."""
        for client in list(self._clients):
            with contextlib.suppress(Exception):
                await client.conn.close(code, reason)

    async def wait_done(self) -> None:
        """Wait until the source feed is exhausted and its last event was sent."""
        if self._publisher is not None:
            await asyncio.shield(self._publisher)

    async def close(self) -> None:
        """Stop publishing and shut the server down (the source feed is not closed)."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> FeedServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve_feed(
    feed: MarketDataFeed,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    wait_for_clients: int = 1,
    require_subscribe: bool = False,
    heartbeat_interval: float | None = None,
    close_when_done: bool = True,
    clock: Callable[[], int] = time.time_ns,
) -> FeedServer:
    """Publish ``feed`` over WebSocket in this module's JSON format (tests, demos).

    The events of :func:`~jaxmm.feeds.merge` ``(feed)`` are sent to every ready client (all
    of them, or those whose subscription matches: prices and surfaces by underlying, trades by
    ``symbol == u`` or ``symbol.startswith(u + "-")``). Before each event the publisher waits
    until at least ``wait_for_clients`` clients are ready (so nothing is published to nobody,
    and a client that reconnects misses only what was in flight). When the feed ends, clients
    are closed with code 1000 (1011 if the feed raised) unless ``close_when_done=False``. A
    slow client slows the publisher (sends are awaited): this is a test and demo helper, not
    a production fan-out.

    Args:
        feed: the source.
        host, port: where to listen (``port=0``: any free port; read ``server.port``).
        wait_for_clients: ready clients needed before publishing (>= 0).
        require_subscribe: a client is ready only after its subscribe message.
        heartbeat_interval: seconds between heartbeats (> 0), or ``None``.
        close_when_done: close the clients when the feed ends.
        clock: heartbeat timestamps (ns since the epoch).

    Returns:
        The running :class:`FeedServer` (``await server.close()`` or ``async with``).

    Example:
        >>> import asyncio
        >>> from jaxmm.feeds import SimulatedFeed, SimulatedMarket, UnderlyingModel
        >>> async def roundtrip():
        ...     market = SimulatedMarket({"A": UnderlyingModel(100.0, 0.2)}, dt=1e-4, seed=0)
        ...     async with await serve_feed(SimulatedFeed(market, n_steps=3)) as server:
        ...         async with WebSocketFeed(server.url) as client:
        ...             return len([p async for p in client.prices()])
        >>> asyncio.run(roundtrip())
        3
    """
    if isinstance(wait_for_clients, bool) or not isinstance(wait_for_clients, int):
        raise ValueError(f"wait_for_clients: must be an integer >= 0, got {wait_for_clients!r}")
    if wait_for_clients < 0:
        raise ValueError(f"wait_for_clients: must be >= 0, got {wait_for_clients}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port: must be an integer in [0, 65535], got {port!r}")
    if heartbeat_interval is not None:
        heartbeat_interval = float(heartbeat_interval)
        if not (math.isfinite(heartbeat_interval) and heartbeat_interval > 0.0):
            raise ValueError(
                f"heartbeat_interval: must be finite and > 0 or None, got {heartbeat_interval!r}"
            )
    if not isinstance(feed, MarketDataFeed):
        raise ValueError(f"feed: must be a MarketDataFeed, got {type(feed).__name__}")
    server = FeedServer(
        feed,
        host,
        port,
        wait_for_clients,
        bool(require_subscribe),
        heartbeat_interval,
        bool(close_when_done),
        clock,
    )
    await server._start()
    return server
