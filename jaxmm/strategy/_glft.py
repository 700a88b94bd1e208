"""Guéant, Lehalle & Fernandez-Tapia (2013), "Dealing with the inventory risk: a solution to the
market making problem", Mathematics and Financial Economics 7(4), 477-507; and Guéant (2017),
"Optimal market making", Applied Mathematical Finance 24(2), 112-154.

Model: ``dS = mu dt + sigma dW`` (``sigma`` absolute, price units per sqrt(time unit)); every
fill is of size ``Delta`` (the order size); a quote at distance ``delta`` from the mid is hit with
intensity ``A exp(-k delta)`` (per side: ``A_b, k_b`` and ``A_a, k_a``); inventory constrained to
``q in {-Q, -Q + Delta, ..., Q}``; CARA objective with risk aversion ``gamma`` (Guéant's model
A, ``xi = gamma``) or the risk-adjusted expectation ``E[X_T + q_T S_T - gamma sigma^2/2 int q^2]``
(model B, ``xi = 0``).

With the ansatz ``u = -exp(-gamma (x + q s + theta_q(t)))`` the HJB reduces, per inventory
level, to (``p^b = (theta_q - theta_{q+Delta}) / Delta``, ``p^a = (theta_q - theta_{q-Delta}) /
Delta``)::

    d theta_q / dt = -mu q + gamma sigma^2 q^2 / 2
                     - Delta (A_b C_b / k_b) exp(-k_b p^b) - Delta (A_a C_a / k_a) exp(-k_a p^a)

    C = (1 + xi Delta / k)^(-(1 + k / (xi Delta)))      (C = e^-1 when xi = 0)

and the optimal quotes are ``delta^b = p^b + (1/(xi Delta)) ln(1 + xi Delta / k_b)``
(``1/k_b`` when ``xi = 0``), likewise on the ask. With a common ``k`` the substitution
``theta_q = (Delta/k) ln v_q`` makes the system linear, ``dv/dt = M v``, ``v(T) = 1``, with
the tridiagonal matrix (index ``j = q / Delta``)::

    M_jj = alpha j^2 - beta j,   M_{j,j+1} = -eta_b,   M_{j,j-1} = -eta_a
    alpha = k gamma sigma^2 Delta / 2,   beta = k mu,   eta_side = A_side C

so ``v(t) = exp(-M (T - t)) 1`` and ``delta^b_q = (1/k) ln(v_q / v_{q+Delta}) + static``,
``delta^a_q = (1/k) ln(v_q / v_{q-Delta}) + static`` (the GLFT 2013 solution for ``Delta = 1``,
``xi = gamma``, ``A_b = A_a``: ``alpha = k gamma sigma^2 / 2``,
``eta = A (1 + gamma/k)^-(1+k/gamma)``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.linalg import expm
from jaxtyping import Array

from .._validate import check_values
from ._types import MarketState, Quote, as_float, as_optional_float, cast, float_dtype, make_quote

__all__ = ["GLFT"]

_SOLUTIONS = ("approx", "asymptotic", "exact")


def _log1p_over_x(x: Array) -> Array:
    """``ln(1 + x) / x`` with its limit 1 (and correct derivative) at ``x -> 0``."""
    small = x < 1e-3
    xs = jnp.where(small, 1.0, x)
    series = 1.0 - x / 2.0 + x * x / 3.0 - x * x * x / 4.0
    return jnp.where(small, series, jnp.log1p(xs) / xs)


class GLFT(eqx.Module):
    """Guéant–Lehalle–Fernandez-Tapia / Guéant (2017) optimal quotes with bounded inventory.

    Three solutions of the same control problem:

    - :meth:`half_spreads` — Guéant's (2017) closed-form approximation (the default for
      :meth:`quote`): ``theta`` quadratic in ``q`` from a second-order expansion of the
      Hamiltonians. With symmetric intensities it is the GLFT (2013) formula::

          delta^b ~ static + [ (2q + Delta)/2 - mu/(gamma sigma^2) ] omega
          delta^a ~ static + [ mu/(gamma sigma^2) - (2q - Delta)/2 ] omega
          omega   = sqrt( gamma sigma^2 / (2 A Delta k) * (1 + xi Delta/k)^(1 + k/(xi Delta)) )
          static  = (1/(xi Delta)) ln(1 + xi Delta/k)

      With per-side ``(A, k)``: ``a = sqrt(gamma sigma^2 / (Delta (H2_b + H2_a)))`` and
      ``b = (mu/(Delta a) + A_a C_a - A_b C_b) / (H2_b + H2_a)`` where ``H2 = k A C``; then
      ``delta^b = static_b + a (q + Delta/2) - b`` and ``delta^a = static_a - a (q - Delta/2) + b``.
    - :meth:`exact_half_spreads` — the matrix-exponential solution ``v = exp(-M (T - t)) 1``
      (common ``k``; per-side ``A`` allowed).
    - :meth:`asymptotic_half_spreads` — its ``T - t -> inf`` limit: ``v`` is replaced by the
      eigenvector of the smallest eigenvalue of ``M`` (GLFT 2013's spectral characterisation).

    All three quote one-sided at the bound: no bid when ``q + Delta > Q``, no ask when
    ``q - Delta < -Q`` (the half-spread is ``+inf``; in :meth:`quote` the side has size 0).

    Attributes:
        gamma: risk aversion (> 0), 1 / (price unit x quantity unit).
        k: intensity decay (> 0), per price unit (bid side; both sides unless ``k_ask``).
        A: intensity scale (> 0), fills per time unit at ``delta = 0`` (bid side; both sides
            unless ``A_ask``).
        sigma: ABSOLUTE mid volatility (> 0), price units per sqrt(time unit).
        mu: mid-price drift, price units per time unit.
        xi: Guéant's ``xi``: ``None`` means ``xi = gamma`` (CARA, model A); ``0`` gives model B.
        A_ask, k_ask: optional ask-side intensity parameters.
        horizon: terminal time ``T`` (time units) for ``solution="exact"``.
        max_inventory: static bound ``Q`` (quantity units), a multiple of ``order_size``.
        order_size: static trade size ``Delta`` (quantity units); also the quoted size.
        solution: static, the solution :meth:`quote` uses: ``"approx"`` (closed form),
            ``"asymptotic"`` or ``"exact"``.

    Example:
        >>> from jaxmm.strategy import GLFT, MarketState
        >>> mm = GLFT(gamma=0.05, k=0.3, A=0.9, sigma=0.3, max_inventory=10)
        >>> d_b, d_a = mm.half_spreads(0.0)
        >>> bool(abs(d_b - d_a) < 1e-12)   # symmetric when flat and driftless
        True
        >>> d_b, d_a = mm.half_spreads(10.0)  # at the bound: ask only
        >>> bool(jnp.isinf(d_b)), bool(jnp.isfinite(d_a))
        (True, True)
        >>> e_b, e_a = mm.exact_half_spreads(0.0, t=0.0, horizon=600.0)
        >>> bool(jnp.isfinite(e_b))
        True
    """

    gamma: Array
    k: Array
    A: Array
    sigma: Array
    mu: Array
    xi: Array | None
    A_ask: Array | None
    k_ask: Array | None
    horizon: Array | None
    max_inventory: float = eqx.field(static=True)
    order_size: float = eqx.field(static=True)
    solution: str = eqx.field(static=True)

    def __init__(
        self,
        gamma: Any,
        k: Any,
        A: Any,
        sigma: Any,
        max_inventory: float,
        *,
        mu: Any = 0.0,
        order_size: float = 1.0,
        xi: Any = None,
        A_ask: Any = None,
        k_ask: Any = None,
        horizon: Any = None,
        solution: str = "approx",
    ):
        check_values("gamma", gamma, gt=0.0)
        check_values("k", k, gt=0.0)
        check_values("A", A, gt=0.0)
        check_values("sigma", sigma, gt=0.0)
        check_values("mu", mu)
        check_values("max_inventory", max_inventory, gt=0.0)
        check_values("order_size", order_size, gt=0.0)
        if xi is not None:
            check_values("xi", xi, ge=0.0)
        if A_ask is not None:
            check_values("A_ask", A_ask, gt=0.0)
        if k_ask is not None:
            check_values("k_ask", k_ask, gt=0.0)
        if horizon is not None:
            check_values("horizon", horizon, ge=0.0)
        n = float(max_inventory) / float(order_size)
        if abs(n - round(n)) > 1e-9 * max(1.0, n) or round(n) < 1:
            raise ValueError(
                f"max_inventory: must be a positive integer multiple of order_size "
                f"({order_size!r}), got {max_inventory!r}"
            )
        if solution not in _SOLUTIONS:
            raise ValueError(f"solution: must be one of {_SOLUTIONS}, got {solution!r}")
        if solution != "approx" and k_ask is not None:
            raise ValueError(
                "k_ask: the exact and asymptotic solutions need a common k (per-side A is "
                "supported); leave k_ask=None or use solution='approx'"
            )
        if solution == "exact" and horizon is None:
            raise ValueError("horizon: required (time units) when solution='exact'")
        self.gamma = as_float(gamma)
        self.k = as_float(k)
        self.A = as_float(A)
        self.sigma = as_float(sigma)
        self.mu = as_float(mu)
        self.xi = as_optional_float(xi)
        self.A_ask = as_optional_float(A_ask)
        self.k_ask = as_optional_float(k_ask)
        self.horizon = as_optional_float(horizon)
        self.max_inventory = float(max_inventory)
        self.order_size = float(order_size)
        self.solution = solution

    # -- constants ------------------------------------------------------------------------
    @property
    def n_levels(self) -> int:
        """``N = Q / Delta``: the inventory grid has ``2N + 1`` points."""
        return int(round(self.max_inventory / self.order_size))

    def inventory_grid(self, dtype: Any = None) -> Array:
        """The admissible inventories ``-Q, -Q + Delta, ..., Q`` (shape ``(2N + 1,)``)."""
        dt = float_dtype(self.gamma) if dtype is None else dtype
        n = self.n_levels
        return jnp.arange(-n, n + 1).astype(dt) * self.order_size

    def _sides(self, dt: Any) -> tuple[Array, Array, Array, Array]:
        A_b, k_b = cast(self.A, dt), cast(self.k, dt)
        A_a = A_b if self.A_ask is None else cast(self.A_ask, dt)
        k_a = k_b if self.k_ask is None else cast(self.k_ask, dt)
        return A_b, k_b, A_a, k_a

    def _xi(self, dt: Any) -> Array:
        return cast(self.gamma if self.xi is None else self.xi, dt)

    def static_half_spread(self, k: Array, dtype: Any = None) -> tuple[Array, Array]:
        """``(static, C)`` for one side: ``static = (1/(xi Delta)) ln(1 + xi Delta/k)``,
        ``C = (1 + xi Delta/k)^-(1 + k/(xi Delta))`` (limits ``1/k`` and ``e^-1`` at ``xi = 0``).
        """
        dt = float_dtype(k) if dtype is None else dtype
        return _static_and_C(cast(k, dt), self._xi(dt), self.order_size)

    def _bounds_ok(self, q: Array) -> tuple[Array, Array]:
        tol = 1e-6 * self.order_size
        bid_ok = q + self.order_size <= self.max_inventory + tol
        ask_ok = q - self.order_size >= -self.max_inventory - tol
        return bid_ok, ask_ok

    # -- closed-form approximation ----------------------------------------------------------
    def half_spreads(self, inventory: Any) -> tuple[Array, Array]:
        """Closed-form approximation ``(delta_bid, delta_ask)`` (Guéant 2017; GLFT 2013).

        Distances from the mid (price units); ``+inf`` for a side blocked by the bound.
        """
        q = as_float(inventory)
        dt = q.dtype
        D = self.order_size
        A_b, k_b, A_a, k_a = self._sides(dt)
        g, s, mu = cast(self.gamma, dt), cast(self.sigma, dt), cast(self.mu, dt)
        st_b, C_b = self.static_half_spread(k_b, dt)
        st_a, C_a = self.static_half_spread(k_a, dt)
        h2 = k_b * A_b * C_b + k_a * A_a * C_a
        a = jnp.sqrt(g * s * s / (D * h2))
        a_safe = jnp.where(a > 0, a, 1.0)
        drift = jnp.where(mu == 0, 0.0, mu / (D * a_safe))
        b = (drift + A_a * C_a - A_b * C_b) / h2
        d_b = st_b + a * (q + D / 2.0) - b
        d_a = st_a - a * (q - D / 2.0) + b
        bid_ok, ask_ok = self._bounds_ok(q)
        return jnp.where(bid_ok, d_b, jnp.inf), jnp.where(ask_ok, d_a, jnp.inf)

    # -- exact solution ---------------------------------------------------------------------
    def generator_matrix(self, dtype: Any = None) -> Array:
        """The tridiagonal ``M`` of ``dv/dt = M v`` (shape ``(2N + 1, 2N + 1)``, index ``-N..N``).

        Requires a common ``k`` (``k_ask is None``).
        """
        self._require_common_k()
        dt = float_dtype(self.gamma) if dtype is None else dtype
        return _generator(self._core(dt), self.n_levels, self.order_size)

    def _core(self, dt: Any) -> tuple[Array, ...]:
        """``(gamma, k, A_b, A_a, sigma, mu, xi)`` in dtype ``dt`` (common-``k`` solutions)."""
        A_b, k, A_a, _ = self._sides(dt)
        return (
            cast(self.gamma, dt),
            k,
            A_b,
            A_a,
            cast(self.sigma, dt),
            cast(self.mu, dt),
            self._xi(dt),
        )

    def _require_common_k(self) -> None:
        if self.k_ask is not None:
            raise ValueError(
                "k_ask: the exact and asymptotic GLFT solutions need a common k "
                "(per-side A is supported)"
            )

    def exact_table(self, t: Any, horizon: Any = None) -> tuple[Array, Array]:
        """Exact ``(delta_bid, delta_ask)`` at time ``t`` for every grid inventory.

        ``v = exp(-(M - lambda_0 I)(T - t)) 1`` (``jax.scipy.linalg.expm``) with ``lambda_0``
        the smallest eigenvalue of ``M`` (held out of the gradient): the shift rescales ``v``
        by a constant, which leaves the quotes unchanged and keeps ``v`` inside the
        floating-point range for any horizon. Shapes ``(2N + 1,)``, ordered ``q = -Q .. Q``;
        ``+inf`` marks the blocked side at the bounds. Compiled once per configuration.
        """
        dt = float_dtype(t)
        T = self.horizon if horizon is None else horizon
        if T is None:
            raise ValueError("horizon: required for the exact solution")
        self._require_common_k()
        return _exact_table(
            self._core(dt), cast(t, dt), cast(T, dt), n=self.n_levels, D=self.order_size
        )

    def _index(self, q: Array) -> Array:
        n = self.n_levels
        j = jnp.round(q / self.order_size)
        return (jnp.clip(j, -n, n) + n).astype(jnp.int32)

    def exact_half_spreads(self, inventory: Any, t: Any, horizon: Any = None):
        """Exact finite-horizon ``(delta_bid, delta_ask)`` (matrix-exponential solution).

        ``inventory`` is rounded to the grid ``q = j Delta`` and clipped to ``[-Q, Q]``;
        ``horizon`` defaults to the strategy's ``horizon``. ``+inf`` marks a blocked side.
        """
        q = as_float(inventory)
        dt = q.dtype
        d_b, d_a = self.exact_table(cast(t, dt), horizon)
        i = self._index(q)
        return d_b[i], d_a[i]

    def asymptotic_table(self, dtype: Any = None) -> tuple[Array, Array]:
        """``T - t -> inf`` quotes for every grid inventory (ground-state eigenvector of ``M``).

        ``M`` is symmetrised by the diagonal similarity ``D = diag(rho^j)``,
        ``rho = sqrt(eta_b / eta_a)``; its ground state ``g`` gives ``f_j = g_j rho^-j``.
        """
        dt = float_dtype(self.gamma) if dtype is None else dtype
        self._require_common_k()
        return _asymptotic_table(self._core(dt), n=self.n_levels, D=self.order_size)

    def asymptotic_half_spreads(self, inventory: Any) -> tuple[Array, Array]:
        """Asymptotic (``T - t -> inf``) ``(delta_bid, delta_ask)`` from the spectral solution."""
        q = as_float(inventory)
        d_b, d_a = self.asymptotic_table(q.dtype)
        i = self._index(q)
        return d_b[i], d_a[i]

    # -- quote --------------------------------------------------------------------------------
    def quote(self, state: MarketState) -> Quote:
        """Quote ``mid -/+ delta`` with size ``order_size`` using ``self.solution``."""
        mid = state.mid
        dt = mid.dtype
        q = cast(state.inventory, dt)
        if self.solution == "approx":
            d_b, d_a = self.half_spreads(q)
        elif self.solution == "asymptotic":
            d_b, d_a = self.asymptotic_half_spreads(q)
        else:
            d_b, d_a = self.exact_half_spreads(q, cast(state.t, dt))
        ok_b, ok_a = jnp.isfinite(d_b), jnp.isfinite(d_a)
        bid = mid - jnp.where(ok_b, d_b, 0.0)
        ask = mid + jnp.where(ok_a, d_a, 0.0)
        size = jnp.asarray(self.order_size, dt)
        return make_quote(mid, bid, ask, size, size, ok_b, ok_a)


def _static_and_C(k: Array, xi: Array, D: float) -> tuple[Array, Array]:
    """``static = (1/(xi D)) ln(1 + xi D/k)`` and ``C = (1 + xi D/k)^-(1 + k/(xi D))``."""
    x = xi * D / k
    r = _log1p_over_x(x)
    return r / k, jnp.exp(-(jnp.log1p(x) + r))


def _generator(core: tuple[Array, ...], n: int, D: float) -> Array:
    gamma, k, A_b, A_a, sigma, mu, xi = core
    dt = gamma.dtype
    j = jnp.arange(-n, n + 1).astype(dt)
    alpha = k * gamma * sigma * sigma * D / 2.0
    beta = k * mu
    _, C = _static_and_C(k, xi, D)
    ones = jnp.ones(2 * n, dt)
    return (
        jnp.diag(alpha * j * j - beta * j)
        - (A_b * C) * jnp.diag(ones, 1)
        - (A_a * C) * jnp.diag(ones, -1)
    )


def _symmetrised(core: tuple[Array, ...], M: Array) -> tuple[Array, Array]:
    """``D M D^-1`` (symmetric) and ``ln rho`` with ``rho = sqrt(eta_b / eta_a)``."""
    A_b, A_a = core[2], core[3]
    log_rho = 0.5 * (jnp.log(A_b) - jnp.log(A_a))
    off = -jnp.sqrt(jnp.diagonal(M, 1) * jnp.diagonal(M, -1))
    Ms = jnp.diag(jnp.diagonal(M)) + jnp.diag(off, 1) + jnp.diag(off, -1)
    return Ms, log_rho


def _quotes_from_log_v(core, log_v: Array, shift: Array | float, D: float):
    """Per-grid-point quotes from ``ln v_j`` (``shift`` = ``ln rho`` for eigenvectors)."""
    k, xi = core[1], core[6]
    dt = log_v.dtype
    static, _ = _static_and_C(k, xi, D)
    inf = jnp.full((1,), jnp.inf, dt)
    d_b = (log_v[:-1] - log_v[1:] + shift) / k + static
    d_a = (log_v[1:] - log_v[:-1] - shift) / k + static
    return jnp.concatenate([d_b, inf]), jnp.concatenate([inf, d_a])


@partial(jax.jit, static_argnames=("n", "D"))
def _exact_table(core, t: Array, T: Array, *, n: int, D: float) -> tuple[Array, Array]:
    dt = t.dtype
    tau = jnp.maximum(T - t, 0.0)
    M = _generator(core, n, D)
    Ms, _ = _symmetrised(core, M)
    lam0 = jax.lax.stop_gradient(jnp.linalg.eigvalsh(Ms)[0])
    eye = jnp.eye(M.shape[0], dtype=dt)
    v = expm(-(M - lam0 * eye) * tau, max_squarings=64) @ jnp.ones(M.shape[0], dt)
    tiny = jnp.finfo(dt).tiny
    return _quotes_from_log_v(core, jnp.log(jnp.maximum(v, tiny)), 0.0, D)


@partial(jax.jit, static_argnames=("n", "D"))
def _asymptotic_table(core, *, n: int, D: float) -> tuple[Array, Array]:
    M = _generator(core, n, D)
    Ms, log_rho = _symmetrised(core, M)
    _, vecs = jnp.linalg.eigh(Ms)
    g0 = jnp.abs(vecs[:, 0])
    tiny = jnp.finfo(M.dtype).tiny
    return _quotes_from_log_v(core, jnp.log(jnp.maximum(g0, tiny)), log_rho, D)
