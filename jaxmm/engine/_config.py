"""Configuration of the options market maker: pydantic v2 models (JSON round trip).

Every model validates on construction and raises ``pydantic.ValidationError`` (a
``ValueError``) whose message names the field and the bound. Units follow MISSION.md: prices
and strikes in currency per one unit of underlying, expiries in years (ACT/365F), limits on
POSITION Greeks in raw units (delta in units of underlying, gamma per unit of spot, vega per
1.00 of vol, theta per year), sizes in contracts.

Option instrument symbols are ``f"{underlying}-{days:04d}D-{strike:g}-{C|P}"`` with
``days = round(expiry x 365)`` (:func:`option_symbol`); the underlying trades in a book named
after its own symbol.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "UnderlyingConfig",
    "OperatorControls",
    "AllocationConfig",
    "MarketMakerConfig",
    "option_symbol",
    "GREEK_LIMIT_KEYS",
    "ENGINE_OWNED_QUOTE_FIELDS",
    "MAX_SPREAD_MULTIPLIER",
    "MAX_SIZE_SCALAR",
    "MAX_DIRECTIONAL_SKEW",
]

#: keys accepted in ``MarketMakerConfig.limits[...]``
GREEK_LIMIT_KEYS: tuple[str, ...] = ("delta", "gamma", "vega", "theta", "max_position")
#: bounds of :class:`OperatorControls` (a value beyond is a ValueError naming the bound)
MAX_SPREAD_MULTIPLIER = 1e3
MAX_SIZE_SCALAR = 1e3
MAX_DIRECTIONAL_SKEW = 1e6
#: QuoteParams fields the engine sets itself (from the underlying and the operator controls)
ENGINE_OWNED_QUOTE_FIELDS: tuple[str, ...] = (
    "tick", "lot", "spread_multiplier", "size_scalar", "directional_skew",
)  # fmt: skip


def option_symbol(underlying: str, expiry: float, strike: float, is_call: bool) -> str:
    """The book symbol of one option: ``UNDERLYING-DDDDD-STRIKE-C|P`` (days = round(T x 365)).

    Example:
        >>> option_symbol("BTC", 30 / 365, 100.0, True)
        'BTC-0030D-100-C'
    """
    days = int(round(expiry * 365.0))
    return f"{underlying}-{days:04d}D-{strike:g}-{'C' if is_call else 'P'}"


def _check_quote_overrides(name: str, quote: dict[str, float]) -> dict[str, float]:
    from ._quote import PARAM_FIELDS

    for k, v in quote.items():
        if k not in PARAM_FIELDS:
            raise ValueError(f"{name}.{k}: unknown QuoteParams field (known: {PARAM_FIELDS})")
        if k in ENGINE_OWNED_QUOTE_FIELDS:
            raise ValueError(
                f"{name}.{k}: set by the engine (tick/lot per underlying, the rest by "
                "OperatorControls), not by quote overrides"
            )
        if not math.isfinite(float(v)):
            raise ValueError(f"{name}.{k}: must be finite, got {v!r}")
    return quote


class UnderlyingConfig(BaseModel):
    """One underlying and its listed chain (``strikes x expiries x (call, put)``).

    Attributes:
        symbol: the underlying's symbol and book name (letters, digits, ``_``, ``.``).
        spot: initial price > 0 (the simulator's start; the engine waits for a price tick).
        strikes: strictly increasing, > 0, currency.
        expiries: strictly increasing, > 0, years ACT/365F; distinct in whole days.
        multiplier: units of underlying per contract, > 0.
        tick: option price increment > 0; ``lot``: option size increment in contracts, >= 1.
        rate, dividend: continuously compounded per year.
        hedge_band: half-width of the delta no-hedge band, units of underlying, >= 0.
        underlying_tick, underlying_lot: the underlying book's price and size increments.
        quote: per-underlying QuoteParams overrides (on top of ``MarketMakerConfig.quote``).
        vol, skew: ATM vol and skew (vol per unit log-moneyness) of the SIMULATED market used
            by :func:`jaxmm.engine.run_simulation`; the engine itself prices only off the
            surface updates it receives.

    Example:
        >>> u = UnderlyingConfig(symbol="XYZ", spot=100.0, strikes=[90.0, 100.0, 110.0],
        ...                      expiries=[0.1], hedge_band=5.0)
        >>> u.tick, u.lot
        (0.01, 1)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_.]+$")
    spot: float = Field(gt=0, allow_inf_nan=False)
    strikes: list[float] = Field(min_length=1)
    expiries: list[float] = Field(min_length=1)
    multiplier: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    tick: float = Field(default=0.01, gt=0, allow_inf_nan=False)
    lot: int = Field(default=1, ge=1)
    rate: float = Field(default=0.0, allow_inf_nan=False)
    dividend: float = Field(default=0.0, allow_inf_nan=False)
    hedge_band: float = Field(ge=0, allow_inf_nan=False)
    underlying_tick: float = Field(default=0.01, gt=0, allow_inf_nan=False)
    underlying_lot: int = Field(default=1, ge=1)
    quote: dict[str, float] = Field(default_factory=dict)
    vol: float = Field(default=0.2, gt=0, allow_inf_nan=False)
    skew: float = Field(default=0.0, allow_inf_nan=False)

    @field_validator("strikes", "expiries")
    @classmethod
    def _increasing(cls, v: list[float], info: Any) -> list[float]:
        for i, x in enumerate(v):
            if not (math.isfinite(x) and x > 0):
                raise ValueError(f"{info.field_name}[{i}]: must be finite and > 0, got {x!r}")
            if i and not x > v[i - 1]:
                raise ValueError(f"{info.field_name}: must be strictly increasing at index {i}")
        return v

    @field_validator("quote")
    @classmethod
    def _quote(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_quote_overrides("quote", v)

    @model_validator(mode="after")
    def _distinct_symbols(self) -> UnderlyingConfig:
        days = [int(round(t * 365.0)) for t in self.expiries]
        if len(set(days)) != len(days) or min(days) < 1:
            raise ValueError(
                f"expiries: must be at least one day and distinct in whole days, got {days}"
            )
        syms = {f"{k:g}" for k in self.strikes}
        if len(syms) != len(self.strikes):
            raise ValueError("strikes: two strikes format to the same symbol ('{:g}')")
        return self

    def symbols(self) -> list[str]:
        """Option symbols in chain order: expiry, then strike, then call before put."""
        return [
            option_symbol(self.symbol, t, k, c)
            for t in self.expiries
            for k in self.strikes
            for c in (True, False)
        ]


class OperatorControls(BaseModel):
    """Operator controls applied to the model quote (see docs/engine.md, "Configuration").

    Attributes:
        spread_multiplier: in ``(0, 1e3]``, multiplies every half-spread.
        size_scalar: in ``[0, 1e3]``, multiplies every size (0 quotes nothing).
        directional_skew: price units of the underlying, ``|skew| <= 1e6``; quotes as if spot
            were ``S + skew``.

    The bounds keep the controls in a sane range; a combination that still produces a
    non-finite or out-of-range price or size leaves that option unquoted with a status
    (``PRICE_NOT_FINITE``, ``PRICE_OUT_OF_RANGE``, ``SIZE_OUT_OF_RANGE``; docs/engine.md).
        quoting_enabled: False pulls every quote (hedging continues).
        disabled_instruments: option symbols not quoted.

    Example:
        >>> OperatorControls(spread_multiplier=2.0).size_scalar
        1.0
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    spread_multiplier: float = Field(
        default=1.0, gt=0, le=MAX_SPREAD_MULTIPLIER, allow_inf_nan=False
    )
    size_scalar: float = Field(default=1.0, ge=0, le=MAX_SIZE_SCALAR, allow_inf_nan=False)
    directional_skew: float = Field(
        default=0.0, ge=-MAX_DIRECTIONAL_SKEW, le=MAX_DIRECTIONAL_SKEW, allow_inf_nan=False
    )
    quoting_enabled: bool = True
    disabled_instruments: list[str] = Field(default_factory=list)


class AllocationConfig(BaseModel):
    """Capital allocation across underlyings in the running engine (docs/multi_underlying.md,
    "Allocation in the running engine").

    Attributes:
        mode: ``"none"`` (every underlying at its configured size and limits), ``"equal"``
            (``w_i = 1/n``), ``"target"`` (``weights``), ``"risk_parity"`` (equal risk
            contribution, :func:`jaxmm.engine.risk_parity_weights`) or ``"vol_weighted"``
            (``w_i ∝ 1 / sigma_i``, ``sigma_i`` = the underlying's ``underlying_vol`` quote
            parameter). Underlying ``i`` runs at ``scale_i = w_i / max_j w_j``: its
            ``base_size`` and all its limits are multiplied by ``scale_i`` (never raised).
        weights: for ``"target"`` only: ``{symbol: w}`` over exactly the configured
            underlyings, ``w >= 0``, summing to 1 within 1e-9.
        basis: for ``"risk_parity"``: ``"book"`` (covariance of the books' one-day PnL; while
            any book carries no risk, e.g. before trading, the notional basis is used) or
            ``"notional"`` (covariance ``rho_ij sigma_i sigma_j`` of one unit of money in
            each underlying).
        rebalance_s: the weights are recomputed at start, on every config change and every
            this many seconds (engine clock), > 0.

    Example:
        >>> AllocationConfig(mode="equal").rebalance_s
        60.0
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["none", "equal", "target", "risk_parity", "vol_weighted"] = "none"
    weights: dict[str, float] | None = None
    basis: Literal["book", "notional"] = "book"
    rebalance_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> AllocationConfig:
        if self.mode == "target":
            if not self.weights:
                raise ValueError("allocation.weights: required for mode 'target'")
        elif self.weights is not None:
            raise ValueError(f"allocation.weights: only for mode 'target' (mode is {self.mode!r})")
        for k, w in (self.weights or {}).items():
            if not (math.isfinite(w) and w >= 0):
                raise ValueError(f"allocation.weights.{k}: must be finite and >= 0, got {w!r}")
        return self


class MarketMakerConfig(BaseModel):
    """The running configuration of :class:`jaxmm.engine.OptionsMarketMaker`.

    Attributes:
        underlyings: at least one, unique symbols.
        quote: :class:`jaxmm.engine.QuoteParams` field overrides (validated against its
            bounds; ``tick``, ``lot`` and the operator-control fields are set by the engine).
        limits: per underlying symbol, or ``"total"``, a dict of limits on position
            ``delta``, ``gamma``, ``vega``, ``theta`` (raw units per underlying) and
            ``max_position`` (contracts per instrument; per underlying only). Missing = none.
            ``"total"`` limits are in the common currency of
            :class:`jaxmm.engine.UnderlyingManager`: ``delta`` is the DOLLAR delta
            ``sum_u delta_u S_u``, ``gamma`` the dollar gamma ``sum_u gamma_u S_u^2 / 100``,
            ``vega`` and ``theta`` the plain sums (already money).
        controls: :class:`OperatorControls`.
        requote_ticks: a resting quote is moved only when its price changes by at least this
            many ticks (size changes are always sent).
        breaker_cooldown_s: the Greeks breaker's minimum halt and cooldown, seconds.
        stale_surface_s: a surface older than this (engine clock, since received) stops
            quoting of its underlying (status STALE).
        snapshot_every_s: position snapshots to the store every this many seconds.
        breaker_threshold: limit utilisation at which the Greeks breaker trips (1 = breach).
        arb_min_edge: an arbitrage signal needs an edge above this (price units per
            structure, after ``arb_fee``); ``arb_fee``: fee per unit of each leg, price units.
        arb_signal_interval_s: the same structure (kind and legs) is signalled at most once
            per this many seconds (engine clock); a signal whose edge grew by more than 50 %
            is sent at once.
        hedge_suggest_threshold: gamma or vega utilisation of an underlying above which
            :meth:`OptionsMarketMaker.risk` carries a gamma/vega hedge suggestion for it.
        correlation: correlation of the underlyings' returns, rows and columns in
            ``underlyings`` order (``None`` = uncorrelated, the identity): square, symmetric,
            unit diagonal, entries in ``[-1, 1]`` and positive semi-definite (tolerance
            1e-10, :func:`jaxmm.risk.validate_correlation`). Used by the portfolio risk of
            :meth:`OptionsMarketMaker.risk` and by risk-parity allocation.
        repair_correlation: a ``correlation`` that is only not PSD is replaced, when used, by
            :func:`jaxmm.risk.nearest_correlation` (Higham 2002) instead of being rejected;
            the config keeps the matrix as given (:meth:`correlation_matrix` is the one used).
        allocation: :class:`AllocationConfig` (default mode ``"none"``: no scaling).

    Example:
        >>> cfg = MarketMakerConfig.demo()
        >>> [u.symbol for u in cfg.underlyings]
        ['BTC', 'SPX']
        >>> MarketMakerConfig.model_validate_json(cfg.model_dump_json()) == cfg
        True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    underlyings: list[UnderlyingConfig] = Field(min_length=1)
    quote: dict[str, float] = Field(default_factory=dict)
    limits: dict[str, dict[str, float]] = Field(default_factory=dict)
    controls: OperatorControls = Field(default_factory=OperatorControls)
    requote_ticks: int = Field(default=1, ge=1)
    breaker_cooldown_s: float = Field(default=60.0, ge=0, allow_inf_nan=False)
    stale_surface_s: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    snapshot_every_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    breaker_threshold: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    arb_min_edge: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    arb_fee: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    arb_signal_interval_s: float = Field(default=5.0, ge=0, allow_inf_nan=False)
    hedge_suggest_threshold: float = Field(default=0.5, ge=0, allow_inf_nan=False)
    correlation: list[list[float]] | None = None
    repair_correlation: bool = False
    allocation: AllocationConfig = Field(default_factory=AllocationConfig)

    @field_validator("quote")
    @classmethod
    def _quote(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_quote_overrides("quote", v)

    @model_validator(mode="after")
    def _check(self) -> MarketMakerConfig:
        names = [u.symbol for u in self.underlyings]
        if len(set(names)) != len(names):
            raise ValueError(f"underlyings: symbols must be unique, got {names}")
        if "total" in names:
            raise ValueError("underlyings: 'total' is reserved for the limits")
        for key, lim in self.limits.items():
            if key != "total" and key not in names:
                raise ValueError(f"limits.{key}: not an underlying symbol or 'total'")
            for g, x in lim.items():
                if g not in GREEK_LIMIT_KEYS or (key == "total" and g == "max_position"):
                    raise ValueError(f"limits.{key}.{g}: unknown limit (known: {GREEK_LIMIT_KEYS})")
                if not (math.isfinite(x) and x >= 0):
                    raise ValueError(f"limits.{key}.{g}: must be finite and >= 0, got {x!r}")
        syms = set(names)
        for u in self.underlyings:
            for s in u.symbols():
                if s in syms:
                    raise ValueError(f"underlyings: symbol {s!r} appears twice")
                syms.add(s)
        for s in self.controls.disabled_instruments:
            if s not in syms:
                raise ValueError(f"controls.disabled_instruments: unknown instrument {s!r}")
        # the merged quote parameters of every underlying must pass QuoteParams' bounds
        for u in self.underlyings:
            self.quote_params(u.symbol)
        self.correlation_matrix()
        if self.allocation.mode in ("vol_weighted", "risk_parity"):
            for u in self.underlyings:
                if not float(self.quote_params(u.symbol).underlying_vol) > 0:
                    raise ValueError(
                        f"allocation.mode: {self.allocation.mode!r} needs underlying_vol > 0 "
                        f"(quote parameter) for every underlying; {u.symbol!r} has 0"
                    )
        w = self.allocation.weights
        if self.allocation.mode == "target":
            if set(w) != set(names):
                raise ValueError(
                    f"allocation.weights: need exactly the underlyings {names}, got {sorted(w)}"
                )
            from ._multi import target_weights

            try:
                target_weights([w[n] for n in names])
            except ValueError as exc:
                raise ValueError(f"allocation.{exc}") from None
        return self

    def correlation_matrix(self) -> Any:
        """The ``(n, n)`` NumPy correlation in use (``underlyings`` order): the identity when
        ``correlation`` is None, else the validated matrix, repaired with
        :func:`jaxmm.risk.nearest_correlation` when it is not PSD and ``repair_correlation``
        is set. ``ValueError`` naming ``correlation`` otherwise.

        Example:
            >>> MarketMakerConfig.demo().correlation_matrix().tolist()
            [[1.0, 0.0], [0.0, 1.0]]
        """
        import numpy as np

        from ..risk import nearest_correlation, validate_correlation

        n = len(self.underlyings)
        if self.correlation is None:
            return np.eye(n)
        rows = [len(r) for r in self.correlation]
        if len(rows) != n or any(k != n for k in rows):
            raise ValueError(
                f"correlation: must be {n} x {n} (one row and column per underlying, in "
                f"underlyings order), got {len(rows)} rows of lengths {rows}"
            )
        try:
            return validate_correlation(self.correlation)
        except ValueError as exc:
            if self.repair_correlation and "positive semi-definite" in str(exc):
                return validate_correlation(nearest_correlation(self.correlation))
            msg = str(exc).removeprefix("corr: ")
            hint = " or set repair_correlation" if "semi-definite" in msg else ""
            raise ValueError(f"correlation: {msg}{hint}") from None

    def underlying(self, symbol: str) -> UnderlyingConfig:
        """The config of one underlying (``ValueError`` naming an unknown symbol)."""
        for u in self.underlyings:
            if u.symbol == symbol:
                return u
        raise ValueError(f"underlying: unknown underlying {symbol!r}")

    def quote_params(self, symbol: str, controls: OperatorControls | None = None) -> Any:
        """The validated :class:`jaxmm.engine.QuoteParams` of one underlying: defaults, then
        ``quote``, then the underlying's ``quote``, then tick/lot and the operator controls."""
        from ._quote import QuoteParams

        u = self.underlying(symbol)
        c = self.controls if controls is None else controls
        kw: dict[str, float] = {"risk_aversion": 1e-3, "fill_k": 10.0}
        kw.update(self.quote)
        kw.update(u.quote)
        kw.update(
            tick=u.tick,
            lot=float(u.lot),
            spread_multiplier=c.spread_multiplier,
            size_scalar=c.size_scalar,
            directional_skew=c.directional_skew,
        )
        return QuoteParams(**kw).validate()

    @classmethod
    def demo(cls) -> MarketMakerConfig:
        """Two underlyings: a crypto-like ``BTC`` (~100, vol 60 %, 3 expiries x 21 strikes)
        and an index-like ``SPX`` (~5000, vol 18 %, 2 expiries x 21 strikes), with Greek
        limits sized so a few fills use a visible part of them and hedging is active."""
        btc = UnderlyingConfig(
            symbol="BTC", spot=100.0, vol=0.6, skew=-0.1,
            strikes=[70.0 + 3.0 * i for i in range(21)],
            expiries=[7 / 365, 30 / 365, 90 / 365],
            tick=0.01, hedge_band=5.0, underlying_tick=0.01,
            quote={"fill_k": 5.0, "risk_aversion": 1e-3, "base_size": 5.0},
        )  # fmt: skip
        spx = UnderlyingConfig(
            symbol="SPX", spot=5000.0, vol=0.18, skew=-0.3,
            strikes=[4500.0 + 50.0 * i for i in range(21)],
            expiries=[30 / 365, 90 / 365],
            tick=0.05, hedge_band=5.0, underlying_tick=0.25,
            quote={"fill_k": 0.5, "risk_aversion": 1e-4, "base_size": 2.0},
        )  # fmt: skip
        return cls(
            underlyings=[btc, spx],
            quote={"underlying_vol": 0.5, "vol_of_vol": 0.5, "gamma_widening": 0.5},
            limits={
                "BTC": {"delta": 100.0, "gamma": 20.0, "vega": 2000.0, "theta": 20000.0},
                "SPX": {"delta": 100.0, "gamma": 1.0, "vega": 20000.0, "theta": 50000.0},
                "total": {"vega": 30000.0, "theta": 60000.0},
            },
            breaker_cooldown_s=5.0,
            stale_surface_s=5.0,
            snapshot_every_s=1.0,
        )
