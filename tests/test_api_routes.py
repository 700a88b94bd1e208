"""Every REST route of jaxmm.api against the real app, the real market maker and a real store.

Requests go through httpx's ``ASGITransport`` into the FastAPI app built by ``create_app`` over
a started :class:`jaxmm.engine.OptionsMarketMaker` (one underlying, three strikes, one
expiry) fed a price and a volatility grid. Store-backed routes run on a SQLite file AND on the
PostgreSQL server at 127.0.0.1:5432 (one schema per test, dropped afterwards, as in
tests/test_store_repo.py). Nothing is mocked.

Reference values are independent of the code under test: Black-Scholes-Merton prices and
Greeks from the closed forms (Merton 1973; Hull, *Options, Futures and Other Derivatives*,
11th ed., eqs. 15.20-15.21 and section 19) evaluated here with the standard library's
``statistics.NormalDist``, put-call parity, the vol grid the test itself sent, the limits the
test configured, and the fills and daily PnL rows the test stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import time
from dataclasses import dataclass
from decimal import Decimal
from statistics import NormalDist
from typing import Any

import httpx
import pytest
from _db import Backend

from jaxmm.api import ApiSettings, create_app, mint_token
from jaxmm.engine import MarketMakerConfig, OptionsMarketMaker, UnderlyingConfig
from jaxmm.events import AlertTriggered
from jaxmm.feeds import SurfaceUpdate
from jaxmm.store import DailyPnl, FillRecord

SECRET = "routes-secret-" + "0123456789abcdef" * 2
V1 = "/api/v1"
N = NormalDist()

T30 = 30 / 365
CLOCK_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
STRIKES = [95.0, 100.0, 105.0]
VOLS = [0.24, 0.20, 0.22]  # the grid sent to the engine: vol at each strike
RATE, DIV = 0.01, 0.005
XYZ = UnderlyingConfig(
    symbol="XYZ",
    spot=100.0,
    strikes=STRIKES,
    expiries=[T30],
    hedge_band=50.0,
    rate=RATE,
    dividend=DIV,
    tick=0.01,
)
LIMITS = {"XYZ": {"delta": 500.0, "gamma": 50.0, "vega": 5000.0, "theta": 50000.0}}
CONFIG = MarketMakerConfig(underlyings=[XYZ], limits=LIMITS)


def sym(strike: float, call: bool) -> str:
    return f"XYZ-0030D-{strike:g}-{'C' if call else 'P'}"


# ---------------------------------------------------------------- independent reference


def bsm(S: float, K: float, T: float, r: float, q: float, v: float, call: bool) -> dict:
    """Closed-form BSM price and raw Greeks (vega per 1.00 vol, theta per year)."""
    sq = v * math.sqrt(T)
    d1 = (math.log(S / K) + (r - q + 0.5 * v * v) * T) / sq
    d2 = d1 - sq
    dq, dr = math.exp(-q * T), math.exp(-r * T)
    pdf = N.pdf(d1)
    gamma = dq * pdf / (S * sq)
    vega = S * dq * pdf * math.sqrt(T)
    if call:
        price = S * dq * N.cdf(d1) - K * dr * N.cdf(d2)
        delta = dq * N.cdf(d1)
        theta = (
            -S * dq * pdf * v / (2 * math.sqrt(T))
            - r * K * dr * N.cdf(d2)
            + q * S * dq * (N.cdf(d1))
        )
    else:
        price = K * dr * N.cdf(-d2) - S * dq * N.cdf(-d1)
        delta = -dq * N.cdf(-d1)
        theta = (
            -S * dq * pdf * v / (2 * math.sqrt(T))
            + r * K * dr * N.cdf(-d2)
            - q * S * dq * (N.cdf(-d1))
        )
    return {"price": price, "delta": delta, "gamma": gamma, "vega": vega, "theta": theta}


# ---------------------------------------------------------------- backends and environment


@dataclass
class Env:
    engine: Any
    store: Any
    app: Any
    client: httpx.AsyncClient

    async def get(self, path: str, **kw) -> httpx.Response:
        return await self.client.get(V1 + path, **kw)

    async def call(self, method: str, path: str, body: Any = None, **kw) -> httpx.Response:
        return await self.client.request(method, V1 + path, json=body, **kw)


async def feed(engine: Any, spot: float) -> None:
    """A price tick and the vol grid (marked at that spot), as the simulated feed sends them."""
    now = CLOCK_NS
    await engine.on_price("XYZ", spot, now)
    await engine.on_surface(SurfaceUpdate("XYZ", [T30], STRIKES, [VOLS], spot, now, now))


@contextlib.asynccontextmanager
async def environment(backend: Backend | None = None, **settings):
    store = await backend.open() if backend is not None else None
    # a frozen engine clock: time to expiry stays exactly as configured (the engine decays
    # expiries by the clock time elapsed since start), so the closed forms apply at T = 30/365
    engine = OptionsMarketMaker(CONFIG, store=store, clock=lambda: CLOCK_NS)
    await engine.start()
    await feed(engine, 100.0)
    kw = {"jwt_secret": SECRET, "rate_limit_per_s": 1e6, "rate_limit_burst": 10**6, **settings}
    app = create_app(engine, store=store, settings=ApiSettings(**kw))
    token = mint_token("tester", ["read", "trade", "admin"], 600, SECRET)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        yield Env(engine, store, app, client)
    finally:
        await client.aclose()
        await engine.stop()
        if store is not None:
            await store.close()


def run(coro) -> None:
    asyncio.run(coro)


def err(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"field", "rule", "message"}, body
    return body["error"]


async def until(predicate, timeout_s: float = 10.0) -> None:
    """Wait (polling the event loop) until ``await predicate()`` is true."""
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def option_book_orders(engine: Any) -> int:
    return sum(len(engine.exchange.book(s).orders()) for s in XYZ.symbols())


# ---------------------------------------------------------------- service routes


def test_health_version_and_openapi():
    async def main():
        async with environment() as e:
            r = await e.get("/health")
            assert r.status_code == 200 and r.json()["status"] == "ok"
            r = await e.get("/version")
            import jaxmm

            assert r.json()["version"] == jaxmm.__version__ and r.json()["api"] == "v1"
            spec = (await e.client.get("/openapi.json")).json()
            assert "HTTPBearer" in spec["components"]["securitySchemes"]
            schemas = spec["components"]["schemas"]
            assert schemas["OrderIn"]["examples"][0]["side"] == "buy"
            assert schemas["ErrorBody"]["examples"][0]["error"]["field"] == "price"
            # every 4xx is documented with the one error shape
            op = spec["paths"]["/api/v1/orders"]["post"]
            assert op["responses"]["422"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorBody"
            }
            docs = await e.client.get("/docs")
            assert docs.status_code == 200 and "swagger" in docs.text.lower()
            r = await e.get("/no/such/route")
            assert r.status_code == 404 and err(r)["rule"] == "not_found"
            r = await e.call("DELETE", "/mm/quotes")
            assert r.status_code == 405 and err(r)["rule"] == "method_not_allowed"

    run(main())


# ---------------------------------------------------------------- configuration


def test_config_put_is_versioned_and_a_rejected_put_changes_nothing(backend):
    async def main():
        async with environment(backend) as e:
            r = await e.get("/mm/config")
            assert r.status_code == 200
            assert r.json()["config"] == e.engine.config.model_dump(mode="json")

            new = CONFIG.model_copy(
                update={"limits": {"XYZ": {**LIMITS["XYZ"], "delta": 400.0}}, "requote_ticks": 2}
            ).model_dump(mode="json")
            r = await e.call("PUT", "/mm/config", new)
            assert r.status_code == 200, r.text
            version = r.json()["version"]
            assert version >= 1 and r.json()["author"] == "tester"
            stored = await e.store.get_config()
            assert (stored.version, stored.author, stored.config) == (version, "tester", new)
            assert e.engine.config.model_dump(mode="json") == new
            assert (await e.get("/mm/config")).json()["version"] == version

            bad_spot = {**new, "underlyings": [{**new["underlyings"][0], "spot": -1.0}]}
            bad_limit = {**new, "limits": {"ABC": {"delta": 1.0}}}
            bad_extra = {**new, "requote_tickz": 3}
            for bad, field, in_message in (
                (bad_spot, "underlyings.0.spot", "greater than 0"),
                (bad_limit, "limits.ABC", "not an underlying symbol"),
                (bad_extra, "requote_tickz", "Extra inputs"),
            ):
                r = await e.call("PUT", "/mm/config", bad)
                assert r.status_code == 422, r.text
                detail = err(r)
                assert detail["field"] == field and in_message in detail["message"], detail
                # the old config is still running AND still the newest stored version
                assert e.engine.config.model_dump(mode="json") == new
                latest = await e.store.get_config()
                assert (latest.version, latest.config) == (version, new)
                assert (await e.get("/mm/config")).json()["config"] == new

            r = await e.get("/mm/config/history")
            hist = r.json()
            assert [h["version"] for h in hist] == list(range(1, version + 1))
            assert hist[-1]["config"] == new and hist[-1]["author"] == "tester"

    run(main())


# ---------------------------------------------------------------- controls and engine state


def test_controls_are_applied_whole_or_not_at_all():
    async def main():
        async with environment() as e:
            r = await e.get("/mm/controls")
            assert r.json() == e.engine.config.controls.model_dump()
            r = await e.call("PUT", "/mm/controls", {"spread_multiplier": 2.0, "size_scalar": 0.5})
            assert r.status_code == 200
            c = e.engine.config.controls
            assert (c.spread_multiplier, c.size_scalar) == (2.0, 0.5)
            assert r.json()["spread_multiplier"] == 2.0

            before = e.engine.config.controls
            for body, field in (
                ({"size_scalar": 0.7, "spread_multiplier": -1.0}, "spread_multiplier"),
                ({"size_scalar": -0.1}, "size_scalar"),
                ({"directional_skew": 1.0, "bogus": 1}, "bogus"),
                ({}, None),
            ):
                r = await e.call("PUT", "/mm/controls", body)
                assert r.status_code == 422 and err(r)["field"] == field, r.text
                assert e.engine.config.controls == before

            r = await e.call("PUT", "/mm/controls", {"directional_skew": -1.5})
            assert e.engine.config.controls.directional_skew == -1.5
            assert r.json()["size_scalar"] == 0.5  # untouched fields keep their value

    run(main())


def test_instrument_enable_disable():
    async def main():
        async with environment() as e:
            s = sym(100.0, True)
            r = await e.call("PUT", f"/mm/instruments/{s}/enable", {"enabled": False})
            assert r.status_code == 200 and r.json()["enabled"] is False
            assert s in e.engine.config.controls.disabled_instruments
            await feed(e.engine, 100.0)
            book = e.engine.exchange.book(s)
            await until(lambda: _true(len(book.orders()) == 0))
            q = (await e.get(f"/mm/quotes/{s}")).json()
            assert q["bid_size"] == 0 and q["ask_size"] == 0

            r = await e.call("PUT", f"/mm/instruments/{s}/enable", {"enabled": True})
            assert r.json()["enabled"] is True
            assert s not in e.engine.config.controls.disabled_instruments
            r = await e.call("PUT", "/mm/instruments/XYZ-9999D-1-C/enable", {"enabled": False})
            assert r.status_code == 404 and err(r)["field"] == "symbol"
            r = await e.call("PUT", f"/mm/instruments/{s}/enable", {"enabled": "perhaps"})
            assert r.status_code == 422 and err(r)["field"] == "enabled"

    run(main())


async def _true(x: bool) -> bool:
    return x


def test_kill_resume_stop_start():
    async def main():
        async with environment() as e:
            await until(lambda: _true(option_book_orders(e.engine) > 0))
            r = await e.call("POST", "/mm/kill", {"reason": "test"})
            assert r.status_code == 200 and r.json()["action"] == "kill"
            assert option_book_orders(e.engine) == 0  # every quote pulled
            await feed(e.engine, 100.5)  # a killed engine does not quote again
            assert option_book_orders(e.engine) == 0
            assert all(q["bid_size"] == 0 == q["ask_size"] for q in e.engine.quotes())

            assert (await e.call("POST", "/mm/resume")).status_code == 200
            await feed(e.engine, 100.0)
            await until(lambda: _true(option_book_orders(e.engine) > 0))

            # stop = stop quoting (a new config version); the engine keeps running
            assert (await e.call("POST", "/mm/stop")).status_code == 200
            assert e.engine.config.controls.quoting_enabled is False
            assert option_book_orders(e.engine) == 0
            await feed(e.engine, 100.2)
            assert option_book_orders(e.engine) == 0
            assert (await e.call("POST", "/mm/start")).status_code == 200
            assert e.engine.config.controls.quoting_enabled is True
            await feed(e.engine, 100.0)
            await until(lambda: _true(option_book_orders(e.engine) > 0))
            assert (await e.get("/risk/breaker")).json()["kill_switch"] is False
            r = await e.call("POST", "/mm/kill", {"reason": ""})
            assert r.status_code == 422 and err(r)["field"] == "reason"

    run(main())


# ---------------------------------------------------------------- prices, quotes, chain


def test_chain_quotes_and_surface_match_closed_form_bsm():
    async def main():
        async with environment() as e:
            for spot in (100.0, 103.0):
                if spot != 100.0:
                    r = await e.call("POST", "/mm/price", {"underlying": "XYZ", "price": spot})
                    assert r.status_code == 200 and r.json()["price"] == spot
                    await feed(e.engine, spot)
                r = await e.get("/mm/chain/XYZ", params={"expiry": T30})
                assert r.status_code == 200
                (exp,) = r.json()
                assert exp["expiry"] == pytest.approx(T30, rel=1e-12)
                rows = exp["rows"]
                assert [row["strike"] for row in rows] == STRIKES
                for row, vol in zip(rows, VOLS, strict=True):
                    K = row["strike"]
                    for side, call in (("call", True), ("put", False)):
                        o = row[side]
                        assert o["iv"] == pytest.approx(vol, rel=1e-9)
                        ref = bsm(spot, K, T30, RATE, DIV, o["iv"], call)
                        assert o["theo"] == pytest.approx(ref["price"], rel=1e-9, abs=1e-12)
                        for g in ("delta", "gamma", "vega", "theta"):
                            assert o[g] == pytest.approx(ref[g], rel=1e-6, abs=1e-10), (K, side, g)
                        if o["bid_size"] > 0:
                            assert o["bid"] < o["theo"]
                        if o["ask_size"] > 0:
                            assert o["ask"] > o["theo"]
                    # put-call parity of the theos (same strike, same vol)
                    parity = spot * math.exp(-DIV * T30) - K * math.exp(-RATE * T30)
                    assert row["call"]["theo"] - row["put"]["theo"] == pytest.approx(
                        parity, abs=1e-9
                    )

            quotes = (await e.get("/mm/quotes")).json()
            assert sorted(q["symbol"] for q in quotes) == sorted(XYZ.symbols())
            assert quotes == e.engine.quotes()
            for q in quotes:
                book = e.engine.exchange.book(q["symbol"])
                tick = float(book.instrument.tick_size)
                for px in (q["bid"], q["ask"]):
                    assert abs(px / tick - round(px / tick)) < 1e-6  # on the tick grid
                if q["bid_size"] > 0:  # the resting order in the real book is the quote
                    assert book.best_bid() == round(q["bid"] / tick)
                if q["ask_size"] > 0:
                    assert book.best_ask() == round(q["ask"] / tick)
            one = (await e.get(f"/mm/quotes/{sym(105.0, False)}")).json()
            assert one == e.engine.quotes(symbol=sym(105.0, False))[0]
            assert len((await e.get("/mm/quotes", params={"underlying": "XYZ"})).json()) == 6
            assert len((await e.get("/mm/quotes", params={"expiry": T30})).json()) == 6

            r = await e.get("/mm/chain/XYZ")  # every expiry
            assert [x["expiry"] for x in r.json()] == pytest.approx([T30])
            surf = (await e.get("/mm/surface/XYZ")).json()
            assert surf["underlying"] == "XYZ"
            assert surf["expiries"] == pytest.approx([T30])
            assert surf["strikes"] == STRIKES
            assert surf["vols"] == [pytest.approx(VOLS)]

            for path, field in (
                ("/mm/quotes/NOPE-0030D-1-C", "symbol"),
                ("/mm/chain/NOPE", "underlying"),
                ("/mm/surface/NOPE", "underlying"),
            ):
                r = await e.get(path)
                assert r.status_code == 404 and err(r)["field"] == field
            r = await e.get("/mm/chain/XYZ", params={"expiry": 0.5})
            assert r.status_code == 404 and err(r)["field"] == "expiry"
            r = await e.get("/mm/quotes", params={"underlying": "NOPE"})
            assert r.status_code == 404
            r = await e.get("/mm/quotes", params={"expiry": -1})
            assert r.status_code == 422 and err(r)["field"] == "expiry"

    run(main())


def test_price_input_validation():
    async def main():
        async with environment() as e:
            cases = [
                ('{"underlying": "XYZ", "price": NaN}', "price"),
                ('{"underlying": "XYZ", "price": Infinity}', "price"),
                ('{"underlying": "XYZ", "price": -5}', "price"),
                ('{"underlying": "XYZ", "price": 0}', "price"),
                ('{"underlying": "XYZ"}', "price"),
                ('{"underlying": "", "price": 1}', "underlying"),
                ("not json", None),
            ]
            before = e.engine.quotes()
            for raw, field in cases:
                r = await e.client.post(
                    f"{V1}/mm/price", content=raw, headers={"Content-Type": "application/json"}
                )
                assert r.status_code == 422, (raw, r.text)
                if field is not None:
                    assert err(r)["field"] == field, (raw, r.json())
            r = await e.call("POST", "/mm/price", {"underlying": "ABC", "price": 1.0})
            assert r.status_code == 404 and err(r)["rule"] == "unknown_underlying"
            assert e.engine.quotes() == before  # nothing reached the engine

    run(main())


# ---------------------------------------------------------------- orders


def test_order_entry_modify_cancel_and_validation():
    async def main():
        async with environment() as e:
            s = sym(100.0, True)
            book = e.engine.exchange.book(s)
            mm_bid = e.engine.quotes(symbol=s)[0]["bid"]
            px = round(mm_bid - 0.5, 2)  # rests below the market maker's bid: no trade
            r = await e.call(
                "POST", "/orders", {"symbol": s, "side": "buy", "quantity": 3, "price": px}
            )
            assert r.status_code == 201, r.text
            o = r.json()
            assert (o["state"], o["quantity"], o["open_quantity"], o["price"]) == (
                "open",
                3.0,
                3.0,
                px,
            )
            oid, vid = o["order_id"], o["venue_order_id"]
            info = book.order(vid)  # really resting in the engine's book
            assert (info.qty, float(book.instrument.ticks_to_price(info.price))) == (3, px)
            assert [x["order_id"] for x in (await e.get("/orders")).json()] == [oid]
            assert (await e.get(f"/orders/{oid}")).json() == o

            r = await e.call("PATCH", f"/orders/{oid}", {"price": round(px - 0.1, 2)})
            assert r.status_code == 200 and r.json()["price"] == round(px - 0.1, 2)
            assert book.order(vid).price == book.instrument.price_to_ticks(round(px - 0.1, 2))
            r = await e.call("PATCH", f"/orders/{oid}", {"quantity": 1})
            assert r.json()["open_quantity"] == 1.0 and book.order(vid).qty == 1
            r = await e.call("PATCH", f"/orders/{oid}", {})
            assert r.status_code == 422 and err(r)["field"] == "quantity"

            r = await e.call("DELETE", f"/orders/{oid}")
            assert r.status_code == 200 and r.json()["state"] == "cancelled"
            assert vid not in book
            r = await e.call("DELETE", f"/orders/{oid}")
            assert r.status_code == 409 and err(r)["rule"] == "not_working"
            assert (await e.get("/orders")).json() == []
            for method in ("GET", "DELETE"):
                r = await e.call(method, "/orders/api-999")
                assert r.status_code == 404 and err(r)["field"] == "order_id"

            good = {"symbol": s, "side": "buy", "quantity": 1, "price": px}
            for patch, field in (
                ({"side": "hold"}, "side"),
                ({"price": 0}, "price"),
                ({"price": px + 0.001}, "price"),  # off the 0.01 tick grid
                ({"quantity": 0.5}, "quantity"),  # off the 1-contract lot grid
                ({"quantity": -1}, "quantity"),
                ({"order_type": "market"}, "price"),  # a market order takes no price
                ({"time_in_force": "forever"}, "time_in_force"),
                (
                    {"order_type": "market", "price": None, "time_in_force": "gtc"},
                    "time_in_force",
                ),  # a market order never rests
                ({"post_only": True, "time_in_force": "ioc"}, "time_in_force"),
                ({"post_only": True, "order_type": "market", "price": None}, "post_only"),
                ({"client_id": "bad id!"}, "client_id"),
            ):
                r = await e.call("POST", "/orders", {**good, **patch})
                assert r.status_code == 422, (patch, r.text)
                assert err(r)["field"] == field, (patch, r.json())
            r = await e.call("POST", "/orders", {**good, "symbol": "XYZ-0001D-1-C"})
            assert r.status_code == 404 and err(r)["field"] == "symbol"
            assert (await e.get("/orders")).json() == []  # nothing was placed
            # a market order defaults to IOC and trades with the market maker's ask at once
            ask = e.engine.quotes(symbol=s)[0]["ask"]
            r = await e.call("POST", "/orders", {"symbol": s, "side": "buy", "quantity": 1,
                                                 "order_type": "market"})  # fmt: skip
            assert r.status_code == 201, r.text
            o = r.json()
            assert (o["state"], o["filled"], o["open_quantity"]) == ("filled", 1.0, 0.0)
            assert o["avg_price"] == ask
            # a rule only the book can check (fill-or-kill size) still names the field
            r = await e.call("POST", "/orders", {"symbol": s, "side": "buy", "quantity": 10_000,
                                                 "price": ask, "time_in_force": "fok"})  # fmt: skip
            assert r.status_code == 422 and (err(r)["field"], err(r)["rule"]) == (
                "quantity",
                "fok",
            ), r.text

            # cancel-all with filters
            ids = []
            for side, p in (("buy", px), ("buy", round(px - 0.2, 2)), ("sell", 50.0)):
                r = await e.call(
                    "POST",
                    "/orders",
                    {**good, "side": side, "price": p, "client_id": f"c-{side}-{p}"},
                )
                assert r.status_code == 201, r.text
                ids.append(r.json()["order_id"])
            r = await e.call("POST", "/orders", {**good, "client_id": ids[0]})
            assert r.status_code == 409 and err(r)["field"] == "client_id"
            r = await e.call("POST", "/orders/cancel-all", {"side": "buy"})
            assert sorted(x["order_id"] for x in r.json()["cancelled"]) == sorted(ids[:2])
            assert [x["order_id"] for x in (await e.get("/orders")).json()] == [ids[2]]
            r = await e.call("POST", "/orders/cancel-all", {"symbol": "NOPE"})
            assert r.status_code == 404
            r = await e.call("POST", "/orders/cancel-all", {"symbol": s})
            assert [x["order_id"] for x in r.json()["cancelled"]] == [ids[2]]
            assert len(book.orders(owner="api")) == 0

    run(main())


def test_order_lifting_the_quote_shows_in_fills_positions_greeks_pnl_risk(backend):
    async def main():
        async with environment(backend) as e:
            s = sym(100.0, True)
            q = e.engine.quotes(symbol=s)[0]
            assert q["ask_size"] >= 2
            r = await e.call(
                "POST",
                "/orders",
                {
                    "symbol": s,
                    "side": "buy",
                    "quantity": 2,
                    "price": q["ask"],
                    "time_in_force": "ioc",
                },
            )
            assert r.status_code == 201
            o = r.json()
            assert (o["state"], o["filled"], o["avg_price"]) == ("filled", 2.0, q["ask"])

            async def stored() -> bool:
                return len((await e.get("/fills")).json()["fills"]) >= 1

            await until(stored)
            (f,) = (await e.get("/fills")).json()["fills"]
            assert (f["instrument"], f["side"], f["quantity"]) == (s, "sell", 2)
            assert Decimal(f["price"]) == Decimal(str(q["ask"]))
            (rec,) = await e.store.get_fills()
            assert rec.price == Decimal(f["price"]) and rec.id == f["id"]

            pos = {p["symbol"]: p for p in (await e.get("/mm/positions")).json()}
            assert pos[s]["quantity"] == -2.0
            assert pos[s]["avg_price"] == pytest.approx(q["ask"])

            # portfolio delta: the short calls (closed form at the reported IV) plus any hedge
            iv = q["iv"]
            unit = bsm(100.0, 100.0, T30, RATE, DIV, iv, True)
            hedge = pos.get("XYZ", {"quantity": 0.0})["quantity"]
            g = (await e.get("/mm/greeks")).json()
            want = -2.0 * XYZ.multiplier * unit["delta"] + hedge
            assert g["total"]["delta"] == pytest.approx(want, rel=1e-6)
            assert g["by_underlying"]["XYZ"]["delta"] == pytest.approx(want, rel=1e-6)
            assert g["total"]["vega"] == pytest.approx(-2.0 * unit["vega"], rel=1e-6)
            # the common-currency total: dollar delta = delta x S, dollar gamma = gamma S^2 / 100
            td = g["total_dollar"]
            assert td["dollar_delta"] == pytest.approx(want * 100.0, rel=1e-6)
            want_g = -2.0 * XYZ.multiplier * unit["gamma"] * 100.0**2 / 100.0
            assert td["dollar_gamma"] == pytest.approx(want_g, rel=1e-6)
            (per_exp,) = g["by_expiry"]["XYZ"].values()
            assert per_exp["gamma"] == pytest.approx(-2.0 * unit["gamma"], rel=1e-6)

            # sold 2 at the ask, marked at theo (= the closed form at the reported IV): the
            # unrealised PnL and the spread capture are both 2 x (ask - theo) x multiplier
            edge = 2.0 * (q["ask"] - unit["price"]) * XYZ.multiplier
            p = (await e.get("/mm/pnl")).json()
            assert p["realised"] == 0.0 and p["fees"] == 0.0
            assert p["unrealised"] == pytest.approx(edge, rel=1e-9)
            assert p["attribution"]["spread"] == pytest.approx(edge, rel=1e-9)
            assert p["total"] == pytest.approx(p["realised"] + p["unrealised"] - p["fees"])
            attr = (await e.get("/mm/pnl/attribution")).json()
            assert attr == p["attribution"]
            assert set(attr) >= {"spread", "delta", "gamma", "vega", "theta", "residual"}

            util = (await e.get("/risk/utilisation")).json()
            assert util["XYZ"]["delta"] == pytest.approx(abs(want) / LIMITS["XYZ"]["delta"])
            limits = (await e.get("/risk/limits")).json()
            assert limits["XYZ"]["delta"] == LIMITS["XYZ"]["delta"]
            br = (await e.get("/risk/breaker")).json()
            assert br["breakers"] == {"XYZ": "active"} and br["kill_switch"] is False
            e.engine.events.publish(
                AlertTriggered(severity="warning", kind="test_alert", message="from the test")
            )
            alerts = (await e.get("/risk/alerts")).json()
            assert alerts[-1]["kind"] == "test_alert" and alerts[-1]["severity"] == "warning"
            assert alerts[-1]["message"] == "from the test"
            assert (await e.get("/mm/stats")).json()["fills"] >= 1

    run(main())


# ---------------------------------------------------------------- store-backed history


def _fill(i: int, instrument: str, ts: int) -> FillRecord:
    return FillRecord(
        f"t{i}",
        f"o{i}",
        instrument,
        "buy" if i % 2 else "sell",
        Decimal("1.25") + i,
        1 + i,
        Decimal("0.01"),
        ts,
        ts + 5,
    )


def test_fills_paging_and_filters(backend):
    async def main():
        async with environment(backend) as e:
            a, b = sym(95.0, True), sym(105.0, False)
            fills = [_fill(i, a if i % 3 else b, 1_000 + 10 * i) for i in range(7)]
            await e.store.save_fills(fills)
            everything = (await e.get("/fills", params={"limit": 1000})).json()
            assert everything["next_cursor"] is None
            assert [f["trade_id"] for f in everything["fills"]] == [f.trade_id for f in fills]
            first = everything["fills"][0]
            assert (first["price"], first["fee"], first["quantity"]) == ("1.25", "0.01", 1)

            pages, cursor = [], None
            while True:
                params = {"limit": 3} if cursor is None else {"limit": 3, "cursor": cursor}
                page = (await e.get("/fills", params=params)).json()
                pages.append([f["trade_id"] for f in page["fills"]])
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert pages == [["t0", "t1", "t2"], ["t3", "t4", "t5"], ["t6"]]
            page = (await e.get("/fills", params={"offset": 2, "limit": 2})).json()
            assert [f["trade_id"] for f in page["fills"]] == ["t2", "t3"]
            page = (await e.get("/fills", params={"symbol": b})).json()
            assert [f["trade_id"] for f in page["fills"]] == ["t0", "t3", "t6"]
            page = (await e.get("/fills", params={"from_ns": 1_020, "to_ns": 1_050})).json()
            assert [f["trade_id"] for f in page["fills"]] == ["t2", "t3", "t4"]

            for params, field in (
                ({"limit": 1001}, "limit"),
                ({"limit": 0}, "limit"),
                ({"cursor": 1, "offset": 1}, "offset"),
                ({"from_ns": -1}, "from_ns"),
                ({"cursor": "x"}, "cursor"),
            ):
                r = await e.get("/fills", params=params)
                assert r.status_code == 422 and err(r)["field"] == field, (params, r.text)

    run(main())


def test_pnl_history_from_the_store(backend):
    async def main():
        async with environment(backend) as e:
            d0 = dt.date(2026, 3, 1)
            for k in range(3):
                for book in ("XYZ", "*"):
                    await e.store.save_daily_pnl(
                        DailyPnl(
                            d0 + dt.timedelta(days=k),
                            book,
                            Decimal(k) + Decimal("0.5"),
                            Decimal("-1"),
                            Decimal("0.25"),
                            delta_pnl=Decimal(k),
                        )
                    )
            r = await e.get(
                "/mm/pnl/history", params={"from_day": "2026-03-01", "to_day": "2026-03-02"}
            )
            rows = r.json()
            assert [(x["day"], x["book"]) for x in rows] == [
                ("2026-03-01", "*"),
                ("2026-03-01", "XYZ"),
                ("2026-03-02", "*"),
                ("2026-03-02", "XYZ"),
            ]
            assert (rows[2]["realised"], rows[2]["delta_pnl"]) == ("1.5", "1")
            r = await e.get(
                "/mm/pnl/history",
                params={"from_day": "2026-03-01", "to_day": "2026-03-31", "book": "XYZ"},
            )
            assert [x["day"] for x in r.json()] == ["2026-03-01", "2026-03-02", "2026-03-03"]
            r = await e.get(
                "/mm/pnl/history", params={"from_day": "2026-03-05", "to_day": "2026-03-01"}
            )
            assert r.status_code == 422 and err(r)["field"] == "from_day"
            r = await e.get(
                "/mm/pnl/history", params={"from_day": "2024-01-01", "to_day": "2026-03-01"}
            )
            assert r.status_code == 422 and err(r)["rule"] == "range"
            r = await e.get("/mm/pnl/history", params={"to_day": "March"})
            assert r.status_code == 422 and err(r)["field"] == "to_day"

    run(main())


def test_store_routes_without_a_store_are_404():
    async def main():
        async with environment() as e:
            for path in ("/fills", "/mm/pnl/history", "/mm/config/history"):
                r = await e.get(path)
                assert r.status_code == 404 and err(r)["rule"] == "no_store", path

    run(main())
