"""jaxmm.feeds simulated market: reproducibility, path moments against the models' closed
forms, smile dynamics, taker hit rates against the stated intensity rule."""

import asyncio
import math

import numpy as np
import pytest

from jaxmm.feeds import SimulatedMarket, SmileModel, TakerFlow, UnderlyingModel


def _paths(model, n_paths, dt, seed=0):
    rng = np.random.default_rng(seed)
    return np.array([model.step(model.s0, dt, rng) for _ in range(n_paths)])


def test_same_seed_same_market_different_seed_different():
    jump = UnderlyingModel(50.0, 0.2, "jump", jump_intensity=50.0, jump_std=0.05)
    smiles = {"A": SmileModel(0.5, -0.2, 0.3, 0.1)}

    def mk(seed):
        und = {"A": UnderlyingModel(100.0, 0.5), "B": jump}
        return SimulatedMarket(und, dt=1e-3, seed=seed, smiles=smiles)

    a, b, c = mk(3), mk(3), mk(4)
    pa = [[t.price for t in a.step()] for _ in range(50)]
    pb = [[t.price for t in b.step()] for _ in range(50)]
    pc = [[t.price for t in c.step()] for _ in range(50)]
    assert pa == pb and pa != pc
    assert a.smile_state == b.smile_state


def test_gbm_one_step_log_moments():
    dt, n = 0.5, 20000
    m = UnderlyingModel(100.0, 0.3, drift=0.05)
    x = np.log(_paths(m, n, dt) / 100.0)
    mean, var = (0.05 - 0.045) * dt, 0.09 * dt
    assert abs(x.mean() - mean) < 4 * math.sqrt(var / n)
    assert abs(x.var() - var) < 4 * var * math.sqrt(2 / n)


def test_jump_diffusion_is_martingale_compensated_and_fat_tailed():
    dt, n = 0.25, 20000
    m = UnderlyingModel(
        100.0, 0.1, "jump", drift=0.0, jump_intensity=8.0, jump_mean=-0.05, jump_std=0.1
    )
    s = _paths(m, n, dt, seed=1)
    assert abs(s.mean() / 100.0 - 1.0) < 4 * s.std() / 100.0 / math.sqrt(n)  # E[S'] = S
    x = np.log(s / 100.0)
    kurt = ((x - x.mean()) ** 4).mean() / x.var() ** 2
    assert kurt > 3.5  # a pure GBM has 3


def test_ou_reverts_to_its_mean_level():
    m = UnderlyingModel(120.0, 0.2, "ou", kappa=50.0, mean_level=100.0)
    x = np.log(_paths(m, 5000, 0.05, seed=2))
    e = math.exp(-50.0 * 0.05)
    mean = math.log(100.0) + (math.log(120.0) - math.log(100.0)) * e
    sd = 0.2 * math.sqrt((1 - e * e) / 100.0)
    assert abs(x.mean() - mean) < 4 * sd / math.sqrt(5000)
    assert abs(x.std() - sd) < 0.05 * sd


def test_smile_moves_and_is_skewed():
    smile = SmileModel(0.3, -0.2, level_vol=0.5, skew_vol=0.5)
    mk = SimulatedMarket({"A": UnderlyingModel(100.0, 0.0)}, dt=0.01, seed=5, smiles={"A": smile})
    v0 = mk.implied_vol("A", np.array([90.0, 110.0]), 0.5)
    np.testing.assert_allclose(v0, [0.3 - 0.2 * math.log(0.9), 0.3 - 0.2 * math.log(1.1)])
    mk.step()
    assert mk.smile_state["A"] != (0.3, -0.2)
    with pytest.raises(ValueError, match="underlying: no smile for 'B'"):
        mk.implied_vol("B", 100.0, 0.5)


def test_taker_hit_rates_follow_the_distance_rule_with_adverse_selection():
    flow, dt, n = TakerFlow(intensity=2000.0, k=4.0), 1e-3, 40000
    rng = np.random.default_rng(11)
    fair = np.full(n, 10.0)
    for ask, bid in ((10.25, 9.75), (9.9, 10.1)):  # fair-straddling, then mispriced (adverse)
        lifted, hit = flow.take(np.full(n, bid), np.full(n, ask), fair, dt, rng)
        p_ask = 1 - math.exp(-2000.0 * math.exp(-4.0 * (ask - 10.0)) * dt)
        p_bid = 1 - math.exp(-2000.0 * math.exp(-4.0 * (10.0 - bid)) * dt)
        for got, p in ((lifted.mean(), p_ask), (hit.mean(), p_bid)):
            assert abs(got - p) < 4 * math.sqrt(p * (1 - p) / n)
    p_far, _ = flow.probabilities(9.0, 10.5, 10.0, dt)
    p_near, _ = flow.probabilities(9.0, 10.1, 10.0, dt)
    assert p_near > p_far


def test_async_ticks_and_bad_input():
    mk = SimulatedMarket(
        {"A": UnderlyingModel(100.0, 0.2), "B": UnderlyingModel(10.0, 0.4)}, dt=1e-3, seed=0
    )

    async def collect():
        return [t async for t in mk.ticks(3)]

    ticks = asyncio.run(collect())
    assert [(t.underlying, t.step) for t in ticks] == [
        ("A", 1),
        ("B", 1),
        ("A", 2),
        ("B", 2),
        ("A", 3),
        ("B", 3),
    ]
    with pytest.raises(ValueError, match="model: must be one of"):
        UnderlyingModel(100.0, 0.2, "heston")
    with pytest.raises(ValueError, match="s0: must be > 0.0"):
        UnderlyingModel(0.0, 0.2)
    with pytest.raises(ValueError, match="vol: must be finite"):
        UnderlyingModel(1.0, float("nan"))
    with pytest.raises(ValueError, match="k: must be > 0.0"):
        TakerFlow(1.0, 0.0)
    with pytest.raises(ValueError, match="dt: must be > 0.0"):
        SimulatedMarket({"A": UnderlyingModel(1.0, 0.1)}, dt=0.0, seed=0)
