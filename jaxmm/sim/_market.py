"""Mid-price (or fair-value) models for the Monte-Carlo market-making simulator.

Every model is an ``eqx.Module`` whose continuous parameters are array leaves (differentiable,
vmappable) and whose random-number needs are static class attributes: ``n_normals`` standard
normals and ``n_uniforms`` uniforms on ``[0, 1)`` per path and step. The simulator draws them in
blocks for all paths at once (one PRNG call per block of steps, see ``docs/backtesting.md``) and
passes one path's numbers to :meth:`step`, which is written for ONE path (scalar ``s``).

Time is in the model time unit (the unit of ``dt``, of the strategy's ``horizon`` and of the
strategy's ``sigma``); prices in absolute price units.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._validate import check_values

__all__ = ["ArithmeticBrownian", "GBM", "JumpDiffusion", "RegimeSwitching", "FairValuePath"]


def _f(x: Any) -> Array:
    a = jnp.asarray(x)
    if not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(jnp.asarray(1.0).dtype)
    return a


class ArithmeticBrownian(eqx.Module):
    """Arithmetic Brownian mid ``dS = mu dt + sigma dW`` (the Avellaneda–Stoikov setting).

    Step: ``S' = S + mu dt + sigma sqrt(dt) Z`` with ``Z ~ N(0, 1)``, or, with
    ``binomial=True``, ``Z = +-1`` with probability 1/2 each — the random walk Avellaneda &
    Stoikov (2008, Section 3.3) use in their simulations.

    Attributes:
        s0: initial mid, price units.
        sigma: absolute volatility, price units per sqrt(time unit), >= 0.
        mu: drift, price units per time unit.
        binomial: static; use the +-1 increments of the paper instead of Gaussian ones.

    Example:
        >>> from jaxmm.sim import ArithmeticBrownian
        >>> m = ArithmeticBrownian(s0=100.0, sigma=2.0, binomial=True)
        >>> float(m.step(100.0, 0.0, 0, 0.25, None, [0.9])[0])  # up-move of 2 * sqrt(0.25)
        101.0
    """

    s0: Array
    sigma: Array
    mu: Array
    binomial: bool = eqx.field(static=True)

    def __init__(self, s0: Any, sigma: Any, mu: Any = 0.0, *, binomial: bool = False):
        check_values("s0", s0)
        check_values("sigma", sigma, ge=0.0)
        check_values("mu", mu)
        self.s0, self.sigma, self.mu = _f(s0), _f(sigma), _f(mu)
        self.binomial = bool(binomial)

    @property
    def n_normals(self) -> int:
        return 0 if self.binomial else 1

    @property
    def n_uniforms(self) -> int:
        return 1 if self.binomial else 0

    def step(self, s: Any, aux: Any, i: Any, dt: Any, z: Any, u: Any) -> tuple[Array, Array]:
        """One step for one path: ``(S', aux')`` (``aux`` unused, returned unchanged)."""
        s = jnp.asarray(s)
        dtp = s.dtype
        dt = jnp.asarray(dt).astype(dtp)
        if self.binomial:
            inc = jnp.where(jnp.asarray(u[0]).astype(dtp) < 0.5, -1.0, 1.0).astype(dtp)
        else:
            inc = jnp.asarray(z[0]).astype(dtp)
        mu, sig = self.mu.astype(dtp), self.sigma.astype(dtp)
        return s + mu * dt + sig * jnp.sqrt(dt) * inc, jnp.asarray(aux).astype(dtp)


class GBM(eqx.Module):
    """Geometric Brownian mid ``dS = mu S dt + sigma S dW``, stepped exactly (log-normal).

    ``S' = S exp((mu - sigma^2/2) dt + sigma sqrt(dt) Z)``. Here ``sigma`` is RELATIVE (per
    sqrt(time unit)); a strategy's absolute ``sigma`` is ``S sigma`` (``absolute_sigma``).

    Example:
        >>> from jaxmm.sim import GBM
        >>> round(float(GBM(100.0, 0.0, 0.2).step(100.0, 0.0, 0, 1.0, [0.0], None)[0]), 4)
        98.0199
    """

    s0: Array
    mu: Array
    sigma: Array
    n_normals: ClassVar[int] = 1
    n_uniforms: ClassVar[int] = 0

    def __init__(self, s0: Any, mu: Any, sigma: Any):
        check_values("s0", s0, gt=0.0)
        check_values("mu", mu)
        check_values("sigma", sigma, ge=0.0)
        self.s0, self.mu, self.sigma = _f(s0), _f(mu), _f(sigma)

    def step(self, s: Any, aux: Any, i: Any, dt: Any, z: Any, u: Any) -> tuple[Array, Array]:
        """One exact log-normal step for one path."""
        s = jnp.asarray(s)
        dtp = s.dtype
        dt = jnp.asarray(dt).astype(dtp)
        mu, sig = self.mu.astype(dtp), self.sigma.astype(dtp)
        zz = jnp.asarray(z[0]).astype(dtp)
        s_new = s * jnp.exp((mu - 0.5 * sig * sig) * dt + sig * jnp.sqrt(dt) * zz)
        return s_new, jnp.asarray(aux).astype(dtp)


class JumpDiffusion(eqx.Module):
    """Arithmetic jump-diffusion: ``dS = sigma dW + J dN``, ``N`` Poisson(``jump_rate``).

    Discretisation: at most one jump per step, with probability ``1 - exp(-jump_rate dt)``
    (the probability of two or more jumps, ``O((jump_rate dt)^2)``, is put on the one jump);
    jump sizes ``J ~ N(jump_mean, jump_std^2)`` in price units.

    Example:
        >>> from jaxmm.sim import JumpDiffusion
        >>> m = JumpDiffusion(100.0, sigma=0.0, jump_rate=1e9, jump_mean=-1.0, jump_std=0.0)
        >>> float(m.step(100.0, 0.0, 0, 1.0, [0.0, 0.0], [0.5])[0])
        99.0
    """

    s0: Array
    sigma: Array
    jump_rate: Array
    jump_mean: Array
    jump_std: Array
    n_normals: ClassVar[int] = 2
    n_uniforms: ClassVar[int] = 1

    def __init__(
        self, s0: Any, sigma: Any, jump_rate: Any, jump_mean: Any = 0.0, jump_std: Any = 0.0
    ):
        check_values("s0", s0)
        check_values("sigma", sigma, ge=0.0)
        check_values("jump_rate", jump_rate, ge=0.0)
        check_values("jump_mean", jump_mean)
        check_values("jump_std", jump_std, ge=0.0)
        self.s0, self.sigma = _f(s0), _f(sigma)
        self.jump_rate, self.jump_mean, self.jump_std = _f(jump_rate), _f(jump_mean), _f(jump_std)

    def step(self, s: Any, aux: Any, i: Any, dt: Any, z: Any, u: Any) -> tuple[Array, Array]:
        """One step for one path (diffusion plus at most one jump)."""
        s = jnp.asarray(s)
        dtp = s.dtype
        dt = jnp.asarray(dt).astype(dtp)
        p_jump = -jnp.expm1(-self.jump_rate.astype(dtp) * dt)
        jump = jnp.asarray(u[0]).astype(dtp) < p_jump
        size = self.jump_mean.astype(dtp) + self.jump_std.astype(dtp) * jnp.asarray(z[1]).astype(
            dtp
        )
        diff = self.sigma.astype(dtp) * jnp.sqrt(dt) * jnp.asarray(z[0]).astype(dtp)
        return s + diff + jnp.where(jump, size, 0.0).astype(dtp), jnp.asarray(aux).astype(dtp)


class RegimeSwitching(eqx.Module):
    """Arithmetic Brownian mid whose volatility follows a two-state Markov chain.

    Regime ``r in {0, 1}`` (carried as a float; starts in ``initial_regime``);
    ``dS = sigma_r dW``; the chain leaves regime ``r`` with rate ``switch_rates[r]``, i.e. with
    probability ``1 - exp(-switch_rates[r] dt)`` per step, checked after the price step.

    Example:
        >>> from jaxmm.sim import RegimeSwitching
        >>> m = RegimeSwitching(100.0, sigmas=[1.0, 3.0], switch_rates=[1e9, 0.0])
        >>> s, r = m.step(100.0, 0.0, 0, 1.0, [1.0], [0.5])
        >>> float(s), float(r)  # calm regime moves by 1, then switches to the volatile one
        (101.0, 1.0)
    """

    s0: Array
    sigmas: Array
    switch_rates: Array
    initial_regime: Array
    n_normals: ClassVar[int] = 1
    n_uniforms: ClassVar[int] = 1

    def __init__(self, s0: Any, sigmas: Any, switch_rates: Any, initial_regime: Any = 0.0):
        check_values("s0", s0)
        check_values("sigmas", sigmas, ge=0.0)
        check_values("switch_rates", switch_rates, ge=0.0)
        if np.shape(sigmas) != (2,) or np.shape(switch_rates) != (2,):
            raise ValueError("sigmas, switch_rates: must each have shape (2,)")
        self.s0, self.sigmas, self.switch_rates = _f(s0), _f(sigmas), _f(switch_rates)
        self.initial_regime = _f(initial_regime)

    def init_aux(self, dtp: Any) -> Array:
        return self.initial_regime.astype(dtp)

    def step(self, s: Any, aux: Any, i: Any, dt: Any, z: Any, u: Any) -> tuple[Array, Array]:
        """One step for one path; ``aux`` is the regime (0.0 or 1.0)."""
        s = jnp.asarray(s)
        dtp = s.dtype
        dt = jnp.asarray(dt).astype(dtp)
        r = jnp.asarray(aux).astype(dtp)
        sig = jnp.where(r > 0.5, self.sigmas[1], self.sigmas[0]).astype(dtp)
        rate = jnp.where(r > 0.5, self.switch_rates[1], self.switch_rates[0]).astype(dtp)
        s_new = s + sig * jnp.sqrt(dt) * jnp.asarray(z[0]).astype(dtp)
        switch = jnp.asarray(u[0]).astype(dtp) < -jnp.expm1(-rate * dt)
        return s_new, jnp.where(switch, 1.0 - r, r).astype(dtp)


class FairValuePath(eqx.Module):
    """A user-supplied fair-value path shared by all simulated paths (no randomness).

    ``values[i]`` is the mid (e.g. an option's theoretical value along one underlying path)
    at step ``i``; ``values`` must have ``n_steps + 1`` entries. Per-path fair values are not
    supported (run one simulation per underlying path, or vmap :func:`simulate` over markets).

    Example:
        >>> from jaxmm.sim import FairValuePath
        >>> round(float(FairValuePath([5.0, 5.2, 5.1]).step(5.0, 0.0, 1, 0.1, None, None)[0]), 4)
        5.1
    """

    values: Array
    n_normals: ClassVar[int] = 0
    n_uniforms: ClassVar[int] = 0

    def __init__(self, values: Any):
        check_values("values", values)
        self.values = _f(values)
        if self.values.ndim != 1 or self.values.shape[0] < 2:
            raise ValueError("values: must be a 1-d path with at least 2 entries")

    @property
    def s0(self) -> Array:
        return self.values[0]

    def step(self, s: Any, aux: Any, i: Any, dt: Any, z: Any, u: Any) -> tuple[Array, Array]:
        """Next value of the path (``values[i + 1]``)."""
        s = jnp.asarray(s)
        return self.values[jnp.asarray(i) + 1].astype(s.dtype), jnp.asarray(aux).astype(s.dtype)
