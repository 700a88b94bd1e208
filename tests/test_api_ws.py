"""WebSocket event stream (/api/v1/mm/ws) against a real uvicorn server on loopback.

The expected frames follow from the protocol written in docs/events.md ("WebSocket stream") and
from the events the test itself publishes: the reference for every assertion is the list of
sequence numbers the test produced, never output of the code under test.
"""

from __future__ import annotations

import asyncio
import json
import socket
from types import SimpleNamespace

import pytest
from _wsserver import GUARD_S
from _wsserver import recv_events as _recv_events
from _wsserver import recv_json as _recv
from _wsserver import serve as _serve
from _wsserver import subscribe as _subscribe
from fastapi import FastAPI, HTTPException
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from jaxmm.api._ws import CLOSE_LAGGED, router
from jaxmm.events import AlertTriggered, EventBroadcaster, PriceUpdated

TOKENS = {"reader": {"read"}, "trader-only": {"trade"}}


def _verify(token, scope):
    """The test's own verifier (the real one is jaxmm.api's JWT check): 401 / 403 / subject."""
    if token not in TOKENS:
        raise HTTPException(401, "token: missing or invalid")
    if scope not in TOKENS[token]:
        raise HTTPException(403, f"token: scope {scope!r} required")
    return token


def _app(bus, **settings):
    app = FastAPI()
    app.include_router(router)
    app.state.events = bus
    app.state.settings = SimpleNamespace(auth_disabled=False, **settings)
    app.state.auth_verify = _verify
    return app


def _price(i, underlying="BTC"):
    return PriceUpdated(underlying=underlying, instrument=underlying, price=100.0 + i)


def test_reconnect_replays_exactly_the_missed_events():
    async def main():
        bus = EventBroadcaster(history_size=1000)
        async with _serve(_app(bus)) as url:
            async with connect(url + "?token=reader") as ws:
                ack = await _subscribe(ws)
                assert ack == {"type": "subscribed", "types": None, "instruments": None,
                               "next_seq": 1}  # fmt: skip
                sent = [bus.publish(_price(i)) for i in range(3)]
                got = await _recv_events(ws, 3)
                assert [f["seq"] for f in got] == [e.seq for e in sent] == [1, 2, 3]
                assert [f["event"]["price"] for f in got] == [100.0, 101.0, 102.0]
                assert got[0]["event"]["type"] == "price_updated"
                last_seen = got[-1]["seq"]
            # disconnected: K events happen meanwhile
            missed = [bus.publish(_price(10 + i)) for i in range(7)]
            headers = {"Authorization": "Bearer reader"}
            async with connect(url, additional_headers=headers) as ws:
                ack = await _subscribe(ws, from_seq=last_seen + 1)
                assert ack["type"] == "subscribed" and ack["next_seq"] == last_seen + 1
                got = await _recv_events(ws, 7)
                assert [f["seq"] for f in got] == [e.seq for e in missed] == list(range(4, 11))
                assert [f["event"]["price"] for f in got] == [e.price for e in missed]
                live = [bus.publish(_price(20 + i)) for i in range(2)]
                got = await _recv_events(ws, 2)
                assert [f["seq"] for f in got] == [e.seq for e in live] == [11, 12]
                # resubscribing from the present replays nothing and duplicates nothing
                ack = await _subscribe(ws, from_seq=13)
                assert ack["next_seq"] == 13
                bus.publish(_price(30))
                assert [f["seq"] for f in await _recv_events(ws, 1)] == [13]

    asyncio.run(main())


def test_snapshot_required_when_history_is_too_short_and_the_connection_stays():
    async def main():
        bus = EventBroadcaster(history_size=5)
        for i in range(12):  # seqs 1..12; the ring keeps 8..12
            bus.publish(_price(i))
        async with _serve(_app(bus)) as url, connect(url + "?token=reader") as ws:
            frame = await _subscribe(ws, from_seq=3)
            assert frame == {"type": "snapshot_required", "oldest": 8, "last": 12}
            frame = await _subscribe(ws, from_seq=8)  # still covered: replay 8..12
            assert frame["type"] == "subscribed"
            assert [f["seq"] for f in await _recv_events(ws, 5)] == [8, 9, 10, 11, 12]
            frame = await _subscribe(ws, from_seq=14)  # beyond last + 1
            assert frame["type"] == "error" and frame["field"] == "from_seq"
            assert "13" in frame["message"]

    asyncio.run(main())


def test_filters_subscribe_and_unsubscribe():
    async def main():
        bus = EventBroadcaster()
        async with _serve(_app(bus)) as url, connect(url + "?token=reader") as ws:
            ack = await _subscribe(ws, types=["price_updated"], instruments=["BTC"])
            assert ack["types"] == ["price_updated"] and ack["instruments"] == ["BTC"]
            bus.publish(_price(1, "SPX"))  # seq 1: other instrument
            bus.publish(AlertTriggered(severity="info", kind="k", message="m", instrument="BTC"))
            bus.publish(_price(2, "BTC"))  # seq 3: matches
            assert [f["seq"] for f in await _recv_events(ws, 1)] == [3]
            ack = await _subscribe(ws, instruments=["SPX"])  # widen to BTC + SPX
            assert ack["instruments"] == ["BTC", "SPX"] and ack["types"] == ["price_updated"]
            bus.publish(_price(3, "SPX"))  # seq 4
            assert [f["seq"] for f in await _recv_events(ws, 1)] == [4]
            await ws.send(json.dumps({"op": "unsubscribe", "instruments": ["BTC"]}))
            ack = await _recv(ws)
            assert ack["type"] == "unsubscribed" and ack["instruments"] == ["SPX"]
            bus.publish(_price(4, "BTC"))  # seq 5: no longer wanted
            bus.publish(_price(5, "SPX"))  # seq 6
            assert [f["seq"] for f in await _recv_events(ws, 1)] == [6]
            await ws.send(json.dumps({"op": "unsubscribe"}))
            ack = await _recv(ws)
            assert ack == {"type": "unsubscribed", "types": [], "instruments": [], "next_seq": 7}

    asyncio.run(main())


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ("not json", "message"),
        ("[1, 2]", "message"),
        ('{"op": "publish"}', "op"),
        ('{"op": "subscribe", "types": ["no_such_event"]}', "types"),
        ('{"op": "subscribe", "types": "price_updated"}', "types"),
        ('{"op": "subscribe", "instruments": [""]}', "instruments"),
        ('{"op": "subscribe", "from_seq": 0}', "from_seq"),
        ('{"op": "subscribe", "from_seq": 1.5}', "from_seq"),
        ('{"op": "subscribe", "from_seq": true}', "from_seq"),
        ('{"op": "subscribe", "colour": 1}', "colour"),
        ('{"op": "unsubscribe", "from_seq": 1}', "from_seq"),
    ],
)
def test_bad_messages_get_an_error_frame_and_the_connection_stays(message, field):
    async def main():
        bus = EventBroadcaster()
        async with _serve(_app(bus)) as url, connect(url + "?token=reader") as ws:
            await ws.send(message)
            frame = await _recv(ws)
            assert frame["type"] == "error" and frame["field"] == field, frame
            assert frame["message"]
            await ws.send(b"\x00binary")
            frame = await _recv(ws)
            assert frame["type"] == "error" and frame["field"] == "message"
            assert (await _subscribe(ws))["type"] == "subscribed"  # still usable
            bus.publish(_price(1))
            assert [f["seq"] for f in await _recv_events(ws, 1)] == [1]

    asyncio.run(main())


def test_heartbeat_carries_the_last_delivered_seq():
    async def main():
        bus = EventBroadcaster()
        bus.publish(_price(0))
        async with _serve(_app(bus, ws_heartbeat_s=0.05)) as url:
            async with connect(url + "?token=reader") as ws:
                hb = await _recv(ws)  # not subscribed yet: the stream's last seq
                assert hb["type"] == "heartbeat" and hb["last_seq"] == 1
                assert isinstance(hb["ts"], int) and hb["ts"] > 1_600_000_000 * 10**9
                await _subscribe(ws, types=["alert_triggered"])
                bus.publish(_price(1))  # seq 2, filtered out: a caught-up client may skip it
                while True:
                    hb = await _recv(ws)
                    if hb.get("type") == "heartbeat" and hb["last_seq"] == 2:
                        break
                    assert "seq" not in hb  # no event frame for the filtered event

    asyncio.run(main())


def test_auth_401_403_and_header_token():
    async def main():
        bus = EventBroadcaster()
        async with _serve(_app(bus)) as url:
            with pytest.raises(InvalidStatus) as info:
                async with connect(url):
                    pass
            assert info.value.response.status_code == 401
            assert json.loads(info.value.response.body)["error"]["field"] == "token"
            with pytest.raises(InvalidStatus) as info:
                async with connect(url + "?token=nope"):
                    pass
            assert info.value.response.status_code == 401
            with pytest.raises(InvalidStatus) as info:
                async with connect(url + "?token=trader-only"):
                    pass
            assert info.value.response.status_code == 403
            assert bus.subscriber_count == 0
        # local mode: auth disabled, no token needed
        app = _app(bus)
        app.state.settings = SimpleNamespace(auth_disabled=True)
        async with _serve(app) as url, connect(url) as ws:
            assert (await _subscribe(ws))["type"] == "subscribed"

    asyncio.run(main())


def test_slow_client_is_cut_off_while_a_fast_client_keeps_receiving():
    """A client that stops reading overflows its bounded queue: it gets the events it had
    queued, a ``lagged`` frame naming the last one, and close 4008; the fast client meanwhile
    receives every event, burst by burst, before the next burst is published."""

    async def main():
        bus = EventBroadcaster(history_size=10_000)
        app = _app(bus, ws_queue_size=20, ws_close_timeout_s=GUARD_S)
        async with _serve(app, sndbuf=4096) as url:
            host, port = url.split("/")[2].split(":")
            slow_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
            slow_sock.connect((host, int(port)))
            slow_sock.setblocking(False)
            async with (
                connect(url + "?token=reader") as fast,
                connect(url + "?token=reader", sock=slow_sock, max_queue=1) as slow,
            ):
                await _subscribe(fast)
                await _subscribe(slow)
                assert bus.subscriber_count == 2
                published, bursts = [], 0
                while bus.subscriber_count == 2:  # until the slow one is dropped
                    bursts += 1
                    assert bursts < 400, "slow client never lagged"
                    burst = [
                        bus.publish(AlertTriggered(severity="info", kind="load", message="x" * 900))
                        for _ in range(10)
                    ]
                    published += burst
                    got = await _recv_events(fast, len(burst))  # promptly: before the next one
                    assert [f["seq"] for f in got] == [e.seq for e in burst]
                # the fast client is unaffected by the cut-off
                more = [bus.publish(_price(i)) for i in range(5)]
                got = await _recv_events(fast, 5)
                assert [f["seq"] for f in got] == [e.seq for e in more]
                # now the slow client reads: a contiguous prefix, then lagged, then 4008
                seqs, lagged = [], None
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        frame = await _recv(slow)
                        if "seq" in frame:
                            seqs.append(frame["seq"])
                        elif frame.get("type") == "lagged":
                            lagged = frame
                assert closed.value.rcvd.code == CLOSE_LAGGED
                assert seqs == list(range(1, len(seqs) + 1))
                assert len(seqs) < len(published)
                assert lagged == {"type": "lagged", "last_seq": seqs[-1] if seqs else 0}

    asyncio.run(main())


def test_stream_through_create_app_with_real_jwt_auth():
    """The router as create_app mounts it: JWT scopes from jaxmm.api's own verifier."""
    from jaxmm.api import ApiSettings, create_app, mint_token

    secret = "s" * 40
    bus = EventBroadcaster()
    app = create_app(SimpleNamespace(events=bus), settings=ApiSettings(jwt_secret=secret))

    async def main():
        async with _serve(app) as url:
            with pytest.raises(InvalidStatus) as info:
                async with connect(url + "?token=" + mint_token("t", "trade", 60, secret)):
                    pass
            assert info.value.response.status_code == 403
            expired = mint_token("r", "read", 60, secret, now=1_000_000.0)
            with pytest.raises(InvalidStatus) as info:
                async with connect(url + "?token=" + expired):
                    pass
            assert info.value.response.status_code == 401
            token = mint_token("r", ["read"], 60, secret)
            async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
                assert (await _subscribe(ws, types=["price_updated"]))["type"] == "subscribed"
                e = bus.publish(_price(1))
                (frame,) = await _recv_events(ws, 1)
                assert frame["seq"] == e.seq == 1 and frame["event"]["price"] == 101.0

    asyncio.run(main())
