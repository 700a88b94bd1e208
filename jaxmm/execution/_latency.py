"""Rolling latency statistics per operation (p50 / p95 / p99 / max)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

__all__ = ["LatencyTracker", "LatencyStats", "nearest_rank"]


class LatencyStats(NamedTuple):
    """Statistics over the samples currently in one operation's window (nanoseconds)."""

    count: int
    mean: float
    p50: int
    p95: int
    p99: int
    max: int
    min: int


def nearest_rank(sorted_samples: list[int], pct: float) -> int:
    """Nearest-rank percentile: the smallest sample with at least ``pct``% of samples <= it,
    i.e. ``sorted_samples[ceil(pct / 100 * n) - 1]`` (``pct`` in (0, 100]).

    Example:
        >>> nearest_rank([10, 20, 30, 40], 50), nearest_rank([10, 20, 30, 40], 99)
        (20, 40)
    """
    n = len(sorted_samples)
    if n == 0:
        raise ValueError("sorted_samples: empty")
    if not 0 < pct <= 100:
        raise ValueError(f"pct: must be in (0, 100], got {pct!r}")
    return sorted_samples[max(math.ceil(pct / 100 * n), 1) - 1]


class LatencyTracker:
    """Keeps the last ``window`` samples (and optionally only those younger than
    ``max_age_ns``) per operation name and reports nearest-rank percentiles.

    Recording is O(1) (a deque append); percentiles sort the window on demand.

    Args:
        window: samples kept per operation (int >= 1).
        max_age_ns: if given, samples older than this (by ``clock``) are dropped.
        clock: integer-nanosecond clock used by ``measure``/``start`` and for ages
            (default ``time.perf_counter_ns``).

    Example:
        >>> t = LatencyTracker(window=100)
        >>> for ns in (1_000, 2_000, 3_000, 50_000):
        ...     t.record("submit", ns)
        >>> s = t.stats("submit")
        >>> s.count, s.p50, s.p99, s.max
        (4, 2000, 50000, 50000)
    """

    def __init__(
        self,
        window: int = 10_000,
        *,
        max_age_ns: int | None = None,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        if type(window) is not int or window < 1:
            raise ValueError(f"window: must be an int >= 1, got {window!r}")
        if max_age_ns is not None and (type(max_age_ns) is not int or max_age_ns <= 0):
            raise ValueError(f"max_age_ns: must be None or an int > 0, got {max_age_ns!r}")
        self.window = window
        self.max_age_ns = max_age_ns
        self._clock = clock
        self._samples: dict[str, deque[tuple[int, int]]] = {}

    def record(self, op: str, latency_ns: int, at_ns: int | None = None) -> None:
        """Add one sample (ns >= 0) for ``op``; ``at_ns`` stamps it (default: the clock)."""
        if latency_ns < 0:
            raise ValueError(f"latency_ns: must be >= 0, got {latency_ns!r}")
        d = self._samples.get(op)
        if d is None:
            d = self._samples[op] = deque(maxlen=self.window)
        d.append((self._clock() if at_ns is None else at_ns, latency_ns))

    def start(self) -> int:
        """A start stamp for ``stop``."""
        return self._clock()

    def stop(self, op: str, start_ns: int) -> int:
        """Record ``clock() - start_ns`` for ``op``; returns the latency."""
        now = self._clock()
        lat = now - start_ns
        self.record(op, lat, now)
        return lat

    @contextmanager
    def measure(self, op: str) -> Iterator[None]:
        """Context manager timing its body (also around ``await`` inside ``async`` code)."""
        t0 = self._clock()
        try:
            yield
        finally:
            self.stop(op, t0)

    def _window(self, op: str) -> list[int]:
        d = self._samples.get(op)
        if not d:
            return []
        if self.max_age_ns is not None:
            cutoff = self._clock() - self.max_age_ns
            while d and d[0][0] < cutoff:
                d.popleft()
        return [lat for _, lat in d]

    def samples(self, op: str) -> list[int]:
        """The latencies (ns) in ``op``'s current window, oldest first — the samples
        :meth:`stats` describes (at most ``window``; with ``max_age_ns``, only the young ones).
        A new list (``[]`` for an operation without samples); the tracker keeps its own.

        Example:
            >>> t = LatencyTracker(window=3)
            >>> for ns in (5, 1, 4, 2):
            ...     t.record("refresh", ns)
            >>> t.samples("refresh"), t.samples("unknown")
            ([1, 4, 2], [])
        """
        return self._window(op)

    def stats(self, op: str) -> LatencyStats | None:
        """Statistics of ``op``'s current window, or None if it has no samples."""
        xs = self._window(op)
        if not xs:
            return None
        xs.sort()
        return LatencyStats(
            len(xs),
            sum(xs) / len(xs),
            nearest_rank(xs, 50),
            nearest_rank(xs, 95),
            nearest_rank(xs, 99),
            xs[-1],
            xs[0],
        )

    def operations(self) -> list[str]:
        """Operation names seen so far."""
        return list(self._samples)

    def summary(self) -> dict[str, LatencyStats]:
        """``{op: stats}`` for every operation with samples in its window."""
        out = {}
        for op in self._samples:
            s = self.stats(op)
            if s is not None:
                out[op] = s
        return out

    def reset(self, op: str | None = None) -> None:
        """Forget the samples of ``op`` (or of every operation)."""
        if op is None:
            self._samples.clear()
        else:
            self._samples.pop(op, None)
