"""Greeks-aware chain quoting: one jitted, vmapped computation for a whole option chain.

The quote of every option is the solution of a stated per-option problem (derivation, units
and every adjustment term in ``docs/engine.md``):

- **Reservation price in Greek space** (Avellaneda & Stoikov 2008, mean-variance / CARA
  indifference pricing, with the inventory replaced by the portfolio's Greek vector). Risk
  factors over the holding horizon ``tau``: the underlying's move ``dS`` (absolute variance
  ``(S sigma_S)^2 tau``), its square (the gamma P&L ``Gamma dS^2 / 2``, variance
  ``(S sigma_S)^4 tau^2 / 2``) and the implied-vol level's move ``dsigma`` (variance
  ``nu^2 tau``, correlation ``rho`` with ``dS``). With ``Sigma`` their covariance, ``G`` the
  portfolio's (delta, gamma, vega) and ``u`` one unit of the option's (delta, gamma, vega),
  buying or selling one contract (``m`` units) changes the P&L variance by
  ``+-2 m u'Sigma G + m^2 u'Sigma u``; indifference gives, per unit of premium,

      r   = theo - gamma_ra u'Sigma G                  (reservation price)
      r^b = r - gamma_ra m u'Sigma u / 2,   r^a = r + gamma_ra m u'Sigma u / 2

  which is exactly A-S's ``r = s - q gamma sigma^2 tau`` when ``u = (1, 0, 0)``.
- **Optimal half-spread** under the fill intensity ``A exp(-k delta)``: ``(1/gamma_ra)
  ln(1 + gamma_ra / k)`` (A-S eq. 3.x; :func:`jaxmm.strategy.liquidity_term`).

Then the separately documented and tested adjustment terms (gamma / vega / theta widening,
expiry proximity, put/call vol shift, directional skew, spread multiplier, size scalar,
per-instrument enable, kill switch), tick/lot rounding and the post-trade limit caps that make
a side one-sided (size 0) when filling it would breach a Greek or position limit.

Units (MISSION.md): prices per one unit of underlying; contract value = price x multiplier;
expiry and horizon in years; vols annualised fractions; Greeks raw (vega per 1.00 vol, theta
per year); portfolio Greeks are POSITION Greeks (unit Greek x signed qty x multiplier).
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._dtypes import common_float_dtype
from .._validate import check_values
from ..pricing import autodiff_core_greeks, black_scholes_scalar
from ..strategy import liquidity_term, round_to_increment
from ..vol import VolSurface

__all__ = [
    "QuoteStatus",
    "QuoteParams",
    "QuoteLimits",
    "ChainMarket",
    "OptionChain",
    "ChainQuote",
    "quote_option",
    "quote_chain",
    "PARAM_FIELDS",
    "LIMIT_FIELDS",
    "MARKET_FIELDS",
    "CHAIN_FIELDS",
    "PACKED_OUTPUT_FIELDS",
    "pack_state",
    "quote_chain_packed",
]

Array = jax.Array
ArrayLike = Any

# limits enforced at limit x (1 - 1e-8): stricter than jaxmm.risk.LimitChecker's 1e-9, so a
# size the kernel allows is always allowed by the checker despite summation rounding.
_MARGIN = 1e-8


class QuoteStatus(enum.IntEnum):
    """Per-option outcome of :func:`quote_chain` (the ``status`` field, int32).

    OK: at least one side quoted. INVALID: a non-finite input, price or Greek, ``vol <= 0`` or
    ``expiry <= 0`` — nothing is quoted. DISABLED: the instrument is switched off. KILLED: the
    kill switch is on. LIMITED: valid, but both sides were capped to size 0 by the limits (or
    by a non-positive bid).
    """

    OK = 0
    INVALID = 1
    DISABLED = 2
    KILLED = 3
    LIMITED = 4


def _f(x: ArrayLike) -> Array:
    return jnp.asarray(x)


def _spot(x: ArrayLike) -> Array:
    check_values("market.spot", x, gt=0.0)  # host values only; JAX arrays pass through
    return jnp.asarray(x)


class QuoteParams(eqx.Module):
    """Model and operator parameters of the chain quoter (all array leaves: differentiable).

    Attributes:
        risk_aversion: ``gamma_ra`` > 0, per unit of money (1 / currency).
        fill_k: ``k`` > 0 of the fill intensity ``A exp(-k delta)``, per unit of option price.
        horizon: inventory holding horizon ``tau`` in years (e.g. ``1 / 8760`` = one hour).
        underlying_vol: ``sigma_S``, relative annualised vol of the underlying (risk factor).
        vol_of_vol: ``nu``, absolute annualised stdev of the implied-vol level (vol units per
            sqrt(year); 0.2 with sigma = 0.2 is a 100 % relative vol of vol).
        spot_vol_corr: ``rho`` in ``[-1, 1]`` between ``dS`` and ``dsigma``.
        gamma_widening: ``w_g`` >= 0; adds ``w_g |Gamma| (S sigma_S)^2 tau / 2`` per side.
        vega_widening: ``w_v`` >= 0; adds ``w_v |vega| nu sqrt(tau)`` per side.
        theta_widening: ``w_t`` >= 0; adds ``w_t |theta| tau`` per side.
        expiry_weight: ``w_e`` >= 0; half-spread factor ``1 + w_e T_ref / (T + T_ref)``.
        expiry_ref: ``T_ref`` > 0, years: the expiry scale of that factor.
        call_vol_shift, put_vol_shift: vol units added to calls / puts (reservation moves by
            ``vega x shift``): the put/call skew control.
        spread_multiplier: >= 0, multiplies the half-spread (operator control).
        size_scalar: >= 0, multiplies the base size (operator control).
        directional_skew: price units of the UNDERLYING; quotes as if the spot were
            ``S + skew`` (reservation moves by ``delta x skew``).
        base_size: contracts per side before scaling and caps, >= 0.
        tick: option price increment > 0 (bids round down, asks up).
        lot: size increment in contracts, > 0 (sizes round down).
        atm_band: ``|ln(K / F)| <= atm_band`` flags an option as at the money.

    Example:
        >>> p = QuoteParams(risk_aversion=1e-3, fill_k=20.0)
        >>> float(p.spread_multiplier)
        1.0
    """

    risk_aversion: Array = eqx.field(converter=_f)
    fill_k: Array = eqx.field(converter=_f)
    horizon: Array = eqx.field(converter=_f, default=1.0 / 8760.0)
    underlying_vol: Array = eqx.field(converter=_f, default=0.2)
    vol_of_vol: Array = eqx.field(converter=_f, default=0.2)
    spot_vol_corr: Array = eqx.field(converter=_f, default=0.0)
    gamma_widening: Array = eqx.field(converter=_f, default=0.0)
    vega_widening: Array = eqx.field(converter=_f, default=0.0)
    theta_widening: Array = eqx.field(converter=_f, default=0.0)
    expiry_weight: Array = eqx.field(converter=_f, default=0.0)
    expiry_ref: Array = eqx.field(converter=_f, default=7.0 / 365.0)
    call_vol_shift: Array = eqx.field(converter=_f, default=0.0)
    put_vol_shift: Array = eqx.field(converter=_f, default=0.0)
    spread_multiplier: Array = eqx.field(converter=_f, default=1.0)
    size_scalar: Array = eqx.field(converter=_f, default=1.0)
    directional_skew: Array = eqx.field(converter=_f, default=0.0)
    base_size: Array = eqx.field(converter=_f, default=10.0)
    tick: Array = eqx.field(converter=_f, default=0.01)
    lot: Array = eqx.field(converter=_f, default=1.0)
    atm_band: Array = eqx.field(converter=_f, default=0.02)

    def validate(self) -> QuoteParams:
        """Check the values (ValueError naming the field and bound); returns ``self``.

        Call it on the host (outside ``jit``): the leaves are read back as NumPy arrays.
        """
        h = {f: np.asarray(getattr(self, f)) for f in PARAM_FIELDS}
        for name in ("risk_aversion", "fill_k", "horizon", "expiry_ref", "tick", "lot"):
            check_values(name, h[name], gt=0.0)
        for name in (
            "underlying_vol",
            "vol_of_vol",
            "gamma_widening",
            "vega_widening",
            "theta_widening",
            "expiry_weight",
            "spread_multiplier",
            "size_scalar",
            "base_size",
            "atm_band",
        ):
            check_values(name, h[name], ge=0.0)
        check_values("spot_vol_corr", h["spot_vol_corr"], ge=-1.0, le=1.0)
        for name in ("call_vol_shift", "put_vol_shift", "directional_skew"):
            check_values(name, h[name])
        return self


PARAM_FIELDS: tuple[str, ...] = tuple(
    f for f in QuoteParams.__dataclass_fields__ if not f.startswith("_")
)
"""Field order of :class:`QuoteParams` (used by the packed entry point)."""


class QuoteLimits(eqx.Module):
    """Post-trade caps applied to every quoted size (``inf`` = unlimited).

    Greek limits are on the underlying's POSITION Greeks (raw units: delta in units of
    underlying, gamma per unit spot, vega per 1.00 vol, theta per year), the same measures as
    :class:`jaxmm.risk.LimitChecker`; ``max_position`` is per instrument, in contracts. Rule (as
    the checker's): after the side fills in full each measure is within its limit, or, if it
    was already over, no worse.

    Example:
        >>> QuoteLimits(delta=500.0).vega.item()
        inf
    """

    delta: Array = eqx.field(converter=_f, default=float("inf"))
    gamma: Array = eqx.field(converter=_f, default=float("inf"))
    vega: Array = eqx.field(converter=_f, default=float("inf"))
    theta: Array = eqx.field(converter=_f, default=float("inf"))
    max_position: Array = eqx.field(converter=_f, default=float("inf"))


class ChainMarket(eqx.Module):
    """The per-underlying state a chain is quoted against.

    Attributes:
        spot: underlying price > 0.
        rate, dividend: continuously compounded per year.
        delta, gamma, vega, theta: the underlying's current POSITION Greeks (options and
            underlying together), raw units.
        kill: kill switch (bool); True quotes nothing.

    Example:
        >>> m = ChainMarket(spot=100.0, rate=0.03)
        >>> bool(m.kill)
        False
    """

    spot: Array = eqx.field(converter=_spot)
    rate: Array = eqx.field(converter=_f, default=0.0)
    dividend: Array = eqx.field(converter=_f, default=0.0)
    delta: Array = eqx.field(converter=_f, default=0.0)
    gamma: Array = eqx.field(converter=_f, default=0.0)
    vega: Array = eqx.field(converter=_f, default=0.0)
    theta: Array = eqx.field(converter=_f, default=0.0)
    kill: Array = eqx.field(converter=_f, default=False)


class OptionChain(eqx.Module):
    """The listed options of one underlying, as equal-shape arrays (any shape, e.g.
    ``(n_expiry, n_strike, 2)``).

    Attributes:
        strike: strikes > 0.
        expiry: years to expiry (ACT/365F).
        is_call: bool.
        multiplier: units of underlying per contract (scalar or per option).
        position: current signed position in contracts (per option).
        enabled: per-instrument enable (bool).

    Example:
        >>> import jax.numpy as jnp
        >>> c = OptionChain.grid(jnp.array([90.0, 100.0]), jnp.array([0.1, 0.5]))
        >>> c.strike.shape
        (2, 2, 2)
    """

    strike: Array = eqx.field(converter=_f)
    expiry: Array = eqx.field(converter=_f)
    is_call: Array = eqx.field(converter=_f)
    multiplier: Array = eqx.field(converter=_f, default=1.0)
    position: Array = eqx.field(converter=_f, default=0.0)
    enabled: Array = eqx.field(converter=_f, default=True)

    @classmethod
    def grid(cls, strikes: ArrayLike, expiries: ArrayLike, multiplier: float = 1.0) -> OptionChain:
        """Every (expiry, strike, call/put): shape ``(n_expiry, n_strike, 2)``, calls first."""
        check_values("strikes", strikes, gt=0.0)
        check_values("expiries", expiries, ge=0.0)
        k = jnp.asarray(strikes)
        t = jnp.asarray(expiries).astype(k.dtype)
        shape = (t.shape[0], k.shape[0], 2)
        kk = jnp.broadcast_to(k[None, :, None], shape)
        tt = jnp.broadcast_to(t[:, None, None], shape)
        cc = jnp.broadcast_to(jnp.array([True, False])[None, None, :], shape)
        return cls(kk, tt, cc, multiplier, jnp.zeros(shape, k.dtype), jnp.ones(shape, bool))


class ChainQuote(NamedTuple):
    """Quotes for every option (each field has the chain's shape).

    Prices per unit of underlying; an inactive side has size 0 and a finite placeholder price
    (0 for an INVALID option). ``bid_raw`` / ``ask_raw`` are before rounding and caps
    (differentiable in the parameters).
    """

    bid: Array  # rounded down to tick
    ask: Array  # rounded up to tick, >= bid + tick
    bid_size: Array  # contracts, multiple of lot, >= 0
    ask_size: Array  # contracts, multiple of lot, >= 0
    theo: Array  # model value on the surface
    reservation: Array  # r: theo + Greek-space inventory shift + skews
    half_spread: Array  # per-side distance r -> raw quote, before rounding
    bid_raw: Array
    ask_raw: Array
    delta: Array  # unit Greeks (raw units)
    gamma: Array
    vega: Array
    theta: Array
    vol: Array  # the implied vol used
    is_atm: Array  # bool
    status: Array  # QuoteStatus, int32


def _cap(a: Array, b: Array, lim: Array) -> Array:
    """Largest ``n >= 0`` with ``|a + b n| <= max(lim, |a|)`` (inf when ``b == 0``)."""
    c = jnp.maximum(lim * (1.0 - _MARGIN), jnp.abs(a))
    nz = b != 0
    safe_b = jnp.where(nz, b, jnp.ones_like(b))
    cap = (c - jnp.sign(safe_b) * a) / jnp.abs(safe_b)
    return jnp.where(nz, jnp.maximum(cap, 0.0), jnp.full_like(b, jnp.inf))


def quote_option(
    params: QuoteParams,
    limits: QuoteLimits,
    market: ChainMarket,
    strike: Array,
    expiry: Array,
    is_call: Array,
    vol: Array,
    multiplier: Array,
    position: Array,
    enabled: Array,
) -> ChainQuote:
    """The quote of ONE option (scalars in, scalar fields out): the kernel :func:`quote_chain`
    vmaps. Units and equations: module docstring and ``docs/engine.md``. No validation.

    Example:
        >>> import jax.numpy as jnp
        >>> q = quote_option(QuoteParams(1e-3, 20.0), QuoteLimits(), ChainMarket(100.0),
        ...                  jnp.asarray(100.0), jnp.asarray(0.25), jnp.asarray(True),
        ...                  jnp.asarray(0.2), jnp.asarray(1.0), jnp.asarray(0.0),
        ...                  jnp.asarray(True))
        >>> bool(q.bid < q.theo < q.ask)
        True
    """
    dt = common_float_dtype(market.spot, strike, vol)
    c = lambda x: jnp.asarray(x).astype(dt)
    p = jax.tree.map(c, params)
    lim = jax.tree.map(c, limits)
    s, r, q = c(market.spot), c(market.rate), c(market.dividend)
    k, t, v, m, pos = c(strike), c(expiry), c(vol), c(multiplier), c(position)
    call = jnp.asarray(is_call).astype(bool)

    def price(ss, vv, tt, rr):
        return black_scholes_scalar(ss, k, tt, rr, q, vv, call)

    g = autodiff_core_greeks(price, s, v, t, r)
    theo, d1, g1, v1, th1 = g.price, g.delta, g.gamma, g.vega, g.theta

    # --- Greek-space reservation price (A-S indifference with a Greek inventory) ----------
    tau = p.horizon
    abs_s = s * p.underlying_vol  # absolute annual stdev of S
    var_s = abs_s * abs_s * tau
    var_g = 0.5 * (abs_s * abs_s * tau) ** 2  # Var((1/2) Gamma dS^2) = var_g Gamma^2
    var_v = p.vol_of_vol * p.vol_of_vol * tau
    cov_sv = p.spot_vol_corr * abs_s * p.vol_of_vol * tau
    pd, pg, pv = c(market.delta), c(market.gamma), c(market.vega)
    u_sigma_g = d1 * (var_s * pd + cov_sv * pv) + g1 * var_g * pg + v1 * (var_v * pv + cov_sv * pd)
    u_sigma_u = d1 * d1 * var_s + 2.0 * d1 * v1 * cov_sv + g1 * g1 * var_g + v1 * v1 * var_v
    inventory_shift = -p.risk_aversion * u_sigma_g
    inventory_half = 0.5 * p.risk_aversion * m * u_sigma_u
    liquidity = liquidity_term(p.risk_aversion, p.fill_k)

    # --- adjustment terms (each documented in docs/engine.md) ------------------------------
    put_call_skew = v1 * jnp.where(call, p.call_vol_shift, p.put_vol_shift)
    directional = d1 * p.directional_skew
    gamma_widen = p.gamma_widening * 0.5 * jnp.abs(g1) * abs_s * abs_s * tau
    vega_widen = p.vega_widening * jnp.abs(v1) * p.vol_of_vol * jnp.sqrt(tau)
    theta_widen = p.theta_widening * jnp.abs(th1) * tau
    expiry_factor = 1.0 + p.expiry_weight * p.expiry_ref / (t + p.expiry_ref)

    reservation = theo + inventory_shift + put_call_skew + directional
    half = (
        p.spread_multiplier
        * expiry_factor
        * (inventory_half + liquidity + gamma_widen + vega_widen + theta_widen)
    )
    bid_raw = reservation - half
    ask_raw = reservation + half

    # --- rounding to tick ------------------------------------------------------------------
    bid = jnp.maximum(round_to_increment(bid_raw, p.tick, "down"), 0.0)
    ask = round_to_increment(ask_raw, p.tick, "up")
    ask = jnp.maximum(ask, bid + p.tick)

    # --- sizes: operator scaling, post-trade limit caps, lot rounding ----------------------
    base = p.base_size * p.size_scalar
    greeks_pos = (pd, pg, pv, c(market.theta))
    unit = (d1, g1, v1, th1)
    lims = (lim.delta, lim.gamma, lim.vega, lim.theta)

    def side_cap(sign):
        caps = [_cap(a, sign * m * u, L) for a, u, L in zip(greeks_pos, unit, lims, strict=True)]
        caps.append(_cap(pos, sign * jnp.ones_like(pos), lim.max_position))
        return jnp.minimum(base, jnp.min(jnp.stack(caps)))

    bid_size = round_to_increment(side_cap(1.0), p.lot, "down")
    ask_size = round_to_increment(side_cap(-1.0), p.lot, "down")
    bid_size = jnp.where(bid >= p.tick, bid_size, jnp.zeros_like(bid_size))

    finite = jnp.isfinite(jnp.stack([theo, d1, g1, v1, th1, bid_raw, ask_raw, s, v, t]))
    valid = jnp.all(finite) & (v > 0) & (t > 0) & (s > 0) & (k > 0)
    on = jnp.asarray(enabled).astype(bool)
    killed = jnp.asarray(market.kill).astype(bool)
    live = valid & on & ~killed
    zero = jnp.zeros_like(bid)
    bid_size = jnp.where(live, bid_size, zero)
    ask_size = jnp.where(live, ask_size, zero)
    limited = (bid_size <= 0) & (ask_size <= 0)
    code = lambda x: jnp.asarray(int(x), jnp.int32)
    status = jnp.where(
        ~valid,
        code(QuoteStatus.INVALID),
        jnp.where(
            killed,
            code(QuoteStatus.KILLED),
            jnp.where(
                ~on,
                code(QuoteStatus.DISABLED),
                jnp.where(limited, code(QuoteStatus.LIMITED), code(QuoteStatus.OK)),
            ),
        ),
    )
    clean = lambda x: jnp.where(valid, x, zero)
    fwd = s * jnp.exp((r - q) * t)
    safe_k = jnp.where(k > 0, k, jnp.ones_like(k))
    is_atm = valid & (jnp.abs(jnp.log(safe_k / fwd)) <= p.atm_band)
    return ChainQuote(
        bid=clean(bid),
        ask=clean(ask),
        bid_size=bid_size,
        ask_size=ask_size,
        theo=theo,
        reservation=reservation,
        half_spread=half,
        bid_raw=bid_raw,
        ask_raw=ask_raw,
        delta=d1,
        gamma=g1,
        vega=v1,
        theta=th1,
        vol=v,
        is_atm=is_atm,
        status=status,
    )


def _vols(vol: Any, chain: OptionChain) -> Array:
    if isinstance(vol, VolSurface):
        return vol.implied_vol(chain.strike, chain.expiry)
    return jnp.broadcast_to(jnp.asarray(vol), jnp.shape(chain.strike))


def _quote_chain_impl(params, limits, market, chain, vol) -> ChainQuote:
    vols = _vols(vol, chain)
    shape = jnp.shape(chain.strike)
    b = lambda x: jnp.broadcast_to(jnp.asarray(x), shape).reshape(-1)
    cols = (chain.strike, chain.expiry, chain.is_call, vols, chain.multiplier)
    cols += (chain.position, chain.enabled)
    flat = tuple(b(x) for x in cols)
    out = jax.vmap(quote_option, in_axes=(None, None, None, 0, 0, 0, 0, 0, 0, 0))(
        params, limits, market, *flat
    )
    return ChainQuote(*(x.reshape(shape) for x in out))


_quote_chain_jit = jax.jit(_quote_chain_impl)


def quote_chain(
    params: QuoteParams,
    limits: QuoteLimits,
    market: ChainMarket,
    chain: OptionChain,
    vol: VolSurface | ArrayLike,
) -> ChainQuote:
    """Quote a whole chain in one jitted, vmapped call (no retrace on new values).

    Args:
        params: :class:`QuoteParams`.
        limits: :class:`QuoteLimits` (post-trade caps on the sizes).
        market: :class:`ChainMarket` (spot, rates, current position Greeks, kill switch).
        chain: :class:`OptionChain` (strikes, expiries, call/put, multiplier, positions,
            enable flags).
        vol: a :class:`jaxmm.vol.VolSurface` (``sigma(K, T)`` read sticky-strike from the
            surface's own forward) or implied vols broadcastable to the chain's shape.

    Returns:
        :class:`ChainQuote`, every field of the chain's shape. Bad values inside the kernel
        give ``status == QuoteStatus.INVALID`` and size 0, never an exception.

    Example:
        >>> import jax.numpy as jnp
        >>> chain = OptionChain.grid(jnp.linspace(80.0, 120.0, 5), jnp.array([0.1, 0.5]))
        >>> q = quote_chain(QuoteParams(1e-3, 20.0), QuoteLimits(), ChainMarket(100.0),
        ...                 chain, 0.2)
        >>> q.bid.shape, bool((q.bid < q.ask).all())
        ((2, 5, 2), True)
    """
    return _quote_chain_jit(params, limits, market, chain, vol)


# --- packed entry point: one array in per role, one array out ---------------------------------

LIMIT_FIELDS: tuple[str, ...] = ("delta", "gamma", "vega", "theta", "max_position")
MARKET_FIELDS: tuple[str, ...] = (
    "spot", "rate", "dividend", "delta", "gamma", "vega", "theta", "kill",
)  # fmt: skip
CHAIN_FIELDS: tuple[str, ...] = (
    "strike", "expiry", "is_call", "vol", "multiplier", "position", "enabled",
)  # fmt: skip
"""Column order of the ``(n, 7)`` chain array of :func:`quote_chain_packed`."""
PACKED_OUTPUT_FIELDS: tuple[str, ...] = (
    "bid", "ask", "bid_size", "ask_size", "theo", "reservation", "half_spread",
    "delta", "gamma", "vega", "theta", "status",
)  # fmt: skip
"""Column order of the ``(n, 12)`` output of :func:`quote_chain_packed`."""


def pack_state(params: QuoteParams, limits: QuoteLimits, market: ChainMarket) -> Array:
    """One vector: :data:`PARAM_FIELDS`, then :data:`LIMIT_FIELDS`, then
    :data:`MARKET_FIELDS` (``kill`` as 0/1), in the spot's float dtype.

    Example:
        >>> v = pack_state(QuoteParams(1e-3, 20.0), QuoteLimits(), ChainMarket(100.0))
        >>> v.shape
        (33,)
    """
    dt = common_float_dtype(market.spot)
    vals = [getattr(params, f) for f in PARAM_FIELDS] + [getattr(limits, f) for f in LIMIT_FIELDS]
    vals += [getattr(market, f) for f in MARKET_FIELDS]
    return jnp.stack([jnp.asarray(v).astype(dt) for v in vals])


def _unpack_state(x: Array) -> tuple[QuoteParams, QuoteLimits, ChainMarket]:
    n1, n2 = len(PARAM_FIELDS), len(PARAM_FIELDS) + len(LIMIT_FIELDS)
    params = QuoteParams(*(x[i] for i in range(n1)))
    limits = QuoteLimits(*(x[i] for i in range(n1, n2)))
    m = [x[i] for i in range(n2, n2 + len(MARKET_FIELDS))]
    m[-1] = m[-1] != 0
    return params, limits, ChainMarket(*m)


@jax.jit
def _quote_chain_packed_jit(state: Array, chain: Array) -> Array:
    params, limits, market = _unpack_state(state)
    cols = [chain[:, i] for i in range(len(CHAIN_FIELDS))]
    cols[2] = cols[2] != 0
    cols[6] = cols[6] != 0
    q = jax.vmap(quote_option, in_axes=(None, None, None, 0, 0, 0, 0, 0, 0, 0))(
        params, limits, market, *cols
    )
    dt = chain.dtype
    out = [getattr(q, f).astype(dt) for f in PACKED_OUTPUT_FIELDS]
    return jnp.stack(out, axis=-1)


def quote_chain_packed(state: ArrayLike, chain: ArrayLike) -> Array:
    """The low-latency twin of :func:`quote_chain`: ``(33,)`` state and ``(n, 7)`` chain in,
    ``(n, 12)`` quotes out (same kernel, same values).

    JAX's per-call cost grows with the number of argument and result leaves, so the engine
    loop keeps its state packed (:func:`pack_state`) and the chain as one array with columns
    :data:`CHAIN_FIELDS` (``is_call`` and ``enabled`` as 0/1). Output columns
    :data:`PACKED_OUTPUT_FIELDS` (``status`` as a float code of :class:`QuoteStatus`).

    Example:
        >>> import jax.numpy as jnp
        >>> st = pack_state(QuoteParams(1e-3, 20.0), QuoteLimits(), ChainMarket(100.0))
        >>> ch = jnp.array([[100.0, 0.25, 1.0, 0.2, 1.0, 0.0, 1.0]])
        >>> out = quote_chain_packed(st, ch)
        >>> out.shape, bool(out[0, 0] < out[0, 4] < out[0, 1])
        ((1, 12), True)
    """
    return _quote_chain_packed_jit(state, chain)
