"""REST at 500 requests/s next to the trading engine: jaxmm against peers and this machine's floor.

The service's bar is a p99 under 2 ms for ``GET /api/v1/mm/quotes`` at ~500 requests/s
(``bench_api.py``). With the engine idle jaxmm meets it; with the engine trading on the same
2 cores it does not. This benchmark asks what any HTTP server can do here while the engine
trades. It starts the market maker trading on the simulated market (``bench_api.py --live``'s
server: ``run_live``, the wiring of ``jaxmm serve``), takes one real ``/mm/quotes`` response
from it, and then, with the engine still trading, measures the same fixed-rate load against
four servers in turn:

- **c**: a C server (compiled at run time with ``cc -O2``; left out without a compiler): one
  ``epoll`` loop that answers each complete request on a keep-alive connection with the stored
  response. No parsing, no routing, no auth: the floor.
- **python**: the same in Python, an ``asyncio.Protocol`` on asyncio's loop.
- **uvicorn**: uvicorn (httptools) with a minimal ASGI app returning the stored body: the web
  stack jaxmm is built on, without jaxmm.
- **jaxmm**: the engine's own server (``/mm/quotes`` from its view snapshot, JWT checked).

The same four run first with no engine at all (the machine's floor at rest). The load is
bench_api.py's fixed-rate scenario (open loop, 8 keep-alive connections, latency from the
scheduled send, from when the load was ready, and from ready to the response's kernel arrival
time), made in turn, against each server, by each of ``--clients``: ``c``, bench_api's C load
generator (one thread woken by a ``timerfd`` at each scheduled send), and ``python``, its
asyncio client in this driver's process; the difference between the two is the load
generator's own share of "from schedule". Medians over ``--repeats``; every run is kept in the
JSON. Writes benchmarks/results/rest_floor.json and .md (``rest_floor_process`` with
``--api-process``).

Usage: ``python benchmarks/bench_rest_floor.py [--rate 500] [--seconds 5] [--repeats 3]
[--clients c,python] [--api-process]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_api  # the fixed-rate client, the live server, the readiness probe

PATH = "/api/v1/mm/quotes"
SENDERS = ("c", "python", "uvicorn", "jaxmm")

C_SOURCE = r"""
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

/* argv: listening fd, response file. Answers every complete request (headers end) on a
   keep-alive connection with the whole stored response (blocking send: the response is
   written in full before the next request is read). */
#define MAXFD 4096
static char *buf[MAXFD];
static int used[MAXFD];

int main(int argc, char **argv) {
    int ls = atoi(argv[1]);
    int f = open(argv[2], O_RDONLY);
    off_t size = lseek(f, 0, SEEK_END);
    lseek(f, 0, SEEK_SET);
    char *resp = malloc(size);
    for (off_t got = 0; got < size;) got += read(f, resp + got, size - got);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, out[64];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    for (;;) {
        int n = epoll_wait(ep, out, 64, -1);
        for (int i = 0; i < n; i++) {
            int fd = out[i].data.fd;
            if (fd == ls) {
                int c = accept(ls, 0, 0);
                if (c < 0 || c >= MAXFD) { if (c >= 0) close(c); continue; }
                int one = 1;
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                buf[c] = malloc(65536); used[c] = 0;
                ev.events = EPOLLIN; ev.data.fd = c;
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                continue;
            }
            int r = read(fd, buf[fd] + used[fd], 65536 - used[fd]);
            if (r <= 0) { epoll_ctl(ep, EPOLL_CTL_DEL, fd, 0); close(fd); free(buf[fd]); continue; }
            used[fd] += r;
            char *p = buf[fd], *end = buf[fd] + used[fd], *h;
            while ((h = memmem(p, end - p, "\r\n\r\n", 4)) != NULL) {
                for (off_t sent = 0; sent < size;) {
                    ssize_t w = send(fd, resp + sent, size - sent, MSG_NOSIGNAL);
                    if (w < 0) break;
                    sent += w;
                }
                p = h + 4;
            }
            used[fd] = end - p;
            memmove(buf[fd], p, used[fd]);
        }
    }
}
"""


def _python_server(fd: int, response: bytes) -> None:
    class Answer(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            self.transport, self.buf = transport, b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while (end := self.buf.find(b"\r\n\r\n")) >= 0:
                self.buf = self.buf[end + 4 :]
                self.transport.write(response)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Answer, sock=socket.socket(fileno=fd))
        await server.serve_forever()

    asyncio.run(serve())


def _uvicorn_server(fd: int, body: bytes) -> None:
    import uvicorn

    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    config = uvicorn.Config(app, log_level="warning", access_log=False, http="httptools")
    asyncio.run(uvicorn.Server(config).serve(sockets=[socket.socket(fileno=fd)]))


def _peer(kind: str, args, response_file: str, cbin: str | None) -> dict:
    """One fixed-rate run against a fresh ``kind`` server answering with the stored response."""
    sock = bench_api._listener(listen=True)
    port, fd = sock.getsockname()[1], str(sock.fileno())
    if kind == "c":
        cmd = [cbin, fd, response_file]
    else:
        cmd = [sys.executable, __file__, "--_peer", kind, response_file, fd]
    server = subprocess.Popen(cmd, pass_fds=[sock.fileno()])
    try:
        return _run(port, args)
    finally:
        bench_api._stop(server)
        sock.close()


def _run(port: int, args, token: str = "x") -> dict:
    """One fixed-rate run per load client (``args.clients``, in that order): client -> figures."""
    keep = ("p50_ms", "p99_ms", "max_ms", "ready_p50_ms", "ready_p99_ms", "wire_p50_ms",
            "wire_p99_ms", "send_late_p99_ms", "achieved_rps", "body_bytes")  # fmt: skip
    out = {}
    for client in args.clients:
        res = asyncio.run(bench_api.rest_fixed(port, token, PATH, args.rate, args.seconds, client))
        out[res["client"]] = {k: res[k] for k in keep}
    return out


def _live_server(args, env: dict) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:  # run_live binds host:port itself: a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(env, JAXMM_BENCH_LIVE="1",
               JAXMM_BENCH_LAYOUT="process" if args.api_process else "thread")  # fmt: skip
    cmd = [sys.executable, bench_api.__file__, "--ws-rate", "20", "--_serve-live", str(port)]
    server = subprocess.Popen(cmd, env=env)
    bench_api._wait_ready(port, server, path=f"{bench_api.PUBLISH_TIMES_PATH}?from_ns=0&to_ns=0")
    return server, port


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=500.0, help="requests/s (fixed rate)")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each scenario")
    p.add_argument("--repeats", type=int, default=3, help="runs of every scenario; medians")
    p.add_argument("--api-process", action="store_true", help="jaxmm's API in its own process")
    p.add_argument(
        "--clients",
        default="c,python",
        help="load generators, comma-separated: c (bench_api's C program), python (its "
        "asyncio client)",
    )
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--_peer", nargs=3, metavar=("KIND", "RESPONSE", "FD"), help=argparse.SUPPRESS)
    args = p.parse_args()
    args.clients = [c for c in args.clients.split(",") if c]
    if not args.clients or set(args.clients) - {"c", "python"}:
        raise SystemExit("--clients: c and/or python")
    if args._peer:
        kind, response_file, fd = args._peer
        response = Path(response_file).read_bytes()
        if kind == "python":
            _python_server(int(fd), response)
        else:
            _uvicorn_server(int(fd), response.split(b"\r\n\r\n", 1)[1])
        return

    from jaxmm.api import mint_token

    keeper = bench_api._hold_rx_timestamps()  # receive times for every read of the run
    secret = secrets.token_urlsafe(48)
    token = mint_token("bench", "read", 3600, secret)
    env = dict(os.environ, JAXMM_JWT_SECRET=secret, JAX_PLATFORMS="cpu")
    cbin = bench_api._compile_c(C_SOURCE, "serve")
    peers = [k for k in SENDERS[:-1] if k != "c" or cbin is not None]
    if cbin is None:
        print("no C compiler (cc/gcc): the c server is left out", file=sys.stderr)
    server, port = _live_server(args, env)
    runs: list[dict] = []
    try:
        body = asyncio.run(bench_api._get(port, token, PATH))
        response = (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        response_file = Path(tempfile.mkdtemp(prefix="jaxmm-restfloor-")) / "response"
        response_file.write_bytes(response)
        _peer(
            peers[0],
            argparse.Namespace(rate=args.rate, seconds=1.0, clients=args.clients),
            str(response_file),
            cbin,
        )  # warm-up, not kept: this process's first run pays for its own start
        # the engine's process stopped (SIGSTOP) for the runs "at rest": nothing else on the cores
        for r in range(args.repeats):
            run: dict = {"load_avg_before": os.getloadavg()[0], "rest": {}, "trading": {}}
            order = peers[r % len(peers) :] + peers[: r % len(peers)]  # none always first
            k = r % len(args.clients)  # the clients' order turns too
            rargs = argparse.Namespace(**vars(args))
            rargs.clients = args.clients[k:] + args.clients[:k]
            os.kill(server.pid, signal.SIGSTOP)
            try:
                for kind in order:
                    run["rest"][kind] = _peer(kind, rargs, str(response_file), cbin)
            finally:
                os.kill(server.pid, signal.SIGCONT)
            for kind in order:
                run["trading"][kind] = _peer(kind, rargs, str(response_file), cbin)
            run["trading"]["jaxmm"] = _run(port, rargs, token)
            runs.append(run)
            for client in args.clients:
                print(f"repeat {r + 1}, {client} load: p99 from schedule / ready at rest",
                      {k: _p99s(v, client) for k, v in run["rest"].items()}, "trading",
                      {k: _p99s(v, client) for k, v in run["trading"].items()},
                      file=sys.stderr)  # fmt: skip
    finally:
        bench_api._stop(server)
    keeper.close()
    median = bench_api._median_tree([{s: run[s] for s in ("rest", "trading")} for run in runs])
    result = {
        "path": PATH,
        "rate": args.rate,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "api_process": args.api_process,
        "bar_p99_ms": 2.0,
        "clients": args.clients,
        "body_bytes": len(body),
    }
    name = "rest_floor_process" if args.api_process else "rest_floor"
    bench_api._report(None if args.no_write else name, result, runs, median, _markdown)


def _p99s(by_client: dict, client: str) -> tuple[float, float] | None:
    m = by_client.get(client)
    return None if m is None else (round(m["p99_ms"], 3), round(m["ready_p99_ms"], 3))


def _markdown(result: dict) -> str:
    label = {
        "c": "C `epoll` server, stored response (floor)",
        "python": "Python `asyncio.Protocol`, stored response",
        "uvicorn": "uvicorn (httptools) + minimal ASGI app, stored body",
        "jaxmm": "jaxmm `GET /mm/quotes` (JWT, view snapshot)",
    }
    layout = "its own process (`--api-process`)" if result["api_process"] else "its own thread"
    rows = [
        "# REST next to the trading engine: jaxmm, peers and the floor "
        "(benchmarks/bench_rest_floor.py)",
        "",
        f"{result['machine']}; `GET {result['path']}` at {result['rate']:g} requests/s, open "
        f"loop over 8 keep-alive connections, medians of "
        f"{result['repeats']} runs of {result['seconds']:g} s; every server sends the same "
        f'{result["body_bytes"]}-byte body. "At rest": the engine\'s process stopped '
        f'(SIGSTOP). "Trading": the market maker trading on the simulated market '
        f"(`run_live`, as `jaxmm serve`), with jaxmm's API on {layout}. 1-minute load average "
        "before each run: "
        + ", ".join(f"{x:.2f}" for x in result["load_avg_1min_before_each_run"])
        + ". Bar: p99 < 2 ms. Load: **C** = bench_api's C load generator (one thread, woken "
        "by a `timerfd` at each scheduled send), **Python** = its asyncio client in the driver's "
        'process; both against each server in turn. "Load late": how late the load was '
        "ready to send after the schedule (the load generator's own share of \"from "
        'schedule").',
        "",
        "| engine | server | load | p50 / p99 from schedule (ms) | from ready p50 / p99 (ms) "
        "| ready to arrival p99 (ms) | load late p99 (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    client_label = {"c": "C", "python": "Python"}
    for state, name in (("rest", "at rest"), ("trading", "trading")):
        for kind, by_client in result["median"][state].items():
            for client, m in by_client.items():
                rows.append(
                    f"| {name} | {label[kind]} | {client_label[client]} | "
                    f"{m['p50_ms']:.2f} / {m['p99_ms']:.2f} | "
                    f"{m['ready_p50_ms']:.2f} / {m['ready_p99_ms']:.2f} | "
                    f"{m['wire_p99_ms']:.2f} | {m['send_late_p99_ms']:.2f} |"
                )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
