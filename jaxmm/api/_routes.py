"""The REST routes under ``/api/v1`` (every route, its scope and its errors: ``docs/api.md``).

Scopes: every GET needs ``read`` (``/health`` needs nothing); order entry needs ``trade``;
controls, configuration and start / stop / kill / resume need ``admin``.

Order entry goes into the engine's in-process books through a connector the API owns
(participant ``"api"``, separate from the market maker's own), so an API order can trade with
the market maker's quotes like any other participant's. Its orders are tracked by a
:class:`jaxmm.execution.OrderManager` under API order ids (client ids ``api-1``, ``api-2``, ...
or the caller's ``client_id``).

Nothing is half-applied: every request is validated whole before anything changes, and a
refused engine change (``ValueError``) leaves the engine and the store as they were.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import math
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from pydantic import TypeAdapter

from ..book import OrderType, Side, TimeInForce
from ..engine import MarketMakerConfig, OperatorControls
from ..execution import InProcessConnector, OrderManager, OrderManagerError, OrderRequest
from ._auth import Principal, Scope, require
from ._models import (
    AlertOut,
    ApiError,
    BreakerOut,
    CancelAllIn,
    CancelAllOut,
    ChainExpiry,
    ConfigOut,
    ControlsIn,
    ControlsOut,
    DailyPnlOut,
    EngineAction,
    ErrorBody,
    FillOut,
    FillPage,
    GreeksOut,
    Health,
    InstrumentEnableIn,
    InstrumentEnableOut,
    KillIn,
    OrderIn,
    OrderModifyIn,
    OrderOut,
    PnlOut,
    PositionOut,
    PriceIn,
    PriceOut,
    QuoteOut,
    SurfaceOut,
    VersionInfo,
    error_field,
)

__all__ = ["router", "ApiContext", "API_OWNER"]

API_OWNER = "api"
"""The book owner id of orders sent through the API."""

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing, invalid or expired token"},
    403: {"model": ErrorBody, "description": "the token lacks the route's scope"},
    422: {"model": ErrorBody, "description": "invalid request: the field and the rule"},
    429: {"model": ErrorBody, "description": "rate limit exceeded (see Retry-After)"},
}
_NOT_FOUND = {404: {"model": ErrorBody, "description": "unknown symbol, order or expiry"}}
_CONFLICT = {409: {"model": ErrorBody, "description": "the order is finished or busy"}}

router = APIRouter(prefix="/api/v1", responses=_ERRORS)

READ = Annotated[Principal, Depends(require(Scope.READ))]
TRADE = Annotated[Principal, Depends(require(Scope.TRADE))]
ADMIN = Annotated[Principal, Depends(require(Scope.ADMIN))]


@dataclass
class ApiContext:
    """What the routes share (``app.state.ctx``): the engine, the store, the API's own
    connector and order manager, and a lock serialising the API's changes to the engine."""

    engine: Any
    store: Any = None
    connector: InProcessConnector | None = None
    orders: OrderManager = field(default_factory=OrderManager)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    config_meta: dict[str, Any] = field(default_factory=dict)
    # GET /mm/quotes bodies per (underlying, expiry) filter, valid for one engine quotes_version
    quotes_json: dict[tuple[str | None, float | None], bytes] = field(default_factory=dict)
    quotes_json_version: int | None = None
    # GET /mm/positions body per positions_version(), when the engine is a view snapshot
    positions_json: tuple[int, bytes] | None = None
    _attached: bool = False
    _next_id: int = 0

    async def trading(self) -> tuple[InProcessConnector, OrderManager]:
        """The API's connector on the engine's exchange (made on first use)."""
        if self.connector is None:
            self.connector = InProcessConnector(self.engine.exchange, owner=API_OWNER)
        if not self._attached:
            await self.orders.attach(self.connector)
            self._attached = True
        return self.connector, self.orders

    def new_order_id(self) -> str:
        while True:
            self._next_id += 1
            cid = f"api-{self._next_id}"
            if cid not in self.orders:
                return cid


async def _ctx(request: Request) -> ApiContext:
    # async on purpose: FastAPI runs a plain-def dependency in its thread pool (~100 us of
    # thread hand-off per request, measured on the 2-core benchmark machine)
    return request.app.state.ctx


CTX = Annotated[ApiContext, Depends(_ctx)]


# ---------------------------------------------------------------------------- helpers


def _value_error(exc: ValueError, status: int = 422) -> ApiError:
    """A ``ValueError`` from the library ("field: message") or a pydantic error as 4xx."""
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic.ValidationError
        first = exc.errors()[0]  # type: ignore[attr-defined]
        return ApiError(
            status, error_field(first), first.get("type", "invalid_value"), first["msg"]
        )
    text = str(exc)
    head, sep, _rest = text.partition(": ")
    if sep and head and all(c.isalnum() or c in "_.[]" for c in head):
        return ApiError(status, head, "invalid_value", text)
    return ApiError(status, None, "invalid_value", text)


def _underlyings(engine: Any) -> dict[str, Any]:
    return {u.symbol: u for u in engine.config.underlyings}


def _underlying(engine: Any, symbol: str, field_name: str = "underlying") -> Any:
    u = _underlyings(engine).get(symbol)
    if u is None:
        raise ApiError(404, field_name, "unknown_underlying", f"no underlying {symbol!r}")
    return u


def _option_symbols(engine: Any) -> set[str]:
    return {s for u in engine.config.underlyings for s in u.symbols()}


def _finite(x: Any) -> float:
    v = float(x)
    if not math.isfinite(v):
        raise ApiError(500, None, "internal", "the engine produced a non-finite value")
    return v


def _expiry_key(e: Any) -> str:
    return repr(float(e))


def _controls(engine: Any) -> ControlsOut:
    return ControlsOut.model_validate(engine.config.controls.model_dump())


# ---------------------------------------------------------------------------- service


@router.get("/health", response_model=Health, summary="Liveness (no token needed)")
async def health(request: Request) -> Health:
    auth = "disabled" if request.app.state.settings.auth_disabled else "enabled"
    return Health(status="ok", ts_ns=time.time_ns(), auth=auth)


@router.get("/version", response_model=VersionInfo, summary="Library and API version")
async def version(_: READ) -> VersionInfo:
    try:
        v = metadata.version("jaxmm")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        from .. import __version__ as v
    return VersionInfo(name="jaxmm", version=v, api="v1", python=platform.python_version())


# ---------------------------------------------------------------------------- configuration


async def _config_out(ctx: ApiContext) -> ConfigOut:
    meta = ctx.config_meta
    cfg = ctx.engine.config.model_dump(mode="json")
    if ctx.store is not None:
        latest = await ctx.store.get_config()
        if latest is not None and latest.config == cfg:
            return ConfigOut(
                version=latest.version,
                author=latest.author,
                ts_ns=latest.ts_ns,
                comment=latest.comment,
                config=cfg,
            )
    return ConfigOut(
        version=meta.get("version", 0),
        author=meta.get("author", "startup"),
        ts_ns=meta.get("ts_ns", 0),
        comment=None,
        config=cfg,
    )


@router.get("/mm/config", response_model=ConfigOut, summary="The running configuration")
async def get_config(_: READ, ctx: CTX) -> ConfigOut:
    return await _config_out(ctx)


@router.put(
    "/mm/config",
    response_model=ConfigOut,
    summary="Replace the configuration (validated, versioned; author = token subject)",
)
async def put_config(
    principal: ADMIN,
    ctx: CTX,
    config: Annotated[MarketMakerConfig, Body()],
) -> ConfigOut:
    async with ctx.lock:
        await _apply(ctx, config, principal.subject)
    return await _config_out(ctx)


@router.get(
    "/mm/config/history",
    response_model=list[ConfigOut],
    responses=_NOT_FOUND,
    summary="Every stored configuration version, oldest first",
)
async def config_history(_: READ, ctx: CTX) -> list[ConfigOut]:
    store = _need_store(ctx)
    return [
        ConfigOut(
            version=c.version, author=c.author, ts_ns=c.ts_ns, comment=c.comment, config=c.config
        )
        for c in await store.config_history()
    ]


def _need_store(ctx: ApiContext) -> Any:
    if ctx.store is None:
        raise ApiError(404, None, "no_store", "this service runs without a store")
    return ctx.store


# ---------------------------------------------------------------------------- engine control


async def _apply(ctx: ApiContext, config: MarketMakerConfig, author: str) -> int:
    """``engine.apply_config`` under the API's lock; refusals become 4xx, nothing changes."""
    try:
        version = await ctx.engine.apply_config(config, author=author)
    except ValueError as exc:
        raise _value_error(exc) from None
    except RuntimeError as exc:
        raise ApiError(409, None, "engine_state", str(exc)) from None
    ctx.config_meta = {"version": int(version), "author": author, "ts_ns": time.time_ns()}
    return int(version)


async def _change_controls(ctx: ApiContext, author: str, **changes: Any) -> None:
    """New operator controls as a new configuration version (validated whole first)."""
    engine = ctx.engine
    try:
        controls = OperatorControls.model_validate(
            {**engine.config.controls.model_dump(), **changes}
        )
        config = MarketMakerConfig.model_validate(
            {**engine.config.model_dump(), "controls": controls.model_dump()}
        )
    except ValueError as exc:
        raise _value_error(exc) from None
    await _apply(ctx, config, author)


@router.post(
    "/mm/start",
    response_model=EngineAction,
    summary="Start the engine if needed and enable quoting",
    responses=_CONFLICT,
)
async def start(principal: ADMIN, ctx: CTX) -> EngineAction:
    async with ctx.lock:
        try:
            await ctx.engine.start()
        except RuntimeError as exc:
            raise ApiError(409, None, "engine_state", str(exc)) from None
        if not ctx.engine.config.controls.quoting_enabled:
            await _change_controls(ctx, principal.subject, quoting_enabled=True)
    return EngineAction(action="start", ts_ns=time.time_ns())


@router.post(
    "/mm/stop",
    response_model=EngineAction,
    summary="Stop quoting: pull every quote (hedging continues; the engine keeps running)",
    responses=_CONFLICT,
)
async def stop(principal: ADMIN, ctx: CTX) -> EngineAction:
    async with ctx.lock:
        if ctx.engine.config.controls.quoting_enabled:
            await _change_controls(ctx, principal.subject, quoting_enabled=False)
    return EngineAction(action="stop", ts_ns=time.time_ns())


@router.post(
    "/mm/kill",
    response_model=EngineAction,
    summary="Kill switch: cancel every quote, halt quotes and hedges until resume",
)
async def kill(_: ADMIN, ctx: CTX, body: Annotated[KillIn | None, Body()] = None) -> EngineAction:
    async with ctx.lock:
        await ctx.engine.kill(reason=(body or KillIn()).reason)
    return EngineAction(action="kill", ts_ns=time.time_ns())


@router.post("/mm/resume", response_model=EngineAction, summary="Lift the kill switch")
async def resume(_: ADMIN, ctx: CTX) -> EngineAction:
    async with ctx.lock:
        await ctx.engine.resume()
    return EngineAction(action="resume", ts_ns=time.time_ns())


@router.get("/mm/controls", response_model=ControlsOut, summary="Operator controls")
async def get_controls(_: READ, ctx: CTX) -> ControlsOut:
    return _controls(ctx.engine)


@router.put(
    "/mm/controls",
    response_model=ControlsOut,
    summary="Change operator controls (a new configuration version, author = subject)",
    responses=_CONFLICT,
)
async def put_controls(principal: ADMIN, ctx: CTX, body: ControlsIn) -> ControlsOut:
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise ApiError(422, None, "empty", "give at least one control to change")
    async with ctx.lock:
        await _change_controls(ctx, principal.subject, **changes)
    return _controls(ctx.engine)


@router.put(
    "/mm/instruments/{symbol}/enable",
    response_model=InstrumentEnableOut,
    responses={**_NOT_FOUND, **_CONFLICT},
    summary="Enable or disable quoting of one option (a new configuration version)",
)
async def enable_instrument(
    principal: ADMIN,
    ctx: CTX,
    symbol: Annotated[str, Path(min_length=1, max_length=64)],
    body: InstrumentEnableIn,
) -> InstrumentEnableOut:
    engine = ctx.engine
    if symbol not in _option_symbols(engine):
        raise ApiError(404, "symbol", "unknown_symbol", f"no option {symbol!r}")
    async with ctx.lock:
        disabled = list(engine.config.controls.disabled_instruments)
        if body.enabled:
            disabled = [s for s in disabled if s != symbol]
        elif symbol not in disabled:
            disabled.append(symbol)
        if disabled != list(engine.config.controls.disabled_instruments):
            await _change_controls(ctx, principal.subject, disabled_instruments=disabled)
    now = list(engine.config.controls.disabled_instruments)
    return InstrumentEnableOut(symbol=symbol, enabled=symbol not in now, disabled_instruments=now)


# ---------------------------------------------------------------------------- market data in


@router.post(
    "/mm/price",
    response_model=PriceOut,
    responses={**_NOT_FOUND, **_CONFLICT},
    summary="Underlying price input (as a feed would send it)",
)
async def post_price(_: ADMIN, ctx: CTX, body: PriceIn) -> PriceOut:
    _underlying(ctx.engine, body.underlying)
    ts = body.ts_ns if body.ts_ns is not None else time.time_ns()
    async with ctx.lock:
        try:
            await ctx.engine.on_price(body.underlying, body.price, ts)
        except ValueError as exc:
            raise _value_error(exc) from None
        except RuntimeError as exc:
            raise ApiError(409, None, "engine_state", str(exc)) from None
    return PriceOut(underlying=body.underlying, price=body.price, ts_ns=ts)


# ---------------------------------------------------------------------------- views


_QUOTES = TypeAdapter(list[QuoteOut])
_MAX_QUOTE_BODIES = 256  # distinct (underlying, expiry) filters kept per quotes_version


def _quotes_json(rows: Any) -> bytes:
    """Quote rows as FastAPI answers them under ``response_model=list[QuoteOut]``: validated,
    then pydantic's ``dump_json`` (aliases)."""
    return _QUOTES.dump_json(_QUOTES.validate_python(rows), by_alias=True)


def _quotes_body(ctx: ApiContext, underlying: str | None, expiry: float | None) -> bytes:
    """The JSON body of ``GET /mm/quotes``: what FastAPI makes of ``engine.quotes()`` under
    ``response_model=list[QuoteOut]`` (validate, then pydantic's ``dump_json``), serialised once
    per engine ``quotes_version()`` and filter and then served as these bytes."""
    engine = ctx.engine
    version = engine.quotes_version()
    if version != ctx.quotes_json_version:
        ctx.quotes_json = {}
        ctx.quotes_json_version = version
    key = (underlying, expiry)
    body = ctx.quotes_json.get(key)
    if body is None:
        body = _quotes_json(engine.quotes(underlying=underlying, expiry=expiry))
        if len(ctx.quotes_json) >= _MAX_QUOTE_BODIES:
            ctx.quotes_json.clear()
        ctx.quotes_json[key] = body
    return body


@router.get("/mm/quotes", response_model=list[QuoteOut], summary="Current quotes")
async def quotes(
    _: READ,
    ctx: CTX,
    underlying: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    expiry: Annotated[float | None, Query(gt=0, allow_inf_nan=False, description="years")] = None,
) -> Any:
    if underlying is not None:
        _underlying(ctx.engine, underlying)
    if not callable(getattr(ctx.engine, "quotes_version", None)):  # an engine without views cache
        return ctx.engine.quotes(underlying=underlying, expiry=expiry)
    return Response(_quotes_body(ctx, underlying, expiry), media_type="application/json")


@router.get(
    "/mm/quotes/{symbol}",
    response_model=QuoteOut,
    responses=_NOT_FOUND,
    summary="The quote of one option",
)
async def quote(
    _: READ, ctx: CTX, symbol: Annotated[str, Path(min_length=1, max_length=64)]
) -> dict:
    if symbol not in _option_symbols(ctx.engine):
        raise ApiError(404, "symbol", "unknown_symbol", f"no option {symbol!r}")
    return ctx.engine.quotes(symbol=symbol)[0]


_POSITIONS = TypeAdapter(list[PositionOut])


def _positions_json(rows: Any) -> bytes:
    """Position rows as FastAPI answers them under ``response_model=list[PositionOut]``."""
    return _POSITIONS.dump_json(_POSITIONS.validate_python(rows), by_alias=True)


def _positions_body(ctx: ApiContext) -> bytes:
    """The JSON body of ``GET /mm/positions`` over a snapshot (jaxmm.api._threaded, which has
    ``positions_version``): validated under ``list[PositionOut]`` and serialised once per
    positions version, then served as these bytes."""
    v = ctx.engine.positions_version()
    if ctx.positions_json is None or ctx.positions_json[0] != v:
        ctx.positions_json = (v, _positions_json(ctx.engine.positions()))
    return ctx.positions_json[1]


def _seed_view_bodies(
    ctx: ApiContext, quotes: tuple[int, bytes] | None, positions: tuple[int, bytes] | None
) -> None:
    """Fill the two caches above with bodies made elsewhere from the same rows:
    ``quotes`` = ``(quotes_version, body of the unfiltered GET /mm/quotes)`` and ``positions``
    = ``(positions_version, body)`` (None: nothing new). A cache already at that version is
    kept (its filtered bodies with it)."""
    if quotes is not None and ctx.quotes_json_version != quotes[0]:
        ctx.quotes_json = {(None, None): quotes[1]}
        ctx.quotes_json_version = quotes[0]
    if positions is not None:
        ctx.positions_json = positions


@router.get("/mm/positions", response_model=list[PositionOut], summary="Positions")
async def positions(_: READ, ctx: CTX) -> Any:
    if getattr(ctx.engine, "positions_version", None) is None:
        return ctx.engine.positions()  # the engine itself: its positions are re-marked every tick
    return Response(_positions_body(ctx), media_type="application/json")


@router.get("/mm/greeks", response_model=GreeksOut, summary="Portfolio Greeks")
async def greeks(_: READ, ctx: CTX) -> GreeksOut:
    g = ctx.engine.greeks()
    return GreeksOut(
        total=g["total"],
        total_dollar=g.get("total_dollar", {}),
        by_underlying=g["by_underlying"],
        by_expiry={
            u: {_expiry_key(e): v for e, v in per.items()} for u, per in g["by_expiry"].items()
        },
    )


@router.get("/mm/pnl", response_model=PnlOut, summary="Today's PnL with attribution")
async def pnl(_: READ, ctx: CTX) -> dict:
    return ctx.engine.pnl()


@router.get("/mm/pnl/attribution", response_model=dict[str, float], summary="PnL attribution")
async def pnl_attribution(_: READ, ctx: CTX) -> dict:
    return ctx.engine.pnl()["attribution"]


_MAX_DAYS = 366
_MAX_DAYS_DEFAULT = 30


@router.get(
    "/mm/pnl/history",
    response_model=list[DailyPnlOut],
    responses=_NOT_FOUND,
    summary="Daily PnL from the store (inclusive day range, at most 366 days)",
)
async def pnl_history(
    _: READ,
    ctx: CTX,
    from_day: Annotated[_dt.date | None, Query(description="default: to_day - 29 days")] = None,
    to_day: Annotated[_dt.date | None, Query(description="default: today (UTC)")] = None,
    book: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
) -> list[DailyPnlOut]:
    store = _need_store(ctx)
    end = to_day or _dt.datetime.now(_dt.UTC).date()
    first = end.toordinal() - (_MAX_DAYS_DEFAULT - 1)
    start = from_day or _dt.date.fromordinal(max(first, 1))
    if start > end:
        raise ApiError(422, "from_day", "order", f"from_day: {start} is after to_day {end}")
    if (end - start).days >= _MAX_DAYS:
        raise ApiError(422, "from_day", "range", f"from_day: at most {_MAX_DAYS} days per query")
    out = []
    for ordinal in range(start.toordinal(), end.toordinal() + 1):
        for r in await store.get_daily_pnl(_dt.date.fromordinal(ordinal), book):
            out.append(
                DailyPnlOut(
                    day=r.day,
                    book=r.book,
                    realised=r.realised,
                    unrealised=r.unrealised,
                    fees=r.fees,
                    delta_pnl=r.delta_pnl,
                    gamma_pnl=r.gamma_pnl,
                    vega_pnl=r.vega_pnl,
                    theta_pnl=r.theta_pnl,
                    residual_pnl=r.residual_pnl,
                )
            )
    return out


@router.get(
    "/mm/chain/{underlying}",
    response_model=list[ChainExpiry],
    responses=_NOT_FOUND,
    summary="Chain view per strike: call and put quotes, theo, IV and Greeks",
)
async def chain(
    _: READ,
    ctx: CTX,
    underlying: Annotated[str, Path(min_length=1, max_length=32)],
    expiry: Annotated[
        float | None, Query(gt=0, allow_inf_nan=False, description="years; default: all")
    ] = None,
) -> list[ChainExpiry]:
    u = _underlying(ctx.engine, underlying)
    expiries = [float(e) for e in u.expiries]
    if expiry is not None:
        hit = [e for e in expiries if abs(e - expiry) <= 1e-9 * max(1.0, e)]
        if not hit:
            raise ApiError(404, "expiry", "unknown_expiry", f"expiry: {expiry!r} not in {expiries}")
        expiries = hit
    return [
        ChainExpiry(underlying=underlying, expiry=e, rows=ctx.engine.chain_view(underlying, e))
        for e in expiries
    ]


@router.get(
    "/mm/surface/{underlying}",
    response_model=SurfaceOut,
    responses=_NOT_FOUND,
    summary="The volatility surface in use (grid)",
)
async def surface(
    _: READ, ctx: CTX, underlying: Annotated[str, Path(min_length=1, max_length=32)]
) -> dict:
    _underlying(ctx.engine, underlying)
    return {"underlying": underlying, **ctx.engine.surface(underlying)}


@router.get("/mm/stats", response_model=dict[str, Any], summary="Engine counters and latency")
async def stats(_: READ, ctx: CTX) -> dict:
    return ctx.engine.stats()


# ---------------------------------------------------------------------------- risk


@router.get("/risk/limits", response_model=dict[str, dict[str, float]], summary="Greek limits")
async def risk_limits(_: READ, ctx: CTX) -> Any:
    return ctx.engine.risk()["limits"]


@router.get(
    "/risk/utilisation",
    response_model=dict[str, dict[str, float]],
    summary="Limit utilisation |Greek| / limit per underlying and total",
)
async def risk_utilisation(_: READ, ctx: CTX) -> Any:
    return ctx.engine.risk()["utilisation"]


@router.get(
    "/risk/breaker",
    response_model=BreakerOut,
    summary="Greeks circuit breaker per underlying, kill switch, quoting status",
)
async def risk_breaker(_: READ, ctx: CTX) -> BreakerOut:
    r = ctx.engine.risk()
    return BreakerOut(
        breakers=r["breakers"],
        kill_switch=r["kill_switch"],
        store_halted=r["store_halted"],
        status=r["status"],
    )


@router.get("/risk/alerts", response_model=list[AlertOut], summary="Recent alerts, oldest first")
async def risk_alerts(_: READ, ctx: CTX) -> Any:
    return ctx.engine.risk()["alerts"]


# ---------------------------------------------------------------------------- orders

_TIF = {"gtc": TimeInForce.GTC, "ioc": TimeInForce.IOC, "fok": TimeInForce.FOK}


def _order_out(ctx: ApiContext, mo: Any) -> OrderOut:
    inst = ctx.engine.exchange.book(mo.symbol).instrument
    tick, lot = float(inst.tick_size), float(inst.lot_size)
    return OrderOut(
        order_id=mo.client_id,
        venue_order_id=mo.exchange_id,
        symbol=mo.symbol,
        side="buy" if mo.side == Side.BUY else "sell",
        price=None if mo.price is None else float(inst.ticks_to_price(mo.price)),
        quantity=mo.qty * lot,
        filled=mo.filled * lot,
        open_quantity=mo.open_qty * lot,
        avg_price=None if mo.avg_price is None else mo.avg_price * tick,
        state=mo.state.value,
        reason=mo.reason,
    )


def _book(ctx: ApiContext, symbol: str) -> Any:
    book = ctx.engine.exchange.book(symbol)
    if book is None:
        raise ApiError(404, "symbol", "unknown_symbol", f"no instrument {symbol!r}")
    return book


def _get_order(ctx: ApiContext, order_id: str) -> Any:
    if order_id not in ctx.orders:
        raise ApiError(404, "order_id", "unknown_order", f"no order {order_id!r}")
    return ctx.orders.get(order_id)


def _to_ticks(inst: Any, price: float) -> int:
    try:
        return inst.price_to_ticks(price, "price")
    except ValueError as exc:
        raise ApiError(422, "price", "tick_grid", str(exc)) from None


def _to_lots(inst: Any, qty: float) -> int:
    try:
        return inst.qty_to_lots(qty, "quantity")
    except ValueError as exc:
        raise ApiError(422, "quantity", "lot_grid", str(exc)) from None


_REJECT_FIELD = {  # the book's admission rule (jaxmm.book.RejectRule) -> the request field
    "qty": "quantity",
    "lot": "quantity",
    "size": "quantity",
    "fok": "quantity",
    "price": "price",
    "tick": "price",
    "symbol": "symbol",
    "expiry": "symbol",
    "side": "side",
    "type": "order_type",
    "post_only": "post_only",
}


@router.post(
    "/orders",
    response_model=OrderOut,
    status_code=201,
    responses={**_NOT_FOUND, **_CONFLICT},
    summary="Submit an order into an in-process book",
)
async def submit_order(_: TRADE, ctx: CTX, body: OrderIn) -> OrderOut:
    book = _book(ctx, body.symbol)
    inst = book.instrument
    lots = _to_lots(inst, body.quantity)
    ticks = None if body.price is None else _to_ticks(inst, body.price)
    cid = body.client_id or ctx.new_order_id()
    if cid in ctx.orders:
        raise ApiError(409, "client_id", "duplicate", f"client_id: {cid!r} is already in use")
    req = OrderRequest(
        body.symbol,
        Side.BUY if body.side == "buy" else Side.SELL,
        lots,
        ticks,
        OrderType.LIMIT if body.order_type == "limit" else OrderType.MARKET,
        _TIF[body.time_in_force],
        post_only=body.post_only,
    )
    connector, orders = await ctx.trading()
    orders.cleanup()  # forget orders finished more than retention_ns (60 s) ago
    mo = await orders.submit(connector, req, cid)
    if mo.state.value == "rejected":
        rule, _sep, msg = (mo.reason or "rejected: ").partition(": ")
        name = _REJECT_FIELD.get(rule)
        raise ApiError(422, name, rule or "rejected", msg or "the book rejected the order")
    return _order_out(ctx, mo)


@router.get("/orders", response_model=list[OrderOut], summary="The API's open orders")
async def open_orders(
    _: READ,
    ctx: CTX,
    symbol: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> list[OrderOut]:
    return [
        _order_out(ctx, mo)
        for mo in ctx.orders.orders(symbol=symbol, working_only=True)
        if mo.exchange_id is not None
    ]


@router.post(
    "/orders/cancel-all",
    response_model=CancelAllOut,
    responses=_NOT_FOUND,
    summary="Cancel the API's open orders (optionally one symbol and/or side)",
)
async def cancel_all(
    _: TRADE, ctx: CTX, body: Annotated[CancelAllIn | None, Body()] = None
) -> CancelAllOut:
    body = body or CancelAllIn()
    if body.symbol is not None:
        _book(ctx, body.symbol)
    side = None if body.side is None else (Side.BUY if body.side == "buy" else Side.SELL)
    connector, orders = await ctx.trading()
    targets = [
        mo
        for mo in orders.orders(symbol=body.symbol, working_only=True)
        if mo.is_working and (side is None or mo.side == side)
    ]
    out = []
    for mo in targets:
        await orders.cancel(connector, mo.client_id)
        out.append(_order_out(ctx, mo))
    return CancelAllOut(cancelled=out)


@router.get(
    "/orders/{order_id}", response_model=OrderOut, responses=_NOT_FOUND, summary="One order"
)
async def get_order(
    _: READ, ctx: CTX, order_id: Annotated[str, Path(min_length=1, max_length=48)]
) -> OrderOut:
    return _order_out(ctx, _get_order(ctx, order_id))


@router.delete(
    "/orders/{order_id}",
    response_model=OrderOut,
    responses={**_NOT_FOUND, **_CONFLICT},
    summary="Cancel one order",
)
async def cancel_order(
    _: TRADE, ctx: CTX, order_id: Annotated[str, Path(min_length=1, max_length=48)]
) -> OrderOut:
    mo = _get_order(ctx, order_id)
    if not mo.is_working:
        raise ApiError(409, "order_id", "not_working", f"order {order_id!r} is {mo.state.value}")
    connector, orders = await ctx.trading()
    try:
        mo = await orders.cancel(connector, order_id)
    except OrderManagerError as exc:
        raise ApiError(409, "order_id", "not_working", str(exc)) from None
    if mo.state.value != "cancelled":
        raise ApiError(409, "order_id", "cancel_refused", mo.reason or "the venue refused")
    return _order_out(ctx, mo)


@router.patch(
    "/orders/{order_id}",
    response_model=OrderOut,
    responses={**_NOT_FOUND, **_CONFLICT},
    summary="Modify one order (new open quantity and/or price)",
)
async def modify_order(
    _: TRADE,
    ctx: CTX,
    order_id: Annotated[str, Path(min_length=1, max_length=48)],
    body: OrderModifyIn,
) -> OrderOut:
    mo = _get_order(ctx, order_id)
    inst = _book(ctx, mo.symbol).instrument
    lots = None if body.quantity is None else _to_lots(inst, body.quantity)
    ticks = None if body.price is None else _to_ticks(inst, body.price)
    if not mo.is_working:
        raise ApiError(409, "order_id", "not_working", f"order {order_id!r} is {mo.state.value}")
    connector, orders = await ctx.trading()
    reason_before = mo.reason
    try:
        mo = await orders.modify(connector, order_id, qty=lots, price=ticks)
    except OrderManagerError as exc:
        raise ApiError(409, "order_id", "not_working", str(exc)) from None
    if mo.reason != reason_before and (mo.reason or "").startswith("modify refused"):
        raise ApiError(422, None, "modify_refused", mo.reason or "")
    return _order_out(ctx, mo)


# ---------------------------------------------------------------------------- fills

_MAX_OFFSET = 100_000
_MAX_NS = 2**63 - 1  # BIGINT


@router.get(
    "/fills",
    response_model=FillPage,
    responses=_NOT_FOUND,
    summary="The market maker's fills from the store, in fill-log order, paged",
)
async def fills(
    _: READ,
    ctx: CTX,
    request: Request,
    symbol: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    from_ns: Annotated[
        int | None, Query(ge=0, le=_MAX_NS, description="exchange_ts_ns >= from_ns")
    ] = None,
    to_ns: Annotated[
        int | None, Query(ge=0, le=_MAX_NS, description="exchange_ts_ns < to_ns")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        int | None, Query(ge=0, le=_MAX_NS, description="next_cursor of the previous page")
    ] = None,
    offset: Annotated[int | None, Query(ge=0, le=_MAX_OFFSET)] = None,
) -> FillPage:
    store = _need_store(ctx)
    if cursor is not None and offset is not None:
        raise ApiError(422, "offset", "exclusive", "offset: give cursor or offset, not both")
    if limit > request.app.state.settings.max_page:
        raise ApiError(422, "limit", "less_than_equal", "limit: above the page size")
    skip = offset or 0
    rows = await store.get_fills(
        from_ns, to_ns, instrument=symbol, after_id=cursor or 0, limit=skip + limit + 1
    )
    rows = rows[skip:]
    more = len(rows) > limit
    rows = rows[:limit]
    page = [
        FillOut(
            id=f.id,
            trade_id=f.trade_id,
            order_id=f.order_id,
            instrument=f.instrument,
            side=f.side,
            price=f.price,
            quantity=f.quantity,
            fee=f.fee,
            theo=f.theo,
            edge=f.edge,
            exchange_ts_ns=f.exchange_ts_ns,
            local_ts_ns=f.local_ts_ns,
        )
        for f in rows
    ]
    return FillPage(fills=page, next_cursor=page[-1].id if more else None)
