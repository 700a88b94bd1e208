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
  records ``time.time_ns() - local_ts_ns`` when its receive returns (same host clock). All
  subscribers live in the one load process, so the figure includes that process working through
  100 sockets per event.

The load average (``os.getloadavg``) is recorded before and after each run; the machine is
shared, so repeat on an idle machine before quoting a number. WebSocket permessage-deflate is
off (``--deflate`` turns it on). Writes benchmarks/results/api.json and api.md.
Every scenario runs ``--repeats`` times (default 3) against the same server; the headline numbers
are medians, every run is kept in the JSON. Usage:
``python benchmarks/bench_api.py [--rate 500] [--seconds 5] [--ws-rate 20] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
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


async def _serve(fd: int, ws_rate: float, no_deflate: bool) -> None:
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
        )
    )
    try:
        await server.serve(sockets=[sock])
    finally:
        tick.cancel()
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


async def _ws_latency(port: int, token: str, subscribers: int, seconds: float) -> dict:
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
    for ws in clients:
        await ws.close()
    common = set(seqs[0]).intersection(*map(set, seqs[1:])) if seqs else set()
    return {"subscribers": subscribers, "events": len(common), "samples": len(lat),
            "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99), "max_ms": max(lat, default=0.0),
            "in_order": all(x == sorted(set(x)) for x in seqs)}  # fmt: skip


async def _load(port: int, token: str, rate: float, seconds: float, out: str) -> None:
    res: dict = {"rest": {}, "rest_saturated": {}, "ws": {}}
    for path in ("/api/v1/mm/quotes", "/api/v1/mm/positions"):
        res["rest"][path] = await _rest_fixed_rate(port, token, path, rate, seconds)
        res["rest_saturated"][path] = await _rest_saturated(port, token, path, seconds)
    for n in SUBSCRIBERS:
        res["ws"][str(n)] = await _ws_latency(port, token, n, seconds)
    Path(out).write_text(json.dumps(res))


# ---------------------------------------------------------------------------------- driver ----


def _wait_ready(port: int, server: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with code {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
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
    p.add_argument("--_serve", type=int, help=argparse.SUPPRESS)  # internal: server process
    p.add_argument("--_load", nargs=3, help=argparse.SUPPRESS)  # internal: port token out
    args = p.parse_args()
    if args._serve is not None:
        asyncio.run(_serve(args._serve, args.ws_rate, no_deflate=not args.deflate))
        return
    if args._load is not None:
        port, token, out = args._load
        asyncio.run(_load(int(port), token, args.rate, args.seconds, out))
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
    me = [sys.executable, __file__, "--ws-rate", str(args.ws_rate)]
    if args.deflate:
        me.append("--deflate")
    server = subprocess.Popen(me + ["--_serve", str(sock.fileno())], env=env,
                              pass_fds=[sock.fileno()])  # fmt: skip
    out_file = RESULTS / ".api_load.json"
    try:
        _wait_ready(port, server)
        runs = []
        for _ in range(args.repeats):
            load_before = list(os.getloadavg())
            subprocess.run(
                [sys.executable, __file__, "--rate", str(args.rate), "--seconds",
                 str(args.seconds), "--_load", str(port), token, str(out_file)],
                check=True, env=env,
            )  # fmt: skip
            run = json.loads(out_file.read_text())
            run["load_avg_before"], run["load_avg_after"] = load_before, list(os.getloadavg())
            runs.append(run)
        res = _median_tree(runs)
        load_before = [r["load_avg_before"][0] for r in runs]
        load_after = [r["load_avg_after"][0] for r in runs]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        sock.close()
        out_file.unlink(missing_ok=True)

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
        "bars": {"rest_p99_ms": 2.0, "ws_p99_ms_100_subs": 1.0, "roadmap_rest_ms": 5.0},
        "repeats": args.repeats,
        "load_avg_1min_before_each_run": load_before,
        "load_avg_1min_after_each_run": load_after,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "median": res,
        "runs": runs,
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
        "REST latency runs from each request's scheduled send time (open loop, no coordinated "
        "omission) to the end of its response. WebSocket latency runs from the event's "
        "`local_ts_ns` (set just before `publish`) to the client's receive; all subscribers share "
        "one client process, which is part of the measured path.",
    ]
    (RESULTS / "api.md").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
