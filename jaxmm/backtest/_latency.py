"""Latency models of the replay: feed, order-entry and response latency (integer ns).

Three latencies are separate (``docs/backtesting.md``, "Event replay"):

- **feed**: market event at the exchange -> our strategy sees it
  (``local_ts = exchange_ts + feed``; by default the data's own ``local_ts`` is used);
- **order entry**: strategy decision at local time ``t`` -> the order (or cancel, or quote
  replacement) is live at the exchange at ``t + entry``;
- **response**: exchange produced an ack / fill / cancel at ``t`` -> the strategy knows at
  ``t + response``.

Models: :class:`ConstantLatency` and :class:`EmpiricalLatency` (resampled with replacement
from a given sample array). Randomness comes only from the ``numpy.random.Generator`` the
replay passes to :meth:`sampler` (seeded from the run's seed), so a seed and a configuration
fully determine every draw. Negative, NaN, infinite or non-integral latencies are rejected
at construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["ConstantLatency", "EmpiricalLatency", "LatencyModel"]

_BLOCK = 4096


def _check_ns(name: str, x: Any) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind == "b" or a.dtype.kind not in "iuf":
        raise ValueError(f"{name}: must be integer nanoseconds, got dtype {a.dtype}")
    if a.dtype.kind == "f":
        if np.any(np.isnan(a)):
            raise ValueError(f"{name}: NaN latency")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: infinite latency")
        if np.any(a != np.round(a)):
            raise ValueError(f"{name}: latencies must be whole nanoseconds")
    if np.any(a < 0):
        raise ValueError(f"{name}: latency must be >= 0 ns, got {a.min()}")
    return a.astype(np.int64)


class ConstantLatency:
    """A fixed latency of ``ns`` nanoseconds (>= 0).

    Example:
        >>> from jaxmm.backtest import ConstantLatency
        >>> import numpy as np
        >>> draw = ConstantLatency(1_500).sampler(np.random.default_rng(0))
        >>> draw(), ConstantLatency(7).sample(np.random.default_rng(0), 3).tolist()
        (1500, [7, 7, 7])
    """

    __slots__ = ("ns",)

    def __init__(self, ns: int):
        a = _check_ns("ns", ns)
        if a.ndim != 0:
            raise ValueError(f"ns: must be a scalar, got shape {a.shape}")
        self.ns = int(a)

    def __repr__(self) -> str:
        return f"ConstantLatency({self.ns})"

    @property
    def min_ns(self) -> int:
        """Smallest latency the model can produce."""
        return self.ns

    def sampler(self, rng: np.random.Generator) -> Callable[[], int]:
        """A zero-argument function returning the next latency (ns, int)."""
        ns = self.ns
        return lambda: ns

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` latencies as an int64 array."""
        return np.full(n, self.ns, dtype=np.int64)


class EmpiricalLatency:
    """Latencies drawn with replacement (uniformly) from observed ``samples`` (ns, >= 0).

    Args:
        samples: one-dimensional, non-empty array of integer ns (floats must be whole).

    Example:
        >>> from jaxmm.backtest import EmpiricalLatency
        >>> import numpy as np
        >>> m = EmpiricalLatency([100, 200, 300])
        >>> a = m.sample(np.random.default_rng(1), 5)
        >>> bool(np.all(np.isin(a, [100, 200, 300]))), m.min_ns
        (True, 100)
    """

    __slots__ = ("samples",)

    def __init__(self, samples: Any):
        a = _check_ns("samples", samples)
        if a.ndim != 1 or a.shape[0] == 0:
            raise ValueError(f"samples: must be a non-empty 1-d array, got shape {a.shape}")
        self.samples = a
        self.samples.setflags(write=False)

    def __repr__(self) -> str:
        return f"EmpiricalLatency(n={self.samples.shape[0]})"

    @property
    def min_ns(self) -> int:
        """Smallest latency the model can produce."""
        return int(self.samples.min())

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` latencies: ``samples[rng.integers(0, len(samples), n)]``."""
        return self.samples[rng.integers(0, self.samples.shape[0], n)]

    def sampler(self, rng: np.random.Generator) -> Callable[[], int]:
        """A zero-argument function returning the next latency; draws in blocks of 4096
        (the sequence is that of consecutive ``sample(rng, 4096)`` calls)."""
        buf: list[int] = []

        def draw() -> int:
            if not buf:
                buf.extend(reversed(self.sample(rng, _BLOCK).tolist()))
            return buf.pop()

        return draw


LatencyModel = ConstantLatency | EmpiricalLatency
