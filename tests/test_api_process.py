"""The API served from a process of its own (``jaxmm.api._process``), over real TCP.

Checked for both layouts in test_api_threaded.py: the views, byte for byte, read-your-writes
across the two processes, the live stream and its replay, a stream on a keep-alive connection,
a clean stop. Checked here: errors and authentication are the main app's on both sides, and the
per-subject rate limit is counted once, in the API process; the stream replays from before the
process started; a process that dies, or stops reading, ends ``wait``. Which side answered is
observed through the engine side's counters (``proxied``, ``serial``, ``events``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import pickle
import signal
import struct

import httpx
import pytest
import websockets
from _wsserver import recv_events, subscribe
from test_api_threaded import CLOCK_NS, CONFIG, RELAY
from test_api_threaded import serving as _serving

from jaxmm._live import run_live
from jaxmm.api import ApiProcess, ApiSettings
from jaxmm.engine import MarketMakerConfig


def serving(**settings):
    """``test_api_threaded.serving`` with the API in a process of its own (the event stream
    handed to the engine's process, the default)."""
    return _serving(ApiProcess, **settings)


def relaying(**settings):
    """``serving`` with the event stream served by the API process (``stream="api"``: the
    engine ships it every event)."""
    return _serving(RELAY, **settings)


def run(coro) -> None:
    asyncio.run(asyncio.wait_for(coro, 180))


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


class _MarkedBodies(ApiProcess):
    """Ships every common-read body with a leading space (still the same JSON): an answer that
    has it was made from the engine's bytes, not serialised in the API process."""

    @staticmethod
    def _bodies(snap, last):
        return tuple(b and (b[0], b" " + b[1]) for b in ApiProcess._bodies(snap, last))


def test_the_common_reads_are_answered_with_the_bodies_the_engine_made():
    async def main():
        async with _serving(_MarkedBodies) as s:
            for step in range(2):
                for path in ("/mm/quotes", "/mm/positions"):
                    for _ in range(2):  # the app's first (learning) answer, then HotViews'
                        r = await s.client.get(path)
                        assert r.content == b" " + (await s.single.get(path)).content, path
                        assert int(r.headers["content-length"]) == len(r.content)
                q = "/mm/quotes?underlying=XYZ"  # a filtered read: serialised in the process
                assert (await s.client.get(q)).content == (await s.single.get(q)).content
                if step == 0:  # a new snapshot with new quotes and a position: new bodies
                    r = await s.client.post("/mm/price", json={"underlying": "XYZ", "price": 104.0})
                    assert r.status_code == 200, r.text
                    sym = s.engine.quotes()[0]["symbol"]
                    r = await s.client.post(
                        "/orders",
                        json={"symbol": sym, "side": "buy", "quantity": 1, "order_type": "market"},
                    )
                    assert r.status_code == 201, r.text
            assert (await s.client.get("/mm/positions")).json() == s.engine.positions() != []

    run(main())


def test_the_engine_ships_only_the_bodies_that_changed():
    async def main():
        async with serving() as s:
            views = s.api.views
            old = views.current
            q, p = ApiProcess._bodies(old, None)
            assert q == (old.quotes_version, (await s.single.get("/mm/quotes")).content)
            assert p == (old.positions_version, (await s.single.get("/mm/positions")).content)
            assert ApiProcess._bodies(old, old) == (None, None)
            r = await s.client.post("/mm/price", json={"underlying": "XYZ", "price": 97.0})
            assert r.status_code == 200, r.text
            new = views.current
            assert new.quotes_version != old.quotes_version
            q, p = ApiProcess._bodies(new, old)
            assert q == (new.quotes_version, (await s.single.get("/mm/quotes")).content)
            assert p is None and new.positions_version == old.positions_version

    run(main())


class _CountedWrites(ApiProcess):
    """Keeps every write to the API process, to see what one engine step ships and when."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.writes = []

    def _write(self, data):
        self.writes.append(data)
        super()._write(data)


def _shipped(data: bytes) -> list:
    """One write's messages, each as (kind, event types | snapshot number)."""
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from("!I", data, pos)
        kind, *rest = pickle.loads(data[pos + 4 : pos + 4 + n])
        out.append((kind, [e.type for e in rest[0]] if kind == "events" else rest[0]))
        pos += 4 + n
    return out


async def _step(s, price):
    """Writes during one engine step (a new price), and every write it caused (in order), with
    a ``_CountedWrites`` API."""
    n, serial = len(s.api.writes), s.api.serial
    await s.engine.on_price("XYZ", price, CLOCK_NS)
    during = len(s.api.writes) - n
    for _ in range(500):  # the snapshot, shipped after the step (nothing else runs)
        if s.api.serial > serial and s.api._held is None:
            break
        await asyncio.sleep(0.01)
    return during, [_shipped(w) for w in s.api.writes[n:]]


def test_relaying_a_step_is_one_write_to_the_api_process_unless_a_stream_is_open():
    async def until(cond):
        for _ in range(500):
            if cond():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the API process did not say")

    async def main():
        async with _serving(functools.partial(_CountedWrites, stream="api")) as s:
            # no stream open: nothing during the step, then its events and snapshot in one write
            during, writes = await _step(s, 101.0)
            assert during == 0 and len(writes) == 1, writes
            (events, types), (views, serial) = writes[0]
            assert (events, views, serial) == ("events", "views", s.api.serial)
            assert types[0] == "price_updated" and "quote_updated" in types
            url = f"ws://127.0.0.1:{s.port}/api/v1/mm/ws?token={s.token}"
            async with websockets.connect(url) as ws:
                await until(lambda: s.api._streams)
                await subscribe(ws, types=["price_updated"])
                # a stream open: the step's first event is written at once, inside the step
                during, writes = await _step(s, 102.0)
                assert during >= 1 and writes[0] == [("events", ["price_updated"])], writes
                assert writes[-1] == [("views", s.api.serial)]
                (frame,) = await recv_events(ws, 1)
                assert frame["event"]["price"] == 102.0
            await until(lambda: not s.api._streams)  # the last stream closed
            during, writes = await _step(s, 103.0)
            assert during == 0 and len(writes) == 1, writes
            # the views and the stream's replay are whole after all that
            assert (await s.client.get("/mm/quotes")).json() == s.engine.quotes()
            async with websockets.connect(url) as ws:
                await subscribe(ws, types=["price_updated"], from_seq=frame["seq"] + 1)
                (again,) = await recv_events(ws, 1)
            assert again["event"]["price"] == 103.0

    run(main())


def test_streams_are_handed_to_the_engines_process_and_a_step_is_one_write():
    """By default the API process hands each stream connection to the engine's process (its
    descriptor over a Unix socket, the handshake still unread in it): frames are written there,
    inside ``publish``, and the engine ships the API process no event at all, only each step's
    snapshot, in one write, stream open or not. Many handshakes at once are all taken; a stream
    still open when the service stops is closed by it."""

    async def main():
        async with _serving(_CountedWrites) as s:
            url = f"ws://127.0.0.1:{s.port}/api/v1/mm/ws?token={s.token}"
            streams = [await websockets.connect(url) for _ in range(3)]
            many = await asyncio.gather(*(websockets.connect(url) for _ in range(20)))
            acks = await asyncio.gather(*(subscribe(ws, types=["price_updated"]) for ws in many))
            assert {a["type"] for a in acks} == {"subscribed"}
            for ws in many:
                await ws.close()
            ws = streams[0]
            await subscribe(ws, types=["price_updated"])
            assert s.api.streams_taken == 23 and not s.api._streams
            during, writes = await _step(s, 102.0)
            assert during == 0 and writes == [[("views", s.api.serial)]], writes
            (frame,) = await recv_events(ws, 1)
            assert frame["event"]["price"] == 102.0
            prices = [e for e in s.engine.events.history() if e.type == "price_updated"]
            assert frame["seq"] == prices[-1].seq  # the engine's own sequence number
            assert s.api.events == 0  # nothing shipped for the stream
            # the REST reads are still the API process's, and equal to the engine's rows
            assert (await s.client.get("/mm/quotes")).json() == s.engine.quotes()
            assert s.api.proxied == 0
            # a reconnect replays from the engine's own history
            async with websockets.connect(url) as again:
                await subscribe(again, types=["price_updated"], from_seq=frame["seq"])
                (replayed,) = await recv_events(again, 1)
            assert replayed == frame
            open_at_stop = streams[1]
            await subscribe(open_at_stop, types=["price_updated"])
        # the service stopped with it open: closed, not left hanging
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(open_at_stop.recv(), 30)
        for ws in streams:
            await ws.close()

    run(main())


def test_a_stream_taken_by_the_engine_outlives_the_api_process():
    """A stream handed to the engine's process is the engine's: when the API process dies,
    ``wait`` raises as before, the engine stops listening for hand-overs (no reader left on a
    closed pair) and the open stream still gets its events."""

    async def main():
        async with serving() as s:
            url = f"ws://127.0.0.1:{s.port}/api/v1/mm/ws?token={s.token}"
            async with websockets.connect(url) as ws:
                await subscribe(ws, types=["price_updated"])
                assert s.api.streams_taken == 1
                os.kill(s.api.process.pid, signal.SIGKILL)
                with pytest.raises(RuntimeError, match="API process ended on its own"):
                    await asyncio.wait_for(s.api.wait(), 30)
                for _ in range(500):  # the pair's end seen: its reader removed, closed
                    if s.api._handoff is None:
                        break
                    await asyncio.sleep(0.01)
                assert s.api._handoff is None
                await s.engine.on_price("XYZ", 99.0, CLOCK_NS)
                (frame,) = await recv_events(ws, 1)
                assert frame["event"]["price"] == 99.0

    run(main())


def test_a_rejected_change_leaves_the_views_as_they_were():
    async def main():
        async with serving() as s:
            before = (await s.client.get("/mm/quotes")).content
            r = await s.client.post("/mm/price", json={"underlying": "XYZ", "price": -5.0})
            assert r.status_code == 422 and r.json()["error"]["field"] == "price"
            assert (await s.client.get("/mm/quotes")).content == before

    run(main())


def test_relayed_stream_replays_events_published_before_the_api_process_started():
    """The engine ships its history first: a client of the API process replays from before
    the process existed (the live stream and reconnects: test_api_threaded.py, both layouts)."""

    async def main():
        async with relaying() as s:
            before = s.engine.events.last_seq  # published before the API process started
            assert before > 0 and s.api.events >= before
            url = f"ws://127.0.0.1:{s.port}/api/v1/mm/ws?token={s.token}"
            async with websockets.connect(url) as ws:
                await subscribe(ws, from_seq=before)  # the first sequence number wanted
                (old,) = await recv_events(ws, 1)
            assert old["seq"] == before
            assert old["event"] == s.engine.events.history()[-1].model_dump(mode="json")

    run(main())


def test_wait_raises_when_the_api_process_dies():
    async def main():
        async with serving() as s:
            os.kill(s.api.process.pid, signal.SIGKILL)
            with pytest.raises(RuntimeError, match="API process ended on its own"):
                await asyncio.wait_for(s.api.wait(), 30)

    run(main())


def test_run_live_serves_from_a_process_by_default():
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
                 on_ready=on_ready)
    )  # fmt: skip
    assert seen["health"]["status"] == "ok" and seen["quotes"] == seen["engine"]
    assert isinstance(s.api, ApiProcess) and s.api.process.returncode == 0
    assert s.api.stream == "engine" and s.stop_reason == "stop()"


def test_run_live_relay_layout_serves_the_stream_from_the_api_process():
    seen = {}

    def on_ready(session):
        async def probe():
            url = session.base_url.replace("http", "ws", 1) + "api/v1/mm/ws"
            async with websockets.connect(url) as ws:
                await subscribe(ws, types=["price_updated"])
                (frame,) = await recv_events(ws, 1)  # the simulated feed's next price
            seen["frame"] = frame
            session.stop()

        session.loop.create_task(probe())

    cfg = MarketMakerConfig(underlyings=[CONFIG.underlyings[0]])
    s = asyncio.run(
        run_live(cfg, seconds=120.0, settings=ApiSettings(auth_disabled=True), port=0,
                 on_ready=on_ready, layout="relay")
    )  # fmt: skip
    assert seen["frame"]["event"]["type"] == "price_updated"
    assert s.api.stream == "api" and s.api.events > 0 and s.api.streams_taken == 0
    assert s.api.process.returncode == 0 and s.stop_reason == "stop()"


def test_an_api_process_that_stops_reading_is_killed_not_buffered_for():
    """The engine never holds more than ``max_unread_bytes`` for a hung API process: past it
    the process is killed and ``wait`` raises, the engine's loop unharmed."""
    from jaxmm.events import AlertTriggered

    async def main():
        async with relaying() as s:  # the events make the backlog
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


def test_cors_headers_are_set_once_on_forwarded_and_local_answers():
    """The engine's app and the API process's both run the CORS middleware: a forwarded answer
    carries each header once, as a view answered in the API process does."""

    async def main():
        async with serving(cors_origins=["http://desk.example"]) as s:
            origin = {"Origin": "http://desk.example"}
            for path in ("/mm/greeks", "/mm/quotes"):  # forwarded / local
                r = await s.client.get(path, headers=origin)
                assert r.status_code == 200, path
                assert r.headers.get_list("access-control-allow-origin") == [
                    "http://desk.example"
                ], path
                assert r.headers.get_list("vary") == ["Origin"], path
            r = await s.client.get("/mm/greeks", headers={"Origin": "http://evil.example"})
            assert "access-control-allow-origin" not in r.headers

    run(main())


def test_stream_side_is_checked_before_anything_starts():
    from jaxmm.api import create_app
    from jaxmm.engine import OptionsMarketMaker

    app = create_app(OptionsMarketMaker(CONFIG), settings=ApiSettings(auth_disabled=True))
    with pytest.raises(ValueError, match="stream: must be one of engine, api, got 'both'"):
        ApiProcess(app, None, stream="both")  # type: ignore[arg-type]
