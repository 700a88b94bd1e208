"""The WebSocket stream's direct write path (jaxmm.api._ws: frames built once per event and
written to each connection's transport inside ``publish``) against the ASGI path.

Real uvicorn servers on loopback. The ASGI path is the reference: the same client script run
against a direct-path server and an ASGI-path server (``ws_direct=False``) fed by one
broadcaster must receive the same frames in the same order; the expected sequence numbers are
worked out here from the filters (docs/events.md, "WebSocket stream"). The frame encoding is
checked against the ``websockets`` library's own framer (RFC 6455 section 5.2). Nothing asserts
on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from types import SimpleNamespace

import pytest
from _wsserver import GUARD_S, serve
from _wsserver import recv_text as _recv
from fastapi import FastAPI
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from jaxmm.api import _ws
from jaxmm.api._ws import CLOSE_LAGGED, event_frame, event_wire, router
from jaxmm.events import AlertTriggered, EventBroadcaster, PriceUpdated


def _app(bus, **settings):
    app = FastAPI()
    app.include_router(router)
    app.state.events = bus
    app.state.settings = SimpleNamespace(auth_disabled=True, ws_heartbeat_s=0, **settings)
    return app


def _serve(app, **kw):
    return serve(app, ws_per_message_deflate=False, **kw)


@pytest.fixture
def writes(monkeypatch):
    """Every frame the direct path wrote, and every refusal (write-buffer bound reached)."""
    log = {"written": [], "refused": 0}
    original = _ws._DirectWriter.write

    def spy(self, wire):
        ok = original(self, wire)
        if ok:
            log["written"].append(wire)
        else:
            log["refused"] += 1
        return ok

    monkeypatch.setattr(_ws._DirectWriter, "write", spy)
    return log


@pytest.fixture
def held(monkeypatch):
    """``sends``: frames per held send (an ``uncork`` that had frames); ``at_once``: frames
    written inside their ``publish`` (not held)."""
    log: dict[str, list] = {"sends": [], "at_once": []}
    uncork, write = _ws._DirectWriter.uncork, _ws._DirectWriter.write

    def spy_uncork(self):
        if self.corked:
            log["sends"].append(len(self.corked))
        uncork(self)

    def spy_write(self, wire):
        if self.corked is None:
            log["at_once"].append(wire)
        return write(self, wire)

    monkeypatch.setattr(_ws._DirectWriter, "uncork", spy_uncork)
    monkeypatch.setattr(_ws._DirectWriter, "write", spy_write)
    return log


async def _subscribed(stack, url, syms, n=20):
    """``n`` clients, client i subscribed to instrument ``syms[i % len(syms)]``."""
    clients = [await stack.enter_async_context(connect(url)) for _ in range(n)]
    for i, ws in enumerate(clients):
        ack = json.loads(await _op(ws, op="subscribe", instruments=[syms[i % len(syms)]]))
        assert ack["type"] == "subscribed"
    return clients


async def _events(ws, n):
    """The next n frames, which must all be event frames (heartbeats are off)."""
    out = [await _recv(ws) for _ in range(n)]
    assert all("seq" in json.loads(t) for t in out), out
    return out


async def _op(ws, **msg):
    await ws.send(json.dumps(msg))
    return await _recv(ws)


def _price(i, sym):
    return PriceUpdated(underlying=sym, instrument=sym, price=100.0 + i)


def _alert(i):
    return AlertTriggered(severity="info", kind="k", message=f"m{i}")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 1000, 65_535, 65_536, 70_000])
def test_text_frame_matches_an_independent_framer(size):
    """7-bit (< 126), 16-bit (126..65535) and 64-bit (>= 65536) lengths, against websockets'
    own framer (RFC 6455 section 5.2; server frames are unmasked)."""
    payload = bytes(i % 251 for i in range(size))
    assert _ws._text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False)


def test_event_wire_carries_the_event_frame_text():
    """RFC 6455 section 5.7's single-frame unmasked text example is 0x81 0x05 "Hello"; an
    event's wire frame is that layout around its event_frame text, built once per event."""
    assert _ws._text_frame(b"Hello") == bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
    for message in ("x", "y" * 900):
        e = AlertTriggered(severity="info", kind="k", message=message)
        e = e.model_copy(update={"seq": 7})
        text = event_frame(e).encode()
        wire = event_wire(e)
        assert wire == Frame(Opcode.TEXT, text).serialize(mask=False)
        assert json.loads(text) == {"seq": 7, "event": json.loads(e.model_dump_json())}
        assert event_wire(e) is wire


def test_direct_and_asgi_paths_send_the_same_frames_in_order(writes):
    """One broadcaster, two servers (direct path / ASGI path), one script: live filters,
    widening, unsubscribing, replay with from_seq. Same frames, expected seqs."""

    async def main():
        bus = EventBroadcaster(history_size=1000)
        async with (
            _serve(_app(bus)) as url_direct,
            _serve(_app(bus, ws_direct=False)) as url_asgi,
            connect(url_direct) as d,
            connect(url_asgi) as a,
        ):
            clients = (d, a)

            async def both_op(**msg):
                acks = [await _op(ws, **msg) for ws in clients]
                assert acks[0] == acks[1], acks
                return json.loads(acks[0])

            async def both_events(n):
                got = [await _events(ws, n) for ws in clients]
                assert got[0] == got[1]
                return [json.loads(t)["seq"] for t in got[0]]

            ack = await both_op(op="subscribe", types=["price_updated"], instruments=["BTC"])
            assert ack["next_seq"] == 1
            # seq 1 BTC, 2 ETH, 3 alert, 4 BTC
            for e in (_price(0, "BTC"), _price(1, "ETH"), _alert(2), _price(3, "BTC")):
                bus.publish(e)
            assert await both_events(2) == [1, 4]
            ack = await both_op(op="subscribe", instruments=["ETH"])  # widen
            assert ack["instruments"] == ["BTC", "ETH"] and ack["next_seq"] == 5
            for e in (_price(4, "ETH"), _alert(5), _price(6, "SOL"), _price(7, "BTC")):
                bus.publish(e)  # seq 5..8
            assert await both_events(2) == [5, 8]
            ack = await both_op(op="unsubscribe", instruments=["BTC"])
            assert ack["instruments"] == ["ETH"]
            for e in (_price(8, "BTC"), _price(9, "ETH")):
                bus.publish(e)  # seq 9, 10
            assert await both_events(1) == [10]
            # replay everything (all types, all instruments) from seq 3, then live
            ack = await both_op(op="subscribe", from_seq=3)
            assert ack["next_seq"] == 3
            assert await both_events(8) == list(range(3, 11))
            bus.publish(_alert(10))  # seq 11
            assert await both_events(1) == [11]
            ack = await both_op(op="unsubscribe")
            assert ack["types"] == [] and ack["instruments"] == []  # none
            bus.publish(_alert(11))  # seq 12: nobody gets it
            ack = await both_op(op="subscribe", types=["alert_triggered"])
            assert ack["next_seq"] == 13
            bus.publish(_alert(12))
            assert await both_events(1) == [13]
        # the direct server wrote every event frame itself: 2 + 2 + 1 + 8 + 1 + 1
        assert len(writes["written"]) == 15
        assert writes["refused"] == 0

    asyncio.run(main())


def test_many_direct_subscribers_get_every_event_in_order(writes):
    """Twenty direct-path connections with different filters, one burst of publishes."""

    async def main():
        bus = EventBroadcaster()
        syms = ("BTC", "ETH")
        async with _serve(_app(bus)) as url:
            async with contextlib.AsyncExitStack() as stack:
                clients = await _subscribed(stack, url, syms)
                events = [bus.publish(_price(i, syms[i % 2])) for i in range(30)]
                for i, ws in enumerate(clients):
                    want = [e.seq for e in events if e.instrument == syms[i % 2]]
                    got = [json.loads(t) for t in await _events(ws, len(want))]
                    assert [f["seq"] for f in got] == want == list(range(1 + i % 2, 31, 2))
                    assert all(f["event"]["instrument"] == syms[i % 2] for f in got)
        assert len(writes["written"]) == 20 * 15

    asyncio.run(main())


def test_a_coalesced_burst_is_one_send_per_subscriber_in_order(writes, held):
    """Events published inside ``coalesced(app)`` (a relay handing on a batch) reach each
    live connection in order, its frames written in one piece when the block ends."""
    sends = held["sends"]

    async def main():
        bus = EventBroadcaster()
        app = _app(bus)
        syms = ("BTC", "ETH")
        async with _serve(app) as url:
            async with contextlib.AsyncExitStack() as stack:
                clients = await _subscribed(stack, url, syms)
                with _ws.coalesced(app):
                    events = [bus.publish(_price(i, syms[i % 2])) for i in range(30)]
                    assert not sends  # nothing written yet
                assert sends == [15] * 20  # one send per subscriber, its 15 frames
                after = bus.publish(_price(99, "BTC"))  # outside the block: written at once
                for i, ws in enumerate(clients):
                    want = [e.seq for e in events if e.instrument == syms[i % 2]]
                    want += [after.seq] if i % 2 == 0 else []
                    got = [json.loads(t) for t in await _events(ws, len(want))]
                    assert [f["seq"] for f in got] == want
        assert len(writes["written"]) == 20 * 15 + 10 and sends == [15] * 20

    asyncio.run(main())


@pytest.mark.parametrize(("bursts", "marked"), [(True, False), (True, True), (False, False)])
def test_a_loop_iterations_later_events_are_written_together_when_it_ends(held, bursts, marked):
    """``ws_coalesce_bursts`` (the default): the first event of a loop iteration written to
    anyone goes at once, the later ones of the same iteration are held and written in one send
    per subscriber when it ends, or as soon as the publisher's ``bus.burst()`` block ends
    (``marked``); off, each is written inside its ``publish``. Order is kept."""
    sends, at_once = held["sends"], held["at_once"]

    async def main():
        bus = EventBroadcaster()
        app = _app(bus, ws_coalesce_bursts=bursts)
        syms = ("BTC", "ETH")
        async with _serve(app) as url:
            async with contextlib.AsyncExitStack() as stack:
                clients = await _subscribed(stack, url, syms)
                await asyncio.sleep(0.05)  # a fresh loop iteration
                bus.publish(_price(99, "SOL"))  # written to nobody: starts no burst
                with bus.burst() if marked else contextlib.nullcontext():
                    events = [bus.publish(_price(i, syms[i % 2])) for i in range(30)]
                    assert len(at_once) == (10 if bursts else 300)  # bursts: only the first
                    assert not sends
                assert len(sends) == (20 if marked else 0)  # marked: sent as the block ends
                await asyncio.sleep(0)  # the iteration ends
                # the rest: one send per subscriber (BTC had the first already)
                assert sorted(sends) == ([14] * 10 + [15] * 10 if bursts else [])
                for i, ws in enumerate(clients):
                    want = [e.seq for e in events if e.instrument == syms[i % 2]]
                    got = [json.loads(t) for t in await _events(ws, len(want))]
                    assert [f["seq"] for f in got] == want
        assert len(at_once) == (10 if bursts else 300)

    asyncio.run(main())


@pytest.mark.parametrize("coalesce", [False, True])
def test_slow_client_is_cut_off_by_the_write_buffer_bound(writes, coalesce):
    """A client that stops reading fills its transport's write buffer: once ws_queue_size
    frames are pending the direct path refuses the next one and the client gets the frames it
    had, ``lagged`` naming the last, close 4008; a fast client receives every event. The same
    when each burst is published inside ``coalesced(app)`` (frames held count as pending)."""

    async def main():
        bus = EventBroadcaster(history_size=10_000)
        app = _app(bus, ws_queue_size=20, ws_close_timeout_s=GUARD_S)
        async with _serve(app, sndbuf=4096) as url:
            host, port = url.split("/")[2].split(":")
            slow_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow_sock.connect((host, int(port)))
            slow_sock.setblocking(False)
            async with (
                connect(url) as fast,
                connect(url, sock=slow_sock, max_queue=1) as slow,
            ):
                await _op(fast, op="subscribe")
                await _op(slow, op="subscribe")
                published, bursts = [], 0
                while not writes["refused"]:  # until the write-buffer bound cuts it off
                    bursts += 1
                    assert bursts < 400, "slow client never lagged"
                    with _ws.coalesced(app) if coalesce else contextlib.nullcontext():
                        burst = [
                            bus.publish(
                                AlertTriggered(severity="info", kind="load", message="x" * 900)
                            )
                            for _ in range(10)
                        ]
                    published += burst
                    got = [json.loads(t)["seq"] for t in await _events(fast, len(burst))]
                    assert got == [e.seq for e in burst]
                assert writes["refused"] == 1  # the cut-off came from the write-buffer bound
                more = [bus.publish(_price(i, "BTC")) for i in range(5)]
                got = [json.loads(t)["seq"] for t in await _events(fast, 5)]
                assert got == [e.seq for e in more]
                seqs, lagged = [], None
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        frame = json.loads(await _recv(slow))
                        if "seq" in frame:
                            seqs.append(frame["seq"])
                        elif frame.get("type") == "lagged":
                            lagged = frame
                assert closed.value.rcvd.code == CLOSE_LAGGED
                assert seqs == list(range(1, len(seqs) + 1))
                assert len(seqs) < len(published)
                assert lagged == {"type": "lagged", "last_seq": seqs[-1]}

    asyncio.run(main())


def test_live_connections_hold_no_subscription_and_leave_nothing_registered():
    """A caught-up direct connection is written by the app's one fan-out callback, not by a
    broadcaster subscription of its own; a filter change takes it back through a subscription
    (replay) and live again; when the clients go, nothing stays registered on the broadcaster."""

    async def main():
        bus = EventBroadcaster()
        app = _app(bus)
        async with _serve(app) as url:
            async with contextlib.AsyncExitStack() as stack:
                clients = [await stack.enter_async_context(connect(url)) for _ in range(5)]
                for ws in clients:
                    await _op(ws, op="subscribe", types=["price_updated"])
                bus.publish(_price(0, "BTC"))
                for ws in clients:
                    assert [json.loads(t)["seq"] for t in await _events(ws, 1)] == [1]
                fan = app.state.ws_fanout
                assert len(fan.live) == 5 and not fan.queued
                assert bus.subscriber_count == 0 and len(bus._callbacks) == 1
                bus.publish(_alert(1))  # seq 2: filtered out for everyone
                # widen one client to alerts: replay from its cursor (seq 1) brings seq 2
                ack = json.loads(await _op(clients[0], op="subscribe", types=["alert_triggered"]))
                assert ack["next_seq"] == 2
                assert [json.loads(t)["seq"] for t in await _events(clients[0], 1)] == [2]
                bus.publish(_alert(2))  # seq 3 reaches only the widened client, live again
                assert [json.loads(t)["seq"] for t in await _events(clients[0], 1)] == [3]
                assert len(fan.live) == 5 and bus.subscriber_count == 0
                bus.publish(_price(3, "ETH"))  # seq 4: everyone
                for ws in clients:
                    assert [json.loads(t)["seq"] for t in await _events(ws, 1)] == [4]
            async with asyncio.timeout(GUARD_S):
                while fan.live or fan.queued:  # the server notices the closes
                    await asyncio.sleep(0.01)
            assert bus.subscriber_count == 0 and bus._callbacks == []

    asyncio.run(main())


def test_a_gap_in_a_relayed_stream_cuts_live_connections_off():
    """A Redis relay that lost events (seq jumps) must not let a live client miss them
    silently: the client gets ``lagged`` naming the last event it got, then close 4008."""
    from jaxmm.api._fanout import RelayBroadcaster

    async def main():
        bus = RelayBroadcaster()
        async with _serve(_app(bus, ws_close_timeout_s=GUARD_S)) as url, connect(url) as ws:
            await _op(ws, op="subscribe")
            for seq in (1, 2):
                bus.relay(_price(seq, "BTC").model_copy(update={"seq": seq}))
            assert [json.loads(t)["seq"] for t in await _events(ws, 2)] == [1, 2]
            bus.relay(_price(5, "BTC").model_copy(update={"seq": 5}))  # 3 and 4 were lost
            frames = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    frames.append(json.loads(await _recv(ws)))
            assert closed.value.rcvd.code == CLOSE_LAGGED
            assert frames == [{"type": "lagged", "last_seq": 2}]

    asyncio.run(main())


def test_a_failing_direct_write_falls_back_to_the_asgi_path_without_losing_events(monkeypatch):
    """If writing to a live connection's transport raises, the connection leaves the direct
    path for the ASGI path, re-subscribed from its cursor: the event whose write failed and
    every later one still arrive, once each, in order; the publisher never sees the error."""

    async def main():
        bus = EventBroadcaster(history_size=100)
        app = _app(bus)
        async with _serve(app) as url, connect(url) as ws:
            await _op(ws, op="subscribe")
            bus.publish(_price(0, "BTC"))
            assert [json.loads(t)["seq"] for t in await _events(ws, 1)] == [1]
            fan = app.state.ws_fanout
            assert len(fan.live) == 1
            original, calls = _ws._DirectWriter.write, []

            def boom_once(self, wire):
                calls.append(wire)
                if len(calls) == 1:
                    raise OSError("injected transport failure")
                return original(self, wire)

            monkeypatch.setattr(_ws._DirectWriter, "write", boom_once)
            for i in (1, 2, 3):
                bus.publish(_price(i, "BTC"))  # seq 2 fails in the direct path
            assert [json.loads(t)["seq"] for t in await _events(ws, 3)] == [2, 3, 4]
            assert not fan.live and not fan.queued and len(calls) == 1
            bus.publish(_price(4, "BTC"))
            assert [json.loads(t)["seq"] for t in await _events(ws, 1)] == [5]

    asyncio.run(main())


def _open_by_every_flag(direct) -> bool:
    """The direct writer's closing check with every flag uvicorn's sansio protocol keeps
    (what ``_DirectWriter.usable`` read before it kept two of them)."""
    from websockets.protocol import State

    proto = direct.proto
    return not (proto.close_sent or proto.disconnected or proto.conn.state is not State.OPEN
                or direct.transport.is_closing())  # fmt: skip


@pytest.mark.parametrize("how", ["client_close", "server_close", "lost", "bad_frame"])
def test_the_closing_check_agrees_with_every_flag_once_a_close_is_handled(how):
    """``_DirectWriter.usable`` reads two of the protocol's four closing flags; between loop
    callbacks (where ``publish`` runs) it must agree with all four, for every way a stream
    ends: the client's close frame, the server's close (a cut-off), a lost connection, and a
    frame the server cannot parse."""

    async def main():
        bus = EventBroadcaster()
        app = _app(bus)
        async with _serve(app) as url:
            ws = await connect(url)
            try:
                ack = json.loads(await _op(ws, op="subscribe", types=["price_updated"]))
                assert ack["type"] == "subscribed"
                fan = app.state.ws_fanout
                (conn,) = tuple(fan.live)
                direct = conn.direct
                assert direct.usable() and _open_by_every_flag(direct)
                if how == "client_close":
                    await ws.close()
                elif how == "server_close":
                    conn._cut_off()
                elif how == "lost":
                    ws.transport.abort()
                else:  # a reserved opcode: the server fails the connection (RFC 6455 5.2)
                    ws.transport.write(bytes([0x83, 0x80]) + b"\0\0\0\0")
                async with asyncio.timeout(GUARD_S):
                    while _open_by_every_flag(direct):
                        assert direct.usable()  # both still open: the same answer
                        await asyncio.sleep(0)
                assert not direct.usable()
                bus.publish(_price(0, "BTC"))  # never written to a closing stream
                assert conn not in fan.live
            finally:
                ws.transport.abort()

    asyncio.run(main())
