"""Monte Carlo for European options under GBM and Heston, with pathwise Greeks by autodiff.

Models and schemes
------------------
- ``model="gbm"``: geometric Brownian motion with carry ``r - q``, simulated exactly
  (log-normal increments); one step is exact for European payoffs, more steps give the same
  law on a grid (for later path-dependent payoffs).
- ``model="heston"``: Andersen's (2008) Quadratic-Exponential scheme for the variance with his
  martingale correction (QE-M), "Simple and efficient simulation of the Heston stochastic
  volatility model", *J. Computational Finance* 11(3), sec. 3.2.4 (switching at psi_c = 1.5)
  and sec. 4.3-4.4 (central discretisation gamma_1 = gamma_2 = 1/2 of the log-spot, and the
  drift K0* that makes ``E[S_{t+dt} | S_t] = S_t e^{(r-q) dt}`` exactly). The uniform of the
  exponential branch is ``Phi(Z_v)`` of the step's variance normal, so antithetic pairs stay
  antithetic (``Z -> -Z`` maps ``U -> 1 - U``). QE is far less biased than Euler at the same
  step count (Andersen's tables); the bias left at 1/32-year steps is well inside the standard
  error of the tests' path counts.

Random numbers and reproducibility
----------------------------------
Explicit ``jax.random`` keys: the normals of step ``t`` are drawn from
``jax.random.fold_in(key, t)`` inside the ``lax.scan`` over time steps, so memory does not grow
with ``n_steps`` and the same key gives bit-identical results. All options of one call share
the same normals (common random numbers), which keeps differences across strikes smooth.
With ``antithetic=True`` the paths come in pairs ``(Z, -Z)``; ``std_err`` is computed from the
``n_paths / 2`` pair averages, so it is an honest error bar for the antithetic estimator.

dtype
-----
float64 by default when JAX 64-bit mode is on (the dtype of the inputs, as everywhere in
jaxmm); ``dtype=jnp.float32`` simulates in float32 (half the memory, twice the GPU throughput).
At the path counts where float32 is worth it the statistical error dominates its rounding:
the estimator's mean is accumulated by XLA's pairwise reduction.

Greeks (:func:`mc_greeks`)
-------------------------
Pathwise (Broadie & Glasserman 1996) by forward-mode autodiff through the simulation with the
same random numbers: ``delta = E[d payoff / d S0]`` and ``vega = E[d payoff / d sigma]``. The
payoff's kink makes the pathwise *second* derivative zero almost surely (the derivative of the
indicator ``1{S_T > K}`` is a Dirac mass autodiff never sees), so pathwise gamma is
unavailable. Gamma instead uses the mixed likelihood-ratio / pathwise estimator (Glasserman,
*Monte Carlo Methods in Financial Engineering*, 2004, sec. 7.3): differentiate the pathwise
delta ``h'(S_T) S_T / S0`` by the likelihood ratio of ``ln S_T``. Conditional on the variance
path, ``ln S_T`` is Gaussian with variance ``V = sum_i var_i`` and innovation
``N = sum_i sqrt(var_i) Z_i`` (for GBM ``V = sigma^2 T``), so

    gamma = E[ pathwise_delta / S0 * (N / V - 1) ],

unbiased, with variance of order ``1 / V``. For Heston, vega is along the parallel vol shift of
:func:`jaxmm.pricing._heston.heston_greeks` (``sqrt(v0)`` and ``sqrt(theta)`` move together);
it is differentiated through QE's branches and ignores the jump of the scheme at the switch
``psi = psi_c``, a discretisation-size bias.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._dtypes import common_float_dtype
from .._validate import check_broadcast, check_values
from ._bsm import ndtr

__all__ = ["MCResult", "MCGreeks", "mc_price", "mc_greeks"]

Array = jax.Array
ArrayLike = Any

_PSI_C = 1.5  # Andersen's switching level between the quadratic and exponential branches


class MCResult(NamedTuple):
    """A Monte Carlo estimate and its standard error (same shape, per option)."""

    price: Array  # discounted expected payoff, per one unit of underlying
    std_err: Array  # standard error of ``price`` (from antithetic pair averages when used)


class MCGreeks(NamedTuple):
    """Monte Carlo price and Greeks, each with its standard error (raw units, per unit long).

    delta and vega are pathwise (autodiff through the paths); gamma is the mixed
    likelihood-ratio / pathwise estimator (module docstring). vega per 1.00 of vol.
    """

    price: Array
    delta: Array
    gamma: Array
    vega: Array
    price_std_err: Array
    delta_std_err: Array
    gamma_std_err: Array
    vega_std_err: Array


# --- path simulation (one option; vmapped over options at the call site) ----------------------


class _Config(NamedTuple):
    """Static simulation settings (hashable: a jit static argument)."""

    model: str  # "gbm" or "heston"
    n_paths: int
    n_steps: int
    antithetic: bool


class _Option(NamedTuple):
    """One European option (scalars)."""

    spot: Array
    strike: Array
    expiry: Array
    rate: Array
    dividend: Array
    is_call: Array


class _Params(NamedTuple):
    """Model parameters of one option (scalars); GBM uses ``vol``, Heston the other five."""

    vol: Array
    v0: Array
    kappa: Array
    theta: Array
    xi: Array
    rho: Array


class _PathState(NamedTuple):
    log_s: Array  # ln S_t per path, (n_paths,)
    v: Array  # variance per path (Heston; zeros for GBM), (n_paths,)
    noise: Array  # sum_i sqrt(var_i) Z_i: spot innovation given the variance path, (n_paths,)
    var: Array  # sum_i var_i: its conditional variance, (n_paths,)


def _normals(cfg: _Config, key: Array, step: Array, n_draws: int, dtype) -> Array:
    """Standard normals of one time step, (n_draws, n_paths); antithetic pairs are (Z, -Z)."""
    n_half = cfg.n_paths // 2 if cfg.antithetic else cfg.n_paths
    z = jax.random.normal(jax.random.fold_in(key, step), (n_draws, n_half), dtype)
    return jnp.concatenate([z, -z], axis=1) if cfg.antithetic else z


def _gbm_paths(cfg: _Config, key: Array, opt: _Option, par: _Params) -> _PathState:
    """Exact log-normal steps: ``ln S += (r - q - vol^2/2) dt + vol sqrt(dt) Z``."""
    dtype = opt.spot.dtype
    dt = opt.expiry / cfg.n_steps
    drift = (opt.rate - opt.dividend - 0.5 * par.vol * par.vol) * dt
    sd = par.vol * jnp.sqrt(dt)
    zeros = jnp.zeros((cfg.n_paths,), dtype)

    def step(state: _PathState, t):
        z = _normals(cfg, key, t, 1, dtype)[0]
        log_s = state.log_s + drift + sd * z
        return _PathState(log_s, state.v, state.noise + sd * z, state.var + sd * sd), None

    init = _PathState(jnp.log(opt.spot) + zeros, zeros, zeros, zeros)
    return jax.lax.scan(step, init, jnp.arange(cfg.n_steps))[0]


def _one_minus_exp_neg_over(k: Array, dt: Array) -> Array:
    """``(1 - e^{-k dt}) / k`` with the limit ``dt`` at ``k = 0`` (double-where)."""
    small = k * dt < 1e-8
    k_safe = jnp.where(small, jnp.ones_like(k), k)
    return jnp.where(small, dt * (1.0 - 0.5 * k * dt), -jnp.expm1(-k_safe * dt) / k_safe)


def _heston_paths(cfg: _Config, key: Array, opt: _Option, par: _Params) -> _PathState:
    """Andersen (2008) QE-M: variance by the QE scheme, log-spot by the central rule + K0*."""
    dtype = opt.spot.dtype
    kappa, theta, xi, rho = par.kappa, par.theta, par.xi, par.rho
    dt = opt.expiry / cfg.n_steps
    e = jnp.exp(-kappa * dt)
    frac = _one_minus_exp_neg_over(kappa, dt)  # (1 - e^{-kappa dt}) / kappa
    one_minus_e = kappa * frac
    # log-spot coefficients with gamma_1 = gamma_2 = 1/2 (Andersen eq. 33)
    k1 = 0.5 * dt * (kappa * rho / xi - 0.5) - rho / xi
    k2 = 0.5 * dt * (kappa * rho / xi - 0.5) + rho / xi
    k3 = 0.5 * dt * (1.0 - rho * rho)
    k4 = k3
    big_a = k2 + 0.5 * k4
    k0_plain = -rho * kappa * theta * dt / xi
    psi_floor = float(np.finfo(dtype).tiny) ** 0.5
    zeros = jnp.zeros((cfg.n_paths,), dtype)

    def step(state: _PathState, t):
        z_v, z_s = _normals(cfg, key, t, 2, dtype)
        v = state.v
        m = theta + (v - theta) * e  # conditional mean and variance of v(t + dt)
        s2 = v * xi * xi * e * frac + theta * xi * xi * one_minus_e * frac * 0.5
        m_pos = m > 0
        m_safe = jnp.where(m_pos, m, jnp.ones_like(m))
        psi = jnp.where(m_pos, s2 / (m_safe * m_safe), jnp.full_like(m, 2.0 * _PSI_C))
        quad = psi <= _PSI_C
        # quadratic branch v' = a (b + Z)^2; each branch sees a harmless psi where not taken
        psi_q = jnp.where(quad, jnp.maximum(psi, psi_floor), 1.0)
        two_over = 2.0 / psi_q
        b2 = two_over - 1.0 + jnp.sqrt(two_over) * jnp.sqrt(two_over - 1.0)
        a = m / (1.0 + b2)
        v_quad = a * (jnp.sqrt(b2) + z_v) ** 2
        # exponential branch: v' = 0 with probability p, else ln((1-p)/(1-U))/beta, U = Phi(Z)
        psi_e = jnp.where(quad, 2.0 * _PSI_C, psi)
        p = (psi_e - 1.0) / (psi_e + 1.0)
        beta = (1.0 - p) / m_safe
        one_minus_u = ndtr(-z_v)
        jump = one_minus_u < 1.0 - p
        ratio = jnp.where(jump, (1.0 - p) / jnp.where(jump, one_minus_u, 1.0), 1.0)
        v_exp = jnp.where(jump, jnp.log(ratio) / beta, 0.0)
        v_next = jnp.where(quad, v_quad, v_exp)
        # martingale correction K0* (Andersen sec. 4.4); plain K0 where it does not exist
        ok_q = big_a * a < 0.5
        one_m_2aa = jnp.where(ok_q, 1.0 - 2.0 * big_a * a, 1.0)
        k0_q = -big_a * b2 * a / one_m_2aa + 0.5 * jnp.log(one_m_2aa)
        ok_e = big_a < beta
        inner = jnp.where(ok_e, p + beta * (1.0 - p) / jnp.where(ok_e, beta - big_a, 1.0), 1.0)
        k0_star = jnp.where(quad, k0_q, -jnp.log(inner)) - (k1 + 0.5 * k3) * v
        k0 = jnp.where(jnp.where(quad, ok_q, ok_e), k0_star, k0_plain)
        var_i = k3 * v + k4 * v_next
        pos = var_i > 0
        sd_i = jnp.where(pos, jnp.sqrt(jnp.where(pos, var_i, 1.0)), 0.0)  # finite gradient at 0
        drift = (opt.rate - opt.dividend) * dt + k0 + k1 * v + k2 * v_next
        log_s = state.log_s + drift + sd_i * z_s
        return _PathState(log_s, v_next, state.noise + sd_i * z_s, state.var + var_i), None

    init = _PathState(jnp.log(opt.spot) + zeros, par.v0 + zeros, zeros, zeros)
    return jax.lax.scan(step, init, jnp.arange(cfg.n_steps))[0]


def _discounted_payoffs(cfg: _Config, key: Array, opt: _Option, par: _Params):
    """Per-path discounted payoff (n_paths,) and the terminal path state, for one option."""
    simulate = _gbm_paths if cfg.model == "gbm" else _heston_paths
    final = simulate(cfg, key, opt, par)
    w = jnp.where(opt.is_call, 1.0, -1.0).astype(opt.spot.dtype)
    payoff = jnp.maximum(w * (jnp.exp(final.log_s) - opt.strike), 0.0)
    return jnp.exp(-opt.rate * opt.expiry) * payoff, final


def _mean_and_se(cfg: _Config, x: Array) -> tuple[Array, Array]:
    """Mean and standard error; antithetic estimators use the n/2 pair averages."""
    if cfg.antithetic:
        half = x.shape[0] // 2
        x = 0.5 * (x[:half] + x[half:])
    n = x.shape[0]
    mean = jnp.mean(x)
    var = jnp.sum((x - mean) ** 2) / max(n - 1, 1)
    return mean, jnp.sqrt(var / n)


def _price_one(cfg: _Config, key: Array, opt: _Option, par: _Params) -> MCResult:
    values, _ = _discounted_payoffs(cfg, key, opt, par)
    return MCResult(*_mean_and_se(cfg, values))


def _vol_shifted(cfg: _Config, par: _Params, h: Array) -> _Params:
    """Parameters after a vol shift ``h``: GBM ``vol + h``; Heston ``sqrt(v0), sqrt(theta) + h``."""
    if cfg.model == "gbm":
        return par._replace(vol=par.vol + h)
    v0 = par.v0 + h * (2.0 * jnp.sqrt(par.v0) + h)
    theta = par.theta + h * (2.0 * jnp.sqrt(par.theta) + h)
    return par._replace(v0=v0, theta=theta)


def _greeks_one(cfg: _Config, key: Array, opt: _Option, par: _Params) -> MCGreeks:
    def values(spot, h):
        return _discounted_payoffs(cfg, key, opt._replace(spot=spot), _vol_shifted(cfg, par, h))

    zero = jnp.zeros_like(opt.spot)
    directions = jnp.eye(2, dtype=opt.spot.dtype)  # d/dspot and d/dvol, one batched tangent pass

    def along(direction):
        return jax.jvp(values, (opt.spot, zero), (direction[0], direction[1]))

    (price_paths, final), (tangents, _) = jax.vmap(along, out_axes=(None, 0))(directions)
    delta_paths, vega_paths = tangents[0], tangents[1]
    # mixed LR/pathwise gamma: d(pathwise delta)/dS0 through the conditional density of ln S_T
    var_pos = final.var > 0
    score = jnp.where(var_pos, final.noise / jnp.where(var_pos, final.var, 1.0), 0.0)
    gamma_paths = delta_paths / opt.spot * (score - 1.0)
    p, p_se = _mean_and_se(cfg, price_paths)
    d, d_se = _mean_and_se(cfg, delta_paths)
    g, g_se = _mean_and_se(cfg, gamma_paths)
    v, v_se = _mean_and_se(cfg, vega_paths)
    return MCGreeks(p, d, g, v, p_se, d_se, g_se, v_se)


def _batched(one, cfg: _Config, dtype, key, option_args, param_args):
    """Broadcast, cast and flatten the options; vmap ``one`` with the key shared (CRN)."""
    floats = [jnp.asarray(a).astype(dtype) for a in (*option_args[:5], *param_args)]
    arrays = jnp.broadcast_arrays(*floats, jnp.asarray(option_args[5]).astype(bool))
    shape = arrays[0].shape
    flat = [a.reshape(-1) for a in arrays]
    opts = _Option(*flat[:5], flat[11])
    pars = _Params(*flat[5:11])
    out = jax.vmap(lambda o, q: one(cfg, key, o, q))(opts, pars)
    return jax.tree.map(lambda o: o.reshape(shape), out)


@partial(jax.jit, static_argnames=("cfg", "dtype"))
def _mc_price_jit(key, option_args, param_args, cfg, dtype):
    return _batched(_price_one, cfg, dtype, key, option_args, param_args)


@partial(jax.jit, static_argnames=("cfg", "dtype"))
def _mc_greeks_jit(key, option_args, param_args, cfg, dtype):
    return _batched(_greeks_one, cfg, dtype, key, option_args, param_args)


# --- edge validation --------------------------------------------------------------------------


def _check_key(key: Any) -> None:
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"key: expected a single PRNG key, got shape {key.shape}")
        return
    shape = np.shape(key)
    dt = getattr(key, "dtype", None)
    if shape != (2,) or dt is None or np.dtype(dt) != np.uint32:
        raise ValueError(
            "key: expected a jax.random key (jax.random.key(seed) or jax.random.PRNGKey(seed)), "
            f"got {type(key).__name__} with shape {shape}"
        )


def _prepare(
    key,
    spot,
    strike,
    expiry,
    rate,
    dividend,
    is_call,
    model,
    vol,
    v0,
    kappa,
    theta,
    xi,
    rho,
    n_paths,
    n_steps,
    antithetic,
    dtype,
):
    _check_key(key)
    if model not in ("gbm", "heston"):
        raise ValueError(f"model: must be 'gbm' or 'heston', got {model!r}")
    if not isinstance(n_paths, int | np.integer) or n_paths < 2:
        raise ValueError(f"n_paths: must be an integer >= 2, got {n_paths!r}")
    if antithetic and n_paths % 2:
        raise ValueError(f"n_paths: must be even with antithetic=True, got {n_paths}")
    if not isinstance(n_steps, int | np.integer) or n_steps < 1:
        raise ValueError(f"n_steps: must be an integer >= 1, got {n_steps!r}")
    check_values("spot", spot, gt=0.0)
    check_values("strike", strike, gt=0.0)
    check_values("expiry", expiry, ge=0.0)
    check_values("rate", rate)
    check_values("dividend", dividend)
    named = {
        "spot": spot,
        "strike": strike,
        "expiry": expiry,
        "rate": rate,
        "dividend": dividend,
        "is_call": is_call,
    }
    zero = 0.0
    if model == "gbm":
        if vol is None:
            raise ValueError("vol: required for model='gbm'")
        check_values("vol", vol, ge=0.0)
        named["vol"] = vol
        params = (vol, zero, zero, zero, 1.0, zero)
    else:
        given = {"v0": v0, "kappa": kappa, "theta": theta, "xi": xi, "rho": rho}
        missing = [name for name, value in given.items() if value is None]
        if missing:
            raise ValueError(f"{missing[0]}: required for model='heston'")
        check_values("v0", v0, ge=0.0)
        check_values("kappa", kappa, ge=0.0)
        check_values("theta", theta, ge=0.0)
        check_values("xi", xi, gt=0.0)
        check_values("rho", rho, ge=-1.0, le=1.0)
        named.update(v0=v0, kappa=kappa, theta=theta, xi=xi, rho=rho)
        params = (zero, v0, kappa, theta, xi, rho)
    check_broadcast(named)
    if dtype is None:
        dtype = common_float_dtype(spot, strike, expiry, rate, dividend, *params)
    else:
        dtype = np.dtype(jax.dtypes.canonicalize_dtype(dtype))
        if not np.issubdtype(dtype, np.floating):
            raise ValueError(f"dtype: must be a floating dtype, got {dtype}")
    option_args = (spot, strike, expiry, rate, dividend, is_call)
    cfg = _Config(model, int(n_paths), int(n_steps), bool(antithetic))
    return option_args, params, cfg, dtype


# --- public API -------------------------------------------------------------------------------


def mc_price(
    key: Array,
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    dividend: ArrayLike,
    is_call: ArrayLike,
    *,
    model: str = "gbm",
    vol: ArrayLike | None = None,
    v0: ArrayLike | None = None,
    kappa: ArrayLike | None = None,
    theta: ArrayLike | None = None,
    xi: ArrayLike | None = None,
    rho: ArrayLike | None = None,
    n_paths: int = 100_000,
    n_steps: int | None = None,
    antithetic: bool = True,
    dtype: Any = None,
) -> MCResult:
    """Monte Carlo price of European options under GBM or Heston, with its standard error.

    Args:
        key: a ``jax.random`` key; the same key gives the same result bit for bit.
        spot, strike, expiry, rate, dividend, is_call: as :func:`jaxmm.pricing.bsm_price`
            (years ACT/365F, continuous yields); broadcast together, one estimate per option,
            all options sharing the same random numbers.
        model: ``"gbm"`` (needs ``vol``, annualised) or ``"heston"`` (needs ``v0, kappa, theta,
            xi, rho`` as in :func:`jaxmm.pricing._heston.heston_price`, with ``xi > 0``).
        n_paths: number of paths (even when ``antithetic``); static — a new value compiles.
        n_steps: time steps per path (static). Default: 1 for GBM (exact), and
            ``max(8, ceil(32 * max expiry))`` (steps of at most 1/32 year) for Heston.
        antithetic: use ``(Z, -Z)`` pairs; ``std_err`` then comes from the pair averages.
        dtype: simulation dtype; default the inputs' float dtype (float64 with x64 on).

    Returns:
        :class:`MCResult` ``(price, std_err)``, each of the broadcast shape of the inputs.

    Scheme, references and conventions: module docstring (Andersen 2008 QE-M for Heston).

    Example:
        >>> import jax
        >>> from jaxmm.pricing._mc import mc_price
        >>> r = mc_price(jax.random.key(0), 100.0, 100.0, 1.0, 0.05, 0.0, True,
        ...              vol=0.2, n_paths=20_000)
        >>> abs(float(r.price) - 10.4506) < 4 * float(r.std_err)  # BSM value 10.4506
        True
    """
    if n_steps is None:
        n_steps = _default_steps(model, expiry)
    option_args, params, cfg, dtype = _prepare(
        key,
        spot,
        strike,
        expiry,
        rate,
        dividend,
        is_call,
        model,
        vol,
        v0,
        kappa,
        theta,
        xi,
        rho,
        n_paths,
        n_steps,
        antithetic,
        dtype,
    )
    return _mc_price_jit(key, option_args, params, cfg=cfg, dtype=dtype)


def mc_greeks(
    key: Array,
    spot: ArrayLike,
    strike: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike,
    dividend: ArrayLike,
    is_call: ArrayLike,
    *,
    model: str = "gbm",
    vol: ArrayLike | None = None,
    v0: ArrayLike | None = None,
    kappa: ArrayLike | None = None,
    theta: ArrayLike | None = None,
    xi: ArrayLike | None = None,
    rho: ArrayLike | None = None,
    n_paths: int = 100_000,
    n_steps: int | None = None,
    antithetic: bool = True,
    dtype: Any = None,
) -> MCGreeks:
    """Monte Carlo price, delta, gamma and vega with standard errors (same paths for all).

    Arguments as :func:`mc_price`. delta and vega are pathwise derivatives by forward-mode
    autodiff through the simulation (common random numbers); gamma, which the payoff's kink
    makes pathwise-unavailable, is the mixed likelihood-ratio / pathwise estimator. Heston vega
    is along the parallel shift of ``sqrt(v0)`` and ``sqrt(theta)``. Details: module docstring.

    Example:
        >>> import jax
        >>> from jaxmm.pricing._mc import mc_greeks
        >>> g = mc_greeks(jax.random.key(1), 100.0, 100.0, 1.0, 0.05, 0.0, True,
        ...               vol=0.2, n_paths=20_000)
        >>> abs(float(g.delta) - 0.6368) < 4 * float(g.delta_std_err)  # BSM delta 0.6368
        True
    """
    if n_steps is None:
        n_steps = _default_steps(model, expiry)
    option_args, params, cfg, dtype = _prepare(
        key,
        spot,
        strike,
        expiry,
        rate,
        dividend,
        is_call,
        model,
        vol,
        v0,
        kappa,
        theta,
        xi,
        rho,
        n_paths,
        n_steps,
        antithetic,
        dtype,
    )
    return _mc_greeks_jit(key, option_args, params, cfg=cfg, dtype=dtype)


def _default_steps(model: str, expiry: ArrayLike) -> int:
    if model != "heston":
        return 1
    try:
        t_max = float(np.max(np.asarray(expiry)))
    except Exception:  # a tracer: no host value to size the grid from
        return 32
    if not np.isfinite(t_max):
        return 8
    return max(8, int(np.ceil(32.0 * t_max)))
