"""Gamma/vega hedge suggestions with listed options: the cheapest lot-rounded pair.

Given one underlying's portfolio gamma ``G`` and vega ``V`` (POSITION Greeks, raw units: gamma
per unit spot, vega per 1.00 vol) and listed options with their best bid / ask and unit Greeks
(per one unit of underlying), every pair ``(i, j)`` of candidates is solved exactly:

    [ g_i  g_j ] [ x_i ]     [ G ]
    [ v_i  v_j ] [ x_j ] = - [ V ]        g, v per CONTRACT: unit Greek x multiplier

(Cramer's rule; pairs with ``|det| <= 1e-12 |g_i v_j| + |g_j v_i|`` scale, i.e. parallel Greek
vectors, are skipped). The contracts ``x`` are rounded to the nearest whole lot (as
:func:`jaxmm.risk.gamma_vega_hedge`, which builds the chosen pair's orders), so the residual
gamma and vega are each at most half a lot of each leg's Greek:
``|G + g_i x_i + g_j x_j| <= (|g_i| lot_i + |g_j| lot_j) / 2``.

Cost of crossing the spread (money): ``sum_k |x_k| m_k (ask_k - mid_k)`` for buys and
``(mid_k - bid_k)`` for sells (``mid = (bid + ask) / 2``); the pair with the lowest cost is
suggested (ties: the smaller total number of contracts). The suggestion also reports the
premium paid (money, + = paid), the delta the options add (hedge it in the underlying) and
the continuous solution before rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..portfolio import Instrument
from ..risk import HedgeOrder, gamma_vega_hedge

__all__ = ["ListedOption", "HedgeSuggestion", "solve_pair", "suggest_gamma_vega_hedge"]


@dataclass(frozen=True)
class ListedOption:
    """A listed option that can be traded for the hedge.

    Attributes:
        instrument: the :class:`jaxmm.portfolio.Instrument` (an option; multiplier, lot).
        bid, ask: best prices per unit of underlying, ``0 <= bid <= ask``, finite.
        delta, gamma, vega: unit Greeks per one unit of underlying (raw).

    Example:
        >>> from jaxmm.portfolio import Instrument
        >>> o = ListedOption(Instrument.option("C", "X", strike=100.0, expiry=0.25,
        ...                  is_call=True, multiplier=1.0), 3.9, 4.1, 0.53, 0.039, 19.8)
        >>> o.mid
        4.0
    """

    instrument: Instrument
    bid: float
    ask: float
    delta: float
    gamma: float
    vega: float

    def __post_init__(self) -> None:
        if not isinstance(self.instrument, Instrument) or not self.instrument.is_option:
            raise ValueError("instrument: expected an option Instrument")
        for name in ("bid", "ask", "delta", "gamma", "vega"):
            x = float(getattr(self, name))
            if not math.isfinite(x):
                raise ValueError(f"{name}: must be finite, got {getattr(self, name)!r}")
            object.__setattr__(self, name, x)
        if self.bid < 0:
            raise ValueError(f"bid: must be >= 0, got {self.bid!r}")
        if self.ask < self.bid:
            raise ValueError(f"ask: must be >= bid ({self.bid}), got {self.ask!r}")

    @property
    def mid(self) -> float:
        """``(bid + ask) / 2``."""
        return 0.5 * (self.bid + self.ask)


@dataclass(frozen=True)
class HedgeSuggestion:
    """The suggested pair and its consequences (money in the underlying's currency).

    Attributes:
        orders: lot-rounded :class:`jaxmm.risk.HedgeOrder` s (zero-lot legs omitted).
        contracts: signed contracts per leg of the pair (same order as ``pair``).
        pair: the two candidate instrument ids.
        exact: the continuous solution (contracts) before rounding.
        residual_gamma, residual_vega: portfolio gamma / vega after the orders fill.
        added_delta: delta the orders add (units of underlying).
        cost: spread-crossing cost, ``sum |x| m (ask - mid | mid - bid)``, money >= 0.
        premium: ``sum x m (ask if buy else bid)``, money (+ = paid).
    """

    orders: tuple[HedgeOrder, ...]
    contracts: tuple[int, int]
    pair: tuple[str, str]
    exact: tuple[float, float]
    residual_gamma: float
    residual_vega: float
    added_delta: float
    cost: float
    premium: float


def solve_pair(gamma: float, vega: float, a: ListedOption, b: ListedOption) -> tuple[float, float]:
    """Contracts ``(x_a, x_b)`` of the two options that make gamma and vega exactly zero
    (Cramer's rule on the 2x2 system of the module docstring; ``ValueError`` if singular).

    Example:
        >>> from jaxmm.portfolio import Instrument
        >>> mk = lambda i, g, v: ListedOption(Instrument.option(i, "X", strike=100.0,
        ...     expiry=0.5, is_call=True, multiplier=1.0), 1.0, 1.1, 0.5, g, v)
        >>> solve_pair(-3.0, -20.0, mk("A", 1.0, 0.0), mk("B", 0.0, 10.0))
        (3.0, 2.0)
    """
    ga, va = a.gamma * a.instrument.multiplier, a.vega * a.instrument.multiplier
    gb, vb = b.gamma * b.instrument.multiplier, b.vega * b.instrument.multiplier
    det = ga * vb - gb * va
    if not abs(det) > 1e-12 * (abs(ga * vb) + abs(gb * va)):
        raise ValueError(f"pair: {a.instrument.id!r} and {b.instrument.id!r} have parallel Greeks")
    return ((-gamma * vb + vega * gb) / det, (-vega * ga + gamma * va) / det)


def suggest_gamma_vega_hedge(
    gamma: float,
    vega: float,
    candidates: Sequence[ListedOption],
    *,
    max_contracts: float = math.inf,
) -> HedgeSuggestion | None:
    """The cheapest lot-rounded pair of listed options that neutralises ``gamma`` and
    ``vega`` (module docstring). ``None`` when no pair is solvable within ``max_contracts``
    contracts per leg.

    Args:
        gamma, vega: the underlying's position gamma and vega (raw) to neutralise.
        candidates: :class:`ListedOption` s of ONE underlying (at least 2).
        max_contracts: largest ``|contracts|`` allowed per leg.

    Example:
        >>> from jaxmm.portfolio import Instrument
        >>> mk = lambda i, g, v, bid, ask: ListedOption(Instrument.option(i, "X",
        ...     strike=100.0, expiry=0.5, is_call=True, multiplier=1.0), bid, ask, 0.5, g, v)
        >>> cands = [mk("A", 1.0, 0.0, 1.0, 1.2), mk("B", 0.0, 10.0, 2.0, 2.1),
        ...          mk("C", 2.0, 5.0, 3.0, 3.4)]
        >>> s = suggest_gamma_vega_hedge(-3.0, -20.0, cands)
        >>> s.pair, s.contracts, round(s.cost, 12)
        (('A', 'B'), (3, 2), 0.4)
    """
    for name, x in (("gamma", gamma), ("vega", vega), ("max_contracts", max_contracts)):
        if math.isnan(float(x)) or (name != "max_contracts" and not math.isfinite(float(x))):
            raise ValueError(f"{name}: must be finite, got {x!r}")
    if max_contracts <= 0:
        raise ValueError(f"max_contracts: must be > 0, got {max_contracts!r}")
    cands = list(candidates)
    if len(cands) < 2:
        raise ValueError(f"candidates: need at least 2 listed options, got {len(cands)}")
    ids = [c.instrument.id for c in cands]
    if len(set(ids)) != len(ids):
        raise ValueError("candidates: duplicate instrument ids")
    if len({c.instrument.underlying for c in cands}) != 1:
        raise ValueError("candidates: must all be options on one underlying")
    m = np.array([c.instrument.multiplier for c in cands])
    lot = np.array([c.instrument.lot_size for c in cands], np.float64)
    g = np.array([c.gamma for c in cands]) * m
    v = np.array([c.vega for c in cands]) * m
    half_buy = np.array([c.ask - c.mid for c in cands]) * m
    half_sell = np.array([c.mid - c.bid for c in cands]) * m
    i, j = np.triu_indices(len(cands), k=1)
    det = g[i] * v[j] - g[j] * v[i]
    ok = np.abs(det) > 1e-12 * (np.abs(g[i] * v[j]) + np.abs(g[j] * v[i]))
    safe = np.where(ok, det, 1.0)
    xi = (-gamma * v[j] + vega * g[j]) / safe
    xj = (-vega * g[i] + gamma * v[i]) / safe
    ni = np.rint(xi / lot[i]) * lot[i]
    nj = np.rint(xj / lot[j]) * lot[j]
    ok &= (np.abs(ni) <= max_contracts) & (np.abs(nj) <= max_contracts)
    if not ok.any():
        return None

    def side_cost(n, k):
        return np.where(n > 0, n * half_buy[k], -n * half_sell[k])

    cost = side_cost(ni, i) + side_cost(nj, j)
    size = np.abs(ni) + np.abs(nj)
    order = np.lexsort((size, np.where(ok, cost, np.inf)))
    best = int(order[0])
    a, b = cands[int(i[best])], cands[int(j[best])]
    units = {c.instrument.id: (c.delta, c.gamma, c.vega) for c in (a, b)}
    h = gamma_vega_hedge(gamma, vega, [a.instrument, b.instrument], units)
    signed = {o.instrument: int(o.side) * o.qty for o in h.orders}
    ca, cb = signed.get(a.instrument.id, 0), signed.get(b.instrument.id, 0)
    price = lambda c, n: c.ask if n > 0 else c.bid
    spread = lambda c, n: n * (c.ask - c.mid) if n > 0 else -n * (c.mid - c.bid)
    return HedgeSuggestion(
        orders=h.orders,
        contracts=(ca, cb),
        pair=(a.instrument.id, b.instrument.id),
        exact=(float(xi[best]), float(xj[best])),
        residual_gamma=h.residual_gamma,
        residual_vega=h.residual_vega,
        added_delta=h.added_delta,
        cost=float(
            spread(a, ca) * a.instrument.multiplier + spread(b, cb) * b.instrument.multiplier
        ),
        premium=float(
            ca * price(a, ca) * a.instrument.multiplier
            + cb * price(b, cb) * b.instrument.multiplier
        ),
    )
