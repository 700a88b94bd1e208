"""Reconnect with exponential backoff: :class:`Backoff` and the :class:`ReconnectingFeed` wrapper.

Delay before reconnect attempt ``n = 1, 2, ...`` (seconds)::

    base_n  = min(max_delay, initial * factor ** (n - 1))
    delay_n = base_n * (1 + jitter * U_n),   U_n ~ Uniform(-1, 1) from Random(seed)

so the delays grow geometrically up to ``max_delay`` and are spread by at most ``+-jitter``
(relative) to keep many clients from reconnecting in step. The attempt counter goes back to
0 after every successfully received message, so a connection that opens but dies before
delivering anything keeps backing off. After ``max_attempts`` consecutive failed attempts the
wrapper gives up with :class:`ReconnectFailed`.

Connection errors (the ones that trigger a reconnect): ``ConnectionError`` (which includes
:class:`jaxmm.feeds.HeartbeatTimeout`), ``OSError``, ``TimeoutError`` and
``websockets.exceptions.ConnectionClosed`` (``websockets`` is imported only if installed).
Any other exception (a strict feed's :class:`jaxmm.feeds.MalformedMessage`, a bug) is raised
to the consumer unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable

from ._protocol import MarketDataFeed

__all__ = ["Backoff", "ReconnectingFeed", "ReconnectFailed", "CONNECTION_ERRORS"]

logger = logging.getLogger("jaxmm.feeds")


def _connection_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, OSError, TimeoutError]
    try:
        from websockets.exceptions import ConnectionClosed
    except ImportError:  # pragma: no cover - websockets is a dependency of the feeds
        pass
    else:
        errors.append(ConnectionClosed)
    return tuple(errors)


CONNECTION_ERRORS: tuple[type[BaseException], ...] = _connection_errors()
"""Exception types treated as a lost connection by :class:`ReconnectingFeed`."""


class ReconnectFailed(ConnectionError):
    """:class:`ReconnectingFeed` gave up after ``max_attempts`` consecutive failed attempts.

    ``__cause__`` is the last connection error.
    """


class Backoff:
    """Exponential backoff with relative jitter (the module docstring has the formula).

    Args:
        initial: first delay, seconds (> 0).
        factor: growth per attempt (>= 1).
        max_delay: cap on the delay before jitter, seconds (>= initial).
        jitter: relative spread in [0, 1).
        max_attempts: consecutive failed attempts allowed (>= 1), ``None`` for no limit.
        seed: seed of the jitter's ``random.Random`` (``None``: OS entropy).

    Attributes:
        attempt: attempts since the last :meth:`reset`.

    Example:
        >>> b = Backoff(initial=0.1, factor=2.0, max_delay=0.5, jitter=0.0)
        >>> [b.next_delay() for _ in range(5)]
        [0.1, 0.2, 0.4, 0.5, 0.5]
        >>> b.reset(); b.next_delay()
        0.1
        >>> Backoff(jitter=1.5)
        Traceback (most recent call last):
        ...
        ValueError: jitter: must be in [0, 1), got 1.5
    """

    def __init__(
        self,
        initial: float = 0.1,
        factor: float = 2.0,
        max_delay: float = 5.0,
        jitter: float = 0.1,
        max_attempts: int | None = None,
        seed: int | None = None,
    ):
        initial, factor, max_delay, jitter = (
            float(x) for x in (initial, factor, max_delay, jitter)
        )
        if not (math.isfinite(initial) and initial > 0.0):
            raise ValueError(f"initial: must be finite and > 0, got {initial!r}")
        if not (math.isfinite(factor) and factor >= 1.0):
            raise ValueError(f"factor: must be finite and >= 1, got {factor!r}")
        if not (math.isfinite(max_delay) and max_delay >= initial):
            raise ValueError(
                f"max_delay: must be finite and >= initial ({initial!r}), got {max_delay!r}"
            )
        if not (0.0 <= jitter < 1.0):
            raise ValueError(f"jitter: must be in [0, 1), got {jitter!r}")
        if max_attempts is not None and (
            isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1
        ):
            raise ValueError(f"max_attempts: must be an integer >= 1 or None, got {max_attempts!r}")
        self.initial = initial
        self.factor = factor
        self.max_delay = max_delay
        self.jitter = jitter
        self.max_attempts = max_attempts
        self.seed = seed
        self.attempt = 0
        self._rng = random.Random(seed)

    def base_delay(self, attempt: int) -> float:
        """``min(max_delay, initial * factor ** (attempt - 1))`` for ``attempt >= 1``, no jitter."""
        if attempt < 1:
            raise ValueError(f"attempt: must be >= 1, got {attempt!r}")
        n = attempt - 1
        if self.factor > 1.0:  # cap the exponent: a long outage must not overflow the power
            n = min(n, math.ceil(math.log(self.max_delay / self.initial) / math.log(self.factor)))
        return min(self.max_delay, self.initial * self.factor**n)

    @property
    def exhausted(self) -> bool:
        """True when ``max_attempts`` attempts were made since the last reset."""
        return self.max_attempts is not None and self.attempt >= self.max_attempts

    def next_delay(self) -> float:
        """Count one more attempt and return the delay to wait before it, seconds."""
        self.attempt += 1
        base = self.base_delay(self.attempt)
        if self.jitter == 0.0:
            return base
        return base * (1.0 + self.jitter * self._rng.uniform(-1.0, 1.0))

    def reset(self) -> None:
        """Back to attempt 0 (after a successful message)."""
        self.attempt = 0


class ReconnectingFeed:
    """A :class:`~jaxmm.feeds.MarketDataFeed` that reconnects its inner feed on connection loss.

    ``connect()`` opens a fresh inner feed (e.g. ``lambda: WebSocketFeed.open(url)``). The
    first call happens when a stream is first read. When any stream of the inner feed raises
    a connection error (module docstring), the inner feed is closed, the wrapper waits
    ``backoff.next_delay()`` with ``sleep`` and calls ``connect()`` again (failed connects
    are retried the same way), and every stream continues on the new inner feed: a stream
    re-opens its iterator there, so what the new connection delivered before that is still
    read (the inner feed buffers it; true of :class:`~jaxmm.feeds.WebSocketFeed`). Messages
    lost in flight with the old connection are not replayed. The backoff resets after every
    message delivered; after ``backoff.max_attempts`` consecutive failures every stream
    raises :class:`ReconnectFailed`. A stream ends when the inner stream ends normally (e.g.
    a WebSocket closed by the server with code 1000) or after :meth:`close`.

    Args:
        connect: async factory of the inner feed.
        backoff: the delay policy (default ``Backoff()``).
        sleep: ``async sleep(seconds)``; inject one to test without waiting.

    Attributes:
        reconnects: successful reconnections (the first connection is not counted).
        connects: successful ``connect()`` calls, the first included.
        failed_attempts: failed ``connect()`` calls and lost connections, in total.
        last_error: the last connection error seen (``None`` before any).
        delays: every delay waited, seconds, in order.

    Example:
        >>> import asyncio
        >>> from jaxmm.feeds import UnderlyingPrice
        >>> class Flaky:  # delivers one price, then the connection drops
        ...     async def _p(self):
        ...         yield UnderlyingPrice("A", 1.0, 0, 0)
        ...         raise ConnectionResetError("dropped")
        ...     async def _none(self):
        ...         return
        ...         yield
        ...     def prices(self): return self._p()
        ...     def trades(self): return self._none()
        ...     def surfaces(self): return self._none()
        ...     async def close(self): pass
        >>> async def nosleep(s): pass
        >>> async def connect(): return Flaky()
        >>> feed = ReconnectingFeed(connect, Backoff(jitter=0.0, max_attempts=3), sleep=nosleep)
        >>> async def first(n):
        ...     out = []
        ...     async for p in feed.prices():
        ...         out.append(p.price)
        ...         if len(out) == n:
        ...             return out
        >>> asyncio.run(first(3)), feed.reconnects, feed.delays
        ([1.0, 1.0, 1.0], 2, [0.1, 0.1])
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[MarketDataFeed]],
        backoff: Backoff | None = None,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ):
        if not callable(connect):
            raise ValueError(f"connect: must be callable, got {connect!r}")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise ValueError(f"backoff: must be a Backoff, got {type(backoff).__name__}")
        self._connect = connect
        self.backoff = backoff if backoff is not None else Backoff()
        self._sleep = sleep
        self.reconnects = 0
        self.connects = 0
        self.failed_attempts = 0
        self.last_error: BaseException | None = None
        self.delays: list[float] = []
        self._feed: MarketDataFeed | None = None
        self._generation = 0  # bumped on every new inner feed
        self._lock: asyncio.Lock | None = None
        self._closed = False
        self._gave_up: ReconnectFailed | None = None

    @property
    def feed(self) -> MarketDataFeed | None:
        """The current inner feed (``None`` before the first connection or after close)."""
        return self._feed

    def prices(self) -> AsyncIterator:
        """Underlying prices across reconnections."""
        return self._stream("prices")

    def trades(self) -> AsyncIterator:
        """Trade prints across reconnections."""
        return self._stream("trades")

    def surfaces(self) -> AsyncIterator:
        """Surface updates across reconnections."""
        return self._stream("surfaces")

    async def close(self) -> None:
        """Close the inner feed; the streams end. Idempotent."""
        self._closed = True
        feed, self._feed = self._feed, None
        if feed is not None:
            with contextlib.suppress(Exception):
                await feed.close()

    # ---------------------------------------------------------------- internals
    def _get_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _current(self) -> tuple[int, MarketDataFeed | None]:
        """The live inner feed and its generation, connecting first if there is none."""
        async with self._get_lock():
            if self._feed is None and not self._closed:
                await self._open(first=self.connects == 0)
            return self._generation, self._feed

    async def _lost(self, generation: int, error: BaseException) -> None:
        """A stream of inner feed ``generation`` failed with ``error``: replace that feed once."""
        async with self._get_lock():
            if self._closed or generation != self._generation:
                return  # already replaced by another stream (or closed)
            self.last_error = error
            self.failed_attempts += 1
            logger.warning(
                "feed connection lost (%s: %s); reconnecting", type(error).__name__, error
            )
            feed, self._feed = self._feed, None
            if feed is not None:
                with contextlib.suppress(Exception):
                    await feed.close()
            await self._open(first=False)

    async def _open(self, first: bool) -> None:
        """Connect, backing off between failures. Called with the lock held."""
        wait = not first
        while not self._closed:
            if self._gave_up is not None:
                raise self._gave_up
            if wait:
                if self.backoff.exhausted:
                    self._gave_up = ReconnectFailed(
                        f"feed: gave up after {self.backoff.attempt} consecutive failed "
                        f"attempts (max_attempts={self.backoff.max_attempts}); last error: "
                        f"{type(self.last_error).__name__}: {self.last_error}"
                    )
                    self._gave_up.__cause__ = self.last_error
                    raise self._gave_up
                delay = self.backoff.next_delay()
                self.delays.append(delay)
                await self._sleep(delay)
                if self._closed:
                    return
            wait = True
            try:
                feed = await self._connect()
            except CONNECTION_ERRORS as exc:
                self.last_error = exc
                self.failed_attempts += 1
                logger.warning("feed connect failed (%s: %s)", type(exc).__name__, exc)
                continue
            if not isinstance(feed, MarketDataFeed):
                raise TypeError(f"connect: returned {type(feed).__name__}, not a MarketDataFeed")
            self._feed = feed
            self._generation += 1
            if self.connects:
                self.reconnects += 1
            self.connects += 1
            return

    async def _stream(self, kind: str) -> AsyncIterator:
        generation, feed = await self._current()
        while feed is not None:
            it = getattr(feed, kind)()
            try:
                while True:
                    try:
                        item = await it.__anext__()
                    except StopAsyncIteration:
                        return
                    except CONNECTION_ERRORS as exc:
                        if self._closed:
                            return
                        await self._lost(generation, exc)
                        break
                    if self._closed:
                        return
                    self.backoff.reset()
                    yield item
            finally:
                aclose = getattr(it, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()
            generation, feed = await self._current()
