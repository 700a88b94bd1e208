"""jaxmm.sim: fill statistics, accounting, reference twin, vmap vs loop, retrace, validation."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from jaxmm.portfolio._types import Fill, Instrument, Order, Side
from jaxmm.risk import LimitChecker, RiskLimits
from jaxmm.sim import (
    GBM,
    ArithmeticBrownian,
    JumpDiffusion,
    PoissonFills,
    RegimeSwitching,
    Symmetric,
    _engine,
    simulate,
    summary,
    sweep,
)
from jaxmm.strategy import AvellanedaStoikov, Quote


class FixedSpread(eqx.Module):
    """Test strategy: bid/ask at a constant distance ``half`` from the mid."""

    half: jax.Array
    size: jax.Array

    def __init__(self, half, size=1.0):
        self.half = jnp.asarray(half)
        self.size = jnp.asarray(size)

    def quote(self, state):
        mid = jnp.asarray(state.mid)
        h = self.half.astype(mid.dtype)
        s = self.size.astype(mid.dtype)
        return Quote(mid - h, mid + h, s, s)


A, K, DT = 140.0, 1.5, 0.005


def _p_exact(delta, dt=DT):
    return 1.0 - math.exp(-A * math.exp(-K * delta) * dt)


@pytest.mark.parametrize("rng", ["jax", "hash"])
def test_fill_counts_match_poisson_model(rng):
    # sigma = 0: the mid never moves, so each side fills in each step independently with
    # p = 1 - exp(-A e^{-k delta} dt); per-path counts are Binomial(n_steps, p).
    n_paths, n_steps, delta = 400, 200, 0.6
    res = simulate(
        FixedSpread(delta), ArithmeticBrownian(100.0, 0.0), PoissonFills(A, K),
        jax.random.key(3), n_paths, n_steps=n_steps, dt=DT, record=False, rng=rng,
    )  # fmt: skip
    p = _p_exact(delta)
    for counts in (np.asarray(res.bid_fills), np.asarray(res.ask_fills)):
        total = counts.sum()
        n = n_paths * n_steps
        assert abs(total - n * p) < 4.0 * math.sqrt(n * p * (1 - p))
        # dispersion: per-path variance against the binomial variance (chi-square band)
        var = counts.var(ddof=1)
        lo, hi = stats.chi2.ppf([1e-4, 1 - 1e-4], n_paths - 1) / (n_paths - 1)
        assert lo < var / (n_steps * p * (1 - p)) < hi
    assert np.all(np.asarray(res.bid_quoted) == n_steps)


def test_linear_probability_is_the_papers_lambda_dt():
    n_paths, n_steps, delta = 400, 200, 0.9
    res = simulate(
        FixedSpread(delta), ArithmeticBrownian(100.0, 0.0), PoissonFills(A, K, prob="linear"),
        jax.random.key(4), n_paths, n_steps=n_steps, dt=DT, record=False,
    )  # fmt: skip
    p = A * math.exp(-K * delta) * DT
    n = n_paths * n_steps
    assert abs(float(res.ask_fills.sum()) - n * p) < 4.0 * math.sqrt(n * p * (1 - p))


def _accounting(res, fee, max_position=None):
    q = np.asarray(res.inventory_path)
    x = np.asarray(res.cash_path)
    s = np.asarray(res.mid_path)
    nb, na = np.asarray(res.bid_qty), np.asarray(res.ask_qty)
    vb, va = np.asarray(res.bid_notional), np.asarray(res.ask_notional)
    np.testing.assert_allclose(np.diff(q, axis=1), nb - na, atol=1e-12)
    np.testing.assert_allclose(np.diff(x, axis=1), -vb + va - fee * (vb + va), atol=1e-9)
    # a single-level quote trades at its live price: notional = quantity x quote
    np.testing.assert_allclose(vb, nb * np.asarray(res.bid_quote), atol=1e-9)
    np.testing.assert_allclose(va, na * np.asarray(res.ask_quote), atol=1e-9)
    w = x + q * s
    np.testing.assert_allclose(res.pnl_path, w - w[:, :1], atol=1e-9)
    np.testing.assert_allclose(res.pnl, res.spread_captured + res.inventory_pnl - res.fees,
                               atol=1e-8)  # fmt: skip
    np.testing.assert_allclose(res.fees, fee * (vb + va).sum(axis=1), atol=1e-9)
    np.testing.assert_allclose(res.volume, (nb + na).sum(axis=1), atol=1e-12)
    if max_position is not None:
        assert np.abs(q).max() <= max_position + 1e-12


@pytest.mark.parametrize(
    "market",
    [
        ArithmeticBrownian(100.0, 2.0),
        GBM(100.0, 0.05, 0.2),
        JumpDiffusion(100.0, 1.0, jump_rate=5.0, jump_mean=-0.5, jump_std=1.0),
        RegimeSwitching(100.0, [1.0, 4.0], [2.0, 6.0]),
    ],
)
def test_accounting_invariant_every_path(market):
    fee = 2e-4
    res = simulate(
        AvellanedaStoikov(0.1, K, 2.0, 1.0, order_size=2.0), market,
        PoissonFills(A, K, maker_fee=fee), jax.random.key(5), 64, n_steps=120, dt=DT,
        max_position=5.0, latency_steps=2,
    )  # fmt: skip
    _accounting(res, fee, max_position=5.0)
    assert float(np.abs(res.inventory_path).max()) > 0  # fills happened


def test_position_rule_matches_the_risk_layer():
    # the engine's room rule against jaxmm.risk.LimitChecker on an integer grid
    inst = Instrument("X", "X")
    for max_pos in (0, 3):
        for q in range(-5, 6):
            chk = LimitChecker([inst], RiskLimits(max_position=max_pos))
            if q:
                chk.on_fill(Fill("X", Side.BUY if q > 0 else Side.SELL, abs(q), 1.0))
            for side, sign in ((Side.BUY, 1.0), (Side.SELL, -1.0)):
                for size in (1, 2, 4):
                    want = chk.check_order(Order("X", side, size)).qty
                    lim = max(max_pos, abs(q))
                    room = max(lim - q, 0) if sign > 0 else max(lim + q, 0)
                    got = float(
                        _engine._cap(jnp.asarray([float(size)]), jnp.asarray(room * 1.0))[0]
                    )
                    assert got == want, (max_pos, q, side, size)


def _reference_as(gamma, n_paths, n_steps, dt, key, block, symmetric=False):
    """Slow NumPy twin of the A-S simulation of the paper (binomial mid, p = min(A e^-kd dt, 1)).

    Uses the documented random stream: per block b, ``fold_in(key, b)`` split into
    ``(ku, kz)``; uniforms ``(block, n_paths, 3)``: [bid, ask, mid-direction].
    """
    sigma, T = 2.0, n_steps * dt
    out = np.zeros((n_paths, 3))
    s = np.full(n_paths, 100.0)
    q = np.zeros(n_paths)
    x = np.zeros(n_paths)
    for b in range(math.ceil(n_steps / block)):
        ku, _ = jax.random.split(jax.random.fold_in(key, b))
        u = np.asarray(jax.random.uniform(ku, (block, n_paths, 3), jnp.float64))
        for j in range(block):
            i = b * block + j
            if i >= n_steps:
                break
            tau = T - i * dt
            r = s - q * gamma * sigma**2 * tau
            half = gamma * sigma**2 * tau / 2 + math.log(1 + gamma / K) / gamma
            centre = s if symmetric else r
            bid, ask = centre - half, centre + half
            pb = np.clip(A * np.exp(-K * (s - bid)) * dt, 0, 1)
            pa = np.clip(A * np.exp(-K * (ask - s)) * dt, 0, 1)
            fb = u[j, :, 0] < pb
            fa = u[j, :, 1] < pa
            q = q + fb - fa
            x = x - fb * bid + fa * ask
            s = s + np.where(u[j, :, 2] < 0.5, -1.0, 1.0) * sigma * math.sqrt(dt)
    out[:, 0], out[:, 1], out[:, 2] = x + q * s, q, s
    return out


@pytest.mark.parametrize("symmetric", [False, True])
def test_matches_numpy_reference_twin(symmetric):
    key = jax.random.key(11)
    strat = AvellanedaStoikov(0.1, K, 2.0, 0.5)
    strat = Symmetric(strat) if symmetric else strat
    res = simulate(
        strat, ArithmeticBrownian(100.0, 2.0, binomial=True), PoissonFills(A, K, prob="linear"),
        key, 16, n_steps=100, dt=DT, block=30, record=False,
    )  # fmt: skip
    ref = _reference_as(0.1, 16, 100, DT, key, 30, symmetric)
    np.testing.assert_allclose(res.pnl, ref[:, 0], atol=1e-9)
    np.testing.assert_allclose(res.inventory, ref[:, 1], atol=0)
    np.testing.assert_allclose(res.mid, ref[:, 2], atol=1e-9)


def test_sweep_equals_loop_of_single_runs_and_is_bit_identical():
    gammas = jnp.asarray([0.02, 0.1, 0.4])
    strats = jax.vmap(lambda g: AvellanedaStoikov(g, K, 2.0, 0.5))(gammas)
    mk, fl = ArithmeticBrownian(100.0, 2.0), PoissonFills(A, K)
    kw = dict(n_steps=100, dt=DT, record=False)
    batch = sweep(strats, mk, fl, jax.random.key(2), 32, **kw)
    for i, g in enumerate(np.asarray(gammas)):
        one = simulate(
            AvellanedaStoikov(float(g), K, 2.0, 0.5), mk, fl, jax.random.key(2), 32, **kw
        )
        np.testing.assert_allclose(batch.pnl[i], one.pnl, rtol=1e-12, atol=1e-10)
        np.testing.assert_array_equal(batch.inventory[i], one.inventory)
    again = sweep(strats, mk, fl, jax.random.key(2), 32, **kw)
    for a, b in zip(
        jax.tree_util.tree_leaves(batch), jax.tree_util.tree_leaves(again), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = sweep(strats, mk, fl, jax.random.key(3), 32, **kw)
    n0 = _engine._sweep_jit._cache_size()
    new = jax.vmap(lambda g: AvellanedaStoikov(g, 1.2, 1.0, 0.7))(gammas * 2.0)
    sweep(new, ArithmeticBrownian(101.0, 1.0), PoissonFills(90.0, 1.2), jax.random.key(4), 32, **kw)
    assert _engine._sweep_jit._cache_size() == n0  # new values: no retrace
    assert not np.array_equal(np.asarray(other.pnl), np.asarray(batch.pnl))


def test_no_retrace_on_new_values():
    mk, fl = ArithmeticBrownian(100.0, 2.0), PoissonFills(A, K)
    kw = dict(n_steps=40, dt=DT, record=False)
    simulate(AvellanedaStoikov(0.1, K, 2.0, 1.0), mk, fl, jax.random.key(0), 8, **kw)
    n0 = _engine._core_jit._cache_size()
    simulate(
        AvellanedaStoikov(0.3, 1.2, 1.5, 2.0), ArithmeticBrownian(99.0, 1.0),
        PoissonFills(100.0, 1.1, maker_fee=1e-4), jax.random.key(9), 8, n_steps=40, dt=0.01,
        record=False, max_position=3.0,
    )  # fmt: skip
    assert _engine._core_jit._cache_size() == n0


def test_float32_runs_in_float32():
    res = simulate(
        AvellanedaStoikov(0.1, K, 2.0, 1.0), ArithmeticBrownian(jnp.float32(100.0), 2.0),
        PoissonFills(A, K), jax.random.key(0), 8, n_steps=40, dt=DT, rng="hash",
    )  # fmt: skip
    assert res.pnl.dtype == jnp.float32 and res.pnl_path.dtype == jnp.float32
    assert np.isfinite(np.asarray(res.pnl)).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_paths=0), "n_paths: must be an integer >= 1"),
        (dict(n_steps=2.5), "n_steps: must be an integer >= 1"),
        (dict(dt=0.0), "dt: must be > 0"),
        (dict(max_position=-1.0), "max_position: must be >= 0"),
        (dict(latency_steps=-1), "latency_steps: must be an integer >= 0"),
        (dict(rng="mt"), "rng: must be 'jax' or 'hash'"),
    ],
)
def test_bad_host_input_raises_naming_the_argument(kwargs, match):
    args = dict(n_paths=4, n_steps=10, dt=DT)
    args.update(kwargs)
    n_paths = args.pop("n_paths")
    with pytest.raises(ValueError, match=match):
        simulate(FixedSpread(0.5), ArithmeticBrownian(100.0, 1.0), PoissonFills(A, K),
                 jax.random.key(0), n_paths, **args)  # fmt: skip


def test_model_constructors_validate():
    with pytest.raises(ValueError, match="k: must be > 0"):
        PoissonFills(A, 0.0)
    with pytest.raises(ValueError, match="prob: must be 'exact' or 'linear'"):
        PoissonFills(A, K, prob="cubic")
    with pytest.raises(ValueError, match="sigma: must be >= 0"):
        ArithmeticBrownian(100.0, -1.0)
    with pytest.raises(ValueError, match="sigmas, switch_rates: must each have shape"):
        RegimeSwitching(100.0, [1.0], [1.0])


def test_summary_against_numpy_on_recorded_paths():
    res = simulate(
        AvellanedaStoikov(0.1, K, 2.0, 1.0), ArithmeticBrownian(100.0, 2.0), PoissonFills(A, K),
        jax.random.key(8), 32, n_steps=100, dt=0.01,
    )  # fmt: skip
    m = summary(res, dt=0.01, n_steps=100, time_unit_years=1.0, risk_aversion=0.2)
    w = np.asarray(res.pnl_path)
    r = np.diff(w, axis=1)
    sharpe = r.mean(axis=1) / r.std(axis=1) * math.sqrt(100.0)
    sortino = r.mean(axis=1) / np.sqrt((np.minimum(r, 0) ** 2).mean(axis=1)) * math.sqrt(100.0)
    np.testing.assert_allclose(m["sharpe"], sharpe.mean(), rtol=1e-8)
    np.testing.assert_allclose(m["sortino"], sortino.mean(), rtol=1e-8)
    dd = (np.maximum.accumulate(w, axis=1) - w).max(axis=1)
    np.testing.assert_allclose(m["max_drawdown"], dd.mean(), rtol=1e-10)
    durs = []
    for path in w:
        peak, run, best = -np.inf, 0, 0
        for v in path:
            run = run + 1 if v < peak else 0
            peak = max(peak, v)
            best = max(best, run)
        durs.append(best)
    np.testing.assert_allclose(m["max_drawdown_steps"], np.mean(durs))
    pnl = w[:, -1]
    np.testing.assert_allclose(m["pnl_mean"], pnl.mean(), rtol=1e-12)
    np.testing.assert_allclose(m["certainty_equivalent"],
                               -np.log(np.mean(np.exp(-0.2 * pnl))) / 0.2, rtol=1e-10)  # fmt: skip
    np.testing.assert_allclose(m["mean_variance"], pnl.mean() - 0.1 * pnl.var(), rtol=1e-10)
    q = np.asarray(res.inventory_path)
    np.testing.assert_allclose(m["abs_inventory_mean"], np.abs(q[:, :-1]).mean(), rtol=1e-12)
    fills = (np.asarray(res.bid_qty) > 0).sum() + (np.asarray(res.ask_qty) > 0).sum()
    quoted = float(res.bid_quoted.sum() + res.ask_quoted.sum())
    np.testing.assert_allclose(m["fill_ratio"], fills / quoted, rtol=1e-12)
    np.testing.assert_allclose(m["inventory_q50"], np.quantile(q[:, -1], 0.5))


@settings(max_examples=15, deadline=None)
@given(
    gamma=st.floats(0.01, 1.0),
    fee=st.floats(-5e-4, 1e-3),
    max_position=st.floats(0.0, 6.0),
    q0=st.floats(-8.0, 8.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_accounting_and_limit_hold_for_random_configurations(gamma, fee, max_position, q0, seed):
    # same shapes every example: one compilation, new values only
    res = simulate(
        AvellanedaStoikov(gamma, K, 2.0, 1.0, order_size=1.5),
        ArithmeticBrownian(100.0, 2.0),
        PoissonFills(A, K, maker_fee=fee),
        jax.random.key(seed),
        16,
        n_steps=60,
        dt=DT,
        max_position=max_position,
        initial_inventory=q0,
    )
    _accounting(res, fee)
    q = np.abs(np.asarray(res.inventory_path))
    assert q.max() <= max(max_position, abs(q0)) + 1e-12
