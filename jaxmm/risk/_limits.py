"""Pre-trade limits checked on the post-trade state: allow, scale or reject.

Limited measures (``q_i`` signed contracts of instrument ``i``, ``m_i`` its multiplier, ``S_u``
the spot of its underlying, ``g_i`` its unit Greek from the last market update):

- position: ``|q_i| <= max_position`` (per instrument; per-instrument overrides allowed);
- gross notional: ``sum_i |q_i| m_i S_u <= max_gross_notional`` (money, whole book);
- per strike: ``sum |q_i|`` over the options of one (underlying, strike) ``<= max_per_strike``;
- per expiry: ``sum |q_i|`` over the options of one (underlying, expiry) ``<= max_per_expiry``;
- Greeks, per underlying: ``|sum_i q_i m_i g_i| <= limit`` for delta, gamma, vega, theta
  (raw units: delta in units of underlying, gamma per unit spot, vega per 1.00 vol, theta per
  year — see :func:`jaxmm.pricing.to_desk_units` for desk units).

Rule (evaluated on the state AFTER the order would fill in full): each measure must end within
its limit, or — when it is already over the limit before the order (limits tightened, market
moved) — must not get worse (``|post| <= |pre|``). Hence an order that worsens no measure is
always allowed in full (risk-reducing orders are never blocked), and from a compliant state no
accepted order can leave any measure over its limit. If the full order fails, the largest
multiple of the lot size that passes every measure is offered (SCALE); if that is zero, REJECT.
Every measure is ``base + w |a + b n|`` in the filled size ``n`` (convex), so the feasible
sizes are an interval ``[0, n_max]`` and the scaled size is exact, then re-verified.

Greeks and notional are floats: they are enforced with a safety margin of ``1e-9 x limit``
(``|post| <= limit (1 - 1e-9)``) so summation rounding can never produce a breach when the
book is recomputed from scratch. Positions, per-strike and per-expiry counts are integers and
exact.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..portfolio._types import Fill, Instrument, Order

__all__ = ["GreekLimits", "RiskLimits", "Action", "Decision", "LimitChecker"]

FLOAT_MARGIN = 1e-9
_GREEKS = ("delta", "gamma", "vega", "theta")


def _check_limit(name: str, x: float | None) -> None:
    if x is None:
        return
    if isinstance(x, bool) or not isinstance(x, int | float) or not (math.isfinite(x) and x >= 0):
        raise ValueError(f"{name}: must be a finite number >= 0 or None, got {x!r}")


@dataclass(frozen=True)
class GreekLimits:
    """Absolute limits on per-underlying position Greeks (raw units; ``None`` = unlimited).

    Example:
        >>> GreekLimits(delta=500.0, vega=2e4).gamma is None
        True
    """

    delta: float | None = None
    gamma: float | None = None
    vega: float | None = None
    theta: float | None = None

    def __post_init__(self) -> None:
        for g in _GREEKS:
            _check_limit(f"greeks.{g}", getattr(self, g))


@dataclass(frozen=True)
class RiskLimits:
    """Every limit the :class:`LimitChecker` enforces (``None`` = not limited).

    Attributes:
        max_position: max ``|qty|`` per instrument, contracts/units.
        position_overrides: instrument id -> its own max ``|qty|`` (replaces ``max_position``).
        max_gross_notional: max ``sum |qty| x multiplier x underlying spot``, money.
        max_per_strike: max gross contracts over the options of one (underlying, strike).
        max_per_expiry: max gross contracts over the options of one (underlying, expiry).
        greeks: :class:`GreekLimits` applied to each underlying's Greeks.

    Example:
        >>> RiskLimits(max_position=100, greeks=GreekLimits(delta=50.0)).max_position
        100
    """

    max_position: int | None = None
    position_overrides: Mapping[str, int] = field(default_factory=dict)
    max_gross_notional: float | None = None
    max_per_strike: int | None = None
    max_per_expiry: int | None = None
    greeks: GreekLimits = field(default_factory=GreekLimits)

    def __post_init__(self) -> None:
        _check_limit("max_position", self.max_position)
        _check_limit("max_gross_notional", self.max_gross_notional)
        _check_limit("max_per_strike", self.max_per_strike)
        _check_limit("max_per_expiry", self.max_per_expiry)
        for k, v in self.position_overrides.items():
            _check_limit(f"position_overrides[{k!r}]", v)
        if not isinstance(self.greeks, GreekLimits):
            raise ValueError("greeks: expected a GreekLimits")


class Action(enum.Enum):
    """Outcome of a pre-trade check."""

    ALLOW = "allow"
    SCALE = "scale"
    REJECT = "reject"


@dataclass(frozen=True)
class Decision:
    """Result of :meth:`LimitChecker.check_order`.

    Attributes:
        action: :class:`Action`.
        qty: the quantity that may be sent (requested qty for ALLOW, smaller for SCALE, 0 for
            REJECT); always a multiple of the lot size.
        binding: names of the measures that limit the order (empty for ALLOW), e.g.
            ``("position:C100", "greeks.vega:XYZ")``.
    """

    action: Action
    qty: int
    binding: tuple[str, ...] = ()


class LimitChecker:
    """Pre-trade risk: positions and cached per-underlying aggregates, O(1) per check.

    State changes only through :meth:`on_fill` (a fill happened) and :meth:`update_market`
    (new spots and unit Greeks: aggregates recomputed exactly). :meth:`check_order` never
    changes state. See the module docstring (and docs/risk.md) for the exact semantics.

    Args:
        instruments: the tradable instruments.
        limits: :class:`RiskLimits`.

    Example:
        >>> from jaxmm.portfolio import Instrument, Order, Side
        >>> chk = LimitChecker([Instrument.spot("XYZ")], RiskLimits(max_position=10))
        >>> chk.update_market({"XYZ": 100.0}, {})
        >>> chk.check_order(Order("XYZ", Side.BUY, 25))
        Decision(action=<Action.SCALE: 'scale'>, qty=10, binding=('position:XYZ',))
    """

    def __init__(self, instruments: Iterable[Instrument], limits: RiskLimits):
        if not isinstance(limits, RiskLimits):
            raise ValueError("limits: expected a RiskLimits")
        self.limits = limits
        self._inst: dict[str, Instrument] = {}
        for inst in instruments:
            if inst.id in self._inst:
                raise ValueError(f"instruments: duplicate id {inst.id!r}")
            self._inst[inst.id] = inst
        self._qty: dict[str, int] = dict.fromkeys(self._inst, 0)
        # underlyings (delta = multiplier per unit) are re-marked with every update_market
        self._underlying_unit = {
            iid: (inst.multiplier, 0.0, 0.0, 0.0)
            for iid, inst in self._inst.items()
            if not inst.is_option
        }
        self._spot: dict[str, float] = {}
        self._unit: dict[str, tuple[float, float, float, float]] = {}
        self._meta_cache: dict[str, tuple] = {}
        self._greek_limits = tuple(
            (n, i, getattr(limits.greeks, n) * (1.0 - FLOAT_MARGIN))
            for i, n in enumerate(_GREEKS)
            if getattr(limits.greeks, n) is not None
        )
        self._notional_limit = (
            None
            if limits.max_gross_notional is None
            else limits.max_gross_notional * (1.0 - FLOAT_MARGIN)
        )
        self._recompute()

    # --- state ----------------------------------------------------------------------------
    def _recompute(self) -> None:
        """Rebuild every aggregate from positions (exact summation with ``math.fsum``)."""
        strike: dict[tuple, int] = {}
        expiry: dict[tuple, int] = {}
        for iid, q in self._qty.items():
            inst = self._inst[iid]
            if inst.is_option:
                ks = (inst.underlying, inst.strike)
                ke = (inst.underlying, inst.expiry)
                strike[ks] = strike.get(ks, 0) + abs(q)
                expiry[ke] = expiry.get(ke, 0) + abs(q)
        self._strike = strike
        self._expiry = expiry
        self._recompute_market()

    def _recompute_market(self) -> None:
        """Rebuild the market-dependent aggregates (Greeks, gross notional) exactly from the
        open positions; the strike and expiry counts depend on positions only and are kept
        up to date by :meth:`on_fill`."""
        greeks: dict[str, list[list[float]]] = {}
        notional: list[float] = []
        unit, spot, inst_of = self._unit, self._spot, self._inst
        for iid, q in self._qty.items():
            if q == 0:
                continue
            inst = inst_of[iid]
            g = unit.get(iid)
            if g is not None:
                terms = greeks.get(inst.underlying)
                if terms is None:
                    terms = greeks[inst.underlying] = [[], [], [], []]
                terms[0].append(q * g[0])
                terms[1].append(q * g[1])
                terms[2].append(q * g[2])
                terms[3].append(q * g[3])
            s = spot.get(inst.underlying)
            if s is not None:
                notional.append(abs(q) * inst.multiplier * s)
        self._greeks = {u: [math.fsum(t) for t in terms] for u, terms in greeks.items()}
        self._notional = math.fsum(notional)

    def update_market(
        self,
        spot: Mapping[str, float],
        unit_greeks: Mapping[str, tuple[float, float, float, float]],
    ) -> None:
        """New spots per underlying and unit Greeks per option ``(delta, gamma, vega, theta)``.

        Unit Greeks are per one unit of underlying (as the pricing kernels return them); the
        checker multiplies by the contract multiplier. Underlyings get delta 1 automatically;
        instruments not named keep their previous unit Greeks.
        Validated before anything changes; aggregates are then recomputed from scratch.
        """
        new_spot = dict(self._spot)
        for u, s in spot.items():
            s = float(s)
            if not (math.isfinite(s) and s > 0):
                raise ValueError(f"spot[{u!r}]: must be finite and > 0, got {s!r}")
            new_spot[u] = s
        new_unit = dict(self._unit)
        isfinite = math.isfinite
        for iid, g in unit_greeks.items():
            inst = self._instrument(iid)
            try:
                d, ga, v, th = g
                d, ga, v, th = float(d), float(ga), float(v), float(th)
            except (TypeError, ValueError):
                raise ValueError(
                    f"unit_greeks[{iid!r}]: need 4 finite numbers, got {g!r}"
                ) from None
            if not (isfinite(d) and isfinite(ga) and isfinite(v) and isfinite(th)):
                raise ValueError(f"unit_greeks[{iid!r}]: need 4 finite numbers, got {g!r}")
            m = inst.multiplier
            new_unit[iid] = (d * m, ga * m, v * m, th * m)
        new_unit.update(self._underlying_unit)
        self._spot, self._unit = new_spot, new_unit
        self._recompute_market()

    def update_market_from_model(
        self,
        spot: Mapping[str, float],
        vol: Mapping[str, float],
        rate: float,
        dividend: Mapping[str, float] | float = 0.0,
    ) -> None:
        """:meth:`update_market` with unit Greeks from BSM (one batched pricing-core call).

        ``vol``: instrument id -> annualised vol for every option.
        """
        from ..pricing import bsm_core_greeks

        opts = [i for i in self._inst.values() if i.is_option]
        greeks: dict[str, tuple[float, float, float, float]] = {}
        if opts:
            for i in opts:
                if i.underlying not in spot:
                    raise ValueError(f"spot: no spot for underlying {i.underlying!r}")
                if i.id not in vol:
                    raise ValueError(f"vol: no vol for instrument {i.id!r}")
            q = [
                float(dividend[i.underlying]) if isinstance(dividend, Mapping) else float(dividend)
                for i in opts
            ]
            g = bsm_core_greeks(
                np.array([spot[i.underlying] for i in opts], np.float64),
                np.array([i.strike for i in opts], np.float64),
                np.array([i.expiry for i in opts], np.float64),
                rate,
                np.array(q, np.float64),
                np.array([vol[i.id] for i in opts], np.float64),
                np.array([i.is_call for i in opts]),
            )
            d, gm, v, t = (np.asarray(x) for x in (g.delta, g.gamma, g.vega, g.theta))
            for n, i in enumerate(opts):
                greeks[i.id] = (float(d[n]), float(gm[n]), float(v[n]), float(t[n]))
        self.update_market(spot, greeks)

    def on_fill(self, fill: Fill) -> None:
        """Apply an executed fill to the checker's positions and aggregates."""
        self._instrument(fill.instrument)
        self._qty[fill.instrument] += fill.signed_qty
        self._recompute_one(fill.instrument, fill.signed_qty)

    def _recompute_one(self, iid: str, dq: int) -> None:
        inst = self._inst[iid]
        q = self._qty[iid]
        old = q - dq
        if inst.is_option:
            ks = (inst.underlying, inst.strike)
            ke = (inst.underlying, inst.expiry)
            self._strike[ks] += abs(q) - abs(old)
            self._expiry[ke] += abs(q) - abs(old)
        if iid in self._unit:
            agg = self._greeks.setdefault(inst.underlying, [0.0, 0.0, 0.0, 0.0])
            for j, g in enumerate(self._unit[iid]):
                agg[j] += dq * g
        if inst.underlying in self._spot:
            self._notional += (abs(q) - abs(old)) * inst.multiplier * self._spot[inst.underlying]

    def _instrument(self, iid: str) -> Instrument:
        try:
            return self._inst[iid]
        except KeyError:
            raise ValueError(f"instrument: unknown instrument {iid!r}") from None

    def position(self, iid: str) -> int:
        """Current signed position of an instrument."""
        self._instrument(iid)
        return self._qty[iid]

    def unit_greeks(self, iid: str) -> tuple[float, float, float, float] | None:
        """Greeks of one contract of ``iid`` (delta, gamma, vega, theta) x multiplier as of
        the last :meth:`update_market`; None before it has marked ``iid``."""
        self._instrument(iid)
        return self._unit.get(iid)

    def greeks(self, underlying: str) -> dict[str, float]:
        """Current aggregated Greeks of one underlying (raw units)."""
        agg = self._greeks.get(underlying, [0.0, 0.0, 0.0, 0.0])
        return dict(zip(_GREEKS, agg, strict=True))

    @property
    def gross_notional(self) -> float:
        """Current gross notional (money)."""
        return self._notional

    def utilisation(self) -> dict[str, float]:
        """``|measure| / limit`` for every limited Greek per underlying and the notional.

        Keys ``"greeks.<name>:<underlying>"`` and ``"gross_notional"``; 1.0 means at the limit.
        """
        out: dict[str, float] = {}
        for u, agg in self._greeks.items():
            for n, j, _ in self._greek_limits:
                lim = getattr(self.limits.greeks, n)
                if lim > 0:
                    out[f"greeks.{n}:{u}"] = abs(agg[j]) / lim
                else:
                    out[f"greeks.{n}:{u}"] = math.inf if agg[j] else 0.0
        if self.limits.max_gross_notional:
            out["gross_notional"] = self._notional / self.limits.max_gross_notional
        return out

    # --- the check ------------------------------------------------------------------------
    def _meta(self, inst: Instrument) -> tuple:
        """Per-instrument constants of the check (cached: nothing formatted per check)."""
        meta = self._meta_cache.get(inst.id)
        if meta is None:
            u = inst.underlying
            lim = self.limits
            meta = (
                f"position:{inst.id}",
                f"strike:{u}:{inst.strike:g}" if inst.is_option else "",
                f"expiry:{u}:{inst.expiry:g}" if inst.is_option else "",
                tuple(f"greeks.{n}:{u}" for n in _GREEKS),
                lim.position_overrides.get(inst.id, lim.max_position),
                (u, inst.strike),
                (u, inst.expiry),
                inst.is_option,
            )
            self._meta_cache[inst.id] = meta
        return meta

    def _constraints(self, inst: Instrument, side: int) -> list[tuple[str, float, float, float]]:
        """Constraints ``|a + b n| <= c`` on the filled size ``n >= 0``, as (name, a, b, c)."""
        lim = self.limits
        iid = inst.id
        q = self._qty[iid]
        aq = abs(q)
        pos_name, strike_name, expiry_name, greek_names, max_pos, ks, ke, is_opt = self._meta(inst)
        out = []
        if max_pos is not None:
            out.append((pos_name, q, side, max_pos if max_pos > aq else aq))
        if self._notional_limit is not None:
            s = self._spot.get(inst.underlying)
            if s is None:
                raise ValueError(f"market: no spot for underlying {inst.underlying!r}")
            w = inst.multiplier * s
            room = (self._notional_limit - (self._notional - aq * w)) / w
            out.append(("gross_notional", q, side, room if room > aq else aq))
        if is_opt:
            if lim.max_per_strike is not None:
                room = lim.max_per_strike - self._strike[ks] + aq
                out.append((strike_name, q, side, room if room > aq else aq))
            if lim.max_per_expiry is not None:
                room = lim.max_per_expiry - self._expiry[ke] + aq
                out.append((expiry_name, q, side, room if room > aq else aq))
        if self._greek_limits:
            unit = self._unit.get(iid)
            if unit is None:
                raise ValueError(f"market: no unit Greeks for instrument {iid!r}")
            agg = self._greeks.get(inst.underlying, (0.0, 0.0, 0.0, 0.0))
            for _, j, c in self._greek_limits:
                a = agg[j]
                out.append((greek_names[j], a, side * unit[j], c if c > abs(a) else abs(a)))
        return out

    @staticmethod
    def _passes(cons, n: int) -> bool:
        for _, a, b, c in cons:
            if abs(a + b * n) > c:
                return False
        return True

    def check_order(self, order: Order) -> Decision:
        """Allow, scale or reject ``order`` by its post-trade state; never changes state.

        Raises ``ValueError`` for an unknown instrument, a quantity that is not a multiple of
        the lot size, or missing market data needed by a configured limit.
        """
        inst = self._instrument(order.instrument)
        lot = inst.lot_size
        n = order.qty
        if n % lot:
            raise ValueError(f"qty: must be a multiple of lot_size {lot}, got {n}")
        cons = self._constraints(inst, int(order.side))
        if self._passes(cons, n):
            return Decision(Action.ALLOW, n)
        n_max = float(n)
        binding = []
        for name, a, b, c in cons:
            if b == 0:
                continue
            cap = (c - a) / b if b > 0 else (c + a) / -b
            if cap < n:
                binding.append(name)
                n_max = min(n_max, cap)
        k = int(math.floor(max(n_max, 0.0) / lot)) * lot
        while k > 0 and not self._passes(cons, k):
            k -= lot
        if k <= 0:
            return Decision(Action.REJECT, 0, tuple(binding))
        return Decision(Action.SCALE, k, tuple(binding))

    def snapshot(self) -> dict[str, Any]:
        """Copy of positions and aggregates (used by tests to assert no state change)."""
        return {
            "qty": dict(self._qty),
            "notional": self._notional,
            "greeks": {u: tuple(v) for u, v in self._greeks.items()},
            "strike": dict(self._strike),
            "expiry": dict(self._expiry),
        }
