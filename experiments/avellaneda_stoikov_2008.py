"""Reproduce Avellaneda & Stoikov (2008), Section 3.3, Tables 1-3, with jaxmm.sim.

Setting of the paper: s0 = 100, T = 1, sigma = 2, dt = 0.005 (200 steps), A = 140, k = 1.5,
1000 paths, gamma in {0.1, 0.01, 0.5}. The mid moves by +-sigma sqrt(dt) with probability 1/2
each step; a quote at distance delta is hit in a step with probability A exp(-k delta) dt
(``PoissonFills(prob="linear")``); profit is the terminal x + q S. The "inventory strategy" is
the A-S quote around the reservation price; the "symmetric strategy" quotes the same spread
centred on the mid (``jaxmm.sim.Symmetric``).

Also: GLFT vs A-S on the same paths, and gradient-tuned gamma vs a grid search under the same
simulation budget, evaluated on fresh paths of the exact simulator.

Writes experiments/results/avellaneda_stoikov_2008.{json,md} and PNG plots. Run:
``python experiments/avellaneda_stoikov_2008.py`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from jaxmm.sim import (
    ArithmeticBrownian,
    Concrete,
    PoissonFills,
    Symmetric,
    mean_variance,
    simulate,
    sweep,
    tune,
)
from jaxmm.strategy import GLFT, AvellanedaStoikov

jax.config.update("jax_enable_x64", True)

OUT = pathlib.Path(__file__).resolve().parent / "results"
S0, T, SIGMA, DT, A, K, N_PATHS = 100.0, 1.0, 2.0, 0.005, 140.0, 1.5, 1000
N_STEPS = round(T / DT)
GAMMAS = (0.1, 0.01, 0.5)

# Avellaneda & Stoikov (2008), Tables 1-3: (spread, profit mean, profit std, final q mean, std)
PUBLISHED = {
    (0.1, "inventory"): (1.29, 62.94, 5.89, 0.10, 2.80),
    (0.1, "symmetric"): (1.29, 67.21, 13.43, -0.018, 8.66),
    (0.01, "inventory"): (1.33, 66.78, 8.76, -0.02, 4.70),
    (0.01, "symmetric"): (1.33, 67.36, 13.40, -0.31, 8.65),
    (0.5, "inventory"): (1.15, 33.92, 4.72, -0.02, 1.88),
    (0.5, "symmetric"): (1.15, 66.20, 14.53, 0.25, 9.06),
}

MARKET = ArithmeticBrownian(S0, SIGMA, binomial=True)
FILLS = PoissonFills(A, K, prob="linear")
KEY = jax.random.key(2008)


def run(strategy, key=KEY, n_paths=N_PATHS, record=True):
    return simulate(strategy, MARKET, FILLS, key, n_paths, n_steps=N_STEPS, dt=DT, record=record)


def mean_spread(res) -> float:
    """Average quoted spread over all steps and paths where both sides were live."""
    b, a = np.asarray(res.bid_quote), np.asarray(res.ask_quote)
    live = a != b
    return float((a - b)[live].mean())


def reproduce():
    rows, results = [], {}
    for g in GAMMAS:
        inv = AvellanedaStoikov(g, K, SIGMA, T)
        for name, strat in (("inventory", inv), ("symmetric", Symmetric(inv))):
            res = run(strat)
            results[(g, name)] = res
            pnl, q = np.asarray(res.pnl), np.asarray(res.inventory)
            rows.append(
                {
                    "gamma": g,
                    "strategy": name,
                    "spread": mean_spread(res),
                    "profit_mean": float(pnl.mean()),
                    "profit_std": float(pnl.std(ddof=1)),
                    "final_q_mean": float(q.mean()),
                    "final_q_std": float(q.std(ddof=1)),
                }
            )
    return rows, results


def diagnostic_constant_spread():
    """Symmetric strategy with the paper's printed spread (2/gamma) ln(1 + gamma/k), constant."""
    import equinox as eqx

    from jaxmm.strategy import Quote

    class ConstantSymmetric(eqx.Module):
        half: jax.Array

        def quote(self, state):
            mid = jnp.asarray(state.mid)
            h = self.half.astype(mid.dtype)
            one = jnp.ones((), mid.dtype)
            return Quote(mid - h, mid + h, one, one)

    out = {}
    for g in GAMMAS:
        half = math.log1p(g / K) / g
        res = run(ConstantSymmetric(jnp.asarray(half)), record=False)
        out[g] = (2 * half, float(res.pnl.mean()), float(res.pnl.std(ddof=1)))
    return out


def glft_vs_as():
    """Same paths (same key): A-S (finite horizon) vs GLFT closed form, gamma = 0.1."""
    out = {}
    for name, strat in (
        ("A-S", AvellanedaStoikov(0.1, K, SIGMA, T)),
        ("GLFT (approx)", GLFT(0.1, K, A, SIGMA, 30)),
    ):
        res = run(strat, record=False)
        pnl = np.asarray(res.pnl)
        out[name] = (float(pnl.mean()), float(pnl.std(ddof=1)), float(np.std(res.inventory)),
                     float(mean_variance(res.pnl, 0.1)))  # fmt: skip
    return out


# gradient runs: (row name, relaxation, Adam learning rate, clip the gradient norm at 10)
GRADIENT_RUNS = (
    ("gradient (expectation)", True, 0.05, False),
    ("gradient (Concrete tau=0.3)", Concrete(0.3), 0.05, False),
    ("gradient (Concrete tau=0.1, clip 10)", Concrete(0.1), 0.05, True),
    ("gradient (expectation, lr 0.2)", True, 0.2, False),
    ("gradient (Concrete tau=0.3, lr 0.2)", Concrete(0.3), 0.2, False),
)


def tuned_vs_grid(budget_paths=64_000, risk=0.05):
    """Maximise mean - risk/2 var of PnL over gamma: gradient (relaxed) vs grid (exact).

    Every gradient run and the grid use ``budget_paths`` simulated paths in total; the winners
    are evaluated on fresh paths of the exact simulator. Gradient runs: the expectation
    relaxation (``relaxed=True``) and the Concrete relaxation (random relaxed fills on the
    exact simulator's uniforms); at tau = 0.1 the Concrete gradient through A-S's inventory
    feedback can blow up for large gamma (docs/backtesting.md), hence the clipped run.
    """
    import optax

    n_iter, n_paths = 100, budget_paths // 100
    found = {}
    for name, relaxed, lr, clip in GRADIENT_RUNS:
        optimizer = optax.adam(lr)
        if clip:
            optimizer = optax.chain(optax.clip_by_global_norm(10.0), optimizer)
        tuned = tune(
            AvellanedaStoikov(0.5, K, SIGMA, T), lambda r: mean_variance(r.pnl, risk), MARKET,
            FILLS, jax.random.key(1), params=lambda s: (s.gamma,), n_paths=n_paths,
            n_steps=N_STEPS, dt=DT, n_iter=n_iter, progress=False, relaxed=relaxed,
            optimizer=optimizer,
        )  # fmt: skip
        found[name] = float(tuned.params[0])
    grid = jnp.exp(jnp.linspace(math.log(0.005), math.log(2.0), 16))
    strats = jax.vmap(lambda g: AvellanedaStoikov(g, K, SIGMA, T))(grid)
    res = sweep(strats, MARKET, FILLS, jax.random.key(2), budget_paths // 16, n_steps=N_STEPS,
                dt=DT)  # fmt: skip
    best = float(grid[int(jnp.argmax(mean_variance(res.pnl, risk)))])
    fresh = {}
    for name, g in (*found.items(), ("grid", best)):
        r = run(AvellanedaStoikov(g, K, SIGMA, T), key=jax.random.key(99), n_paths=4000,
                record=False)  # fmt: skip
        pnl = np.asarray(r.pnl)
        se = math.sqrt((pnl.var() + 0.25 * risk**2 * ((pnl - pnl.mean()) ** 2).var()) / pnl.size)
        fresh[name] = (g, float(mean_variance(r.pnl, risk)), float(pnl.mean()), float(pnl.std()),
                       se)  # fmt: skip
    return fresh


def plots(results):
    res = results[(0.1, "inventory")]
    t = np.arange(N_STEPS + 1) * DT
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(t, res.mid_path[0], color="k", lw=1, label="mid")
    ax.plot(t[:-1], res.bid_quote[0], color="tab:blue", lw=0.8, label="bid")
    ax.plot(t[:-1], res.ask_quote[0], color="tab:red", lw=0.8, label="ask")
    ax.set_xlabel("t")
    ax.set_ylabel("price")
    ax.set_title("A-S inventory strategy, gamma = 0.1: one sample path")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "avellaneda_stoikov_2008_path.png", dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, g in zip(axes, GAMMAS, strict=True):
        for name, c in (("inventory", "tab:blue"), ("symmetric", "tab:orange")):
            ax.hist(np.asarray(results[(g, name)].pnl), bins=40, alpha=0.6, color=c, label=name)
        ax.set_title(f"gamma = {g}")
        ax.set_xlabel("terminal profit")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(OUT / "avellaneda_stoikov_2008_pnl_hist.png", dpi=120)
    plt.close(fig)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rows, results = reproduce()
    (OUT / "avellaneda_stoikov_2008.json").write_text(json.dumps(rows, indent=2) + "\n")
    plots(results)
    const = diagnostic_constant_spread()
    glft = glft_vs_as()
    tuned = tuned_vs_grid()
    lines = [
        "# Avellaneda & Stoikov (2008), Section 3.3 — reproduction with `jaxmm.sim`",
        "",
        f"s0 = {S0}, T = {T}, sigma = {SIGMA}, dt = {DT} ({N_STEPS} steps), A = {A}, k = {K}, "
        f"{N_PATHS} paths, seed 2008, float64. Mid: +-sigma sqrt(dt) steps; fill probability "
        "per step A exp(-k delta) dt (capped at 1). Profit = x_T + q_T S_T.",
        "",
        "| gamma | strategy | spread (ours) | spread (paper) | profit (ours) | profit (paper) "
        "| std profit (ours) | std (paper) | final q (ours) | final q (paper) "
        "| std q (ours) | std q (paper) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = PUBLISHED[(r["gamma"], r["strategy"])]
        lines.append(
            f"| {r['gamma']} | {r['strategy']} | {r['spread']:.2f} | {p[0]:.2f} "
            f"| {r['profit_mean']:.2f} | {p[1]:.2f} | {r['profit_std']:.2f} | {p[2]:.2f} "
            f"| {r['final_q_mean']:.2f} | {p[3]:.2f} | {r['final_q_std']:.2f} | {p[4]:.2f} |"
        )
    lines += [
        "",
        "## Notes on what does and does not reproduce",
        "",
        "* **Spread column.** The paper's spread equals (2/gamma) ln(1 + gamma/k) only "
        "(1.29, 1.33, 1.15 for gamma = 0.1, 0.01, 0.5), i.e. the spread at t = T. The model "
        "spread is gamma sigma^2 (T - t) + (2/gamma) ln(1 + gamma/k); our column is its average "
        "over the steps, which adds gamma sigma^2 T / 2 (0.2, 0.02, 1.0).",
        "* **Symmetric strategy.** With the time-varying model spread centred on the mid "
        "(our `Symmetric`), the symmetric profit for gamma = 0.5 is below the paper's, because "
        "the spread is much wider early on. With the paper's printed (constant) spread instead:",
        "",
        "| gamma | constant spread | profit mean | profit std |",
        "|---|---|---|---|",
    ]
    for g, (sp, m, s) in const.items():
        lines.append(f"| {g} | {sp:.3f} | {m:.2f} | {s:.2f} |")
    lines += [
        "",
        "  which, for gamma = 0.5, is far closer to the paper's symmetric row (69.0 vs 66.2, "
        "std 13.9 vs 14.5) than the time-varying version (59.0, 11.7): the paper's symmetric "
        "strategy appears to quote the constant spread it prints. Separately, for gamma = 0.1 "
        "and 0.01 our profit means are about 2 above the paper's for both strategies (5 to 10 "
        "standard errors), a "
        "systematic difference we have not explained; the inventory statistics agree more "
        "closely.",
        "* **gamma = 0.5, inventory strategy.** Our profit is above the paper's 33.92 while the "
        "final-inventory dispersion matches (1.9). We simulate the paper's stated procedure "
        "exactly (the NumPy twin in tests/test_sim_engine.py agrees path by path); we have not "
        "tuned anything to match, and leave the difference documented.",
        "* Monte-Carlo standard error of a profit mean is std / sqrt(1000), e.g. 0.2 for "
        "std 6: differences of a unit or more between ours and the paper are not sampling noise.",
        "",
        "## GLFT vs A-S on the same paths (gamma = 0.1)",
        "",
        "| strategy | profit mean | profit std | std final q | mean - 0.05 var |",
        "|---|---|---|---|---|",
    ]
    for name, (m, s, qs, mv) in glft.items():
        lines.append(f"| {name} | {m:.2f} | {s:.2f} | {qs:.2f} | {mv:.2f} |")
    lines += [
        "",
        "(GLFT: closed-form quotes with the fill model's A = 140, k = 1.5 and Q = 30; "
        "'mean - 0.05 var' is mean - (0.1/2) var.)",
        "",
        "## Gradient-tuned gamma vs grid search (same budget: 64,000 simulated paths)",
        "",
        "Objective: mean - (0.05/2) var of terminal profit. Gradient: 100 Adam steps (lr 0.05 "
        "unless the row says otherwise; from gamma = 0.5) on a relaxed simulator, 640 paths "
        "each, every run its own 64,000-path budget: the expectation relaxation "
        "(`relaxed=True`, every fill replaced by its expectation) and the Concrete relaxation "
        "(`relaxed=Concrete(tau)`: fill indicator sigmoid((logit P - logit U)/tau) on the exact "
        "simulator's uniforms; at tau = 0.1 with the gradient clipped to norm 10 before Adam). "
        "Grid: 16 log-spaced gammas in [0.005, 2], 4,000 exact paths each. All evaluated on "
        "4,000 fresh paths (key 99) of the exact simulator.",
        "",
        "| method | gamma | objective (fresh, exact) | +- s.e. | profit mean | profit std |",
        "|---|---|---|---|---|---|",
    ]
    for name, (g, mv, m, s, se) in tuned.items():
        lines.append(f"| {name} | {g:.4f} | {mv:.2f} | {se:.2f} | {m:.2f} | {s:.2f} |")
    gaps = {n: v[1] - tuned["grid"][1] for n, v in tuned.items() if n != "grid"}
    parts = [f"{n}: {'+' if gap >= 0 else ''}{gap:.2f} vs the grid" for n, gap in gaps.items()]
    verdict = (
        "Objective difference to the grid's point on the same fresh exact paths ("
        + "; ".join(parts)
        + "). Reading: at lr 0.05 no run converged in 100 steps from gamma = 0.5 (Adam moves "
        "log gamma by about lr per step and log(0.5 / 0.017) = 3.4), so those three rows "
        "measure optimisation, not relaxation, error; the clipped Concrete tau = 0.1 run moved "
        "slowest (its early gradients at large gamma explode through the inventory feedback, "
        "docs/backtesting.md, and even clipped to norm 10 they inflate Adam's second-moment "
        "estimate). At lr 0.2 both relaxations reach the grid's objective within sampling "
        "error (the s.e. column is one evaluation's; the rows share the fresh paths). Here "
        "(risk 0.05) the optimal gamma is small and the objective flat around it, so the "
        "expectation relaxation's missing inventory risk (its inventory stays exactly 0 for "
        "A-S with a common k) costs little; where the risk term decides the optimum, "
        "experiments/options_tuning.py, only the Concrete relaxation finds it. With one "
        "scalar parameter a 16-point grid is hard to beat."
    )
    lines += ["", verdict]
    lines += [
        "",
        "Plots: `avellaneda_stoikov_2008_path.png` (sample path with quotes), "
        "`avellaneda_stoikov_2008_pnl_hist.png` (profit histograms).",
        "",
    ]
    (OUT / "avellaneda_stoikov_2008.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
