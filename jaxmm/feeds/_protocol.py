"""The market-data feed protocol and its three event types (host side, plain Python).

A :class:`MarketDataFeed` gives three asynchronous iterators:

- :meth:`~MarketDataFeed.prices` -> :class:`UnderlyingPrice` (one underlying's last price);
- :meth:`~MarketDataFeed.trades` -> :class:`TradePrint` (a print in any instrument);
- :meth:`~MarketDataFeed.surfaces` -> :class:`SurfaceUpdate` (implied vols on a grid).

Units: prices and strikes in currency; expiries in years ACT/365F; vols annualised fractions
(``0.2`` is 20 %); quantities in contracts (or units of the underlying). Every event carries two
timestamps in integer nanoseconds since the Unix epoch: ``exchange_ts_ns`` (stamped by the
source) and ``local_ts_ns`` (stamped by us on receipt), so feed latency is
``local_ts_ns - exchange_ts_ns``.

The event constructors validate their fields and raise ``ValueError`` naming the field and the
bound it broke; sequences are normalised to tuples of Python floats, so two events built from a
list and from a tuple compare equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import operator
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "UnderlyingPrice",
    "TradePrint",
    "SurfaceUpdate",
    "MarketDataFeed",
    "FeedEvent",
    "merge",
]


def _name(field: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field}: must be a non-empty string, got {value!r}")
    return value


def _float(field: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"{field}: must be a number, got {value!r}")
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{field}: must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{field}: must be finite, got {x!r}")
    if positive and not x > 0.0:
        raise ValueError(f"{field}: must be > 0, got {x!r}")
    return x


def _ts(field: str, value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{field}: must be an integer (nanoseconds), got {value!r}")
    try:
        n = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{field}: must be an integer (nanoseconds), got {value!r}") from None
    if n < 0:
        raise ValueError(f"{field}: must be >= 0, got {n}")
    return int(n)


def _increasing(field: str, values: object) -> tuple[float, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValueError(f"{field}: must be a sequence of numbers, got {values!r}")
    out = tuple(_float(f"{field}[{i}]", v, positive=True) for i, v in enumerate(values))
    if not out:
        raise ValueError(f"{field}: must have at least 1 element, got 0")
    for i in range(1, len(out)):
        if not out[i] > out[i - 1]:
            raise ValueError(
                f"{field}: must be strictly increasing, got {out[i - 1]!r} then {out[i]!r} "
                f"at index {i}"
            )
    return out


@dataclass(frozen=True, slots=True)
class UnderlyingPrice:
    """The last price of an underlying.

    Attributes:
        underlying: its symbol (non-empty).
        price: finite, > 0, currency.
        exchange_ts_ns, local_ts_ns: integer nanoseconds since the epoch, >= 0.

    Example:
        >>> UnderlyingPrice("BTC", 100.5, 1_000, 1_250).price
        100.5
        >>> UnderlyingPrice("BTC", -1.0, 0, 0)
        Traceback (most recent call last):
        ...
        ValueError: price: must be > 0, got -1.0
    """

    underlying: str
    price: float
    exchange_ts_ns: int
    local_ts_ns: int

    def __post_init__(self) -> None:
        _name("underlying", self.underlying)
        object.__setattr__(self, "price", _float("price", self.price, positive=True))
        object.__setattr__(self, "exchange_ts_ns", _ts("exchange_ts_ns", self.exchange_ts_ns))
        object.__setattr__(self, "local_ts_ns", _ts("local_ts_ns", self.local_ts_ns))


@dataclass(frozen=True, slots=True)
class TradePrint:
    """One trade seen on the market (anyone's, not only ours).

    Attributes:
        symbol: the instrument's symbol (non-empty).
        price: finite, > 0, currency.
        quantity: finite, > 0, contracts (or units of the underlying).
        aggressor: ``"buy"`` (a buyer lifted the offer) or ``"sell"`` (a seller hit the bid).
        exchange_ts_ns, local_ts_ns: integer nanoseconds since the epoch, >= 0.

    Example:
        >>> TradePrint("BTC-0030D-100-C", 4.2, 3.0, "buy", 10, 12).aggressor
        'buy'
    """

    symbol: str
    price: float
    quantity: float
    aggressor: Literal["buy", "sell"]
    exchange_ts_ns: int
    local_ts_ns: int

    def __post_init__(self) -> None:
        _name("symbol", self.symbol)
        object.__setattr__(self, "price", _float("price", self.price, positive=True))
        object.__setattr__(self, "quantity", _float("quantity", self.quantity, positive=True))
        if self.aggressor not in ("buy", "sell"):
            raise ValueError(f"aggressor: must be 'buy' or 'sell', got {self.aggressor!r}")
        object.__setattr__(self, "exchange_ts_ns", _ts("exchange_ts_ns", self.exchange_ts_ns))
        object.__setattr__(self, "local_ts_ns", _ts("local_ts_ns", self.local_ts_ns))


@dataclass(frozen=True, slots=True)
class SurfaceUpdate:
    """Implied vols on an (expiry x strike) grid: the feed-side representation of a smile.

    Attributes:
        underlying: its symbol (non-empty).
        expiries: years ACT/365F, > 0, strictly increasing, at least one.
        strikes: currency, > 0, strictly increasing, at least one.
        vols: ``vols[i][j]`` is the vol at ``expiries[i]``, ``strikes[j]``; annualised
            fraction, finite and > 0; exactly ``len(expiries)`` rows of ``len(strikes)``.
        forward: the forward (or spot) the grid was marked at; finite, > 0.
        exchange_ts_ns, local_ts_ns: integer nanoseconds since the epoch, >= 0.

    Sequences (lists, tuples, NumPy arrays) are stored as tuples of Python floats.

    Example:
        >>> s = SurfaceUpdate("SPX", [0.25], [90.0, 110.0], [[0.22, 0.18]], 100.0, 5, 7)
        >>> s.vols
        ((0.22, 0.18),)
        >>> SurfaceUpdate("SPX", [0.25], [90.0, 110.0], [[0.22]], 100.0, 5, 7)
        Traceback (most recent call last):
        ...
        ValueError: vols[0]: must have len(strikes) = 2 entries, got 1
    """

    underlying: str
    expiries: tuple[float, ...]
    strikes: tuple[float, ...]
    vols: tuple[tuple[float, ...], ...]
    forward: float
    exchange_ts_ns: int
    local_ts_ns: int

    def __post_init__(self) -> None:
        _name("underlying", self.underlying)
        expiries = _increasing("expiries", self.expiries)
        strikes = _increasing("strikes", self.strikes)
        vols = self.vols
        if isinstance(vols, str | bytes) or not isinstance(vols, Iterable):
            raise ValueError(f"vols: must be a sequence of rows, got {vols!r}")
        rows = []
        for i, row in enumerate(vols):
            if isinstance(row, str | bytes) or not isinstance(row, Iterable):
                raise ValueError(f"vols[{i}]: must be a sequence of numbers, got {row!r}")
            r = tuple(_float(f"vols[{i}][{j}]", v, positive=True) for j, v in enumerate(row))
            if len(r) != len(strikes):
                raise ValueError(
                    f"vols[{i}]: must have len(strikes) = {len(strikes)} entries, got {len(r)}"
                )
            rows.append(r)
        if len(rows) != len(expiries):
            raise ValueError(
                f"vols: must have len(expiries) = {len(expiries)} rows, got {len(rows)}"
            )
        forward = _float("forward", self.forward, positive=True)
        ex_ts = _ts("exchange_ts_ns", self.exchange_ts_ns)
        lo_ts = _ts("local_ts_ns", self.local_ts_ns)
        object.__setattr__(self, "expiries", expiries)
        object.__setattr__(self, "strikes", strikes)
        object.__setattr__(self, "vols", tuple(rows))
        object.__setattr__(self, "forward", forward)
        object.__setattr__(self, "exchange_ts_ns", ex_ts)
        object.__setattr__(self, "local_ts_ns", lo_ts)


FeedEvent = UnderlyingPrice | TradePrint | SurfaceUpdate
"""Any event a :class:`MarketDataFeed` delivers."""


@runtime_checkable
class MarketDataFeed(Protocol):
    """A source of market data: three asynchronous iterators and ``close``.

    Each iterator method returns a fresh async iterator; an iterator ends when the feed has no
    more data (a bounded simulation) or after :meth:`close`. Implementations:
    :class:`jaxmm.feeds.SimulatedFeed`, :class:`jaxmm.feeds.WebSocketFeed`,
    :class:`jaxmm.feeds.ReconnectingFeed`; :func:`jaxmm.feeds.merge` interleaves the three
    streams of one feed in ``local_ts_ns`` order.

    ``isinstance(x, MarketDataFeed)`` checks that the four methods exist (not their types).

    Example:
        >>> class Empty:
        ...     async def _none(self):
        ...         return
        ...         yield
        ...     def prices(self): return self._none()
        ...     def trades(self): return self._none()
        ...     def surfaces(self): return self._none()
        ...     async def close(self): pass
        >>> isinstance(Empty(), MarketDataFeed)
        True
    """

    def prices(self) -> AsyncIterator[UnderlyingPrice]:
        """Underlying prices, in arrival order."""
        ...

    def trades(self) -> AsyncIterator[TradePrint]:
        """Trade prints, in arrival order."""
        ...

    def surfaces(self) -> AsyncIterator[SurfaceUpdate]:
        """Implied-vol surface updates, in arrival order."""
        ...

    async def close(self) -> None:
        """Stop the feed and release its resources (idempotent); the iterators then end."""
        ...


async def merge(feed: MarketDataFeed, *, buffer: int = 1024) -> AsyncIterator[FeedEvent]:
    """The three streams of ``feed`` as one, in ``local_ts_ns`` order.

    Three pump tasks read ``feed.prices()``, ``feed.trades()`` and ``feed.surfaces()`` into
    one buffer of at most ``buffer`` events; each event is released as soon as it is the
    buffered event with the smallest ``local_ts_ns`` (ties: prices, then trades, then surfaces,
    then arrival order). So the output is sorted when
    the feed produces its events in time order across streams: a live feed that stamps
    ``local_ts_ns`` on receipt (:class:`jaxmm.feeds.WebSocketFeed`), and
    :class:`jaxmm.feeds.SimulatedFeed`, which does not step its market before every open
    stream's previous events were taken (so a full buffer also pauses the simulation).
    Ends when all three streams end; an exception from any stream (after the events buffered
    before it) is raised here and the other pumps are cancelled. Closing or abandoning the
    merged iterator cancels the pumps; it does not close ``feed``.

    Args:
        feed: any :class:`MarketDataFeed`.
        buffer: the most events held between the pumps and the consumer (>= 1).

    Example:
        >>> import asyncio
        >>> class Two:
        ...     async def _gen(self, *events):
        ...         for e in events:
        ...             yield e
        ...     def prices(self):
        ...         p = UnderlyingPrice
        ...         return self._gen(p("A", 1.0, 0, 10), p("A", 2.0, 0, 30))
        ...     def trades(self):
        ...         return self._gen(TradePrint("A", 1.5, 1.0, "sell", 0, 20))
        ...     def surfaces(self):
        ...         return self._gen()
        ...     async def close(self):
        ...         pass
        >>> async def collect():
        ...     return [e.local_ts_ns async for e in merge(Two())]
        >>> asyncio.run(collect())
        [10, 20, 30]
    """
    if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
        raise ValueError(f"buffer: must be an integer >= 1, got {buffer!r}")
    streams = [feed.prices(), feed.trades(), feed.surfaces()]
    heap: list[tuple[int, int, int, FeedEvent]] = []
    seq = itertools.count()
    slots = asyncio.Semaphore(buffer)
    changed = asyncio.Event()
    errors: list[BaseException] = []
    running = [len(streams)]

    async def pump(rank: int, stream: AsyncIterator[FeedEvent]) -> None:
        try:
            async for event in stream:
                await slots.acquire()
                heapq.heappush(heap, (event.local_ts_ns, rank, next(seq), event))
                changed.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            errors.append(exc)
        finally:
            running[0] -= 1
            changed.set()
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    tasks = [asyncio.ensure_future(pump(r, s)) for r, s in enumerate(streams)]
    stopping = False
    try:
        while True:
            if errors and not stopping:
                stopping = True  # deliver what is buffered, then raise
                for t in tasks:
                    t.cancel()
            if heap:
                event = heapq.heappop(heap)[-1]
                slots.release()
                yield event
                continue
            if errors:
                raise errors[0]
            if running[0] == 0:
                return
            changed.clear()
            await changed.wait()
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
