"""The API served from its own thread (``jaxmm.api._threaded``), over real TCP.

What is checked: the views answered on the API thread are the engine's own rows (compared with
``engine.quotes()`` / ``positions()`` read on the engine's loop, and with the single-loop app
serving the same engine); a change made through the API is in the views before its response
arrives (read-your-writes); a snapshot is always a whole engine step; errors, authentication and
the per-subject rate limit are the same on both threads; the WebSocket stream carries the
engine's own sequence numbers and replays from them; stopping leaves nothing registered on the
engine. The GET/POST split is observed through the front's count of requests handed to the
engine's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sys
import threading

import httpx
import pytest
import websockets
from _wsserver import recv_events, subscribe

from jaxmm._live import bind_socket, run_live
from jaxmm.api import ApiSettings, create_app, mint_token
from jaxmm.api._process import ApiProcess
from jaxmm.api._threaded import ApiThread, ViewSnapshots
from jaxmm.engine import MarketMakerConfig, OptionsMarketMaker, UnderlyingConfig
from jaxmm.feeds import SurfaceUpdate

SECRET = "threaded-secret-" + "0123456789abcdef" * 2
T30 = 30 / 365
STRIKES = [95.0, 100.0, 105.0]
CLOCK_NS = 1_767_225_600_000_000_000
CONFIG = MarketMakerConfig(
    underlyings=[
        UnderlyingConfig(symbol="XYZ", spot=100.0, strikes=STRIKES, expiries=[T30, 2 * T30],
                         hedge_band=50.0, tick=0.01),
    ],
    limits={"XYZ": {"delta": 500.0, "gamma": 50.0, "vega": 5000.0, "theta": 50000.0}},
)  # fmt: skip


RELAY = functools.partial(ApiProcess, stream="api")  # the API process serves the stream too
LAYOUTS = [
    pytest.param(ApiThread, id="thread"),
    pytest.param(ApiProcess, id="process"),  # the stream handed to the engine's process
    pytest.param(RELAY, id="process-relay"),
]


async def feed(engine, spot: float) -> None:
    await engine.on_price("XYZ", spot, CLOCK_NS)
    await engine.on_surface(
        SurfaceUpdate("XYZ", [T30, 2 * T30], STRIKES, [[0.2] * 3] * 2, spot, CLOCK_NS, CLOCK_NS)
    )


class Served:
    def __init__(self, engine, api, port: int, token: str, main) -> None:
        self.engine, self.api, self.port, self.token, self.main = engine, api, port, token, main
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
        )
        self.single = httpx.AsyncClient(  # the same engine through the single-loop app
            transport=httpx.ASGITransport(app=main),
            base_url="http://test/api/v1",
            headers={"Authorization": f"Bearer {token}"},
        )


@contextlib.asynccontextmanager
async def serving(layout=ApiThread, **settings):
    """A started engine, its app served by ``layout`` (ApiThread, ApiProcess or RELAY) on a
    free port; everything stopped and closed on the way out."""
    engine = OptionsMarketMaker(CONFIG, clock=lambda: CLOCK_NS)
    await engine.start()
    await feed(engine, 100.0)
    kw = {"jwt_secret": SECRET, "rate_limit_per_s": 1e6, "rate_limit_burst": 10**6, **settings}
    main = create_app(engine, settings=ApiSettings(**kw))
    sock, _ = bind_socket("127.0.0.1", 0)
    api = layout(main, sock)
    await api.start()
    token = mint_token("tester", ["read", "trade", "admin"], 600, SECRET)
    s = Served(engine, api, sock.getsockname()[1], token, main)
    try:
        yield s
    finally:
        await s.client.aclose()
        await s.single.aclose()
        await s.api.stop()
        sock.close()
        await engine.stop()


def run(coro) -> None:
    asyncio.run(asyncio.wait_for(coro, 120))


def handed(api) -> int:
    """Requests run by the main app on the engine's loop (not answered by the front)."""
    return api.proxied if isinstance(api, ApiProcess) else api.front.bridged


@pytest.mark.parametrize("layout", LAYOUTS)
def test_views_are_the_engines_rows_and_a_change_is_read_back_at_once(layout):
    async def main():
        async with serving(layout) as s:
            e = s.engine
            r = await s.client.get("/mm/quotes")
            assert r.status_code == 200
            assert r.json() == e.quotes() and len(r.json()) == 12
            assert r.content == (await s.single.get("/mm/quotes")).content  # byte for byte
            for q in ("?underlying=XYZ", f"?expiry={2 * T30!r}", f"?underlying=XYZ&expiry={T30!r}"):
                got = (await s.client.get("/mm/quotes" + q)).json()
                assert got == (await s.single.get("/mm/quotes" + q)).json() and got, q
            assert (await s.client.get("/mm/positions")).json() == e.positions() == []
            assert handed(s.api) == 0  # all of that answered by the front
            before = {q["symbol"]: q["theo"] for q in e.quotes()}

            # a change through the API (run on the engine's loop) is in the views at once
            r = await s.client.post("/mm/price", json={"underlying": "XYZ", "price": 103.0})
            assert r.status_code == 200, r.text
            assert "x-jaxmm-view-serial" not in r.headers  # between the processes only
            assert handed(s.api) == 1
            if layout is ApiThread:  # the new snapshot's body was made before any read of it
                ctx = s.api.front.local.state.ctx
                for _ in range(200):
                    if ctx.quotes_json_version == s.api.views.current.quotes_version:
                        break
                    await asyncio.sleep(0.01)
                assert ctx.quotes_json_version == s.api.views.current.quotes_version
            got = (await s.client.get("/mm/quotes")).json()
            assert got == e.quotes()
            assert all(q["theo"] != before[q["symbol"]] for q in got)

            sym = e.quotes()[0]["symbol"]
            r = await s.client.post(
                "/orders",
                json={"symbol": sym, "side": "buy", "quantity": 2, "order_type": "market"},
            )
            assert r.status_code == 201 and r.json()["filled"] == 2.0, r.text
            r = await s.client.get("/mm/positions")
            pos = r.json()
            assert pos == e.positions() and [p["symbol"] for p in pos] == [sym]
            assert r.content == (await s.single.get("/mm/positions")).content
            assert pos[0]["quantity"] == -2.0  # the market maker sold to us
            # the other routes are the main app's, on the engine's loop
            g = await s.client.get("/mm/greeks")
            assert g.status_code == 200 and g.json() == (await s.single.get("/mm/greeks")).json()
            assert handed(s.api) == 3
            page = await s.client.get(f"http://127.0.0.1:{s.port}/")  # the console page
            assert page.status_code == 200 and b"<html" in page.content.lower()
            assert page.headers["content-length"] == str(len(page.content))

    run(main())


def test_errors_auth_and_rate_limit_are_the_same_on_both_threads():
    async def main():
        async with serving(rate_limit_per_s=0.001, rate_limit_burst=3) as s:
            for path in ("/mm/quotes", "/mm/greeks"):  # answered here / on the engine's loop
                r = await s.client.get(path, headers={"Authorization": ""})
                assert r.status_code == 401 and r.json()["error"]["field"] == "authorization"
            r = await s.client.get("/mm/quotes?underlying=NOPE")
            single = await s.single.get("/mm/quotes?underlying=NOPE")
            assert r.status_code == 404 and r.json() == single.json()
            assert r.json()["error"]["field"] == "underlying"
            assert (await s.client.get("/mm/greeks")).status_code == 200
            # the three tokens of the bucket are spent (two requests here, one through the
            # single-loop app, which shares the limiter): the next is refused on either thread
            for path in ("/mm/quotes", "/mm/positions"):
                r = await s.client.get(path)
                assert r.status_code == 429 and r.json()["error"]["rule"] == "rate_limited", path
            r = await s.client.get("/mm/greeks")
            assert r.status_code == 429

    run(main())


def test_validation_errors_name_the_field():
    async def main():
        async with serving() as s:
            r = await s.client.get("/mm/quotes?expiry=-1")
            assert r.status_code == 422 and r.json()["error"]["field"] == "expiry"
            assert r.json() == (await s.single.get("/mm/quotes?expiry=-1")).json()

    run(main())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_stream_carries_the_engines_sequence_numbers_and_replays(layout):
    async def main():
        async with serving(layout) as s:
            url = f"ws://127.0.0.1:{s.port}/api/v1/mm/ws?token={s.token}"
            async with websockets.connect(url) as ws:
                ack = await subscribe(ws, types=["price_updated"])
                assert ack["type"] == "subscribed"
                for px in (101.0, 102.0):
                    r = await s.client.post("/mm/price", json={"underlying": "XYZ", "price": px})
                    assert r.status_code == 200
                got = await recv_events(ws, 2)
            hist = [ev for ev in s.engine.events.history() if ev.type == "price_updated"][
                -2:
            ]  # the engine's own events, stamped on its loop
            assert [f["seq"] for f in got] == [ev.seq for ev in hist]
            assert [f["event"]["price"] for f in got] == [101.0, 102.0]
            async with websockets.connect(url) as ws:  # reconnect: replay from last seen + 1
                await subscribe(ws, types=["price_updated"], from_seq=got[0]["seq"] + 1)
                again = await recv_events(ws, 1)
            assert again[0]["seq"] == got[1]["seq"] and again[0]["event"] == got[1]["event"]

    run(main())


def test_a_snapshot_is_a_whole_engine_step():
    async def main():
        engine = OptionsMarketMaker(CONFIG, clock=lambda: CLOCK_NS)
        await engine.start()
        await feed(engine, 100.0)
        views = ViewSnapshots(engine)
        views.start()
        try:
            first = views.current
            assert list(first.quotes) == engine.quotes()
            await engine.on_price("XYZ", 104.0, CLOCK_NS)  # one step, no suspension inside
            assert views.current is first  # not refreshed in the middle of the loop's step
            await asyncio.sleep(0)
            assert views.current is not first and list(views.current.quotes) == engine.quotes()
            snap = views.current
            views.refresh()
            assert views.current is snap  # nothing changed: the same snapshot
        finally:
            views.stop()
            await engine.stop()

    run(main())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_stop_leaves_nothing_on_the_engine_and_the_socket_closed(layout):
    async def main():
        async with serving(layout) as s:
            own = list(s.engine.events._callbacks)
            await s.client.get("/mm/quotes")
            folder = getattr(s.api, "_dir", None)  # the API process's Unix socket's
        ours = {s.api.views._on_event}
        if layout is RELAY:
            ours.add(s.api._ship_event)  # the events shipped to the API process
        assert s.engine.events._callbacks == [c for c in own if c[0] not in ours]
        assert len(s.engine.events._callbacks) == len(own) - len(ours)
        if layout is not ApiThread:
            assert s.api.process.returncode == 0 and not os.path.exists(folder)
            assert s.api._handoff is None
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as c:
                await c.get(f"http://127.0.0.1:{s.port}/api/v1/health")

    run(main())


@pytest.mark.parametrize("layout", ["thread", "loop"])
def test_run_live_serves_either_way_and_restores_the_switch_interval(layout):
    before = sys.getswitchinterval()
    seen = {}

    def on_ready(session):
        async def probe():
            async with httpx.AsyncClient(base_url=session.base_url) as c:
                seen["health"] = (await c.get("api/v1/health")).json()
                seen["quotes"] = (await c.get("api/v1/mm/quotes")).status_code
                seen["switch"] = sys.getswitchinterval()
            session.stop()

        session.loop.create_task(probe())

    cfg = MarketMakerConfig(underlyings=[CONFIG.underlyings[0]])
    s = asyncio.run(
        run_live(cfg, seconds=60.0, settings=ApiSettings(auth_disabled=True), port=0,
                 on_ready=on_ready, layout=layout, switch_interval_s=0.0002)
    )  # fmt: skip
    assert seen["health"]["status"] == "ok" and seen["quotes"] == 200
    assert isinstance(s.api, ApiThread) if layout == "thread" else s.api is None
    assert seen["switch"] == pytest.approx(0.0002 if layout == "thread" else before)
    assert sys.getswitchinterval() == before and s.stop_reason == "stop()"
    with pytest.raises(ValueError, match="switch_interval_s"):
        asyncio.run(run_live(cfg, seconds=1.0, switch_interval_s=0.0))
    with pytest.raises(ValueError, match="layout: must be one of process, relay, thread, loop"):
        asyncio.run(run_live(cfg, seconds=1.0, layout="threads"))


def test_a_stream_handshake_goes_to_the_engines_loop_the_rest_to_the_api_thread():
    async def main():
        async with serving() as s:
            url = f"ws://127.0.0.1:{s.port}/api/v1/mm/ws?token={s.token}"
            async with websockets.connect(url) as ws:
                await subscribe(ws, types=["price_updated"])
                await s.client.post("/mm/price", json={"underlying": "XYZ", "price": 101.0})
                (frame,) = await recv_events(ws, 1)
            prices = [e for e in s.engine.events.history() if e.type == "price_updated"]
            assert frame["seq"] == prices[-1].seq and frame["event"]["price"] == 101.0
            assert s.api.routed == {"api": 1, "stream": 1}  # the httpx client's one connection

    run(main())


def _ws_frame(payload: bytes) -> bytes:
    """One masked client text frame (RFC 6455 5.2; payload < 126 bytes)."""
    mask = b"\x01\x02\x03\x04"
    return (
        bytes([0x81, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_stream_opened_on_an_http_connection_is_served(layout):
    """A client that upgrades a keep-alive connection that began with a REST request (the API
    thread has it) still gets the stream, run on the engine's loop frame by frame; the API
    process serving the stream itself (RELAY) serves it as any other stream; the API process
    that hands streams to the engine's process refuses it with a 400 that says why."""

    async def main():
        async with serving(layout) as s:
            r, w = await asyncio.open_connection("127.0.0.1", s.port)
            w.write(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await r.readuntil(b"\r\n\r\n")
            length = int(
                next(
                    h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")
                ).split(b":")[1]
            )
            assert b" 200 " in head.split(b"\r\n")[0] and (await r.readexactly(length))
            w.write(
                f"GET /api/v1/mm/ws?token={s.token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            head = await r.readuntil(b"\r\n\r\n")
            if layout is ApiProcess:  # refused by the API process: the stream is the engine's
                assert b" 400 " in head.split(b"\r\n")[0], head
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                error = json.loads(await r.readexactly(length))["error"]
                assert error["field"] == "connection" and error["rule"] == "new_connection"
                assert handed(s.api) == 1 and s.api.streams_taken == 0  # /health only
                w.close()
                await w.wait_closed()
                return
            assert b" 101 " in head.split(b"\r\n")[0], head
            w.write(
                _ws_frame(json.dumps({"op": "subscribe", "types": ["config_changed"]}).encode())
            )
            while True:
                b0, b1 = await r.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    n = int.from_bytes(await r.readexactly(2), "big")
                frame = json.loads(await r.readexactly(n))
                if frame.get("type") != "heartbeat":
                    break
            assert b0 == 0x81 and frame["type"] == "subscribed"
            if layout is ApiThread:
                assert s.api.routed == {"api": 1, "stream": 0}
                assert handed(s.api) == 2  # /health, then the WebSocket: on the engine's loop
            else:
                assert handed(s.api) == 1  # /health; the stream is the API process's own
            w.close()
            await w.wait_closed()

    run(main())


def test_first_bytes_waits_for_the_path_and_gives_up_on_silence():
    from jaxmm.api._threaded import _first_bytes, _goes_to_engine

    async def main():
        listener, _ = bind_socket("127.0.0.1", 0)
        loop = asyncio.get_running_loop()
        try:
            port = listener.getsockname()[1]
            _, w = await asyncio.open_connection("127.0.0.1", port)
            conn, _ = await loop.sock_accept(listener)
            w.write(b"GET /api/v1")  # the path arrives in two segments
            await w.drain()
            task = asyncio.create_task(_first_bytes(conn, 5.0))
            await asyncio.sleep(0.02)
            assert not task.done()
            w.write(b"/mm/ws?token=x HTTP/1.1\r\n")
            first = await task
            assert _goes_to_engine(first)
            assert conn.recv(100) == b"GET /api/v1/mm/ws?token=x HTTP/1.1\r\n"  # left in place
            _, w2 = await asyncio.open_connection("127.0.0.1", port)
            conn2, _ = await loop.sock_accept(listener)
            assert await _first_bytes(conn2, 0.05) == b""  # said nothing in time
            for c, ww in ((conn, w), (conn2, w2)):
                c.close()
                ww.close()
                with contextlib.suppress(OSError):
                    await ww.wait_closed()
        finally:
            listener.close()

    run(main())
    assert not _goes_to_engine(b"GET /api/v1/mm/wsx HTTP/1.1")
    assert not _goes_to_engine(b"POST /api/v1/mm/ws HTTP/1.1")
    assert not _goes_to_engine(b"GET /api/v1/mm/quotes HTTP/1.1")
    assert _goes_to_engine(b"GET /api/v1/mm/ws HTTP/1.1")


def test_an_accept_error_is_retried_not_fatal(monkeypatch, caplog):
    import errno
    from asyncio import selector_events

    real = selector_events.BaseSelectorEventLoop.sock_accept
    failed = []

    async def flaky(self, sock):
        if not failed and threading.current_thread().name == "jaxmm-api":
            failed.append(1)
            raise OSError(errno.EMFILE, "Too many open files")
        return await real(self, sock)

    monkeypatch.setattr(selector_events.BaseSelectorEventLoop, "sock_accept", flaky)

    async def main():
        async with serving() as s:
            r = await s.client.get("/mm/quotes")  # accepted after the failed accept
            assert r.status_code == 200 and failed == [1]

    run(main())
    assert any("accept failed" in r.getMessage() for r in caplog.records)


def test_wait_ends_when_the_stream_server_fails():
    async def main():
        async def down():
            await asyncio.sleep(0.05)
            raise RuntimeError("stream server down")

        async with serving() as s:
            real = s.api._stream_task
            s.api._stream_task = asyncio.create_task(down())  # as if its serve() had failed
            try:
                with pytest.raises(RuntimeError, match="stream server down"):
                    await asyncio.wait_for(s.api.wait(), 10)
            finally:
                s.api._stream_task = real

    run(main())
