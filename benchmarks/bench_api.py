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
  publishes one marker ``AlertTriggered`` every 1/``--ws-rate`` s into the engine's broadcaster,
  built immediately before ``publish`` so its ``local_ts_ns`` is the publish time; each client
  records ``time.time_ns() - local_ts_ns`` when its read returns (same host clock). All
  subscribers live in the one load process, so the figure includes that process working through
  100 sockets per event. ``--ws-client raw`` (default): a lean client of this file (RFC 6455
  upgrade with the accept key checked, blocking sockets, one ``epoll`` loop with ``recv_into``,
  each read stamped on return; frames split and parsed after the run); ``websockets``: the
  ``websockets`` library's client (~20 us per frame of its own); ``raw-spin``: the lean client
  polling without blocking for 0.2 ms after each read. Each scenario also records the CPU time
  the server process and the load process spent (``/proc/<pid>/stat``, ``os.times``): the
  marginal cost per subscriber per event, ``(cpu(100 subs) - cpu(1 sub)) / (99 x events)``, is
  what bounds one process.
- **WebSocket fan-out over workers** (``--fanout-workers 2``, needs a Redis server at
  ``--redis-url``): the engine process appends every event to a Redis stream
  (:class:`jaxmm.api._fanout.RedisStreamPublisher`); ``N`` uvicorn worker processes serve
  ``relay_app_from_env`` (``RedisStreamRelay``) and ``100 / N`` subscribers each, from ``N``
  load processes; latency from the engine's publish (through Redis and the worker) to receive.

The load average (``os.getloadavg``) is recorded before and after each run; the machine is
shared, so repeat on an idle machine before quoting a number. WebSocket permessage-deflate is
off (``--deflate`` turns it on). Writes benchmarks/results/api.json and api.md.
Every scenario runs ``--repeats`` times (default 3) against the same server; the headline numbers
are medians, every run is kept in the JSON. Usage:
``python benchmarks/bench_api.py [--rate 500] [--seconds 5] [--ws-rate 20] [--repeats 3]
[--fanout-workers 2] [--ws-only] [--ws-impl auto]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CONNECTIONS = 8
SUBSCRIBERS = (1, 10, 100)
WS_SPIN_S = 2e-4  # --ws-client raw-spin: keep polling this long after the last read


def _median_tree(runs: list) -> object:
    """Element-wise median of same-shaped results (booleans: all true)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: _median_tree([r[k] for r in runs]) for k in first}
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


async def _serve(fd: int, ws_rate: float, no_deflate: bool, ws_impl: str) -> None:
    import uvicorn

    from jaxmm.api import ApiSettings, create_app
    from jaxmm.engine import MarketMakerConfig, OptionsMarketMaker
    from jaxmm.events import AlertTriggered
    from jaxmm.feeds import SurfaceUpdate

    demo = MarketMakerConfig.demo()
    btc = demo.underlyings[0]
    config = demo.model_copy(
        update={
            "underlyings": [btc],
            "limits": {k: v for k, v in demo.limits.items() if k != "SPX"},
        }
    )
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

    async def ticker() -> None:
        period = 1.0 / ws_rate
        nxt = time.perf_counter()
        while True:
            nxt += period
            await asyncio.sleep(max(0.0, nxt - time.perf_counter()))
            bus.publish(AlertTriggered(severity="info", kind="bench", message="tick"))

    tick = asyncio.create_task(ticker())
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


# ------------------------------------------------------------------------------------ load ----


class _Http:
    """One keep-alive HTTP/1.1 connection: GET with a bearer token, read a Content-Length body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str):
        self.r, self.w, self.token = reader, writer, token

    @classmethod
    async def open(cls, port: int, token: str) -> _Http:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return cls(r, w, token)

    async def get(self, path: str) -> bytes:
        self.w.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n"
            "Accept: application/json\r\n\r\n".encode()
        )
        head = await self.r.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.r.readexactly(length)
        if status != 200 or body[:1] != b"[":
            raise RuntimeError(f"GET {path}: HTTP {status}: {body[:200]!r} (want 200, a list)")
        return body

    def close(self) -> None:
        self.w.close()


async def _rest_fixed_rate(port: int, token: str, path: str, rate: float, seconds: float) -> dict:
    conns = [await _Http.open(port, token) for _ in range(CONNECTIONS)]
    idle: asyncio.Queue[_Http] = asyncio.Queue()
    for c in conns:
        idle.put_nowait(c)
    for c in conns:  # warm: first request of each connection
        json.loads(await c.get(path))
    n = int(rate * seconds)
    lat: list[float] = []
    bodies: list[int] = []

    async def one(t_sched: float) -> None:
        conn = await idle.get()
        try:
            body = await conn.get(path)
        finally:
            idle.put_nowait(conn)
        lat.append((time.perf_counter() - t_sched) * 1e3)
        bodies.append(len(body))

    t0 = time.perf_counter() + 0.05
    tasks = []
    for i in range(n):
        t_sched = t0 + i / rate
        delay = t_sched - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(t_sched)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    sample = json.loads(await conns[0].get(path))
    for c in conns:
        c.close()
    return {
        "path": path,
        "target_rps": rate,
        "achieved_rps": n / elapsed,
        "requests": n,
        "p50_ms": _pct(lat, 0.50),
        "p99_ms": _pct(lat, 0.99),
        "max_ms": max(lat),
        "body_bytes": int(sum(bodies) / len(bodies)),
        "items": len(sample) if isinstance(sample, list) else None,
    }


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


def _frame_len(payload: bytes) -> int:
    n = len(payload)
    return n + (2 if n < 126 else 4 if n < 65_536 else 10)


def _ws_latency_raw(
    port: int,
    token: str,
    subscribers: int,
    seconds: float,
    server_pid: int | None,
    spin_s: float = 0.0,
) -> dict:
    """The lean client: blocking sockets and one ``epoll`` loop; each read is stamped with
    ``time.time_ns()`` as it returns, frames are split and parsed after the run."""
    import select

    msg = json.dumps({"op": "subscribe", "types": ["alert_triggered"]}).encode()
    opened = [_ws_open(port, f"/api/v1/mm/ws?token={token}", msg) for _ in range(subscribers)]
    socks = [s for s, _ in opened]
    chunks: list[list[tuple[int, bytes]]] = [[(0, rest)] for _, rest in opened]
    ep = select.epoll()
    index = {}
    for i, s in enumerate(socks):
        s.setblocking(False)
        ep.register(s.fileno(), select.EPOLLIN)
        index[s.fileno()] = (s, chunks[i])
    cpu0 = (_cpu_s(server_pid) if server_pid else 0.0, _cpu_s(None))
    stop = time.perf_counter() + seconds
    buf = bytearray(1 << 16)
    view = memoryview(buf)
    ns = time.time_ns
    spin_ns = int(spin_s * 1e9)
    last = 0
    while (left := stop - time.perf_counter()) > 0:
        # adaptive polling: poll without blocking while data arrived in the last spin_s
        ready = ep.poll(0 if ns() - last < spin_ns else min(left, 0.1))
        for fd, _ in ready:
            s, out = index[fd]
            n = s.recv_into(buf)
            last = t = ns()
            if not n:
                raise RuntimeError("websocket client: connection closed by the server")
            out.append((t, bytes(view[:n])))
    cpu1 = (_cpu_s(server_pid) if server_pid else 0.0, _cpu_s(None))
    ep.close()
    lat: list[float] = []
    seqs: list[list[int]] = [[] for _ in socks]
    for i, s in enumerate(socks):
        for t, opcode, payload in _ws_frames(chunks[i]):
            if opcode != 1:
                continue
            frame = json.loads(payload)
            if "seq" in frame and frame["event"].get("kind") == "bench":
                lat.append((t - frame["event"]["local_ts_ns"]) / 1e6)
                seqs[i].append(frame["seq"])
        s.setblocking(True)
        with contextlib.suppress(OSError):
            _ws_send(s, 8, (1000).to_bytes(2, "big"))
        s.close()
    return _ws_summary(subscribers, lat, seqs, cpu0, cpu1)


async def _ws_latency(
    port: int,
    token: str,
    subscribers: int,
    seconds: float,
    server_pid: int | None = None,
    client: str = "raw",
) -> dict:
    if client == "websockets":
        return await _ws_latency_websockets(port, token, subscribers, seconds, server_pid)
    spin = WS_SPIN_S if client == "raw-spin" else 0.0
    return _ws_latency_raw(port, token, subscribers, seconds, server_pid, spin)


def _ws_summary(subscribers, lat, seqs, cpu0, cpu1) -> dict:
    common = set(seqs[0]).intersection(*map(set, seqs[1:])) if seqs else set()
    return {"subscribers": subscribers, "events": len(common), "samples": len(lat),
            "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99), "max_ms": max(lat, default=0.0),
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

    async def reader(i: int, ws) -> None:
        while time.perf_counter() < stop:
            try:
                async with asyncio.timeout(max(0.01, stop - time.perf_counter())):
                    raw = await ws.recv()
            except TimeoutError:
                return
            t = time.time_ns()
            frame = json.loads(raw)
            if "seq" in frame and frame["event"].get("kind") == "bench":
                lat.append((t - frame["event"]["local_ts_ns"]) / 1e6)
                seqs[i].append(frame["seq"])

    await asyncio.gather(*(reader(i, ws) for i, ws in enumerate(clients)))
    cpu1 = (_cpu_s(server_pid) if server_pid else 0.0, _cpu_s(None))
    for ws in clients:
        await ws.close()
    return _ws_summary(subscribers, lat, seqs, cpu0, cpu1)


async def _load(
    port: int,
    token: str,
    rate: float,
    seconds: float,
    out: str,
    server_pid: int,
    ws_only: bool,
    ws_client: str = "raw",
) -> None:
    res: dict = {"rest": {}, "rest_saturated": {}, "ws": {}}
    for path in () if ws_only else ("/api/v1/mm/quotes", "/api/v1/mm/positions"):
        res["rest"][path] = await _rest_fixed_rate(port, token, path, rate, seconds)
        res["rest_saturated"][path] = await _rest_saturated(port, token, path, seconds)
    for n in SUBSCRIBERS:
        w = await _ws_latency(port, token, n, seconds, server_pid, ws_client)
        del w["lat"]
        res["ws"][str(n)] = w
    one, many = res["ws"][str(SUBSCRIBERS[0])], res["ws"][str(SUBSCRIBERS[-1])]
    frames = (SUBSCRIBERS[-1] - SUBSCRIBERS[0]) * max(many["events"], 1)
    res["ws_marginal_us_per_subscriber_event"] = {
        "server": (many["server_cpu_ms"] - one["server_cpu_ms"]) * 1e3 / frames,
        "client": (many["client_cpu_ms"] - one["client_cpu_ms"]) * 1e3 / frames,
    }
    Path(out).write_text(json.dumps(res))


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
    res = await _ws_latency(port, token, subscribers, seconds, client=ws_client)
    Path(out).write_text(json.dumps(res))


def _fanout(args, env: dict, workers: int, redis_url: str, stream: str, token: str) -> dict:
    """``workers`` relay worker processes x (100 / workers) subscribers, one load process per
    worker; all latencies pooled."""
    procs, socks, ports = [], [], []
    wenv = dict(env, JAXMM_REDIS_URL=redis_url, JAXMM_EVENT_STREAM=stream,
                JAXMM_WS_HEARTBEAT_S="10")  # fmt: skip
    try:
        for _ in range(workers):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.set_inheritable(True)
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
    p.add_argument("--ws-rate", type=float, default=20.0, help="marker events/s (WebSocket)")
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
        "--ws-client",
        choices=("raw", "raw-spin", "websockets"),
        default="raw",
        help="benchmark WebSocket client: lean epoll reader (raw), the same polling without "
        "blocking for 0.2 ms after each read (raw-spin), or the websockets library",
    )
    p.add_argument("--fanout-workers", type=int, default=0, help="also run the Redis fan-out")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="for the fan-out")
    p.add_argument("--_serve", type=int, help=argparse.SUPPRESS)  # internal: server process
    p.add_argument("--_load", nargs=4, help=argparse.SUPPRESS)  # internal: port token out pid
    p.add_argument("--_wsload", nargs=4, help=argparse.SUPPRESS)  # internal: port token n out
    p.add_argument("--_worker", type=int, help=argparse.SUPPRESS)  # internal: fan-out worker
    args = p.parse_args()
    if args._worker is not None:
        asyncio.run(_worker(args._worker))
        return
    if args._serve is not None:
        asyncio.run(_serve(args._serve, args.ws_rate, not args.deflate, args.ws_impl))
        return
    if args._load is not None:
        port, token, out, pid = args._load
        asyncio.run(
            _load(int(port), token, args.rate, args.seconds, out, int(pid), args.ws_only,
                  args.ws_client)
        )  # fmt: skip
        return
    if args._wsload is not None:
        port, token, n, out = args._wsload
        asyncio.run(_ws_load_only(int(port), token, int(n), args.seconds, out, args.ws_client))
        return

    from jaxmm.api import mint_token

    secret = secrets.token_urlsafe(48)
    token = mint_token("bench", "read", 3600, secret)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    env = dict(os.environ, JAXMM_JWT_SECRET=secret, JAX_PLATFORMS="cpu")
    stream = f"jaxmm:bench:{secrets.token_hex(6)}"
    senv = dict(env, JAXMM_BENCH_STREAM=stream, JAXMM_REDIS_URL=args.redis_url)
    me = [sys.executable, __file__, "--ws-rate", str(args.ws_rate), "--ws-impl", args.ws_impl]
    if args.deflate:
        me.append("--deflate")
    server = subprocess.Popen(me + ["--_serve", str(sock.fileno())],
                              env=senv if args.fanout_workers else env,
                              pass_fds=[sock.fileno()])  # fmt: skip
    out_file = RESULTS / ".api_load.json"
    fanout = None
    try:
        _wait_ready(port, server)
        runs = []
        for _ in range(args.repeats):
            load_before = list(os.getloadavg())
            subprocess.run(
                [sys.executable, __file__, "--rate", str(args.rate), "--seconds",
                 str(args.seconds), "--ws-client", args.ws_client,
                 "--_load", str(port), token, str(out_file), str(server.pid)]
                + (["--ws-only"] if args.ws_only else []),
                check=True, env=env,
            )  # fmt: skip
            run = json.loads(out_file.read_text())
            run["load_avg_before"], run["load_avg_after"] = load_before, list(os.getloadavg())
            runs.append(run)
        res = _median_tree(runs)
        load_before = [r["load_avg_before"][0] for r in runs]
        load_after = [r["load_avg_after"][0] for r in runs]
        if args.fanout_workers:
            fanout = _fanout(args, env, args.fanout_workers, args.redis_url, stream, token)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        sock.close()
        out_file.unlink(missing_ok=True)
        if args.fanout_workers:
            import redis

            redis.Redis.from_url(args.redis_url).delete(stream)

    marginal = res["ws_marginal_us_per_subscriber_event"]
    if args.ws_only:
        print(json.dumps({"ws": res["ws"], "marginal_us": marginal, "fanout": fanout,
                          "ws_impl": args.ws_impl, "load_before": load_before,
                          "load_after": load_after}, indent=2))  # fmt: skip
        return
    q, pos = res["rest"]["/api/v1/mm/quotes"], res["rest"]["/api/v1/mm/positions"]
    result = {
        "rest_quotes_p50_ms": q["p50_ms"],
        "rest_quotes_p99_ms": q["p99_ms"],
        "rest_positions_p50_ms": pos["p50_ms"],
        "rest_positions_p99_ms": pos["p99_ms"],
        "rest_rate_target": args.rate,
        "ws_permessage_deflate": args.deflate,
        "rest_rps": res["rest_saturated"]["/api/v1/mm/quotes"]["rps"],
        "rest_positions_rps": res["rest_saturated"]["/api/v1/mm/positions"]["rps"],
        **{f"ws_p50_ms_{n}_subs": res["ws"][str(n)]["p50_ms"] for n in SUBSCRIBERS},
        **{f"ws_p99_ms_{n}_subs": res["ws"][str(n)]["p99_ms"] for n in SUBSCRIBERS},
        "ws_impl": args.ws_impl,
        "ws_server_us_per_subscriber_event": marginal["server"],
        "ws_client_us_per_subscriber_event": marginal["client"],
        "ws_fanout": None if fanout is None else fanout["median"],
        "bars": {"rest_p99_ms": 2.0, "ws_p99_ms_100_subs": 1.0, "roadmap_rest_ms": 5.0},
        "repeats": args.repeats,
        "load_avg_1min_before_each_run": load_before,
        "load_avg_1min_after_each_run": load_after,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "median": res,
        "runs": runs,
        "fanout_runs": None if fanout is None else fanout["runs"],
    }
    print(json.dumps({k: v for k, v in result.items() if k not in ("median", "runs")}, indent=2))
    if args.no_write:
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "api.json").write_text(json.dumps(result, indent=2))
    rows = [
        "# REST and WebSocket service (benchmarks/bench_api.py)",
        "",
        f"{result['machine']}; server = uvicorn + FastAPI (`create_app`) over a started "
        "`OptionsMarketMaker` (BTC, 3 expiries x 21 strikes x C/P), JWT auth on; load from a "
        f"separate Python asyncio process on loopback. Medians of {args.repeats} runs. 1-minute "
        f"load average before each run {', '.join(f'{x:.2f}' for x in load_before)}, after "
        f"{', '.join(f'{x:.2f}' for x in load_after)} (a shared 2-core machine: a load above 2 "
        "means the server, the load generator and other work queue for the CPU).",
        "",
        f"| REST route | items | p50 at {args.rate:g} req/s (ms) | p99 (ms) | achieved req/s "
        "| saturated req/s (8 conns) | bar p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for path, r in res["rest"].items():
        sat = res["rest_saturated"][path]["rps"]
        rows.append(
            f"| `GET {path}` | {r['items']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['achieved_rps']:.0f} | {sat:.0f} | 2 ms |"
        )
    rows += [
        "",
        "| WebSocket subscribers | events | p50 publish->receive (ms) | p99 (ms) | max (ms) "
        "| in order | bar p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in SUBSCRIBERS:
        w = res["ws"][str(n)]
        rows.append(
            f"| {n} | {w['events']} | {w['p50_ms']:.3f} | {w['p99_ms']:.3f} | {w['max_ms']:.2f} "
            f"| {w['in_order']} | 1 ms |"
        )
    rows += [
        "",
        f"Marginal CPU per subscriber per event (100 vs 1 subscriber): server "
        f"{marginal['server']:.1f} us, load process {marginal['client']:.1f} us "
        f"(uvicorn ws = {args.ws_impl}).",
    ]
    if fanout is not None:
        f = fanout["median"]
        rows += [
            "",
            "| fan-out workers x subscribers | events | p50 publish->receive (ms) | p99 (ms) "
            "| max (ms) | in order |",
            "|---|---|---|---|---|---|",
            f"| {f['workers']} x {f['subscribers_per_worker']} (Redis stream) | {f['events']} "
            f"| {f['p50_ms']:.3f} | {f['p99_ms']:.3f} | {f['max_ms']:.2f} | {f['in_order']} |",
        ]
    rows += [
        "",
        "REST latency runs from each request's scheduled send time (open loop, no coordinated "
        "omission) to the end of its response. WebSocket latency runs from the event's "
        "`local_ts_ns` (set just before `publish`) to the client's receive; all subscribers share "
        f"one client process (`--ws-client {args.ws_client}`), which is part of the measured "
        "path.",
    ]
    (RESULTS / "api.md").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
