"""The quotes cache (engine ``quotes_version`` / cached rows, the API's cached JSON bodies) and
the WebSocket serving settings: correctness only, never timing.

Reference values: the engine's uncached computation (``_quotes_fresh``, the code path that
served every request before the cache) and the bytes FastAPI itself produces for
``response_model=list[QuoteOut]`` from those fresh rows, in a separate app with no cache. After
every kind of change that can move a quote row — price, surface, the engine clock (time to
expiry), a configuration change (disabled instrument, tick size), a fill against our quote, the
kill switch and its release, a stale surface — the cached answer must equal the fresh one.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from jaxmm.api import ApiSettings, create_app, mint_token
from jaxmm.api._models import QuoteOut
from jaxmm.book import OrderType, Side, TimeInForce
from jaxmm.engine import MarketMakerConfig, OptionsMarketMaker, UnderlyingConfig
from jaxmm.execution import InProcessConnector, OrderRequest
from jaxmm.feeds import SurfaceUpdate

SECRET = "perf-secret-" + "0123456789abcdef" * 2
T30, T60 = 30 / 365, 60 / 365
STRIKES = [95.0, 100.0, 105.0]
XYZ = UnderlyingConfig(
    symbol="XYZ", spot=100.0, strikes=STRIKES, expiries=[T30, T60], hedge_band=50.0, tick=0.01
)
LIMITS = {"XYZ": {"delta": 500.0, "gamma": 50.0, "vega": 5000.0, "theta": 50000.0}}
CONFIG = MarketMakerConfig(underlyings=[XYZ], limits=LIMITS)
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
FILTERS = [{}, {"underlying": "XYZ"}, {"expiry": T60}, {"underlying": "XYZ", "expiry": T30}]


def _reference_app(engine) -> FastAPI:
    """FastAPI's own serialisation of the uncached rows (the route before the cache)."""
    ref = FastAPI()

    @ref.get("/q", response_model=list[QuoteOut])
    async def q(underlying: str | None = None, expiry: float | None = None) -> list[dict]:
        return engine._quotes_fresh(underlying=underlying, expiry=expiry)

    return ref


class _Check:
    def __init__(self, engine, app) -> None:
        self.engine = engine
        token = mint_token("t", "read", 600, SECRET)
        self.api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers={"Authorization": f"Bearer {token}"},
        )
        self.ref = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=_reference_app(engine)), base_url="http://r"
        )
        self.version = engine.quotes_version()
        self.steps = 0

    async def __call__(self, *, changed: bool) -> list[dict]:
        e = self.engine
        for kw in FILTERS:
            cached, fresh = e.quotes(**kw), e._quotes_fresh(**kw)
            assert cached == fresh, kw
            # twice: the second answer comes from the cache filled by the first
            for _ in range(2):
                got = await self.api.get("/api/v1/mm/quotes", params=kw)
                want = await self.ref.get("/q", params=kw)
                assert got.status_code == want.status_code == 200
                assert got.content == want.content, kw
                assert got.headers["content-type"] == want.headers["content-type"]
        for s in XYZ.symbols():
            assert e.quotes(symbol=s) == e._quotes_fresh(symbol=s)
        for t in (T30, T60):
            rows = e.chain_view("XYZ", t)
            by_sym = {r["symbol"]: r for r in e._quotes_fresh(expiry=t)}
            for row in rows:
                for side in ("call", "put"):
                    call = side == "call"
                    match = [
                        r
                        for r in by_sym.values()
                        if r["strike"] == row["strike"] and r["is_call"] == call
                    ]
                    assert len(match) == 1
                    for k in ("bid", "ask", "bid_size", "ask_size", "theo", "iv", "status"):
                        assert row[side][k] == match[0][k]
        v = e.quotes_version()
        if changed:
            assert v != self.version, "a change that moved the rows must change the version"
        self.version = v
        self.steps += 1
        return e._quotes_fresh()

    async def close(self) -> None:
        await self.api.aclose()
        await self.ref.aclose()


def test_cached_quotes_equal_fresh_after_every_kind_of_change():
    async def main():
        now = [T0]
        engine = OptionsMarketMaker(CONFIG, clock=lambda: now[0])
        app = create_app(engine, settings=ApiSettings(jwt_secret=SECRET))
        check = _Check(engine, app)
        try:
            rows = await check(changed=False)
            assert {r["status"] for r in rows} == {"WAITING"}
            await engine.start()
            await engine.on_price("XYZ", 100.0, now[0])
            rows = await check(changed=True)
            assert {r["status"] for r in rows} == {"STALE"}  # no surface yet
            surf = SurfaceUpdate("XYZ", [T30, T60], STRIKES, [[0.2] * 3] * 2, 100.0, T0, T0)
            await engine.on_surface(surf)
            await engine.on_price("XYZ", 100.0, now[0])
            before = await check(changed=True)
            assert any(r["bid"] > 0 for r in before)

            # the engine clock moves: time to expiry (and theo) change on the next refresh
            now[0] += 3_600 * 10**9
            await engine.on_surface(surf)  # received now: fresh again
            await engine.on_price("XYZ", 100.5, now[0])
            after = await check(changed=True)
            pairs = zip(after, before, strict=True)
            assert all(a["time_to_expiry"] < b["time_to_expiry"] for a, b in pairs)

            # a price move: theo and quotes move
            await engine.on_price("XYZ", 101.0, now[0])
            moved = await check(changed=True)
            assert [r["theo"] for r in moved] != [r["theo"] for r in after]

            # configuration: one instrument disabled, then enabled again
            off = XYZ.symbols()[0]
            ctl = CONFIG.controls.model_copy(update={"disabled_instruments": [off]})
            await engine.apply_config(CONFIG.model_copy(update={"controls": ctl}), author="t")
            await engine.on_price("XYZ", 101.0, now[0])
            rows = await check(changed=True)
            assert rows[0]["status"] == "DISABLED" and rows[0]["bid"] == rows[0]["ask"] == 0.0
            await engine.apply_config(CONFIG, author="t")  # enabled again
            await engine.on_price("XYZ", 101.0, now[0])
            rows = await check(changed=True)
            assert rows[0]["status"] != "DISABLED" and rows[0]["bid_size"] > 0

            # a fill against our bid: its open size drops (no refresh in between)
            quoted = next(r for r in rows if r["bid_size"] > 1)
            taker = InProcessConnector(engine.exchange, owner="taker")
            req = OrderRequest(
                quoted["symbol"], Side.SELL, 1, None, OrderType.MARKET, TimeInForce.IOC
            )
            taker.submit_now(req)
            rows = await check(changed=True)
            hit = next(r for r in rows if r["symbol"] == quoted["symbol"])
            assert hit["bid_size"] < quoted["bid_size"]
            await asyncio.sleep(0.01)  # whatever the fill handling scheduled
            await check(changed=False)

            # kill switch and its release
            await engine.kill("test")
            rows = await check(changed=True)
            assert {r["status"] for r in rows} == {"KILLED"}
            assert all(r["bid_size"] == r["ask_size"] == 0.0 for r in rows)
            await engine.resume()
            await engine.on_price("XYZ", 101.0, now[0])
            rows = await check(changed=True)
            assert any(r["bid_size"] > 0 for r in rows)

            # the surface goes stale: quotes pulled
            now[0] += 10 * 10**9
            await engine.on_price("XYZ", 101.0, now[0])
            rows = await check(changed=True)
            assert {r["status"] for r in rows} == {"STALE"}
            assert all(r["bid_size"] == r["ask_size"] == 0.0 for r in rows)
        finally:
            await check.close()
            await engine.stop()
        assert check.steps == 12

    asyncio.run(main())


def test_quotes_returns_new_dicts_every_call():
    engine = OptionsMarketMaker(CONFIG, clock=lambda: T0)
    a = engine.quotes()
    a[0]["bid"] = 123.0
    a.clear()
    b = engine.quotes(symbol=XYZ.symbols()[0])
    b[0]["status"] = "X"
    assert engine.quotes() == engine._quotes_fresh()
    assert engine.quotes()[0]["status"] == "WAITING"


@pytest.mark.parametrize(
    ("field", "value", "bound"),
    [
        ("ws_heartbeat_s", -1.0, "greater than or equal to 0"),
        ("ws_heartbeat_s", float("inf"), "finite"),
        ("ws_queue_size", 0, "greater than or equal to 1"),
        ("ws_queue_size", 10**6 + 1, "less than or equal to 1000000"),
        ("ws_close_timeout_s", 0.0, "greater than 0"),
        ("ws_close_timeout_s", 3601.0, "less than or equal to 3600"),
    ],
)
def test_ws_settings_are_validated(field, value, bound):
    with pytest.raises(ValidationError) as info:
        ApiSettings(auth_disabled=True, **{field: value})
    err = info.value.errors()[0]
    assert err["loc"] == (field,) and bound in err["msg"]


def test_ws_settings_defaults_and_uvicorn_deflate():
    from jaxmm.api import uvicorn_server

    s = ApiSettings(auth_disabled=True)
    assert (s.ws_heartbeat_s, s.ws_queue_size, s.ws_close_timeout_s) == (10.0, 1000, 5.0)
    assert s.ws_per_message_deflate is False
    assert ApiSettings(auth_disabled=True, ws_heartbeat_s=0).ws_heartbeat_s == 0.0  # 0 = off
    engine = OptionsMarketMaker(CONFIG)
    off = uvicorn_server(create_app(engine, settings=s))
    assert off.config.ws_per_message_deflate is False
    on = ApiSettings(auth_disabled=True, ws_per_message_deflate=True)
    assert uvicorn_server(create_app(engine, settings=on)).config.ws_per_message_deflate is True
