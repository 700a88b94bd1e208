"""Redis Streams fan-out: engine broadcaster -> Redis stream -> several API worker processes.

Needs the Redis server on 127.0.0.1:6379 (override with JAXMM_TEST_REDIS_URL). Every test uses
its own stream key and deletes it afterwards. The reference for each assertion is the list of
events the test itself published on the engine's broadcaster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import uuid

import pytest
from _wsserver import recv_events as _recv_events
from _wsserver import subscribe as _subscribe
from websockets.asyncio.client import connect

from jaxmm.api import mint_token
from jaxmm.api._fanout import RedisStreamPublisher, RedisStreamRelay, RelayBroadcaster
from jaxmm.events import (
    AlertTriggered,
    EventBroadcaster,
    OrderFilled,
    PriceUpdated,
    SnapshotRequired,
    SubscriberLagged,
)

REDIS_URL = os.environ.get("JAXMM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
GUARD_S = 60.0  # deadlock guard only; nothing here asserts on time


def _redis():
    import redis.asyncio as aioredis

    return aioredis.from_url(REDIS_URL)


@pytest.fixture
def stream_key():
    """A fresh stream key; the Redis server must be up (this is a real fan-out test)."""

    async def ping():
        r = _redis()
        try:
            await r.ping()
        finally:
            await r.aclose()

    try:
        asyncio.run(ping())
    except Exception as exc:
        pytest.fail(f"Redis server needed at {REDIS_URL} for the fan-out tests: {exc}")
    key = f"jaxmm:test:{uuid.uuid4().hex}"
    yield key

    async def delete():
        r = _redis()
        try:
            await r.delete(key)
        finally:
            await r.aclose()

    asyncio.run(delete())


def _events(n):
    """A mix of event types, each tagged with its index i."""
    out = []
    for i in range(n):
        if i % 3 == 0:
            out.append(PriceUpdated(underlying="BTC", instrument="BTC", price=100.0 + i))
        elif i % 3 == 1:
            out.append(
                OrderFilled(
                    order_id=f"o{i}",
                    trade_id=f"t{i}",
                    side="buy",
                    price=1.0 + i,
                    quantity=2.0,
                    instrument="BTC-0030D-100-C",
                )  # fmt: skip
            )
        else:
            out.append(AlertTriggered(severity="warning", kind="test", message=f"alert {i}"))
    return out


@contextlib.contextmanager
def _workers(n, stream, secret):
    """n uvicorn processes serving jaxmm.api._fanout:relay_app_from_env on free ports."""
    env = dict(os.environ)
    env.update(
        JAXMM_REDIS_URL=REDIS_URL,
        JAXMM_EVENT_STREAM=stream,
        JAXMM_JWT_SECRET=secret,
        JAXMM_WS_HEARTBEAT_S="0.5",
        JAX_PLATFORMS="cpu",
    )
    env.pop("JAXMM_AUTH_DISABLED", None)
    procs, socks, ports = [], [], []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))  # a free port, handed over as an open socket
            sock.set_inheritable(True)
            socks.append(sock)
            ports.append(sock.getsockname()[1])
            cmd = [sys.executable, "-m", "uvicorn", "--factory",
                   "jaxmm.api._fanout:relay_app_from_env", "--fd", str(sock.fileno()),
                   "--log-level", "warning", "--ws-ping-interval", "0"]  # fmt: skip
            procs.append(subprocess.Popen(cmd, env=env, pass_fds=[sock.fileno()]))
        yield ports
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for s in socks:
            s.close()


async def _connect(port, token):
    """Connect once the worker accepts connections and has its relay running."""
    url = f"ws://127.0.0.1:{port}/api/v1/mm/ws?token={token}"
    async with asyncio.timeout(GUARD_S):
        while True:
            try:
                return await connect(url)
            except OSError:
                await asyncio.sleep(0.1)


def test_two_worker_processes_serve_the_same_events_in_the_same_order(stream_key):
    secret = secrets.token_urlsafe(32)
    token = mint_token("fanout-test", "read", 600, secret)
    n = 300

    async def main():
        engine_bus = EventBroadcaster(history_size=10_000)
        publisher = RedisStreamPublisher(engine_bus, REDIS_URL, stream=stream_key, maxlen=5000)
        await publisher.start()
        try:
            with _workers(2, stream_key, secret) as ports:
                clients = [await _connect(p, token) for p in ports]
                try:
                    for ws in clients:
                        assert (await _subscribe(ws, from_seq=1))["type"] == "subscribed"
                    sent = [engine_bus.publish(e) for e in _events(n)]
                    await publisher.flush(GUARD_S)
                    got = [await _recv_events(ws, n) for ws in clients]
                finally:
                    for ws in clients:
                        await ws.close()
                expected = [json.loads(e.model_dump_json()) for e in sent]
                for frames in got:
                    assert [f["seq"] for f in frames] == list(range(1, n + 1))
                    assert [f["event"] for f in frames] == expected
                assert got[0] == got[1]

                # a client moves to the other worker mid-stream and misses nothing
                ws = await _connect(ports[0], token)
                await _subscribe(ws, from_seq=n + 1)
                more = [engine_bus.publish(e) for e in _events(10)]
                first = await _recv_events(ws, 4)
                await ws.close()
                later = [engine_bus.publish(e) for e in _events(5)]
                ws = await _connect(ports[1], token)
                await _subscribe(ws, from_seq=first[-1]["seq"] + 1)
                rest = await _recv_events(ws, 6 + 5)
                await ws.close()
                assert [f["seq"] for f in first + rest] == [e.seq for e in more + later]
                # the stream carries the engine's seq as the entry ID
                r = _redis()
                try:
                    entries = await r.xrange(stream_key, count=3)
                finally:
                    await r.aclose()
                assert [e[0] for e in entries] == [b"1-0", b"2-0", b"3-0"]
                assert [int(e[1][b"seq"]) for e in entries] == [1, 2, 3]
        finally:
            await publisher.stop()

    asyncio.run(main())


def test_publisher_resumes_after_restart_and_refuses_a_foreign_stream(stream_key):
    async def main():
        bus = EventBroadcaster()
        pub = RedisStreamPublisher(bus, REDIS_URL, stream=stream_key)
        await pub.start()
        for e in _events(5):
            bus.publish(e)
        await pub.flush(GUARD_S)
        await pub.stop()
        for e in _events(4):  # published while no publisher runs
            bus.publish(e)
        pub = RedisStreamPublisher(bus, REDIS_URL, stream=stream_key)
        await pub.start()
        assert pub.appended_seq == 5  # resumes after the stream's last entry
        await pub.flush(GUARD_S)
        await pub.stop()
        r = _redis()
        try:
            ids = [e[0] for e in await r.xrange(stream_key)]
        finally:
            await r.aclose()
        assert ids == [f"{i}-0".encode() for i in range(1, 10)]  # each once, in order
        # an engine whose sequence restarted must not write into this stream
        fresh = EventBroadcaster()
        fresh.publish(_events(1)[0])
        pub = RedisStreamPublisher(fresh, REDIS_URL, stream=stream_key)
        with pytest.raises(ValueError, match="stream: .* already holds seq 9 > engine last_seq 1"):
            await pub.start()
        await pub.stop()

    asyncio.run(main())


def test_relay_keeps_engine_seq_and_reports_gaps(stream_key):
    async def main():
        engine_bus = EventBroadcaster()
        pub = RedisStreamPublisher(engine_bus, REDIS_URL, stream=stream_key)
        await pub.start()
        sent = [engine_bus.publish(e) for e in _events(6)]
        await pub.flush(GUARD_S)
        await pub.stop()

        worker_bus = RelayBroadcaster()
        relay = RedisStreamRelay(worker_bus, REDIS_URL, stream=stream_key, block_ms=50)
        live = worker_bus.subscribe()
        await relay.start()
        try:
            got = [await asyncio.wait_for(live.get(), GUARD_S) for _ in range(6)]
            assert [e.seq for e in got] == [1, 2, 3, 4, 5, 6]
            assert got == sent  # same events, same seqs
            # history replay on the worker uses the engine's numbers
            replay = worker_bus.subscribe(from_seq=3)
            assert [replay.get_nowait().seq for _ in range(3)] == [4, 5, 6]
            # a gap (seq 7 never reaches the stream): live subscribers are cut off, not misled
            r = _redis()
            try:
                e8 = _events(1)[0].model_copy(update={"seq": 8})
                await r.xadd(stream_key, {"seq": "8", "event": e8.model_dump_json()}, id="8-0")
            finally:
                await r.aclose()
            with pytest.raises(SubscriberLagged):
                while True:
                    await asyncio.wait_for(live.get(), GUARD_S)
            assert worker_bus.last_seq == 8 and worker_bus.gaps == 1
            with pytest.raises(SnapshotRequired):
                worker_bus.subscribe(from_seq=5)
            assert [e.seq for e in worker_bus.history()] == [8]
        finally:
            await relay.stop()

    asyncio.run(main())


def test_relay_broadcaster_rejects_unstamped_events_and_ignores_repeats():
    async def main():
        bus = RelayBroadcaster()
        with pytest.raises(ValueError, match="event.seq"):
            bus.relay(PriceUpdated(underlying="BTC", price=1.0))
        assert bus.relay(PriceUpdated(underlying="BTC", price=1.0, seq=5)) is True
        assert bus.relay(PriceUpdated(underlying="BTC", price=2.0, seq=5)) is False
        assert bus.relay(PriceUpdated(underlying="BTC", price=3.0, seq=4)) is False
        assert bus.last_seq == 5 and [e.price for e in bus.history()] == [1.0]
        with pytest.raises(ValueError, match="maxlen"):
            RedisStreamPublisher(EventBroadcaster(), REDIS_URL, maxlen=0)

    asyncio.run(main())
