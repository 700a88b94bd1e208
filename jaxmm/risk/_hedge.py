"""Auto-hedging: delta-band hedge orders in the underlying; gamma/vega hedge suggestions.

Delta hedge rule: with portfolio delta ``D`` (units of underlying) and target ``D*`` (default
0), nothing is done while ``|D - D*| <= band``. Outside the band the hedge brings the delta back
to the target: ``qty = round((D* - D) / (multiplier x lot_size)) x lot_size`` (nearest whole
lot, so the residual is at most half a lot), side = sign. Urgency grows with the breach:
``|D - D*| / band`` in (1, 2] LOW, (2, 4] MEDIUM, above 4 HIGH (a zero band is HIGH).

Gamma/vega suggestions: choose integer contracts ``x`` of candidate listed options minimising
``|| W (A x + b) ||_2`` where ``A`` stacks the candidates' position gamma and vega per contract,
``b`` the portfolio's (gamma, vega) and ``W = diag(1/gamma_scale, 1/vega_scale)`` makes the two
rows comparable. The continuous least-squares solution (minimum norm, ``numpy.linalg.lstsq``)
is rounded to whole lots; the result reports the residual Greeks and the delta the suggested
options add (to be hedged with the underlying).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..portfolio._types import Instrument, Side

__all__ = ["Urgency", "HedgeOrder", "delta_hedge", "GammaVegaHedge", "gamma_vega_hedge"]


class Urgency(enum.IntEnum):
    """How far outside the band the delta is (see module docstring)."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3


@dataclass(frozen=True)
class HedgeOrder:
    """A suggested hedge order: instrument id, side, qty (multiple of the lot), urgency."""

    instrument: str
    side: Side
    qty: int
    urgency: Urgency


def delta_hedge(
    delta: float, band: float, hedge: Instrument, target: float = 0.0
) -> HedgeOrder | None:
    """The underlying order that brings ``delta`` back to ``target``, or ``None`` inside the band.

    Args:
        delta: portfolio delta in units of underlying.
        band: half-width of the no-hedge band around ``target`` (units, >= 0).
        hedge: the hedge instrument (normally the underlying; its multiplier is its units per
            contract, delta 1 per unit).
        target: target delta (units).

    Example:
        >>> from jaxmm.portfolio import Instrument
        >>> delta_hedge(-1234.0, band=500.0, hedge=Instrument.spot("XYZ", lot_size=100))
        HedgeOrder(instrument='XYZ', side=<Side.BUY: 1>, qty=1200, urgency=<Urgency.MEDIUM: 2>)
    """
    for name, x in (("delta", delta), ("band", band), ("target", target)):
        if not math.isfinite(float(x)):
            raise ValueError(f"{name}: must be finite, got {x!r}")
    if band < 0:
        raise ValueError(f"band: must be >= 0, got {band!r}")
    if hedge.is_option:
        raise ValueError("hedge: must be an underlying (delta 1 per unit), got an option")
    gap = float(target) - float(delta)
    if abs(gap) <= band:
        return None
    lots = round(gap / (hedge.multiplier * hedge.lot_size))
    if lots == 0:
        return None
    ratio = abs(gap) / band if band > 0 else math.inf
    urgency = Urgency.LOW if ratio <= 2 else Urgency.MEDIUM if ratio <= 4 else Urgency.HIGH
    return HedgeOrder(
        hedge.id, Side.BUY if lots > 0 else Side.SELL, abs(lots) * hedge.lot_size, urgency
    )


@dataclass(frozen=True)
class GammaVegaHedge:
    """Result of :func:`gamma_vega_hedge`: orders, residual gamma/vega, delta the orders add."""

    orders: tuple[HedgeOrder, ...]
    residual_gamma: float
    residual_vega: float
    added_delta: float


def gamma_vega_hedge(
    gamma: float,
    vega: float,
    candidates: Sequence[Instrument],
    unit_greeks: Mapping[str, tuple[float, float, float]],
    gamma_scale: float = 1.0,
    vega_scale: float = 1.0,
) -> GammaVegaHedge:
    """Least-squares gamma/vega hedge over candidate listed options (see module docstring).

    Args:
        gamma, vega: portfolio gamma and vega (raw units) to neutralise.
        candidates: listed options that may be traded.
        unit_greeks: id -> ``(delta, gamma, vega)`` per unit of underlying.
        gamma_scale, vega_scale: the sizes at which a gamma and a vega miss count equally.

    Example:
        >>> from jaxmm.portfolio import Instrument
        >>> c = [Instrument.option("C", "X", strike=100.0, expiry=0.5, is_call=True)]
        >>> h = gamma_vega_hedge(-4.0, -2800.0, c, {"C": (0.5, 0.04, 28.0)})
        >>> h.orders[0].side.name, h.orders[0].qty
        ('BUY', 1)
    """
    if not candidates:
        raise ValueError("candidates: need at least one option")
    for name, x in (
        ("gamma", gamma),
        ("vega", vega),
        ("gamma_scale", gamma_scale),
        ("vega_scale", vega_scale),
    ):
        if not math.isfinite(float(x)):
            raise ValueError(f"{name}: must be finite, got {x!r}")
    if gamma_scale <= 0 or vega_scale <= 0:
        raise ValueError("gamma_scale/vega_scale: must be > 0")
    cols = []
    for inst in candidates:
        if not inst.is_option:
            raise ValueError(f"candidates: {inst.id!r} is not an option")
        if inst.id not in unit_greeks:
            raise ValueError(f"unit_greeks: missing {inst.id!r}")
        d, g, v = (float(x) for x in unit_greeks[inst.id])
        cols.append(
            (
                d * inst.multiplier * inst.lot_size,
                g * inst.multiplier * inst.lot_size,
                v * inst.multiplier * inst.lot_size,
            )
        )
    per_lot = np.array(cols, dtype=np.float64).T  # rows: delta, gamma, vega; cols: candidates
    w = np.array([1.0 / gamma_scale, 1.0 / vega_scale])
    a = per_lot[1:] * w[:, None]
    b = np.array([gamma, vega]) * w
    x, *_ = np.linalg.lstsq(a, -b, rcond=None)
    lots = np.rint(x).astype(np.int64)
    orders = tuple(
        HedgeOrder(
            inst.id, Side.BUY if n > 0 else Side.SELL, abs(int(n)) * inst.lot_size, Urgency.LOW
        )
        for inst, n in zip(candidates, lots, strict=True)
        if n != 0
    )
    fx = lots.astype(np.float64)
    return GammaVegaHedge(
        orders,
        float(gamma + per_lot[1] @ fx),
        float(vega + per_lot[2] @ fx),
        float(per_lot[0] @ fx),
    )
