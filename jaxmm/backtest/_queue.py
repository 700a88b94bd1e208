"""Queue-position models: how much of a cancel at our price level was ahead of our order.

L2 data reports only the total size of a level, so when a level with one of our orders
shrinks by ``c`` lots for a reason other than a trade (a *cancel*; how a decrease is split
between trades and cancels is stated in ``docs/backtesting.md``), the market lots ahead of
us, ``a``, must be modelled. With ``L`` the market lots at the level before the cancel and
``b = L - a`` the lots behind us, every model returns the new ``a'`` in
``[max(a - c, 0), min(a, L - c)]`` -- the cancel removes at least ``c - b`` lots from ahead
(there are only ``b`` behind) and at most ``min(c, a)``:

- :class:`OptimisticQueue`: ``a' = max(a - c, 0)`` -- every cancel is ahead of us;
- :class:`PessimisticQueue` (risk-averse): ``a' = min(a, L - c)`` -- cancels come from
  behind us; we advance only on trades (or when the level shrinks below our position);
- :class:`ProbabilisticQueue`: the share of the cancel taken from ahead of us is
  ``f(x) = x^n / (x^n + (1 - x)^n)`` with ``x = a / L`` the fraction of the level ahead of
  us, ``a' = a - clip(f(x) c, c - b, min(c, a))``. ``n = 1``: cancels are spread uniformly
  over the queue (proportional); ``n > 1``: they concentrate in the larger part of the queue;
  ``n -> 0``: half of each cancel is ahead. (A power-law family in the spirit of
  hftbacktest's probabilistic queue models; the orientation and clipping here are ours.)

Since every ``a'`` lies between the optimistic and the pessimistic value and both of those
maps are non-decreasing in ``a``, on one event stream with the same orders the queue ahead
satisfies optimistic <= probabilistic <= pessimistic at every event, hence cumulative fills
optimistic >= probabilistic >= pessimistic (tested with hypothesis).

``a`` may be fractional under the probabilistic model; a trade of ``v`` lots reaching the
level fills ``floor(v - a)`` lots of the order (clipped to its size).
"""

from __future__ import annotations

import math

__all__ = ["OptimisticQueue", "PessimisticQueue", "ProbabilisticQueue", "QueueModel"]


class OptimisticQueue:
    """Every cancel at our level is ahead of us: ``a' = max(a - c, 0)``.

    Example:
        >>> from jaxmm.backtest import OptimisticQueue
        >>> OptimisticQueue().after_cancel(ahead=5.0, level=8.0, cancelled=3.0)
        2.0
    """

    name = "optimistic"

    def after_cancel(self, ahead: float, level: float, cancelled: float) -> float:
        """New lots ahead of us after ``cancelled`` lots left a level of ``level`` lots."""
        a = ahead - cancelled
        return a if a > 0.0 else 0.0

    def __repr__(self) -> str:
        return "OptimisticQueue()"


class PessimisticQueue:
    """Cancels come from behind us: ``a' = min(a, L - c)`` (risk-averse).

    Example:
        >>> from jaxmm.backtest import PessimisticQueue
        >>> m = PessimisticQueue()
        >>> m.after_cancel(5.0, 8.0, 3.0), m.after_cancel(5.0, 8.0, 6.0)
        (5.0, 2.0)
    """

    name = "pessimistic"

    def after_cancel(self, ahead: float, level: float, cancelled: float) -> float:
        """New lots ahead of us after ``cancelled`` lots left a level of ``level`` lots."""
        rest = level - cancelled
        return ahead if ahead < rest else (rest if rest > 0.0 else 0.0)

    def __repr__(self) -> str:
        return "PessimisticQueue()"


class ProbabilisticQueue:
    """A share ``f(a / L)`` of each cancel is ahead of us, ``f(x) = x^n / (x^n + (1-x)^n)``.

    Args:
        n: power (float > 0); 1 = proportional.

    Example:
        >>> from jaxmm.backtest import ProbabilisticQueue
        >>> m = ProbabilisticQueue(n=1.0)
        >>> m.after_cancel(ahead=2.0, level=8.0, cancelled=4.0)   # f(1/4) = 1/4: 1 lot ahead
        1.0
        >>> m.share(0.5), ProbabilisticQueue(3.0).share(0.25) == 0.25**3 / (0.25**3 + 0.75**3)
        (0.5, True)
    """

    name = "probabilistic"

    def __init__(self, n: float = 1.0):
        if isinstance(n, bool) or not isinstance(n, int | float) or not math.isfinite(n):
            raise ValueError(f"n: must be a finite number > 0, got {n!r}")
        if n <= 0:
            raise ValueError(f"n: must be > 0, got {n!r}")
        self.n = float(n)

    def __repr__(self) -> str:
        return f"ProbabilisticQueue(n={self.n})"

    def share(self, x: float) -> float:
        """``f(x) = x^n / (x^n + (1-x)^n)`` for ``x`` in ``[0, 1]``."""
        if x <= 0.0:
            return 0.0
        if x >= 1.0:
            return 1.0
        xn = x**self.n
        return xn / (xn + (1.0 - x) ** self.n)

    def after_cancel(self, ahead: float, level: float, cancelled: float) -> float:
        """New lots ahead of us after ``cancelled`` lots left a level of ``level`` lots."""
        if level <= 0.0:
            return 0.0
        take = self.share(ahead / level) * cancelled
        lo = cancelled - (level - ahead)
        hi = cancelled if cancelled < ahead else ahead
        if take < lo:
            take = lo
        if take > hi:
            take = hi
        a = ahead - take
        return a if a > 0.0 else 0.0


QueueModel = OptimisticQueue | PessimisticQueue | ProbabilisticQueue
