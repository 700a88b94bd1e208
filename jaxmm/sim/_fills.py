"""Fill models: Poisson market-order arrivals hitting resting quotes.

Avellaneda & Stoikov (2008): a quote at distance ``delta`` from the mid is hit by market orders
with Poisson intensity ``lambda(delta) = A exp(-k delta)`` (per time unit). Over one step of
length ``dt`` the simulator turns the intensity into a fill probability (``prob="exact"``:
``P(N >= 1) = 1 - exp(-lambda dt)``; ``prob="linear"``: the paper's ``min(lambda dt, 1)``).

Exact rules (also in ``docs/backtesting.md``):

- a side's ``delta`` is measured from the mid at the start of the step (``delta_b = s - bid``,
  ``delta_a = ask - s``); ``pessimistic=True`` uses the larger of that and the distance from
  the mid at the END of the step, so a quote the price moved away from fills less often and
  the fill probability is never higher than the optimistic one;
- one uniform ``U`` per side and step decides every level of a ladder (comonotone coupling):
  the order reaching depth ``delta_j`` fills level ``j`` iff ``U < P(delta_j)``, so a deeper
  level never fills without the better ones, and each level's marginal fill probability is
  exactly ``P(delta_j)``;
- full fills (default): a filled level trades its whole quoted size; ``partial=True``: each
  arrival is a market order of ``order_size`` units, ``N ~ Poisson(lambda dt)`` arrivals reach
  the level (``N`` from the same ``U`` by inversion, at most ``max_arrivals``) and the level
  trades ``min(size, order_size N)``;
- fees: ``maker_fee`` is a fraction of traded notional charged on every fill (negative = rebate).

Relaxations (differentiable mode, ``docs/backtesting.md``): ``relaxed=True`` replaces a level's
fill indicator ``1{U < P}`` by its expectation ``P``; ``relaxed=Concrete(tau)`` replaces it by
the Concrete / Gumbel-sigmoid relaxed Bernoulli (Maddison, Mnih & Teh 2017; Jang, Gu & Poole
2017) driven by the SAME uniform, ``sigmoid((logit P - logit U) / tau)``, which tends to
``1{U < P}`` as ``tau -> 0`` (partial fills: every ``1{U < P(N >= n)}`` likewise).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import gammainc, gammaincc
from jaxtyping import Array

from .._validate import check_values
from ._market import _f

__all__ = ["Concrete", "PoissonFills"]


class Concrete(eqx.Module):
    """Concrete (Gumbel-sigmoid) fill relaxation for ``simulate(..., relaxed=Concrete(tau))``.

    A level's exact fill indicator ``1{U < P}`` (``U`` the side's uniform of the step, ``P`` the
    fill probability) becomes ``sigmoid((logit P - logit U) / tau)`` on the SAME ``U`` (common
    random numbers with the exact simulator). ``logit P - logit U = logit P + L`` with
    ``L = log(1 - U) - log U`` a standard logistic variable, so this is the relaxed Bernoulli of
    Maddison, Mnih & Teh (2017) and Jang, Gu & Poole (2017). Fills stay random (inventory risk
    is kept), the path is smooth in the quote prices, and it tends to the exact simulator path
    by path as ``tau -> 0``; per step the mean fill is ``P + O(tau^2)`` and the variance
    ``P (1 - P) (1 - tau) + O(tau^2)`` (``docs/backtesting.md``).

    Attributes:
        tau: temperature, > 0 (a traced value: a new ``tau`` does not recompile). Small
            ``tau``: less bias, noisier gradients.
        straight_through: static; forward pass = the exact ``1{U < P}`` (the exact simulator's
            values), backward pass = the Concrete gradient (Bengio et al. 2013's estimator).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxmm.sim import Concrete, PoissonFills
        >>> f, c = PoissonFills(140.0, 1.5), Concrete(0.01)
        >>> p = float(f.fill_probability(0.5, 0.005, side=0))
        >>> u = jnp.array([0.2, 0.3])  # p = 0.2815: the first fills, the second does not
        >>> [round(float(f.fill_quantity(0.5, 1.0, x, 0.005, 0, "concrete", c.tau)), 3)
        ...  for x in u]
        [1.0, 0.0]
    """

    tau: Array
    straight_through: bool = eqx.field(static=True)

    def __init__(self, tau: Any = 0.1, straight_through: bool = False):
        check_values("tau", tau, gt=0.0)
        self.tau = _f(tau)
        self.straight_through = bool(straight_through)


def _logit_ratio(lo: Array, hi: Array) -> Array:
    """``log(lo) - log(hi)`` with both clamped to the smallest normal (finite values and
    gradients where a probability underflows to 0 or rounds to 1)."""
    tiny = jnp.finfo(lo.dtype).tiny
    return jnp.log(jnp.maximum(lo, tiny)) - jnp.log(jnp.maximum(hi, tiny))


def _soft_indicator(logit_p: Array, p: Array, u: Array, tau: Any, mode: str) -> Array:
    """Concrete relaxation of ``1{u < p}``: ``sigmoid((logit p - logit u) / tau)``; with
    ``mode="straight_through"`` the forward value is the exact indicator."""
    dtp = logit_p.dtype
    u = jnp.asarray(u).astype(dtp)
    logit_u = _logit_ratio(u, 1.0 - u)
    soft = jax.nn.sigmoid((logit_p - logit_u) / jnp.asarray(tau).astype(dtp))
    if mode != "straight_through":
        return soft
    hard = jnp.where(u < p, 1.0, 0.0).astype(dtp)
    return soft + jax.lax.stop_gradient(hard - soft)


class PoissonFills(eqx.Module):
    """Poisson fills ``lambda(delta) = A exp(-k delta)`` per side (Avellaneda & Stoikov 2008).

    Attributes:
        A: arrival rate at ``delta = 0``, fills per time unit, > 0 (bid side, and ask side
            unless ``A_ask`` is given).
        k: decay per price unit, > 0 (``k_ask`` for the ask side).
        maker_fee: fee as a fraction of notional on every fill; negative is a rebate.
        order_size: size of one market order (``partial=True`` only), quantity units, > 0.
        prob: static, ``"exact"`` (``1 - exp(-lambda dt)``) or ``"linear"`` (``min(lambda dt,
            1)``, the paper's discretisation).
        pessimistic: static; measure ``delta`` from the worse of the start- and end-of-step mid.
        partial: static; partial fills by market-order size (requires ``prob="exact"``).
        max_arrivals: static; arrivals per step considered when ``partial`` (truncation).

    Example:
        >>> from jaxmm.sim import PoissonFills
        >>> f = PoissonFills(A=140.0, k=1.5)
        >>> round(float(f.fill_probability(0.5, 0.005, side=0)), 6)  # 1 - exp(-140 e^-0.75 dt)
        0.281548
    """

    A: Array
    k: Array
    A_ask: Array
    k_ask: Array
    maker_fee: Array
    order_size: Array
    prob: str = eqx.field(static=True)
    pessimistic: bool = eqx.field(static=True)
    partial: bool = eqx.field(static=True)
    max_arrivals: int = eqx.field(static=True)

    def __init__(
        self,
        A: Any,
        k: Any,
        *,
        A_ask: Any = None,
        k_ask: Any = None,
        maker_fee: Any = 0.0,
        order_size: Any = 1.0,
        prob: str = "exact",
        pessimistic: bool = False,
        partial: bool = False,
        max_arrivals: int = 16,
    ):
        check_values("A", A, gt=0.0)
        check_values("k", k, gt=0.0)
        if A_ask is not None:
            check_values("A_ask", A_ask, gt=0.0)
        if k_ask is not None:
            check_values("k_ask", k_ask, gt=0.0)
        check_values("maker_fee", maker_fee)
        check_values("order_size", order_size, gt=0.0)
        if prob not in ("exact", "linear"):
            raise ValueError(f"prob: must be 'exact' or 'linear', got {prob!r}")
        if partial and prob != "exact":
            raise ValueError("partial: requires prob='exact'")
        if int(max_arrivals) != max_arrivals or max_arrivals < 1:
            raise ValueError(f"max_arrivals: must be an integer >= 1, got {max_arrivals!r}")
        self.A, self.k = _f(A), _f(k)
        self.A_ask = self.A if A_ask is None else _f(A_ask)
        self.k_ask = self.k if k_ask is None else _f(k_ask)
        self.maker_fee, self.order_size = _f(maker_fee), _f(order_size)
        self.prob = prob
        self.pessimistic = bool(pessimistic)
        self.partial = bool(partial)
        self.max_arrivals = int(max_arrivals)

    def intensity_dt(self, delta: Any, dt: Any, side: int) -> Array:
        """``lambda(delta) dt = A exp(-k delta) dt`` (exponent capped at 30 to stay finite)."""
        delta = jnp.asarray(delta)
        dtp = delta.dtype if jnp.issubdtype(delta.dtype, jnp.floating) else self.A.dtype
        a, k = (self.A, self.k) if side == 0 else (self.A_ask, self.k_ask)
        expo = jnp.minimum(-k.astype(dtp) * delta.astype(dtp), 30.0)
        return a.astype(dtp) * jnp.exp(expo) * jnp.asarray(dt).astype(dtp)

    def fill_probability(self, delta: Any, dt: Any, side: int) -> Array:
        """Probability that a quote at distance ``delta`` is hit within one step.

        ``side`` is static: 0 for the bid, 1 for the ask.
        """
        mu = self.intensity_dt(delta, dt, side)
        if self.prob == "linear":
            return jnp.clip(mu, 0.0, 1.0)
        return -jnp.expm1(-mu)

    def logit_fill_probability(self, delta: Any, dt: Any, side: int) -> Array:
        """``logit P = log P - log(1 - P)`` of :meth:`fill_probability`, computed stably
        (``prob="exact"``: ``log(-expm1(-mu)) + mu``, so no cancellation when ``P -> 1``)."""
        mu = self.intensity_dt(delta, dt, side)
        if self.prob == "linear":
            p = jnp.clip(mu, 0.0, 1.0)
            return _logit_ratio(p, 1.0 - p)
        tiny = jnp.finfo(mu.dtype).tiny
        return jnp.log(-jnp.expm1(-jnp.maximum(mu, tiny))) + mu

    def fill_quantity(
        self,
        delta: Array,
        size: Array,
        u: Array,
        dt: Any,
        side: int,
        relaxed: bool | str,
        tau: Any = None,
    ) -> Array:
        """Filled quantity per level for one side of one path.

        ``delta`` and ``size`` have shape ``(levels,)`` or ``()``; ``u`` is the side's uniform.
        ``relaxed`` (static): ``False`` the random fill, ``True`` its expectation,
        ``"concrete"`` / ``"straight_through"`` the :class:`Concrete` relaxation at
        temperature ``tau`` on the same ``u``.
        """
        size = jnp.asarray(size)
        dtp = size.dtype
        concrete = relaxed in ("concrete", "straight_through")
        if not self.partial:
            p = self.fill_probability(delta, dt, side)
            if concrete:
                lp = self.logit_fill_probability(delta, dt, side)
                return size * _soft_indicator(lp, p, u, tau, relaxed)
            if relaxed:
                return size * p
            return jnp.where(jnp.asarray(u).astype(dtp) < p, size, 0.0).astype(dtp)
        shape = size.shape
        delta, size = jnp.atleast_1d(delta), jnp.atleast_1d(size)
        mu = self.intensity_dt(delta, dt, side)  # (levels,)
        n = jnp.arange(1, self.max_arrivals + 1).astype(dtp)  # (N,)
        m = self.order_size.astype(dtp)
        # P(N >= n) for a Poisson(mu) count is the regularised lower incomplete gamma P(n, mu).
        tail = gammainc(n[None, :], mu[:, None])  # (levels, N)
        w = jnp.clip(size[:, None] - m * (n[None, :] - 1.0), 0.0, m)  # fill of the n-th order
        if concrete:
            # gammainc's derivative in x is NaN at x = 0 (a = 1): keep mu >= tiny here
            mu_c = jnp.maximum(mu, jnp.finfo(dtp).tiny)[:, None]
            tail = gammainc(n[None, :], mu_c)
            lt = _logit_ratio(tail, gammaincc(n[None, :], mu_c))
            hit = _soft_indicator(lt, tail, u, tau, relaxed)
            return jnp.reshape(jnp.sum(w * hit, axis=-1), shape)
        if relaxed:
            # double where: d/dmu P(n, mu) is NaN at mu = 0 (an intensity that underflowed far
            # from the mid); P(n, 0) = 0 exactly, so the value is unchanged and the gradient 0
            pos = (mu > 0)[:, None]
            tail = jnp.where(pos, gammainc(n[None, :], jnp.where(pos, mu[:, None], 1.0)), 0.0)
            return jnp.reshape(jnp.sum(w * tail, axis=-1), shape)
        hit = jnp.asarray(u).astype(dtp) < tail
        return jnp.reshape(jnp.sum(jnp.where(hit, w, 0.0), axis=-1).astype(dtp), shape)
