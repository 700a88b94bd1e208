"""Market events: the columnar format, a validator and a repair pass.

One event is one row of a NumPy structured array of dtype :data:`EVENT_DTYPE` (the same fixed
schema is used by the CSV/Parquet files of :mod:`jaxmm.backtest._io`):

========== ===== =========================================================================
column     dtype meaning
========== ===== =========================================================================
exchange_ts int64 time the exchange produced the event (integer ns)
local_ts   int64 time our strategy receives it (ns); ``local_ts - exchange_ts`` = feed latency
seq        int64 exchange sequence number (unique; used for duplicate detection)
kind       int8  :class:`EventKind`: TRADE, DEPTH (L2), ADD / CANCEL / MODIFY (L3)
side       int8  0 = bid / buy, 1 = ask / sell; for TRADE the *aggressor* side
price      int64 price in integer ticks (>= 1; ignored for CANCEL)
qty        int64 lots: TRADE traded lots; DEPTH the *new total* at the level (0 = level gone);
                 ADD the order's size; MODIFY its new size; CANCEL ignored
order_id   int64 L3 order id (ADD / CANCEL / MODIFY; TRADE: the resting order executed, or 0)
========== ===== =========================================================================

Validation rules (:func:`validate_events` reports every violation as a row ``(row, rule,
detail)``; ``row`` is the 0-based position in the array as given):

- ``field``: kind not an :class:`EventKind`, side not 0/1, price < 1 (except CANCEL), qty < 0,
  qty < 1 for TRADE / ADD / MODIFY, or ``order_id < 1`` for ADD / CANCEL / MODIFY;
- ``exchange_ts_order``: ``exchange_ts`` smaller than the previous row's (out of order);
- ``negative_latency``: ``local_ts < exchange_ts`` (a negative feed latency);
- ``duplicate_seq``: a ``seq`` already used by an earlier row;
- ``crossed_book``: after applying the row in the given order, best bid >= best ask
  (reported once per crossing episode: at the row where the book becomes crossed);
- ``unknown_order``: an L3 CANCEL / MODIFY of an id that is not resting, or an ADD of an id
  that already rests.

Repair rules (:func:`repair_events`, applied in this order):

1. rows that are exact duplicates of an earlier row (every field equal) are dropped; then of
   several rows with the same ``seq`` only the first is kept;
2. rows are stably sorted by ``exchange_ts`` (ties keep their order in the input);
3. ``local_ts`` is clamped up to ``exchange_ts`` (a negative feed latency becomes zero).

Crossed books, bad fields and unknown L3 ids are reported, not repaired.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from enum import IntEnum
from typing import Any

import numpy as np

__all__ = [
    "EVENT_DTYPE",
    "EVENT_COLUMNS",
    "EventKind",
    "make_events",
    "validate_events",
    "repair_events",
]


class EventKind(IntEnum):
    """Kind of a market event (the ``kind`` column)."""

    TRADE = 0  #: a trade print: aggressor ``side``, ``price``, ``qty`` lots
    DEPTH = 1  #: L2 level update: the level (``side``, ``price``) now holds ``qty`` lots
    ADD = 2  #: L3: order ``order_id`` of ``qty`` lots rests at (``side``, ``price``)
    CANCEL = 3  #: L3: order ``order_id`` is removed
    MODIFY = 4  #: L3: order ``order_id`` now has ``qty`` lots at ``price``


EVENT_DTYPE = np.dtype(
    [
        ("exchange_ts", "<i8"),
        ("local_ts", "<i8"),
        ("seq", "<i8"),
        ("kind", "i1"),
        ("side", "i1"),
        ("price", "<i8"),
        ("qty", "<i8"),
        ("order_id", "<i8"),
    ]
)
EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_DTYPE.names)


def _int_column(name: str, x: Any, n: int | None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 0 and n is not None:
        a = np.full(n, a)
    if a.ndim != 1:
        raise ValueError(f"{name}: must be one-dimensional, got shape {a.shape}")
    if a.dtype.kind == "b" or a.dtype.kind not in "iuf":
        raise ValueError(f"{name}: must hold integers, got dtype {a.dtype}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name}: must hold integers, got non-integral floats")
    return a.astype(np.int64)


def make_events(
    exchange_ts: Any,
    kind: Any,
    side: Any,
    price: Any,
    qty: Any,
    *,
    local_ts: Any = None,
    seq: Any = None,
    order_id: Any = 0,
) -> np.ndarray:
    """Build an event array of dtype :data:`EVENT_DTYPE` from columns.

    Args:
        exchange_ts: exchange timestamps, integer ns.
        kind: :class:`EventKind` codes. side: 0 bid/buy, 1 ask/sell. price: ticks. qty: lots.
        local_ts: receive timestamps (ns); default ``exchange_ts`` (zero feed latency).
        seq: sequence numbers; default ``0, 1, 2, ...``.
        order_id: L3 order ids (scalar broadcast; 0 for L2 rows).

    Raises:
        ValueError: a column is not integer-valued or not one-dimensional, lengths differ.

    Example:
        >>> from jaxmm.backtest import EventKind, make_events
        >>> ev = make_events([0, 5], [EventKind.DEPTH, EventKind.TRADE], [0, 1], [99, 99], [4, 1])
        >>> ev["qty"].tolist(), ev["local_ts"].tolist()
        ([4, 1], [0, 5])
    """
    ts = _int_column("exchange_ts", exchange_ts, None)
    n = ts.shape[0]
    cols = {
        "exchange_ts": ts,
        "local_ts": ts if local_ts is None else _int_column("local_ts", local_ts, n),
        "seq": np.arange(n, dtype=np.int64) if seq is None else _int_column("seq", seq, n),
        "kind": _int_column("kind", kind, n),
        "side": _int_column("side", side, n),
        "price": _int_column("price", price, n),
        "qty": _int_column("qty", qty, n),
        "order_id": _int_column("order_id", order_id, n),
    }
    for name, a in cols.items():
        if a.shape[0] != n:
            raise ValueError(f"{name}: length {a.shape[0]} differs from exchange_ts's {n}")
    for name in ("kind", "side"):
        a = cols[name]
        if a.size and (a.min() < -128 or a.max() > 127):
            raise ValueError(f"{name}: values must fit int8, got range [{a.min()}, {a.max()}]")
    out = np.empty(n, EVENT_DTYPE)
    for name, a in cols.items():
        out[name] = a
    return out


def _check_array(events: Any) -> np.ndarray:
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE:
        raise ValueError("events: expected a NumPy array of dtype EVENT_DTYPE (see make_events)")
    if events.ndim != 1:
        raise ValueError(f"events: must be one-dimensional, got shape {events.shape}")
    return events


class _SideLevels:
    """Price -> lots with a sorted key list (best last): bids key = price, asks key = -price."""

    __slots__ = ("lv", "keys", "sign")

    def __init__(self, sign: int):
        self.lv: dict[int, int] = {}
        self.keys: list[int] = []
        self.sign = sign

    def set(self, price: int, qty: int) -> None:
        lv = self.lv
        if qty > 0:
            if price not in lv:
                insort(self.keys, self.sign * price)
            lv[price] = qty
        elif price in lv:
            del lv[price]
            k = self.sign * price
            del self.keys[bisect_left(self.keys, k)]

    def add(self, price: int, dq: int) -> None:
        self.set(price, self.lv.get(price, 0) + dq)

    def best(self) -> int | None:
        return self.sign * self.keys[-1] if self.keys else None


def validate_events(events: np.ndarray):
    """Report every rule violation of an event array (rules in the module docstring).

    Returns:
        ``pandas.DataFrame`` with columns ``row`` (int, position in ``events``), ``rule``
        (str) and ``detail`` (str), one row per violation, in row order; empty when clean.

    Example:
        >>> from jaxmm.backtest import EventKind, make_events, validate_events
        >>> ev = make_events([10, 5], [EventKind.DEPTH] * 2, [0, 1], [99, 98], [1, 1],
        ...                  local_ts=[12, 4])
        >>> validate_events(ev)[["row", "rule"]].values.tolist()
        [[1, 'exchange_ts_order'], [1, 'negative_latency'], [1, 'crossed_book']]
    """
    import pandas as pd

    ev = _check_array(events)
    issues: list[tuple[int, str, str]] = []
    ts = ev["exchange_ts"]
    lts = ev["local_ts"]
    order_bad = np.zeros(len(ev), bool)
    if len(ev) > 1:
        order_bad[1:] = ts[1:] < ts[:-1]
    neg = lts < ts
    seen: set[int] = set()
    bids, asks = _SideLevels(1), _SideLevels(-1)
    books = (bids, asks)
    orders: dict[int, tuple[int, int, int]] = {}
    crossed = False
    kinds = ev["kind"].tolist()
    sides = ev["side"].tolist()
    prices = ev["price"].tolist()
    qtys = ev["qty"].tolist()
    oids = ev["order_id"].tolist()
    seqs = ev["seq"].tolist()
    for i in range(len(ev)):
        k, s, p, q, oid = kinds[i], sides[i], prices[i], qtys[i], oids[i]
        bad = None
        if k not in (0, 1, 2, 3, 4):
            bad = f"kind {k} is not an EventKind"
        elif s not in (0, 1):
            bad = f"side {s} is not 0 or 1"
        elif k != EventKind.CANCEL and p < 1:
            bad = f"price {p} < 1 tick"
        elif q < 0 or (q < 1 and k in (0, 2, 4)):
            bad = f"qty {q} out of range for {EventKind(k).name}"
        elif k >= 2 and oid < 1:
            bad = f"order_id {oid} < 1 for {EventKind(k).name}"
        if bad is not None:
            issues.append((i, "field", bad))
        if order_bad[i]:
            issues.append((i, "exchange_ts_order", f"exchange_ts {ts[i]} < previous {ts[i - 1]}"))
        if neg[i]:
            issues.append((i, "negative_latency", f"local_ts {lts[i]} < exchange_ts {ts[i]}"))
        if seqs[i] in seen:
            issues.append((i, "duplicate_seq", f"seq {seqs[i]} already used"))
        seen.add(seqs[i])
        if bad is not None:
            continue
        if k == EventKind.DEPTH:
            books[s].set(p, q)
        elif k == EventKind.ADD:
            if oid in orders:
                issues.append((i, "unknown_order", f"order_id {oid} already rests"))
                continue
            orders[oid] = (s, p, q)
            books[s].add(p, q)
        elif k in (EventKind.CANCEL, EventKind.MODIFY):
            o = orders.pop(oid, None)
            if o is None:
                issues.append((i, "unknown_order", f"order_id {oid} is not resting"))
                continue
            books[o[0]].add(o[1], -o[2])
            if k == EventKind.MODIFY:
                orders[oid] = (o[0], p, q)
                books[o[0]].add(p, q)
        elif k == EventKind.TRADE and oid in orders:
            o = orders[oid]
            left = o[2] - q
            books[o[0]].add(o[1], -min(q, o[2]))
            if left > 0:
                orders[oid] = (o[0], o[1], left)
            else:
                del orders[oid]
        bb, ba = bids.best(), asks.best()
        now_crossed = bb is not None and ba is not None and bb >= ba
        if now_crossed and not crossed:
            issues.append((i, "crossed_book", f"best bid {bb} >= best ask {ba}"))
        crossed = now_crossed
    return pd.DataFrame(
        {
            "row": np.asarray([r for r, _, _ in issues], dtype=np.int64),
            "rule": [r for _, r, _ in issues],
            "detail": [d for _, _, d in issues],
        }
    )


def repair_events(events: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Apply the documented repair rules (module docstring) and count what each changed.

    Returns:
        ``(repaired, counts)``: a new event array and a dict with ``duplicates_dropped``,
        ``duplicate_seq_dropped``, ``reordered`` (rows whose position changed) and
        ``local_ts_clamped``. The input is not modified.

    Example:
        >>> from jaxmm.backtest import EventKind, make_events, repair_events
        >>> ev = make_events([10, 5, 5], [EventKind.DEPTH] * 3, [0, 1, 1], [99, 101, 101],
        ...                  [1, 1, 1], local_ts=[12, 4, 4], seq=[0, 1, 1])
        >>> fixed, counts = repair_events(ev)
        >>> fixed["exchange_ts"].tolist(), fixed["local_ts"].tolist(), counts["duplicates_dropped"]
        ([5, 10], [5, 12], 1)
    """
    ev = _check_array(events)
    n0 = len(ev)
    _, first = np.unique(ev, return_index=True)
    keep = np.zeros(n0, bool)
    keep[first] = True
    dup_rows = int(n0 - keep.sum())
    ev1 = ev[keep]
    _, first_seq = np.unique(ev1["seq"], return_index=True)
    keep_seq = np.zeros(len(ev1), bool)
    keep_seq[first_seq] = True
    dup_seq = int(len(ev1) - keep_seq.sum())
    ev2 = ev1[keep_seq]
    order = np.argsort(ev2["exchange_ts"], kind="stable")
    reordered = int(np.count_nonzero(order != np.arange(len(ev2))))
    out = ev2[order].copy()
    low = out["local_ts"] < out["exchange_ts"]
    out["local_ts"] = np.maximum(out["local_ts"], out["exchange_ts"])
    counts = {
        "duplicates_dropped": dup_rows,
        "duplicate_seq_dropped": dup_seq,
        "reordered": reordered,
        "local_ts_clamped": int(low.sum()),
    }
    return out, counts
