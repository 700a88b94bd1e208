"""Event-driven replay of a market-event stream with the strategy's own orders in the queue.

The full rule set is in ``docs/backtesting.md`` ("Event replay"); in short:

- **Two clocks.** Market events change the *exchange* book at ``exchange_ts`` and the
  strategy's *local view* at ``local_ts``. A decision at local time ``t`` sees the local view
  (events with ``local_ts <= t``) and the acks / fills whose response arrived by ``t``; its
  orders reach the exchange at ``t + entry``. An order arriving at ``T`` is processed after
  every market event with ``exchange_ts <= T``.
- **Own orders** rest in a :class:`jaxmm.book.OrderBook` of their own (post-only, integer
  ticks / lots, exact integer fees): the book validates them (tick, lot, size, crossing our own
  opposite order) and allocates the market volume that reaches our price levels by its
  price-time priority. How much volume reaches us is decided by the queue model:
  for each own order the market lots ahead of it, ``ahead``, start at the level's size when it
  arrives; a trade of ``v`` lots at its price fills ``floor(v - own lots filled before it -
  ahead)`` lots (clipped to its size) and removes ``v`` from ``ahead``; a level decrease is
  first attributed to trades already seen at that price, the rest is a cancel whose share
  ahead of us is given by the queue model (L2) or known exactly (L3 order ids). A trade at a
  price *through* our order (a sell below our bid, a buy above our ask) fills it completely;
  an L2 level increase (or an L3 add) on the opposite side at or through our price is an
  incoming order that trades with us, up to its size. No fill ever happens otherwise.
- **Takers.** An order that crosses the market's displayed opposite side on arrival (only
  when ``post_only=False``) trades against the displayed depth at taker fee, level by level up
  to its limit; the remainder is cancelled; the replayed depth is not reduced (no market-impact
  model).
- **Position limit** (the simulator's rule): with ``c = max(max_position, |q|)`` the open
  buy lots may not exceed ``c - q`` and the open sell lots ``c + q``, evaluated with the true
  position when an order arrives; larger orders are cut, ladders best level first.

The hot loop runs on Python lists built once from the columnar event array; no JAX, no
per-event objects.
"""

from __future__ import annotations

import heapq
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..book import Instrument, OrderBook, OrderRejected, TimeInForce
from ._events import EVENT_DTYPE, EventKind, repair_events
from ._latency import ConstantLatency, EmpiricalLatency
from ._queue import OptimisticQueue, PessimisticQueue, ProbabilisticQueue

__all__ = [
    "Place",
    "Cancel",
    "Quotes",
    "OwnOrder",
    "MarketView",
    "BacktestResult",
    "QuotingAdapter",
    "replay",
]

_INF = 1 << 62
_TRADE = int(EventKind.TRADE)
_DEPTH = int(EventKind.DEPTH)
_ADD = int(EventKind.ADD)
_CANCEL = int(EventKind.CANCEL)
_MODIFY = int(EventKind.MODIFY)
_EPS = 1e-9


class Place(NamedTuple):
    """Order action: place a limit order of ``qty`` lots at ``price`` ticks on ``side``.

    ``post_only=True`` (default) rejects it if it would cross the market on arrival;
    otherwise a crossing order trades as a taker and its remainder is cancelled. ``ioc=True``
    cancels any part that does not trade on arrival.
    """

    side: int
    price: int
    qty: int
    post_only: bool = True
    ioc: bool = False


class Cancel(NamedTuple):
    """Order action: cancel our order ``order_id`` (ignored if it is no longer live)."""

    order_id: int


class Quotes(NamedTuple):
    """Target quotes (replace semantics): the orders each side should have after arrival.

    ``bids`` / ``asks``: sequences of ``(price_ticks, lots)``, best level first; ``None``
    leaves a side unchanged, an empty sequence cancels it. At arrival, per side: an own order
    at a price not in the target is cancelled; one at a target price keeps its queue place if
    its open size equals the target or is reduced to it (a size reduction keeps priority) and
    is replaced at the back of the queue if it must grow; target prices without an order get a
    new post-only order. Levels with 0 lots are skipped.
    """

    bids: Sequence[tuple[int, int]] | None = None
    asks: Sequence[tuple[int, int]] | None = None


class OwnOrder(NamedTuple):
    """One of our orders as the strategy knows it (from acks and fills received)."""

    order_id: int
    side: int
    price: int
    qty: int


class MarketView:
    """What the strategy sees at a decision (integer ticks and lots; times in ns).

    Attributes:
        time: local time of the decision.
        best_bid, best_ask: best prices (ticks) of the local view, ``None`` if a side is empty.
        bid_qty, ask_qty: lots at the best prices (0 if empty).
        mid: ``(best_bid + best_ask) / 2`` in ticks (NaN if a side is empty).
        bids, asks: up to ``depth_levels`` ``(price, lots)`` levels, best first. Computed on
            first access (a strategy that does not read depth does not pay for it) and only
            available during the strategy call that received the view (``RuntimeError``
            afterwards unless read during the call).
        position: our position in lots as known locally (fills received so far).
        open_orders: our live orders as known locally (:class:`OwnOrder`).
        n_events: market events seen so far (local view).
        tick_size, lot_size: the instrument's increments as floats (for price conversions).
    """

    __slots__ = (
        "time",
        "best_bid",
        "best_ask",
        "bid_qty",
        "ask_qty",
        "mid",
        "position",
        "open_orders",
        "n_events",
        "tick_size",
        "lot_size",
        "_books",
        "_levels",
        "_bids",
        "_asks",
    )

    def __init__(self, time, best_bid, best_ask, bid_qty, ask_qty, mid, position, open_orders,
                 n_events, tick_size, lot_size, books=None, depth_levels=0):  # fmt: skip
        self.time = time
        self.best_bid = best_bid
        self.best_ask = best_ask
        self.bid_qty = bid_qty
        self.ask_qty = ask_qty
        self.mid = mid
        self.position = position
        self.open_orders = open_orders
        self.n_events = n_events
        self.tick_size = tick_size
        self.lot_size = lot_size
        self._books = books
        self._levels = depth_levels
        self._bids: list[tuple[int, int]] | None = None
        self._asks: list[tuple[int, int]] | None = None

    def _depth(self, side: int) -> list[tuple[int, int]]:
        if self._books is None:
            raise RuntimeError("MarketView depth: only available during the strategy call")
        lv = self._books[side]
        pick = heapq.nlargest if side == 0 else heapq.nsmallest
        return [(p, lv[p]) for p in pick(self._levels, lv)] if self._levels else []

    @property
    def bids(self) -> list[tuple[int, int]]:
        """Up to ``depth_levels`` bid levels ``(price, lots)``, best (highest) first."""
        if self._bids is None:
            self._bids = self._depth(0)
        return self._bids

    @property
    def asks(self) -> list[tuple[int, int]]:
        """Up to ``depth_levels`` ask levels ``(price, lots)``, best (lowest) first."""
        if self._asks is None:
            self._asks = self._depth(1)
        return self._asks

    def __repr__(self) -> str:
        return (
            f"MarketView(time={self.time}, bid={self.best_bid}x{self.bid_qty}, "
            f"ask={self.best_ask}x{self.ask_qty}, position={self.position}, "
            f"open_orders={len(self.open_orders)})"
        )


class BacktestResult(NamedTuple):
    """Output of :func:`replay`.

    Attributes:
        frame: ``pandas.DataFrame``, one row per decision plus a final row: ``time`` (ns),
            ``mid`` (price units, exchange book; while one side is empty, the last two-sided
            mid), ``position`` (quantity units), ``cash``,
            ``pnl`` (mark-to-market ``cash + position * mid * multiplier``, exact integer
            accounting converted to float at the edge), ``fees`` (cumulative), ``fills``
            (number of fills since the previous row), ``bid``, ``ask`` (our best live quotes,
            NaN if none), ``bid_live``, ``ask_live`` (bool, at the row's time),
            ``bid_quoted``, ``ask_quoted`` (bool: the side had a live order at some time since
            the previous row; for the first row, at its time).
        fills: ``pandas.DataFrame``, one row per fill: ``time`` (exchange ns), ``local_time``
            (when the strategy learns it), ``order_id``, ``side`` (0 buy / 1 sell), ``price``
            (ticks), ``qty`` (lots), ``liquidity`` ("maker" / "taker"), ``fee_raw`` (exact
            integer fee, see ``docs/book.md``), ``fee`` (float), ``mid`` (exchange mid in
            ticks just before the fill).
        stats: counts (events, decisions, orders placed / rejected by rule / cancelled, ...).
        instrument: the :class:`jaxmm.book.Instrument`.
        config: the configuration that, with the seed, determines the run.
    """

    frame: Any
    fills: Any
    stats: dict[str, int]
    instrument: Instrument
    config: dict[str, Any]


class QuotingAdapter:
    """Plug a ``jaxmm.strategy`` quoting model (``AvellanedaStoikov``, ``GLFT``, ...) in.

    At each decision the model quotes from
    ``MarketState(mid=view.mid * tick, inventory=view.position * lot, t=(view.time - t0) /
    time_unit_ns)``; the bid is rounded *down* and the ask *up* to whole ticks (never more
    aggressive than the model), sizes down to whole lots; a ladder quote gives one target
    level per ladder level. A side with size 0 is not quoted. With an empty side in the view
    the adapter quotes nothing (returns empty targets).

    Args:
        model: any strategy with ``.quote(MarketState) -> Quote``.
        time_unit_ns: nanoseconds per model time unit (the unit of ``horizon`` and ``sigma``).
        t0_ns: model time 0 (default: the first decision's time).

    Example:
        >>> from jaxmm.backtest import QuotingAdapter, replay, poisson_l2_stream
        >>> from jaxmm.strategy import AvellanedaStoikov
        >>> ev = poisson_l2_stream(2_000, seed=1)
        >>> mm = QuotingAdapter(AvellanedaStoikov(gamma=0.1, k=50.0, sigma=0.05, horizon=1.0),
        ...                     time_unit_ns=2_000_000_000)
        >>> r = replay(ev, mm, every=200, seed=0)
        >>> r.stats["decisions"] == len(ev) // 200   # one decision per 200 events seen
        True
    """

    def __init__(self, model: Any, *, time_unit_ns: int, t0_ns: int | None = None):
        if type(time_unit_ns) is not int or time_unit_ns <= 0:
            raise ValueError(f"time_unit_ns: must be an int > 0, got {time_unit_ns!r}")
        self.model = model
        self.time_unit_ns = time_unit_ns
        self.t0_ns = t0_ns

    def __call__(self, view: MarketView) -> Quotes:
        from ..strategy import MarketState, quote

        if view.best_bid is None or view.best_ask is None:
            return Quotes((), ())
        if self.t0_ns is None:
            self.t0_ns = view.time
        tick, lot = view.tick_size, view.lot_size
        st = MarketState(
            mid=view.mid * tick,
            inventory=view.position * lot,
            t=(view.time - self.t0_ns) / self.time_unit_ns,
        )
        q = quote(self.model, st)
        bid = np.atleast_1d(np.asarray(q.bid, dtype=np.float64))
        ask = np.atleast_1d(np.asarray(q.ask, dtype=np.float64))
        bs = np.atleast_1d(np.asarray(q.bid_size, dtype=np.float64))
        asz = np.atleast_1d(np.asarray(q.ask_size, dtype=np.float64))
        bids = [
            (max(int(math.floor(p / tick + _EPS)), 1), int(math.floor(s / lot + _EPS)))
            for p, s in zip(bid.tolist(), bs.tolist(), strict=True)
            if s > 0
        ]
        asks = [
            (max(int(math.ceil(p / tick - _EPS)), 1), int(math.floor(s / lot + _EPS)))
            for p, s in zip(ask.tolist(), asz.tolist(), strict=True)
            if s > 0
        ]
        return Quotes(bids, asks)


def _as_sampler(name: str, model: Any, rng: np.random.Generator) -> Callable[[], int]:
    if not isinstance(model, ConstantLatency | EmpiricalLatency):
        raise ValueError(f"{name}: expected ConstantLatency or EmpiricalLatency, got {model!r}")
    return model.sampler(rng)


def _fast_checks(ev: np.ndarray) -> None:
    """Vectorised validation rules; raises ValueError naming the rule and the first row."""

    def first(mask: np.ndarray) -> int:
        return int(np.flatnonzero(mask)[0])

    ts = ev["exchange_ts"]
    if len(ev) > 1 and np.any(ts[1:] < ts[:-1]):
        i = first(ts[1:] < ts[:-1]) + 1
        raise ValueError(f"events: rule exchange_ts_order broken at row {i} (use repair)")
    if np.any(ev["local_ts"] < ts):
        raise ValueError(
            f"events: rule negative_latency broken at row {first(ev['local_ts'] < ts)}"
        )
    s = np.sort(ev["seq"])
    if len(s) > 1 and np.any(s[1:] == s[:-1]):
        raise ValueError("events: rule duplicate_seq broken (use repair)")
    k = ev["kind"]
    bad = (k < 0) | (k > 4) | ((ev["side"] != 0) & (ev["side"] != 1))
    bad |= (ev["price"] < 1) & (k != _CANCEL)
    bad |= (ev["qty"] < 0) | ((ev["qty"] < 1) & ((k == _TRADE) | (k == _ADD) | (k == _MODIFY)))
    bad |= (ev["order_id"] < 1) & (k >= _ADD)
    if np.any(bad):
        raise ValueError(f"events: rule field broken at row {first(bad)}")


def _decision_times(lts_sorted: np.ndarray, every: int | None, interval_ns: int | None) -> list:
    n = lts_sorted.shape[0]
    if n == 0:
        return []
    if every is not None:
        return lts_sorted[every - 1 :: every].tolist()
    start = int(lts_sorted[0])
    end = int(lts_sorted[-1])
    return list(range(start, end + 1, interval_ns))


def replay(
    events: np.ndarray,
    strategy: Callable[[MarketView], Any],
    *,
    instrument: Instrument | None = None,
    queue: Any = None,
    every: int | None = None,
    interval_ns: int | None = None,
    feed_latency: Any = None,
    entry_latency: Any = None,
    response_latency: Any = None,
    maker_fee_bps: Any = 0,
    taker_fee_bps: Any = 0,
    max_position: float | None = None,
    depth_levels: int = 5,
    validate: str = "check",
    seed: int = 0,
) -> BacktestResult:
    """Replay ``events`` through a market book with ``strategy``'s orders in the queue.

    Args:
        events: event array (:data:`EVENT_DTYPE`): L2 (TRADE + DEPTH rows) or L3 (TRADE +
            ADD / CANCEL / MODIFY rows); a stream may not mix DEPTH with L3 rows.
        strategy: callable ``strategy(view: MarketView)`` returning ``None`` (no change), a
            :class:`Quotes` target, or a sequence of :class:`Place` / :class:`Cancel` actions.
        instrument: tick / lot / multiplier (default ``Instrument("X", tick_size="0.01")``).
        queue: queue-position model for L2 streams (default :class:`PessimisticQueue`);
            L3 streams know the queue exactly and ignore it.
        every: decide after every ``every``-th market event seen locally (1 = each event);
        interval_ns: or decide every ``interval_ns`` of local time from the first event's
            ``local_ts``. Exactly one of the two.
        feed_latency: ``None`` (use the data's ``local_ts``) or a latency model overriding it
            (``local_ts = exchange_ts + draw``).
        entry_latency, response_latency: latency models (default ``ConstantLatency(0)``).
        maker_fee_bps, taker_fee_bps: fees in bp of notional per fill (negative = rebate),
            resolution 1e-4 bp, exact integer accounting as in ``jaxmm.book``.
        max_position: position limit in quantity units (``None``: no limit).
        depth_levels: levels per side in the view's ``bids`` / ``asks``.
        validate: ``"check"`` (vectorised rules; raises ``ValueError`` naming the rule and
            row; crossed books are not checked -- use :func:`validate_events`), ``"repair"``
            (:func:`repair_events` first, then check) or ``"none"``.
        seed: seeds every random draw (latency models); same seed and configuration give an
            identical result.

    Returns:
        :class:`BacktestResult`.

    Example:
        >>> from jaxmm.backtest import EventKind, Quotes, make_events, replay
        >>> D, T = EventKind.DEPTH, EventKind.TRADE
        >>> ev = make_events([0, 0, 10, 10], [D, D, T, D], [0, 1, 1, 0], [99, 101, 99, 99],
        ...                  [5, 5, 7, 0])
        >>> r = replay(ev, lambda v: Quotes(bids=[(99, 1)], asks=()), every=2)
        >>> r.fills[["time", "price", "qty"]].values.tolist()  # 7 sold into 5 ahead + our 1
        [[10, 99, 1]]
    """
    import pandas as pd

    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE:
        raise ValueError("events: expected a NumPy array of dtype EVENT_DTYPE (see make_events)")
    if events.ndim != 1:
        raise ValueError(f"events: must be one-dimensional, got shape {events.shape}")
    if not callable(strategy):
        raise ValueError(f"strategy: must be callable, got {type(strategy).__name__}")
    if instrument is None:
        instrument = Instrument("X", tick_size="0.01")
    if not isinstance(instrument, Instrument):
        raise ValueError(f"instrument: expected an Instrument, got {type(instrument).__name__}")
    if queue is None:
        queue = PessimisticQueue()
    if not isinstance(queue, OptimisticQueue | PessimisticQueue | ProbabilisticQueue):
        raise ValueError(f"queue: expected a queue model, got {queue!r}")
    if (every is None) == (interval_ns is None):
        raise ValueError("every / interval_ns: give exactly one of them")
    if every is not None and (type(every) is not int or every < 1):
        raise ValueError(f"every: must be an int >= 1, got {every!r}")
    if interval_ns is not None and (type(interval_ns) is not int or interval_ns < 1):
        raise ValueError(f"interval_ns: must be an int >= 1 ns, got {interval_ns!r}")
    if type(depth_levels) is not int or depth_levels < 0:
        raise ValueError(f"depth_levels: must be an int >= 0, got {depth_levels!r}")
    if validate not in ("check", "repair", "none"):
        raise ValueError(f"validate: must be 'check', 'repair' or 'none', got {validate!r}")
    if type(seed) is not int or seed < 0:
        raise ValueError(f"seed: must be an int >= 0, got {seed!r}")
    if max_position is None:
        max_lots = _INF
    else:
        if isinstance(max_position, bool) or not isinstance(max_position, int | float):
            raise ValueError(f"max_position: must be a number >= 0, got {max_position!r}")
        if not math.isfinite(max_position) or max_position < 0:
            raise ValueError(f"max_position: must be finite and >= 0, got {max_position!r}")
        max_lots = int(math.floor(max_position / float(instrument.lot_size) + _EPS))
    mfee = Instrument.fee_rate_to_int(maker_fee_bps, "maker_fee_bps")
    tfee = Instrument.fee_rate_to_int(taker_fee_bps, "taker_fee_bps")
    ss = np.random.SeedSequence(seed)
    feed_rng, entry_rng, resp_rng = (np.random.default_rng(s) for s in ss.spawn(3))
    entry = _as_sampler("entry_latency", entry_latency or ConstantLatency(0), entry_rng)
    resp = _as_sampler("response_latency", response_latency or ConstantLatency(0), resp_rng)

    ev = events
    if validate == "repair":
        ev, _ = repair_events(ev)
    if feed_latency is not None:
        if not isinstance(feed_latency, ConstantLatency | EmpiricalLatency):
            raise ValueError(f"feed_latency: expected a latency model, got {feed_latency!r}")
        ev = ev.copy()
        ev["local_ts"] = ev["exchange_ts"] + feed_latency.sample(feed_rng, len(ev))
    if validate != "none":
        _fast_checks(ev)
    kinds_np = ev["kind"]
    l3 = bool(np.any(kinds_np >= _ADD))
    if l3 and bool(np.any(kinds_np == _DEPTH)):
        raise ValueError("events: a stream may not mix DEPTH (L2) rows with L3 rows")

    sim = _Replay(
        ev,
        strategy,
        instrument,
        queue,
        entry,
        resp,
        maker_fee_bps,
        tfee,
        max_lots,
        depth_levels,
        l3,
    )
    lorder = np.argsort(ev["local_ts"], kind="stable")
    lts_sorted = ev["local_ts"][lorder]
    times = _decision_times(lts_sorted, every, interval_ns)
    sim.run(times, lorder.tolist(), lts_sorted.tolist())

    tick = float(instrument.tick_size)
    lot = float(instrument.lot_size)
    unit = float(instrument._notional_unit)
    fee_unit = float(instrument._fee_unit)
    rec = np.asarray(sim.rows, dtype=np.float64).reshape(-1, 10)
    cash = rec[:, 3] * unit - rec[:, 4] * fee_unit
    mid = rec[:, 1]
    pos = rec[:, 2]
    frame = pd.DataFrame(
        {
            "time": rec[:, 0].astype(np.int64),
            "mid": mid * tick,
            "position": pos * lot,
            "cash": cash,
            "pnl": cash + pos * mid * unit,
            "fees": rec[:, 4] * fee_unit,
            "fills": rec[:, 5].astype(np.int64),
            "bid": rec[:, 6] * tick,
            "ask": rec[:, 7] * tick,
            "bid_live": ~np.isnan(rec[:, 6]),
            "ask_live": ~np.isnan(rec[:, 7]),
            "bid_quoted": rec[:, 8] > 0,
            "ask_quoted": rec[:, 9] > 0,
        }
    )
    f = sim.fill_rows
    fills = pd.DataFrame(
        {
            "time": np.asarray([r[0] for r in f], dtype=np.int64),
            "local_time": np.asarray([r[1] for r in f], dtype=np.int64),
            "order_id": np.asarray([r[2] for r in f], dtype=np.int64),
            "side": np.asarray([r[3] for r in f], dtype=np.int64),
            "price": np.asarray([r[4] for r in f], dtype=np.int64),
            "qty": np.asarray([r[5] for r in f], dtype=np.int64),
            "liquidity": [r[6] for r in f],
            "fee_raw": np.asarray([r[7] for r in f], dtype=np.int64),
            "fee": np.asarray([r[7] * fee_unit for r in f], dtype=np.float64),
            "mid": np.asarray([r[8] for r in f], dtype=np.float64),
        }
    )
    config = {
        "queue": repr(queue),
        "every": every,
        "interval_ns": interval_ns,
        "feed_latency": repr(feed_latency),
        "entry_latency": repr(entry_latency or ConstantLatency(0)),
        "response_latency": repr(response_latency or ConstantLatency(0)),
        "maker_fee_bps": mfee / 10_000,
        "taker_fee_bps": tfee / 10_000,
        "max_position": max_position,
        "seed": seed,
        "l3": l3,
    }
    return BacktestResult(frame, fills, dict(sim.stats), instrument, config)


class _Replay:
    """State of one replay run (exchange side, own orders, local side)."""

    def __init__(
        self,
        ev,
        strategy,
        instrument,
        queue,
        entry,
        resp,
        mfee_bps,
        tfee,
        max_lots,
        depth_levels,
        l3,
    ):
        self.n = len(ev)
        self.ts = ev["exchange_ts"].tolist()
        self.lts = ev["local_ts"].tolist()
        self.kind = ev["kind"].tolist()
        self.side = ev["side"].tolist()
        self.price = ev["price"].tolist()
        self.qty = ev["qty"].tolist()
        self.oid = ev["order_id"].tolist()
        self.strategy = strategy
        self.inst = instrument
        self.tick_f = float(instrument.tick_size)
        self.lot_f = float(instrument.lot_size)
        self.queue = queue
        self.entry = entry
        self.resp = resp
        self.tfee = tfee
        self.max_lots = max_lots
        self.depth_levels = depth_levels
        self.l3 = l3
        self.now = [0]
        # the own-order book has no size bounds (the phantom takers that carry market volume to
        # our orders may be of any size); our orders' sizes are checked in ``_place``
        unbounded = Instrument(
            instrument.symbol,
            tick_size=instrument.tick_size,
            lot_size=instrument.lot_size,
            multiplier=instrument.multiplier,
        )
        self.own = OrderBook(unbounded, clock=lambda: self.now[0], maker_fee_bps=mfee_bps)
        self.min_qty = instrument.min_qty
        self.max_qty = _INF if instrument.max_qty is None else instrument.max_qty
        # exchange-side market book (aggregated levels; L3 orders additionally in `mkt`)
        self.levels: tuple[dict[int, int], dict[int, int]] = ({}, {})
        self.stamp = [0]
        if l3:
            self.mkt = OrderBook(instrument, clock=lambda: self.stamp[0])
            self.ids: dict[int, int] = {}
        # own orders: meta[oid] = [side, price, ahead, stamp]; own_lv[side][price] =
        # [traded lots not yet seen in a depth update, [oid, ...] in FIFO order]
        self.meta: dict[int, list] = {}
        self.own_lv: tuple[dict[int, list], dict[int, list]] = ({}, {})
        self.bq_step = False  # a bid / ask of ours was live during the current step
        self.aq_step = False
        self.obb = -1  # own best bid (ticks), -1 if none
        self.oba = _INF  # own best ask
        self.last_mid = math.nan
        self.pos = 0  # true position, lots
        self.cash = 0  # sum of +-price * lots (ticks x lots)
        self.fee_raw = 0
        self.nfills = 0
        self.arrivals: list = []  # heap (time, counter, actions)
        self.notes: list = []  # heap (local time, counter, kind, payload)
        self.counter = 0
        # local side
        self.lv_local: tuple[dict[int, int], dict[int, int]] = ({}, {})
        self.lorders: dict[int, tuple[int, int, int]] = {}
        self.local_pos = 0
        self.local_open: dict[int, list] = {}
        self.rows: list[float] = []
        self.fill_rows: list[tuple] = []
        self.stats = {
            "events": self.n,
            "decisions": 0,
            "placed": 0,
            "cancelled": 0,
            "rejected_post_only": 0,
            "rejected_self_cross": 0,
            "rejected_position_limit": 0,
            "rejected_book": 0,
            "taker_orders": 0,
            "fills": 0,
            "skipped_l3": 0,
        }

    # ------------------------------------------------------------------ helpers
    def _mid(self) -> float:
        """Exchange mid in ticks; while a side is empty, the last two-sided mid (NaN before)."""
        b, a = self.levels
        if not b or not a:
            return self.last_mid
        m = (max(b) + min(a)) / 2.0
        self.last_mid = m
        return m

    def _side_emptied(self, side: int, p: int) -> None:
        """The last level ``p`` of ``side`` went: remember the two-sided mid just before."""
        other = self.levels[side ^ 1]
        if other:
            self.last_mid = (p + (min(other) if side == 0 else max(other))) / 2.0

    def _refresh_own_best(self) -> None:
        bb = self.own.best_bid()
        ba = self.own.best_ask()
        self.obb = -1 if bb is None else bb
        self.oba = _INF if ba is None else ba
        if bb is not None:
            self.bq_step = True
        if ba is not None:
            self.aq_step = True

    def _note(self, t: int, kind: str, payload: Any) -> None:
        self.counter += 1
        heapq.heappush(self.notes, (t + self.resp(), self.counter, kind, payload))

    def _forget(self, oid: int) -> None:
        m = self.meta.pop(oid)
        lvd = self.own_lv[m[0]]
        lv = lvd[m[1]]
        lv[1].remove(oid)
        if not lv[1]:
            del lvd[m[1]]

    def _book_fill(self, taker_side: int, qty: int, price: int, t: int) -> None:
        """Phantom market taker into the own book: fills our orders by price-time priority."""
        if qty <= 0:
            return
        mid = self._mid()
        self.now[0] = t
        r = self.own.submit(taker_side, qty, price, tif=TimeInForce.IOC)
        for f in r.fills:
            oid = f.maker_id
            side = taker_side ^ 1
            lots = f.qty
            self.pos += lots if side == 0 else -lots
            self.cash += -f.price * lots if side == 0 else f.price * lots
            self.fee_raw += f.maker_fee_raw
            self.nfills += 1
            self.stats["fills"] += 1
            self.counter += 1
            tl = t + self.resp()
            heapq.heappush(self.notes, (tl, self.counter, "fill", (oid, side, lots)))
            self.fill_rows.append((t, tl, oid, side, f.price, lots, "maker", f.maker_fee_raw, mid))
            if oid not in self.own:
                self._forget(oid)
        self._refresh_own_best()

    def _trade_hits_own(self, agg: int, p: int, v: int, t: int) -> None:
        """A trade of ``v`` lots at ``p`` with aggressor side ``agg`` meets our passive side."""
        passive = agg ^ 1
        own = self.own
        through = 0
        # orders strictly better than p for the aggressor are traded through: full fills
        for price, lv in self.own_lv[passive].items():
            if (passive == 0 and price > p) or (passive == 1 and price < p):
                for oid in lv[1]:
                    through += own.order(oid).qty
        total = through
        lv = self.own_lv[passive].get(p)
        if lv is not None:
            lv[0] += v
            done = 0
            for oid in lv[1]:
                m = self.meta[oid]
                rem = own.order(oid).qty
                vi = v - done
                fill = int(math.floor(vi - m[2] + _EPS))
                fill = 0 if fill < 0 else (rem if fill > rem else fill)
                a = m[2] - vi
                m[2] = a if a > 0.0 else 0.0
                done += fill
            total += done
        self._book_fill(agg, total, p, t)

    def _incoming_cross(self, side: int, p: int, v: int, t: int) -> None:
        """``v`` new lots on market side ``side`` at ``p``, at or through our opposite orders:
        an incoming order that trades with ours (best price first), up to its size."""
        self._book_fill(side, v, p, t)

    def _level_decrease(self, side: int, p: int, old: int, new: int) -> None:
        lv = self.own_lv[side][p]
        dec = old - new
        used = lv[0] if lv[0] < dec else dec
        lv[0] -= used
        dec -= used
        if dec <= 0:
            return
        level = float(old - used)
        after = self.queue.after_cancel
        for oid in lv[1]:
            m = self.meta[oid]
            m[2] = after(m[2], level, float(dec))

    # ------------------------------------------------------------------ L3 exchange side
    def _l3_event(self, i: int) -> None:
        k = self.kind[i]
        s = self.side[i]
        p = self.price[i]
        q = self.qty[i]
        x = self.oid[i]
        t = self.ts[i]
        mkt = self.mkt
        levels = self.levels
        self.stamp[0] += 1
        if k == _TRADE:
            if (s == 0 and self.oba <= p) or (s == 1 and self.obb >= p):
                self._trade_hits_own(s, p, q, t)
            bid = self.ids.get(x) if x else None
            if bid is not None:
                info = mkt.order(bid)
                lv = levels[info.side]
                if q >= info.qty:
                    mkt.cancel(bid)
                    del self.ids[x]
                    nq = lv[info.price] - info.qty
                else:
                    mkt.modify(bid, qty=info.qty - q)
                    nq = lv[info.price] - q
                if nq > 0:
                    lv[info.price] = nq
                else:
                    del lv[info.price]
                    if not lv:
                        self._side_emptied(int(info.side), info.price)
            return
        if k == _ADD:
            if x in self.ids:
                self.stats["skipped_l3"] += 1
                return
            try:
                r = mkt.submit(s, q, p, post_only=True)
            except OrderRejected:
                self.stats["skipped_l3"] += 1
                return
            self.ids[x] = r.order_id
            levels[s][p] = levels[s].get(p, 0) + q
            if (s == 1 and self.obb >= p) or (s == 0 and self.oba <= p):
                self._incoming_cross(s, p, q, t)
            return
        bid = self.ids.get(x)
        if bid is None:
            self.stats["skipped_l3"] += 1
            return
        info = mkt.order(bid)
        side, old_p, old_q = int(info.side), info.price, info.qty
        own_lv = self.own_lv[side].get(old_p)
        if k == _MODIFY and p == old_p and q <= old_q:
            removed = old_q - q  # keeps its place
            if q == old_q:
                return
            mkt.modify(bid, qty=q)
        else:
            removed = old_q
            if k == _CANCEL:
                mkt.cancel(bid)
                del self.ids[x]
            else:
                try:
                    mkt.modify(bid, qty=q, price=p)
                except OrderRejected:
                    self.stats["skipped_l3"] += 1
                    return
        if own_lv is not None:
            for oid in own_lv[1]:
                m = self.meta[oid]
                if info.ts < m[3]:
                    a = m[2] - removed
                    m[2] = a if a > 0.0 else 0.0
        lv = levels[side]
        nq = lv[old_p] - removed
        if nq > 0:
            lv[old_p] = nq
        else:
            del lv[old_p]
            if not lv:
                self._side_emptied(side, old_p)
        if k == _MODIFY and not (p == old_p and q <= old_q):
            lv[p] = lv.get(p, 0) + q
            if (side == 1 and self.obb >= p) or (side == 0 and self.oba <= p):
                self._incoming_cross(side, p, q, t)

    # ------------------------------------------------------------------ order arrival
    def _arrive(self, t: int, actions: Any) -> None:
        self.now[0] = t
        if isinstance(actions, Quotes):
            self._apply_quotes(t, actions)
        else:
            for a in actions:
                if isinstance(a, Cancel):
                    if a.order_id in self.meta:
                        self._cancel(t, a.order_id)
                elif isinstance(a, Place):
                    self._place(t, a.side, a.price, a.qty, a.post_only, a.ioc)
                else:
                    raise ValueError(f"strategy: unknown action {a!r}")
        self._refresh_own_best()

    def _room(self, side: int) -> int:
        c = max(self.max_lots, abs(self.pos))
        open_lots = sum(self.own.order(o).qty for o, m in self.meta.items() if m[0] == side)
        room = (c - self.pos if side == 0 else c + self.pos) - open_lots
        return room if room > 0 else 0

    def _cancel(self, t: int, oid: int) -> None:
        self.own.cancel(oid)
        self._forget(oid)
        self.stats["cancelled"] += 1
        self._note(t, "done", oid)

    def _apply_quotes(self, t: int, q: Quotes) -> None:
        """Replace semantics (see :class:`Quotes`): cancels on both sides first, then sizes
        and new orders, so a new bid never meets an ask that is about to be cancelled."""
        wants: list[dict[int, int] | None] = []
        keeps: list[dict[int, tuple[int, int]]] = []
        for side, target in ((0, q.bids), (1, q.asks)):
            keep: dict[int, tuple[int, int]] = {}
            if target is None:
                wants.append(None)
                keeps.append(keep)
                continue
            want: dict[int, int] = {}
            for p, lots in target:
                try:
                    p, lots = operator.index(p), operator.index(lots)
                except TypeError:
                    raise ValueError(
                        f"strategy: Quotes levels must be (int ticks, int lots), got {(p, lots)!r}"
                    ) from None
                if p < 1:
                    raise ValueError(f"strategy: Quotes price must be >= 1 tick, got {p}")
                if lots > 0:
                    want[p] = want.get(p, 0) + lots
            for oid in [o for o, m in self.meta.items() if m[0] == side]:
                price = self.meta[oid][1]
                if price not in want or price in keep:
                    self._cancel(t, oid)
                else:
                    keep[price] = (oid, self.own.order(oid).qty)
            wants.append(want)
            keeps.append(keep)
        for side in (0, 1):
            want = wants[side]
            if want is None:
                continue
            keep = keeps[side]
            c = max(self.max_lots, abs(self.pos))
            room = c - self.pos if side == 0 else c + self.pos
            for p in sorted(want, reverse=(side == 0)):  # best level first
                cap = room if room > 0 else 0
                w = want[p] if want[p] < cap else cap
                room -= w
                oid, have = keep.get(p, (0, 0))
                if have == w:
                    continue
                if w == 0:
                    self._cancel(t, oid)
                elif have > w:  # size down keeps the queue place
                    self.own.modify(oid, qty=w)
                    self._note(t, "open", (oid, side, p, w))
                else:  # new, or must grow: (re)placed at the back of the queue
                    if have:
                        self._cancel(t, oid)
                    self._place(t, side, p, w, True, False, checked=True)

    def _place(self, t, side, price, qty, post_only, ioc, checked=False) -> None:
        try:
            price = operator.index(price)
            qty = operator.index(qty)
            side = operator.index(side)
        except TypeError:
            raise ValueError(
                f"strategy: Place side / price / qty must be integers (ticks, lots), got "
                f"{side!r}, {price!r}, {qty!r}"
            ) from None
        if side not in (0, 1) or price < 1 or qty < 1:
            self.stats["rejected_book"] += 1
            self._note(t, "reject", None)
            return
        if not checked:
            room = self._room(side)
            if room <= 0:
                self.stats["rejected_position_limit"] += 1
                return
            if qty > room:
                qty = room
        if qty < self.min_qty or qty > self.max_qty:
            self.stats["rejected_book"] += 1
            self._note(t, "reject", None)
            return
        levels = self.levels
        opp = levels[side ^ 1]
        crosses = bool(opp) and (
            (side == 0 and min(opp) <= price) or (side == 1 and max(opp) >= price)
        )
        if crosses:
            if post_only:
                self.stats["rejected_post_only"] += 1
                self._note(t, "reject", None)
                return
            self._take(t, side, price, qty)
            return
        if ioc:
            return
        try:
            r = self.own.submit(side, qty, price, post_only=True, owner="self")
        except OrderRejected as e:
            key = "rejected_self_cross" if e.rule.value == "post_only" else "rejected_book"
            self.stats[key] += 1
            self._note(t, "reject", None)
            return
        oid = r.order_id
        self.stats["placed"] += 1
        lvd = self.own_lv[side]
        lv = lvd.get(price)
        if lv is None:
            lvd[price] = lv = [0, []]
        lv[1].append(oid)
        ahead = float(levels[side].get(price, 0))
        self.meta[oid] = [side, price, ahead, self.stamp[0] + 0.5]
        self._note(t, "open", (oid, side, price, qty))

    def _take(self, t: int, side: int, price: int, qty: int) -> None:
        """Marketable order: sweep the displayed opposite depth up to ``price`` (no impact)."""
        self.stats["taker_orders"] += 1
        opp = self.levels[side ^ 1]
        prices = sorted(opp) if side == 0 else sorted(opp, reverse=True)
        mid = self._mid()
        left = qty
        for p in prices:
            if (side == 0 and p > price) or (side == 1 and p < price) or left == 0:
                break
            x = opp[p] if opp[p] < left else left
            left -= x
            fee = p * x * self.tfee
            self.pos += x if side == 0 else -x
            self.cash += -p * x if side == 0 else p * x
            self.fee_raw += fee
            self.nfills += 1
            self.stats["fills"] += 1
            self.counter += 1
            tl = t + self.resp()
            heapq.heappush(self.notes, (tl, self.counter, "fill", (0, side, x)))
            self.fill_rows.append((t, tl, 0, side, p, x, "taker", fee, mid))

    # ------------------------------------------------------------------ local side
    def _deliver(self, t: int) -> None:
        notes = self.notes
        lo = self.local_open
        while notes and notes[0][0] <= t:
            _, _, kind, pl = heapq.heappop(notes)
            if kind == "fill":
                oid, side, lots = pl
                self.local_pos += lots if side == 0 else -lots
                o = lo.get(oid)
                if o is not None:
                    o[3] -= lots
                    if o[3] <= 0:
                        del lo[oid]
            elif kind == "open":
                oid, side, price, q = pl
                lo[oid] = [oid, side, price, q]
            elif kind == "done":
                lo.pop(pl, None)

    def _catch_up(self, t: int, j: int, lorder: list, lts_sorted: list) -> int:
        n = self.n
        kind, side, price, qty, oid = self.kind, self.side, self.price, self.qty, self.oid
        bids, asks = self.lv_local
        books = self.lv_local
        l3 = self.l3
        lorders = self.lorders
        while j < n and lts_sorted[j] <= t:
            i = lorder[j]
            j += 1
            k = kind[i]
            if k == _DEPTH:
                lv = bids if side[i] == 0 else asks
                if qty[i]:
                    lv[price[i]] = qty[i]
                else:
                    lv.pop(price[i], None)
            elif l3:
                x = oid[i]
                if k == _ADD:
                    if x in lorders:
                        continue
                    lorders[x] = (side[i], price[i], qty[i])
                    lv = books[side[i]]
                    lv[price[i]] = lv.get(price[i], 0) + qty[i]
                    continue
                o = lorders.get(x)
                if o is None:
                    continue
                lv = books[o[0]]
                dq = qty[i] if k == _TRADE and qty[i] < o[2] else o[2]
                left = lv[o[1]] - dq
                if left > 0:
                    lv[o[1]] = left
                else:
                    del lv[o[1]]
                if k == _TRADE and qty[i] < o[2]:
                    lorders[x] = (o[0], o[1], o[2] - qty[i])
                elif k == _MODIFY:
                    lorders[x] = (o[0], price[i], qty[i])
                    lv[price[i]] = lv.get(price[i], 0) + qty[i]
                else:
                    del lorders[x]
        return j

    def _view(self, t: int, nseen: int) -> MarketView:
        bids, asks = self.lv_local
        bb = max(bids) if bids else None
        ba = min(asks) if asks else None
        mid = (bb + ba) / 2.0 if bb is not None and ba is not None else math.nan
        opens = tuple(OwnOrder(o[0], o[1], o[2], o[3]) for o in self.local_open.values())
        return MarketView(
            t,
            bb,
            ba,
            bids[bb] if bb is not None else 0,
            asks[ba] if ba is not None else 0,
            mid,
            self.local_pos,
            opens,
            nseen,
            self.tick_f,
            self.lot_f,
            self.lv_local,
            self.depth_levels,
        )

    def _record(self, t: int) -> None:
        self.rows.extend(
            (
                t,
                self._mid(),
                self.pos,
                self.cash,
                self.fee_raw,
                self.nfills,
                self.obb if self.obb >= 0 else math.nan,
                self.oba if self.oba < _INF else math.nan,
                self.bq_step,
                self.aq_step,
            )
        )
        self.nfills = 0
        self.bq_step = self.obb >= 0
        self.aq_step = self.oba < _INF

    # ------------------------------------------------------------------ main loop
    def _advance(self, T: int, k: int) -> int:
        """Process exchange-side items up to time ``T``; returns the next event index."""
        n = self.n
        ts, kind, side, price, qty = self.ts, self.kind, self.side, self.price, self.qty
        levels = self.levels
        bids, asks = levels
        own_lv = self.own_lv
        arrivals = self.arrivals
        l3 = self.l3
        while True:
            na = arrivals[0][0] if arrivals else _INF
            limit = na if na < T else T
            if l3:
                while k < n and ts[k] <= limit:
                    self._l3_event(k)
                    k += 1
            else:
                obid, oask = own_lv
                while k < n and ts[k] <= limit:
                    s = side[k]
                    p = price[k]
                    q = qty[k]
                    if kind[k] == _DEPTH:
                        lv = bids if s == 0 else asks
                        old = lv.get(p, 0)
                        if q:
                            lv[p] = q
                        elif lv.pop(p, 0) and not lv:
                            self._side_emptied(s, p)
                        if q < old:
                            if (obid if s == 0 else oask) and p in (obid if s == 0 else oask):
                                self._level_decrease(s, p, old, q)
                        elif q > old:
                            if (s == 1 and self.obb >= p) or (s == 0 and self.oba <= p):
                                self._incoming_cross(s, p, q - old, ts[k])
                    elif (s == 1 and self.obb >= p) or (s == 0 and self.oba <= p):
                        self._trade_hits_own(s, p, q, ts[k])
                    k += 1
            if na <= T and (k >= n or ts[k] > na):
                _, _, acts = heapq.heappop(arrivals)
                self._arrive(na, acts)
                continue
            return k

    def run(self, times: list, lorder: list, lts_sorted: list) -> None:
        k = 0
        j = 0
        strategy = self.strategy
        for t in times:
            k = self._advance(t, k)
            self._deliver(t)
            j = self._catch_up(t, j, lorder, lts_sorted)
            self._record(t)
            self.stats["decisions"] += 1
            view = self._view(t, j)
            acts = strategy(view)
            view._books = None  # depth is only valid during the call
            if acts is not None:
                if not isinstance(acts, Quotes):
                    acts = list(acts)
                self.counter += 1
                heapq.heappush(self.arrivals, (t + self.entry(), self.counter, acts))
        end = self.ts[-1] if self.n else 0
        k = self._advance(end, k)
        self._deliver(end)
        self._record(end)
