"""A :class:`~jaxmm.feeds.MarketDataFeed` over the seeded :class:`~jaxmm.feeds.SimulatedMarket`.

Each market step emits, in this order:

- one :class:`~jaxmm.feeds.UnderlyingPrice` per underlying (the step's price);
- on steps ``1, 1 + surface_every, 1 + 2 surface_every, ...`` (the feed's own step count), one
  :class:`~jaxmm.feeds.SurfaceUpdate` per underlying that has a smile: the market's TRUE smile
  ``SimulatedMarket.implied_vol(u, strikes, expiry)`` on that underlying's grid, marked at
  ``forward = spot`` (the simulated market has no rates or dividends).

The grid is a rolling one: the same times to expiry (years) at every update. The trade stream
is empty (the simulated market has no tape: other traders' orders are sent into the books by
the engine's simulated counterparties, whose prints come from the books); it ends with the feed.

Timestamps are simulated, so the stream is reproducible:
``exchange_ts_ns = start_ns + round(n dt 365 86400 1e9)`` with ``n`` the market's step count
(``dt`` in years ACT/365F) and ``local_ts_ns = exchange_ts_ns + latency_ns``.

Stepping is pull driven and in lock step: the market advances one step only when every OPEN
stream (an iterator returned by ``prices()``, ``trades()`` or ``surfaces()`` and not yet closed
or garbage collected) has taken all of the previous step's events and waits for more. So the
three streams may be read concurrently (one task each, or :func:`jaxmm.feeds.merge`) and every
reader sees every event from the step at which it opened its stream; a consumer busy with an
event holds the simulation back instead of letting events pile up. Every step, the first one
included, is preceded by ``await asyncio.sleep(pause)``, so streams opened by tasks started
together (one task per stream) all see step 1. Open only the streams you read: an open stream
that is never read stops the simulation.
"""

from __future__ import annotations

import asyncio
import math
import operator
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Generic, TypeVar

from ._protocol import SurfaceUpdate, TradePrint, UnderlyingPrice
from ._sim import SimulatedMarket

__all__ = ["SimulatedFeed", "DEFAULT_MONEYNESS", "DEFAULT_EXPIRIES", "NS_PER_YEAR"]

NS_PER_YEAR = 365 * 86_400 * 1_000_000_000
"""Nanoseconds in one year ACT/365F."""

DEFAULT_MONEYNESS = (0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.3)
"""Default surface strikes, as multiples of the underlying's initial price ``s0``."""

DEFAULT_EXPIRIES = (7 / 365, 30 / 365, 91 / 365)
"""Default surface expiries in years (one week, one month, three months)."""

T = TypeVar("T")


def _int(name: str, value: object, lo: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name}: must be an integer >= {lo}, got {value!r}")
    try:
        n = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name}: must be an integer >= {lo}, got {value!r}") from None
    if n < lo:
        raise ValueError(f"{name}: must be >= {lo}, got {n}")
    return int(n)


def _grid(name: str, values: Sequence[float]) -> tuple[float, ...]:
    if isinstance(values, str | bytes):
        raise ValueError(f"{name}: must be a sequence of numbers, got {values!r}")
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a sequence of numbers, got {values!r}") from None
    if not out:
        raise ValueError(f"{name}: must have at least 1 element, got 0")
    for i, v in enumerate(out):
        if not (math.isfinite(v) and v > 0.0):
            raise ValueError(f"{name}[{i}]: must be finite and > 0, got {v!r}")
        if i and not v > out[i - 1]:
            raise ValueError(f"{name}: must be strictly increasing, got {out[i - 1]!r} then {v!r}")
    return out


class _Stream(Generic[T]):
    """One open stream of a :class:`SimulatedFeed` (an async iterator with ``aclose``)."""

    __slots__ = ("_feed", "kind", "buf", "waiting", "closed", "__weakref__")

    def __init__(self, feed: SimulatedFeed, kind: str):
        self._feed = feed
        self.kind = kind
        self.buf: deque = deque()
        self.waiting = False
        self.closed = False

    def __aiter__(self) -> _Stream[T]:
        return self

    async def __anext__(self) -> T:
        return await self._feed._next(self)

    async def aclose(self) -> None:
        """Stop reading this stream (the simulation no longer waits for it)."""
        self._feed._unregister(self)


class SimulatedFeed:
    """:class:`~jaxmm.feeds.MarketDataFeed` over a :class:`~jaxmm.feeds.SimulatedMarket`.

    Semantics (steps, grids, timestamps, lock-step reading): the module docstring of
    ``jaxmm.feeds._simfeed``.

    Args:
        market: the market to step (it is advanced by this feed; its seed makes the stream
            reproducible).
        n_steps: steps to run (>= 0), or ``None`` to run until :meth:`close`.
        pause: seconds to sleep before each step (>= 0; ``0`` still yields to the event loop).
        surface_every: steps between surface updates (>= 1).
        strikes_by_underlying: underlying -> strictly increasing strikes (currency, > 0);
            default ``DEFAULT_MONEYNESS x s0``. Only underlyings with a smile.
        expiries_by_underlying: underlying -> strictly increasing expiries (years, > 0);
            default ``DEFAULT_EXPIRIES``. Only underlyings with a smile.
        start_ns: exchange timestamp of step 0 (ns since the epoch, >= 0); default: the wall
            clock when the feed is built (pass it for a bit-identical stream).
        latency_ns: ``local_ts_ns - exchange_ts_ns`` (>= 0).

    Example:
        >>> import asyncio
        >>> from jaxmm.feeds import SimulatedMarket, SmileModel, UnderlyingModel, merge
        >>> market = SimulatedMarket({"BTC": UnderlyingModel(100.0, 0.6)}, dt=1e-5, seed=1,
        ...                          smiles={"BTC": SmileModel(0.6, -0.2)})
        >>> feed = SimulatedFeed(market, n_steps=3, surface_every=2, start_ns=0)
        >>> async def kinds():
        ...     return [type(e).__name__ async for e in merge(feed)]
        >>> asyncio.run(kinds())
        ['UnderlyingPrice', 'SurfaceUpdate', 'UnderlyingPrice', 'UnderlyingPrice', 'SurfaceUpdate']
    """

    def __init__(
        self,
        market: SimulatedMarket,
        *,
        n_steps: int | None,
        pause: float = 0.0,
        surface_every: int = 1,
        strikes_by_underlying: Mapping[str, Sequence[float]] | None = None,
        expiries_by_underlying: Mapping[str, Sequence[float]] | None = None,
        start_ns: int | None = None,
        latency_ns: int = 0,
    ):
        if not isinstance(market, SimulatedMarket):
            raise ValueError(f"market: must be a SimulatedMarket, got {type(market).__name__}")
        n = None if n_steps is None else _int("n_steps", n_steps, 0)
        pause = float(pause)
        if not (math.isfinite(pause) and pause >= 0.0):
            raise ValueError(f"pause: must be finite and >= 0, got {pause!r}")
        every = _int("surface_every", surface_every, 1)
        start = time.time_ns() if start_ns is None else _int("start_ns", start_ns, 0)
        latency = _int("latency_ns", latency_ns, 0)
        strikes_in = dict(strikes_by_underlying or {})
        expiries_in = dict(expiries_by_underlying or {})
        for field, given in (
            ("strikes_by_underlying", strikes_in),
            ("expiries_by_underlying", expiries_in),
        ):
            for u in given:
                if u not in market.models:
                    raise ValueError(f"{field}: unknown underlying {u!r}")
                if u not in market.smiles:
                    raise ValueError(f"{field}: underlying {u!r} has no smile in the market")
        grids: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {}
        for u in market.smiles:
            s0 = market.models[u].s0
            strikes = strikes_in.get(u, tuple(m * s0 for m in DEFAULT_MONEYNESS))
            expiries = expiries_in.get(u, DEFAULT_EXPIRIES)
            grids[u] = (
                _grid(f"strikes_by_underlying[{u!r}]", strikes),
                _grid(f"expiries_by_underlying[{u!r}]", expiries),
            )
        self.market = market
        self.n_steps = n
        self.pause = pause
        self.surface_every = every
        self.start_ns = start
        self.latency_ns = latency
        self.grids = grids
        """underlying -> (strikes, expiries) of its surface updates."""
        self.steps_done = 0
        """Market steps this feed has made."""
        self._streams: weakref.WeakSet[_Stream] = weakref.WeakSet()
        self._done = n == 0
        self._stepping = False
        self._changed: asyncio.Event | None = None

    # ---------------------------------------------------------------- protocol
    def prices(self) -> _Stream[UnderlyingPrice]:
        """Open a stream of :class:`~jaxmm.feeds.UnderlyingPrice` (one per underlying per step)."""
        return self._register("price")

    def trades(self) -> _Stream[TradePrint]:
        """Open the (always empty) trade stream; it ends when the feed ends."""
        return self._register("trade")

    def surfaces(self) -> _Stream[SurfaceUpdate]:
        """Open a stream of :class:`~jaxmm.feeds.SurfaceUpdate` (every ``surface_every`` steps)."""
        return self._register("surface")

    async def close(self) -> None:
        """End the feed: open streams end after the events they already hold. Idempotent."""
        self._done = True
        self._wake()

    @property
    def done(self) -> bool:
        """True once ``n_steps`` steps were made or :meth:`close` was called."""
        return self._done

    # ---------------------------------------------------------------- internals
    def _register(self, kind: str) -> _Stream:
        s: _Stream = _Stream(self, kind)
        self._streams.add(s)
        weakref.finalize(s, self._wake)
        return s

    def _unregister(self, s: _Stream) -> None:
        if not s.closed:
            s.closed = True
            s.buf.clear()
            self._streams.discard(s)
            self._wake()

    def _wake(self) -> None:
        ev = self._changed
        if ev is not None:
            self._changed = None
            ev.set()

    def _ts(self) -> tuple[int, int]:
        ex = self.start_ns + round(self.market.n * self.market.dt * NS_PER_YEAR)
        return ex, ex + self.latency_ns

    def _advance(self) -> None:
        ticks = self.market.step()
        self.steps_done += 1
        ex, lo = self._ts()
        streams = list(self._streams)
        for tick in ticks:
            p = UnderlyingPrice(tick.underlying, tick.price, ex, lo)
            for s in streams:
                if s.kind == "price":
                    s.buf.append(p)
        if (self.steps_done - 1) % self.surface_every == 0 and any(
            s.kind == "surface" for s in streams
        ):
            for u, (strikes, expiries) in self.grids.items():
                spot = self.market.prices[u]
                vols = [self.market.implied_vol(u, strikes, t).tolist() for t in expiries]
                upd = SurfaceUpdate(u, expiries, strikes, vols, spot, ex, lo)
                for s in streams:
                    if s.kind == "surface":
                        s.buf.append(upd)
        if self.n_steps is not None and self.steps_done >= self.n_steps:
            self._done = True

    async def _next(self, s: _Stream):
        while True:
            if s.buf:
                s.waiting = False
                return s.buf.popleft()
            if s.closed or self._done:
                self._unregister(s)
                raise StopAsyncIteration
            s.waiting = True
            if not self._stepping and all(o.waiting and not o.buf for o in self._streams):
                self._stepping = True
                try:
                    await asyncio.sleep(self.pause)
                    if not self._done:
                        self._advance()
                finally:
                    self._stepping = False
                    self._wake()
                continue
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()
