"""The API served from a process of its own (``jaxmm.api._process``), over real TCP.

What is checked: the views answered by the API process are the engine's own rows (compared with
``engine.quotes()`` / ``positions()`` read in the engine's process, and byte for byte with the
single-loop app serving the same engine); a change made through the API is in the views before
its response arrives (read-your-writes across the two processes); errors and authentication are
the main app's on both sides, and the per-subject rate limit is counted once, in the API
process; the event stream served by the API process carries the engine's events (its sequence
numbers, replay reaching back before the process started); stopping ends the process and leaves
nothing behind; a process that dies ends ``wait``. Which side answered is observed through the
engine side's counters (``proxied``, ``serial``, ``events``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import httpx
import pytest
import websockets
from _wsserver import recv_events, subscribe
from test_api_threaded import CLOCK_NS, CONFIG, SECRET, T30, feed

from jaxmm._live import bind_socket, run_live
from jaxmm.api import ApiProcess, ApiSettings, create_app, mint_token
from jaxmm.engine import MarketMakerConfig, OptionsMarketMaker


class Served:
    def __init__(self, engine, api: ApiProcess, port: int, token: str, main) -> None:
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
async def serving(**settings):
    """A started engine, its app served by an ApiProcess on a free port; everything stopped
    and closed on the way out."""
    engine = OptionsMarketMaker(CONFIG, clock=lambda: CLOCK_NS)
    await engine.start()
    await feed(engine, 100.0)
    kw = {"jwt_secret": SECRET, "rate_limit_per_s": 1e6, "rate_limit_burst": 10**6, **settings}
    main = create_app(engine, settings=ApiSettings(**kw))
    sock, _ = bind_socket("127.0.0.1", 0)
    api = ApiProcess(main, sock)
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
    asyncio.run(asyncio.wait_for(coro, 180))


def test_views_are_the_engines_rows_and_a_change_is_read_back_at_once():
    async def main():
        async with serving() as s:
            e = s.engine
            r = await s.client.get("/mm/quotes")
            assert r.status_code == 200
            assert r.json() == e.quotes() and len(r.json()) == 12
            assert r.content == (await s.single.get("/mm/quotes")).content  # byte for byte
            for q in ("?underlying=XYZ", f"?expiry={2 * T30!r}", f"?underlying=XYZ&expiry={T30!r}"):
                got = (await s.client.get("/mm/quotes" + q)).json()
                assert got == (await s.single.get("/mm/quotes" + q)).json() and got, q
            assert (await s.client.get("/mm/positions")).json() == e.positions() == []
            assert s.api.proxied == 0  # all of that answered in the API process
            before = {q["symbol"]: q["theo"] for q in e.quotes()}

            # a change (run in the engine's process) is in the API process's views at once
            serial = s.api.serial
            r = await s.client.post("/mm/price", json={"underlying": "XYZ", "price": 103.0})
            assert r.status_code == 200, r.text
            assert "x-jaxmm-view-serial" not in r.headers  # internal to the two processes
            assert s.api.proxied == 1 and s.api.serial > serial
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
            # the other routes are the main app's, in the engine's process: same bytes
            g = await s.client.get("/mm/greeks")
            assert g.status_code == 200 and g.content == (await s.single.get("/mm/greeks")).content
            assert s.api.proxied == 3
            page = await s.client.get(f"http://127.0.0.1:{s.port}/")  # the console page
            assert page.status_code == 200 and b"<html" in page.content.lower()
            assert page.headers["content-length"] == str(len(page.content))

    run(main())


def test_errors_and_auth_are_the_main_apps_and_the_rate_limit_is_counted_once():
    async def main():
        async with serving(rate_limit_per_s=0.001, rate_limit_burst=3) as s:
            for path in ("/mm/quotes", "/mm/greeks"):  # answered here / in the engine's process
                r = await s.client.get(path, headers={"Authorization": ""})
                assert r.status_code == 401 and r.json()["error"]["field"] == "authorization"
            r = await s.client.get("/mm/quotes?underlying=NOPE")  # checked against the config
            single = await s.single.get("/mm/quotes?underlying=NOPE")
            assert r.status_code == 404 and r.json() == single.json()
            r = await s.client.get("/mm/quotes?expiry=-1")
            assert r.status_code == 422 and r.json()["error"]["field"] == "expiry"
            # the bucket (3) is spent by the two requests above and one forwarded one; the
            # engine's own limiter did not count the forwarded one: its bucket is untouched
            assert (await s.client.get("/mm/greeks")).status_code == 200
            assert s.main.state.limiter.acquire("tester") == 0.0
            for path in ("/mm/quotes", "/mm/greeks"):
                r = await s.client.get(path)
                assert r.status_code == 429 and r.json()["error"]["rule"] == "rate_limited", path
                assert int(r.headers["retry-after"]) >= 1

    run(main())


def test_a_rejected_change_leaves_the_views_as_they_were():
    async def main():
        async with serving() as s:
            before = (await s.client.get("/mm/quotes")).content
            r = await s.client.post("/mm/price", json={"underlying": "XYZ", "price": -5.0})
            assert r.status_code == 422 and r.json()["error"]["field"] == "price"
            assert (await s.client.get("/mm/quotes")).content == before

    run(main())


def test_stream_carries_the_engines_events_and_replays_from_its_history():
    async def main():
        async with serving() as s:
            before = s.engine.events.last_seq  # published before the API process started
            assert before > 0 and s.api.events >= before
            url = f"ws://127.0.0.1:{s.port}/api/v1/mm/ws?token={s.token}"
            async with websockets.connect(url) as ws:  # replay of what came before the start
                await subscribe(ws, from_seq=before)  # the first sequence number wanted
                (old,) = await recv_events(ws, 1)
            assert old["seq"] == before
            assert old["event"] == s.engine.events.history()[-1].model_dump(mode="json")
            async with websockets.connect(url) as ws:
                ack = await subscribe(ws, types=["price_updated"])
                assert ack["type"] == "subscribed"
                for px in (101.0, 102.0):
                    r = await s.client.post("/mm/price", json={"underlying": "XYZ", "price": px})
                    assert r.status_code == 200
                got = await recv_events(ws, 2)
            hist = [ev for ev in s.engine.events.history() if ev.type == "price_updated"][-2:]
            assert [f["seq"] for f in got] == [ev.seq for ev in hist]  # the engine's numbers
            assert [f["event"]["price"] for f in got] == [101.0, 102.0]
            async with websockets.connect(url) as ws:  # reconnect: replay from last seen + 1
                await subscribe(ws, types=["price_updated"], from_seq=got[0]["seq"] + 1)
                again = await recv_events(ws, 1)
            assert again[0]["seq"] == got[1]["seq"] and again[0]["event"] == got[1]["event"]

    run(main())


def test_a_stream_opened_on_an_http_connection_is_served_too():
    async def main():
        async with serving() as s:
            r, w = await asyncio.open_connection("127.0.0.1", s.port)
            w.write(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await r.readuntil(b"\r\n\r\n")
            assert b" 200 " in head.split(b"\r\n")[0]
            length = int(
                next(
                    h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")
                ).split(b":")[1]
            )
            await r.readexactly(length)
            w.write(
                f"GET /api/v1/mm/ws?token={s.token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            head = await r.readuntil(b"\r\n\r\n")
            assert b" 101 " in head.split(b"\r\n")[0], head
            assert s.api.proxied == 1  # /health; the stream is the API process's own
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()

    run(main())


def test_stop_ends_the_process_and_leaves_nothing_behind():
    async def main():
        async with serving() as s:
            own = list(s.engine.events._callbacks)
            await s.client.get("/mm/quotes")
            folder = s.api._dir
            assert os.path.isdir(folder)
        assert s.api.process.returncode == 0
        assert not os.path.exists(folder)
        assert len(s.engine.events._callbacks) == len(own) - 2  # the views' and the shipper
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as c:
                await c.get(f"http://127.0.0.1:{s.port}/api/v1/health")

    run(main())


def test_wait_raises_when_the_api_process_dies():
    async def main():
        async with serving() as s:
            os.kill(s.api.process.pid, signal.SIGKILL)
            with pytest.raises(RuntimeError, match="API process ended on its own"):
                await asyncio.wait_for(s.api.wait(), 30)

    run(main())


def test_run_live_serves_from_a_process():
    seen = {}

    def on_ready(session):
        async def probe():
            async with httpx.AsyncClient(base_url=session.base_url) as c:
                seen["health"] = (await c.get("api/v1/health")).json()
                seen["quotes"] = (await c.get("api/v1/mm/quotes")).json()
                seen["engine"] = session.engine.quotes()
            session.stop()

        session.loop.create_task(probe())

    cfg = MarketMakerConfig(underlyings=[CONFIG.underlyings[0]])
    s = asyncio.run(
        run_live(cfg, seconds=120.0, settings=ApiSettings(auth_disabled=True), port=0,
                 on_ready=on_ready, api_process=True)
    )  # fmt: skip
    assert seen["health"]["status"] == "ok" and seen["quotes"] == seen["engine"]
    assert isinstance(s.api, ApiProcess) and s.api.process.returncode == 0
    assert s.stop_reason == "stop()"


def test_an_api_process_that_stops_reading_is_killed_not_buffered_for():
    """The engine never holds more than ``max_unread_bytes`` for a hung API process: past it
    the process is killed and ``wait`` raises, the engine's loop unharmed."""
    from jaxmm.events import AlertTriggered

    async def main():
        async with serving() as s:
            s.api.max_unread_bytes = 64 * 1024
            os.kill(s.api.process.pid, signal.SIGSTOP)  # hung: reads nothing more
            try:
                for i in range(20_000):
                    s.engine.events.publish(
                        AlertTriggered(severity="info", kind="load", message=f"{i:>200}")
                    )
                    if i % 50 == 0:
                        await asyncio.sleep(0)  # let each burst be shipped
                    if s.api.process.poll() is not None:
                        break
                with pytest.raises(RuntimeError, match="API process ended on its own"):
                    await asyncio.wait_for(s.api.wait(), 30)
                assert s.api.process.returncode == -signal.SIGKILL
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(s.api.process.pid, signal.SIGCONT)

    run(main())
