"""Synthetic market-event streams (seeded) so tests and examples need no downloaded data.

Event times:

- :func:`poisson_times`: homogeneous Poisson process of rate ``rate`` (i.i.d. exponential
  gaps);
- :func:`hawkes_times`: univariate Hawkes process with exponential kernel,
  ``lambda(t) = mu + sum_{t_i < t} alpha exp(-beta (t - t_i))``, simulated exactly by Ogata's
  thinning (Ogata 1981): between events the intensity only decays, so its value just after
  the current time bounds it until the next candidate. With branching ratio
  ``n = alpha / beta < 1`` the process is stationary with mean intensity
  ``mu / (1 - alpha / beta)`` (Hawkes 1971); the simulation starts empty at ``t = 0``.

Order flow (:func:`l2_stream_from_times`): at every event time one market event, drawn
i.i.d.: a limit order (probability ``p_add``), a cancel (``p_cancel``) or a market order
(the rest), each side with probability 1/2:

- limit order: ``1 + Geometric(size_p)`` lots at ``d`` ticks behind the same side's best price,
  ``d = Geometric(depth_p) - 2`` (so ``d = -1`` improves the touch by one tick when the spread
  is wider than one tick, else it joins the touch); one DEPTH row;
- cancel: one of the ``cancel_levels`` best levels of the side, uniformly, loses a uniform
  ``1 .. size`` lots (never the last lot of the side); one DEPTH row;
- market order: ``1 + Geometric(size_p)`` lots sweep the opposite side from its best price
  (capped so one lot always remains); one TRADE row per level touched (aggressor side, price,
  lots), then the DEPTH rows of those levels, all at the same timestamp.

The mid price is therefore a random walk driven by the flow: it moves when a touch level is
consumed or cancelled away and when a limit order improves the touch. The book starts with
``levels`` levels of ``1 + Geometric(size_p)`` lots per side around ``p0`` (spread one tick).
``local_ts = exchange_ts + feed_latency_ns``.
"""

from __future__ import annotations

import math

import numpy as np

from ._events import _SideLevels, make_events

__all__ = [
    "poisson_times",
    "hawkes_times",
    "l2_stream_from_times",
    "poisson_l2_stream",
    "hawkes_l2_stream",
]


def _pos(name: str, x: float, allow_zero: bool = False) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise ValueError(f"{name}: must be a finite number, got {x!r}")
    if x < 0 or (x == 0 and not allow_zero):
        raise ValueError(f"{name}: must be {'>=' if allow_zero else '>'} 0, got {x!r}")
    return float(x)


def poisson_times(rate: float, t_end: float, seed: int = 0) -> np.ndarray:
    """Event times of a Poisson process of ``rate`` per second on ``[0, t_end]`` (seconds).

    Example:
        >>> from jaxmm.backtest import poisson_times
        >>> t = poisson_times(100.0, 10.0, seed=1)
        >>> 900 < t.size < 1100, bool((t[1:] > t[:-1]).all())
        (True, True)
    """
    rate = _pos("rate", rate)
    t_end = _pos("t_end", t_end)
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    t = 0.0
    block = max(int(rate * t_end * 1.1) + 16, 16)
    while True:
        gaps = rng.exponential(1.0 / rate, block)
        ts = t + np.cumsum(gaps)
        out.append(ts[ts <= t_end])
        if ts[-1] > t_end:
            break
        t = float(ts[-1])
    return np.concatenate(out)


def hawkes_times(mu: float, alpha: float, beta: float, t_end: float, seed: int = 0) -> np.ndarray:
    """Event times (seconds) of an exponential-kernel Hawkes process by Ogata thinning.

    Args:
        mu: baseline intensity (> 0, per second). alpha: jump of the intensity at each event
            (>= 0). beta: decay rate (> 0). Requires ``alpha / beta < 1`` (stationarity).
        t_end: horizon (seconds). seed: NumPy generator seed.

    Example:
        >>> from jaxmm.backtest import hawkes_times
        >>> t = hawkes_times(mu=1.0, alpha=0.5, beta=1.0, t_end=2_000.0, seed=0)
        >>> 3_400 < t.size < 4_600     # mean intensity mu / (1 - alpha/beta) = 2 per second
        True
    """
    mu = _pos("mu", mu)
    alpha = _pos("alpha", alpha, allow_zero=True)
    beta = _pos("beta", beta)
    t_end = _pos("t_end", t_end)
    if alpha / beta >= 1.0:
        raise ValueError(f"alpha: branching ratio alpha/beta must be < 1, got {alpha / beta}")
    rng = np.random.default_rng(seed)
    out: list[float] = []
    t = 0.0
    s = 0.0  # excitation sum at time t
    exp = math.exp
    while True:
        # draw candidates in blocks of uniforms (two per candidate) for speed
        u = rng.random(2048).tolist()
        for j in range(0, 2048, 2):
            lam_bar = mu + s
            w = -math.log(1.0 - u[j]) / lam_bar
            t += w
            if t > t_end:
                return np.asarray(out, dtype=np.float64)
            s *= exp(-beta * w)
            if u[j + 1] * lam_bar <= mu + s:
                out.append(t)
                s += alpha


def l2_stream_from_times(
    times_s: np.ndarray,
    *,
    seed: int = 0,
    p0: int = 10_000,
    levels: int = 20,
    p_add: float = 0.5,
    p_cancel: float = 0.35,
    size_p: float = 0.3,
    depth_p: float = 0.35,
    cancel_levels: int = 5,
    feed_latency_ns: int = 0,
) -> np.ndarray:
    """An L2 event stream (TRADE + DEPTH rows) with one market event per time in ``times_s``.

    The flow model is in the module docstring. Prices are ticks, sizes lots,
    ``exchange_ts = round(times_s * 1e9)`` ns.

    Example:
        >>> import numpy as np
        >>> from jaxmm.backtest import l2_stream_from_times, validate_events
        >>> ev = l2_stream_from_times(np.arange(1, 501) * 1e-3, seed=3)
        >>> len(validate_events(ev)), bool(set(np.unique(ev["kind"]).tolist()) <= {0, 1})
        (0, True)
    """
    if type(p0) is not int or p0 <= levels + 2:
        raise ValueError(f"p0: must be an int > levels + 2 ticks, got {p0!r}")
    if type(levels) is not int or levels < 1:
        raise ValueError(f"levels: must be an int >= 1, got {levels!r}")
    for name, v in (("p_add", p_add), ("p_cancel", p_cancel)):
        _pos(name, v, allow_zero=True)
    if p_add + p_cancel > 1.0:
        raise ValueError(f"p_add + p_cancel: must be <= 1, got {p_add + p_cancel}")
    for name, v in (("size_p", size_p), ("depth_p", depth_p)):
        if not 0.0 < _pos(name, v) <= 1.0:
            raise ValueError(f"{name}: must be in (0, 1], got {v!r}")
    if type(cancel_levels) is not int or cancel_levels < 1:
        raise ValueError(f"cancel_levels: must be an int >= 1, got {cancel_levels!r}")
    if type(feed_latency_ns) is not int or feed_latency_ns < 0:
        raise ValueError(f"feed_latency_ns: must be an int >= 0, got {feed_latency_ns!r}")
    times = np.asarray(times_s, dtype=np.float64)
    if times.ndim != 1 or (times.size > 1 and np.any(times[1:] < times[:-1])):
        raise ValueError("times_s: must be a sorted one-dimensional array")
    rng = np.random.default_rng(seed)
    n = times.size
    ts_ns = np.round(times * 1e9).astype(np.int64).tolist()
    u_kind = rng.random(n).tolist()
    u_side = rng.random(n).tolist()
    sizes = (rng.geometric(size_p, n) + 0).tolist()
    depths = (rng.geometric(depth_p, n) - 2).tolist()
    u_pick = rng.random(n).tolist()
    u_amt = rng.random(n).tolist()
    books = (_SideLevels(1), _SideLevels(-1))
    r_ts: list[int] = []
    r_kind: list[int] = []
    r_side: list[int] = []
    r_price: list[int] = []
    r_qty: list[int] = []
    init = rng.geometric(size_p, 2 * levels).tolist()
    for i in range(levels):
        for s, p in ((0, p0 - 1 - i), (1, p0 + i)):
            q = init[2 * i + s]
            books[s].set(p, q)
            r_ts.append(0)
            r_kind.append(1)
            r_side.append(s)
            r_price.append(p)
            r_qty.append(q)
    for i in range(n):
        t = ts_ns[i]
        s = 0 if u_side[i] < 0.5 else 1
        b = books[s]
        o = books[s ^ 1]
        uk = u_kind[i]
        if uk < p_add:
            best = b.best()
            obest = o.best()
            d = depths[i]
            if d < 0 and abs(obest - best) <= 1:
                d = 0
            p = best - d if s == 0 else best + d
            if p < 1:
                p = 1
            q = b.lv.get(p, 0) + sizes[i]
            b.set(p, q)
            r_ts.append(t)
            r_kind.append(1)
            r_side.append(s)
            r_price.append(p)
            r_qty.append(q)
        elif uk < p_add + p_cancel:
            keys = b.keys
            m = min(cancel_levels, len(keys))
            p = b.sign * keys[len(keys) - 1 - int(u_pick[i] * m)]
            have = b.lv[p]
            total_one = len(keys) == 1
            cq = 1 + int(u_amt[i] * have)
            if total_one and cq >= have:
                cq = have - 1
            if cq <= 0:
                continue
            b.set(p, have - cq)
            r_ts.append(t)
            r_kind.append(1)
            r_side.append(s)
            r_price.append(p)
            r_qty.append(have - cq)
        else:
            total = sum(o.lv.values())
            left = min(sizes[i], total - 1)
            touched: list[int] = []
            while left > 0:
                p = o.best()
                have = o.lv[p]
                x = have if have < left else left
                left -= x
                r_ts.append(t)
                r_kind.append(0)
                r_side.append(s)
                r_price.append(p)
                r_qty.append(x)
                o.set(p, have - x)
                touched.append(p)
            for p in touched:
                r_ts.append(t)
                r_kind.append(1)
                r_side.append(s ^ 1)
                r_price.append(p)
                r_qty.append(o.lv.get(p, 0))
    ex = np.asarray(r_ts, dtype=np.int64)
    return make_events(ex, r_kind, r_side, r_price, r_qty, local_ts=ex + feed_latency_ns)


def poisson_l2_stream(n_events: int, *, rate: float = 1_000.0, seed: int = 0, **flow) -> np.ndarray:
    """An L2 stream of ``n_events`` market events at Poisson times of ``rate`` per second.

    ``flow`` goes to :func:`l2_stream_from_times` (its ``seed`` is this seed).

    Example:
        >>> from jaxmm.backtest import poisson_l2_stream
        >>> ev = poisson_l2_stream(1_000, seed=0)
        >>> len(ev) >= 1_000 and ev.dtype.names[0] == "exchange_ts"
        True
    """
    if type(n_events) is not int or n_events < 0:
        raise ValueError(f"n_events: must be an int >= 0, got {n_events!r}")
    rate = _pos("rate", rate)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    times = np.cumsum(rng.exponential(1.0 / rate, n_events))
    return l2_stream_from_times(times, seed=seed, **flow)


def hawkes_l2_stream(
    t_end: float, *, mu: float, alpha: float, beta: float, seed: int = 0, **flow
) -> np.ndarray:
    """An L2 stream whose market events arrive as a Hawkes process (:func:`hawkes_times`).

    Example:
        >>> from jaxmm.backtest import hawkes_l2_stream
        >>> ev = hawkes_l2_stream(10.0, mu=50.0, alpha=40.0, beta=100.0, seed=0)
        >>> len(ev) > 500
        True
    """
    times = hawkes_times(mu, alpha, beta, t_end, seed=seed)
    return l2_stream_from_times(times, seed=seed, **flow)
