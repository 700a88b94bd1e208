"""Fan the engine's event stream out to several API worker processes through Redis Streams.

One process runs the engine and a :class:`RedisStreamPublisher`: it follows the engine's
:class:`~jaxmm.events.EventBroadcaster` and appends every event, in sequence order, to a Redis
stream (``XADD`` with ``MAXLEN ~ maxlen``). The entry ID is ``"<seq>-0"``, the event's own
broadcast sequence number, so the stream is ordered by it, Redis itself rejects a duplicate or
out-of-order append, and a reader can start after any sequence number.

Every API worker runs a :class:`RedisStreamRelay`: it reads the stream (``XREAD BLOCK`` from the
last ID it saw) and hands each event to the worker's local :class:`RelayBroadcaster`, which
keeps the engine's sequence number instead of stamping its own. The worker's WebSocket clients
therefore see the engine's sequence numbers whichever worker they are connected to, replay and
``from_seq`` work unchanged (docs/events.md), and two workers deliver the same events in the
same order.

Failure rules:

- The publisher follows the broadcaster through a bounded subscription; if it lags (Redis slower
  than the engine) it re-subscribes from the last event it appended and loses nothing while the
  engine's history still covers it. A Redis error is retried (back-off up to 1 s) with the same
  batch; appends are idempotent because of the sequence-number IDs.
- A relay that sees a gap (the stream was trimmed past events it had not read, or the publisher
  lost events) clears its history and cuts off every live subscriber (they get ``lagged`` and
  reconnect; a ``from_seq`` inside the gap then gets ``snapshot_required``): never a silent hole.
- A stream key belongs to one engine run: an engine whose sequence restarted must use a new key
  (the publisher refuses a stream whose last ID is ahead of the engine).

Entries hold two fields: ``seq`` (decimal) and ``event`` (the event's JSON, seq included).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from jaxmm.events import (
    EventBase,
    EventBroadcaster,
    SnapshotRequired,
    SubscriberLagged,
    parse_event,
)

__all__ = [
    "RelayBroadcaster",
    "RedisStreamPublisher",
    "RedisStreamRelay",
    "DEFAULT_REDIS_URL",
    "DEFAULT_STREAM",
    "make_relay_app",
    "relay_app_from_env",
]

log = logging.getLogger(__name__)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_STREAM = "jaxmm:events"


def _redis(url: str) -> Any:
    import redis.asyncio as aioredis  # the api extra; imported only where Redis is used

    return aioredis.from_url(url)


class RelayBroadcaster(EventBroadcaster):
    """An :class:`~jaxmm.events.EventBroadcaster` for events already stamped elsewhere.

    :meth:`relay` (and :meth:`publish`) take an event whose ``seq`` was set by the engine's
    broadcaster and deliver it unchanged; the history, replay (``subscribe(from_seq=...)``),
    bounded queues, lag cut-off and callbacks are the parent's. Events must arrive in
    increasing ``seq``: a repeat (``seq <= last_seq``) is ignored; a gap clears the history and
    cuts off live subscribers (see the module docstring).

    Example:
        >>> import asyncio
        >>> from jaxmm.events import PriceUpdated
        >>> async def demo():
        ...     bus = RelayBroadcaster()
        ...     for seq in (41, 42, 42, 43):  # 42 arrives twice
        ...         bus.relay(PriceUpdated(underlying="BTC", price=1.0, seq=seq))
        ...     sub = bus.subscribe(from_seq=41)
        ...     return [(await sub.get()).seq for _ in range(2)], bus.last_seq
        >>> asyncio.run(demo())
        ([42, 43], 43)
    """

    def __init__(self, history_size: int = 10_000, queue_size: int = 1_000):
        super().__init__(history_size=history_size, queue_size=queue_size)
        self.gaps = 0

    def relay(self, event: EventBase) -> bool:
        """Deliver an engine-stamped event; returns False for a repeat that was ignored.

        Raises:
            ValueError: ``event.seq`` is None (not stamped by a broadcaster).
        """
        if not isinstance(event, EventBase):
            raise TypeError(f"event: expected a jaxmm event, got {type(event).__name__}")
        seq = event.seq
        if seq is None:
            raise ValueError("event.seq: a relay only accepts events stamped by the engine")
        if seq <= self._seq:
            return False
        if self._seq and seq != self._seq + 1:
            self.gaps += 1
            log.warning("relay: gap in the event stream (%d -> %d)", self._seq, seq)
            self._history.clear()  # replay across the gap would skip events
            for sub in tuple(self._subs):  # tell live subscribers instead of a silent hole
                sub.lagged = True
                self._drop(sub)
                sub._wakeup.set()
        self._seq = seq
        self._deliver(event)
        return True

    def publish(self, event: EventBase) -> EventBase:
        """Same as :meth:`relay` (the sequence number is the engine's); returns the event."""
        self.relay(event)
        return event


class RedisStreamPublisher:
    """Append every event of ``bus`` to the Redis stream ``stream``, in sequence order.

    Args:
        bus: the engine's broadcaster.
        redis_url: ``redis://host:port/db``.
        stream: the stream key (one per engine run).
        maxlen: approximate number of entries Redis keeps (``MAXLEN ~``): how far back a
            worker that (re)starts can replay. >= 1.
        batch: most events appended per round trip (a pipeline). >= 1.
        queue_size: bound of the publisher's own subscription. >= 1.

    ``start()`` resumes after the stream's last entry (or from the engine's oldest recorded
    event for a new stream) and runs until ``stop()``, which flushes what is queued.
    """

    def __init__(
        self,
        bus: EventBroadcaster,
        redis_url: str = DEFAULT_REDIS_URL,
        *,
        stream: str = DEFAULT_STREAM,
        maxlen: int = 10_000,
        batch: int = 512,
        queue_size: int = 100_000,
    ):
        for name, value in (("maxlen", maxlen), ("batch", batch), ("queue_size", queue_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if not stream:
            raise ValueError("stream: must be a non-empty key")
        self.bus = bus
        self.stream = stream
        self.maxlen = maxlen
        self.batch = batch
        self.queue_size = queue_size
        self._redis = _redis(redis_url)
        self._task: asyncio.Task | None = None
        self._sub: Any = None
        self.appended_seq = 0
        """Sequence number of the last event appended to the stream."""

    async def _stream_last_seq(self) -> int:
        last = await self._redis.xrevrange(self.stream, count=1)
        return int(last[0][0].split(b"-")[0]) if last else 0

    async def start(self) -> None:
        """Find where the stream stands and start appending (idempotent)."""
        if self._task is not None:
            return
        last = await self._stream_last_seq()
        if last > self.bus.last_seq:
            raise ValueError(
                f"stream: {self.stream!r} already holds seq {last} > engine last_seq "
                f"{self.bus.last_seq}; use a new stream key for a new engine run"
            )
        self.appended_seq = last
        self._subscribe()
        self._task = asyncio.create_task(self._run(), name=f"redis-publisher:{self.stream}")

    def _subscribe(self) -> None:
        try:
            self._sub = self.bus.subscribe(from_seq=self.appended_seq, queue_size=self.queue_size)
        except SnapshotRequired as exc:
            log.error("publisher: %s; events %d..%d are lost", exc, self.appended_seq + 1,
                      (exc.oldest or exc.last + 1) - 1)  # fmt: skip
            self._sub = self.bus.subscribe(queue_size=self.queue_size)

    async def _append(self, events: list[EventBase]) -> None:
        delay = 0.01
        while True:
            try:
                pipe = self._redis.pipeline(transaction=False)
                for e in events:
                    pipe.xadd(
                        self.stream,
                        {"seq": str(e.seq), "event": e.model_dump_json()},
                        id=f"{e.seq}-0",
                        maxlen=self.maxlen,
                        approximate=True,
                    )
                results = await pipe.execute(raise_on_error=False)
                bad = [r for r in results if isinstance(r, Exception)]
                for r in bad:
                    if "equal or smaller" not in str(r):  # an already appended seq is fine
                        raise r
                self.appended_seq = events[-1].seq or self.appended_seq
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("publisher: redis append failed (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(1.0, 2 * delay)

    async def _run(self) -> None:
        while True:
            try:
                first = await self._sub.get()
            except SubscriberLagged:
                log.warning("publisher lagged; re-subscribing from %d", self.appended_seq)
                self._subscribe()
                continue
            except StopAsyncIteration:
                return
            events = [first]
            with contextlib.suppress(SubscriberLagged):
                while len(events) < self.batch and (e := self._sub.get_nowait()) is not None:
                    events.append(e)
            await self._append(events)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every event published so far is in the stream."""
        async with asyncio.timeout(timeout):
            while self.appended_seq < self.bus.last_seq:
                await asyncio.sleep(0.001)

    async def stop(self) -> None:
        """Flush, stop the task and close the connection (idempotent)."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await self.flush()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self._sub.close()
        await self._redis.aclose()


class RedisStreamRelay:
    """Read the Redis stream ``stream`` and re-publish each event into ``bus`` with its seq.

    Args:
        bus: the worker's :class:`RelayBroadcaster`.
        redis_url: ``redis://host:port/db``.
        stream: the stream key the publisher writes.
        after_seq: start after this sequence number; ``0`` (default) reads everything the
            stream still holds, filling the worker's history for replay.
        block_ms: ``XREAD BLOCK`` time in milliseconds (> 0).
        count: most entries per read (>= 1).
    """

    def __init__(
        self,
        bus: RelayBroadcaster,
        redis_url: str = DEFAULT_REDIS_URL,
        *,
        stream: str = DEFAULT_STREAM,
        after_seq: int = 0,
        block_ms: int = 1000,
        count: int = 1024,
    ):
        if not isinstance(bus, RelayBroadcaster):
            raise TypeError(f"bus: expected a RelayBroadcaster, got {type(bus).__name__}")
        if after_seq < 0:
            raise ValueError(f"after_seq: must be >= 0, got {after_seq}")
        if block_ms < 1:
            raise ValueError(f"block_ms: must be >= 1, got {block_ms}")
        if count < 1:
            raise ValueError(f"count: must be >= 1, got {count}")
        self.bus = bus
        self.stream = stream
        self.block_ms = block_ms
        self.count = count
        self.last_id = f"{after_seq}-0"
        self._redis = _redis(redis_url)
        self._task: asyncio.Task | None = None

    async def entries(self) -> AsyncIterator[tuple[bytes, dict]]:
        """Yield ``(id, fields)`` from the stream forever (reconnecting after errors)."""
        delay = 0.01
        while True:
            try:
                reply = await self._redis.xread(
                    {self.stream: self.last_id}, count=self.count, block=self.block_ms
                )
                delay = 0.01
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("relay: redis read failed (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(1.0, 2 * delay)
                continue
            for _key, items in reply or ():
                for entry_id, fields in items:
                    yield entry_id, fields
                    self.last_id = entry_id

    async def _run(self) -> None:
        async for _entry_id, fields in self.entries():
            try:
                event = parse_event(fields[b"event"])
            except (KeyError, ValueError) as exc:
                log.error("relay: skipping a malformed stream entry %r (%s)", _entry_id, exc)
                continue
            self.bus.relay(event)

    async def start(self) -> None:
        """Start relaying (idempotent)."""
        if self._task is None:
            await self._redis.ping()  # fail fast on a wrong URL
            self._task = asyncio.create_task(self._run(), name=f"redis-relay:{self.stream}")

    async def stop(self) -> None:
        """Stop relaying and close the connection (idempotent)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._redis.aclose()


def make_relay_app(
    redis_url: str = DEFAULT_REDIS_URL,
    *,
    stream: str = DEFAULT_STREAM,
    settings: Any = None,
    auth_verify: Any = None,
    history_size: int = 10_000,
) -> Any:
    """A stream-only API worker: ``/api/v1/mm/ws`` served from a Redis stream.

    ``settings`` and ``auth_verify`` become ``app.state.settings`` / ``app.state.auth_verify``
    as in the main app; with ``auth_verify=None`` the stream is open (local mode, logged as a
    warning). Run several of these (``uvicorn --factory``, see :func:`relay_app_from_env`)
    beside the engine's process to serve many WebSocket clients.
    """
    from fastapi import FastAPI

    from ._ws import router

    bus = RelayBroadcaster(history_size=history_size)
    relay = RedisStreamRelay(bus, redis_url, stream=stream)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await relay.start()
        try:
            yield
        finally:
            await relay.stop()

    if auth_verify is None:
        log.warning("relay worker: AUTHENTICATION DISABLED - the event stream is open")
    app = FastAPI(title="jaxmm stream worker", lifespan=lifespan)
    app.include_router(router)
    app.state.events = bus
    app.state.settings = settings
    app.state.auth_verify = auth_verify
    app.state.relay = relay
    return app


def relay_app_from_env() -> Any:
    """:func:`make_relay_app` configured from the environment, for ``uvicorn --factory``:
    ``JAXMM_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``), ``JAXMM_EVENT_STREAM``
    (default ``jaxmm:events``), ``JAXMM_WS_HEARTBEAT_S``, ``JAXMM_WS_QUEUE_SIZE``; auth from
    :class:`~jaxmm.api.ApiSettings` (``JAXMM_JWT_SECRET``, or ``JAXMM_AUTH_DISABLED=1``).
    """
    from types import SimpleNamespace

    env = os.environ
    from ._auth import verifier
    from ._settings import ApiSettings

    api = ApiSettings.load()  # JAXMM_JWT_SECRET / JAXMM_AUTH_DISABLED / settings file
    settings = SimpleNamespace(
        auth_disabled=api.auth_disabled,
        ws_heartbeat_s=float(env.get("JAXMM_WS_HEARTBEAT_S", "10")),
        ws_queue_size=int(env.get("JAXMM_WS_QUEUE_SIZE", "1000")),
    )
    verify = None if api.auth_disabled else verifier(api)
    return make_relay_app(
        env.get("JAXMM_REDIS_URL", DEFAULT_REDIS_URL),
        stream=env.get("JAXMM_EVENT_STREAM", DEFAULT_STREAM),
        settings=settings,
        auth_verify=verify,
    )
