"""``jaxmm price IN.csv OUT.csv``: price a chain from a CSV file, with Greeks and implied vols.

Input columns (header names, any order; extra columns are copied through):

- ``spot`` (> 0; the forward ``F`` for ``kind=black76`` rows), ``strike`` (> 0),
  ``expiry`` (years ACT/365F, >= 0), ``rate`` and ``dividend`` (continuously compounded;
  ``dividend`` may be empty on black76 rows, where it is not used), ``is_call``
  (true/false, 1/0, call/put, C/P);
- ``vol`` (annualised fraction, >= 0) and/or ``price`` (the option's market value): a row
  with ``vol`` is priced at that vol; a row with only ``price`` gets its implied vol first
  (:func:`jaxmm.pricing.implied_vol` / :func:`~jaxmm.pricing.implied_vol_black76`) and is then
  priced at it;
- ``kind`` (optional): ``bsm`` (default, generalised Black-Scholes-Merton with carry) or
  ``black76`` (option on a forward/future).

Output: the input columns, then ``theo`` (model value at ``iv``), the raw Greeks of
:class:`jaxmm.pricing.Greeks` (``delta gamma vega theta rho vanna volga charm speed zomma
color``: vega per 1.00 vol, theta per calendar year; black76 Greeks are with respect to the
forward), ``iv`` (the vol used) and ``status`` (``OK``, or the :class:`~jaxmm.pricing.IVStatus`
name of a row whose implied vol could not be solved; its numeric outputs are then empty).
Output columns replace input columns of the same name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ._common import (
    CliError,
    enable_float64,
    parse_bool_column,
    parse_float_column,
    read_csv_columns,
)

__all__ = ["GREEK_COLUMNS", "price_file", "run_price"]

REQUIRED = ("spot", "strike", "expiry", "rate", "dividend", "is_call")
GREEK_COLUMNS = (
    "delta", "gamma", "vega", "theta", "rho", "vanna", "volga", "charm", "speed", "zomma", "color",
)  # fmt: skip
_KINDS = ("bsm", "black76")


def price_file(in_path: str | Path, out_path: str | Path) -> dict[str, int]:
    """Price every row of ``in_path`` and write ``out_path``; returns status counts.

    Raises:
        CliError: naming the file, the row and the column of bad input (nothing is written).

    Example:
        >>> import pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "in.csv").write_text("spot,strike,expiry,rate,dividend,vol,is_call\\n"
        ...                               "100,100,1,0.05,0,0.2,call\\n")
        >>> price_file(d / "in.csv", d / "out.csv")
        {'OK': 1}
    """
    import pandas as pd

    header, cols = read_csv_columns(in_path, REQUIRED, ("vol", "price", "kind"))
    if "vol" not in cols and "price" not in cols:
        raise CliError(f"{in_path}: missing column 'vol' or 'price' (one of them is required)")
    n = len(cols["spot"])
    kinds = np.array([k.lower() or "bsm" for k in cols.get("kind", ["bsm"] * n)])
    for i, k in enumerate(kinds):
        if k not in _KINDS:
            raise CliError(
                f"{in_path}: row {i + 1} (line {i + 2}), column 'kind': {k!r} is not one of "
                f"{', '.join(_KINDS)}"
            )
    b76 = kinds == "black76"
    spot = parse_float_column(in_path, "spot", cols["spot"], gt=0.0)
    strike = parse_float_column(in_path, "strike", cols["strike"], gt=0.0)
    expiry = parse_float_column(in_path, "expiry", cols["expiry"], ge=0.0)
    rate = parse_float_column(in_path, "rate", cols["rate"])
    dividend = parse_float_column(in_path, "dividend", cols["dividend"], allow_missing=True)
    missing_q = np.isnan(dividend) & ~b76
    if missing_q.any():
        i = int(np.argmax(missing_q))
        raise CliError(
            f"{in_path}: row {i + 1} (line {i + 2}), column 'dividend': empty cell; a number "
            "is required for kind=bsm"
        )
    dividend = np.where(b76, 0.0, dividend)
    is_call = parse_bool_column(in_path, "is_call", cols["is_call"])
    vol = parse_float_column(in_path, "vol", cols.get("vol", [""] * n), ge=0.0, allow_missing=True)
    price = parse_float_column(in_path, "price", cols.get("price", [""] * n), allow_missing=True)
    need_iv = np.isnan(vol)
    neither = need_iv & np.isnan(price)
    if neither.any():
        i = int(np.argmax(neither))
        raise CliError(
            f"{in_path}: row {i + 1} (line {i + 2}): needs a 'vol' or a 'price' (both empty)"
        )
    out = compute(spot, strike, expiry, rate, dividend, vol, price, is_call, b76)
    df = pd.DataFrame({c: cols[c] for c in header})
    for name, values in out.items():
        df[name] = values
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise CliError(f"{out_path}: the directory {out_path.parent} does not exist")
    df.to_csv(out_path, index=False, na_rep="")
    statuses, counts = np.unique(out["status"], return_counts=True)
    return {str(s): int(c) for s, c in zip(statuses, counts, strict=True)}


def compute(spot, strike, expiry, rate, dividend, vol, price, is_call, black76) -> dict:
    """Vectorised core of :func:`price_file` on host float64 arrays (one jitted call per kind).

    ``vol`` is NaN where the implied vol must be solved from ``price``. Returns a dict of
    columns: ``theo``, the Greeks, ``iv``, ``status`` (strings).
    """
    import jaxmm.pricing as jp

    n = spot.shape[0]
    iv = vol.copy()
    status = np.full(n, "OK", dtype=object)
    for kind_mask, b76 in ((~black76, False), (black76, True)):
        solve = kind_mask & np.isnan(vol)
        if not solve.any():
            continue
        idx = np.flatnonzero(solve)
        if b76:
            v, st = jp.implied_vol_black76(
                price[idx], spot[idx], strike[idx], expiry[idx], rate[idx], is_call[idx]
            )
        else:
            v, st = jp.implied_vol(
                price[idx], spot[idx], strike[idx], expiry[idx], rate[idx], dividend[idx],
                is_call[idx],
            )  # fmt: skip
        st = np.asarray(st)
        iv[idx] = np.where(st == int(jp.IVStatus.OK), np.asarray(v), np.nan)
        status[idx] = [jp.IVStatus(int(s)).name for s in st]
    ok = np.isfinite(iv)
    fields = ("theo", *GREEK_COLUMNS)
    res = {f: np.full(n, np.nan) for f in fields}
    for kind_mask, b76 in ((~black76, False), (black76, True)):
        idx = np.flatnonzero(kind_mask & ok)
        if idx.size == 0:
            continue
        if b76:
            g = jp.black76_greeks(spot[idx], strike[idx], expiry[idx], rate[idx], iv[idx],
                                  is_call[idx])  # fmt: skip
        else:
            g = jp.bsm_greeks(
                spot[idx], strike[idx], expiry[idx], rate[idx], dividend[idx], iv[idx],
                is_call[idx],
            )  # fmt: skip
        # bsm_greeks/black76_greeks on arrays currently return a plain 12-tuple in Greeks'
        # field order (one_pass drops the NamedTuple); re-wrap so fields are read by name.
        g = jp.Greeks(*g)
        res["theo"][idx] = np.asarray(g.price)
        for name in GREEK_COLUMNS:
            res[name][idx] = np.asarray(getattr(g, name))
    return {**res, "iv": iv, "status": status}


def run_price(args: argparse.Namespace) -> int:
    """``jaxmm price``: see the module docstring."""
    enable_float64()
    counts = price_file(args.input, args.output)
    total = sum(counts.values())
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"priced {total} option(s) -> {args.output} ({summary})")
    return 0
