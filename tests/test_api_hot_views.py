"""``jaxmm.api._threaded.HotViews``: the common view read answered without FastAPI's stack.

What is checked, over a started engine's snapshot (the API thread's and the API process's view
app): the request HotViews answers itself gets the very answer the view app gives (status, every
header in order, body), and the app is not called for it; every other request (no or bad
token, a scope without ``read``, a query, ``HEAD``, an ``Origin`` header, local mode, two
``Authorization`` headers) reaches the app and gets the app's answer; a rate-limited subject is
counted once. A property test sends the same generated request to HotViews and to the view app
alone and requires the same answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_api_threaded import CLOCK_NS, CONFIG, T30, feed  # the same small engine

from jaxmm.api import ApiSettings, mint_token
from jaxmm.api._auth import TokenBucketLimiter
from jaxmm.api._threaded import HotViews, ViewSnapshots, _SnapshotEngine, view_app
from jaxmm.engine import OptionsMarketMaker

SECRET = "hot-views-secret-" + "0123456789abcdef" * 2
READ = mint_token("reader", "read", 600, SECRET)
TRADE_ONLY = mint_token("trader", "trade", 600, SECRET)
EXPIRED = mint_token("late", "read", 60, SECRET, now=time.time() - 600)  # expired 9 min ago


class Counting:
    """The view app, counting the requests that reach it."""

    def __init__(self, app) -> None:
        self.app, self.calls = app, 0

    @property
    def state(self):
        return self.app.state

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def _views(**kw):
    """A started engine, its snapshot views, and HotViews over a counting view app (settings
    ``kw``); the engine is stopped on the way out."""
    engine = OptionsMarketMaker(CONFIG, clock=lambda: CLOCK_NS)
    await engine.start()
    try:
        await feed(engine, 100.0)
        views = ViewSnapshots(engine)
        views.refresh()
        s = ApiSettings(**{"jwt_secret": SECRET, "rate_limit_per_s": 1e6,
                           "rate_limit_burst": 10**6, **kw})  # fmt: skip
        limiter = TokenBucketLimiter(s.rate_limit_per_s, s.rate_limit_burst)
        app = Counting(view_app(_SnapshotEngine(engine, views), s, limiter))
        yield engine, HotViews(app), app
    finally:
        await engine.stop()


async def _warm(hot, app) -> None:
    """One common read of each route: the app answers it and HotViews keeps its headers, so
    from here on HotViews answers the common read itself; the app's count starts at 0."""
    for path in ("/api/v1/mm/quotes", "/api/v1/mm/positions"):
        await _answer(hot, "GET", path, [("Authorization", f"Bearer {READ}")])
    assert len(hot._headers) == 2
    app.calls = 0


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def _answer(app, method: str, url: str, headers: list[tuple[str, str]]):
    async with _client(app) as c:
        r = await c.request(method, url, headers=headers)
    return r.status_code, r.headers.raw, r.content


def run(coro) -> None:
    asyncio.run(asyncio.wait_for(coro, 120))


def test_the_common_read_is_answered_here_exactly_as_the_app_answers_it():
    async def main():
        async with _views() as (engine, hot, app):
            auth = [("Authorization", f"Bearer {READ}")]
            for path in ("/api/v1/mm/quotes", "/api/v1/mm/positions"):
                calls = app.calls
                first = await _answer(hot, "GET", path, auth)  # the app's: its headers kept
                assert app.calls == calls + 1, path
                mine = await _answer(hot, "GET", path, auth)
                assert app.calls == calls + 1, path  # answered without the app
                theirs = await _answer(app, "GET", path, auth)
                assert mine == theirs == first and mine[0] == 200, path
                assert (b"vary", b"Origin") in mine[1]  # the CORS middleware's, kept
            status, headers, body = await _answer(hot, "GET", "/api/v1/mm/quotes", auth)
            assert len(json.loads(body)) == 12
            assert dict(headers)[b"content-length"] == str(len(body)).encode()

    run(main())


@pytest.mark.parametrize(
    "url, headers, status",
    [
        ("/api/v1/mm/quotes", [], 401),
        ("/api/v1/mm/quotes", [("Authorization", "Bearer not-a-jwt")], 401),
        ("/api/v1/mm/quotes", [("Authorization", f"Bearer {EXPIRED}")], 401),
        ("/api/v1/mm/quotes", [("Authorization", f"Basic {READ}")], 401),
        ("/api/v1/mm/positions", [("Authorization", f"Bearer {TRADE_ONLY}")], 403),
        ("/api/v1/mm/quotes?underlying=XYZ", [("Authorization", f"Bearer {READ}")], 200),
        ("/api/v1/mm/quotes?underlying=NOPE", [("Authorization", f"Bearer {READ}")], 404),
        ("/api/v1/mm/quotes", [("Authorization", f"Bearer {READ}"), ("Origin", "http://a")], 200),
        (
            "/api/v1/mm/quotes",
            [("Authorization", f"Bearer {READ}"), ("Authorization", f"Bearer {TRADE_ONLY}")],
            200,
        ),
    ],
)
def test_every_other_request_reaches_the_app_and_gets_its_answer(url, headers, status):
    async def main():
        async with _views(cors_origins=["http://a"]) as (engine, hot, app):
            await _warm(hot, app)
            mine = await _answer(hot, "GET", url, headers)
            assert app.calls == 1  # the app answered
            assert mine[0] == status, mine
            theirs = await _answer(app, "GET", url, headers)
            assert mine == theirs
            if ("Origin", "http://a") in headers:  # the app's CORS middleware answered
                assert (b"access-control-allow-origin", b"http://a") in mine[1]

    run(main())


def test_head_and_local_mode_go_to_the_app():
    async def main():
        async with _views() as (engine, hot, app):
            await _warm(hot, app)
            r = await _answer(
                hot, "HEAD", "/api/v1/mm/quotes", [("Authorization", f"Bearer {READ}")]
            )
            assert app.calls == 1 and r == await _answer(
                app, "HEAD", "/api/v1/mm/quotes", [("Authorization", f"Bearer {READ}")]
            )
        async with _views(auth_disabled=True) as (engine, hot, app):
            for _ in range(2):  # never learned, never answered here: the app, every time
                status, headers, _ = await _answer(hot, "GET", "/api/v1/mm/quotes", [])
            assert status == 200 and app.calls == 2 and not hot._headers
            # the app adds local mode's header
            assert any(k == b"x-jaxmm-auth" for k, _ in headers)

    run(main())


def test_a_rate_limited_subject_is_counted_once_and_refused_by_the_app():
    async def main():
        async with _views(rate_limit_per_s=0.001, rate_limit_burst=2) as (engine, hot, app):
            auth = [("Authorization", f"Bearer {READ}")]
            for _ in range(2):  # the bucket's two tokens, each taken once: by the app, then here
                assert (await _answer(hot, "GET", "/api/v1/mm/quotes", auth))[0] == 200
            assert app.calls == 1
            tokens, _ = hot.state.limiter._buckets["reader"]
            assert tokens == pytest.approx(0.0, abs=1e-3)
            status, headers, body = await _answer(hot, "GET", "/api/v1/mm/quotes", auth)
            assert status == 429 and app.calls == 2
            assert b"rate_limited" in body and any(k == b"retry-after" for k, _ in headers)
            tokens_after, _ = hot.state.limiter._buckets["reader"]
            assert tokens_after < 1.0  # nothing taken by the refused request, here or there

    run(main())


_HEADERS = st.lists(
    st.sampled_from(
        [
            ("Authorization", f"Bearer {READ}"),
            ("Authorization", f"bearer {READ}"),
            ("Authorization", f"Bearer  {READ}"),
            ("Authorization", f"Bearer {TRADE_ONLY}"),
            ("Authorization", f"Bearer {EXPIRED}"),
            ("Authorization", "Bearer"),
            ("Authorization", ""),
            ("Origin", "http://a"),
            ("Origin", "http://elsewhere"),
            ("Accept", "application/json"),
            ("X-Forwarded-For", "10.0.0.1"),
        ]
    ),
    max_size=4,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "GET", "HEAD", "POST"]),
    path=st.sampled_from(["/api/v1/mm/quotes", "/api/v1/mm/positions", "/api/v1/mm/greeks"]),
    query=st.sampled_from(["", "?underlying=XYZ", f"?expiry={T30!r}", "?x=1"]),
    headers=_HEADERS,
)
def test_hot_views_answer_every_request_as_the_app_alone_does(method, path, query, headers):
    async def main():
        async with _views(cors_origins=["http://a"]) as (engine, hot, app):
            await _warm(hot, app)
            mine = await _answer(hot, method, path + query, headers)
            here = app.calls == 0
            theirs = await _answer(app, method, path + query, headers)
            assert mine == theirs
            names = [k for k, _ in headers]
            view_get = method == "GET" and path != "/api/v1/mm/greeks" and not query
            plain = view_get and "Origin" not in names and names.count("Authorization") == 1
            if plain and (("Authorization", f"Bearer {READ}") in headers):
                assert here  # the common read: answered here
            if here:
                assert plain and mine[0] == 200

    run(main())


def test_prepare_serialises_a_new_snapshot_before_any_read():
    async def main():
        async with _views() as (engine, hot, app):
            ctx = hot.state.ctx
            hot.prepare()
            assert ctx.quotes_json_version == engine.quotes_version()
            old = ctx.quotes_json[(None, None)]
            await engine.on_price("XYZ", 103.0, CLOCK_NS + 1)  # new quotes, a new snapshot
            views = ctx.engine._views
            views.refresh()
            assert ctx.quotes_json_version != engine.quotes_version()  # not read yet
            hot.prepare()
            assert ctx.quotes_json_version == engine.quotes_version()
            body = ctx.quotes_json[(None, None)]
            assert body != old and json.loads(body) == engine.quotes()
            await _warm(hot, app)
            _, _, served = await _answer(
                hot, "GET", "/api/v1/mm/quotes", [("Authorization", f"Bearer {READ}")]
            )
            assert served == body and app.calls == 0
            assert ctx.quotes_json[(None, None)] is body  # served from it, not made again

    run(main())
