"""Batched, durable fill writing off the engine's hot path.

Latency model. A fill submitted at time t is acknowledged at t + w + c, where w is the time it
waits in the queue and c the commit time of its batch. The writer never lingers: as soon as a
commit finishes and the queue is non-empty, the next batch starts. Under a load of λ fills/s
below capacity the batch is what arrived during the previous commit (≈ λ·c fills), so the
latency stays near two commit times; under overload (a burst or a backlog) each batch is capped
so that its commit takes about ``batch_budget_ms``: cap = budget / (commit seconds per fill),
the cost per fill being an exponentially weighted average over recent batches of >= 64 fills,
clamped to ``[64, max_batch]``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence

from ._records import FillRecord
from ._repo import Store

__all__ = ["FillWriter", "WriterBackpressure"]

log = logging.getLogger(__name__)

_MIN_BATCH_CAP = 64
_EWMA = 0.2  # weight of the newest batch in the per-fill commit cost
_INITIAL_PER_FILL_S = 20e-6  # measured on PostgreSQL 15 here; replaced after the first batches

AckCallback = Callable[[Sequence[tuple[FillRecord, bool]]], None]


class WriterBackpressure(RuntimeError):
    """The writer's queue is full: the engine must slow down (nothing was dropped)."""


def _is_data_error(exc: BaseException) -> bool:
    """True for errors caused by the rows themselves (a constraint or data error): retrying the
    same batch cannot succeed, so the writer isolates the offending fill instead."""
    from sqlalchemy.exc import DataError, IntegrityError

    if isinstance(exc, (DataError, IntegrityError)):
        return True
    state = getattr(exc, "sqlstate", None)  # asyncpg: SQLSTATE class 22 data, 23 integrity
    return isinstance(state, str) and state[:2] in ("22", "23")


class FillWriter:
    """A writer task with a bounded queue that commits fills in batches.

    ``submit(fill)`` never blocks: it returns a future that resolves, **after the batch's
    transaction has committed**, to True (stored) or False (its trade id was already stored, or
    an earlier fill of the same batch had it); only then may the engine treat the fill as
    acknowledged. When the queue holds ``max_queue`` fills, ``submit`` raises
    :class:`WriterBackpressure` — the engine is told, the fill is never silently dropped.

    Batching is latency-aware (module docstring): no linger, the next batch starts as soon as
    the previous commit finished, each batch capped by ``max_batch`` and by a commit-time budget
    ``batch_budget_ms``. All batches go through one dedicated connection
    (:meth:`Store.fill_sink`).

    Failures: a batch that fails for a transient reason (connection lost, timeout) is retried
    ``retries`` times with exponential backoff on a fresh connection, then each of its futures
    gets the exception. A batch rejected for its data (a constraint violation) is split in
    halves until the offending fill is alone: the other fills are stored and acknowledged, the
    offending one's future gets the exception. Nothing is acknowledged that is not committed.
    After a retry, a fill that the failed attempt did commit (the connection died after the
    commit but before the answer) resolves to False: it is stored, once.

    ``on_ack``, if given, is called once per committed batch with ``[(fill, stored), ...]`` in
    submission order, after the commit and before the batch's futures resolve — a hook to
    observe acknowledgements (e.g. to journal them); an exception it raises is logged and does
    not affect the acknowledgements.

    Example:
        >>> import asyncio, tempfile, os
        >>> from jaxmm.store import Store, FillRecord, FillWriter
        >>> async def demo(path):
        ...     store = await Store.open(f"sqlite+aiosqlite:///{path}", migrate=True)
        ...     seen = []
        ...     on_ack = lambda acks: seen.extend(f.trade_id for f, _ in acks)
        ...     async with FillWriter(store, on_ack=on_ack) as writer:
        ...         acks = [writer.submit(FillRecord(f"t{i}", "o", "X", "buy", 1, 1))
        ...                 for i in range(3)]
        ...         stored = await asyncio.gather(*acks)
        ...     await store.close()
        ...     return stored, seen
        >>> asyncio.run(demo(os.path.join(tempfile.mkdtemp(), "w.db")))
        ([True, True, True], ['t0', 't1', 't2'])
    """

    def __init__(
        self,
        store: Store,
        *,
        max_queue: int = 100_000,
        max_batch: int = 2_000,
        batch_budget_ms: float = 10.0,
        retries: int = 3,
        on_ack: AckCallback | None = None,
    ):
        for name, value, low in (("max_queue", max_queue, 1), ("max_batch", max_batch, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: must be an integer >= {low}, got {value!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries: must be an integer >= 0, got {retries!r}")
        if not isinstance(batch_budget_ms, (int, float)) or not (
            math.isfinite(batch_budget_ms) and batch_budget_ms > 0
        ):
            raise ValueError(f"batch_budget_ms: must be finite and > 0, got {batch_budget_ms!r}")
        if on_ack is not None and not callable(on_ack):
            raise ValueError(f"on_ack: must be callable or None, got {type(on_ack).__name__}")
        self.store = store
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.batch_budget_ms = float(batch_budget_ms)
        self.retries = retries
        self.on_ack = on_ack
        self._queue: deque[tuple[FillRecord, asyncio.Future[bool]]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._sink = store.fill_sink()
        self._per_fill_s = _INITIAL_PER_FILL_S
        self.batches_committed = 0
        self.fills_committed = 0
        self.max_commit_s = 0.0

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
        """Fills queued and not yet taken into a batch."""
        return len(self._queue)

    @property
    def batch_cap(self) -> int:
        """The current largest batch: ``max_batch`` and the commit-time budget (module doc)."""
        by_budget = int(self.batch_budget_ms * 1e-3 / self._per_fill_s)
        return max(1, min(self.max_batch, max(_MIN_BATCH_CAP, by_budget)))

    def stats(self) -> dict[str, float]:
        """Batches and fills committed, mean batch size, the current batch cap, the estimated
        commit cost per fill (µs) and the longest commit (ms)."""
        b = self.batches_committed
        return {
            "batches": float(b),
            "fills": float(self.fills_committed),
            "mean_batch": self.fills_committed / b if b else 0.0,
            "batch_cap": float(self.batch_cap),
            "commit_us_per_fill": self._per_fill_s * 1e6,
            "max_commit_ms": self.max_commit_s * 1e3,
        }

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("FillWriter: already started")
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="jaxmm-fill-writer")

    async def stop(self) -> None:
        """Commit everything queued, then stop and release the connection."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await self._task
            finally:
                self._task = None

    async def __aenter__(self) -> FillWriter:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                q = self._queue
                batch = [q.popleft() for _ in range(min(self.batch_cap, len(q)))]
                await self._commit(batch)
        finally:
            while self._queue:  # only when cancelled: tell every waiter, acknowledge nothing
                _, fut = self._queue.popleft()
                if not fut.done():
                    fut.set_exception(RuntimeError("FillWriter stopped before the commit"))
            await self._sink.close()

    async def _save(self, fills: list[FillRecord]) -> list[str]:
        """One batch, retried on transient errors; data errors propagate at once."""
        delay = 0.05
        for attempt in range(self.retries + 1):
            try:
                return await self._sink.save(fills)
            except Exception as exc:  # a failed transaction wrote nothing: safe to retry
                if _is_data_error(exc) or attempt == self.retries:
                    raise
                log.warning("fill batch of %d failed (%s); retrying", len(fills), exc)
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def _commit(self, batch: list[tuple[FillRecord, asyncio.Future[bool]]]) -> None:
        fills = [f for f, _ in batch]
        t0 = time.perf_counter()
        try:
            stored = set(await self._save(fills))
        except asyncio.CancelledError:
            for _, fut in batch:  # the commit's outcome is unknown: not acknowledged
                fut.cancel()
            raise
        except Exception as exc:
            if _is_data_error(exc) and len(batch) > 1:
                mid = len(batch) // 2  # isolate the offending fill; store the others
                await self._commit(batch[:mid])
                await self._commit(batch[mid:])
                return
            log.error("fill batch of %d failed: %s", len(batch), exc)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        dt = time.perf_counter() - t0
        self.max_commit_s = max(self.max_commit_s, dt)
        if len(batch) >= _MIN_BATCH_CAP:
            self._per_fill_s += _EWMA * (dt / len(batch) - self._per_fill_s)
        self.batches_committed += 1
        self.fills_committed += len(batch)
        acks = []
        for fill in fills:
            new = fill.trade_id in stored
            stored.discard(fill.trade_id)  # a duplicate inside the batch is acknowledged False
            acks.append((fill, new))
        if self.on_ack is not None:
            try:
                self.on_ack(acks)
            except Exception:
                log.exception("FillWriter on_ack callback failed")
        for (_, new), (_, fut) in zip(acks, batch, strict=True):
            if not fut.done():
                fut.set_result(new)
