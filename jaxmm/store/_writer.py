"""Batched, durable fill writing off the engine's hot path."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from ._records import FillRecord
from ._repo import Store

__all__ = ["FillWriter", "WriterBackpressure"]

log = logging.getLogger(__name__)


class WriterBackpressure(RuntimeError):
    """The writer's queue is full: the engine must slow down (nothing was dropped)."""


class FillWriter:
    """A writer task with a bounded queue that commits fills in batches.

    ``submit(fill)`` never blocks: it returns a future that resolves, **after the batch's
    transaction has committed**, to True (stored) or False (its trade id was already stored);
    only then may the engine treat the fill as acknowledged. When the queue holds
    ``max_queue`` fills, ``submit`` raises :class:`WriterBackpressure` — the engine is told,
    the fill is never silently dropped. A batch that fails to commit is retried
    ``retries`` times with exponential backoff; if it still fails, each of its futures gets
    the exception (nothing is acknowledged that is not stored).

    Example:
        >>> import asyncio, tempfile, os
        >>> from jaxmm.store import Store, FillRecord, FillWriter
        >>> async def demo(path):
        ...     store = await Store.open(f"sqlite+aiosqlite:///{path}", migrate=True)
        ...     async with FillWriter(store) as writer:
        ...         acks = [writer.submit(FillRecord(f"t{i}", "o", "X", "buy", 1, 1))
        ...                 for i in range(3)]
        ...         stored = await asyncio.gather(*acks)
        ...     await store.close()
        ...     return stored
        >>> asyncio.run(demo(os.path.join(tempfile.mkdtemp(), "w.db")))
        [True, True, True]
    """

    def __init__(
        self, store: Store, *, max_queue: int = 100_000, max_batch: int = 2_000, retries: int = 3
    ):
        if max_queue < 1 or max_batch < 1:
            raise ValueError("max_queue, max_batch: must be >= 1")
        self.store = store
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.retries = retries
        self._queue: deque[tuple[FillRecord, asyncio.Future[bool]]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self.batches_committed = 0

    def submit(self, fill: FillRecord) -> asyncio.Future[bool]:
        """Queue ``fill``; the returned future resolves after its commit (see class doc)."""
        if not isinstance(fill, FillRecord):
            raise TypeError(f"fill: expected FillRecord, got {type(fill).__name__}")
        if self._closing or self._task is None:
            raise RuntimeError("FillWriter: not running (use `async with` or start())")
        if len(self._queue) >= self.max_queue:
            raise WriterBackpressure(f"fill writer queue full ({self.max_queue} pending)")
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((fill, fut))
        self._wakeup.set()
        return fut

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="jaxmm-fill-writer")

    async def stop(self) -> None:
        """Commit everything queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def __aenter__(self) -> FillWriter:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[FillRecord, asyncio.Future[bool]]]) -> None:
        delay = 0.05
        for attempt in range(self.retries + 1):
            try:
                stored = set(await self.store.save_fills([f for f, _ in batch]))
                break
            except Exception as exc:  # a failed transaction wrote nothing: safe to retry
                if attempt == self.retries:
                    log.error("fill batch of %d failed after retries: %s", len(batch), exc)
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    return
                await asyncio.sleep(delay)
                delay *= 2
        self.batches_committed += 1
        for fill, fut in batch:
            new = fill.trade_id in stored
            stored.discard(fill.trade_id)  # a duplicate inside the batch is acknowledged False
            if not fut.done():
                fut.set_result(new)
