"""Term-structure (calendar) and butterfly arbitrage that is tradable on the live book.

Inputs: the best bid / ask of every listed option (:class:`BookQuote`, prices per ONE unit of
underlying, as the book's edge floats) and the market the forwards come from: a
:class:`jaxmm.vol.VolSurface` (its ``spot``, ``rate``, ``dividend``; a grid of implied vols
becomes one with :meth:`VolSurface.from_grid`) or an explicit ``spot``, ``rate``,
``dividend``. Options are European; ``F(T) = S exp((r - q) T)``; ``fee`` is charged per unit of
each leg bought or sold, in price units (a per-contract fee divided by the multiplier).

The tests are model-free static-arbitrage bounds evaluated at EXECUTABLE prices: we buy at the
ask, sell at the bid and pay ``fee`` per unit traded. ``edge`` is the cash the structure brings
in at execution, per structure, after fees; its payoff afterwards is never negative, so
``edge > 0`` is a riskless profit. An opportunity is reported when
``edge > min_edge + 1e-12 x gross premium of the legs`` (floating-point rounding of prices
that are exactly at the bound is not an edge).

**Calendar** (near ``T1`` < far ``T2``, same type). With ``Delta = T2 - T1`` and
``a = exp(q Delta)``, a European option held to ``T1`` dominates by Jensen's inequality:
a far call of strike ``K2 <= K1 F(T2) / F(T1)`` is worth at ``T1`` at least
``exp(-q Delta) (S_T1 - K1)^+`` (a far put of strike ``K2 >= K1 F(T2) / F(T1)`` at least
``exp(-q Delta) (K1 - S_T1)^+``). So ``a`` far options cover one near option, and the bound
``a C(K2, T2) >= C(K1, T1)`` (the total variance ``w(k, T)`` non-decreasing in ``T`` at fixed
``k = ln(K / F(T))``, in prices; equal strikes when ``r = q``) is tested as

    edge = bid(K1, T1) - a ask(K2, T2) - fee (1 + a) > 0

with ``K2`` the listed strike nearest to ``K1 F(T2) / F(T1)`` on the dominating side (calls:
the largest ``K2 <= K1 F2 / F1``; puts: the smallest ``K2 >= K1 F2 / F1``). Legs: sell 1 near,
buy ``a`` far.

**Butterfly** (one expiry and type, strikes ``K1 < K2 < K3``, ``lambda = (K3 - K2) / (K3 -
K1)``). Prices are convex in strike: ``lambda C(K1) + (1 - lambda) C(K3) - C(K2) >= 0``
(``C(K1) - 2 C(K2) + C(K3) >= 0`` for equal spacing). Tested with the wings bought at the ask
and the body sold at the bid:

    edge = bid(K2) - lambda ask(K1) - (1 - lambda) ask(K3) - 2 fee > 0

over every strike triple with quotes (not only neighbours); the best triple per body strike is
reported. Legs: buy ``lambda`` K1, sell 1 K2, buy ``1 - lambda`` K3 (payoff ``>= 0``).

Signals are published as :class:`jaxmm.events.ArbitrageSignal` (``legs`` = leg symbols in the
order above, ``edge`` in price units per structure). :func:`capture_orders` turns the best
opportunity into whole-lot target orders that pass
:meth:`jaxmm.engine.UnderlyingManager.check_basket` (every partial fill within the limits);
long legs are rounded up and short legs down, which keeps the payoff non-negative, and the
order-level edge is recomputed on the integer quantities.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..events import ArbitrageSignal, EventBroadcaster
from ..vol import VolSurface

__all__ = [
    "BookQuote",
    "ArbLeg",
    "ArbOpportunity",
    "find_calendar_arbitrage",
    "find_butterfly_arbitrage",
    "find_arbitrage",
    "publish_signals",
    "capture_orders",
]

_REL = 1e-12  # relative tolerance of strike comparisons
_NOISE = 1e-12  # an edge must exceed min_edge + _NOISE x gross premium (rounding is no edge)


def _opt_price(x: Any, name: str, positive: bool) -> float:
    if x is None:
        return math.nan
    v = float(x)
    if math.isnan(v):
        return v
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{name}: must be finite and {'> 0' if positive else '>= 0'}, got {x!r}")
    return v


@dataclass(frozen=True)
class BookQuote:
    """Best bid / ask of one listed option (prices per unit of underlying).

    Attributes:
        symbol: instrument id.
        strike: > 0. expiry: years > 0. is_call: bool.
        bid, ask: best prices, ``None`` or NaN when that side is empty; ``bid <= ask``.
        bid_size, ask_size: displayed contracts at the best prices (``inf`` = unknown).

    Example:
        >>> BookQuote("X-0030D-100-C", 100.0, 30 / 365, True, 2.0, 2.2).ask
        2.2
    """

    symbol: str
    strike: float
    expiry: float
    is_call: bool
    bid: float | None
    ask: float | None
    bid_size: float = math.inf
    ask_size: float = math.inf

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol:
            raise ValueError(f"symbol: must be a non-empty string, got {self.symbol!r}")
        for name in ("strike", "expiry"):
            x = float(getattr(self, name))
            if not (math.isfinite(x) and x > 0):
                raise ValueError(f"{name}: must be finite and > 0, got {getattr(self, name)!r}")
            object.__setattr__(self, name, x)
        if not isinstance(self.is_call, bool | np.bool_):
            raise ValueError(f"is_call: must be a bool, got {self.is_call!r}")
        object.__setattr__(self, "is_call", bool(self.is_call))
        bid = _opt_price(self.bid, "bid", positive=False)
        ask = _opt_price(self.ask, "ask", positive=True)
        if bid > ask:  # False when either is NaN
            raise ValueError(f"bid: crossed quote for {self.symbol!r} (bid {bid} > ask {ask})")
        object.__setattr__(self, "bid", bid)
        object.__setattr__(self, "ask", ask)
        for name in ("bid_size", "ask_size"):
            x = float(getattr(self, name))
            if math.isnan(x) or x < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)!r}")
            object.__setattr__(self, name, x)


@dataclass(frozen=True)
class ArbLeg:
    """One leg: ``ratio`` units per structure (> 0 buy at the ask, < 0 sell at the bid)."""

    symbol: str
    ratio: float
    price: float  # the executable price used (ask for a buy, bid for a sell)


@dataclass(frozen=True)
class ArbOpportunity:
    """A tradable static-arbitrage structure.

    Attributes:
        kind: ``"calendar"`` or ``"butterfly"``.
        legs: :class:`ArbLeg` s (calendar: near, far; butterfly: low wing, body, high wing).
        edge: cash in per structure at execution after fees, price units (> 0).
        max_structures: structures the displayed sizes allow (``inf`` if sizes are unknown).
        expiries, strikes: of the legs, in leg order.
        model_value: the bound's slack at the surface's model prices (calendar
            ``a C2 - C1``, butterfly ``lambda C1 + (1 - lambda) C3 - C2``); negative means the
            surface itself violates the bound; NaN without a surface.
    """

    kind: Literal["calendar", "butterfly"]
    legs: tuple[ArbLeg, ...]
    edge: float
    max_structures: float
    expiries: tuple[float, ...]
    strikes: tuple[float, ...]
    model_value: float = math.nan

    def signal(self, underlying: str | None = None) -> ArbitrageSignal:
        """The :class:`jaxmm.events.ArbitrageSignal` of this opportunity."""
        return ArbitrageSignal(
            kind=self.kind,
            legs=[leg.symbol for leg in self.legs],
            edge=self.edge,
            ratios=[leg.ratio for leg in self.legs],
            prices=[leg.price for leg in self.legs],
            strikes=list(self.strikes),
            expiries=list(self.expiries),
            max_structures=None if math.isinf(self.max_structures) else self.max_structures,
            instrument=underlying,
        )


def _market(surface, spot, rate, dividend) -> tuple[float, float, float]:
    if surface is not None:
        if not isinstance(surface, VolSurface):
            raise ValueError("surface: expected a jaxmm.vol.VolSurface")
        if spot is not None:
            raise ValueError("spot: give either a surface or a spot, not both")
        return (
            float(np.asarray(surface.spot)),
            float(np.asarray(surface.rate)),
            float(np.asarray(surface.dividend)),
        )
    if spot is None:
        raise ValueError("spot: required when no surface is given")
    vals = (float(spot), float(rate), float(dividend))
    if not (math.isfinite(vals[0]) and vals[0] > 0):
        raise ValueError(f"spot: must be finite and > 0, got {spot!r}")
    for name, x in (("rate", vals[1]), ("dividend", vals[2])):
        if not math.isfinite(x):
            raise ValueError(f"{name}: must be finite, got {x!r}")
    return vals


def _check_fee(fee: float) -> float:
    f = float(fee)
    if not (math.isfinite(f) and f >= 0):
        raise ValueError(f"fee: must be finite and >= 0, got {fee!r}")
    return f


def _model_prices(surface, quotes: Sequence[BookQuote]) -> np.ndarray:
    if surface is None or not quotes:
        return np.full(len(quotes), math.nan)
    from ..pricing import bsm_price

    k = np.array([q.strike for q in quotes])
    t = np.array([q.expiry for q in quotes])
    c = np.array([q.is_call for q in quotes])
    iv = np.asarray(surface.implied_vol(k, t), np.float64)
    s, r, d = (float(np.asarray(x)) for x in (surface.spot, surface.rate, surface.dividend))
    return np.asarray(bsm_price(s, k, t, r, d, iv, c), np.float64)


def _groups(quotes: Sequence[BookQuote]) -> dict[tuple[bool, float], list[int]]:
    out: dict[tuple[bool, float], list[int]] = {}
    for i, q in enumerate(quotes):
        out.setdefault((q.is_call, q.expiry), []).append(i)
    for idx in out.values():
        idx.sort(key=lambda i: quotes[i].strike)
    return out


def find_calendar_arbitrage(
    quotes: Sequence[BookQuote],
    *,
    surface: VolSurface | None = None,
    spot: float | None = None,
    rate: float = 0.0,
    dividend: float = 0.0,
    fee: float = 0.0,
    min_edge: float = 0.0,
) -> list[ArbOpportunity]:
    """Calendar spreads tradable after spread and fees (module docstring: the exact test).

    Returns the opportunities with ``edge > min_edge``, best edge first.

    Example:
        >>> qs = [BookQuote("N", 100.0, 0.1, True, 5.0, 5.2),    # near call bid 5.0
        ...       BookQuote("F", 100.0, 0.5, True, 4.6, 4.8)]    # far call ask 4.8
        >>> [round(o.edge, 12) for o in find_calendar_arbitrage(qs, spot=100.0, fee=0.05)]
        [0.1]
    """
    quotes = list(quotes)
    s, r, q = _market(surface, spot, rate, dividend)
    fee = _check_fee(fee)
    model = _model_prices(surface, quotes)
    groups = _groups(quotes)
    out: list[ArbOpportunity] = []
    for (is_call, t1), near_idx in groups.items():
        for (is_call2, t2), far_idx in groups.items():
            if is_call2 != is_call or t2 <= t1:
                continue
            dt = t2 - t1
            a = math.exp(q * dt)
            growth = math.exp((r - q) * dt)  # F(T2) / F(T1)
            far_k = np.array([quotes[j].strike for j in far_idx])
            far_ask = np.array([quotes[j].ask for j in far_idx])
            for i in near_idx:
                qn = quotes[i]
                if math.isnan(qn.bid) or qn.bid_size <= 0:
                    continue
                target = qn.strike * growth
                if is_call:
                    ok = (far_k <= target * (1 + _REL)) & ~np.isnan(far_ask)
                    if not ok.any():
                        continue
                    pos = int(np.flatnonzero(ok)[-1])
                else:
                    ok = (far_k >= target * (1 - _REL)) & ~np.isnan(far_ask)
                    if not ok.any():
                        continue
                    pos = int(np.flatnonzero(ok)[0])
                j = far_idx[pos]
                qf = quotes[j]
                if qf.ask_size <= 0:
                    continue
                edge = qn.bid - a * qf.ask - fee * (1.0 + a)
                if not edge > min_edge + _NOISE * (qn.bid + a * qf.ask):
                    continue
                out.append(
                    ArbOpportunity(
                        "calendar",
                        (ArbLeg(qn.symbol, -1.0, qn.bid), ArbLeg(qf.symbol, a, qf.ask)),
                        edge,
                        min(qn.bid_size, qf.ask_size / a),
                        (t1, t2),
                        (qn.strike, qf.strike),
                        float(a * model[j] - model[i]),
                    )
                )
    out.sort(key=lambda o: -o.edge)
    return out


def find_butterfly_arbitrage(
    quotes: Sequence[BookQuote],
    *,
    surface: VolSurface | None = None,
    fee: float = 0.0,
    min_edge: float = 0.0,
) -> list[ArbOpportunity]:
    """Butterflies tradable after spread and fees, over every strike triple of one expiry and
    type; the best triple per body strike (module docstring: the exact test).

    Example:
        >>> qs = [BookQuote("A", 90.0, 0.2, True, 11.0, 11.2),
        ...       BookQuote("B", 100.0, 0.2, True, 6.0, 6.1),   # body bid 6.0
        ...       BookQuote("C", 110.0, 0.2, True, 0.5, 0.6)]   # (11.2 + 0.6) / 2 = 5.9
        >>> [round(o.edge, 12) for o in find_butterfly_arbitrage(qs)]
        [0.1]
    """
    quotes = list(quotes)
    fee = _check_fee(fee)
    if surface is not None and not isinstance(surface, VolSurface):
        raise ValueError("surface: expected a jaxmm.vol.VolSurface")
    model = _model_prices(surface, quotes)
    out: list[ArbOpportunity] = []
    for (_, t), idx in _groups(quotes).items():
        if len(idx) < 3:
            continue
        k = np.array([quotes[i].strike for i in idx])
        bid = np.array([quotes[i].bid for i in idx])
        ask = np.array([quotes[i].ask for i in idx])
        mp = model[idx]
        n = len(idx)
        lo, mid, hi = np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij")
        valid = (lo < mid) & (mid < hi)
        lo, mid, hi = lo[valid], mid[valid], hi[valid]
        lam = (k[hi] - k[mid]) / (k[hi] - k[lo])
        edge = bid[mid] - lam * ask[lo] - (1.0 - lam) * ask[hi] - 2.0 * fee
        gross = bid[mid] + lam * ask[lo] + (1.0 - lam) * ask[hi]
        good = np.isfinite(edge) & (edge > min_edge + _NOISE * gross)
        best: dict[int, int] = {}
        for e in np.flatnonzero(good):
            b = int(mid[e])
            if b not in best or edge[e] > edge[best[b]]:
                best[b] = int(e)
        for e in best.values():
            i1, i2, i3 = idx[lo[e]], idx[mid[e]], idx[hi[e]]
            q1, q2, q3 = quotes[i1], quotes[i2], quotes[i3]
            lm = float(lam[e])
            sizes = (q2.bid_size, q1.ask_size / lm, q3.ask_size / (1.0 - lm))
            out.append(
                ArbOpportunity(
                    "butterfly",
                    (
                        ArbLeg(q1.symbol, lm, q1.ask),
                        ArbLeg(q2.symbol, -1.0, q2.bid),
                        ArbLeg(q3.symbol, 1.0 - lm, q3.ask),
                    ),
                    float(edge[e]),
                    min(sizes),
                    (t, t, t),
                    (q1.strike, q2.strike, q3.strike),
                    float(lm * mp[lo[e]] + (1.0 - lm) * mp[hi[e]] - mp[mid[e]]),
                )
            )
    out.sort(key=lambda o: -o.edge)
    return out


def find_arbitrage(
    quotes: Sequence[BookQuote],
    *,
    surface: VolSurface | None = None,
    spot: float | None = None,
    rate: float = 0.0,
    dividend: float = 0.0,
    fee: float = 0.0,
    min_edge: float = 0.0,
) -> list[ArbOpportunity]:
    """Calendar and butterfly opportunities together, best edge first.

    Example:
        >>> find_arbitrage([BookQuote("N", 100.0, 0.1, True, 2.0, 2.1)], spot=100.0)
        []
    """
    cal = find_calendar_arbitrage(
        quotes, surface=surface, spot=spot, rate=rate, dividend=dividend, fee=fee,
        min_edge=min_edge,
    )  # fmt: skip
    fly = find_butterfly_arbitrage(quotes, surface=surface, fee=fee, min_edge=min_edge)
    return sorted(cal + fly, key=lambda o: -o.edge)


def publish_signals(
    opportunities: Iterable[ArbOpportunity],
    events: EventBroadcaster | None = None,
    underlying: str | None = None,
) -> list[ArbitrageSignal]:
    """One :class:`jaxmm.events.ArbitrageSignal` per opportunity, published to ``events``
    when given. Returns the signals (as published, with their sequence numbers).

    Example:
        >>> opp = find_calendar_arbitrage([BookQuote("N", 100.0, 0.1, True, 5.0, 5.2),
        ...     BookQuote("F", 100.0, 0.5, True, 4.6, 4.8)], spot=100.0)
        >>> sig = publish_signals(opp, underlying="X")[0]
        >>> sig.kind, sig.legs, round(sig.edge, 12)
        ('calendar', ['N', 'F'], 0.2)
    """
    out = []
    for opp in opportunities:
        sig = opp.signal(underlying)
        if events is not None:
            sig = events.publish(sig) or sig
        out.append(sig)
    return out


def _integer_legs(opp: ArbOpportunity, n: int, lots: dict[str, int]) -> list[tuple[str, int]]:
    legs = []
    for leg in opp.legs:
        lot = lots[leg.symbol]
        units = abs(leg.ratio) * n / lot
        # long legs up, short legs down: the payoff stays >= 0 (docstring)
        k = math.ceil(units - 1e-9) if leg.ratio > 0 else math.floor(units + 1e-9)
        legs.append((leg.symbol, int(math.copysign(k * lot, leg.ratio))))
    return legs


def _integer_edge(opp: ArbOpportunity, legs: list[tuple[str, int]], fee: float) -> float:
    price = {leg.symbol: leg.price for leg in opp.legs}
    return -sum(q * price[s] for s, q in legs) - fee * sum(abs(q) for _, q in legs)


def capture_orders(
    opportunities: Sequence[ArbOpportunity],
    manager: Any,
    underlying: str,
    *,
    fee: float = 0.0,
    max_structures: int = 100,
) -> list[tuple[str, str, int]]:
    """Target orders capturing the best opportunity that the risk limits allow.

    For the opportunities in order (best edge first), the structure count ``n`` goes down from
    ``min(max_structures, displayed size)`` to 1; legs become whole lots (long legs rounded up,
    short legs down); the first ``n`` whose integer edge is still ``> 0`` and whose legs pass
    ``manager.check_basket`` (every partial fill within the per-underlying and total limits)
    is returned as ``[(underlying, symbol, signed qty), ...]``. Empty if none passes. One
    structure per call: call again after it has filled or been cancelled.

    Example:
        >>> capture_orders([], None, "X")
        []
    """
    fee = _check_fee(fee)
    if (
        isinstance(max_structures, bool)
        or not isinstance(max_structures, int)
        or max_structures < 1
    ):
        raise ValueError(f"max_structures: must be an integer >= 1, got {max_structures!r}")
    for opp in opportunities:
        lots = {}
        for leg in opp.legs:
            inst = {i.id: i for i in manager.instruments(underlying)}.get(leg.symbol)
            if inst is None:
                raise ValueError(
                    f"opportunities: {leg.symbol!r} is not an instrument of {underlying!r}"
                )
            lots[leg.symbol] = inst.lot_size
        top = min(max_structures, int(min(opp.max_structures, 1e9)))
        for n in range(top, 0, -1):
            legs = _integer_legs(opp, n, lots)
            legs = [(s, q) for s, q in legs if q != 0]
            if len(legs) < 2 or not _integer_edge(opp, legs, fee) > 0:
                continue
            basket = [(underlying, s, q) for s, q in legs]
            if manager.check_basket(basket):
                return basket
    return []
