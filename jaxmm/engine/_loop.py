"""The asyncio engine loop of the options market maker (:class:`OptionsMarketMaker`).

On every underlying tick (:meth:`OptionsMarketMaker.on_price`) or surface update
(:meth:`OptionsMarketMaker.on_surface`) of underlying ``u``:

1. **surface**: no surface, or one received more than ``stale_surface_s`` ago (engine clock)
   -> status ``STALE``, every quote of ``u`` is pulled and nothing is quoted;
2. **re-mark**: the chain's vols are read off the latest :class:`jaxmm.feeds.SurfaceUpdate`
   (:func:`interpolate_surface`: linear in total variance across expiry at fixed
   log-moneyness, linear in log-moneyness within an expiry, flat beyond the grid);
3. **quote**: ONE jitted call per underlying re-marks every option's unit Greeks at the new
   spot and vols, aggregates the position Greeks from them and quotes the whole chain
   against those fresh Greeks (:func:`jaxmm.engine.quote_option` vmapped twice in one XLA
   program); the operator controls (spread multiplier, size scalar, directional skew,
   per-instrument enable, kill switch) are inputs of that call;
4. **risk re-mark**: :meth:`GreeksRiskManager.update_market` (Greeks never frozen at fill time;
   the breaker is stepped); ``"total"`` limits cap sizes across underlyings;
5. **order diff**: prices rounded to integer ticks and sizes to lots, then
   :meth:`jaxmm.execution.QuoteManager.plan` with ``price_tolerance = requote_ticks - 1``;
   every NEW / MODIFY passes :meth:`GreeksRiskManager.check_order` on the post-trade state
   (scaled, or the side pulled), then one batch to the venue
   (:meth:`InProcessConnector.execute`);
6. **fills** (pushed by the venue, handled synchronously): order manager, risk manager
   (positions, PnL, breaker), the durable store (:class:`jaxmm.store.FillWriter`; a full
   queue halts quoting and raises an alert, nothing is dropped), then every resting quote of
   the underlying is re-checked against the new state (one that would now breach a limit is
   cancelled at once, so any single further fill keeps every limit), and a delta hedge is
   scheduled (an IOC market order in the underlying's book).

Only the in-process venue is awaited on the hot path; events go to an
:class:`jaxmm.events.EventBroadcaster`, which never blocks (a slow subscriber is cut off).
Units, rules and the event schema: ``docs/engine.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..book import Instrument as BookInstrument
from ..book import OrderBook, OrderType, TimeInForce
from ..book import Side as BSide
from ..events import (
    AlertTriggered,
    CircuitBreakerTripped,
    ConfigChanged,
    EventBroadcaster,
    PriceUpdated,
    QuoteUpdated,
)
from ..execution import (
    FillReport,
    InProcessConnector,
    InProcessExchange,
    LatencyTracker,
    OrderRequest,
    Quote,
    QuoteManager,
    QuoteTarget,
)
from ..execution._orders import OrderState
from ..portfolio import Fill, Instrument, Order
from ..portfolio import Side as PSide
from ..risk import (
    Action,
    BreakerEvent,
    BreakerState,
    GreekLimits,
    GreeksUtilisationBreaker,
    RiskLimits,
)
from ._config import MarketMakerConfig, OperatorControls
from ._multi import (
    _scaled_limits,
    equal_weights,
    inverse_vol_weights,
    pnl_covariance,
    pnl_risk,
    risk_parity_weights,
    target_weights,
)
from ._quote import (
    LIMIT_FIELDS,
    MARKET_FIELDS,
    PACKED_OUTPUT_FIELDS,
    PARAM_FIELDS,
    ChainMarket,
    QuoteLimits,
    QuoteStatus,
    _unpack_state,
    pack_state,
    quote_option,
)
from ._risk import GreeksRiskManager, HedgeConfig

__all__ = ["OptionsMarketMaker", "interpolate_surface", "build_exchange", "remark_and_quote"]

log = logging.getLogger(__name__)

NS_PER_YEAR = 365 * 86_400 * 1_000_000_000
_GREEKS = ("delta", "gamma", "vega", "theta")
_OUT = {f: i for i, f in enumerate(PACKED_OUTPUT_FIELDS)}
_N_PARAM = len(PARAM_FIELDS)
_M0 = _N_PARAM + len(LIMIT_FIELDS)
_I_SPOT = _M0 + MARKET_FIELDS.index("spot")
_I_DELTA = _M0 + MARKET_FIELDS.index("delta")
_I_KILL = _M0 + MARKET_FIELDS.index("kill")
_I_BASE_SIZE = PARAM_FIELDS.index("base_size")
_RISK_HORIZON = 1.0 / 365.0  # portfolio risk of risk(): one calendar day, years
_RISK_CONFIDENCE = 0.99
_PAD = 16  # chain rows are padded to a multiple of this: one compiled shape per config
_MAX_TICKS = float(2**53)  # a price beyond this many ticks is out of range (not quoted)
_MAX_LOTS = float(2**53)  # a size beyond this many lots is out of range (not quoted)
_OK = float(QuoteStatus.OK)
_WORKING = (OrderState.OPEN, OrderState.PARTIALLY_FILLED)
_new = tuple.__new__


# --------------------------------------------------------------------------------- surface
def same_expiry(a: float, b: float) -> bool:
    """Whether two expiries (years) name the same listed expiry: equal to a relative 1e-9, the
    rule every expiry filter of the engine's views (and the API over them) uses.

    Example:
        >>> same_expiry(30 / 365, 0.0821917808219178), same_expiry(30 / 365, 31 / 365)
        (True, False)
    """
    return math.isclose(a, b, rel_tol=1e-9)


def interpolate_surface(
    expiries, strikes, vols, forward: float, spot: float, chain_strike, chain_expiry
) -> np.ndarray:
    """Implied vols of a chain from a grid of vols (NumPy, host side).

    With log-moneyness ``k = ln(K / F)`` (``F`` = the grid's ``forward`` for the grid strikes,
    ``spot`` for the chain's: sticky moneyness, the smile moves with the underlying):
    within each grid expiry the vol is linear in ``k`` and flat beyond the first / last grid
    strike; across expiries the total variance ``w = sigma^2 T`` is linear in ``T`` at fixed
    ``k`` and ``sigma = sqrt(w / T)``; before the first / after the last grid expiry the vol
    of that expiry is used (flat).

    Args:
        expiries: ``(n_e,)`` strictly increasing grid expiries, years.
        strikes: ``(n_k,)`` strictly increasing grid strikes (currency).
        vols: ``(n_e, n_k)`` grid vols (annualised fractions).
        forward: price the grid was marked at; ``spot``: the chain's reference price.
        chain_strike, chain_expiry: ``(n,)`` the options.

    Example:
        >>> v = interpolate_surface([0.1, 0.4], [90.0, 110.0], [[0.3, 0.2], [0.2, 0.2]],
        ...                         100.0, 100.0, np.array([90.0]), np.array([0.25]))
        >>> round(float(v[0]), 6)  # w = (0.3^2 x 0.1 + 0.2^2 x 0.4) / 2; sqrt(w / 0.25)
        0.223607
    """
    e = np.asarray(expiries, np.float64)
    kg = np.log(np.asarray(strikes, np.float64) / float(forward))
    v = np.asarray(vols, np.float64).reshape(e.shape[0], kg.shape[0])
    k = np.log(np.asarray(chain_strike, np.float64) / float(spot))
    t = np.asarray(chain_expiry, np.float64)
    smile = np.stack([np.interp(k, kg, v[i]) for i in range(e.shape[0])])  # (n_e, n)
    if e.shape[0] == 1:
        return smile[0]
    cols = np.arange(k.shape[0])
    j = np.clip(np.searchsorted(e, t, side="right") - 1, 0, e.shape[0] - 2)
    t0, t1 = e[j], e[j + 1]
    w0 = smile[j, cols] ** 2 * t0
    w1 = smile[j + 1, cols] ** 2 * t1
    a = (t - t0) / (t1 - t0)
    safe_t = np.where(t > 0, t, 1.0)
    inner = np.sqrt(np.maximum(w0 + a * (w1 - w0), 0.0) / safe_t)
    return np.where(t <= e[0], smile[0], np.where(t >= e[-1], smile[-1], inner))


# --------------------------------------------------------------------------------- kernel
def _remark_and_quote(state: jax.Array, chain: jax.Array) -> tuple[jax.Array, jax.Array]:
    params, limits, market = _unpack_state(state)
    cols = [chain[:, i] for i in range(chain.shape[1])]
    cols[2] = cols[2] != 0
    cols[6] = cols[6] != 0
    vq = jax.vmap(quote_option, in_axes=(None, None, None, 0, 0, 0, 0, 0, 0, 0))
    first = vq(params, limits, market, *cols)  # unit Greeks at the new spot and vols
    units = cols[5] * cols[4]  # signed contracts x multiplier
    held = units != 0

    def agg(g, base):
        return base + jnp.sum(jnp.where(held, units * jnp.where(held, g, 0.0), 0.0))

    d = agg(first.delta, market.delta)  # market.delta carries the underlying's own position
    g = agg(first.gamma, market.gamma)
    v = agg(first.vega, market.vega)
    th = agg(first.theta, market.theta)
    fresh = ChainMarket(market.spot, market.rate, market.dividend, d, g, v, th, market.kill)
    q = vq(params, limits, fresh, *cols)
    out = jnp.stack([getattr(q, f).astype(chain.dtype) for f in PACKED_OUTPUT_FIELDS], axis=-1)
    return out, jnp.stack([d, g, v, th])


_remark_and_quote_jit = jax.jit(_remark_and_quote)


def remark_and_quote(state, chain) -> tuple[jax.Array, jax.Array]:
    """Re-mark and quote a chain in ONE jitted call (the engine's per-underlying kernel).

    ``state``: :func:`jaxmm.engine.pack_state` vector whose market Greeks are those of the
    underlying's OWN position (delta = units held); ``chain``: ``(n, 7)`` rows
    (:data:`jaxmm.engine.CHAIN_FIELDS`). The option Greeks are computed at the state's spot
    and the chain's vols, aggregated with the chain's positions and added to the state's,
    and the chain is quoted against that aggregate. Returns the ``(n, 12)`` quotes
    (:data:`jaxmm.engine.PACKED_OUTPUT_FIELDS`) and the aggregate ``(delta, gamma, vega,
    theta)``. New values never retrace.

    Example:
        >>> from jaxmm.engine import QuoteParams, QuoteLimits, ChainMarket, pack_state
        >>> st = pack_state(QuoteParams(1e-3, 20.0), QuoteLimits(), ChainMarket(100.0))
        >>> ch = jnp.array([[100.0, 0.25, 1.0, 0.2, 1.0, -10.0, 1.0]])
        >>> out, g = remark_and_quote(st, ch)
        >>> round(float(g[0]), 4) == round(-10.0 * float(out[0, 7]), 4)   # -10 x unit delta
        True
    """
    return _remark_and_quote_jit(state, chain)


# --------------------------------------------------------------------------------- venue
def build_exchange(config: MarketMakerConfig, clock: Callable[[], int] = time.time_ns):
    """An :class:`InProcessExchange` with one book per option of ``config`` and one per
    underlying (named after its symbol); prices in the config's ticks, sizes in its lots.

    Example:
        >>> x = build_exchange(MarketMakerConfig.demo())
        >>> "BTC" in x.symbols(), "BTC-0030D-100-C" in x.symbols()
        (True, True)
    """
    books = []
    for u in config.underlyings:
        books.append(
            OrderBook(
                BookInstrument(u.symbol, tick_size=u.underlying_tick, lot_size=u.underlying_lot),
                clock=clock,
            )
        )
        for s in u.symbols():
            books.append(
                OrderBook(
                    BookInstrument(s, tick_size=u.tick, lot_size=u.lot, multiplier=u.multiplier),
                    clock=clock,
                )
            )
    return InProcessExchange(books)


# --------------------------------------------------------------------------------- state
def _quote_limits(limits: RiskLimits) -> QuoteLimits:
    """:class:`QuoteLimits` equal to ``limits`` (as :meth:`GreeksRiskManager.quote_limits`)."""
    gl = limits.greeks
    val = lambda x: math.inf if x is None else float(x)
    return QuoteLimits(
        val(gl.delta), val(gl.gamma), val(gl.vega), val(gl.theta), val(limits.max_position)
    )


class _Underlying:
    """Per-underlying state of the engine (host side)."""

    def __init__(self, engine: OptionsMarketMaker, cfg, n_pad: int):
        self.cfg = cfg
        self.symbol = cfg.symbol
        self.symbols = cfg.symbols()
        self.n = len(self.symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        ne, nk = len(cfg.expiries), len(cfg.strikes)
        self.strike = np.repeat(np.tile(np.asarray(cfg.strikes, np.float64), ne), 2)
        self.expiry0 = np.repeat(np.asarray(cfg.expiries, np.float64), 2 * nk)
        self.is_call = np.tile(np.array([True, False]), ne * nk)
        self.mult = float(cfg.multiplier)
        self.pos = np.zeros(self.n, np.float64)  # contracts
        self.under_qty = 0  # units of the underlying
        chain = np.zeros((n_pad, 7), np.float64)
        chain[:, 0] = 1.0  # padding rows: a harmless disabled option
        chain[:, 1] = 1.0
        chain[:, 3] = 0.2
        chain[:, 4] = 1.0
        chain[: self.n, 0] = self.strike
        chain[: self.n, 1] = self.expiry0
        chain[: self.n, 2] = self.is_call
        chain[: self.n, 4] = self.mult
        chain[: self.n, 6] = 1.0
        self.chain = chain
        insts = [Instrument.spot(cfg.symbol, lot_size=cfg.underlying_lot)] + [
            Instrument.option(
                s, cfg.symbol, strike=float(k), expiry=float(t), is_call=bool(c),
                multiplier=self.mult, lot_size=cfg.lot,
            )
            for s, k, t, c in zip(
                self.symbols, self.strike, self.expiry0, self.is_call, strict=True
            )
        ]  # fmt: skip
        self.instruments = {i.id: i for i in insts}
        self.grm = engine._make_risk_manager(cfg, insts)
        self.price: float | None = None
        self.price_ts: int | None = None
        self.surface: Any = None
        self.surface_recv_ns: int | None = None
        self.status = "WAITING"
        self.out: np.ndarray | None = None  # (n, 12) last kernel output
        self.vols = np.zeros(self.n, np.float64)
        self.reason: list[str] = [""] * self.n  # why a live option is not quoted (host side)
        self.expiry = self.expiry0.copy()
        self.mark: tuple[float, np.ndarray, np.ndarray, int] | None = None
        self.lock = asyncio.Lock()
        self.hedge_lock = asyncio.Lock()
        self.hedge_scheduled = False
        self.set_params(engine.config, engine.config.controls, engine._alloc["scales"][self.symbol])

    def set_params(
        self, config: MarketMakerConfig, controls: OperatorControls, scale: float = 1.0
    ) -> None:
        limits = _quote_limits(self.grm.limits)
        self.commit_params(config, *self.params(config, controls, limits, scale))

    def params(
        self,
        config: MarketMakerConfig,
        controls: OperatorControls,
        limits: QuoteLimits,
        scale: float = 1.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The packed state and enable mask of ``config`` (pure: nothing changes); ``scale``:
        the capital-allocation scale of the base size (docs/multi_underlying.md)."""
        cfg = config.underlying(self.symbol)
        params = config.quote_params(self.symbol, controls)
        market = ChainMarket(cfg.spot, cfg.rate, cfg.dividend)
        state = np.asarray(pack_state(params, limits, market), np.float64).copy()
        if scale != 1.0:
            state[_I_BASE_SIZE] *= scale
        disabled = set(controls.disabled_instruments)
        enabled = np.array([s not in disabled for s in self.symbols], np.float64)
        return state, enabled

    def commit_params(self, config: MarketMakerConfig, state, enabled) -> None:
        self.cfg = config.underlying(self.symbol)
        self.state = state
        self.enabled = enabled
        self.tick = float(self.cfg.tick)
        self.lot = int(self.cfg.lot)
        # digits of the tick: prices are reported as round(ticks x tick, digits), the exact
        # decimal tick multiple (no float noise such as 8.540000000000001)
        self.digits = max(0, -int(Decimal(repr(self.tick)).normalize().as_tuple().exponent))

    def px(self, ticks: int) -> float:
        """The price of ``ticks`` ticks, an exact decimal multiple of the tick."""
        return round(ticks * self.tick, self.digits)


# --------------------------------------------------------------------------------- engine
class OptionsMarketMaker:
    """Quotes option chains on an in-process venue, keeps Greeks inside limits, hedges.

    Args:
        config: :class:`jaxmm.engine.MarketMakerConfig`.
        events: the broadcaster events are published to (a new one by default).
        store: optional :class:`jaxmm.store.Store`: every fill is written through a
            :class:`jaxmm.store.FillWriter` (acknowledged after commit), positions are
            snapshotted every ``snapshot_every_s`` and on :meth:`stop`, config versions kept.
        exchange: an :class:`jaxmm.execution.InProcessExchange` listing every option and
            underlying book (default: :func:`build_exchange`).
        clock: integer-ns clock (books, staleness, breaker timing, snapshots).
        writer_queue: the fill writer's queue bound (fills).
        on_fill_ack: called by the store's :class:`jaxmm.store.FillWriter` once per committed
            batch, after the commit and before the fills count as acknowledged, with
            ``[(FillRecord, stored), ...]`` (``stored`` False: the trade id was already in the
            store) — e.g. to journal acknowledgements. An exception it raises is logged, never
            affects the acknowledgements. Ignored without a store.
        session_id: this engine's session id (default: 12 random hex digits, ``uuid4``);
            prefixes every stored trade id and order id (``"{session}:{symbol}:{book trade
            id}:{order id}"``): the venue's counters restart at 1 in every process, the
            session keeps ids of different sessions on one store apart. 1-24 characters of
            ``[0-9A-Za-z_-]``.
        simulated_time: ``clock`` is a simulated clock (e.g. the simulated market's time,
            :func:`jaxmm.engine.run_simulation` with ``clock="simulated"``): the engine never
            waits on wall time (a hedge's fills are awaited by yielding to the event loop,
            not with a wall-clock deadline), so a run is a deterministic function of its
            inputs.
        gc_freeze: after the jit warm-up at the end of :meth:`start`, run ``gc.collect()``
            and ``gc.freeze()``; :meth:`stop` undoes it with ``gc.unfreeze()``
            (docs/engine.md, "Garbage collector").

    Restart: with a store, :meth:`start` rebuilds every position (quantity, average price,
    realised PnL, fees) from the store's whole fill log (the fill log is the record; snapshots
    are checkpoints of it) into the risk manager and the chain positions before anything is
    quoted, so limits, hedges, PnL and snapshots continue where the last session stopped.

    Option symbols: ``f"{underlying}-{days:04d}D-{strike:g}-{C|P}"``
    (:func:`jaxmm.engine.option_symbol`). Views (:meth:`quotes`, :meth:`greeks`, ...) return
    plain dicts of floats and strings, ready for JSON.

    Example:
        >>> import asyncio
        >>> from jaxmm.feeds import SurfaceUpdate
        >>> from jaxmm.engine import UnderlyingConfig
        >>> cfg = MarketMakerConfig(underlyings=[UnderlyingConfig(
        ...     symbol="XYZ", spot=100.0, strikes=[95.0, 100.0, 105.0], expiries=[30 / 365],
        ...     hedge_band=5.0)], quote={"fill_k": 10.0})
        >>> async def main():
        ...     mm = OptionsMarketMaker(cfg)
        ...     await mm.start()
        ...     await mm.on_surface(SurfaceUpdate("XYZ", [30 / 365], [95.0, 105.0],
        ...                                       [[0.25, 0.2]], 100.0, 0, 0))
        ...     await mm.on_price("XYZ", 100.0)
        ...     q = mm.quotes(symbol="XYZ-0030D-100-C")[0]
        ...     await mm.stop()
        ...     return q["bid"] < q["theo"] < q["ask"], q["status"]
        >>> asyncio.run(main())
        (True, 'OK')
    """

    def __init__(
        self,
        config: MarketMakerConfig,
        *,
        events: EventBroadcaster | None = None,
        store: Any = None,
        exchange: InProcessExchange | None = None,
        clock: Callable[[], int] = time.time_ns,
        writer_queue: int = 100_000,
        on_fill_ack: Callable[[Any], None] | None = None,
        session_id: str | None = None,
        simulated_time: bool = False,
        gc_freeze: bool = True,
    ) -> None:
        if not isinstance(config, MarketMakerConfig):
            raise ValueError(f"config: expected a MarketMakerConfig, got {type(config).__name__}")
        if type(writer_queue) is not int or writer_queue < 1:
            raise ValueError(f"writer_queue: must be an int >= 1, got {writer_queue!r}")
        if on_fill_ack is not None and not callable(on_fill_ack):
            raise ValueError(
                f"on_fill_ack: must be callable or None, got {type(on_fill_ack).__name__}"
            )
        if session_id is None:
            session_id = uuid.uuid4().hex[:12]
        if (
            not isinstance(session_id, str)
            or not 1 <= len(session_id) <= 24
            or not all(c.isascii() and (c.isalnum() or c in "_-") for c in session_id)
        ):
            raise ValueError(
                f"session_id: must be 1-24 characters of [0-9A-Za-z_-], got {session_id!r}"
            )
        for name, flag in (("simulated_time", simulated_time), ("gc_freeze", gc_freeze)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name}: must be a bool, got {flag!r}")
        self.session_id = session_id
        self.simulated_time = simulated_time
        self._on_fill_ack = on_fill_ack
        self._gc_freeze = gc_freeze
        self._frozen = False
        self._base_fill_id = 0  # the store's last fill id when positions were restored
        self._snapshot_task: asyncio.Task | None = None
        self.restored_fills = 0
        self.config = config
        self.events = events if events is not None else EventBroadcaster()
        self.store = store
        self._clock = clock
        self.exchange = exchange if exchange is not None else build_exchange(config, clock)
        missing = [
            s
            for u in config.underlyings
            for s in [u.symbol, *u.symbols()]
            if self.exchange.book(s) is None
        ]
        if missing:
            raise ValueError(f"exchange: no book for {missing[:5]} ({len(missing)} missing)")
        self._writer_queue = writer_queue
        n_max = max(len(u.symbols()) for u in config.underlyings)
        self._n_pad = -(-n_max // _PAD) * _PAD
        # capital allocation (docs/multi_underlying.md): weights and per-underlying scales of
        # base size and limits; recomputed at start, on a config change, every rebalance_s
        self._factor_cache: tuple = (None,)
        self._alloc_last_ns: int | None = None
        self._alloc: dict[str, Any] = self._allocation(config)
        self._u: dict[str, _Underlying] = {}
        for u in config.underlyings:
            self._u[u.symbol] = _Underlying(self, u, self._n_pad)
        self._owner: dict[str, _Underlying] = {}
        for st in self._u.values():
            self._owner[st.symbol] = st
            for s in st.symbols:
                self._owner[s] = st
        self.qm = QuoteManager(price_tolerance=config.requote_ticks - 1)
        # quotes() cache: _quote_epoch is bumped by every change to our orders (the quote
        # manager's state); the rest of a row (status, kernel output, vols, time to expiry,
        # reasons, tick/lot) is checked by identity on each call (_view_fingerprint)
        self._quote_epoch = 0
        self._view_fp: list[Any] = []
        self._view_version = 0
        self._view_rows: dict[str, list[dict]] = {}
        self.connector: InProcessConnector | None = None
        self.latency = LatencyTracker(window=10_000, clock=time.perf_counter_ns)
        self._unsub: list[Callable[[], Any]] = []
        self._seen: OrderedDict[tuple, None] = OrderedDict()
        self._hedge_fills: dict[tuple[str, int], int] = {}
        self._hedge_event = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._alerts: deque[dict] = deque(maxlen=50)
        self.events.add_callback(self._remember_alert, ("alert_triggered",))
        self._killed = False
        self._store_halted = False
        self._running = False
        self._stopped = False
        self._t_start = clock()
        self._version = 0
        self._writer: Any = None
        self.traders: Any = None  # set by run_simulation
        self._backlog: deque = deque()
        self._acks: set[asyncio.Future] = set()
        self._last_fill: tuple[str, str, asyncio.Future | None] | None = None
        self.acked_trade_ids: list[str] = []
        self._stats = dict(ticks=0, surfaces=0, requotes=0, orders_sent=0, rejects=0, fills=0,
                           hedges=0, hedge_fills=0, guard_cancels=0, fills_acked=0)  # fmt: skip
        self._spread: dict[str, float] = dict.fromkeys(self._u, 0.0)
        self._attr: dict[str, dict[str, float]] = {
            u: dict.fromkeys(("delta", "gamma", "vega", "theta", "actual"), 0.0) for u in self._u
        }
        # "total" limits (common currency, docs/engine.md): their own breaker, which halts
        # quoting of every underlying like a per-underlying breach
        self.total_breaker = GreeksUtilisationBreaker(
            threshold=config.breaker_threshold,
            min_halt=config.breaker_cooldown_s,
            cooldown=config.breaker_cooldown_s,
            name="greeks:total",
        )
        self.total_breaker.listeners.append(self._on_total_breaker)
        self._arb_sent: dict[tuple, tuple[float, float]] = {}  # structure -> (time s, edge)
        #: set after every refresh of any underlying (a waiter clears it first)
        self.tick_event = asyncio.Event()
        self._config_lock = asyncio.Lock()

    # ------------------------------------------------------------------------ construction
    def _make_risk_manager(self, cfg, insts) -> GreeksRiskManager:
        lim = self.config.limits.get(cfg.symbol, {})
        greeks = GreekLimits(**{g: lim[g] for g in _GREEKS if g in lim})
        maxpos = lim.get("max_position")
        limits = RiskLimits(
            max_position=None if maxpos is None else int(maxpos), greeks=greeks
        )  # fmt: skip
        limits = _scaled_limits(limits, self._alloc["scales"][cfg.symbol])
        grm = GreeksRiskManager(
            insts,
            limits,
            {cfg.symbol: HedgeConfig(cfg.symbol, band=cfg.hedge_band)},
            breaker_threshold=self.config.breaker_threshold,
            min_halt=self.config.breaker_cooldown_s,
            cooldown=self.config.breaker_cooldown_s,
            events=self.events,
        )
        grm.breaker.name = f"greeks:{cfg.symbol}"
        grm.breaker.listeners.append(lambda ev, u=cfg.symbol: self._on_breaker(u, ev))
        return grm

    def _now_s(self) -> float:
        return self._clock() / 1e9

    def _publish(self, event: Any) -> None:
        self.events.publish(event)

    def _remember_alert(self, ev: Any) -> None:
        self._alerts.append(
            {"seq": float(ev.seq), "severity": ev.severity, "kind": ev.kind, "message": ev.message}
        )

    def _alert(self, severity: str, kind: str, message: str) -> None:
        self._publish(AlertTriggered(severity=severity, kind=kind, message=message[:1000]))

    # ------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Connect to the venue, warm the jit, start the store's fill writer (idempotent)."""
        if self._running:
            return
        if self._stopped:
            raise RuntimeError("engine: stopped; build a new OptionsMarketMaker")
        self.connector = InProcessConnector(self.exchange, owner=f"jaxmm-mm-{id(self)}")
        self._unsub.append(await self.connector.subscribe_fills(self._on_fill))
        self._unsub.append(await self.connector.subscribe_orders(self._on_order_update))
        st = next(iter(self._u.values()))
        out, _ = remark_and_quote(st.state, st.chain)  # compile once (one shape per config)
        jax.block_until_ready(out)
        if self.store is not None:
            from ..store import FillWriter

            await self._store_running_config("startup")
            await self._restore_positions()
            self._writer = FillWriter(
                self.store, max_queue=self._writer_queue, on_ack=self._on_fill_ack
            )
            await self._writer.start()
            self._snapshot_task = self._spawn(self._snapshot_loop())
        self._t_start = self._clock()
        if self.config.allocation.mode != "none":
            self._rebalance(self._t_start)  # on the restored books (book basis)
        self._running = True
        if self._gc_freeze:
            # the engine's long-lived objects (books, jitted functions, instruments) move to
            # the permanent generation: later collections only scan what the loop allocates
            # (docs/engine.md, "Garbage collector")
            gc.collect()
            gc.freeze()
            self._frozen = True

    async def _restore_positions(self) -> int:
        """Replay the store's whole fill log into the positions (portfolio: quantity, average
        price, realised PnL, fees; limit checker; chain and underlying quantities), in log
        order with the engine's instruments (multipliers) — the same arithmetic as
        :meth:`jaxmm.store.Store.rebuild_positions`, so what the engine holds equals the log
        rebuilt. Later snapshots name the log's last id as their ``last_fill_id``. Fills of
        instruments this config does not list raise a critical alert and are not held.
        Returns the number of fills replayed."""
        n = 0
        unknown: dict[str, int] = {}
        after = 0
        while True:
            page = await self.store.get_fills(after_id=after, limit=5_000)
            for f in page:
                st = self._owner.get(f.instrument)
                if st is None:
                    unknown[f.instrument] = unknown.get(f.instrument, 0) + 1
                    continue
                side = PSide.BUY if f.side == "buy" else PSide.SELL
                fill = Fill(f.instrument, side, f.quantity, f.price, fee=f.fee)
                st.grm.portfolio.apply_fill(fill)
                st.grm.checker.on_fill(fill)
                if f.instrument == st.symbol:
                    st.under_qty += int(side) * f.quantity
                else:
                    st.pos[st.index[f.instrument]] += int(side) * f.quantity
                n += 1
            if page:
                after = max(after, *(f.id or 0 for f in page))
            if len(page) < 5_000:
                break
        self._base_fill_id = after
        self.restored_fills = n
        if unknown:
            self._alert(
                "critical",
                "positions_unknown_instrument",
                f"stored fills of instruments not in the config are not held: {unknown}",
            )
        return n

    async def settle(self) -> None:
        """Wait until every task the engine spawned (hedges, requotes, config writes) is
        done, the periodic snapshot task apart — the sequencing point of a simulated-clock
        run (:func:`jaxmm.engine.run_simulation`)."""
        while True:
            pending = [t for t in self._tasks if t is not self._snapshot_task and not t.done()]
            if not pending:
                return
            await asyncio.gather(*pending, return_exceptions=True)

    async def _store_running_config(self, author: str) -> int:
        """Store the running config as a new version unless the store's latest equals it;
        the engine's version becomes the stored one. A store whose latest config differs
        (older, or newer from another process) gets the running one as a new version: the
        config the engine was built with is the one that runs."""
        cfg = self.config.model_dump(mode="json")
        latest = await self.store.get_config()
        if latest is not None and latest.config == cfg:
            self._version = int(latest.version)
        else:
            self._version = int(await self.store.put_config(cfg, author))
        return self._version

    @property
    def config_version(self) -> int:
        """Version of the running config: the store's version when a store is attached
        (0 before :meth:`start`), else a counter of applied changes (0 = as built)."""
        return self._version

    async def stop(self) -> None:
        """Cancel every quote, flush the store writer, write a final snapshot (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        was_running = self._running
        self._running = False
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            try:
                await t
            except asyncio.CancelledError:
                pass  # we cancelled it just above
            except Exception:  # a background task that had failed: say so, keep stopping
                log.exception("engine task %r failed before stop", t.get_name())
        if was_running and self.connector is not None:
            for u in self._u:
                await self._pull(u)
            await self.connector.cancel_all()
        if self._writer is not None:
            while self._backlog:
                self._drain_backlog_once()
                if self._backlog:
                    await asyncio.sleep(0.005)
            await self._writer.stop()
            if self._acks:
                await asyncio.gather(*self._acks, return_exceptions=True)
            await self._snapshot()
        for f in self._unsub:
            f()
        self._unsub.clear()
        if self._frozen:
            self._frozen = False
            gc.unfreeze()  # the stopped engine's objects may be collected again

    def _spawn(self, coro) -> asyncio.Task:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    def _require_running(self) -> None:
        if not self._running:
            raise RuntimeError("engine: not running (call start(), and not after stop())")

    # ------------------------------------------------------------------------ inputs
    async def on_price(self, underlying: str, price: float, ts_ns: int | None = None) -> None:
        """A new underlying price: re-mark and requote that underlying.

        Raises ``ValueError`` naming the field for an unknown underlying, a non-finite or
        non-positive price or a negative / non-integer ``ts_ns``; nothing changes then.
        """
        st = self._u.get(underlying) if isinstance(underlying, str) else None
        if st is None:
            raise ValueError(f"underlying: unknown underlying {underlying!r}")
        if isinstance(price, bool) or not isinstance(price, int | float | np.floating):
            raise ValueError(f"price: must be a finite number > 0, got {price!r}")
        p = float(price)
        if not (math.isfinite(p) and p > 0):
            raise ValueError(f"price: must be finite and > 0, got {price!r}")
        if ts_ns is not None and (type(ts_ns) is not int or ts_ns < 0):
            raise ValueError(f"ts_ns: must be None or an int >= 0 (ns), got {ts_ns!r}")
        self._require_running()
        st.price = p
        st.price_ts = ts_ns
        self._stats["ticks"] += 1
        self._publish(PriceUpdated(underlying=underlying, price=p, exchange_ts_ns=ts_ns))
        await self._refresh(st)

    async def on_surface(self, update: Any) -> None:
        """A new implied-vol grid (:class:`jaxmm.feeds.SurfaceUpdate`) for one underlying:
        stored (received now, by the engine clock) and the underlying requoted if it has a
        price. ``ValueError`` for an unknown underlying or a wrong type; nothing changes."""
        from ..feeds import SurfaceUpdate

        if not isinstance(update, SurfaceUpdate):
            raise ValueError(f"update: expected a SurfaceUpdate, got {type(update).__name__}")
        st = self._u.get(update.underlying)
        if st is None:
            raise ValueError(f"update.underlying: unknown underlying {update.underlying!r}")
        self._require_running()
        st.surface = update
        st.surface_recv_ns = self._clock()
        self._stats["surfaces"] += 1
        if st.price is not None:
            await self._refresh(st)
            self._scan_arbitrage(st)

    def _scan_arbitrage(self, st: _Underlying) -> list:
        """Calendar and butterfly arbitrage on the live books of ``st``'s options
        (:func:`jaxmm.engine.find_arbitrage` at executable prices, ``arb_fee`` per unit,
        ``arb_min_edge``), published as ``ArbitrageSignal`` events: the same structure
        (kind and legs) at most once per ``arb_signal_interval_s`` unless its edge grew by
        more than 50 %. Returns the signals published. A failure raises an alert only."""
        from ._arb import BookQuote, find_arbitrage, publish_signals

        if st.price is None or st.status in ("STALE", "WAITING"):
            return []
        try:
            quotes = []
            for i, sym in enumerate(st.symbols):
                t = float(st.expiry[i])
                if t <= 0:
                    continue
                bb, _, ba, _ = self.exchange.book(sym).top()
                if bb is None and ba is None:
                    continue
                quotes.append(
                    BookQuote(
                        sym, float(st.strike[i]), t, bool(st.is_call[i]),
                        None if bb is None else st.px(bb), None if ba is None else st.px(ba),
                    )
                )  # fmt: skip
            cfg = st.cfg
            opps = find_arbitrage(
                quotes, spot=st.price, rate=cfg.rate, dividend=cfg.dividend,
                fee=self.config.arb_fee, min_edge=self.config.arb_min_edge,
            )  # fmt: skip
        except ValueError as e:
            self._alert("warning", "arbitrage_scan_failed", f"{st.symbol}: {e}")
            return []
        now = self._now_s()
        interval = self.config.arb_signal_interval_s
        fresh = []
        for o in opps:
            key = (o.kind, tuple(leg.symbol for leg in o.legs))
            last = self._arb_sent.get(key)
            if last is None or now - last[0] >= interval or o.edge > 1.5 * last[1]:
                self._arb_sent[key] = (now, o.edge)
                fresh.append(o)
        if len(self._arb_sent) > 10_000:
            self._arb_sent = dict(list(self._arb_sent.items())[-5_000:])
        return publish_signals(fresh, self.events, st.symbol) if fresh else []

    async def run(self, feed: Any, *, max_ticks: int | None = None) -> None:
        """Consume a :class:`jaxmm.feeds.MarketDataFeed` (prices and surfaces) until its price
        stream ends or ``max_ticks`` prices were handled. Bad feed input raises an alert and
        is skipped (the loop keeps running). Starts the engine if needed; does not stop it."""
        if max_ticks is not None and (type(max_ticks) is not int or max_ticks < 0):
            raise ValueError(f"max_ticks: must be None or an int >= 0, got {max_ticks!r}")
        await self.start()
        done = asyncio.Event()

        async def surfaces() -> None:
            async for upd in feed.surfaces():
                try:
                    await self.on_surface(upd)
                except ValueError as e:
                    self._alert("warning", "bad_feed_input", str(e))

        async def prices() -> None:
            n = 0
            try:
                if max_ticks == 0:
                    return
                async for p in feed.prices():
                    try:
                        await self.on_price(p.underlying, p.price, p.exchange_ts_ns)
                    except ValueError as e:
                        self._alert("warning", "bad_feed_input", str(e))
                    n += 1
                    if max_ticks is not None and n >= max_ticks:
                        return
            finally:
                done.set()

        ts = asyncio.create_task(surfaces())
        tp = asyncio.create_task(prices())
        try:
            await done.wait()
            await tp
        finally:
            for t in (ts, tp):
                t.cancel()
            for t in (ts, tp):
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    # ------------------------------------------------------------------------ the tick
    def _quoting_halted(self, st: _Underlying) -> bool:
        return (
            self._killed
            or self._store_halted
            or not self.config.controls.quoting_enabled
            or not st.grm.quoting_allowed
            or not self.total_breaker.allows_trading
        )

    async def _refresh(self, st: _Underlying) -> None:
        async with st.lock:
            await self._refresh_locked(st)
        self.tick_event.set()
        if not self._killed and self._running:
            await self._hedge(st)

    def _quote_inputs(self, st: _Underlying, state, enabled, now: int, chain=None):
        """Fill ``state`` and ``chain`` (default ``st.chain``) for a requote of ``st`` at its
        price and surface; returns the chain, the aged expiries and the chain's vols."""
        spot = st.price
        s = st.surface
        elapsed = max(now - self._t_start, 0) / NS_PER_YEAR
        expiry = st.expiry0 - elapsed
        vols = interpolate_surface(
            s.expiries, s.strikes, s.vols, s.forward, spot, st.strike, expiry
        )
        n = st.n
        chain = st.chain if chain is None else chain
        chain[:n, 1] = expiry
        chain[:n, 3] = vols
        chain[:n, 5] = st.pos
        chain[:n, 6] = enabled
        state[_I_SPOT] = spot
        state[_I_DELTA] = float(st.under_qty)
        return chain, expiry, vols

    async def _refresh_locked(self, st: _Underlying) -> None:
        t0 = time.perf_counter_ns()
        now = self._clock()
        if st.price is None:
            st.status = "WAITING"
            return
        stale_ns = self.config.stale_surface_s * 1e9
        if st.surface is None or now - st.surface_recv_ns > stale_ns:
            if st.status != "STALE":
                why = "no surface" if st.surface is None else "surface older than stale_surface_s"
                self._alert("warning", "stale_surface", f"{st.symbol}: {why}; quotes pulled")
            st.status = "STALE"
            await self._pull(st.symbol)
            return
        if self.config.allocation.mode != "none":
            self._maybe_rebalance(now, st)
        spot = st.price
        state = st.state
        chain, st.expiry, vols = self._quote_inputs(st, state, st.enabled, now)
        halted = self._quoting_halted(st)
        state[_I_KILL] = 1.0 if halted else 0.0
        out_j, agg_j = remark_and_quote(state, chain)
        out = np.asarray(out_j)[: st.n]
        # --- risk re-mark, once per tick (never frozen at fill time), and PnL attribution
        d, g, v, th = (out[:, _OUT[k]] for k in _GREEKS)
        ok = np.isfinite(d) & np.isfinite(g) & np.isfinite(v) & np.isfinite(th)
        dl, gl, vl, tl = d.tolist(), g.tolist(), v.tolist(), th.tolist()
        unit = {
            sym: (dl[i], gl[i], vl[i], tl[i]) for i, sym in enumerate(st.symbols) if ok[i]
        }  # fmt: skip
        self._attribute(st, spot, vols, out, now)
        st.grm.update_market({st.symbol: spot}, unit, now / 1e9)
        st.out = out
        st.vols = vols
        self._step_total_breaker(now)
        halted = self._quoting_halted(st)  # the re-mark may have tripped a breaker
        st.status = "HALTED" if halted else "OK"
        # --- targets: ticks and lots (non-finite / out-of-range -> not quoted, with a reason)
        targets, st.reason = self._targets(st, out, halted)
        # --- order diff, batched post-trade checks, one batch to the venue
        await self._send(st, targets)
        self.latency.stop("refresh", t0)

    def _targets(
        self, st: _Underlying, out: np.ndarray, halted: bool, total_limits: Any = None
    ) -> tuple[dict[str, QuoteTarget], list[str]]:
        """Quote targets in ticks and lots, and per option the reason it is not quoted
        although the model quoted it ("" = none): a non-finite price (``PRICE_NOT_FINITE``),
        a price beyond 2^53 ticks (``PRICE_OUT_OF_RANGE``) or a non-finite size or one beyond
        2^53 lots (``SIZE_OUT_OF_RANGE``). Pure: nothing changes."""
        tick, lot = st.tick, st.lot
        status = out[:, _OUT["status"]]
        bid_sz = out[:, _OUT["bid_size"]]
        ask_sz = out[:, _OUT["ask_size"]]
        caps = self._total_caps(st, out, total_limits)
        if caps is not None:
            bid_sz = np.minimum(bid_sz, caps[0])
            ask_sz = np.minimum(ask_sz, caps[1])
        live = (status == _OK) & (not halted)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            bt_f = np.rint(out[:, _OUT["bid"]] / tick)
            at_f = np.rint(out[:, _OUT["ask"]] / tick)
            bl_f = np.floor(bid_sz / lot + 1e-9)
            al_f = np.floor(ask_sz / lot + 1e-9)
            px_finite = np.isfinite(bt_f) & np.isfinite(at_f)
            px_range = px_finite & (np.abs(bt_f) <= _MAX_TICKS) & (np.abs(at_f) <= _MAX_TICKS)
            sz_ok = (np.abs(bl_f) <= _MAX_LOTS) & (np.abs(al_f) <= _MAX_LOTS)  # False for NaN
        good = live & px_range & sz_ok
        reasons = [""] * st.n
        if not good.all():
            for i in np.flatnonzero(live & ~good).tolist():
                reasons[i] = (
                    "PRICE_NOT_FINITE"
                    if not px_finite[i]
                    else "PRICE_OUT_OF_RANGE"
                    if not px_range[i]
                    else "SIZE_OUT_OF_RANGE"
                )
        bt = np.where(good, bt_f, 0.0).astype(np.int64)
        at = np.where(good, at_f, 0.0).astype(np.int64)
        bl = np.where(good & (bt >= 1), bl_f, 0.0).astype(np.int64)
        al = np.where(good & (at >= 1), al_f, 0.0).astype(np.int64)
        btl, atl, bll, all_ = bt.tolist(), at.tolist(), bl.tolist(), al.tolist()
        targets: dict[str, QuoteTarget] = {}
        for i, sym in enumerate(st.symbols):
            b = _new(Quote, (btl[i], bll[i])) if bll[i] > 0 else None
            a = _new(Quote, (atl[i], all_[i])) if all_[i] > 0 else None
            targets[sym] = _new(QuoteTarget, (b, a))
        return targets, reasons

    # ------------------------------------------------------------------------ total limits
    def _common_factors(self, st: _Underlying) -> tuple[float, float, float, float]:
        """Raw Greeks of ``st`` -> the common currency of the ``"total"`` limits
        (:class:`UnderlyingManager`'s convention, fx = 1): dollar delta ``delta S``, dollar
        gamma ``gamma S^2 / 100``, vega and theta unchanged."""
        s = st.price if st.price is not None else float(st.cfg.spot)
        return (s, s * s / 100.0, 1.0, 1.0)

    def _total_greeks(self) -> list[float]:
        """Total dollar delta, dollar gamma, vega, theta over every underlying."""
        tot = [0.0, 0.0, 0.0, 0.0]
        for st in self._u.values():
            g = st.grm.greeks(st.symbol)
            f = self._common_factors(st)
            for j, k in enumerate(_GREEKS):
                tot[j] += g[k] * f[j]
        return tot

    def _total_utilisation(self, lim: dict | None = None) -> dict[str, float]:
        lim = self.config.limits.get("total", {}) if lim is None else lim
        tot = dict(zip(_GREEKS, self._total_greeks(), strict=True))
        return {
            k: (abs(tot[k]) / lim[k] if lim[k] > 0 else (0.0 if tot[k] == 0 else 1e300))
            for k in _GREEKS
            if k in lim
        }

    def _step_total_breaker(self, now_ns: int) -> None:
        util = self._total_utilisation()
        self.total_breaker.update(now_ns / 1e9, {f"total.{k}": v for k, v in util.items()})

    def _on_total_breaker(self, ev: BreakerEvent) -> None:
        self._publish(
            CircuitBreakerTripped(
                breaker=ev.breaker, from_state=ev.old.value, to_state=ev.new.value,
                reason=ev.reason[:500],
            )
        )  # fmt: skip
        if ev.new is BreakerState.TRIPPED:
            self._alert("critical", "greeks_limit", f"total limits: {ev.reason}"[:1000])
            for st in self._u.values():
                st.status = "HALTED"
                self._pull_now(st)

    def _total_caps(
        self, st: _Underlying, out: np.ndarray, lim: Any = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        lim = self.config.limits.get("total") if lim is None else lim
        if not lim:
            return None
        tot = self._total_greeks()
        f = self._common_factors(st)
        caps = [np.full(st.n, np.inf), np.full(st.n, np.inf)]
        with np.errstate(over="ignore", invalid="ignore"):
            for j, k in enumerate(_GREEKS):
                if k not in lim:
                    continue
                L = lim[k] * (1.0 - 1e-8)
                a = tot[j]
                c = max(L, abs(a))
                u = out[:, _OUT[k]] * st.mult * f[j]
                for s_i, sign in enumerate((1.0, -1.0)):
                    b = sign * u
                    nz = b != 0
                    safe = np.where(nz, b, 1.0)
                    cap = np.where(
                        nz, np.maximum((c - np.sign(safe) * a) / np.abs(safe), 0.0), np.inf
                    )
                    caps[s_i] = np.minimum(caps[s_i], np.where(np.isfinite(u), cap, 0.0))
        return caps[0], caps[1]

    def _total_allowed(self, st: _Underlying, sym: str, side: PSide, qty: int) -> int:
        """Largest lot multiple <= qty keeping every ``"total"`` limit (post-trade rule)."""
        lim = self.config.limits.get("total")
        if not lim:
            return qty
        unit = st.grm.checker.unit_greeks(sym)
        if unit is None:
            return 0
        tot = self._total_greeks()
        f = self._common_factors(st)
        lot = st.instruments[sym].lot_size
        n = float(qty)
        for j, k in enumerate(_GREEKS):
            if k not in lim:
                continue
            L = lim[k] * (1.0 - 1e-9)
            a = tot[j]
            c = max(L, abs(a))
            b = int(side) * (unit[j] * f[j])
            if b == 0:
                continue
            cap = (c - a) / b if b > 0 else (c + a) / -b
            n = min(n, max(cap, 0.0))
        return int(math.floor(n / lot + 1e-12)) * lot

    # ------------------------------------------------------------------------ allocation
    def _risk_inputs(self, config: MarketMakerConfig | None = None) -> dict[str, Any]:
        """Inputs of :func:`jaxmm.engine._multi.pnl_covariance` / ``pnl_risk`` for the
        engine's books under ``config``: raw position Greeks per underlying (zero before the
        books exist), spots (last price, else the configured spot), the quote parameters'
        ``underlying_vol``, ``vol_of_vol``, ``spot_vol_corr`` and the correlation in use;
        horizon one day, fx 1 (the ``"total"`` limits' common currency)."""
        config = self.config if config is None else config
        if self._factor_cache[0] is not config:
            ps = [config.quote_params(u.symbol) for u in config.underlyings]
            col = lambda f: np.array([float(np.asarray(getattr(p, f))) for p in ps])
            self._factor_cache = (
                config, col("underlying_vol"), col("vol_of_vol"), col("spot_vol_corr"),
                config.correlation_matrix(),
            )  # fmt: skip
        _, sig, nu, rsv, corr = self._factor_cache
        books = getattr(self, "_u", {})
        greeks, spot = [], []
        for u in config.underlyings:
            st = books.get(u.symbol)
            g = st.grm.greeks(u.symbol) if st is not None else dict.fromkeys(_GREEKS, 0.0)
            greeks.append([g[k] for k in _GREEKS])
            price = st.price if st is not None else None
            spot.append(price if price is not None else float(u.spot))
        return dict(
            greeks=np.array(greeks, np.float64), spot=np.array(spot), underlying_vol=sig,
            vol_of_vol=nu, spot_vol_corr=rsv, corr=corr, horizon=_RISK_HORIZON,
        )  # fmt: skip

    def _allocation(self, config: MarketMakerConfig) -> dict[str, Any]:
        """Weights and scales of ``config.allocation`` on the current books (pure, except the
        factor cache). ``ValueError`` if the weights cannot be computed."""
        syms = [u.symbol for u in config.underlyings]
        a = config.allocation
        basis = None
        if a.mode == "none":
            return {"weights": None, "scales": dict.fromkeys(syms, 1.0), "basis": None}
        if a.mode == "equal":
            w = equal_weights(len(syms))
        elif a.mode == "target":
            w = target_weights([a.weights[s] for s in syms])
        else:
            f = self._risk_inputs(config)
            if a.mode == "vol_weighted":
                w = inverse_vol_weights(f["underlying_vol"])
            else:  # risk parity; the book basis needs every book to carry risk
                basis, cov = a.basis, None
                if basis == "book":
                    cov = pnl_covariance(**f)
                    if (np.diag(cov) <= 0).any():
                        basis = "notional"
                if basis == "notional":
                    sig = f["underlying_vol"]
                    cov = f["corr"] * np.outer(sig, sig)
                w = risk_parity_weights(cov)
        scales = w / w.max()
        return {
            "weights": dict(zip(syms, w.tolist(), strict=True)),
            "scales": dict(zip(syms, scales.tolist(), strict=True)),
            "basis": basis,
        }

    def _maybe_rebalance(self, now_ns: int, current: _Underlying | None = None) -> None:
        last = self._alloc_last_ns
        if last is None or now_ns - last >= self.config.allocation.rebalance_s * 1e9:
            self._rebalance(now_ns, current)

    def _rebalance(self, now_ns: int, current: _Underlying | None = None) -> bool:
        """Recompute the allocation; when a scale moved, swap every underlying's limits and
        base size (as a config change does), cancel resting quotes that no longer pass the
        post-trade check and requote the other underlyings. True if the scales moved."""
        self._alloc_last_ns = now_ns
        try:
            alloc = self._allocation(self.config)
        except ValueError as exc:
            self._alert("warning", "allocation", f"rebalance failed, weights kept: {exc}")
            return False
        moved = alloc["scales"] != self._alloc["scales"]
        if not moved:
            self._alloc = alloc
            return False
        self._commit(self.config, self._prepare(self.config, dry_run=False, alloc=alloc), alloc)
        for st in self._u.values():
            if st is not current:
                self._guard(st)
                if self._running and st.price is not None:
                    self._spawn(self._refresh(st))
        return True

    # ------------------------------------------------------------------------ post-trade
    def _check(self, st: _Underlying, sym: str, side: BSide, lots: int) -> int:
        """Post-trade check of ``lots`` on one side: the lots that may rest (0 = pull)."""
        inst = st.instruments[sym]
        lot = inst.lot_size
        ps = PSide.BUY if side is BSide.BUY else PSide.SELL
        dec = st.grm.check_order(Order(sym, ps, lots * lot))
        allowed = dec.qty if dec.action is not Action.REJECT else 0
        if allowed > 0:
            allowed = self._total_allowed(st, sym, ps, allowed)
        return allowed // lot

    def _check_batch(self, st: _Underlying, syms: list[str], sides, lots) -> list[int]:
        """:meth:`_check` of many orders of one underlying at once (vectorised NumPy, the
        same decisions, float for float): the checker's position and Greek constraints,
        the breaker's cooldown scaling and the ``"total"`` limits. Limits the vectorised
        path does not cover (notional, per strike / expiry, position overrides), a TRIPPED
        breaker or an instrument without Greeks go one by one through :meth:`_check`.

        ``sides``: +1 buy / -1 sell per order; ``lots``: lots per order."""
        m = len(syms)
        if m == 0:
            return []
        grm = st.grm
        chk = grm.checker
        rl = chk.limits
        state = grm.breaker.state
        units = [chk._unit.get(s) for s in syms]
        if (
            chk._notional_limit is not None
            or rl.max_per_strike is not None
            or rl.max_per_expiry is not None
            or rl.position_overrides
            or not grm._marked
            or state is BreakerState.TRIPPED
            or any(u is None for u in units)
            or any(st.instruments[s].lot_size != st.lot for s in syms)
        ):
            return [
                self._check(st, s, BSide.BUY if sd > 0 else BSide.SELL, lt)
                for s, sd, lt in zip(syms, sides, lots, strict=True)
            ]
        lot = st.lot
        side = np.asarray(sides, np.float64)
        n = np.asarray(lots, np.float64) * lot  # contracts
        q = np.array([chk._qty[s] for s in syms], np.float64)
        aq = np.abs(q)
        U = np.array(units, np.float64)  # (m, 4) unit Greeks x multiplier
        cons = []  # (a, b, c) arrays: |a + b n| <= c
        if rl.max_position is not None:
            mp = float(rl.max_position)
            cons.append((q, side, np.where(mp > aq, mp, aq)))
        agg = chk._greeks.get(st.symbol, (0.0, 0.0, 0.0, 0.0))
        for _, j, cl in chk._greek_limits:
            a = float(agg[j])
            c = cl if cl > abs(a) else abs(a)
            cons.append((np.full(m, a), side * U[:, j], np.full(m, c)))

        def passes(k):
            ok = np.ones(m, bool)
            for a, b, c in cons:
                ok &= ~(np.abs(a + b * k) > c)
            return ok

        allowed = n.copy()
        bad = ~passes(n)
        if bad.any():
            n_max = n.copy()
            with np.errstate(divide="ignore", invalid="ignore"):
                for a, b, c in cons:
                    cap = np.where(b > 0, (c - a) / b, (c + a) / -b)
                    hit = (b != 0) & (cap < n)
                    n_max = np.where(hit, np.minimum(n_max, cap), n_max)
            k = np.floor(np.maximum(n_max, 0.0) / lot) * lot
            while True:
                fix = bad & (k > 0) & ~passes(k)
                if not fix.any():
                    break
                k = np.where(fix, k - lot, k)
            allowed = np.where(bad, np.where(k > 0, k, 0.0), n)
        if state is BreakerState.COOLDOWN:
            sc = np.floor(allowed * grm.breaker.size_factor) // lot * lot
            allowed = np.where((allowed > 0) & (sc < allowed), np.where(sc > 0, sc, 0.0), allowed)
        lim = self.config.limits.get("total")
        if lim:
            tot = self._total_greeks()
            f = self._common_factors(st)
            nt = allowed.copy()
            with np.errstate(divide="ignore", invalid="ignore"):
                for j, k_ in enumerate(_GREEKS):
                    if k_ not in lim:
                        continue
                    L = lim[k_] * (1.0 - 1e-9)
                    a = tot[j]
                    c = max(L, abs(a))
                    b = side * (U[:, j] * f[j])
                    cap = np.where(b > 0, (c - a) / b, (c + a) / -b)
                    nt = np.where(b != 0, np.minimum(nt, np.maximum(cap, 0.0)), nt)
            tot_ok = np.floor(nt / lot + 1e-12) * lot
            allowed = np.where(allowed > 0, tot_ok, allowed)
        return (allowed.astype(np.int64) // lot).tolist()

    async def _send(self, st: _Underlying, targets: dict[str, QuoteTarget]) -> None:
        qm = self.qm
        actions = qm.plan(targets)
        if not actions:
            return
        touched: dict[str, QuoteTarget] = {}
        checks: list = []  # (action, side index, lots) of every NEW / MODIFY
        for a in actions:
            if a.kind == "cancel":
                touched[a.symbol] = targets[a.symbol]
                continue
            side_i = int(a.side)
            if a.qty is not None:
                lots = a.qty
            else:
                mo = qm.live(a.symbol, a.side)
                lots = (mo.qty - mo.filled) if mo is not None else targets[a.symbol][side_i][1]
            checks.append((a, side_i, lots))
        allowed = self._check_batch(
            st,
            [c[0].symbol for c in checks],
            [1 if c[1] == 0 else -1 for c in checks],
            [c[2] for c in checks],
        )
        for (a, side_i, lots), ok in zip(checks, allowed, strict=True):
            tgt = touched.get(a.symbol, targets[a.symbol])
            if ok < lots:
                q = _new(Quote, (tgt[side_i][0], ok)) if ok > 0 else None
                tgt = tgt._replace(bid=q) if side_i == 0 else tgt._replace(ask=q)
            touched[a.symbol] = tgt
        rep = await self._apply_quotes(touched)
        if rep.actions:
            self._stats["requotes"] += 1
            self._stats["orders_sent"] += len(rep.actions)
        self._stats["rejects"] += len(rep.rejected)
        self._publish_quotes(st, {a.symbol for a in rep.actions})

    def _publish_quotes(self, st: _Underlying, symbols) -> None:
        if not symbols:
            return
        theo = st.out[:, _OUT["theo"]].tolist() if st.out is not None else None
        live = self.qm.live
        lot = st.lot
        index = st.index
        px = st.px
        publish = self.events.publish
        # one burst: a consumer holding its later events sends them when the loop ends
        with self.events.burst():
            for sym in symbols:
                b = live(sym, BSide.BUY)
                a = live(sym, BSide.SELL)
                th = theo[index[sym]] if theo is not None else None
                if th is not None and not math.isfinite(th):
                    th = None
                bid = None if b is None else px(b.price)
                ask = None if a is None else px(a.price)
                # validated construction: pydantic-core validates these fields in ~4 us, while
                # model_construct (defaults resolved in Python) measured 7-19 us per event here
                publish(
                    QuoteUpdated(
                        instrument=sym,
                        bid=bid,
                        ask=ask,
                        bid_size=0.0 if b is None else float((b.qty - b.filled) * lot),
                        ask_size=0.0 if a is None else float((a.qty - a.filled) * lot),
                        theo=th,
                    )
                )

    async def _pull(self, underlying: str) -> None:
        """Cancel every resting quote of one underlying (through the quote manager)."""
        st = self._u[underlying]
        slots = self.qm._slots
        pull = {s: QuoteTarget(None, None) for s in st.symbols if s in slots}
        if not pull or self.connector is None:
            return
        rep = await self._apply_quotes(pull)
        self._stats["orders_sent"] += len(rep.actions)
        self._publish_quotes(st, {a.symbol for a in rep.actions})

    def _cancel_now(self, st: _Underlying, sym: str, side: BSide) -> bool:
        """Synchronous cancel of one working quote (inside a fill or breaker callback)."""
        mo = self.qm.live(sym, side)
        if mo is None or mo.state not in _WORKING or self.connector is None:
            return False
        om = self.qm.om
        try:
            req = om.request_cancel(mo.client_id)
            ack = self.connector.cancel_now(req.symbol, req.order_id)
            om.on_cancel_ack(mo.client_id, ack)
        finally:
            self._quote_epoch += 1
        return True

    async def _apply_quotes(self, targets: dict[str, QuoteTarget]) -> Any:
        """``qm.apply`` with the quotes() cache invalidated on both sides of it: the quote
        manager changes its orders synchronously before its first await and after its last."""
        self._quote_epoch += 1
        try:
            return await self.qm.apply(self.connector, targets)
        finally:
            self._quote_epoch += 1

    def _on_order_update(self, report: Any) -> None:
        """A pushed order status report of ours: into the quote manager's orders."""
        try:
            self.qm.om.on_order_update(report)
        finally:
            self._quote_epoch += 1

    def _pull_now(self, st: _Underlying) -> None:
        changed = set()
        for sym in st.symbols:
            for side in (BSide.BUY, BSide.SELL):
                if self._cancel_now(st, sym, side):
                    changed.add(sym)
        self._stats["orders_sent"] += len(changed)
        self._publish_quotes(st, changed)

    def _guard(self, st: _Underlying, filled: str | None = None) -> None:
        """After a fill: every resting quote of the underlying must still pass the post-trade
        check in full on the new state; one that does not is cancelled now. ``filled`` (the
        option just filled) gets a ``QuoteUpdated`` in any case: its open size changed."""
        slots = self.qm._slots
        resting: list[tuple[str, BSide, int]] = []
        for sym in st.symbols:
            if sym not in slots:
                continue
            for side in (BSide.BUY, BSide.SELL):
                mo = self.qm.live(sym, side)
                if mo is None or mo.state not in _WORKING:
                    continue
                lots = mo.qty - mo.filled
                if lots > 0:
                    resting.append((sym, side, lots))
        allowed = self._check_batch(
            st,
            [r[0] for r in resting],
            [1 if r[1] is BSide.BUY else -1 for r in resting],
            [r[2] for r in resting],
        )
        changed = {filled} if filled is not None else set()
        for (sym, side, lots), ok in zip(resting, allowed, strict=True):
            if ok < lots and self._cancel_now(st, sym, side):
                changed.add(sym)
                self._stats["guard_cancels"] += 1
        self._publish_quotes(st, changed)

    # ------------------------------------------------------------------------ attribution
    def _attribute(self, st: _Underlying, spot: float, vols: np.ndarray, out, now: int) -> None:
        """Greek PnL attribution of the positions held between the previous mark and this one:
        Taylor terms at the previous mark (``delta dS``, ``gamma dS^2 / 2``, ``vega dsigma``,
        ``theta dt``) and the full revaluation ``actual`` (theo at this mark minus theo at the
        previous one), the same split as :func:`jaxmm.portfolio.pnl_attribution`."""
        prev = st.mark
        st.mark = (spot, vols.copy(), out.copy(), now)
        if prev is None:
            return
        s0, vol0, out0, t0 = prev
        a = self._attr[st.symbol]
        ds = spot - s0
        under = float(st.under_qty)
        a["delta"] += under * ds
        a["actual"] += under * ds
        units = st.pos * st.mult
        held = units != 0
        if not held.any():
            return
        u = units[held]
        o0 = out0[held]
        dsig = vols[held] - vol0[held]
        dt = max(now - t0, 0) / NS_PER_YEAR
        a["delta"] += float(np.sum(u * o0[:, _OUT["delta"]] * ds))
        a["gamma"] += float(np.sum(u * 0.5 * o0[:, _OUT["gamma"]] * ds * ds))
        a["vega"] += float(np.sum(u * o0[:, _OUT["vega"]] * dsig))
        a["theta"] += float(np.sum(u * o0[:, _OUT["theta"]] * dt))
        a["actual"] += float(np.sum(u * (out[held, _OUT["theo"]] - o0[:, _OUT["theo"]])))

    # ------------------------------------------------------------------------ fills
    def _on_fill(self, rep: FillReport) -> None:
        """Every fill of our orders, pushed by the venue (synchronous; never awaits)."""
        key = rep.key
        if key in self._seen:
            return
        self._seen[key] = None
        if len(self._seen) > 200_000:
            self._seen.popitem(last=False)
        st = self._owner.get(rep.symbol)
        if st is None:
            return
        sym = rep.symbol
        is_under = sym == st.symbol
        self._quote_epoch += 1  # open sizes (and positions) change; nothing here awaits
        if not is_under:
            self.qm.om.on_fill(rep)
        inst = st.instruments[sym]
        qty = rep.qty * inst.lot_size
        book = self.exchange.book(sym)
        price = book.instrument.ticks_to_price(rep.price)
        side = PSide.BUY if rep.side is BSide.BUY else PSide.SELL
        now_ns = self._clock()
        fill = Fill(sym, side, qty, price, fee=rep.fee, ts=now_ns / 1e9)
        if is_under:
            theo = st.price if st.price is not None else float(price)
            st.under_qty += int(side) * qty
            self._stats["hedge_fills"] += 1
            k = (sym, rep.order_id)
            self._hedge_fills[k] = self._hedge_fills.get(k, 0) + rep.qty
            self._hedge_event.set()
        else:
            i = st.index[sym]
            theo = float(st.out[i, _OUT["theo"]]) if st.out is not None else float(price)
            st.pos[i] += int(side) * qty
            self._stats["fills"] += 1
        self._spread[st.symbol] += (theo - float(price)) * int(side) * qty * inst.multiplier
        st.grm.on_fill(
            fill, now_ns / 1e9, order_id=str(rep.order_id), trade_id=str(rep.trade_id), theo=theo
        )
        self._step_total_breaker(now_ns)
        self._store_fill(rep, sym, side, qty, price, theo, now_ns)
        if not is_under:
            self._guard(st, filled=sym)
        self._schedule_hedge(st)

    def _schedule_hedge(self, st: _Underlying) -> None:
        if st.hedge_scheduled or not self._running or self._killed:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        st.hedge_scheduled = True

        async def go() -> None:
            st.hedge_scheduled = False
            await self._hedge(st)

        self._spawn(go())

    async def _hedge(self, st: _Underlying) -> None:
        """Send the delta hedge of one underlying (IOC market order in its book), one at a
        time; waits until the hedge's fills are applied so it never hedges twice."""
        if self.connector is None:
            return
        async with st.hedge_lock:
            if self._killed or not self._running:
                return
            for h, dec in st.grm.hedges():
                if dec.qty <= 0:
                    continue
                lots = dec.qty // st.instruments[st.symbol].lot_size
                side = BSide.BUY if h.side is PSide.BUY else BSide.SELL
                req = OrderRequest(st.symbol, side, lots, None, OrderType.MARKET, TimeInForce.IOC)
                ack = await self.connector.submit(req)
                self._stats["hedges"] += 1
                if not ack.accepted or not ack.filled:
                    continue
                k = (st.symbol, ack.order_id)
                if self.simulated_time:
                    # no wall-clock deadline: yield to the loop a bounded number of times
                    # (the in-process venue reports fills before submit returns)
                    for _ in range(100):
                        if self._hedge_fills.get(k, 0) >= ack.filled:
                            break
                        await asyncio.sleep(0)
                else:
                    deadline = time.monotonic() + 1.0
                    while self._hedge_fills.get(k, 0) < ack.filled and time.monotonic() < deadline:
                        self._hedge_event.clear()
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(self._hedge_event.wait(), 0.05)
                self._hedge_fills.pop(k, None)

    # ------------------------------------------------------------------------ store
    def _store_fill(self, rep, sym, side, qty, price, theo, now_ns) -> None:
        if self._writer is None:
            return
        from ..store import FillRecord

        t = Decimal(repr(theo)) if math.isfinite(theo) and theo > 0 else None
        rec = FillRecord(
            trade_id=f"{self.session_id}:{sym}:{rep.trade_id}:{rep.order_id}",
            order_id=f"{self.session_id}:{sym}:{rep.order_id}",
            instrument=sym,
            side="buy" if side is PSide.BUY else "sell",
            price=price,
            quantity=qty,
            fee=rep.fee,
            exchange_ts_ns=int(rep.ts),
            local_ts_ns=int(now_ns),
            theo=t,
            edge=None if t is None else (t - price) * int(side),
        )
        self._last_fill = (rec.order_id, rec.trade_id, None)
        if self._backlog:
            self._backlog.append(rec)
            return
        self._submit_record(rec)

    def _submit_record(self, rec) -> bool:
        from ..store import WriterBackpressure

        try:
            fut = self._writer.submit(rec)
        except WriterBackpressure:
            self._backlog.append(rec)
            self._on_backpressure()
            return False
        self._acks.add(fut)
        fut.add_done_callback(lambda f, r=rec: self._on_ack(f, r))
        if self._last_fill is not None and self._last_fill[1] == rec.trade_id:
            self._last_fill = (rec.order_id, rec.trade_id, fut)
        return True

    def _on_ack(self, fut: asyncio.Future, rec) -> None:
        self._acks.discard(fut)
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self._alert("critical", "store_write_failed", f"fill {rec.trade_id}: {exc}")
            return
        self._stats["fills_acked"] += 1
        self.acked_trade_ids.append(rec.trade_id)

    def _on_backpressure(self) -> None:
        if self._store_halted:
            return
        self._store_halted = True
        self._alert(
            "critical",
            "store_backpressure",
            "fill writer queue full: quoting halted until the store catches up (no fill dropped)",
        )
        for st in self._u.values():
            self._pull_now(st)
            st.status = "HALTED"
        if self._running:
            self._spawn(self._drain_backlog())

    def _drain_backlog_once(self) -> None:
        from ..store import WriterBackpressure

        while self._backlog:
            rec = self._backlog[0]
            try:
                fut = self._writer.submit(rec)
            except WriterBackpressure:
                return
            self._backlog.popleft()
            self._acks.add(fut)
            fut.add_done_callback(lambda f, r=rec: self._on_ack(f, r))
            if self._last_fill is not None and self._last_fill[1] == rec.trade_id:
                self._last_fill = (rec.order_id, rec.trade_id, fut)

    async def _drain_backlog(self) -> None:
        while self._backlog:
            self._drain_backlog_once()
            if self._backlog:
                await asyncio.sleep(0.01)
        self._store_halted = False
        self._alert("info", "store_backpressure", "fill writer caught up: quoting resumes")

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.snapshot_every_s)
            try:
                await self._snapshot()
            except Exception as e:  # a failed snapshot must not stop the engine
                self._alert("warning", "snapshot_failed", str(e))

    async def _snapshot(self) -> None:
        """Position snapshots (quantity in contracts; realised PnL per unit of multiplier, the
        store's convention) consistent with the fill log up to the last fill applied."""
        from ..store import PositionSnapshot

        if self.store is None:
            return
        last = self._last_fill
        pos = [(i, p) for st in self._u.values() for i, p in st.grm.portfolio.positions.items()]
        if self._backlog:
            return  # the fill log is behind the positions: next time
        last_id = self._base_fill_id
        if last is not None:
            fut = last[2]
            if fut is None:
                return
            with contextlib.suppress(Exception):
                await asyncio.shield(fut)
            rows = await self.store.get_fills(order_id=last[0])
            ids = [r.id for r in rows if r.trade_id == last[1] and r.id is not None]
            if not ids:
                return
            last_id = ids[0]
        ts = self._clock()
        snaps = []
        for iid, p in pos:
            if p.qty == 0 and p.bought == 0:
                continue
            m = Decimal(repr(p.instrument.multiplier))
            snaps.append(
                PositionSnapshot(
                    instrument=iid,
                    quantity=p.qty,
                    avg_price=p.avg_price,
                    realised_pnl=p.realised / m,
                    fees=p.fees,
                    last_fill_id=last_id,
                    ts_ns=ts,
                )
            )
        if snaps:
            await self.store.save_position_snapshot(snaps)

    # ------------------------------------------------------------------------ breaker, kill
    def _on_breaker(self, underlying: str, ev: BreakerEvent) -> None:
        st = self._u.get(underlying)
        if st is None:
            return
        if ev.new is BreakerState.TRIPPED:
            st.status = "HALTED"
            self._pull_now(st)  # a breaker trip cancels the resting quotes at once

    async def kill(self, reason: str = "manual") -> None:
        """Kill switch: cancel every quote in every book, halt all new orders (quotes and
        hedges) until :meth:`resume`; publishes ``CircuitBreakerTripped`` (``kill_switch``)."""
        if not isinstance(reason, str) or not reason:
            raise ValueError(f"reason: must be a non-empty string, got {reason!r}")
        was = self._killed
        self._killed = True
        for st in self._u.values():
            self._pull_now(st)
            st.status = "KILLED"
        if self.connector is not None:
            await self.connector.cancel_all()
        if not was:
            self._publish(
                CircuitBreakerTripped(
                    breaker="kill_switch", from_state="active", to_state="tripped",
                    reason=reason[:500],
                )
            )  # fmt: skip

    async def resume(self) -> None:
        """Lift the kill switch; quoting restarts on the next tick (requoted now if priced)."""
        if not self._killed:
            return
        self._killed = False
        self._publish(
            CircuitBreakerTripped(
                breaker="kill_switch", from_state="tripped", to_state="active", reason="resume"
            )
        )
        if self._running:
            for st in self._u.values():
                if st.price is not None:
                    await self._refresh(st)

    @property
    def killed(self) -> bool:
        """True while the kill switch is on."""
        return self._killed

    # ------------------------------------------------------------------------ configuration
    def set_controls(self, **changes: Any) -> OperatorControls:
        """Change operator controls atomically (validated; a bad value raises ``ValueError``
        naming the field and nothing changes). Applied from the next requote (scheduled now).

        Versioned like :meth:`apply_config`: without a store the engine's version counter
        (:attr:`config_version`) increments and ``ConfigChanged`` is published now; with a
        store the new config is written as a version (author ``"operator"``) by a task
        scheduled now (or by :meth:`start` if the engine is not running yet) and
        ``ConfigChanged`` carries the stored version, so the engine's version is always the
        store's. Use :meth:`update_controls` to wait for the stored version and name the
        author.

        Example:
            >>> mm = OptionsMarketMaker(MarketMakerConfig.demo())
            >>> mm.set_controls(spread_multiplier=2.0).spread_multiplier
            2.0
            >>> mm.config_version
            1
        """
        new, config = self._controls_config(changes)
        prepared = self._prepare(config)  # everything computed before anything changes
        self._commit(config, prepared)
        diff = {"controls": {k: v for k, v in new.model_dump().items() if k in changes}}
        if self.store is None:
            self._version += 1
            self._publish(ConfigChanged(version=self._version, author="operator", changes=diff))
        else:
            self._persist_soon("operator", diff)
        self._requote_all_soon()
        return new

    def _controls_config(self, changes: dict) -> tuple[OperatorControls, MarketMakerConfig]:
        new = OperatorControls.model_validate({**self.config.controls.model_dump(), **changes})
        config = MarketMakerConfig.model_validate(
            {**self.config.model_dump(), "controls": new.model_dump()}
        )
        return new, config

    def _persist_soon(self, author: str, diff: dict) -> None:
        if not self._running:
            return  # start() stores the running config
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return

        async def go() -> None:
            async with self._config_lock:
                try:
                    version = await self._store_running_config(author)
                except Exception as e:  # the store is down: say so, keep quoting
                    self._alert("critical", "config_store_failed", f"config not stored: {e}")
                    return
            self._publish(ConfigChanged(version=version, author=author, changes=diff))

        self._spawn(go())

    async def update_controls(self, author: str = "operator", **changes: Any) -> int:
        """:meth:`set_controls` through :meth:`apply_config`: validated, stored as a version
        by ``author`` when a store is attached, atomic; returns the version.

        Example:
            >>> import asyncio
            >>> mm = OptionsMarketMaker(MarketMakerConfig.demo())
            >>> asyncio.run(mm.update_controls("ops", size_scalar=0.5))
            1
        """
        _, config = self._controls_config(changes)
        return await self.apply_config(config, author)

    async def set_instrument_enabled(
        self, symbol: str, enabled: bool, author: str = "operator"
    ) -> int:
        """Enable or disable quoting of one option (a new config version, as
        :meth:`update_controls`); ``ValueError`` for an unknown option. Returns the version."""
        st = self._owner.get(symbol) if isinstance(symbol, str) else None
        if st is None or symbol == st.symbol:
            raise ValueError(f"symbol: unknown option {symbol!r}")
        if not isinstance(enabled, bool):
            raise ValueError(f"enabled: must be a bool, got {enabled!r}")
        disabled = [s for s in self.config.controls.disabled_instruments if s != symbol]
        if not enabled:
            disabled.append(symbol)
        return await self.update_controls(author, disabled_instruments=disabled)

    def _requote_all_soon(self) -> None:
        if not self._running:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        for st in self._u.values():
            if st.price is not None:
                self._spawn(self._refresh(st))

    async def apply_config(self, config: MarketMakerConfig, author: str) -> int:
        """Switch to a new configuration; returns its version (stored when a store is set).

        The chain (underlyings, strikes, expiries, multiplier, ticks, lots) cannot change while
        running (``ValueError``); limits, quote parameters, controls, hedge bands, timings can.
        Atomic: the new risk state, quote parameters and the new quotes of every priced
        underlying are computed first, then the version is stored, then the engine swaps;
        any failure before the swap leaves the old config running and the store untouched.
        Publishes ``ConfigChanged`` and requotes every underlying.
        """
        if not isinstance(config, MarketMakerConfig):
            raise ValueError(f"config: expected a MarketMakerConfig, got {type(config).__name__}")
        if not isinstance(author, str) or not 0 < len(author) <= 64:
            raise ValueError("author: must be a non-empty string of at most 64 characters")
        frozen = ("symbol", "strikes", "expiries", "multiplier", "tick", "lot",
                  "underlying_tick", "underlying_lot")  # fmt: skip
        old_u = [[getattr(u, f) for f in frozen] for u in self.config.underlyings]
        new_u = [[getattr(u, f) for f in frozen] for u in config.underlyings]
        if old_u != new_u:
            raise ValueError(
                "underlyings: the chain (symbols, strikes, expiries, multiplier, ticks, lots) "
                "cannot change while running; build a new engine"
            )
        async with self._config_lock:
            old, new = self.config.model_dump(mode="json"), config.model_dump(mode="json")
            changes = {k: v for k, v in new.items() if old.get(k) != v}
            alloc = self._allocation(config)  # new weights on the current books
            self._prepare(config, alloc=alloc)  # validate + compute the new quotes
            if self.store is not None:
                version = int(await self.store.put_config(new, author))
            else:
                version = self._version + 1
            # positions may have moved while the store wrote: rebuild from the state now
            # (the same computation that just succeeded), then swap in one synchronous step
            self._commit(config, self._prepare(config, dry_run=False, alloc=alloc), alloc)
            if config.allocation.mode != "none":
                self._alloc_last_ns = self._clock()
            self._version = version
        self._publish(ConfigChanged(version=version, author=author, changes=changes))
        if self._running:
            for st in self._u.values():
                if st.price is not None:
                    await self._refresh(st)
        return version

    def _prepare(
        self, config: MarketMakerConfig, dry_run: bool = True, alloc: dict | None = None
    ) -> dict[str, tuple]:
        """Everything ``config`` needs per underlying (new limits, a limit checker rebuilt
        from the current positions and Greeks, packed quote state, enable mask, hedge rule)
        and, with ``dry_run``, the new quotes of every underlying that has a price and a
        surface (computed and thrown away: proof that the swap cannot fail). Limits and base
        size are scaled by ``alloc`` (default: the allocation in force). Pure."""
        from ..risk import LimitChecker

        out: dict[str, tuple] = {}
        for st in self._u.values():
            grm = st.grm
            cfg = config.underlying(st.symbol)
            lim = config.limits.get(st.symbol, {})
            maxpos = lim.get("max_position")
            limits = RiskLimits(
                max_position=None if maxpos is None else int(maxpos),
                greeks=GreekLimits(**{g: lim[g] for g in _GREEKS if g in lim}),
            )
            scale = (self._alloc if alloc is None else alloc)["scales"][st.symbol]
            limits = _scaled_limits(limits, scale)
            checker = LimitChecker(list(st.instruments.values()), limits)
            for iid in st.instruments:
                q = grm.checker.position(iid)
                if q:
                    checker.on_fill(Fill(iid, PSide.BUY if q > 0 else PSide.SELL, abs(q), 0))
            if grm._marked:
                units = {
                    i: tuple(x / st.instruments[i].multiplier for x in u)
                    for i, u in grm.checker._unit.items()
                    if st.instruments[i].is_option
                }
                checker.update_market({st.symbol: st.price or cfg.spot}, units)
            state, enabled = st.params(config, config.controls, _quote_limits(limits), scale)
            hedge = HedgeConfig(st.symbol, band=cfg.hedge_band)
            out[st.symbol] = (limits, checker, state, enabled, hedge)
            if dry_run and st.price is not None and st.surface is not None:
                trial = state.copy()
                chain, _, _ = self._quote_inputs(st, trial, enabled, self._clock(), st.chain.copy())
                res, _ = remark_and_quote(trial, chain)
                self._targets(st, np.asarray(res)[: st.n], False, config.limits.get("total", {}))
        return out

    def _commit(
        self, config: MarketMakerConfig, prepared: dict[str, tuple], alloc: dict | None = None
    ) -> None:
        """Swap to ``config`` (and ``alloc``, the allocation ``prepared`` was computed with;
        synchronous; nothing in here can fail)."""
        self.config = config
        if alloc is not None:
            self._alloc = alloc
        self.qm.price_tolerance = config.requote_ticks - 1
        for st in self._u.values():
            limits, checker, state, enabled, hedge = prepared[st.symbol]
            grm = st.grm
            grm.checker = checker
            grm.limits = limits
            grm.hedge_config[st.symbol] = hedge
            grm.breaker.threshold = config.breaker_threshold
            grm.breaker.min_halt = config.breaker_cooldown_s
            grm.breaker.cooldown = config.breaker_cooldown_s
            st.commit_params(config, state, enabled)
        tb = self.total_breaker
        tb.threshold = config.breaker_threshold
        tb.min_halt = config.breaker_cooldown_s
        tb.cooldown = config.breaker_cooldown_s

    # ------------------------------------------------------------------------ views
    def _status_name(self, st: _Underlying, i: int) -> str:
        if st.status != "OK" or st.out is None:
            return st.status
        return st.reason[i] or QuoteStatus(int(st.out[i, _OUT["status"]])).name

    def _row(self, st: _Underlying, i: int) -> dict:
        sym = st.symbols[i]
        b = self.qm.live(sym, BSide.BUY)
        a = self.qm.live(sym, BSide.SELL)
        out = st.out
        theo = float(out[i, _OUT["theo"]]) if out is not None else 0.0
        return {
            "symbol": sym,
            "underlying": st.symbol,
            "strike": float(st.strike[i]),
            "expiry": float(st.expiry0[i]),
            "time_to_expiry": float(st.expiry[i]),
            "is_call": bool(st.is_call[i]),
            "bid": 0.0 if b is None else st.px(b.price),
            "ask": 0.0 if a is None else st.px(a.price),
            "bid_size": 0.0 if b is None else float((b.qty - b.filled) * st.lot),
            "ask_size": 0.0 if a is None else float((a.qty - a.filled) * st.lot),
            "theo": theo if math.isfinite(theo) else 0.0,
            "iv": float(st.vols[i]) if out is not None else 0.0,
            "status": self._status_name(st, i),
        }

    def _view_fingerprint(self) -> list[Any]:
        return [self._quote_epoch] + [
            x
            for st in self._u.values()
            for x in (st, st.status, st.out, st.vols, st.expiry, st.reason, st.cfg)
        ]

    def quotes_version(self) -> int:
        """A counter that changes whenever :meth:`quotes` (and the quote part of
        :meth:`chain_view`) would answer differently: any change to our orders, a refresh
        (kernel output, vols, time to expiry, reasons), an underlying's status, a
        configuration change. Equal versions mean equal answers, so a caller may cache what
        it derived from :meth:`quotes` under it (the API caches the JSON bytes).

        Example:
            >>> from jaxmm.engine import MarketMakerConfig, OptionsMarketMaker
            >>> mm = OptionsMarketMaker(MarketMakerConfig.demo())
            >>> v = mm.quotes_version()
            >>> mm.quotes_version() == v, mm.quotes() == mm._quotes_fresh()
            (True, True)
        """
        fp = self._view_fingerprint()
        old = self._view_fp
        same = len(fp) == len(old)
        if same:
            for a, b in zip(fp, old, strict=True):
                if a is not b and not (type(a) in (str, int) and a == b):
                    same = False
                    break
        if not same:
            self._view_fp = fp  # holding the objects keeps their identities unique
            self._view_version += 1
            self._view_rows = {}
        return self._view_version

    def _rows_of(self, st: _Underlying) -> list[dict]:
        """Every row of one underlying, cached until :meth:`quotes_version` changes."""
        self.quotes_version()
        rows = self._view_rows.get(st.symbol)
        if rows is None:
            rows = self._view_rows[st.symbol] = [self._row(st, i) for i in range(st.n)]
        return rows

    def _quotes_fresh(
        self, underlying: str | None = None, expiry: float | None = None, symbol: str | None = None
    ) -> list[dict]:
        """:meth:`quotes` computed from scratch (no cache; the reference of the tests)."""
        if symbol is not None:
            st = self._owner.get(symbol)
            if st is None or symbol == st.symbol:
                raise ValueError(f"symbol: unknown option {symbol!r}")
            return [self._row(st, st.index[symbol])]
        rows = []
        for st in self._sel(underlying):
            for i in range(st.n):
                if expiry is not None and not same_expiry(st.expiry0[i], expiry):
                    continue
                rows.append(self._row(st, i))
        return rows

    def _sel(self, underlying: str | None) -> list[_Underlying]:
        if underlying is None:
            return list(self._u.values())
        st = self._u.get(underlying)
        if st is None:
            raise ValueError(f"underlying: unknown underlying {underlying!r}")
        return [st]

    def quotes(
        self, underlying: str | None = None, expiry: float | None = None, symbol: str | None = None
    ) -> list[dict]:
        """Our live quotes (what rests in the books) with theo, implied vol and status; a side
        not quoted has price 0 and size 0. Filters: underlying, expiry (years, as configured),
        symbol. Keys: symbol, underlying, strike, expiry (as configured, years),
        time_to_expiry (years; the expiry shortened by the engine clock since start(), the
        one theo, iv and the Greeks were computed with), is_call, bid, ask (exact tick
        multiples), bid_size, ask_size, theo, iv, status (``OK``, a kernel status such as
        ``DISABLED``, the underlying's ``STALE`` / ``HALTED`` / ``KILLED`` / ``WAITING``, or
        ``PRICE_NOT_FINITE`` / ``PRICE_OUT_OF_RANGE`` / ``SIZE_OUT_OF_RANGE`` when the model
        quote could not be sent). Rows are cached per :meth:`quotes_version`; every call
        returns new dicts."""
        if symbol is not None:
            st = self._owner.get(symbol)
            if st is None or symbol == st.symbol:
                raise ValueError(f"symbol: unknown option {symbol!r}")
            return [dict(self._rows_of(st)[st.index[symbol]])]
        rows = []
        for st in self._sel(underlying):
            cached = self._rows_of(st)
            if expiry is None:
                rows += [dict(r) for r in cached]
                continue
            for i in range(st.n):
                if same_expiry(st.expiry0[i], expiry):
                    rows.append(dict(cached[i]))
        return rows

    def chain_view(self, underlying: str, expiry: float) -> list[dict]:
        """One expiry of one chain, per strike: ``{"strike", "expiry", "time_to_expiry",
        "call": {...}, "put": {...}}`` with bid, ask, bid_size, ask_size, theo, iv, unit delta,
        gamma, vega, theta and status (``expiry`` as configured, ``time_to_expiry`` the one
        theo was computed with; see :meth:`quotes`)."""
        st = self._sel(underlying)[0]
        if not any(same_expiry(t, expiry) for t in st.cfg.expiries):
            raise ValueError(f"expiry: {expiry!r} is not an expiry of {underlying!r}")
        out = []
        cached = self._rows_of(st)
        for i in range(0, st.n, 2):
            if not same_expiry(st.expiry0[i], expiry):
                continue
            row: dict[str, Any] = {
                "strike": float(st.strike[i]),
                "expiry": float(st.expiry0[i]),
                "time_to_expiry": float(st.expiry[i]),
            }
            for j, name in ((i, "call"), (i + 1, "put")):
                r = cached[j]
                d = {k: r[k] for k in ("bid", "ask", "bid_size", "ask_size", "theo", "iv")}
                for g in _GREEKS:
                    x = float(st.out[j, _OUT[g]]) if st.out is not None else 0.0
                    d[g] = x if math.isfinite(x) else 0.0
                d["status"] = r["status"]
                row[name] = d
            out.append(row)
        return out

    def _marks(self, st: _Underlying) -> dict[str, float]:
        """Mark prices: the underlying's last price, each option's finite model theo."""
        marks = {}
        if st.price is not None:
            marks[st.symbol] = st.price
        if st.out is not None:  # one conversion of the column, not one numpy scalar per option
            for s, th in zip(st.symbols, st.out[:, _OUT["theo"]].tolist(), strict=True):
                if math.isfinite(th):
                    marks[s] = max(th, 0.0)
        return marks

    def positions(self) -> list[dict]:
        """Every instrument traded: symbol, quantity (contracts / units), avg_price, realised
        and unrealised PnL (money; unrealised at the model theo, or the last price)."""
        rows = []
        for st in self._u.values():
            marks = self._marks(st)
            for iid, p in st.grm.portfolio.positions.items():
                if p.qty == 0 and p.bought == 0 and p.sold == 0:
                    continue
                m = marks.get(iid)
                unreal = float(p.unrealised(m)) if (m is not None and p.qty) else 0.0
                rows.append(
                    {
                        "symbol": iid,
                        "underlying": st.symbol,
                        "quantity": float(p.qty),
                        "avg_price": float(p.avg_price),
                        "realised": float(p.realised),
                        "unrealised": unreal,
                    }
                )
        return rows

    def greeks(self) -> dict:
        """Position Greeks: ``by_underlying`` and ``by_expiry`` (options only, keyed by expiry
        in years as configured) in raw units (signed quantity x multiplier x the pricing
        kernels' unit Greeks);
        ``total_dollar``: the total across underlyings in the common currency of the
        ``"total"`` limits (``risk()["total_greeks"]``, docs/engine.md): ``dollar_delta``
        (sum of delta x S), ``dollar_gamma`` (sum of gamma x S^2 / 100), ``vega``, ``theta``;
        ``total``: the sum of the raw Greeks, kept for compatibility — it adds deltas of
        different underlyings (mixed units), so it is meaningful for one underlying only."""
        by_u, by_e = {}, {}
        for st in self._u.values():
            by_u[st.symbol] = {k: float(v) for k, v in st.grm.greeks(st.symbol).items()}
            e: dict[float, dict[str, float]] = {}
            for t in st.cfg.expiries:
                sel = np.isclose(st.expiry0, t) & (st.pos != 0)
                vals = {}
                for g in _GREEKS:
                    x = 0.0
                    if st.out is not None and sel.any():
                        x = float(np.sum(st.pos[sel] * st.mult * st.out[sel, _OUT[g]]))
                    vals[g] = x if math.isfinite(x) else 0.0
                e[float(t)] = vals
            by_e[st.symbol] = e
        total = {g: float(sum(v[g] for v in by_u.values())) for g in _GREEKS}
        dollar = self._total_greeks()
        total_dollar = {
            k: float(x) if math.isfinite(x) else 0.0
            for k, x in zip(("dollar_delta", "dollar_gamma", "vega", "theta"), dollar, strict=True)
        }
        return {
            "total": total,
            "total_dollar": total_dollar,
            "by_underlying": by_u,
            "by_expiry": by_e,
        }

    def pnl(self) -> dict:
        """PnL in money: realised, unrealised (at model theo), fees, total = realised +
        unrealised - fees, and its attribution: spread capture (sum over fills of (theo at
        fill - price) x signed qty x multiplier), delta, gamma, vega, theta between re-marks,
        and residual = total + fees - spread - delta - gamma - vega - theta. Also per
        underlying under ``by_underlying``."""
        by_u = {}
        for st in self._u.values():
            pf = st.grm.portfolio
            realised = float(pf.realised())
            fees = float(pf.fees())
            marks = self._marks(st)
            unreal = 0.0
            for iid, p in pf.positions.items():
                if p.qty and iid in marks:
                    unreal += float(p.unrealised(marks[iid]))
            total = realised + unreal - fees
            a = self._attr[st.symbol]
            attr = {
                "spread": self._spread[st.symbol],
                "delta": a["delta"],
                "gamma": a["gamma"],
                "vega": a["vega"],
                "theta": a["theta"],
            }
            attr["residual"] = total + fees - sum(attr.values())
            by_u[st.symbol] = {
                "realised": realised, "unrealised": unreal, "fees": fees, "total": total,
                "attribution": attr,
            }  # fmt: skip
        keys = ("realised", "unrealised", "fees", "total")
        out: dict[str, Any] = {k: float(sum(v[k] for v in by_u.values())) for k in keys}
        akeys = ("spread", "delta", "gamma", "vega", "theta", "residual")
        out["attribution"] = {
            k: float(sum(v["attribution"][k] for v in by_u.values())) for k in akeys
        }
        out["by_underlying"] = by_u
        return out

    def risk(self) -> dict:
        """Limits, utilisation (``|Greek| / limit`` per underlying and ``"total"``; the total
        in the common currency: dollar delta, dollar gamma, vega, theta, docs/engine.md),
        ``total_greeks``, breaker states (per underlying and ``total_breaker``), kill switch,
        the most recent alerts, and ``hedge_suggestions``: per underlying whose gamma or vega
        utilisation exceeds ``hedge_suggest_threshold``, the cheapest lot-rounded pair of
        its listed options that neutralises gamma and vega at the books' live bid / ask
        (:func:`jaxmm.engine.suggest_gamma_vega_hedge`; absent when no pair is solvable).

        Per-underlying ``limits`` (and the utilisation against them) are the limits in force:
        the configured ones times the capital-allocation scale. ``portfolio``: the
        delta-gamma-vega risk of the books over one day across underlyings with the
        configured correlation (docs/multi_underlying.md): ``stdev`` of the one-day PnL,
        ``mean``, ``var`` (``z_0.99 stdev - mean``), ``confidence``, ``horizon`` (years) and
        per underlying its own ``stdev`` and Euler ``contribution``. ``allocation``: ``mode``,
        ``basis`` (risk parity's covariance in use, else None), ``weights`` (None for mode
        ``"none"``), ``scales`` and ``last_rebalance`` (engine clock, seconds; None before
        the first)."""
        limits = {k: dict(v) for k, v in self.config.limits.items()}
        scales = self._alloc["scales"]
        for sym, lim in limits.items():
            if sym != "total" and scales[sym] != 1.0:
                rl = self._u[sym].grm.limits
                for k in lim:
                    x = rl.max_position if k == "max_position" else getattr(rl.greeks, k)
                    lim[k] = float(x)
        util: dict[str, dict[str, float]] = {}
        for st in self._u.values():
            lim = limits.get(st.symbol, {})
            g = st.grm.greeks(st.symbol)
            util[st.symbol] = {
                k: (abs(g[k]) / lim[k] if lim[k] > 0 else (0.0 if g[k] == 0 else 1e300))
                for k in _GREEKS
                if k in lim
            }
        util["total"] = self._total_utilisation()
        total = dict(zip(_GREEKS, self._total_greeks(), strict=True))
        suggestions = {}
        for st in self._u.values():
            s = self._hedge_suggestion(st, util[st.symbol])
            if s is not None:
                suggestions[st.symbol] = s
        pr = pnl_risk(**self._risk_inputs(), confidence=_RISK_CONFIDENCE)
        portfolio = {k: pr[k] for k in ("stdev", "mean", "var", "confidence", "horizon")}
        portfolio["by_underlying"] = {
            sym: {"stdev": float(pr["own"][i]), "contribution": float(pr["contribution"][i])}
            for i, sym in enumerate(self._u)
        }
        last = self._alloc_last_ns
        return {
            "limits": limits,
            "utilisation": util,
            "total_greeks": {
                "dollar_delta": total["delta"],
                "dollar_gamma": total["gamma"],
                "vega": total["vega"],
                "theta": total["theta"],
            },  # fmt: skip
            "total_breaker": self.total_breaker.state.value,
            "hedge_suggestions": suggestions,
            "breakers": {st.symbol: st.grm.breaker.state.value for st in self._u.values()},
            "kill_switch": self._killed,
            "store_halted": self._store_halted,
            "status": {st.symbol: st.status for st in self._u.values()},
            "alerts": list(self._alerts),
            "portfolio": portfolio,
            "allocation": {
                "mode": self.config.allocation.mode,
                "basis": self._alloc["basis"],
                "weights": self._alloc["weights"],
                "scales": dict(scales),
                "last_rebalance": None if last is None else last / 1e9,
            },
        }

    def _hedge_suggestion(self, st: _Underlying, util: dict[str, float]) -> dict | None:
        """A gamma/vega hedge with listed options when gamma or vega utilisation exceeds the
        threshold; candidates: the (at most 24) options nearest the money with a two-sided
        book and finite Greeks, priced at the books' best bid / ask."""
        from ._suggest import ListedOption, suggest_gamma_vega_hedge

        thr = self.config.hedge_suggest_threshold
        if st.out is None or st.price is None:
            return None
        if max(util.get("gamma", 0.0), util.get("vega", 0.0)) <= thr:
            return None
        g = st.grm.greeks(st.symbol)
        if not (math.isfinite(g["gamma"]) and math.isfinite(g["vega"])):
            return None
        order = np.argsort(np.abs(np.log(st.strike / st.price)) + 1e-6 * st.expiry0)
        cands = []
        for i in order.tolist():
            if len(cands) >= 24:
                break
            sym = st.symbols[i]
            bb, _, ba, _ = self.exchange.book(sym).top()
            row = st.out[i]
            d, gm, v = (float(row[_OUT[k]]) for k in ("delta", "gamma", "vega"))
            if bb is None or ba is None or not all(map(math.isfinite, (d, gm, v))):
                continue
            cands.append(ListedOption(st.instruments[sym], st.px(bb), st.px(ba), d, gm, v))
        if len(cands) < 2:
            return None
        s = suggest_gamma_vega_hedge(g["gamma"], g["vega"], cands)
        if s is None:
            return None
        return {
            "pair": list(s.pair),
            "contracts": [float(x) for x in s.contracts],
            "orders": [
                {
                    "symbol": o.instrument,
                    "side": "buy" if o.side is PSide.BUY else "sell",
                    "quantity": float(o.qty),
                }
                for o in s.orders
            ],  # fmt: skip
            "residual_gamma": float(s.residual_gamma),
            "residual_vega": float(s.residual_vega),
            "added_delta": float(s.added_delta),
            "cost": float(s.cost),
            "premium": float(s.premium),
        }

    def surface(self, underlying: str) -> dict:
        """The grid currently used for ``underlying`` (empty lists before the first update)."""
        st = self._sel(underlying)[0]
        s = st.surface
        if s is None:
            return {"underlying": underlying, "expiries": [], "strikes": [], "vols": [],
                    "forward": 0.0, "age_s": 0.0, "status": st.status}  # fmt: skip
        return {
            "underlying": underlying,
            "expiries": list(s.expiries),
            "strikes": list(s.strikes),
            "vols": [list(r) for r in s.vols],
            "forward": s.forward,
            "age_s": max(self._clock() - st.surface_recv_ns, 0) / 1e9,
            "status": st.status,
        }

    def stats(self) -> dict:
        """Counters and the refresh latency (tick in -> orders handed to the venue, µs)."""
        out: dict[str, Any] = {k: float(v) for k, v in self._stats.items()}
        s = self.latency.stats("refresh")
        out["refresh_latency_us"] = {
            "p50": 0.0 if s is None else s.p50 / 1e3,
            "p95": 0.0 if s is None else s.p95 / 1e3,
            "p99": 0.0 if s is None else s.p99 / 1e3,
            "count": 0.0 if s is None else float(s.count),
        }
        out["store_backlog"] = float(len(self._backlog))
        return out
