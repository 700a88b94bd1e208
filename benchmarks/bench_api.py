"""REST latency/throughput and WebSocket broadcast latency of the jaxmm service, on loopback.

Three processes: this driver; the **server** (``jaxmm.api.create_app`` over a started
``OptionsMarketMaker`` on a small simulated configuration — ``MarketMakerConfig.demo()``'s BTC
chain, 3 expiries x 21 strikes x C/P — served by uvicorn, JWT auth enabled with a minted read
token, the per-subject rate limit raised out of the way); and the **load generator**, a separate
Python asyncio process (``wrk`` is not installed on this machine; no system package is added).

- **REST, fixed rate** (the issue's bar, p99 < 2 ms at ~500 req/s): ``GET /api/v1/mm/quotes``
  and ``GET /api/v1/mm/positions``, ``--rate`` requests/s for ``--seconds`` each, open loop over
  8 keep-alive HTTP/1.1 connections. Latency runs from the request's **scheduled** send time to
  the last byte of the response (no coordinated omission). The client is a minimal HTTP/1.1
  writer/parser on asyncio streams, so the client adds as little as possible; every response is
  checked for status 200 and a JSON list body.
- **REST, saturated**: 8 connections, each sending its next request as soon as the previous
  answer arrived, for ``--seconds``: requests/s (``rest_rps`` is this number for /mm/quotes).
- **WebSocket broadcast**: 1, 10 and 100 subscribers (``types=["alert_triggered"]``); the server
  publishes one marker ``AlertTriggered`` every 1/rate s into the engine's broadcaster, built
  immediately before ``publish`` so its ``local_ts_ns`` is the publish time. One server per rate
  in ``--ws-rates`` (default 20, 200 and 1000 events/s: an idle stream, a moderate one of 20k
  frames/s to 100 subscribers, and one near the live engine's own ~1,000 events/s, 100k
  frames/s); the headline keys of api.json are the ``--ws-reference-rate`` (200/s) numbers,
  every rate is kept under ``ws_by_rate``. Three figures per event, from its ``local_ts_ns``
  on the same host clock: **publish**, how long the server's ``publish`` took (it returns
  after the last subscriber's frame was written: the server's whole part; a bench-only route
  serves these); **delivery**, to the kernel's receive time of each frame in its subscriber's
  socket (``SO_TIMESTAMPNS``: as a remote subscriber would see it arrive; the bar's figure);
  and **read**, to when the load process's read returned (adds that one process working
  through all 100 sockets). Only events
  published after the load process started reading count (earlier ones waited in the sockets
  while the other subscribers connected). ``--ws-client raw`` (default): a lean client of this
  file (RFC 6455 upgrade with the accept key checked, one ``epoll`` loop with
  ``recvmsg_into``, frames split and parsed after the run) that sleeps until data arrives;
  ``raw-busy``: the same client polling without ever sleeping (so waking it is not on the
  server's CPU bill, as with a remote client); ``websockets``: the ``websockets`` library's
  client (~20 us per frame of its own; read times only). The subscribers read under
  ``SCHED_BATCH`` (``--ws-client-sched batch``, the default; ``other`` for the default policy):
  they still sleep until data arrives, but on loopback every frame wakes the reader, and with
  the default policy the woken reader preempts the server in the middle of a fan-out when the
  two share a core (measured: up to one involuntary context switch of the server per
  subscriber), a cost a remote subscriber puts on its own machine. Each scenario also records
  the CPU time the server process and the load process spent (``/proc/<pid>/stat``,
  ``os.times``): the marginal cost per subscriber per event,
  ``(cpu(100 subs) - cpu(1 sub)) / (99 x events)``.
- ``--live``: the server is instead the market maker trading on the simulated market
  (``jaxmm._live.run_live``, the wiring of ``jaxmm serve``: feed, surfaces, simulated traders,
  hedges), so every figure includes the engine's own work on the same loop and cores; with the
  API on its own thread (``run_live(layout="thread")``), results/api_live.json and .md;
  ``--api-process`` (``jaxmm serve``'s default layout: the API in a process of its own, stream
  connections handed to the engine's process) writes results/api_live_process.*,
  ``--api-relay`` (the stream served in the API process too) api_live_relay.*,
  ``--single-loop`` api_live_single.*.
- **WebSocket fan-out over workers** (``--fanout-workers 2``, needs a Redis server at
  ``--redis-url``): the engine process appends every event to a Redis stream
  (:class:`jaxmm.api._fanout.RedisStreamPublisher`); ``N`` uvicorn worker processes serve
  ``relay_app_from_env`` (``RedisStreamRelay``) and ``100 / N`` subscribers each, from ``N``
  load processes; latency from the engine's publish (through Redis and the worker) to receive.

- **The machine's send floor** (unless ``--no-floor``): after the scenarios, ``--repeats`` runs
  of ``bench_ws_floor.py``'s bare Python ``socket.send`` loop to 100 subscribers at the
  reference rate, so every results file carries what the loopback itself allowed that day
  (``ws_floor_p99_ms_100_subs``).

The load average (``os.getloadavg``) is recorded before and after each run; the machine is
shared, so repeat on an idle machine before quoting a number. WebSocket permessage-deflate is
off (``--deflate`` turns it on). Writes benchmarks/results/api.json and api.md. What any sender
can do on the same machine (a C loop of ``send`` calls, a Python one, the ``websockets``
library's ``broadcast``) is measured against this server by ``bench_ws_floor.py``.
Every scenario runs ``--repeats`` times (default 3) against the same server; the headline numbers
are medians, every run is kept in the JSON. Usage:
``python benchmarks/bench_api.py [--rate 500] [--seconds 5] [--ws-rates 20,200,1000] [--repeats 3]
[--fanout-workers 2] [--ws-only] [--ws-impl auto] [--ws-client raw]``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import functools
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CONNECTIONS = 8
SUBSCRIBERS = (1, 10, 100)
WS_RATES = (20.0, 200.0, 1000.0)  # marker events/s of the WebSocket scenarios (one server each)
CLIENT_SCHED = ("batch", "other")  # the subscribers' scheduling policy while they read
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS is the same
ANC_SIZE = socket.CMSG_SPACE(16)  # room for one struct timespec
PUBLISH_TIMES_PATH = "/bench/publish-times"  # added to the bench server's app only
PREEMPTIONS_PATH = "/bench/publish-preemptions"  # the same markers' involuntary switches
REFRESH_RESET_PATH = "/bench/refresh-reset"  # --live: restart the engine's refresh latencies


def _median_tree(runs: list) -> object:
    """Element-wise median of same-shaped results (booleans: all true; a figure some runs
    lack, None there: the median of the others, None if none has it)."""
    runs = [r for r in runs if r is not None]
    if not runs:
        return None
    first = runs[0]
    if isinstance(first, dict):
        return {k: _median_tree([r.get(k) for r in runs]) for k in first}
    if isinstance(first, bool):
        return all(runs)
    if isinstance(first, int | float):
        return statistics.median(runs)
    return first


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# ---------------------------------------------------------------------------------- server ----


def _btc_config():
    """``MarketMakerConfig.demo()`` reduced to its BTC chain (3 expiries x 21 strikes x C/P)."""
    from jaxmm.engine import MarketMakerConfig

    demo = MarketMakerConfig.demo()
    return demo.model_copy(
        update={
            "underlyings": [demo.underlyings[0]],
            "limits": {k: v for k, v in demo.limits.items() if k != "SPX"},
        }
    )


def _add_markers(app, ws_rate: float) -> asyncio.Task:
    """Publish a marker ``AlertTriggered`` every 1/``ws_rate`` s into ``app.state.events`` and
    serve the bench's own route ``PUBLISH_TIMES_PATH``: ns each marker's ``publish`` took, for
    markers stamped in [from_ns, to_ns] (``publish`` returns after every live subscriber's
    frame was written: the server's whole part of a broadcast, free of client effects), and
    ``PREEMPTIONS_PATH``: for the same markers, how many times the publishing thread was
    preempted during ``publish`` (involuntary context switches, ``getrusage(RUSAGE_THREAD)``
    read around it, outside the timed span)."""
    import resource

    from jaxmm.events import AlertTriggered

    bus = app.state.events
    fanout_ns: deque[tuple[int, int, int]] = deque(maxlen=200_000)  # (local_ts_ns, ns, switches)
    usage, me = resource.getrusage, resource.RUSAGE_THREAD

    async def ticker() -> None:
        period = 1.0 / ws_rate
        nxt = time.perf_counter()
        clock = time.perf_counter_ns
        while True:
            nxt += period
            await asyncio.sleep(max(0.0, nxt - time.perf_counter()))
            event = AlertTriggered(severity="info", kind="bench", message="tick")
            before = usage(me).ru_nivcsw
            t0 = clock()
            bus.publish(event)
            t1 = clock()
            fanout_ns.append((event.local_ts_ns, t1 - t0, usage(me).ru_nivcsw - before))

    async def publish_times(from_ns: int, to_ns: int) -> list[int]:
        return [d for t, d, _ in fanout_ns if from_ns <= t <= to_ns]

    async def preemptions(from_ns: int, to_ns: int) -> list[int]:
        return [n for t, _, n in fanout_ns if from_ns <= t <= to_ns]

    app.add_api_route(PUBLISH_TIMES_PATH, publish_times, methods=["GET"])
    app.add_api_route(PREEMPTIONS_PATH, preemptions, methods=["GET"])
    return asyncio.create_task(ticker())


def _switch_interval(args) -> float | None:
    if _layout(args) != "thread":
        return None
    from jaxmm._live import API_SWITCH_INTERVAL_S

    return args.switch_interval if args.switch_interval is not None else API_SWITCH_INTERVAL_S


def _layout(args) -> str:
    """The ``run_live`` layout of the command line's flags (``"idle"`` without ``--live``)."""
    if not args.live:
        return "idle"
    return ("loop" if args.single_loop else "process" if args.api_process
            else "relay" if args.api_relay else "thread")  # fmt: skip


def _live_kwargs() -> dict:
    """``run_live`` options from the environment (set by ``main`` from the command line)."""
    out: dict = {"layout": os.environ.get("JAXMM_BENCH_LAYOUT", "thread")}
    if os.environ.get("JAXMM_BENCH_SWITCH_S"):
        out["switch_interval_s"] = float(os.environ["JAXMM_BENCH_SWITCH_S"])
    return out


async def _serve_live(port: int, ws_rate: float) -> None:
    """``--live``: the market maker trading on the simulated market (``jaxmm._live.run_live``,
    the wiring of ``jaxmm serve`` and ``make demo``: feed, surface updates, simulated traders,
    hedges, and the engine's own event stream) with the API on ``port``, plus the markers;
    runs until SIGTERM."""
    from jaxmm._live import run_live
    from jaxmm.api import ApiSettings

    settings = ApiSettings(
        jwt_secret=os.environ["JAXMM_JWT_SECRET"], rate_limit_per_s=1e9, rate_limit_burst=10**9
    )
    tasks: list[asyncio.Task] = []
    await run_live(
        _btc_config(),
        seconds=None,
        settings=settings,
        port=port,
        on_ready=lambda session: tasks.append(_add_live_routes(session, ws_rate)),
        **_live_kwargs(),
    )
    for t in tasks:
        t.cancel()


def _add_live_routes(session, ws_rate: float) -> asyncio.Task:
    """The markers, and ``REFRESH_RESET_PATH``: forget the engine's refresh latencies so far
    (``GET /api/v1/mm/stats`` then reports those since)."""

    async def refresh_reset() -> list:
        session.engine.latency.reset("refresh")
        return []

    session.app.add_api_route(REFRESH_RESET_PATH, refresh_reset, methods=["GET"])
    return _add_markers(session.app, ws_rate)


async def _serve(fd: int, ws_rate: float, no_deflate: bool, ws_impl: str) -> None:
    import uvicorn

    from jaxmm.api import ApiSettings, create_app
    from jaxmm.engine import OptionsMarketMaker
    from jaxmm.feeds import SurfaceUpdate

    config = _btc_config()
    btc = config.underlyings[0]
    engine = OptionsMarketMaker(config)
    await engine.start()
    strikes = list(btc.strikes)
    await engine.on_surface(
        SurfaceUpdate(
            "BTC", list(btc.expiries), strikes, [[btc.vol] * len(strikes)] * len(btc.expiries),
            btc.spot, time.time_ns(), time.time_ns(),
        )
    )  # fmt: skip
    await engine.on_price("BTC", btc.spot)
    settings = ApiSettings(
        jwt_secret=os.environ["JAXMM_JWT_SECRET"], rate_limit_per_s=1e9, rate_limit_burst=10**9
    )
    app = create_app(engine, settings=settings)
    bus = app.state.events
    await _seed_positions(app, os.environ["JAXMM_JWT_SECRET"])
    tick = _add_markers(app, ws_rate)
    publisher = None
    if os.environ.get("JAXMM_BENCH_STREAM"):  # fan-out: every event also into a Redis stream
        from jaxmm.api._fanout import RedisStreamPublisher

        publisher = RedisStreamPublisher(
            bus, os.environ["JAXMM_REDIS_URL"], stream=os.environ["JAXMM_BENCH_STREAM"]
        )
        await publisher.start()
    # socket(fileno=) detects the family (AF_INET): asyncio then sets TCP_NODELAY on accepted
    # connections; uvicorn's own --fd path assumes AF_UNIX and leaves Nagle on (40 ms stalls).
    sock = socket.socket(fileno=fd)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            ws_ping_interval=None,
            ws_per_message_deflate=not no_deflate,
            ws=ws_impl,
        )
    )
    try:
        await server.serve(sockets=[sock])
    finally:
        tick.cancel()
        if publisher is not None:
            await publisher.stop()
        await engine.stop()


async def _seed_positions(app, secret: str, orders: int = 24) -> None:
    """Market orders through the API's own order route (``POST /api/v1/orders``) into the
    engine's books, buying or selling ``orders`` of its quoted options, so ``/mm/positions``
    serves real rows (the engine's fills plus its delta hedges), not an empty list."""
    import httpx

    from jaxmm.api import mint_token

    auth = {"Authorization": f"Bearer {mint_token('bench-seed', ['read', 'trade'], 600, secret)}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        quotes = (await client.get("/api/v1/mm/quotes", headers=auth)).json()
        quoted = [q for q in quotes if q["bid_size"] > 0 and q["ask_size"] > 0]
        if len(quoted) < orders:
            raise RuntimeError(f"bench: {len(quoted)} two-sided quotes, need {orders}")
        step = len(quoted) // orders
        for i, q in enumerate(quoted[::step][:orders]):
            r = await client.post(
                "/api/v1/orders",
                headers=auth,
                json={"symbol": q["symbol"], "side": "buy" if i % 2 else "sell",
                      "quantity": 1, "order_type": "market"},
            )  # fmt: skip
            if r.status_code >= 300:
                raise RuntimeError(f"bench: seeding order refused: {r.status_code} {r.text}")
        positions = (await client.get("/api/v1/mm/positions", headers=auth)).json()
    if not positions:
        raise RuntimeError("bench: the seeding orders left no position")


# ------------------------------------------------------------------------------------ load ----


class _Http:
    """One keep-alive HTTP/1.1 connection: GET with a bearer token, read a Content-Length body.
    Each read is stamped with the kernel's receive time of its data (``SO_TIMESTAMPNS``, as the
    WebSocket client does): :attr:`arrived_ns` is that time for the segment that completed the
    last response, free of this process's own wake-up and parsing."""

    def __init__(self, sock: socket.socket, token: str):
        self.sock, self.token = sock, token
        self.buf = bytearray()
        self.arrived_ns = 0

    @classmethod
    async def open(cls, port: int, token: str) -> _Http:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
        return cls(sock, token)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, anc, _, _ = self.sock.recvmsg(1 << 17, ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                ready = loop.create_future()
                loop.add_reader(self.sock.fileno(), ready.set_result, None)
                try:
                    await ready
                finally:
                    loop.remove_reader(self.sock.fileno())
                continue
            if not data:
                raise RuntimeError("http client: connection closed by the server")
            self.buf += data
            self.arrived_ns = _kernel_ns(anc)
            return

    async def get(self, path: str, expect: bytes = b"[") -> bytes:
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n"
            "Accept: application/json\r\n\r\n".encode()
        )  # a few hundred bytes into an empty send buffer: never blocks
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            await self._read()
        head = bytes(self.buf[:end])
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        while len(self.buf) < end + 4 + length:
            await self._read()
        body = bytes(self.buf[end + 4 : end + 4 + length])
        del self.buf[: end + 4 + length]
        if status != 200 or body[:1] != expect:
            raise RuntimeError(f"GET {path}: HTTP {status}: {body[:200]!r} (want 200, {expect!r})")
        return body

    def close(self) -> None:
        self.sock.close()


async def _rest_fixed_rate(port: int, token: str, path: str, rate: float, seconds: float) -> dict:
    conns = [await _Http.open(port, token) for _ in range(CONNECTIONS)]
    idle: asyncio.Queue[_Http] = asyncio.Queue()
    for c in conns:
        idle.put_nowait(c)
    for c in conns:  # warm: first request of each connection
        json.loads(await c.get(path))
    n = int(rate * seconds)
    lat: list[float] = []  # from the scheduled send time (open loop)
    lat_ready: list[float] = []  # from when this process was ready to send (see below)
    bodies: list[int] = []

    # from ready to the response's arrival in this process's socket (the kernel's receive
    # time): what is left when this process's own wake-up and parsing are taken out too
    lat_wire: list[float] = []

    async def one(t_sched: float, t_ready: float, wall_ready_ns: int) -> None:
        conn = await idle.get()  # waiting for a free connection is the server's doing: counted
        try:
            body = await conn.get(path)
            arrived = conn.arrived_ns
        finally:
            idle.put_nowait(conn)
        t = time.perf_counter()
        lat.append((t - t_sched) * 1e3)
        lat_ready.append((t - t_ready) * 1e3)
        lat_wire.append((arrived - wall_ready_ns) / 1e6)
        bodies.append(len(body))

    loop = asyncio.get_running_loop()
    timer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bench-timer")
    late: list[float] = []  # how late this process was ready to send, after the schedule
    t0 = time.perf_counter() + 0.05
    tasks = []
    for i in range(n):
        t_sched = t0 + i / rate
        delay = t_sched - time.perf_counter()
        # asyncio sleeps in whole ms of epoll timeout (it may wake up to ~1 ms late): sleep
        # coarsely to ~1.2 ms before the schedule, then the rest in a thread's time.sleep
        # (the kernel's timer, ~0.1 ms late), whose end wakes this loop at once
        if delay > 0.0015:
            await asyncio.sleep(delay - 0.0012)
            delay = t_sched - time.perf_counter()
        if delay > 0:
            await loop.run_in_executor(timer, time.sleep, delay)
        now, wall = time.perf_counter(), time.time_ns()
        t_ready = max(t_sched, now)
        late.append((t_ready - t_sched) * 1e3)
        wall_ready = wall - int((now - t_ready) * 1e9)
        tasks.append(asyncio.create_task(one(t_sched, t_ready, wall_ready)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    timer.shutdown()
    sample = json.loads(await conns[0].get(path))
    for c in conns:
        c.close()
    return {
        "path": path,
        "target_rps": rate,
        "achieved_rps": n / elapsed,
        "requests": n,
        **_fixed_rate_figures(lat, lat_ready, lat_wire, late, bodies, sample),
    }


def _fixed_rate_figures(lat, lat_ready, lat_wire, late, bodies, sample) -> dict:
    """The percentiles of a fixed-rate run (ms lists: from schedule, from ready, ready to
    arrival, how late the load was ready), the mean body size and the items of a sample body."""
    return {
        "p50_ms": _pct(lat, 0.50),
        "p99_ms": _pct(lat, 0.99),
        "max_ms": max(lat),
        "ready_p50_ms": _pct(lat_ready, 0.50),
        "ready_p99_ms": _pct(lat_ready, 0.99),
        "wire_p50_ms": _pct(lat_wire, 0.50),
        "wire_p99_ms": _pct(lat_wire, 0.99),
        "send_late_p50_ms": _pct(late, 0.50),
        "send_late_p99_ms": _pct(late, 0.99),
        "body_bytes": int(sum(bodies) / len(bodies)),
        "items": len(sample) if isinstance(sample, list) else None,
    }


C_LOADGEN = r"""/* Open-loop HTTP/1.1 load at a fixed rate over keep-alive connections (bench_api).
   usage: loadgen PORT RATE SECONDS CONNS PATH TOKEN EXPECT OUT
   Request i is due at t0 + i/RATE (CLOCK_MONOTONIC; a timerfd wakes the one thread). A due
   request goes out at once on an idle connection, or on the first one to free up (that wait
   counts: it is the server's). For each request OUT gets one line:
   sched_ns ready_ns done_ns wire_ns body_bytes
   (monotonic: scheduled, when this process was ready to send it, when its response was read
   whole; wire_ns: the kernel's receive time of the response's last segment (SO_TIMESTAMPNS,
   CLOCK_REALTIME) minus the realtime clock at ready, i.e. ready -> arrival). */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define BUFSZ (1 << 20)

typedef struct {
    int fd, busy;
    long req;          /* the request in flight */
    char *buf;
    size_t used;
    int64_t arrived;   /* realtime ns of the last segment read */
} conn_t;

static int64_t now_ns(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) { perror(what); exit(2); }

static char req_text[4096];
static int req_len;

static void send_req(conn_t *c) {
    int off = 0;
    while (off < req_len) {
        ssize_t n = send(c->fd, req_text + off, req_len - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            die("send");
        }
        off += (int)n;
    }
}

/* read what is there (waiting for it when `blocking`), stamping c->arrived with the
   kernel's receive time; 0 when there was nothing to read, -1 when the server closed */
static int read_some(conn_t *c, int blocking) {
    char cbuf[256];
    struct iovec iov = {c->buf + c->used, BUFSZ - c->used};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    ssize_t n = recvmsg(c->fd, &m, blocking ? 0 : MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return 0;
        die("recvmsg");
    }
    if (n == 0) return -1;  /* closed by the server */
    c->used += (size_t)n;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(h), sizeof ts);
            c->arrived = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        }
    return 1;
}

/* a whole response at the start of c->buf: its size, else 0; status and body length out */
static size_t whole(conn_t *c, int *status, size_t *body, const char *expect) {
    c->buf[c->used < BUFSZ ? c->used : BUFSZ - 1] = 0;
    char *end = memmem(c->buf, c->used, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = (size_t)(end - c->buf) + 4, len = 0;
    *status = atoi(c->buf + 9);
    for (char *p = c->buf; p < end; p++)
        if ((p == c->buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0)
            len = strtoul(p + 15, NULL, 10);
    if (c->used < head + len) return 0;
    if (*status != 200 || (len && c->buf[head] != expect[0])) {
        fprintf(stderr, "loadgen: HTTP %d, body starts %.80s\n", *status, c->buf + head);
        exit(4);
    }
    *body = len;
    return head + len;
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: loadgen PORT RATE SECONDS CONNS PATH TOKEN EXPECT OUT\n");
        return 1;
    }
    int port = atoi(argv[1]);
    double rate = atof(argv[2]), seconds = atof(argv[3]);
    int nconn = atoi(argv[4]);
    const char *path = argv[5], *token = argv[6], *expect = argv[7];
    long n = (long)(rate * seconds);
    req_len = snprintf(req_text, sizeof req_text,
        "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
        "Accept: application/json\r\n\r\n", path, token);

    conn_t *conns = calloc((size_t)nconn, sizeof *conns);
    int ep = epoll_create1(0);
    for (int i = 0; i < nconn; i++) {
        conn_t *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
        c->buf = malloc(BUFSZ);
        /* warm: the first request of each connection, blocking */
        send_req(c);
        int st; size_t body, took;
        while (!(took = whole(c, &st, &body, expect)))
            if (read_some(c, 1) < 0) { fprintf(stderr, "loadgen: closed at warm-up\n"); exit(3); }
        memmove(c->buf, c->buf + took, c->used - took);
        c->used -= took;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    }
    int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = 0xffffffffu};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

    size_t vec = sizeof(int64_t) * (size_t)n;
    int64_t *sched = malloc(vec), *ready = malloc(vec), *done = malloc(vec);
    int64_t *wire = malloc(vec), *wall = malloc(vec);
    size_t *bytes = malloc(sizeof(size_t) * (size_t)n);
    int64_t t0 = now_ns(CLOCK_MONOTONIC) + 50000000LL;
    for (long i = 0; i < n; i++) sched[i] = t0 + (int64_t)((double)i * 1e9 / rate);

    /* requests [0, next) are ready, [0, queued) sent, `finished` answered */
    long next = 0, queued = 0, finished = 0;
    int last = nconn - 1;  /* the connection used last */
    while (finished < n) {
        int64_t now = now_ns(CLOCK_MONOTONIC);
        while (next < n && sched[next] <= now) {  /* due: ready now */
            int64_t wr = now_ns(CLOCK_REALTIME), mono = now_ns(CLOCK_MONOTONIC);
            ready[next] = mono;
            wall[next] = wr;
            next++;
        }
        while (queued < next) {  /* ready ones onto idle connections, in order, round robin
                                    (every connection stays in use: none idles into the
                                    server's keep-alive timeout) */
            int i = -1;
            for (int j = 1; j <= nconn; j++) {
                int cand = (last + j) % nconn;
                if (!conns[cand].busy) { i = cand; break; }
            }
            if (i < 0) break;
            last = i;
            conns[i].busy = 1;
            conns[i].req = queued;
            send_req(&conns[i]);
            queued++;
        }
        if (next < n) {
            struct itimerspec its = {0};
            its.it_value.tv_sec = sched[next] / 1000000000LL;
            its.it_value.tv_nsec = sched[next] % 1000000000LL;
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
        struct epoll_event evs[64];
        int k = epoll_wait(ep, evs, 64, -1);
        if (k < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        for (int e = 0; e < k; e++) {
            if (evs[e].data.u32 == 0xffffffffu) {
                uint64_t x;
                if (read(tfd, &x, sizeof x) < 0 && errno != EAGAIN) die("timerfd");
                continue;
            }
            conn_t *c = &conns[evs[e].data.u32];
            int got = read_some(c, 0);
            if (got < 0) {
                fprintf(stderr, "loadgen: the server closed a connection%s\n",
                        c->busy ? " with a request in flight" : "");
                exit(3);
            }
            if (!got) continue;
            int st; size_t body, took;
            while (c->busy && (took = whole(c, &st, &body, expect))) {
                long r = c->req;
                done[r] = now_ns(CLOCK_MONOTONIC);
                wire[r] = c->arrived - wall[r];
                bytes[r] = body;
                memmove(c->buf, c->buf + took, c->used - took);
                c->used -= took;
                c->busy = 0;
                finished++;
            }
        }
    }
    FILE *f = fopen(argv[8], "w");
    if (!f) die("fopen");
    for (long i = 0; i < n; i++)
        fprintf(f, "%lld %lld %lld %lld %zu\n", (long long)sched[i], (long long)ready[i],
                (long long)done[i], (long long)wire[i], bytes[i]);
    fclose(f);
    return 0;
}
"""


@functools.cache
def _loadgen_binary() -> str | None:
    """The C load generator (:data:`C_LOADGEN`), compiled once per process; None without a C
    compiler."""
    return _compile_c(C_LOADGEN, "loadgen")


async def _rest_fixed_rate_c(
    port: int, token: str, path: str, rate: float, seconds: float, binary: str
) -> dict:
    """:func:`_rest_fixed_rate`'s scenario and figures, the load made by the C program
    :data:`C_LOADGEN` (one thread; each send woken by a ``timerfd`` at its scheduled time)
    instead of this Python process: what is left of "from schedule" is then the server's and
    the kernel's, not this interpreter's own lateness."""
    with tempfile.TemporaryDirectory(prefix="jaxmm-load-") as tmp:
        out = Path(tmp) / "lat.txt"
        cmd = [binary, str(port), str(rate), str(seconds), str(CONNECTIONS), path, token, "[",
               str(out)]  # fmt: skip
        t0 = time.perf_counter()
        await asyncio.to_thread(subprocess.run, cmd, check=True)
        elapsed = time.perf_counter() - t0
        rows = [tuple(map(int, line.split())) for line in out.read_text().splitlines()]
    lat = [(done - sched) / 1e6 for sched, _, done, _, _ in rows]
    lat_ready = [(done - ready) / 1e6 for _, ready, done, _, _ in rows]
    lat_wire = [wire / 1e6 for *_, wire, _ in rows]
    late = [(ready - sched) / 1e6 for sched, ready, *_ in rows]
    sample = json.loads(await _get(port, token, path))
    return {
        "path": path,
        "client": "c",
        "target_rps": rate,
        "achieved_rps": len(rows) / (rows[-1][2] - rows[0][0]) * 1e9 if rows else 0.0,
        "elapsed_s": elapsed,
        "requests": len(rows),
        **_fixed_rate_figures(lat, lat_ready, lat_wire, late, [r[4] for r in rows], sample),
    }


async def rest_fixed(
    port: int, token: str, path: str, rate: float, seconds: float, client: str = "c"
) -> dict:
    """The fixed-rate REST scenario with the ``client`` load generator: ``"c"``
    (:func:`_rest_fixed_rate_c`; the Python one when there is no C compiler) or ``"python"``
    (:func:`_rest_fixed_rate`). The result says which ran (``client``)."""
    binary = _loadgen_binary() if client == "c" else None
    if binary is not None:
        return await _rest_fixed_rate_c(port, token, path, rate, seconds, binary)
    return {**await _rest_fixed_rate(port, token, path, rate, seconds), "client": "python"}


async def _rest_saturated(port: int, token: str, path: str, seconds: float) -> dict:
    conns = [await _Http.open(port, token) for _ in range(CONNECTIONS)]
    lat: list[float] = []
    stop = time.perf_counter() + seconds

    async def loop(c: _Http) -> None:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            await c.get(path)
            lat.append((time.perf_counter() - t) * 1e3)

    t0 = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    return {"path": path, "rps": len(lat) / elapsed, "p50_ms": _pct(lat, 0.5),
            "p99_ms": _pct(lat, 0.99), "connections": CONNECTIONS}  # fmt: skip


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process (``/proc/<pid>/stat``; this one if None)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3


def _ws_send(sock: socket.socket, opcode: int, payload: bytes) -> None:
    """One masked client frame (RFC 6455 5.3: client frames are masked)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes((0x80 | opcode, 0x80 | n)) if n < 126 else bytes((0x80 | opcode, 0xFE))
    if n >= 126:
        head += n.to_bytes(2, "big")
    sock.sendall(head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload)))


def _ws_frames(chunks: list[tuple[int, bytes]]) -> list[tuple[int, int, bytes]]:
    """Split a connection's received bytes into frames ``(arrival ns, opcode, payload)``: a
    frame's arrival is the time of the chunk that completed it. Server frames are unmasked and
    unfragmented (checked)."""
    buf, out, pos = bytearray(), [], 0
    for t, data in chunks:
        buf += data
        n = len(buf)
        while n - pos >= 2:
            b0, ln = buf[pos], buf[pos + 1]
            if ln & 0x80 or not b0 & 0x80:
                raise RuntimeError("websocket client: masked or fragmented server frame")
            hl = 2
            if ln == 126:
                if n - pos < 4:
                    break
                ln, hl = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif ln == 127:
                if n - pos < 10:
                    break
                ln, hl = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if n - pos < hl + ln:
                break
            out.append((t, b0 & 0x0F, bytes(buf[pos + hl : pos + hl + ln])))
            pos += hl + ln
    return out


def _ws_open(port: int, path: str, first: bytes) -> tuple[socket.socket, bytes]:
    """A blocking loopback connection upgraded to WebSocket (accept key checked) that has sent
    ``first`` and received its ``subscribed`` acknowledgement; returns it and any bytes after."""
    import base64
    import hashlib

    key = base64.b64encode(os.urandom(16)).decode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # before any byte arrives
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .encode()
    )  # fmt: skip
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("websocket upgrade: connection closed")
        buf += data
    head, buf = buf.split(b"\r\n\r\n", 1)
    accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest())
    if not head.startswith(b"HTTP/1.1 101") or accept not in head:
        raise RuntimeError(f"websocket upgrade refused: {head.splitlines()[0]!r}")
    _ws_send(sock, 1, first)
    while True:
        for i, (_, op, payload) in enumerate(frames := _ws_frames([(0, buf)])):
            if op == 1 and json.loads(payload).get("type") == "subscribed":
                consumed = sum(_frame_len(p) for _, _, p in frames[: i + 1])
                return sock, buf[consumed:]
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("websocket subscribe: connection closed")
        buf += data


def _send_floor(args, token: str, env: dict) -> dict:
    """This machine's floor, measured in the same run: a bare Python ``socket.send`` loop of
    pre-built frames to 100 subscribers at ``--ws-reference-rate`` (``bench_ws_floor.py``'s
    ``python`` sender, same subscribers and clock), ``--repeats`` runs of ``--seconds``. A
    server's WebSocket figures mean something only next to it: on a shared machine the
    loopback's own cost moves between draws by several times."""
    import bench_ws_floor

    keeper = _hold_rx_timestamps()
    try:
        runs = [
            bench_ws_floor._one("python", args.ws_reference_rate, args.seconds, token, env, None)
            for _ in range(args.repeats)
        ]
    finally:
        keeper.close()
    return {
        "sender": "python socket.send loop (bench_ws_floor.py)",
        "rate_per_s": args.ws_reference_rate,
        "subscribers": bench_ws_floor.SUBSCRIBERS,
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "runs_p99_ms": [r["p99_ms"] for r in runs],
    }


def _hold_rx_timestamps() -> socket.socket:
    """A socket that asks for receive timestamps, to keep open while measuring: the kernel
    stamps received packets only while some socket asks for it, and turns stamping on with a
    delay, so without it the first reads after every client socket had closed would come
    without a receive time."""
    keeper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    keeper.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    time.sleep(0.1)  # the deferred switch-on
    return keeper


@contextlib.contextmanager
def _client_sched() -> Iterator[None]:
    """The WebSocket subscribers' scheduling policy while they read, for the calling thread
    (``--ws-client-sched``, handed down in ``JAXMM_BENCH_CLIENT_SCHED``). ``batch``
    (``SCHED_BATCH``, no privilege needed): the reader still sleeps until data arrives, but its
    wake-ups do not preempt the running task. On loopback every frame the server writes wakes
    the reader; with the default policy the woken reader preempts the server mid fan-out when
    both share a core (up to one involuntary context switch per subscriber, counted with
    ``getrusage``), a cost a remote subscriber puts on its own machine. ``other`` leaves the
    default policy. The previous policy is restored after."""
    policy = os.environ.get("JAXMM_BENCH_CLIENT_SCHED", CLIENT_SCHED[0])
    if policy not in CLIENT_SCHED:
        raise ValueError(f"JAXMM_BENCH_CLIENT_SCHED: one of {CLIENT_SCHED}, got {policy!r}")
    if policy == "other" or not hasattr(os, "SCHED_BATCH"):
        yield
        return
    old = os.sched_getscheduler(0), os.sched_getparam(0)
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    try:
        yield
    finally:
        os.sched_setscheduler(0, *old)


def _kernel_ns(anc: list) -> int:
    """The kernel's receive time (``SCM_TIMESTAMPNS``, CLOCK_REALTIME ns) of the newest segment
    a ``recvmsg`` returned (segments that waited in the queue are merged and carry the newest
    time, so a late read can only make a delivery look later, never earlier)."""
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec * 1_000_000_000 + nsec
    raise RuntimeError("websocket client: a read carried no SO_TIMESTAMPNS receive time")


def _frame_len(payload: bytes) -> int:
    n = len(payload)
    return n + (2 if n < 126 else 4 if n < 65_536 else 10)


def _ws_latency_raw(
    port: int,
    token: str,
    subscribers: int,
    seconds: float,
    server_pid: int | None,
    busy: bool = False,
    every_event: bool = False,
) -> dict:
    """The lean client: one ``epoll`` loop over non-blocking sockets (``busy``: it polls
    without ever sleeping); each read is stamped with the kernel's receive time of its data and
    with ``time.time_ns()`` as it returns; frames are split and parsed after the run. Only
    events published after the loop started count."""
    import select

    # the markers only, or (every_event) everything the engine publishes
    sub = {"op": "subscribe"} if every_event else {"op": "subscribe", "types": ["alert_triggered"]}
    msg = json.dumps(sub).encode()
    opened = [_ws_open(port, f"/api/v1/mm/ws?token={token}", msg) for _ in range(subscribers)]
    socks = [s for s, _ in opened]
    chunks: list[list[tuple[tuple[int, int], bytes]]] = [[((0, 0), rest)] for _, rest in opened]
    ep = select.epoll()
    index = {}
    for i, s in enumerate(socks):
        s.setblocking(False)
        ep.register(s.fileno(), select.EPOLLIN)
        index[s.fileno()] = (s, chunks[i])
    buf = bytearray(1 << 16)
    bufs, view = [buf], memoryview(buf)
    ns = time.time_ns
    with _client_sched():
        cpu0 = (_cpu_s(server_pid) if server_pid else 0.0, _cpu_s(None))
        stop = time.perf_counter() + seconds
        start_ns = time.time_ns()  # events published before this waited for the loop: not counted
        while (left := stop - time.perf_counter()) > 0:
            for fd, _ in ep.poll(0 if busy else min(left, 0.1)):
                s, out = index[fd]
                n, anc, _, _ = s.recvmsg_into(bufs, ANC_SIZE)
                t = ns()
                if not n:
                    raise RuntimeError("websocket client: connection closed by the server")
                out.append(((t, _kernel_ns(anc)), bytes(view[:n])))
        end_ns = time.time_ns()
        cpu1 = (_cpu_s(server_pid) if server_pid else 0.0, _cpu_s(None))
    ep.close()
    lat: list[float] = []  # publish -> delivered into the subscriber's socket (kernel time)
    read: list[float] = []  # publish -> the load process's read returned
    seqs: list[list[int]] = [[] for _ in socks]
    for i, s in enumerate(socks):
        for (t_read, t_kernel), opcode, payload in _ws_frames(chunks[i]):
            if opcode != 1:
                continue
            frame = json.loads(payload)
            event = frame.get("event") or {}
            wanted = every_event or event.get("kind") == "bench"
            if "seq" in frame and wanted and event.get("local_ts_ns", 0) >= start_ns:
                lat.append((t_kernel - event["local_ts_ns"]) / 1e6)
                read.append((t_read - event["local_ts_ns"]) / 1e6)
                seqs[i].append(frame["seq"])
        s.setblocking(True)
        with contextlib.suppress(OSError):
            _ws_send(s, 8, (1000).to_bytes(2, "big"))
        s.close()
    return _ws_summary(subscribers, lat, seqs, cpu0, cpu1, read, (start_ns, end_ns))


async def _ws_latency(
    port: int,
    token: str,
    subscribers: int,
    seconds: float,
    server_pid: int | None = None,
    client: str = "raw",
) -> dict:
    if client == "websockets":
        res = await _ws_latency_websockets(port, token, subscribers, seconds, server_pid)
    else:
        res = _ws_latency_raw(port, token, subscribers, seconds, server_pid, client == "raw-busy")
    if server_pid is not None:  # the engine's server (not a relay worker): its publish times
        window = f"from_ns={res['start_ns']}&to_ns={res['end_ns']}"
        http = await _Http.open(port, token)
        try:
            body = await http.get(f"{PUBLISH_TIMES_PATH}?{window}")
            switches = json.loads(await http.get(f"{PREEMPTIONS_PATH}?{window}"))
        finally:
            http.close()
        pub = [ns / 1e6 for ns in json.loads(body)]
        res["publish_p50_ms"], res["publish_p99_ms"] = _pct(pub, 0.5), _pct(pub, 0.99)
        res["publish_max_ms"] = max(pub, default=0.0)
        # share of the publishes during which the server's thread was preempted, and the
        # involuntary context switches per publish (mean)
        res["publish_preempted_share"] = sum(n > 0 for n in switches) / max(len(switches), 1)
        res["publish_switches_mean"] = sum(switches) / max(len(switches), 1)
    return res


def _ws_summary(subscribers, lat, seqs, cpu0, cpu1, read, window) -> dict:
    """``lat``: delivery latencies (ms); ``read``: the same events' read latencies (the
    ``websockets`` client has only these: then both are the read latencies); ``window``:
    (start, end) of the measured publishes, ns since the epoch."""
    common = set(seqs[0]).intersection(*map(set, seqs[1:])) if seqs else set()
    read = lat if read is None else read
    return {"subscribers": subscribers, "events": len(common), "samples": len(lat),
            "start_ns": window[0], "end_ns": window[1],
            "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99), "max_ms": max(lat, default=0.0),
            "read_p50_ms": _pct(read, 0.5), "read_p99_ms": _pct(read, 0.99),
            "in_order": all(x == sorted(set(x)) for x in seqs),
            "server_cpu_ms": (cpu1[0] - cpu0[0]) * 1e3, "client_cpu_ms": (cpu1[1] - cpu0[1]) * 1e3,
            "lat": lat}  # fmt: skip


async def _ws_latency_websockets(
    port: int, token: str, subscribers: int, seconds: float, server_pid: int | None = None
) -> dict:
    """The same measurement with the ``websockets`` library's client (``--ws-client
    websockets``): its per-frame cost (~23 us) is part of the figure."""
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}/api/v1/mm/ws?token={token}"
    clients = [await connect(url, max_queue=None) for _ in range(subscribers)]
    msg = json.dumps({"op": "subscribe", "types": ["alert_triggered"]})
    for ws in clients:
        await ws.send(msg)
        while json.loads(await ws.recv()).get("type") != "subscribed":
            pass
    lat: list[float] = []
    seqs: list[list[int]] = [[] for _ in clients]
    cpu0 = (_cpu_s(server_pid) if server_pid else 0.0, _cpu_s(None))
    stop = time.perf_counter() + seconds
    start_ns = time.time_ns()

    async def reader(i: int, ws) -> None:
        while time.perf_counter() < stop:
            try:
                async with asyncio.timeout(max(0.01, stop - time.perf_counter())):
                    raw = await ws.recv()
            except TimeoutError:
                return
            t = time.time_ns()
            frame = json.loads(raw)
            event = frame.get("event") or {}
            if "seq" in frame and event.get("kind") == "bench" and event["local_ts_ns"] >= start_ns:
                lat.append((t - event["local_ts_ns"]) / 1e6)
                seqs[i].append(frame["seq"])

    with _client_sched():
        await asyncio.gather(*(reader(i, ws) for i, ws in enumerate(clients)))
    end_ns = time.time_ns()
    cpu1 = (_cpu_s(server_pid) if server_pid else 0.0, _cpu_s(None))
    for ws in clients:
        await ws.close()
    return _ws_summary(subscribers, lat, seqs, cpu0, cpu1, None, (start_ns, end_ns))


async def _engine_impact(port: int, token: str, seconds: float, subscribers: int = 100) -> dict:
    """``--live``: the engine's refresh latency (tick in -> orders handed to the venue, from
    ``GET /api/v1/mm/stats``) over ``seconds`` with no stream subscriber, then over
    ``seconds`` with ``subscribers`` subscribed to every event the engine publishes (quotes,
    Greeks, fills, prices, hedges, markers); and those events' delivery latencies."""

    async def get(path: str, expect: bytes = b"[") -> bytes:
        http = await _Http.open(port, token)  # a new connection: the server's keep-alive
        try:  # timeout (5 s) may have closed an idle one
            return await http.get(path, expect)
        finally:
            http.close()

    async def refresh_us() -> dict:
        return json.loads(await get("/api/v1/mm/stats", b"{"))["refresh_latency_us"]

    await get(REFRESH_RESET_PATH)
    await asyncio.sleep(seconds)
    idle = await refresh_us()
    opened = asyncio.get_running_loop().run_in_executor(
        None, lambda: _ws_latency_raw(port, token, subscribers, seconds, None, every_event=True)
    )
    await asyncio.sleep(0.5)  # subscribed by then (the reads run for `seconds`)
    await get(REFRESH_RESET_PATH)
    stream = await opened
    busy = await refresh_us()
    del stream["lat"], stream["start_ns"], stream["end_ns"]
    return {"subscribers": subscribers, "refresh_us_no_stream": idle,
            "refresh_us_with_stream": busy, "stream": stream}  # fmt: skip


async def _load(
    port: int,
    token: str,
    rate: float,
    seconds: float,
    out: str,
    server_pid: int,
    ws_only: bool,
    ws_client: str = "raw",
    rest_client: str = "c",
) -> None:
    keeper = _hold_rx_timestamps()
    res: dict = {"rest": {}, "rest_saturated": {}, "ws": {}}
    for path in () if ws_only else ("/api/v1/mm/quotes", "/api/v1/mm/positions"):
        res["rest"][path] = await rest_fixed(port, token, path, rate, seconds, rest_client)
        res["rest_saturated"][path] = await _rest_saturated(port, token, path, seconds)
    for n in SUBSCRIBERS:
        w = await _ws_latency(port, token, n, seconds, server_pid, ws_client)
        del w["lat"], w["start_ns"], w["end_ns"]
        res["ws"][str(n)] = w
    one, many = res["ws"][str(SUBSCRIBERS[0])], res["ws"][str(SUBSCRIBERS[-1])]
    frames = (SUBSCRIBERS[-1] - SUBSCRIBERS[0]) * max(many["events"], 1)
    res["ws_marginal_us_per_subscriber_event"] = {
        "server": (many["server_cpu_ms"] - one["server_cpu_ms"]) * 1e3 / frames,
        "client": (many["client_cpu_ms"] - one["client_cpu_ms"]) * 1e3 / frames,
    }
    if os.environ.get("JAXMM_BENCH_LIVE") == "1" and not ws_only:  # with the REST runs
        res["engine_impact"] = await _engine_impact(port, token, seconds)
    Path(out).write_text(json.dumps(res))
    keeper.close()


async def _worker(fd: int) -> None:
    """A fan-out worker: ``relay_app_from_env`` under uvicorn on the inherited socket."""
    import uvicorn

    from jaxmm.api._fanout import relay_app_from_env

    sock = socket.socket(fileno=fd)  # AF_INET detected: TCP_NODELAY on accepted connections
    config = uvicorn.Config(
        relay_app_from_env(),
        log_level="warning",
        access_log=False,
        ws_ping_interval=None,
        ws_per_message_deflate=False,
    )
    await uvicorn.Server(config).serve(sockets=[sock])


async def _ws_load_only(
    port: int, token: str, subscribers: int, seconds: float, out: str, ws_client: str = "raw"
) -> None:
    """One fan-out load process: ``subscribers`` clients of one worker; raw latencies."""
    keeper = _hold_rx_timestamps()
    res = await _ws_latency(port, token, subscribers, seconds, client=ws_client)
    Path(out).write_text(json.dumps(res))
    keeper.close()


def _fanout(args, env: dict, workers: int, redis_url: str, stream: str, token: str) -> dict:
    """``workers`` relay worker processes x (100 / workers) subscribers, one load process per
    worker; all latencies pooled."""
    procs, socks, ports = [], [], []
    wenv = dict(env, JAXMM_REDIS_URL=redis_url, JAXMM_EVENT_STREAM=stream,
                JAXMM_WS_HEARTBEAT_S="10")  # fmt: skip
    try:
        for _ in range(workers):
            sock = _listener()
            socks.append(sock)
            ports.append(sock.getsockname()[1])
            procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--_worker", str(sock.fileno())],
                    env=wenv,
                    pass_fds=[sock.fileno()],
                )  # fmt: skip
            )
        for port, proc in zip(ports, procs, strict=True):
            _wait_ready(port, proc, path="/docs")
        per = SUBSCRIBERS[-1] // workers
        runs = []
        for _ in range(args.repeats):
            outs = [RESULTS / f".api_fanout_{i}.json" for i in range(workers)]
            load_before = os.getloadavg()[0]
            loads = [
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--seconds",
                        str(args.seconds),
                        "--ws-client",
                        args.ws_client,
                        "--_wsload",
                        str(port),
                        token,
                        str(per),
                        str(out),
                    ],
                    env=env,
                )  # fmt: skip
                for port, out in zip(ports, outs, strict=True)
            ]
            for ld in loads:
                if ld.wait() != 0:
                    raise RuntimeError("fan-out load process failed")
            parts = [json.loads(o.read_text()) for o in outs]
            for o in outs:
                o.unlink(missing_ok=True)
            lat = [x for part in parts for x in part["lat"]]
            runs.append({"workers": workers, "subscribers_per_worker": per,
                         "events": min(part["events"] for part in parts), "samples": len(lat),
                         "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99),
                         "max_ms": max(lat, default=0.0),
                         "in_order": all(part["in_order"] for part in parts),
                         "load_avg_before": load_before,
                         "load_avg_after": os.getloadavg()[0]})  # fmt: skip
        return {"median": _median_tree(runs), "runs": runs}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for sock in socks:
            sock.close()


# ---------------------------------------------------------------------------------- driver ----


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM a server process, then SIGKILL if it has not exited within 30 s."""
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


async def _get(port: int, token: str, path: str, expect: bytes = b"[") -> bytes:
    """One GET on a fresh connection; the body."""
    http = await _Http.open(port, token)
    try:
        return await http.get(path, expect)
    finally:
        http.close()


def _machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.release()}")  # fmt: skip


def _report(name: str | None, result: dict, runs: list[dict], median: dict, markdown) -> None:
    """Complete ``result`` with the machine, each run's load average before it
    (``load_avg_before``), the medians and every run; print the medians; write
    ``results/<name>.json`` and ``markdown(result)`` as ``.md`` unless ``name`` is None."""
    result.update(
        machine=_machine(),
        load_avg_1min_before_each_run=[run["load_avg_before"] for run in runs],
        median=median,
        runs=runs,
    )
    print(json.dumps(median, indent=2))
    if name is not None:
        _write(name, result, markdown(result))


def _listener(listen: bool = False) -> socket.socket:
    """A TCP socket bound to a free loopback port that a child process can inherit (listening,
    backlog 256, when ``listen``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    if listen:
        sock.listen(256)
    sock.set_inheritable(True)
    return sock


def _compile_c(source: str, name: str) -> str | None:
    """``source`` compiled with ``cc -O2`` into a fresh temporary folder: the binary's path,
    or None when there is no C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    out = Path(tempfile.mkdtemp(prefix=f"jaxmm-{name}-"))
    (out / f"{name}.c").write_text(source)
    subprocess.run([cc, "-O2", "-o", str(out / name), str(out / f"{name}.c")], check=True)
    return str(out / name)


def _write(name: str, result: dict, markdown: str) -> None:
    """``results/<name>.json`` and ``.md``."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown + "\n")


def _wait_ready(
    port: int, server: subprocess.Popen, timeout: float = 180.0, path: str = "/api/v1/health"
) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with code {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if s.recv(12).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=500.0, help="REST requests/s (fixed rate)")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each scenario")
    p.add_argument("--ws-rate", type=float, default=20.0, help=argparse.SUPPRESS)  # server
    p.add_argument(
        "--ws-rates",
        default=",".join(f"{r:g}" for r in WS_RATES),
        help="marker events/s of the WebSocket scenarios, comma-separated (one server each)",
    )
    p.add_argument(
        "--ws-reference-rate",
        type=float,
        default=200.0,
        help="the rate whose numbers are the headline ws_* keys of api.json",
    )
    p.add_argument(
        "--deflate", action="store_true", help="WebSocket permessage-deflate on (uvicorn default)"
    )
    p.add_argument("--repeats", type=int, default=3, help="load runs; medians are reported")
    p.add_argument("--no-write", action="store_true", help="print only; keep results/ as is")
    p.add_argument(
        "--ws-impl",
        default="auto",
        choices=["auto", "websockets-sansio", "websockets"],
        help="uvicorn's WebSocket protocol implementation (auto: websockets-sansio)",
    )
    p.add_argument("--ws-only", action="store_true", help="skip the REST scenarios")
    p.add_argument(
        "--no-floor",
        action="store_true",
        help="skip this machine's send floor (a bare Python send loop to 100 subscribers at "
        "the reference rate, bench_ws_floor.py's, --repeats runs after the scenarios)",
    )
    p.add_argument(
        "--rest-client",
        choices=("c", "python"),
        default="c",
        help="the fixed-rate REST load generator: a C program compiled at run time (one "
        "thread, timerfd-paced; the Python client when there is no C compiler) or the Python "
        "asyncio client",
    )
    p.add_argument(
        "--ws-client",
        choices=("raw", "raw-busy", "websockets"),
        default="raw",
        help="benchmark WebSocket client: lean epoll reader that sleeps until data arrives "
        "(raw), the same reader polling without ever sleeping (raw-busy), or the websockets "
        "library",
    )
    p.add_argument(
        "--ws-client-sched",
        choices=CLIENT_SCHED,
        default=CLIENT_SCHED[0],
        help="the WebSocket subscribers' scheduling policy while they read: SCHED_BATCH "
        "(default: their wake-ups on loopback do not preempt the server mid fan-out, as a "
        "remote subscriber's cannot) or the default policy (other)",
    )
    p.add_argument("--fanout-workers", type=int, default=0, help="also run the Redis fan-out")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="for the fan-out")
    p.add_argument(
        "--live",
        action="store_true",
        help="serve the market maker trading on the simulated market (jaxmm serve's wiring) "
        "instead of an idle started engine, the API on its own thread (run_live(layout="
        "'thread'), jaxmm serve --api-thread) unless --api-process or --single-loop; writes "
        "results/api_live.json and .md",
    )
    p.add_argument("--_serve", type=int, help=argparse.SUPPRESS)  # internal: server process
    p.add_argument(
        "--single-loop",
        action="store_true",
        help="with --live: the API on the engine's event loop (run_live(layout='loop')) "
        "instead of its own thread; writes results/api_live_single.json and .md",
    )
    p.add_argument(
        "--api-process",
        action="store_true",
        help="with --live: the API from a process of its own (run_live(layout='process'), "
        "jaxmm serve's default); writes results/api_live_process.json and .md",
    )
    p.add_argument(
        "--api-relay",
        action="store_true",
        help="with --live: the API from a process of its own that also serves the event stream "
        "from events the engine ships it (run_live(layout='relay'), jaxmm serve --api-relay); "
        "writes results/api_live_relay.json and .md",
    )
    p.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="with --live: the thread switch interval while the API thread runs (s; default "
        "run_live's)",
    )
    p.add_argument("--_serve-live", type=int, help=argparse.SUPPRESS)  # internal: live server
    p.add_argument("--_load", nargs=4, help=argparse.SUPPRESS)  # internal: port token out pid
    p.add_argument("--_wsload", nargs=4, help=argparse.SUPPRESS)  # internal: port token n out
    p.add_argument("--_worker", type=int, help=argparse.SUPPRESS)  # internal: fan-out worker
    args = p.parse_args()
    if args._worker is not None:
        asyncio.run(_worker(args._worker))
        return
    if args._serve_live is not None:
        asyncio.run(_serve_live(args._serve_live, args.ws_rate))
        return
    if args._serve is not None:
        asyncio.run(_serve(args._serve, args.ws_rate, not args.deflate, args.ws_impl))
        return
    if args._load is not None:
        port, token, out, pid = args._load
        asyncio.run(
            _load(int(port), token, args.rate, args.seconds, out, int(pid), args.ws_only,
                  args.ws_client, args.rest_client)
        )  # fmt: skip
        return
    if args._wsload is not None:
        port, token, n, out = args._wsload
        asyncio.run(_ws_load_only(int(port), token, int(n), args.seconds, out, args.ws_client))
        return

    from jaxmm.api import mint_token

    rates = [float(x) for x in args.ws_rates.split(",")] if args.ws_rates else [args.ws_rate]
    layouts = args.single_loop + args.api_process + args.api_relay
    if (layouts or args.switch_interval is not None) and not args.live:
        raise SystemExit(
            "--single-loop, --api-process, --api-relay and --switch-interval need --live"
        )
    if layouts > 1:
        raise SystemExit(
            "--single-loop, --api-process and --api-relay are different layouts: pick one"
        )
    if args.live and args.fanout_workers:
        raise SystemExit("--fanout-workers is not available with --live")
    secret = secrets.token_urlsafe(48)
    token = mint_token("bench", "read", 3600, secret)
    os.environ["JAXMM_BENCH_CLIENT_SCHED"] = args.ws_client_sched  # the floor's reads too
    env = dict(os.environ, JAXMM_JWT_SECRET=secret, JAX_PLATFORMS="cpu")
    stream = f"jaxmm:bench:{secrets.token_hex(6)}"
    by_rate: dict[str, dict] = {}
    fanout = None
    fan_rate = args.ws_reference_rate if args.ws_reference_rate in rates else rates[-1]
    for k, ws_rate in enumerate(rates):  # one server per marker rate; REST on the first only
        rest = k == 0 and not args.ws_only
        fan = args.fanout_workers if ws_rate == fan_rate else 0
        by_rate[f"{ws_rate:g}"], fan_res = _one_server(args, env, token, ws_rate, rest, fan, stream)
        fanout = fan_res if fan else fanout
    floor = None if args.no_floor else _send_floor(args, token, env)
    first = by_rate[f"{rates[0]:g}"]
    ref = f"{args.ws_reference_rate:g}" if f"{args.ws_reference_rate:g}" in by_rate else None
    head = by_rate[ref or f"{rates[-1]:g}"]
    ws_summary = {
        rate: {
            "ws": {n: {k: v for k, v in w.items()} for n, w in r["res"]["ws"].items()},
            "marginal_us": r["res"]["ws_marginal_us_per_subscriber_event"],
            "load_avg_before": r["load_before"],
            "load_avg_after": r["load_after"],
        }
        for rate, r in by_rate.items()
    }
    if args.ws_only:
        print(json.dumps({"ws_by_rate": ws_summary, "fanout": fanout, "ws_impl": args.ws_impl,
                          "ws_client": args.ws_client,
                          "ws_client_sched": args.ws_client_sched}, indent=2))  # fmt: skip
        return
    res = first["res"]
    head_ws = head["res"]["ws"]
    q, pos = res["rest"]["/api/v1/mm/quotes"], res["rest"]["/api/v1/mm/positions"]
    marginal = head["res"]["ws_marginal_us_per_subscriber_event"]
    result = {
        "rest_quotes_p50_ms": q["p50_ms"],
        "rest_quotes_p99_ms": q["p99_ms"],
        "rest_positions_p50_ms": pos["p50_ms"],
        "rest_positions_p99_ms": pos["p99_ms"],
        "rest_quotes_ready_p99_ms": q["ready_p99_ms"],
        "rest_positions_ready_p99_ms": pos["ready_p99_ms"],
        "rest_quotes_wire_p99_ms": q["wire_p99_ms"],
        "rest_positions_wire_p99_ms": pos["wire_p99_ms"],
        "rest_send_late_p99_ms": q["send_late_p99_ms"],
        "rest_client": q.get("client", "python"),
        "rest_rate_target": args.rate,
        "ws_permessage_deflate": args.deflate,
        "rest_rps": res["rest_saturated"]["/api/v1/mm/quotes"]["rps"],
        "rest_positions_rps": res["rest_saturated"]["/api/v1/mm/positions"]["rps"],
        "ws_reference_rate_per_s": float(ref or rates[-1]),
        **{f"ws_p50_ms_{n}_subs": head_ws[str(n)]["p50_ms"] for n in SUBSCRIBERS},
        **{f"ws_p99_ms_{n}_subs": head_ws[str(n)]["p99_ms"] for n in SUBSCRIBERS},
        **{f"ws_read_p99_ms_{n}_subs": head_ws[str(n)]["read_p99_ms"] for n in SUBSCRIBERS},
        **{f"ws_publish_p99_ms_{n}_subs": head_ws[str(n)]["publish_p99_ms"] for n in SUBSCRIBERS},
        "ws_p99_ms_100_subs_by_rate": {
            rate: r["res"]["ws"][str(SUBSCRIBERS[-1])]["p99_ms"] for rate, r in by_rate.items()
        },
        "ws_publish_p99_ms_100_subs_by_rate": {
            rate: r["res"]["ws"][str(SUBSCRIBERS[-1])]["publish_p99_ms"]
            for rate, r in by_rate.items()
        },
        "ws_read_p99_ms_100_subs_by_rate": {
            rate: r["res"]["ws"][str(SUBSCRIBERS[-1])]["read_p99_ms"] for rate, r in by_rate.items()
        },
        "ws_impl": args.ws_impl,
        "ws_client": args.ws_client,
        "ws_client_sched": args.ws_client_sched,
        "live_engine": args.live,
        "layout": _layout(args),
        "api_thread": _layout(args) == "thread",
        "api_process": _layout(args) in ("process", "relay"),
        "ws_in_api_process": _layout(args) == "relay",
        "switch_interval_s": _switch_interval(args),
        "ws_server_us_per_subscriber_event": marginal["server"],
        "ws_client_us_per_subscriber_event": marginal["client"],
        "ws_fanout": None if fanout is None else fanout["median"],
        "engine_impact": res.get("engine_impact"),
        "ws_send_floor": floor,
        "ws_floor_p99_ms_100_subs": None if floor is None else floor["p99_ms"],
        "bars": {"rest_p99_ms": 2.0, "ws_p99_ms_100_subs": 1.0, "roadmap_rest_ms": 5.0},
        "repeats": args.repeats,
        "load_avg_1min_before_each_run": first["load_before"],
        "load_avg_1min_after_each_run": first["load_after"],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "median": res,
        "ws_by_rate": ws_summary,
        "runs": first["runs"],
        "fanout_runs": None if fanout is None else fanout["runs"],
    }
    print(json.dumps({k: v for k, v in result.items()
                      if k not in ("median", "runs", "ws_by_rate")}, indent=2))  # fmt: skip
    if args.no_write:
        return
    name = {"idle": "api", "thread": "api_live", "loop": "api_live_single"}.get(
        _layout(args), f"api_live_{_layout(args)}"
    )
    _write(name, result, _markdown(args, result, by_rate, fanout))


def _markdown(args, result: dict, by_rate: dict, fanout: dict | None) -> str:
    res = result["median"]
    load_before, load_after = (result["load_avg_1min_before_each_run"],
                               result["load_avg_1min_after_each_run"])  # fmt: skip
    rows = [
        "# REST and WebSocket service (benchmarks/bench_api.py)",
        "",
        f"{result['machine']}; server = uvicorn + FastAPI (`create_app`) over "
        + (
            "the market maker TRADING on the simulated market (`--live`: `jaxmm serve`'s wiring, "
            "feed at 10 steps/s, surface updates, simulated traders, hedges; "
            + (
                "the API on the engine's event loop, `--single-loop`)"
                if args.single_loop
                else "the API from a process of its own, `--api-process`: connections accepted "
                "and views answered there from snapshots; the event stream's connections handed "
                "to the engine's process, which writes the frames; other requests forwarded to "
                "the engine's process)"
                if args.api_process
                else "the API from a process of its own that also serves the event stream, "
                "`--api-relay`: connections accepted, views answered and the stream's frames "
                "written there from what the engine ships it; other requests forwarded to the "
                "engine's process)"
                if args.api_relay
                else "the API on its own thread and event loop, views from snapshots, "
                f"thread switch interval {_switch_interval(args) * 1e3:g} ms)"
            )
            if args.live
            else "a started, idle `OptionsMarketMaker` (24 positions opened through `POST /orders`)"
        )
        + " (BTC, 3 expiries x 21 strikes x C/P), JWT auth on; load on loopback from a "
        "separate process ("
        + (
            "fixed-rate REST load from a C program, one thread woken by a `timerfd` at each "
            "request's scheduled time, `--rest-client c`; the saturated REST runs and the "
            "WebSocket subscribers from a Python process"
            if result.get("rest_client") == "c"
            else "Python, asyncio"
        )
        + f"). Medians of {args.repeats} runs. 1-minute "
        f"load average before each REST run {', '.join(f'{x:.2f}' for x in load_before)}, after "
        f"{', '.join(f'{x:.2f}' for x in load_after)} (a shared 2-core machine: a load above 2 "
        "means the server, the load generator and other work queue for the CPU).",
        "",
        f"| REST route | items | p50 / p99 at {args.rate:g} req/s (ms) | from ready p50 / p99 "
        "(ms) | ready to arrival p50 / p99 (ms) | load late p99 (ms) | achieved req/s | "
        "saturated req/s (8 conns) | bar p99 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path, r in res["rest"].items():
        sat = res["rest_saturated"][path]["rps"]
        rows.append(
            f"| `GET {path}` | {r['items']} | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} "
            f"| {r['ready_p50_ms']:.2f} / {r['ready_p99_ms']:.2f} "
            f"| {r['wire_p50_ms']:.2f} / {r['wire_p99_ms']:.2f} "
            f"| {r['send_late_p99_ms']:.2f} | {r['achieved_rps']:.0f} | {sat:.0f} | 2 ms |"
        )
    rows += [
        "",
        f"WebSocket broadcast (`--ws-client {args.ws_client}`, subscribers reading under "
        + (
            "`SCHED_BATCH`: their wake-ups do not preempt the server mid fan-out, "
            "`--ws-client-sched batch`"
            if result.get("ws_client_sched") == "batch"
            else "the default scheduling policy, `--ws-client-sched other`"
        )
        + "), from the marker's publish: "
        "**publish** = how long the server's `publish` took (it returns after the last "
        "subscriber's frame was written to its socket: the server's whole part), **delivery** = "
        "the kernel's receive time of the frame in the subscriber's socket, **read** = when the "
        "load process's read returned (all subscribers share that one process); **preempted** "
        "= share of the publishes during which the server's thread was preempted (involuntary "
        "context switches, `getrusage`) and switches per publish. Bar: p99 < 1 ms to 100 "
        "subscribers.",
        "",
        "| events/s | subs | events | publish p50 / p99 (ms) | delivery p50 / p99 / max (ms) "
        "| read p50 / p99 (ms) | preempted (switches) | in order | server us/sub/event |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rate, r in by_rate.items():
        marginal = r["res"]["ws_marginal_us_per_subscriber_event"]["server"]
        for n in SUBSCRIBERS:
            w = r["res"]["ws"][str(n)]
            rows.append(
                f"| {rate} | {n} | {w['events']} "
                f"| {w['publish_p50_ms']:.3f} / {w['publish_p99_ms']:.3f} "
                f"| {w['p50_ms']:.3f} / {w['p99_ms']:.3f} / {w['max_ms']:.2f} "
                f"| {w['read_p50_ms']:.3f} / {w['read_p99_ms']:.3f} "
                f"| {w['publish_preempted_share']:.1%} ({w['publish_switches_mean']:.1f}) "
                f"| {w['in_order']} "
                f"| {f'{marginal:.1f}' if n == SUBSCRIBERS[-1] else ''} |"
            )
    if fanout is not None:
        f = fanout["median"]
        rows += [
            "",
            "| fan-out workers x subscribers | events | delivery p50 (ms) | delivery p99 (ms) "
            "| max (ms) | in order |",
            "|---|---|---|---|---|---|",
            f"| {f['workers']} x {f['subscribers_per_worker']} (Redis stream) | {f['events']} "
            f"| {f['p50_ms']:.3f} | {f['p99_ms']:.3f} | {f['max_ms']:.2f} | {f['in_order']} |",
        ]
    floor = result.get("ws_send_floor")
    if floor is not None:
        rows += [
            "",
            f"This machine's floor in the same run: a bare Python `socket.send` loop of "
            f"pre-built frames to {floor['subscribers']} subscribers at "
            f"{floor['rate_per_s']:g} events/s (`bench_ws_floor.py`'s), delivery p50 / p99 "
            f"{floor['p50_ms']:.3f} / {floor['p99_ms']:.3f} ms (runs: "
            + ", ".join(f"{x:.3f}" for x in floor["runs_p99_ms"])
            + "). No server in Python writes frames faster than that loop.",
        ]
    impact = res.get("engine_impact")
    if impact is not None:
        a, b, w = impact["refresh_us_no_stream"], impact["refresh_us_with_stream"], impact["stream"]
        rows += [
            "",
            f"The engine's cost of the stream: its refresh latency (tick in -> orders handed to "
            f"the venue, `GET /api/v1/mm/stats`) over {args.seconds:g} s with no subscriber, then "
            f"over {args.seconds:g} s with {impact['subscribers']} subscribers to every event it "
            "publishes; and those events' delivery (from each event's `local_ts_ns`, set when "
            "the engine made it, to the kernel's receive time in the subscriber's socket).",
            "",
            "| stream subscribers | refresh p50 / p99 (us) | refreshes | events delivered "
            "| delivery p50 / p99 / max (ms) | in order |",
            "|---|---|---|---|---|---|",
            f"| 0 | {a['p50']:.0f} / {a['p99']:.0f} | {a['count']:.0f} | | | |",
            f"| {impact['subscribers']} (every event) | {b['p50']:.0f} / {b['p99']:.0f} "
            f"| {b['count']:.0f} | {w['samples']} | {w['p50_ms']:.3f} / {w['p99_ms']:.3f} / "
            f"{w['max_ms']:.2f} | {w['in_order']} |",
        ]
    rows += [
        "",
        "REST latency runs from each request's scheduled send time (open loop, no coordinated "
        'omission) to the end of its response; "from ready" starts instead when the load '
        "process was ready to send it ("
        + (
            "the C load generator is woken by a `timerfd` armed for each request's time"
            if result.get("rest_client") == "c"
            else "it sleeps to ~1.2 ms before the schedule in asyncio, whose timer is in whole "
            "ms, then the rest in a thread's `time.sleep`"
        )
        + "; how late it was ready, p50 / p99: "
        + ", ".join(
            f"{r['path'].rsplit('/', 1)[-1]} {r['send_late_p50_ms']:.3f} / "
            f"{r['send_late_p99_ms']:.3f} ms"
            for r in res["rest"].values()
            if "send_late_p99_ms" in r
        )
        + "; that part is the load generator's, not the server's; waiting for a free "
        'connection still counts); "ready to arrival" ends at the kernel\'s receive time of '
        "the response's last segment in the load process's socket (`SO_TIMESTAMPNS`, as for the "
        "WebSocket) instead of when the load process had read it. WebSocket latency runs from "
        "the marker event's `local_ts_ns` (set just before `publish`); only events published "
        "after the load process started reading count. Server us/sub/event: the server "
        "process's CPU time (100 subscribers - 1) / (99 x events)"
        + (
            " (the engine's process: with `--api-relay` the frames are written by the API "
            "process, not counted there, and **publish** is the engine's cost of shipping one "
            "event to it)."
            if args.api_relay
            else "."
        ),
    ]
    return "\n".join(rows)


def _one_server(args, env: dict, token: str, ws_rate: float, rest: bool, fanout_workers: int,
                stream: str) -> tuple[dict, dict | None]:  # fmt: skip
    """Start a server publishing ``ws_rate`` markers/s, run ``--repeats`` load runs against it
    (REST too when ``rest``), then the Redis fan-out when ``fanout_workers``."""
    sock = _listener()
    port = sock.getsockname()[1]
    senv = dict(env, JAXMM_BENCH_STREAM=stream, JAXMM_REDIS_URL=args.redis_url)
    me = [sys.executable, __file__, "--ws-rate", str(ws_rate), "--ws-impl", args.ws_impl]
    if args.deflate:
        me.append("--deflate")
    if args.live:  # run_live binds host:port itself: hand it the port of a closed socket
        sock.close()
        env = dict(env, JAXMM_BENCH_LAYOUT=_layout(args), JAXMM_BENCH_LIVE="1")
        if args.switch_interval is not None:
            env["JAXMM_BENCH_SWITCH_S"] = repr(args.switch_interval)
        server = subprocess.Popen(me + ["--_serve-live", str(port)], env=env)
    else:
        server = subprocess.Popen(me + ["--_serve", str(sock.fileno())],
                                  env=senv if fanout_workers else env,
                                  pass_fds=[sock.fileno()])  # fmt: skip
    out_file = RESULTS / ".api_load.json"
    fanout = None
    try:
        _wait_ready(port, server, path=f"{PUBLISH_TIMES_PATH}?from_ns=0&to_ns=0")
        runs = []
        for _ in range(args.repeats):
            load_before = list(os.getloadavg())
            subprocess.run(
                [sys.executable, __file__, "--rate", str(args.rate), "--seconds",
                 str(args.seconds), "--ws-client", args.ws_client,
                 "--rest-client", args.rest_client,
                 "--_load", str(port), token, str(out_file), str(server.pid)]
                + ([] if rest else ["--ws-only"]),
                check=True, env=env,
            )  # fmt: skip
            run = json.loads(out_file.read_text())
            run["load_avg_before"], run["load_avg_after"] = load_before, list(os.getloadavg())
            runs.append(run)
        if fanout_workers:
            fanout = _fanout(args, env, fanout_workers, args.redis_url, stream, token)
    finally:
        _stop(server)
        sock.close()
        out_file.unlink(missing_ok=True)
        if fanout_workers:
            import redis

            redis.Redis.from_url(args.redis_url).delete(stream)
    return {
        "res": _median_tree(runs),
        "runs": runs,
        "load_before": [r["load_avg_before"][0] for r in runs],
        "load_after": [r["load_avg_after"][0] for r in runs],
    }, fanout


if __name__ == "__main__":
    main()
