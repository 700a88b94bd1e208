"""CSV / Parquet event files with the fixed schema of :data:`EVENT_DTYPE`.

A file has one row per event and (at least) the columns ``exchange_ts, local_ts, seq, kind,
side, price, qty, order_id``, all integers (``kind`` may also be written as the lower-case
name of an :class:`EventKind`: ``trade``, ``depth``, ``add``, ``cancel``, ``modify``). Extra
columns are ignored. Floats are accepted only when every value is a whole number. Loading
raises ``ValueError`` naming the first missing or badly typed column. The format is chosen from
the suffix (``.csv``, ``.parquet``/``.pq``) unless ``format`` is given; Parquet uses pyarrow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ._events import EVENT_COLUMNS, EVENT_DTYPE, EventKind, _check_array

__all__ = ["load_events", "save_events", "events_to_frame", "events_from_frame"]

_KIND_NAMES = {k.name.lower(): int(k) for k in EventKind}


def _format(path: Path, format: str | None) -> str:
    if format is not None:
        if format not in ("csv", "parquet"):
            raise ValueError(f"format: must be 'csv' or 'parquet', got {format!r}")
        return format
    suf = path.suffix.lower()
    if suf == ".csv":
        return "csv"
    if suf in (".parquet", ".pq"):
        return "parquet"
    raise ValueError(f"path: cannot infer the format from suffix {suf!r}; pass format=")


def events_to_frame(events: np.ndarray):
    """The event array as a ``pandas.DataFrame`` with the schema's columns and dtypes.

    Example:
        >>> from jaxmm.backtest import EventKind, events_to_frame, make_events
        >>> events_to_frame(make_events([1], [EventKind.TRADE], [0], [100], [2])).shape
        (1, 8)
    """
    import pandas as pd

    ev = _check_array(events)
    return pd.DataFrame({c: ev[c] for c in EVENT_COLUMNS})


def events_from_frame(df: Any, source: str = "frame") -> np.ndarray:
    """Validate the columns of a ``pandas.DataFrame`` and build the event array.

    Raises:
        ValueError: ``"<source>: missing column 'x'"`` or ``"<source>: column 'x' ..."``
            (not integers, missing values, an unknown kind name, out of range for int8).

    Example:
        >>> import pandas as pd
        >>> from jaxmm.backtest import events_from_frame
        >>> df = pd.DataFrame({"exchange_ts": [1], "local_ts": [2], "seq": [0],
        ...                    "kind": ["trade"], "side": [1], "price": [99], "qty": [3],
        ...                    "order_id": [0]})
        >>> events_from_frame(df)["kind"].tolist()
        [0]
    """
    import pandas as pd

    for c in EVENT_COLUMNS:
        if c not in df.columns:
            raise ValueError(f"{source}: missing column {c!r}")
    out = np.empty(len(df), EVENT_DTYPE)
    for c in EVENT_COLUMNS:
        col = df[c]
        if col.isna().any():
            raise ValueError(f"{source}: column {c!r} has missing values")
        if c == "kind" and not pd.api.types.is_numeric_dtype(col):
            names = col.astype(str).str.lower()
            bad = ~names.isin(list(_KIND_NAMES)) & ~names.str.fullmatch(r"-?\d+")
            if bad.any():
                raise ValueError(
                    f"{source}: column 'kind' has an unknown kind {col[bad].iloc[0]!r} "
                    f"(expected one of {sorted(_KIND_NAMES)} or an integer)"
                )
            vals = np.asarray(
                [_KIND_NAMES[x] if x in _KIND_NAMES else int(x) for x in names], np.int64
            )
        else:
            a = col.to_numpy()
            if a.dtype.kind == "b" or a.dtype.kind not in "iuf":
                raise ValueError(f"{source}: column {c!r} must hold integers, got dtype {a.dtype}")
            if a.dtype.kind == "f" and (not np.all(np.isfinite(a)) or np.any(a != np.round(a))):
                raise ValueError(f"{source}: column {c!r} must hold integers, got fractions")
            vals = a.astype(np.int64)
        if c in ("kind", "side") and vals.size and (vals.min() < -128 or vals.max() > 127):
            raise ValueError(f"{source}: column {c!r} out of the int8 range")
        out[c] = vals
    return out


def save_events(events: np.ndarray, path: str | Path, format: str | None = None) -> Path:
    """Write ``events`` to ``path`` as CSV or Parquet (by suffix or ``format``); returns the path.

    Example:
        >>> import tempfile, os
        >>> from jaxmm.backtest import load_events, poisson_l2_stream, save_events
        >>> ev = poisson_l2_stream(100, seed=0)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = save_events(ev, os.path.join(d, "ev.parquet"))
        ...     bool((load_events(p) == ev).all())
        True
    """
    path = Path(path)
    fmt = _format(path, format)
    df = events_to_frame(events)
    if fmt == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False, engine="pyarrow")
    return path


def load_events(path: str | Path, format: str | None = None) -> np.ndarray:
    """Read a CSV or Parquet event file into an :data:`EVENT_DTYPE` array.

    Raises:
        ValueError: naming the file and the missing or badly typed column.
        FileNotFoundError: no such file.

    Example: see :func:`save_events`.
    """
    import pandas as pd

    path = Path(path)
    fmt = _format(path, format)
    if not path.exists():
        raise FileNotFoundError(f"path: no such file {str(path)!r}")
    if fmt == "csv":
        df = pd.read_csv(path)
    else:
        df = pd.read_parquet(path, engine="pyarrow")
    return events_from_frame(df, source=str(path))
