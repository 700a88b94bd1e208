"""jaxmm.feeds WebSocket client and server against real local websockets servers on
127.0.0.1 (port 0): message round trip, malformed messages, reconnect after a dropped
connection and after a heartbeat timeout, serve_feed(SimulatedFeed) round trip."""

import asyncio
import dataclasses
import json
import logging

import pytest
from websockets.asyncio.server import serve

from jaxmm.feeds import (
    Backoff,
    HeartbeatTimeout,
    MalformedMessage,
    ReconnectingFeed,
    SimulatedFeed,
    SimulatedMarket,
    SmileModel,
    SurfaceUpdate,
    TradePrint,
    UnderlyingModel,
    UnderlyingPrice,
    WebSocketFeed,
    format_message,
    merge,
    parse_message,
    serve_feed,
)


def run(coro, timeout=15.0):
    async def guarded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(guarded())


class Scripted:
    """A websockets server whose connection i runs ``scripts[i]`` (the last one repeats)."""

    def __init__(self, *scripts):
        self.scripts = scripts
        self.connections = 0
        self.received: list[str] = []

    async def handler(self, conn):
        i = min(self.connections, len(self.scripts) - 1)
        self.connections += 1
        reader = asyncio.ensure_future(self._read(conn))
        try:
            await self.scripts[i](conn, self)
        finally:
            reader.cancel()

    async def _read(self, conn):
        async for text in conn:
            self.received.append(text)

    async def wait_received(self, n):
        while len(self.received) < n:
            await asyncio.sleep(0.002)

    async def __aenter__(self):
        self.server = await serve(self.handler, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


def price_msg(i):
    return json.dumps({"type": "price", "underlying": "BTC", "price": 100.0 + i, "ts": 1000 + i})


class Clock:
    def __init__(self):
        self.t = 0

    def __call__(self):
        self.t += 10
        return self.t


class NoSleep:
    def __init__(self):
        self.waited = []

    async def __call__(self, s):
        self.waited.append(s)


MESSAGES = [
    '{"type": "heartbeat", "ts": 1}',
    '{"type": "price", "underlying": "BTC", "price": 100.25, "ts": 1700000000000000001}',
    json.dumps(
        {
            "type": "trade",
            "symbol": "BTC-0030D-100-C",
            "price": 4.5,
            "quantity": 2,
            "aggressor": "sell",
            "ts": 1700000000000000002,
            "venue": "extra keys are ignored",
        }
    ),
    json.dumps(
        {
            "type": "surface",
            "underlying": "BTC",
            "expiries": [0.1, 0.25],
            "strikes": [90, 100, 110],
            "vols": [[0.7, 0.6, 0.55], [0.68, 0.6, 0.57]],
            "forward": 100.3,
            "ts": 1700000000000000003,
        }
    ),
]


def test_messages_round_trip_into_the_dataclasses():
    async def script(conn, srv):
        await srv.wait_received(1)  # the subscribe message
        for m in MESSAGES:
            await conn.send(m)
        await conn.close(1000)

    async def go():
        async with Scripted(script) as srv:
            feed = WebSocketFeed(srv.url, subscribe=["BTC", "SPX"], clock=Clock())
            async with feed:
                events = [e async for e in merge(feed)]
            return events, feed, srv.received

    events, feed, received = run(go())
    # local_ts_ns is the injected clock's reading on receipt of each message (10, 20, ...)
    assert events == [
        UnderlyingPrice("BTC", 100.25, 1700000000000000001, 20),
        TradePrint("BTC-0030D-100-C", 4.5, 2.0, "sell", 1700000000000000002, 30),
        SurfaceUpdate(
            "BTC",
            (0.1, 0.25),
            (90.0, 100.0, 110.0),
            ((0.7, 0.6, 0.55), (0.68, 0.6, 0.57)),
            100.3,
            1700000000000000003,
            40,
        ),
    ]
    assert feed.received == 4 and feed.heartbeats == 1 and feed.malformed == 0
    assert feed.error is None  # code 1000: a normal end
    assert [json.loads(t) for t in received] == [
        {"type": "subscribe", "underlyings": ["BTC", "SPX"]}
    ]


def test_format_then_parse_is_the_identity():
    events = [
        UnderlyingPrice("SPX", 5012.123456789012, 5, 0),
        TradePrint("SPX-0091D-5000-P", 0.1 + 0.2, 3.0, "buy", 6, 0),
        SurfaceUpdate(
            "SPX", (1 / 365, 0.5), (4000.0, 6000.0), ((0.3, 1 / 3), (0.2, 0.1)), 5e3, 7, 0
        ),
    ]
    for e in events:
        assert parse_message(format_message(e), 0) == e
        assert parse_message(format_message(e).encode(), 0) == e


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "message: not valid JSON"),
        ("[1, 2]", "message: must be a JSON object"),
        ('{"type": "quote", "ts": 1}', "type: must be one of"),
        ('{"ts": 1}', "type: must be one of"),
        ('{"type": "price", "underlying": "A", "ts": 1}', "price: missing field 'price'"),
        ('{"type": "price", "underlying": "A", "price": NaN, "ts": 1}', "not valid JSON"),
        ('{"type": "price", "underlying": "A", "price": 1.0, "ts": 1.5}', "ts: must be an integer"),
        (
            '{"type": "price", "underlying": "A", "price": 1.0, "ts": -3}',
            "exchange_ts_ns: must be >= 0",
        ),
        ('{"type": "price", "underlying": "A", "price": "1", "ts": 3}', "price: must be a number"),
        (
            '{"type": "trade", "symbol": "A", "price": 1, "quantity": 1, "aggressor": "x",'
            ' "ts": 1}',
            "trade: aggressor: must be 'buy' or 'sell'",
        ),
        (
            '{"type": "surface", "underlying": "A", "expiries": [0.1], "strikes": [1, 2],'
            ' "vols": [[0.2]], "forward": 1, "ts": 1}',
            r"surface: vols\[0\]: must have len\(strikes\) = 2",
        ),
        (b"\xff\xfe", "binary frame is not UTF-8"),
    ],
)
def test_parse_rejects_malformed(text, match):
    with pytest.raises(MalformedMessage, match=match):
        parse_message(text, 0)


def test_malformed_messages_are_counted_and_logged_not_fatal(caplog):
    bad = ["{oops", '{"type": "price", "underlying": "BTC", "price": -1, "ts": 1}', '"str"']

    async def script(conn, srv):
        await conn.send(price_msg(0))
        for m in bad:
            await conn.send(m)
        await conn.send(price_msg(1))
        await conn.close(1000)

    async def go():
        async with Scripted(script) as srv, WebSocketFeed(srv.url) as feed:
            return [p.price async for p in feed.prices()], feed

    with caplog.at_level(logging.WARNING, logger="jaxmm.feeds"):
        prices, feed = run(go())
    assert prices == [100.0, 101.0]
    assert feed.malformed == 3 and feed.received == 5
    assert "must be a JSON object" in feed.last_malformed
    assert sum("malformed message" in r.getMessage() for r in caplog.records) == 3


def test_strict_raises_on_malformed():
    async def script(conn, srv):
        await conn.send(price_msg(0))
        await conn.send('{"type": "price", "ts": 5}')
        await conn.send(price_msg(1))
        await conn.wait_closed()

    async def go():
        async with Scripted(script) as srv, WebSocketFeed(srv.url, strict=True) as feed:
            got = []
            with pytest.raises(MalformedMessage, match="price: missing field 'underlying'"):
                async for p in feed.prices():
                    got.append(p.price)
            return got, feed

    got, feed = run(go())
    assert got == [100.0] and feed.malformed == 1


def test_dropped_connection_reconnects_and_nothing_sent_after_is_lost():
    async def first(conn, srv):
        await srv.wait_received(1)  # the subscribe message
        for i in range(5):
            await conn.send(price_msg(i))
        await conn.close(1011, "internal error")  # not a normal closure: reconnect

    async def second(conn, srv):
        await srv.wait_received(2)
        for i in range(5, 12):
            await conn.send(price_msg(i))
        await conn.close(1000)

    async def go():
        async with Scripted(first, second) as srv:
            sleeps = NoSleep()
            feed = ReconnectingFeed(
                lambda: WebSocketFeed.open(srv.url, subscribe=["BTC"]),
                Backoff(initial=0.05, jitter=0.0),
                sleep=sleeps,
            )
            got = [p.price async for p in feed.prices()]
            await feed.close()
            return got, feed, sleeps, srv

    got, feed, sleeps, srv = run(go())
    assert got == [100.0 + i for i in range(12)]
    assert feed.reconnects == 1 and srv.connections == 2
    assert sleeps.waited == [0.05]
    assert type(feed.last_error).__name__ == "ConnectionClosedError"
    assert srv.received.count('{"type": "subscribe", "underlyings": ["BTC"]}') == 2


def test_abrupt_tcp_drop_reconnects():
    async def first(conn, srv):
        await conn.send(price_msg(0))
        await asyncio.sleep(0.02)
        conn.transport.abort()  # no close frame at all

    async def second(conn, srv):
        for i in range(1, 4):
            await conn.send(price_msg(i))
        await conn.close(1000)

    async def go():
        async with Scripted(first, second) as srv:
            feed = ReconnectingFeed(lambda: WebSocketFeed.open(srv.url), sleep=NoSleep())
            got = [p.price async for p in feed.prices()]
            return got, feed

    got, feed = run(go())
    assert got == [100.0, 101.0, 102.0, 103.0]
    assert feed.reconnects == 1


def test_heartbeat_timeout_triggers_a_reconnect():
    async def silent(conn, srv):
        await conn.send(price_msg(0))
        await conn.send('{"type": "heartbeat", "ts": 2}')
        await conn.wait_closed()  # alive but mute

    async def beating(conn, srv):
        for i in range(1, 4):  # heartbeats every 0.03 s keep a 0.2 s timeout from firing
            await conn.send('{"type": "heartbeat", "ts": 3}')
            await asyncio.sleep(0.03)
            await conn.send(price_msg(i))
        await conn.close(1000)

    async def go():
        async with Scripted(silent, beating) as srv:
            feed = ReconnectingFeed(
                lambda: WebSocketFeed.open(srv.url, heartbeat_timeout=0.2), sleep=NoSleep()
            )
            got = [p.price async for p in feed.prices()]
            return got, feed

    got, feed = run(go())
    assert got == [100.0, 101.0, 102.0, 103.0]
    assert feed.reconnects == 1
    assert isinstance(feed.last_error, HeartbeatTimeout)


def test_websocket_feed_rejects_bad_arguments():
    for kwargs, match in [
        ({"url": "http://x"}, "url: must start with ws://"),
        ({"subscribe": "BTC"}, "subscribe: must be a list"),
        ({"subscribe": [""]}, "subscribe: symbols must be non-empty"),
        ({"heartbeat_timeout": 0}, "heartbeat_timeout: must be finite and > 0"),
        ({"max_buffer": 0}, "max_buffer: must be an integer >= 1"),
        ({"open_timeout": -1}, "open_timeout: must be finite and > 0"),
    ]:
        with pytest.raises(ValueError, match=match):
            WebSocketFeed(**({"url": "ws://127.0.0.1:1"} | kwargs))


def test_full_queue_drops_oldest_and_counts():
    async def script(conn, srv):
        for i in range(6):
            await conn.send(price_msg(i))
        await conn.close(1000)

    async def go():
        async with Scripted(script) as srv, WebSocketFeed(srv.url, max_buffer=2) as feed:
            while feed.connected:
                await asyncio.sleep(0.005)
            return [p.price async for p in feed.prices()], feed.dropped

    assert run(go()) == ([104.0, 105.0], 4)


def sim_market(seed):
    und = {"BTC": UnderlyingModel(100.0, 0.6), "SPX": UnderlyingModel(5000.0, 0.15)}
    smiles = {"BTC": SmileModel(0.6, -0.3, 0.5, 0.3), "SPX": SmileModel(0.15, -0.5, 0.2, 0.1)}
    return SimulatedMarket(und, dt=1e-5, seed=seed, smiles=smiles)


def sim_feed(seed):
    return SimulatedFeed(sim_market(seed), n_steps=15, surface_every=4, start_ns=10**18)


def _sans_local(events):
    return [dataclasses.replace(e, local_ts_ns=0) for e in events]


def test_serve_simulated_feed_round_trip_equals_the_direct_stream():
    async def direct():
        return [e async for e in merge(sim_feed(21))]

    async def via_ws():
        async with await serve_feed(sim_feed(21)) as server:
            async with WebSocketFeed(server.url) as client:
                events = [e async for e in merge(client)]
            await server.wait_done()
            return events, server.published

    expected = run(direct())
    got, published = run(via_ws())
    assert published == len(expected) == 15 * 2 + 4 * 2
    assert _sans_local(got) == _sans_local(expected)


def test_serve_feed_subscription_filter():
    async def go():
        async with await serve_feed(sim_feed(2), require_subscribe=True) as server:
            async with WebSocketFeed(server.url, subscribe=["SPX"]) as client:
                return [e async for e in merge(client)]

    got = run(go())
    assert len(got) == 15 + 4 and {e.underlying for e in got} == {"SPX"}


def test_serve_feed_heartbeats_and_validation():
    async def go():
        feed = SimulatedFeed(sim_market(0), n_steps=None, pause=0.01)
        async with await serve_feed(feed, heartbeat_interval=0.02) as server:
            async with WebSocketFeed(server.url) as client:
                async for _ in client.prices():
                    if client.heartbeats >= 2:
                        break
                return client.heartbeats

    assert run(go()) >= 2
    feed = sim_feed(0)
    for kwargs, match in [
        ({"wait_for_clients": -1}, "wait_for_clients: must be >= 0"),
        ({"port": 70000}, r"port: must be an integer in \[0, 65535\]"),
        ({"heartbeat_interval": 0.0}, "heartbeat_interval: must be finite and > 0"),
    ]:
        with pytest.raises(ValueError, match=match):
            run(serve_feed(feed, **kwargs))
    with pytest.raises(ValueError, match="feed: must be a MarketDataFeed"):
        run(serve_feed(object()))  # type: ignore[arg-type]


def test_server_restart_reconnects_and_the_stream_goes_on():
    async def go():
        source = SimulatedFeed(sim_market(4), n_steps=40, start_ns=0)
        async with await serve_feed(source) as server:
            feed = ReconnectingFeed(lambda: WebSocketFeed.open(server.url), sleep=NoSleep())
            got = []
            async for p in feed.prices():
                got.append(p)
                if len(got) == 10:
                    await server.disconnect_all()  # code 1012: service restart
            await server.wait_done()
            return got, feed, server

    got, feed, server = run(go())
    assert feed.reconnects == 1 and server.connections == 2
    assert server.published == 40 * 2 * 2 and 10 <= len(got) <= 80  # prices + surfaces
    assert got[-1].exchange_ts_ns == round(40 * 1e-5 * 365 * 86400 * 10**9)  # the last step
    ts = [p.exchange_ts_ns for p in got]
    assert ts == sorted(ts)
