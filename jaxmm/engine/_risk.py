"""Greeks risk for the market maker: post-trade checks, re-marking, breaker, auto-hedging.

:class:`GreeksRiskManager` composes the risk layer's parts and adds the engine's rules
(``docs/engine.md``, "Risk semantics" and "Hedging rules"):

- every order the engine sends goes through :meth:`GreeksRiskManager.check_order`, i.e.
  :meth:`jaxmm.risk.LimitChecker.check_order` on the POST-trade state (allow / scale /
  reject). While the Greeks breaker is TRIPPED only orders that reduce every Greek measure's
  magnitude are allowed (hedges); in COOLDOWN order sizes are scaled by the breaker's size
  factor (rounded down to the lot).
- every fill received goes through :meth:`GreeksRiskManager.on_fill`: positions and PnL
  (:class:`jaxmm.portfolio.Portfolio`) and the checker's aggregates are updated, then the
  post-fill state is checked; a limit found exceeded raises an ``AlertTriggered`` event and
  trips the breaker.
- :meth:`GreeksRiskManager.update_market` re-marks the unit Greeks of every option on every
  underlying or surface update (never frozen at fill time) and re-evaluates the breaker.
- :meth:`GreeksRiskManager.hedges` gives, per underlying whose delta is outside its band, the
  lot-rounded order in the underlying that brings delta back to target
  (:func:`jaxmm.risk.delta_hedge`), itself passed through the post-trade check.

Events (``jaxmm.events``) are published to an optional :class:`EventBroadcaster`:
``GreeksUpdated`` (per underlying, on every re-mark and fill), ``OrderFilled``,
``HedgeSent``, ``CircuitBreakerTripped`` (every breaker transition) and ``AlertTriggered``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..events import (
    AlertTriggered,
    CircuitBreakerTripped,
    EventBroadcaster,
    GreeksUpdated,
    HedgeSent,
    OrderFilled,
)
from ..portfolio import Fill, Instrument, Order, Portfolio, Side
from ..risk import (
    Action,
    BreakerEvent,
    BreakerState,
    Decision,
    GreeksUtilisationBreaker,
    HedgeOrder,
    LimitChecker,
    RiskLimits,
    delta_hedge,
)
from ._quote import ChainMarket, QuoteLimits

__all__ = ["HedgeConfig", "GreeksRiskManager"]

_GREEKS = ("delta", "gamma", "vega", "theta")


@dataclass(frozen=True)
class HedgeConfig:
    """Delta-hedging rule for one underlying.

    Attributes:
        instrument: id of the hedge instrument (the underlying itself, delta 1 per unit).
        band: half-width of the no-hedge band around ``target``, units of underlying, >= 0.
        target: target delta, units of underlying.

    Example:
        >>> HedgeConfig("XYZ", band=50.0).target
        0.0
    """

    instrument: str
    band: float
    target: float = 0.0

    def __post_init__(self) -> None:
        for name in ("band", "target"):
            x = getattr(self, name)
            if not math.isfinite(float(x)):
                raise ValueError(f"{name}: must be finite, got {x!r}")
        if self.band < 0:
            raise ValueError(f"band: must be >= 0, got {self.band!r}")


class GreeksRiskManager:
    """Post-trade Greeks limits, re-marking, a Greeks circuit breaker and delta hedging.

    Args:
        instruments: every tradable instrument (options and their underlyings).
        limits: :class:`jaxmm.risk.RiskLimits` (Greek limits per underlying, raw units).
        hedges: underlying id -> :class:`HedgeConfig` (underlyings not named are not hedged).
        breaker_threshold: limit utilisation (``|measure| / limit``) at which the Greeks
            breaker trips; 1.0 trips only on an actual breach.
        min_halt, cooldown: breaker timings in seconds (:class:`jaxmm.risk.BreakerStateMachine`).
        events: optional :class:`jaxmm.events.EventBroadcaster` to publish to.

    Example:
        >>> from jaxmm.portfolio import Instrument, Order, Side
        >>> from jaxmm.risk import RiskLimits, GreekLimits
        >>> insts = [Instrument.spot("XYZ"),
        ...          Instrument.option("C", "XYZ", strike=100.0, expiry=0.5, is_call=True)]
        >>> rm = GreeksRiskManager(insts, RiskLimits(greeks=GreekLimits(delta=100.0)),
        ...                        {"XYZ": HedgeConfig("XYZ", band=20.0)})
        >>> rm.update_market({"XYZ": 100.0}, {"C": (0.5, 0.02, 27.0, -4.0)}, now=0.0)
        >>> rm.check_order(Order("C", Side.BUY, 5)).qty   # 5 x 100 x 0.5 = 250 > 100: scaled
        1
    """

    def __init__(
        self,
        instruments: Iterable[Instrument],
        limits: RiskLimits,
        hedges: Mapping[str, HedgeConfig] | None = None,
        breaker_threshold: float = 1.0,
        min_halt: float = 60.0,
        cooldown: float = 60.0,
        events: EventBroadcaster | None = None,
    ):
        insts = list(instruments)
        self.checker = LimitChecker(insts, limits)
        self.portfolio = Portfolio(insts)
        self.limits = limits
        self._inst = {i.id: i for i in insts}
        self.hedge_config: dict[str, HedgeConfig] = dict(hedges or {})
        for u, cfg in self.hedge_config.items():
            inst = self._inst.get(cfg.instrument)
            if inst is None or inst.is_option or inst.underlying != u:
                raise ValueError(
                    f"hedges[{u!r}]: {cfg.instrument!r} is not a registered underlying of {u!r}"
                )
        self.breaker = GreeksUtilisationBreaker(
            threshold=breaker_threshold, min_halt=min_halt, cooldown=cooldown
        )
        self.events = events
        self.breaker.listeners.append(self._on_breaker)
        self._marked = False

    # --- events -----------------------------------------------------------------------------
    def _publish(self, event: Any) -> None:
        if self.events is not None:
            self.events.publish(event)

    def _on_breaker(self, ev: BreakerEvent) -> None:
        self._publish(
            CircuitBreakerTripped(
                breaker=ev.breaker,
                from_state=ev.old.value,
                to_state=ev.new.value,
                reason=ev.reason[:500],
            )
        )

    def _publish_greeks(self, underlyings: Iterable[str]) -> None:
        for u in underlyings:
            g = self.checker.greeks(u)
            self._publish(GreeksUpdated(instrument=u, **g))

    # --- state --------------------------------------------------------------------------------
    @property
    def quoting_allowed(self) -> bool:
        """False while the Greeks breaker is TRIPPED (quoting halts, resting quotes cancel)."""
        return self.breaker.allows_trading

    def greeks(self, underlying: str) -> dict[str, float]:
        """Current position Greeks of one underlying (raw units)."""
        return self.checker.greeks(underlying)

    def breaches(self) -> dict[str, float]:
        """Utilisations above 1 (a limit exceeded), e.g. after a market move."""
        return {k: v for k, v in self.checker.utilisation().items() if v > 1.0}

    def update_market(
        self,
        spot: Mapping[str, float],
        unit_greeks: Mapping[str, tuple[float, float, float, float]],
        now: float,
    ) -> None:
        """Re-mark: new spots and unit Greeks ``(delta, gamma, vega, theta)`` per option.

        Validated before anything changes (``ValueError`` naming the bad entry). Publishes
        ``GreeksUpdated`` for every underlying named in ``spot`` and steps the breaker.
        """
        self.checker.update_market(spot, unit_greeks)
        self._marked = True
        self._publish_greeks(spot)
        self.breaker.update(now, self.checker.utilisation())

    def chain_market(
        self, underlying: str, spot: float, rate: float = 0.0, dividend: float = 0.0
    ) -> ChainMarket:
        """The :class:`ChainMarket` to quote ``underlying``'s chain against (current position
        Greeks; ``kill`` set while the breaker is TRIPPED)."""
        g = self.checker.greeks(underlying)
        return ChainMarket(
            spot, rate, dividend, g["delta"], g["gamma"], g["vega"], g["theta"],
            not self.quoting_allowed,
        )  # fmt: skip

    def quote_limits(self) -> QuoteLimits:
        """:class:`QuoteLimits` equal to the checker's Greek and position limits."""
        gl = self.limits.greeks
        inf = math.inf
        val = lambda x: inf if x is None else float(x)
        pos = self.limits.max_position
        return QuoteLimits(val(gl.delta), val(gl.gamma), val(gl.vega), val(gl.theta), val(pos))

    def positions(self, ids: Iterable[str]) -> np.ndarray:
        """Signed positions (contracts) of ``ids``, as float64 for :class:`OptionChain`."""
        return np.array([self.checker.position(i) for i in ids], np.float64)

    # --- orders and fills ---------------------------------------------------------------------
    def _reduces_everything(self, order: Order) -> bool:
        inst = self._inst[order.instrument]
        u = inst.underlying
        agg = self.checker.greeks(u)
        unit = self.checker.unit_greeks(order.instrument)
        if unit is None:
            return False
        n = order.signed_qty
        return all(abs(agg[g] + n * unit[j]) <= abs(agg[g]) for j, g in enumerate(_GREEKS))

    def check_order(self, order: Order) -> Decision:
        """Post-trade check of an order the engine wants to send (never changes state).

        Raises ``ValueError`` for an unknown instrument, or if no market has been marked yet.
        """
        if order.instrument not in self._inst:
            raise ValueError(f"instrument: unknown instrument {order.instrument!r}")
        if not self._marked:
            raise ValueError("market: no market update yet; Greeks are unknown")
        state = self.breaker.state
        if state is BreakerState.TRIPPED and not self._reduces_everything(order):
            return Decision(Action.REJECT, 0, ("breaker:" + self.breaker.name,))
        decision = self.checker.check_order(order)
        if state is BreakerState.COOLDOWN and decision.qty > 0:
            lot = self._inst[order.instrument].lot_size
            qty = int(decision.qty * self.breaker.size_factor) // lot * lot
            if qty <= 0:
                return Decision(Action.REJECT, 0, ("breaker:" + self.breaker.name,))
            if qty < decision.qty:
                binding = decision.binding + ("breaker:" + self.breaker.name,)
                return Decision(Action.SCALE, qty, binding)
        return decision

    def on_fill(
        self,
        fill: Fill,
        now: float,
        order_id: str = "",
        trade_id: str = "",
        theo: float | None = None,
    ) -> dict[str, float]:
        """Apply a received fill; check the post-fill state. Returns the breaches found.

        ``theo``: the model value of the instrument at the fill (per unit of underlying),
        carried by the ``OrderFilled`` event (``None`` when not known or not finite).

        A fill is applied even when it breaches (it happened); the breach then raises an alert
        and trips the breaker so quoting halts until the state is back within limits.
        """
        self.portfolio.apply_fill(fill)
        self.checker.on_fill(fill)
        inst = self._inst[fill.instrument]
        if fill.price > 0:  # the event schema has price > 0; a zero-price fill is not broadcast
            price = float(fill.price)
            t = None if theo is None or not math.isfinite(theo) else float(theo)
            self._publish(
                OrderFilled(
                    instrument=fill.instrument,
                    order_id=order_id or "-",
                    trade_id=trade_id or "-",
                    side="buy" if fill.side is Side.BUY else "sell",
                    price=price,
                    quantity=float(fill.qty),
                    fee=float(fill.fee),
                    theo=t,
                    edge=None if t is None else (t - price) * int(fill.side),
                )
            )
        self._publish_greeks((inst.underlying,))
        bad = self.breaches()
        if bad:
            msg = ", ".join(f"{k} at {v:.1%}" for k, v in sorted(bad.items()))
            self._publish(
                AlertTriggered(severity="critical", kind="greeks_limit", message=msg[:1000])
            )
        self.breaker.update(now, self.checker.utilisation())
        return bad

    def hedges(self) -> list[tuple[HedgeOrder, Decision]]:
        """Delta hedges for every configured underlying outside its band, each with its
        post-trade decision. Publishes ``HedgeSent`` for each hedge with ``qty > 0``."""
        out = []
        for u, cfg in self.hedge_config.items():
            d = self.checker.greeks(u)["delta"]
            h = delta_hedge(d, cfg.band, self._inst[cfg.instrument], cfg.target)
            if h is None:
                continue
            dec = self.check_order(Order(h.instrument, h.side, h.qty))
            out.append((h, dec))
            if dec.qty > 0:
                self._publish(
                    HedgeSent(
                        instrument=h.instrument,
                        side="buy" if h.side is Side.BUY else "sell",
                        quantity=float(dec.qty),
                        reason=f"delta {d:.6g} outside band {cfg.band:g} around {cfg.target:g}",
                    )
                )
        return out

    def trip(self, now: float, reason: str = "manual") -> None:
        """Manual halt: the breaker trips and stays latched until :meth:`reset`."""
        self.breaker.trip(now, reason)

    def reset(self, now: float, reason: str = "manual reset") -> None:
        """Manual reset of the breaker (back to ACTIVE)."""
        self.breaker.reset(now, reason)
