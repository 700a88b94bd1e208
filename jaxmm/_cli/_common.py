"""Shared helpers of the command line: errors, CSV reading with exact messages, config files."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import read_table

__all__ = [
    "CliError",
    "read_csv_columns",
    "parse_float_column",
    "parse_bool_column",
    "read_config_file",
    "enable_float64",
]

_TRUE = {"1", "true", "t", "yes", "y", "call", "c"}
_FALSE = {"0", "false", "f", "no", "n", "put", "p"}


class CliError(ValueError):
    """A user error (bad file, bad column, bad option): printed as ``jaxmm: error: ...``,
    exit status 2, no traceback."""


def enable_float64() -> None:
    """The command line is an application: it runs in float64 (the library never sets it)."""
    import jax

    jax.config.update("jax_enable_x64", True)


def read_csv_columns(
    path: str | Path, required: Sequence[str], optional: Sequence[str] = ()
) -> tuple[list[str], dict[str, list[str]]]:
    """Read a CSV file as text columns; check the header.

    Returns ``(header, columns)`` with every cell as a stripped string (empty = missing).
    Raises :class:`CliError` naming the file and the missing column, or an empty file.
    """
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        raise CliError(f"{path}: the file is empty (a header line is required)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: not a readable CSV file ({exc})") from None
    header = [str(c).strip() for c in df.columns]
    df.columns = header
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise CliError(f"{path}: duplicate column(s) {', '.join(dup)}")
    for col in required:
        if col not in header:
            raise CliError(
                f"{path}: missing column {col!r} (required: {', '.join(required)}"
                + (f"; optional: {', '.join(optional)}" if optional else "")
                + f"; found: {', '.join(header) or 'none'})"
            )
    if len(df) == 0:
        raise CliError(f"{path}: no data rows after the header")
    cols = {c: [str(v).strip() for v in df[c].tolist()] for c in header}
    return header, cols


def parse_float_column(
    path: str | Path,
    name: str,
    cells: Sequence[str],
    *,
    gt: float | None = None,
    ge: float | None = None,
    allow_missing: bool = False,
) -> np.ndarray:
    """Parse one column of numbers; ``NaN`` marks a missing cell when ``allow_missing``.

    Raises :class:`CliError` naming the file, the data row (1 = first row after the header,
    line = row + 1) and the column, with the rule broken.
    """
    out = np.empty(len(cells), dtype=np.float64)
    for i, cell in enumerate(cells):
        where = f"{path}: row {i + 1} (line {i + 2}), column {name!r}"
        if cell == "":
            if allow_missing:
                out[i] = math.nan
                continue
            raise CliError(f"{where}: empty cell; a number is required")
        try:
            x = float(cell)
        except ValueError:
            raise CliError(f"{where}: {cell!r} is not a number") from None
        if not math.isfinite(x):
            raise CliError(f"{where}: must be finite, got {cell!r}")
        if gt is not None and not x > gt:
            raise CliError(f"{where}: must be > {gt:g}, got {cell}")
        if ge is not None and not x >= ge:
            raise CliError(f"{where}: must be >= {ge:g}, got {cell}")
        out[i] = x
    return out


def parse_bool_column(path: str | Path, name: str, cells: Sequence[str]) -> np.ndarray:
    """Parse a call/put flag column: true/false, 1/0, yes/no, call/put, C/P (any case)."""
    out = np.empty(len(cells), dtype=bool)
    for i, cell in enumerate(cells):
        v = cell.lower()
        if v in _TRUE:
            out[i] = True
        elif v in _FALSE:
            out[i] = False
        else:
            raise CliError(
                f"{path}: row {i + 1} (line {i + 2}), column {name!r}: {cell!r} is not a "
                "call/put flag (true/false, 1/0, call/put, C/P)"
            )
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a ``.json`` or ``.toml`` file into a dict; :class:`CliError` names what is wrong."""
    try:
        return read_table(path)
    except ValueError as exc:
        raise CliError(str(exc)) from None
