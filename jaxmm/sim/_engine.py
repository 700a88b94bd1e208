"""The Monte-Carlo market-making simulator: ``lax.scan`` over time, ``vmap`` over paths.

One step for one path (``_path_step``), in this order:

1. decision: the strategy quotes from ``MarketState(mid=s_i, inventory=q_i, t=i dt)``;
2. latency: with ``latency_steps = L`` the quote decided at step ``i`` is live during step
   ``i + L`` (nothing is live during the first ``L`` steps);
3. position limit (the rule of :class:`jaxmm.risk.LimitChecker` for ``max_position``,
   evaluated with the inventory when the quote is live): with ``c = max(max_position, |q|)``
   a bid may buy at most ``c - q`` and an ask may sell at most ``c + q`` (ladder levels are
   filled best first, so the cumulative size is capped); a side with no room is not quoted;
4. mid step ``s_i -> s_{i+1}`` (the market model);
5. fills (the fill model) at the quoted prices, priced against ``s_i``; then
   ``q_{i+1} = q_i + bought - sold`` and ``x_{i+1} = x_i - bid notional + ask notional - fee``.

Accounting identity (exact, per path): with ``W = x + q s``,
``W_{i+1} - W_i = spread_i + q_{i+1} (s_{i+1} - s_i) - fee_i`` where
``spread_i = sum bought (s_i - bid) + sum sold (ask - s_i)``: terminal PnL = spread captured +
inventory PnL - fees.

Random numbers: for each block of ``block`` steps ONE key ``fold_in(key, block_index)`` draws
the uniforms (and normals, if the market needs them) of every path and step of the block in one
call. The draw depends only on ``(key, n_paths, block, dtype)``: the same key gives bit-identical
paths, and a parameter sweep sees common random numbers.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array

from .._validate import check_values
from ..strategy import MarketState, Quote
from ._fills import Concrete

__all__ = ["SimResult", "Symmetric", "simulate", "sweep"]


class SimResult(NamedTuple):
    """Output of :func:`simulate` (leading ``n_paths`` axis; a sweep adds ``n_params`` first).

    Terminal and summary fields (always present):
        pnl: terminal mark-to-market PnL ``x_T + q_T s_T - (x_0 + q_0 s_0)``, price x quantity.
        cash: terminal cash ``x_T``.
        inventory: terminal inventory ``q_T``.
        mid: terminal mid ``s_T``.
        spread_captured: ``sum bought (s - bid) + sum sold (ask - s)`` over the path.
        inventory_pnl: ``sum q_{i+1} (s_{i+1} - s_i)``.
        fees: total fees paid (negative: rebates received).
        bid_fills, ask_fills: number of steps in which the side traded.
        bid_quoted, ask_quoted: number of steps in which the side was live with size > 0.
        volume: total traded quantity (both sides).
        step_pnl_sum, step_pnl_sumsq, step_pnl_downsq: sums of per-step PnL changes, of their
            squares and of their squared negative parts (for Sharpe / Sortino).
        max_drawdown: largest fall of the PnL path from its running peak.
        max_drawdown_steps: longest run of steps spent below a previous PnL peak.
        abs_inventory_mean: time average of ``|q_i|`` over steps ``0..n_steps-1``.
    Path fields (``record=True``, else ``None``), shape ``(n_paths, n_steps + 1)`` for states
    and ``(n_paths, n_steps)`` for per-step quantities:
        pnl_path, inventory_path, cash_path, mid_path; bid_qty, ask_qty (filled quantity),
        bid_notional, ask_notional (filled quantity x price), bid_quote, ask_quote (best live
        quote prices; the mid where the side is not live).
    """

    pnl: Array
    cash: Array
    inventory: Array
    mid: Array
    spread_captured: Array
    inventory_pnl: Array
    fees: Array
    bid_fills: Array
    ask_fills: Array
    bid_quoted: Array
    ask_quoted: Array
    volume: Array
    step_pnl_sum: Array
    step_pnl_sumsq: Array
    step_pnl_downsq: Array
    max_drawdown: Array
    max_drawdown_steps: Array
    abs_inventory_mean: Array
    pnl_path: Array | None = None
    inventory_path: Array | None = None
    cash_path: Array | None = None
    mid_path: Array | None = None
    bid_qty: Array | None = None
    ask_qty: Array | None = None
    bid_notional: Array | None = None
    ask_notional: Array | None = None
    bid_quote: Array | None = None
    ask_quote: Array | None = None


class Symmetric(eqx.Module):
    """Centre any strategy's quotes on the mid, keeping its spread and sizes.

    ``bid = s - (ask - bid)/2``, ``ask = s + (ask - bid)/2`` level by level: the "symmetric
    strategy" benchmark of Avellaneda & Stoikov (2008, Section 3.3).

    Example:
        >>> from jaxmm.sim import Symmetric
        >>> from jaxmm.strategy import AvellanedaStoikov, MarketState
        >>> q = Symmetric(AvellanedaStoikov(0.1, 1.5, 2.0, 1.0)).quote(
        ...     MarketState(mid=100.0, inventory=5.0))
        >>> round(float(q.bid + q.ask), 6)
        200.0
    """

    inner: Any

    def quote(self, state: MarketState) -> Quote:
        q = self.inner.quote(state)
        half = (q.ask - q.bid) / 2.0
        mid = jnp.asarray(state.mid)
        return Quote(mid - half, mid + half, q.bid_size, q.ask_size)


class _Carry(NamedTuple):
    s: Array  # () mid
    aux: Array  # () market-model state (regime)
    q: Array  # () inventory
    x: Array  # () cash
    spread: Array  # () spread captured so far
    invpnl: Array  # () inventory PnL so far
    fees: Array  # () fees so far
    nbf: Array  # () bid fill steps
    naf: Array  # () ask fill steps
    nbq: Array  # () bid live steps
    naq: Array  # () ask live steps
    vol: Array  # () traded quantity
    r1: Array  # () sum of step PnL
    r2: Array  # () sum of squared step PnL
    rd: Array  # () sum of squared negative step PnL
    w: Array  # () current PnL
    peak: Array  # () running PnL peak
    mdd: Array  # () max drawdown
    dur: Array  # () current steps below peak
    mdur: Array  # () max steps below peak
    absq: Array  # () sum of |q_i|
    lat: tuple  # latency buffers: 4 arrays (L, levels) (bid, ask, bid_size, ask_size)


def _levels(strategy: Any, dtp: Any) -> int:
    st = MarketState(mid=jnp.zeros((), dtp), inventory=jnp.zeros((), dtp), t=jnp.zeros((), dtp))
    out = jax.eval_shape(lambda s: strategy.quote(s), st)
    return 1 if out.bid.ndim == 0 else int(out.bid.shape[0])


def _cap(size: Array, room: Array) -> Array:
    """Cap cumulative ladder size (best level first) at ``room``."""
    before = jnp.cumsum(size) - size
    return jnp.clip(room - before, 0.0, size)


def _make_step(strategy, market, fills, dt, max_position, latency, relaxed, record, levels, tau):
    # One level: scalar fields, no reductions (reductions split XLA's elementwise fusion and
    # made the single-level step several times slower). Ladders: a trailing levels axis.
    single = levels == 1

    def total(a: Array) -> Array:
        return a if single else jnp.sum(a)

    def best(a: Array) -> Array:
        return a if single else a[0]

    def path_step(c: _Carry, i: Array, u: Array, z: Array):
        dtp = c.s.dtype
        t = i.astype(dtp) * dt
        qt = strategy.quote(MarketState(mid=c.s, inventory=c.q, t=t))
        shape = () if single else (levels,)
        new = tuple(
            jnp.reshape(jnp.asarray(a).astype(dtp), shape)
            for a in (qt.bid, qt.ask, qt.bid_size, qt.ask_size)
        )
        if latency > 0:
            live = tuple(buf[0] for buf in c.lat)
            lat = tuple(
                jnp.concatenate([buf[1:], n[None]], axis=0)
                for buf, n in zip(c.lat, new, strict=True)
            )
        else:
            live, lat = new, c.lat
        bid, ask, bsz, asz = live
        lim = jnp.maximum(max_position, jnp.abs(c.q))
        cap = (lambda a, room: jnp.clip(room, 0.0, a)) if single else _cap
        bsz = cap(jnp.maximum(bsz, 0.0), jnp.maximum(lim - c.q, 0.0))
        asz = cap(jnp.maximum(asz, 0.0), jnp.maximum(lim + c.q, 0.0))
        s_new, aux_new = market.step(c.s, c.aux, i, dt, z[: market.n_normals], u[2:])
        d_b = c.s - bid
        d_a = ask - c.s
        if fills.pessimistic:
            d_b = jnp.maximum(d_b, s_new - bid)
            d_a = jnp.maximum(d_a, ask - s_new)
        if tau is None:  # exact or expectation mode: the original call, unchanged
            qb = fills.fill_quantity(d_b, bsz, u[0], dt, 0, relaxed)
            qa = fills.fill_quantity(d_a, asz, u[1], dt, 1, relaxed)
        else:
            qb = fills.fill_quantity(d_b, bsz, u[0], dt, 0, relaxed, tau)
            qa = fills.fill_quantity(d_a, asz, u[1], dt, 1, relaxed, tau)
        nb, na = total(qb), total(qa)
        notb, nota = total(qb * bid), total(qa * ask)
        fee = fills.maker_fee.astype(dtp) * (notb + nota)
        q_new = c.q + nb - na
        x_new = c.x - notb + nota - fee
        spread = total(qb * (c.s - bid)) + total(qa * (ask - c.s))
        w_new = x_new + q_new * s_new
        r = w_new - c.w
        peak = jnp.maximum(c.peak, w_new)
        below = w_new < peak
        dur = jnp.where(below, c.dur + 1.0, 0.0).astype(dtp)
        one, zero = jnp.ones((), dtp), jnp.zeros((), dtp)
        out = _Carry(
            s=s_new,
            aux=aux_new,
            q=q_new,
            x=x_new,
            spread=c.spread + spread,
            invpnl=c.invpnl + q_new * (s_new - c.s),
            fees=c.fees + fee,
            nbf=c.nbf + jnp.where(nb > 0, one, zero),
            naf=c.naf + jnp.where(na > 0, one, zero),
            nbq=c.nbq + jnp.where(total(bsz) > 0, one, zero),
            naq=c.naq + jnp.where(total(asz) > 0, one, zero),
            vol=c.vol + nb + na,
            r1=c.r1 + r,
            r2=c.r2 + r * r,
            rd=c.rd + jnp.minimum(r, 0.0) ** 2,
            w=w_new,
            peak=peak,
            mdd=jnp.maximum(c.mdd, peak - w_new),
            dur=dur,
            mdur=jnp.maximum(c.mdur, dur),
            absq=c.absq + jnp.abs(c.q),
            lat=lat,
        )
        if not record:
            return out, None
        bq = jnp.where(best(bsz) > 0, best(bid), c.s)
        aq = jnp.where(best(asz) > 0, best(ask), c.s)
        return out, (w_new, q_new, x_new, s_new, nb, na, notb, nota, bq, aq)

    return path_step


def _fmix32(h: Array) -> Array:
    """MurmurHash3's 32-bit finaliser (an avalanche bijection on uint32)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _hash_bits(key, b, block, n_paths, m):
    """Counter-based uint32 words ``(block, n_paths, m)``: two finaliser rounds keyed by ``key``.

    Word ``w`` of path ``p`` at block step ``j`` is
    ``fmix(fmix((j m + w) ^ k0) ^ (p * 0x9E3779B9 + k1))`` with ``(k0, k1)`` drawn once per block
    from ``fold_in(key, b)``.
    """
    k = jax.random.bits(jax.random.fold_in(key, b), (2,), jnp.uint32)
    j = jnp.arange(block, dtype=jnp.uint32)[:, None, None]
    w = jnp.arange(m, dtype=jnp.uint32)[None, None, :]
    step_word = _fmix32((j * jnp.uint32(m) + w) ^ k[0])
    p = jnp.arange(n_paths, dtype=jnp.uint32)[None, :, None]
    return _fmix32(step_word ^ (p * jnp.uint32(0x9E3779B9) + k[1]))


def _draw(key, b, block, n_paths, n_u, n_z, dtp, sharding, rng):
    if rng == "hash":
        bits = _hash_bits(key, b, block, n_paths, n_u + n_z)
        if sharding is not None:
            bits = jax.lax.with_sharding_constraint(bits, sharding)
        # 24 high bits -> open interval (0, 1): (h + 1/2) 2^-24 with h in [0, 2^24)
        x = ((bits >> 8).astype(jnp.int32).astype(dtp) + 0.5) * (2.0**-24)
        u = x[..., :n_u]
        z = jnp.sqrt(jnp.asarray(2.0, dtp)) * jax.scipy.special.erfinv(2.0 * x[..., n_u:] - 1.0)
        return u, z
    kb = jax.random.fold_in(key, b)
    ku, kz = jax.random.split(kb)
    u = jax.random.uniform(ku, (block, n_paths, n_u), dtp)
    z = (
        jax.random.normal(kz, (block, n_paths, n_z), dtp)
        if n_z
        else jnp.zeros((block, n_paths, 0), dtp)
    )
    if sharding is not None:
        u = jax.lax.with_sharding_constraint(u, sharding)
        z = jax.lax.with_sharding_constraint(z, sharding)
    return u, z


def _core(
    strategy, market, fills, key, dt, max_position, q0, x0, tau=None, *, n_paths, n_steps,
    block, latency, relaxed, record, mesh, rng,
):  # fmt: skip
    dtp = jnp.asarray(market.s0).dtype
    dt = jnp.asarray(dt).astype(dtp)
    max_position = jnp.asarray(max_position).astype(dtp)
    levels = _levels(strategy, dtp)
    n_blocks = math.ceil(n_steps / block)
    n_u = 2 + market.n_uniforms
    n_z = market.n_normals
    sharding = None if mesh is None else NamedSharding(mesh, PartitionSpec(None, "paths"))
    path_sharding = None if mesh is None else NamedSharding(mesh, PartitionSpec("paths"))

    s0 = jnp.asarray(market.s0).astype(dtp)
    aux0 = market.init_aux(dtp) if hasattr(market, "init_aux") else jnp.zeros((), dtp)
    q0 = jnp.asarray(q0).astype(dtp)
    x0 = jnp.asarray(x0).astype(dtp)
    zero = jnp.zeros((), dtp)
    lat_shape = (latency,) if levels == 1 else (latency, levels)
    lat = tuple(jnp.zeros(lat_shape, dtp) for _ in range(4)) if latency else ()
    w0 = x0 + q0 * s0
    c0 = _Carry(s0, aux0, q0, x0, *([zero] * 11), w0, w0, zero, zero, zero, zero, lat)
    c0 = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n_paths,) + a.shape), c0)
    if path_sharding is not None:
        c0 = jax.lax.with_sharding_constraint(c0, path_sharding)

    tau = None if tau is None else jnp.asarray(tau).astype(dtp)
    step = jax.vmap(
        _make_step(
            strategy, market, fills, dt, max_position, latency, relaxed, record, levels, tau
        ),
        in_axes=(0, None, 0, 0),
    )

    def block_body(c, b):
        u, z = _draw(key, b, block, n_paths, n_u, n_z, dtp, sharding, rng)

        def inner(c, j):
            i = b * block + j
            c_new, rec = step(c, i, u[j], z[j])
            if n_steps % block:
                act = i < n_steps
                c_new = jax.tree_util.tree_map(lambda a, o: jnp.where(act, a, o), c_new, c)
            return c_new, rec

        return jax.lax.scan(inner, c, jnp.arange(block, dtype=jnp.int32))

    c, recs = jax.lax.scan(block_body, c0, jnp.arange(n_blocks, dtype=jnp.int32))
    nsteps = jnp.asarray(n_steps, dtp)
    res = dict(
        pnl=c.w - w0,
        cash=c.x,
        inventory=c.q,
        mid=c.s,
        spread_captured=c.spread,
        inventory_pnl=c.invpnl,
        fees=c.fees,
        bid_fills=c.nbf,
        ask_fills=c.naf,
        bid_quoted=c.nbq,
        ask_quoted=c.naq,
        volume=c.vol,
        step_pnl_sum=c.r1,
        step_pnl_sumsq=c.r2,
        step_pnl_downsq=c.rd,
        max_drawdown=c.mdd,
        max_drawdown_steps=c.mdur,
        abs_inventory_mean=c.absq / nsteps,
    )
    if record:

        def tidy(a):  # (n_blocks, block, n_paths) -> (n_paths, n_steps)
            return a.reshape(n_blocks * block, n_paths)[:n_steps].T

        w, q, x, s, nb, na, notb, nota, bq, aq = (tidy(a) for a in recs)

        def with0(a, a0):
            return jnp.concatenate([jnp.broadcast_to(a0, (n_paths, 1)).astype(dtp), a], axis=1)

        res.update(
            pnl_path=with0(w, w0) - w0,
            inventory_path=with0(q, q0),
            cash_path=with0(x, x0),
            mid_path=with0(s, s0),
            bid_qty=nb,
            ask_qty=na,
            bid_notional=notb,
            ask_notional=nota,
            bid_quote=bq,
            ask_quote=aq,
        )
    return SimResult(**res)


_STATIC = ("n_paths", "n_steps", "block", "latency", "relaxed", "record", "mesh", "rng")
_core_jit = jax.jit(_core, static_argnames=_STATIC)


def _sweep_core(strategies, market, fills, key, dt, max_position, q0, x0, tau=None, **kw):
    return jax.vmap(
        lambda s: _core(s, market, fills, key, dt, max_position, q0, x0, tau, **kw),
    )(strategies)


_sweep_jit = jax.jit(_sweep_core, static_argnames=_STATIC)


def _validate(n_paths, n_steps, dt, max_position, latency_steps, block):
    for name, v in (("n_paths", n_paths), ("n_steps", n_steps), ("block", block)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
    if isinstance(latency_steps, bool) or int(latency_steps) != latency_steps or latency_steps < 0:
        raise ValueError(f"latency_steps: must be an integer >= 0, got {latency_steps!r}")
    check_values("dt", dt, gt=0.0)
    if max_position is not None:
        check_values("max_position", max_position, ge=0.0)


def _rng(rng):
    if rng not in ("jax", "hash"):
        raise ValueError(f"rng: must be 'jax' or 'hash', got {rng!r}")
    return rng


def _relax(relaxed):
    """``relaxed`` argument -> (static mode, traced temperature or ``None``).

    Modes: ``False`` (exact), ``True`` (expectation), ``"concrete"`` and ``"straight_through"``
    (:class:`Concrete`, temperature ``tau``). ``False`` / ``True`` pass no temperature, so their
    traces are the ones they always were.
    """
    if isinstance(relaxed, Concrete):
        mode = "straight_through" if relaxed.straight_through else "concrete"
        return mode, relaxed.tau
    if isinstance(relaxed, str) and relaxed == "concrete":
        return "concrete", Concrete().tau
    if isinstance(relaxed, bool | int) and relaxed in (0, 1):
        return bool(relaxed), None
    raise ValueError(
        f"relaxed: must be False, True, 'concrete' or a Concrete(tau), got {relaxed!r}"
    )


def _mesh(devices, n_paths):
    if devices is None:
        return None
    devices = list(jax.devices() if devices == "all" else devices)
    if len(devices) <= 1:
        return None
    if n_paths % len(devices):
        raise ValueError(
            f"n_paths: must be a multiple of the {len(devices)} devices, got {n_paths}"
        )
    return Mesh(devices, ("paths",))


def simulate(
    strategy: Any,
    market: Any,
    fills: Any,
    key: Array,
    n_paths: int,
    *,
    n_steps: int,
    dt: Any,
    max_position: Any = None,
    latency_steps: int = 0,
    initial_inventory: Any = 0.0,
    initial_cash: Any = 0.0,
    relaxed: Any = False,
    record: bool = True,
    block: int = 1,
    devices: Any = None,
    rng: str = "jax",
) -> SimResult:
    """Simulate ``n_paths`` market-making paths of ``n_steps`` steps of length ``dt``.

    Implements the simulation of Avellaneda & Stoikov (2008, Section 3.3) for any strategy:
    see the module docstring and ``docs/backtesting.md`` for the exact step order, fill rules
    and accounting. Jitted; new parameter values of the same shapes do not recompile.

    Args:
        strategy: anything with ``quote(MarketState) -> Quote`` (``jaxmm.strategy``); one
            level (scalar fields) or a ladder (leading ``levels`` axis).
        market: a mid model (:class:`ArithmeticBrownian`, :class:`GBM`, ...); its ``s0``
            dtype is the simulation dtype (float32 or float64).
        fills: a fill model (:class:`PoissonFills`).
        key: a JAX PRNG key; the result is a deterministic function of it.
        n_paths: number of paths (static).
        n_steps: number of steps (static); time runs over ``[0, n_steps dt]``.
        dt: step length, in the strategy's time unit, > 0.
        max_position: the risk layer's ``max_position`` (``None``: unlimited).
        latency_steps: static; a quote decided at step ``i`` is live during step ``i + L``.
        initial_inventory, initial_cash: ``q_0`` and ``x_0``.
        relaxed: differentiable mode (the mid path stays random in every mode). ``False``
            (default): exact random fills. ``True``: every fill is replaced by its expected
            quantity (see :func:`tune`); inventory noise from fills is lost. ``"concrete"``
            or :class:`Concrete` ``(tau, straight_through=False)``: every fill indicator
            ``1{U < P}`` becomes ``sigmoid((logit P - logit U) / tau)`` on the same uniforms,
            so fills stay random and inventory risk is kept (``docs/backtesting.md``).
            The mode is static; ``tau`` is traced (a new value does not recompile).
        record: static; also return the per-step paths (memory ``O(n_paths n_steps)``).
        block: static; steps per PRNG call (default 1: one call per step for all paths; on
            CPU larger blocks were slower — the block's numbers leave the cache; it changes
            the random stream).
        devices: ``None`` (default device), ``"all"`` or a list of devices: shard the paths
            across them with ``jax.sharding`` (``n_paths`` must be a multiple of their number).
        rng: static; ``"jax"`` draws with ``jax.random`` (the key's own implementation,
            threefry by default); ``"hash"`` uses a counter-based integer hash keyed by the
            key (two MurmurHash3 finaliser rounds per 32-bit word, 24-bit uniforms) — faster on
            CPU in float32 (docs/backtesting.md), adequate for Monte Carlo, not cryptographic.

    Returns:
        :class:`SimResult`.

    Example:
        >>> import jax
        >>> from jaxmm.sim import ArithmeticBrownian, PoissonFills, simulate
        >>> from jaxmm.strategy import AvellanedaStoikov
        >>> res = simulate(AvellanedaStoikov(0.1, 1.5, 2.0, 1.0), ArithmeticBrownian(100.0, 2.0),
        ...                PoissonFills(140.0, 1.5), jax.random.key(0), 50, n_steps=100, dt=0.01)
        >>> res.pnl.shape, res.pnl_path.shape
        ((50,), (50, 101))
    """
    _validate(n_paths, n_steps, dt, max_position, latency_steps, block)
    mode, tau = _relax(relaxed)
    mp = jnp.inf if max_position is None else max_position
    return _core_jit(
        strategy, market, fills, key, dt, mp, initial_inventory, initial_cash, tau,
        n_paths=int(n_paths), n_steps=int(n_steps), block=int(min(block, n_steps)),
        latency=int(latency_steps), relaxed=mode, record=bool(record),
        mesh=_mesh(devices, int(n_paths)), rng=_rng(rng),
    )  # fmt: skip


def sweep(
    strategies: Any,
    market: Any,
    fills: Any,
    key: Array,
    n_paths: int,
    *,
    n_steps: int,
    dt: Any,
    max_position: Any = None,
    latency_steps: int = 0,
    initial_inventory: Any = 0.0,
    initial_cash: Any = 0.0,
    relaxed: Any = False,
    record: bool = False,
    block: int = 1,
    devices: Any = None,
    rng: str = "jax",
) -> SimResult:
    """:func:`simulate` for a batch of parameter sets, on common random numbers.

    ``strategies`` is one strategy whose array leaves carry a leading ``n_params`` axis (build
    it with ``jax.vmap(lambda g: AvellanedaStoikov(g, ...))(gammas)``); every parameter set
    sees the same paths (same key), so differences between them are not sampling noise.
    Every other argument is as in :func:`simulate` (``devices`` shards the paths across
    devices). Every output gains a leading ``n_params`` axis.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxmm.sim import ArithmeticBrownian, PoissonFills, sweep
        >>> from jaxmm.strategy import AvellanedaStoikov
        >>> strats = jax.vmap(lambda g: AvellanedaStoikov(g, 1.5, 2.0, 1.0))(
        ...     jnp.array([0.01, 0.1, 0.5]))
        >>> res = sweep(strats, ArithmeticBrownian(100.0, 2.0), PoissonFills(140.0, 1.5),
        ...             jax.random.key(1), 64, n_steps=100, dt=0.01)
        >>> res.pnl.shape
        (3, 64)
    """
    _validate(n_paths, n_steps, dt, max_position, latency_steps, block)
    mode, tau = _relax(relaxed)
    mp = jnp.inf if max_position is None else max_position
    return _sweep_jit(
        strategies, market, fills, key, dt, mp, initial_inventory, initial_cash, tau,
        n_paths=int(n_paths), n_steps=int(n_steps), block=int(min(block, n_steps)),
        latency=int(latency_steps), relaxed=mode, record=bool(record),
        mesh=_mesh(devices, int(n_paths)), rng=_rng(rng),
    )  # fmt: skip
