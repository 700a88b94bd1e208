"""``jaxmm backtest --config FILE --out DIR``: Monte-Carlo market-making backtest (jaxmm.sim).

The config (``.json``, or ``.toml`` with the same keys) names a strategy of
:mod:`jaxmm.strategy`, a mid-price model and a fill model of :mod:`jaxmm.sim`, and the run
size; the ``params`` tables are the constructors' keyword arguments (units as documented
there: A-S/GLFT ``sigma`` is the ABSOLUTE price vol in the time unit of ``dt``)::

    {
      "strategy": {"name": "AvellanedaStoikov",
                   "params": {"gamma": 0.1, "k": 1.5, "sigma": 2.0, "horizon": 1.0}},
      "market": {"model": "ArithmeticBrownian", "params": {"s0": 100.0, "sigma": 2.0}},
      "fills": {"A": 140.0, "k": 1.5},
      "paths": 1000, "steps": 200, "dt": 0.005, "seed": 0
    }

Optional keys: ``max_position`` (the risk layer's limit, default none), ``latency_steps`` (0),
``time_unit_years`` (1.0: length of the model time unit in years, for annualising Sharpe),
``risk_aversion`` (0.1, of the CARA / mean-variance utilities), ``batch_paths`` (256: paths per
compiled batch; the progress bar advances per batch).

Output in DIR: ``report.md`` (config and metrics table), ``metrics.json``
(:func:`jaxmm.sim.summary` plus run metadata) and ``backtest.png`` (sample PnL and inventory
paths, terminal PnL histogram).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._common import CliError, enable_float64, read_config_file

__all__ = ["BacktestConfig", "run_backtest_config", "run_backtest", "STRATEGIES", "MARKETS"]

STRATEGIES = ("AvellanedaStoikov", "AvellanedaStoikovInfinite", "GLFT", "Grid", "AdaptiveSpread")
MARKETS = ("ArithmeticBrownian", "GBM", "JumpDiffusion", "RegimeSwitching")
N_SAMPLE_PATHS = 20


class _Named(BaseModel):
    model_config = ConfigDict(extra="forbid")
    params: dict[str, Any] = Field(default_factory=dict)


class StrategySpec(_Named):
    name: Literal[STRATEGIES]  # type: ignore[valid-type]


class MarketSpec(_Named):
    model: Literal[MARKETS]  # type: ignore[valid-type]


class BacktestConfig(BaseModel):
    """Validated backtest config (unknown keys rejected; errors name the field).

    Example:
        >>> cfg = BacktestConfig.model_validate({
        ...     "strategy": {"name": "AvellanedaStoikov",
        ...                  "params": {"gamma": 0.1, "k": 1.5, "sigma": 2.0, "horizon": 1.0}},
        ...     "market": {"model": "ArithmeticBrownian", "params": {"s0": 100.0, "sigma": 2.0}},
        ...     "fills": {"A": 140.0, "k": 1.5}, "paths": 100, "steps": 50, "dt": 0.02})
        >>> cfg.seed, cfg.batch_paths
        (0, 256)
    """

    model_config = ConfigDict(extra="forbid")
    strategy: StrategySpec
    market: MarketSpec
    fills: dict[str, Any]
    paths: int = Field(ge=1, le=10_000_000)
    steps: int = Field(ge=1, le=1_000_000)
    dt: float = Field(gt=0, allow_inf_nan=False)
    seed: int = Field(default=0, ge=0)
    max_position: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    latency_steps: int = Field(default=0, ge=0)
    time_unit_years: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    risk_aversion: float = Field(default=0.1, gt=0, allow_inf_nan=False)
    batch_paths: int = Field(default=256, ge=1, le=1_000_000)


def _build(kind: str, cls: Any, params: dict[str, Any]) -> Any:
    try:
        return cls(**params)
    except TypeError as exc:  # unknown / missing keyword
        raise CliError(f"{kind}.params: {exc}") from None
    except ValueError as exc:
        raise CliError(f"{kind}.params: {exc}") from None


def load_config(path: str | Path) -> BacktestConfig:
    """Read and validate a backtest config file; :class:`CliError` names the bad field."""
    data = read_config_file(path)
    try:
        return BacktestConfig.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(x) for x in e["loc"])
        raise CliError(f"{path}: {loc}: {e['msg']}") from None


def run_backtest_config(cfg: BacktestConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run the simulation in batches of ``batch_paths``; returns metrics, samples and timing.

    The batches use keys ``jax.random.split(jax.random.key(seed), n_batches)``: the result is a
    deterministic function of (config, seed).
    """
    import jax
    import jax.numpy as jnp

    import jaxmm.sim as js
    import jaxmm.strategy as jst

    strategy = _build("strategy", getattr(jst, cfg.strategy.name), cfg.strategy.params)
    params = dict(cfg.market.params)
    if "s0" in params:  # the mid model's s0 dtype is the simulation dtype: float64 here
        params["s0"] = jnp.asarray(params["s0"], jnp.float64)
    market = _build("market", getattr(js, cfg.market.model), params)
    fills = _build("fills", js.PoissonFills, cfg.fills)

    batch = min(cfg.batch_paths, cfg.paths)
    n_batches = math.ceil(cfg.paths / batch)
    sizes = [batch] * (cfg.paths // batch) + ([cfg.paths % batch] if cfg.paths % batch else [])
    keys = jax.random.split(jax.random.key(cfg.seed), n_batches)
    parts = []
    sample: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.paths, desc="backtest", unit="path")
    try:
        for key, size in zip(keys, sizes, strict=True):
            res = js.simulate(
                strategy, market, fills, key, size, n_steps=cfg.steps, dt=cfg.dt,
                max_position=cfg.max_position, latency_steps=cfg.latency_steps, record=True,
            )  # fmt: skip
            if not sample:
                m = min(N_SAMPLE_PATHS, size)
                sample = {
                    "pnl_path": np.asarray(res.pnl_path[:m]),
                    "inventory_path": np.asarray(res.inventory_path[:m]),
                    "mid_path": np.asarray(res.mid_path[:m]),
                }
            terminal = {f: np.asarray(getattr(res, f)) for f in _TERMINAL}
            parts.append(terminal)
            if bar is not None:
                bar.update(size)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    merged = js.SimResult(
        **{f: jnp.asarray(np.concatenate([p[f] for p in parts])) for f in _TERMINAL}
    )
    metrics = js.summary(
        merged, dt=cfg.dt, n_steps=cfg.steps, time_unit_years=cfg.time_unit_years,
        risk_aversion=cfg.risk_aversion,
    )  # fmt: skip
    metrics = {k: float(v) for k, v in metrics.items()}
    return {
        "metrics": metrics,
        "terminal_pnl": np.asarray(merged.pnl),
        "sample": sample,
        "wall_s": wall,
        "path_steps_per_s": cfg.paths * cfg.steps / wall,
    }


_TERMINAL = (
    "pnl", "cash", "inventory", "mid", "spread_captured", "inventory_pnl", "fees", "bid_fills",
    "ask_fills", "bid_quoted", "ask_quoted", "volume", "step_pnl_sum", "step_pnl_sumsq",
    "step_pnl_downsq", "max_drawdown", "max_drawdown_steps", "abs_inventory_mean",
)  # fmt: skip


def _plot(out: dict[str, Any], cfg: BacktestConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = out["sample"]
    t = np.arange(cfg.steps + 1) * cfg.dt
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(t, s["pnl_path"].T, lw=0.8, alpha=0.7)
    axes[0].set_title(f"PnL, {s['pnl_path'].shape[0]} sample paths")
    axes[1].plot(t, s["inventory_path"].T, lw=0.8, alpha=0.7)
    axes[1].set_title("inventory")
    axes[2].hist(out["terminal_pnl"], bins=50, color="C0", alpha=0.8)
    axes[2].set_title(f"terminal PnL, {cfg.paths} paths")
    for ax in axes[:2]:
        ax.set_xlabel("time (model units)")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _report(cfg: BacktestConfig, out: dict[str, Any], config_path: str) -> str:
    m = out["metrics"]
    lines = [
        "# jaxmm backtest report",
        "",
        f"Config: `{config_path}`; strategy **{cfg.strategy.name}**, market "
        f"**{cfg.market.model}**, {cfg.paths} paths x {cfg.steps} steps of dt = {cfg.dt:g}, "
        f"seed {cfg.seed}, float64.",
        f"Wall time {out['wall_s']:.2f} s including compilation "
        f"({out['path_steps_per_s']:.3g} path-steps/s).",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.6g} |" for k, v in m.items()]
    lines += [
        "",
        "Metrics as defined by `jaxmm.sim.summary` (docs/backtesting.md): PnL in price x "
        "quantity units, Sharpe/Sortino annualised with `time_unit_years`, means over paths.",
        "",
        "![backtest](backtest.png)",
        "",
        "```json",
        cfg.model_dump_json(indent=2),
        "```",
    ]
    return "\n".join(lines) + "\n"


def run_backtest(args: argparse.Namespace) -> int:
    """``jaxmm backtest``: see the module docstring."""
    enable_float64()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CliError("backtest needs matplotlib for its plot: pip install matplotlib") from None
    cfg = load_config(args.config)
    out = run_backtest_config(cfg, progress=not args.no_progress)
    d = Path(args.out)
    d.mkdir(parents=True, exist_ok=True)
    meta = {
        "config": cfg.model_dump(),
        "wall_s": out["wall_s"],
        "path_steps_per_s": out["path_steps_per_s"],
        "dtype": "float64",
    }
    (d / "metrics.json").write_text(json.dumps({**out["metrics"], "meta": meta}, indent=2) + "\n")
    _plot(out, cfg, d / "backtest.png")
    (d / "report.md").write_text(_report(cfg, out, str(args.config)))
    m = out["metrics"]
    print(
        f"backtest: {cfg.paths} paths x {cfg.steps} steps in {out['wall_s']:.2f} s; "
        f"pnl mean {m['pnl_mean']:.4g} (std {m['pnl_std']:.4g}), sharpe {m['sharpe']:.3g}, "
        f"fill ratio {m['fill_ratio']:.3g} -> {d}/report.md, metrics.json, backtest.png"
    )
    return 0
