"""The event broadcaster: one sequence, bounded per-subscriber queues, replayable history.

Semantics (docs/events.md states them for users):

- :meth:`EventBroadcaster.publish` stamps the next sequence number (1, 2, 3, ... with no gaps)
  on the event, appends it to a bounded history ring and hands it to every matching
  subscriber. It never blocks and never awaits: the engine calls it on its hot path.
- A subscriber owns a bounded queue. When a publish finds it full, the subscriber is cut off —
  it is *told* it lagged rather than slowing the publisher: it can still drain what was queued,
  after which its next read raises :class:`SubscriberLagged` carrying the last sequence number
  it consumed, so it can re-subscribe with ``from_seq`` and miss nothing.
- ``subscribe(from_seq=N)`` replays, from the history, every matching event with sequence
  number > N, then continues live, with no gap and no duplicate (replay and registration happen
  in one synchronous step on the event-loop thread). If the history no longer reaches back to
  N + 1, it raises :class:`SnapshotRequired`: the client must reload state and subscribe live.
- Synchronous callbacks (:meth:`EventBroadcaster.add_callback`) run inside ``publish``; an
  exception in a callback is logged and the callback removed, never propagated to the engine.

Thread model: call ``publish`` and ``subscribe`` from the event loop's thread (use
``loop.call_soon_threadsafe`` from other threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from ._types import EVENT_TYPES, EventBase

__all__ = ["EventBroadcaster", "Subscription", "SubscriberLagged", "SnapshotRequired"]

log = logging.getLogger(__name__)


class SnapshotRequired(Exception):
    """The history no longer covers the requested sequence number: reload state first."""

    def __init__(self, requested: int, oldest: int | None, last: int):
        self.requested = requested
        self.oldest = oldest
        self.last = last
        super().__init__(
            f"from_seq: history starts at {oldest}, cannot replay from {requested + 1} "
            f"(last published {last}); take a snapshot and subscribe live"
        )


class SubscriberLagged(Exception):
    """Raised to a subscriber whose queue overflowed, after it drained what was queued."""

    def __init__(self, last_seq: int):
        self.last_seq = last_seq
        super().__init__(
            f"subscriber lagged and was dropped after seq {last_seq}; "
            f"re-subscribe with from_seq={last_seq}"
        )


def _normalise_types(types: Iterable[str | type[EventBase]] | None) -> frozenset[str] | None:
    if types is None:
        return None
    out = set()
    for t in types:
        name = t if isinstance(t, str) else t.model_fields["type"].default
        if name not in EVENT_TYPES:
            raise ValueError(f"types: unknown event type {name!r}; known: {sorted(EVENT_TYPES)}")
        out.add(name)
    return frozenset(out)


class Subscription:
    """A consumer's view of the event stream; iterate it with ``async for``.

    Attributes:
        last_seq: sequence number of the last event this subscriber consumed (0 if none).
        lagged: True once the broadcaster cut this subscriber off for being too slow.
    """

    __slots__ = (
        "_bus",
        "_types",
        "_instruments",
        "_queue",
        "_capacity",
        "_wakeup",
        "last_seq",
        "lagged",
        "closed",
    )

    def __init__(
        self,
        bus: EventBroadcaster,
        types: frozenset[str] | None,
        instruments: frozenset[str] | None,
        capacity: int,
    ):
        self._bus = bus
        self._types = types
        self._instruments = instruments
        self._queue: deque[EventBase] = deque()
        self._capacity = capacity
        self._wakeup = asyncio.Event()
        self.last_seq = 0
        self.lagged = False
        self.closed = False

    def matches(self, event: EventBase) -> bool:
        """Whether this subscription's type and instrument filters accept ``event``."""
        if self._types is not None and event.type not in self._types:  # type: ignore[attr-defined]
            return False
        if self._instruments is not None and event.instrument not in self._instruments:
            return False
        return True

    def _offer(self, event: EventBase) -> None:
        if len(self._queue) >= self._capacity:
            self.lagged = True
            self._bus._drop(self)
        else:
            self._queue.append(event)
        self._wakeup.set()

    def qsize(self) -> int:
        """Events queued and not yet consumed."""
        return len(self._queue)

    def get_nowait(self) -> EventBase | None:
        """The next queued event, or None if none is queued (raises if lagged and drained)."""
        if self._queue:
            event = self._queue.popleft()
            self.last_seq = event.seq or self.last_seq
            return event
        if self.lagged:
            raise SubscriberLagged(self.last_seq)
        return None

    async def get(self) -> EventBase:
        """Wait for the next event. Raises :class:`SubscriberLagged` or ``StopAsyncIteration``
        (after :meth:`close`) once the queue is drained."""
        while True:
            event = self.get_nowait()
            if event is not None:
                return event
            if self.closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> EventBase:
        return await self.get()

    def close(self) -> None:
        """Stop receiving; events already queued can still be read."""
        self.closed = True
        self._bus._drop(self)
        self._wakeup.set()


class EventBroadcaster:
    """Stamp, record and fan out events. See the module docstring for the exact semantics.

    Args:
        history_size: events kept for replay (a ring buffer).
        queue_size: default bound of each subscriber's live queue.

    Example:
        >>> import asyncio
        >>> from jaxmm.events import EventBroadcaster, PriceUpdated
        >>> async def demo():
        ...     bus = EventBroadcaster()
        ...     bus.publish(PriceUpdated(underlying="BTC", price=100.0))
        ...     sub = bus.subscribe(from_seq=0)
        ...     bus.publish(PriceUpdated(underlying="BTC", price=101.0))
        ...     return [(await sub.get()).seq for _ in range(2)]
        >>> asyncio.run(demo())
        [1, 2]
    """

    def __init__(self, history_size: int = 10_000, queue_size: int = 1_000):
        if history_size < 1:
            raise ValueError(f"history_size: must be >= 1, got {history_size}")
        if queue_size < 1:
            raise ValueError(f"queue_size: must be >= 1, got {queue_size}")
        self._history: deque[EventBase] = deque(maxlen=history_size)
        self._queue_size = queue_size
        self._subs: list[Subscription] = []
        self._callbacks: list[tuple[Callable[[EventBase], None], frozenset[str] | None]] = []
        self._burst_ends: list[Callable[[], None]] = []
        self._burst_depth = 0
        self._seq = 0

    @property
    def last_seq(self) -> int:
        """The sequence number of the last published event (0 before the first)."""
        return self._seq

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def publish(self, event: EventBase) -> EventBase:
        """Stamp the next sequence number on ``event`` and deliver it; returns the stamped copy."""
        if not isinstance(event, EventBase):
            raise TypeError(f"event: expected a jaxmm event, got {type(event).__name__}")
        if event.seq is not None:
            raise ValueError(f"event: already published with seq {event.seq}")
        self._seq += 1
        stamped = event.model_copy(update={"seq": self._seq})
        self._deliver(stamped)
        return stamped

    def _deliver(self, event: EventBase) -> None:
        """Record a stamped event and hand it to every matching subscriber and callback (a
        callback that raises is logged and removed)."""
        self._history.append(event)
        for sub in tuple(self._subs):
            if sub.matches(event):
                sub._offer(event)
        for cb, types in tuple(self._callbacks):
            if types is None or event.type in types:  # type: ignore[attr-defined]
                try:
                    cb(event)
                except Exception:
                    log.exception("event callback %r failed and was removed", cb)
                    self.remove_callback(cb)

    def subscribe(
        self,
        types: Iterable[str | type[EventBase]] | None = None,
        instruments: Iterable[str] | None = None,
        from_seq: int | None = None,
        queue_size: int | None = None,
    ) -> Subscription:
        """Register a subscriber; with ``from_seq=N`` first replay every matching event > N.

        Raises:
            SnapshotRequired: the history no longer reaches back to ``N + 1``.
            ValueError: an unknown event type, ``from_seq`` < 0 or > ``last_seq``.
        """
        type_set = _normalise_types(types)
        inst_set = frozenset(instruments) if instruments is not None else None
        size = self._queue_size if queue_size is None else queue_size
        if size < 1:
            raise ValueError(f"queue_size: must be >= 1, got {size}")
        replay: list[EventBase] = []
        if from_seq is not None:
            if from_seq < 0 or from_seq > self._seq:
                raise ValueError(f"from_seq: must be in [0, {self._seq}], got {from_seq}")
            if from_seq < self._seq:
                oldest = self._history[0].seq if self._history else None
                if oldest is None or oldest > from_seq + 1:
                    raise SnapshotRequired(from_seq, oldest, self._seq)
                start = from_seq + 1 - oldest  # history seqs are contiguous
                replay = [self._history[i] for i in range(start, len(self._history))]
        sub = Subscription(self, type_set, inst_set, size + len(replay))
        for event in replay:
            if sub.matches(event):
                sub._queue.append(event)
        if from_seq is not None:
            sub.last_seq = from_seq
        self._subs.append(sub)
        return sub

    def add_callback(
        self,
        callback: Callable[[EventBase], None],
        types: Iterable[str | type[EventBase]] | None = None,
    ) -> None:
        """Call ``callback(event)`` synchronously inside every matching ``publish``."""
        self._callbacks.append((callback, _normalise_types(types)))

    def remove_callback(self, callback: Callable[[EventBase], None]) -> None:
        """Stop calling ``callback`` (compared by equality, so ``obj.method`` removes the
        bound method added earlier: each attribute access makes a new bound-method object)."""
        self._callbacks = [(cb, t) for cb, t in self._callbacks if cb != callback]

    @contextlib.contextmanager
    def burst(self) -> Iterator[None]:
        """Mark events published together (a requote's quote events): when the outermost
        block ends, every :meth:`on_burst_end` callback is called, so a consumer that holds a
        burst's later events to send them at once (the WebSocket fan-out, the API process's
        shipping) sends them now rather than when the event loop's iteration ends. Publishing
        is unchanged; outside any block nothing is called.

        Example:
            >>> from jaxmm.events import PriceUpdated
            >>> bus, ends = EventBroadcaster(), []
            >>> bus.on_burst_end(lambda: ends.append(bus.last_seq))
            >>> with bus.burst():
            ...     for px in (1.0, 2.0):
            ...         _ = bus.publish(PriceUpdated(underlying="BTC", price=px))
            >>> ends
            [2]
        """
        self._burst_depth += 1
        try:
            yield
        finally:
            self._burst_depth -= 1
            if not self._burst_depth:
                for cb in tuple(self._burst_ends):
                    try:
                        cb()
                    except Exception:
                        log.exception("burst-end callback %r failed and was removed", cb)
                        self.remove_burst_end(cb)

    def on_burst_end(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when each outermost :meth:`burst` block ends."""
        self._burst_ends.append(callback)

    def remove_burst_end(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback`` (compared by equality, as :meth:`remove_callback`)."""
        self._burst_ends = [cb for cb in self._burst_ends if cb != callback]

    def history(self, from_seq: int = 0) -> list[EventBase]:
        """Recorded events with sequence number > ``from_seq`` (as far back as kept)."""
        return [e for e in self._history if (e.seq or 0) > from_seq]

    def _drop(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
