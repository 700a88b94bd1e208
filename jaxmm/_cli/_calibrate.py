"""``jaxmm calibrate QUOTES.csv --out DIR``: fit SVI slices and/or an SSVI surface to quotes.

Input columns (header names, any order):

- ``expiry`` (years ACT/365F, > 0) and ``strike`` (> 0); rows with the same expiry form a slice;
- the forward: a ``forward`` column (> 0), or ``spot`` (> 0) with optional ``rate`` and
  ``dividend`` columns (continuously compounded, default 0): ``F = S exp((r - q) T)``;
- the quote, the first of these that is present:
  ``iv`` (annualised vol, a fraction; empty cell = no quote);
  ``bid_iv`` and ``ask_iv`` (vols; the mid is fitted where :func:`jaxmm.vol.quote_mask` holds);
  ``price`` or ``bid`` and ``ask`` (option prices, with ``is_call``): the mid price is turned
  into a Black-76 implied vol on the forward (:func:`jaxmm.pricing.implied_vol_black76`,
  discounted at ``rate``); quotes whose vol cannot be solved are left out.

Fits (``jaxmm.vol``): raw SVI per expiry (:func:`~jaxmm.vol.fit_svi`, vega-weighted, multi-start)
and the power-law SSVI surface jointly over expiries (:func:`~jaxmm.vol.fit_ssvi`), on
log-moneyness ``k = ln(K / F)``.

Output in DIR: ``params.json`` (per-slice SVI parameters ``a b rho m sigma`` with status and
RMSE in vol, SSVI ``rho eta gamma`` and ATM total variances ``theta`` per expiry) and
``smile.png`` (market vols and fitted curves per expiry).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ._common import (
    CliError,
    enable_float64,
    parse_bool_column,
    parse_float_column,
    read_csv_columns,
)

__all__ = ["load_quotes", "calibrate", "run_calibrate"]


def load_quotes(path: str | Path) -> dict[str, np.ndarray]:
    """Read a quotes CSV into padded ``(n_expiries, n_max)`` arrays.

    Returns a dict with ``expiries`` (n_expiries,), ``forwards`` (n_expiries,), and per slice
    ``strike``, ``k`` (log-moneyness), ``vol`` (NaN where there is no usable quote) and
    ``mask``. Raises :class:`CliError` naming the file, row and column of bad input.
    """
    _, cols = read_csv_columns(path, ("expiry", "strike"))
    n = len(cols["expiry"])
    expiry = parse_float_column(path, "expiry", cols["expiry"], gt=0.0)
    strike = parse_float_column(path, "strike", cols["strike"], gt=0.0)
    zeros = [""] * n
    rate = parse_float_column(path, "rate", cols.get("rate", zeros), allow_missing=True)
    rate = np.nan_to_num(rate, nan=0.0)
    if "forward" in cols:
        fwd = parse_float_column(path, "forward", cols["forward"], gt=0.0)
    elif "spot" in cols:
        spot = parse_float_column(path, "spot", cols["spot"], gt=0.0)
        q = parse_float_column(path, "dividend", cols.get("dividend", zeros), allow_missing=True)
        fwd = spot * np.exp((rate - np.nan_to_num(q, nan=0.0)) * expiry)
    else:
        raise CliError(f"{path}: missing column 'forward' or 'spot' (one of them is required)")

    if "iv" in cols:
        vol = parse_float_column(path, "iv", cols["iv"], ge=0.0, allow_missing=True)
        ok = np.isfinite(vol) & (vol > 0)
    elif "bid_iv" in cols or "ask_iv" in cols:
        for c in ("bid_iv", "ask_iv"):
            if c not in cols:
                raise CliError(f"{path}: missing column {c!r} (bid_iv and ask_iv go together)")
        bid = parse_float_column(path, "bid_iv", cols["bid_iv"], ge=0.0, allow_missing=True)
        ask = parse_float_column(path, "ask_iv", cols["ask_iv"], ge=0.0, allow_missing=True)
        ok = np.isfinite(bid) & np.isfinite(ask) & (bid > 0) & (ask > bid)
        vol = 0.5 * (bid + ask)
    elif "price" in cols or "bid" in cols or "ask" in cols:
        if "is_call" not in cols:
            raise CliError(f"{path}: missing column 'is_call' (needed to invert option prices)")
        is_call = parse_bool_column(path, "is_call", cols["is_call"])
        if "price" in cols:
            mid = parse_float_column(path, "price", cols["price"], allow_missing=True)
            ok = np.isfinite(mid) & (mid > 0)
        else:
            for c in ("bid", "ask"):
                if c not in cols:
                    raise CliError(f"{path}: missing column {c!r} (bid and ask go together)")
            bid = parse_float_column(path, "bid", cols["bid"], ge=0.0, allow_missing=True)
            ask = parse_float_column(path, "ask", cols["ask"], ge=0.0, allow_missing=True)
            ok = np.isfinite(bid) & np.isfinite(ask) & (bid > 0) & (ask > bid)
            mid = 0.5 * (bid + ask)
        import jaxmm.pricing as jp

        mid = np.where(ok, mid, 1.0)  # placeholder where unused; masked below
        v, st = jp.implied_vol_black76(mid, fwd, strike, expiry, rate, is_call)
        ok &= np.asarray(st) == int(jp.IVStatus.OK)
        vol = np.asarray(v)
    else:
        raise CliError(
            f"{path}: no quote columns: need 'iv', or 'bid_iv' and 'ask_iv', or 'price', or "
            "'bid' and 'ask' (with 'is_call')"
        )

    expiries = np.unique(expiry)
    sizes = [int(np.sum(expiry == t)) for t in expiries]
    width = max(sizes)
    shape = (len(expiries), width)
    out = {
        "strike": np.full(shape, np.nan),
        "k": np.zeros(shape),
        "vol": np.full(shape, np.nan),
        "mask": np.zeros(shape, bool),
    }
    forwards = np.empty(len(expiries))
    for i, t in enumerate(expiries):
        rows = np.flatnonzero(expiry == t)
        rows = rows[np.argsort(strike[rows], kind="stable")]
        m = rows.size
        forwards[i] = float(np.mean(fwd[rows]))
        out["strike"][i, :m] = strike[rows]
        out["k"][i, :m] = np.log(strike[rows] / fwd[rows])
        out["vol"][i, :m] = np.where(ok[rows], vol[rows], np.nan)
        out["mask"][i, :m] = ok[rows]
        if m < width:  # padding: repeat the last k (masked), keeps k finite for the fitters
            out["k"][i, m:] = out["k"][i, m - 1]
    return {"expiries": expiries, "forwards": forwards, **out}


def calibrate(
    quotes: dict[str, np.ndarray], *, model: str = "both", n_starts: int = 16, progress=False
) -> dict:
    """Fit the requested model(s); returns the JSON-ready parameter dict of ``params.json``."""
    import jaxmm.vol as jv

    if model not in ("svi", "ssvi", "both"):
        raise CliError(f"model: must be svi, ssvi or both, got {model!r}")
    if not 1 <= n_starts <= 256:
        raise CliError(f"starts: must be in [1, 256], got {n_starts}")
    T, k, vol, mask = quotes["expiries"], quotes["k"], quotes["vol"], quotes["mask"]
    used = mask.sum(axis=1)
    result: dict = {
        "expiries": T.tolist(),
        "forwards": quotes["forwards"].tolist(),
        "quotes_used": used.astype(int).tolist(),
        "units": "expiry in years ACT/365F; k = ln(K/F); total variance w = sigma^2 T; "
        "rmse in vol (fraction)",
    }
    if model in ("svi", "both"):
        fit = jv.fit_svi(k, vol, T, mask=mask, n_starts=n_starts, progress=progress)
        p = fit.params
        result["svi"] = [
            {
                "expiry": float(T[i]),
                "a": float(p.a[i]),
                "b": float(p.b[i]),
                "rho": float(p.rho[i]),
                "m": float(p.m[i]),
                "sigma": float(p.sigma[i]),
                "status": jv.SVIStatus(int(fit.status[i])).name,
                "rmse": float(fit.rmse[i]),
            }
            for i in range(len(T))
        ]
    if model in ("ssvi", "both"):
        if np.any(used < 1):
            bad = float(T[int(np.argmin(used))])
            raise CliError(f"quotes: expiry {bad:g} has no usable quote (SSVI needs every slice)")
        fit = jv.fit_ssvi(k, vol, T, mask=mask, n_starts=max(1, min(n_starts, 32)))
        s = fit.surface
        result["ssvi"] = {
            "rho": float(s.rho),
            "eta": float(s.eta),
            "gamma": float(s.gamma),
            "theta": np.asarray(s.theta).tolist(),
            "expiries": np.asarray(s.expiries).tolist(),
            "status": jv.SVIStatus(int(fit.status)).name,
            "rmse": np.asarray(fit.rmse).tolist(),
        }
    return result


def smile_plot(quotes: dict[str, np.ndarray], params: dict, path: Path) -> None:
    """Market vols and fitted smiles per expiry, one panel each (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import jaxmm.vol as jv

    T = quotes["expiries"]
    n = len(T)
    ncol = min(n, 3)
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    for i, t in enumerate(T):
        ax = axes[i // ncol][i % ncol]
        m = quotes["mask"][i]
        k = quotes["k"][i]
        ax.plot(k[m], 100 * quotes["vol"][i][m], "o", ms=3, color="0.3", label="market")
        lo, hi = (float(k[m].min()), float(k[m].max())) if m.any() else (-0.5, 0.5)
        pad = 0.1 * (hi - lo + 1e-9)
        grid = np.linspace(lo - pad, hi + pad, 200)
        if "svi" in params:
            p = params["svi"][i]
            s = jv.SVI(p["a"], p["b"], p["rho"], p["m"], p["sigma"])
            ax.plot(grid, 100 * np.asarray(s.implied_vol(grid, t)), label=f"SVI ({p['status']})")
        if "ssvi" in params:
            q = params["ssvi"]
            s = jv.SSVI(q["rho"], q["eta"], q["gamma"], np.asarray(q["theta"]),
                        np.asarray(q["expiries"]))  # fmt: skip
            ax.plot(grid, 100 * np.asarray(s.implied_vol(grid, t)), "--", label="SSVI")
        ax.set_title(f"T = {t:.4g} y")
        ax.set_xlabel("k = ln(K/F)")
        ax.set_ylabel("implied vol (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for j in range(n, nrow * ncol):
        axes[j // ncol][j % ncol].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_calibrate(args: argparse.Namespace) -> int:
    """``jaxmm calibrate``: see the module docstring."""
    enable_float64()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CliError(
            "calibrate needs matplotlib for the smile plot: pip install matplotlib"
        ) from None
    quotes = load_quotes(args.quotes)
    params = calibrate(
        quotes, model=args.model, n_starts=args.starts, progress=not args.no_progress
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "params.json").write_text(json.dumps(params, indent=2) + "\n")
    smile_plot(quotes, params, out / "smile.png")
    lines = [f"calibrated {len(quotes['expiries'])} expiries -> {out}/params.json, smile.png"]
    for p in params.get("svi", []):
        lines.append(
            f"  SVI  T={p['expiry']:.4g}: {p['status']}, rmse {100 * p['rmse']:.3f} vol pts"
        )
    if "ssvi" in params:
        q = params["ssvi"]
        worst = 100 * max(q["rmse"])
        lines.append(f"  SSVI: {q['status']}, worst slice rmse {worst:.3f} vol pts")
    print("\n".join(lines))
    return 0
