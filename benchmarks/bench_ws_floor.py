"""WebSocket broadcast to 100 subscribers: jaxmm against peers and against this machine's floor.

The service's bar is a delivery p99 under 1 ms to 100 WebSocket subscribers on loopback
(``bench_api.py``). This benchmark asks what any server can do here. In one run, with the same
client, it measures four senders:

- **c**: a C loop (compiled at run time with ``cc -O2``; the row is left out when there is no
  compiler). For each event it formats the frame and calls ``send`` once per subscriber. Python
  does the upgrades and then hands it the 100 sockets. Nothing between the event and the
  kernel's TCP path is left to remove: this is the floor.
- **python**: the same loop in Python, ``socket.send`` per subscriber.
- **websockets**: the ``websockets`` library's asyncio server and its ``broadcast()``, the
  field's usual way to send one message to many connections (compression off, as in jaxmm).
- **jaxmm**: ``create_app`` over a started engine, served by uvicorn, publishing marker events
  into the engine's broadcaster (``bench_api.py``'s own server, ``--_serve``).

Every sender publishes the same ~182-byte text frame (jaxmm's marker event, padded to its size
in the others) at each rate of ``--rates``, to 100 subscribers. The client is bench_api.py's raw
client, run in this driver's process: each frame's delivery is the kernel's receive time
(``SO_TIMESTAMPNS``) minus the time the sender stamped into the event just before sending it.
Only events published after the client started reading count. The client reads under
``SCHED_BATCH`` unless ``--client-sched other`` (``bench_api.py --ws-client-sched``: its
wake-ups do not preempt a sender sharing its core, as a remote subscriber's cannot). Senders
are interleaved within each repeat, so a noisy moment on this shared machine falls on all of
them. Medians over ``--repeats``; every run is kept in the JSON. Writes
benchmarks/results/ws_floor.json and .md.

Usage: ``python benchmarks/bench_ws_floor.py [--rates 20,200,1000] [--seconds 5] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_api  # the raw client, the jaxmm server, the readiness probe

SUBSCRIBERS = 100
SENDERS = ("c", "python", "websockets", "jaxmm")
FRAME_BYTES = 182  # len(event_frame(AlertTriggered(severity="info", kind="bench", message="tick")))
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3

C_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>

/* argv: rate pad fd... ; one text frame per event to every fd until a send fails */
int main(int argc, char **argv) {
    double rate = atof(argv[1]);
    int pad = atoi(argv[2]), n = argc - 3;
    int *fd = malloc(n * sizeof(int));
    for (int i = 0; i < n; i++) fd[i] = atoi(argv[i + 3]);
    char *fill = malloc(pad + 1);
    memset(fill, 'x', pad);
    fill[pad] = 0;
    char frame[4096];
    long long period = (long long)(1e9 / rate);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (long long seq = 1;; seq++) {
        next.tv_nsec += period;
        while (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        long long ts = (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
        int len = snprintf(frame + 4, sizeof frame - 4,
            "{\"seq\":%lld,\"event\":{\"type\":\"alert_triggered\",\"kind\":\"bench\","
            "\"local_ts_ns\":%lld,\"pad\":\"%s\"}}", seq, ts, fill);
        int off;
        if (len < 126) { off = 2; frame[2] = (char)0x81; frame[3] = (char)len; }
        else { off = 0; frame[0] = (char)0x81; frame[1] = 126;
               frame[2] = (char)(len >> 8); frame[3] = (char)(len & 255); }
        for (int i = 0; i < n; i++)
            if (send(fd[i], frame + off, len + 4 - off, MSG_NOSIGNAL) < 0) return 0;
    }
}
"""


def _payload_prefix(seq: int, ts: int) -> str:
    event = f'"type":"alert_triggered","kind":"bench","local_ts_ns":{ts},"pad":"'
    return f'{{"seq":{seq},"event":{{{event}'


_PAD = FRAME_BYTES - len(_payload_prefix(1000, time.time_ns())) - len('"}}')


def _payload(seq: int) -> str:
    return _payload_prefix(seq, time.time_ns()) + "x" * _PAD + '"}}'


def _text_frame(payload: bytes) -> bytes:
    n = len(payload)
    head = bytes([0x81, n]) if n < 126 else bytes([0x81, 126]) + n.to_bytes(2, "big")
    return head + payload


def _recv_until(conn: socket.socket, buf: bytes, done) -> bytes:
    while not done(buf):
        data = conn.recv(65536)
        if not data:
            raise ConnectionError("subscriber closed during the upgrade")
        buf += data
    return buf


def _upgrade(conn: socket.socket) -> None:
    """RFC 6455 server side of bench_api's raw client: the 101 answer, then the client's
    (masked) subscribe frame is read and answered with ``{"type": "subscribed"}``."""
    buf = _recv_until(conn, b"", lambda b: b"\r\n\r\n" in b)
    head, rest = buf.split(b"\r\n\r\n", 1)
    key = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
    )
    # a masked client frame shorter than 126 bytes: 2 header bytes, 4 mask bytes, the payload
    _recv_until(conn, rest, lambda b: len(b) >= 2 and len(b) >= 6 + (b[1] & 0x7F))
    conn.sendall(_text_frame(b'{"type":"subscribed"}'))


def _peer(kind: str, fd: int, rate: float, cbin: str | None) -> None:
    """The ``c`` and ``python`` senders: accept and upgrade the subscribers, then send."""
    listener = socket.socket(fileno=fd)
    conns = []
    for _ in range(SUBSCRIBERS):
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _upgrade(conn)
        conns.append(conn)
    if kind == "c":
        for c in conns:
            c.set_inheritable(True)
        os.execv(cbin, [cbin, repr(rate), str(_PAD), *(str(c.fileno()) for c in conns)])
    period, nxt, seq = 1.0 / rate, time.perf_counter(), 0
    while True:
        nxt += period
        time.sleep(max(0.0, nxt - time.perf_counter()))
        seq += 1
        frame = _text_frame(_payload(seq).encode())
        try:
            for c in conns:
                c.send(frame)
        except OSError:
            return


async def _peer_websockets(fd: int, rate: float) -> None:
    from websockets.asyncio.server import broadcast, serve

    subscribed: set = set()

    async def handler(ws) -> None:
        await ws.recv()
        await ws.send('{"type":"subscribed"}')
        subscribed.add(ws)
        try:
            await ws.wait_closed()
        finally:
            subscribed.discard(ws)

    sock = socket.socket(fileno=fd)
    async with serve(handler, sock=sock, compression=None, ping_interval=None):
        period, nxt, seq = 1.0 / rate, time.perf_counter(), 0
        while True:
            nxt += period
            await asyncio.sleep(max(0.0, nxt - time.perf_counter()))
            seq += 1
            broadcast(subscribed, _payload(seq))


def _one(kind: str, rate: float, seconds: float, token: str, env: dict, cbin: str | None) -> dict:
    sock = bench_api._listener(listen=True)
    port = sock.getsockname()[1]
    if kind == "jaxmm":
        cmd = [sys.executable, bench_api.__file__, "--ws-rate", repr(rate), "--_serve"]
    else:
        cmd = [sys.executable, __file__, "--_peer", kind, repr(rate), cbin or "-"]
    server = subprocess.Popen(cmd + [str(sock.fileno())], env=env, pass_fds=[sock.fileno()])
    try:
        times = bench_api.PUBLISH_TIMES_PATH
        if kind == "jaxmm":
            bench_api._wait_ready(port, server, path=f"{times}?from_ns=0&to_ns=0")
        res = bench_api._ws_latency_raw(port, token, SUBSCRIBERS, seconds, None)
        if kind == "jaxmm":  # the server's own part: how long each marker's publish took
            window = f"{times}?from_ns={res['start_ns']}&to_ns={res['end_ns']}"
            pub = json.loads(asyncio.run(bench_api._get(port, token, window)))
            res["publish_p50_ms"] = bench_api._pct([ns / 1e6 for ns in pub], 0.5)
            res["publish_p99_ms"] = bench_api._pct([ns / 1e6 for ns in pub], 0.99)
    finally:
        bench_api._stop(server)
        sock.close()
    lat = res.pop("lat")
    out = {"p50_ms": res["p50_ms"], "p90_ms": bench_api._pct(lat, 0.9), "p99_ms": res["p99_ms"],
           "max_ms": res["max_ms"], "events": res["events"], "samples": res["samples"],
           "in_order": res["in_order"], "us_per_subscriber": _us_per_subscriber(lat)}  # fmt: skip
    for key in ("publish_p50_ms", "publish_p99_ms"):
        if key in res:
            out[key] = res[key]
    return out


def _us_per_subscriber(lat: list[float]) -> float | None:
    """Median over events of (last delivery - first delivery) / (subscribers - 1), in us: what
    each further subscriber costs the sender. ``lat`` holds each subscriber's events in order,
    one subscriber after the other; None unless every subscriber counted the same events."""
    if not lat or len(lat) % SUBSCRIBERS:
        return None
    n = len(lat) // SUBSCRIBERS
    spreads = []
    for e in range(n):
        col = lat[e::n]
        spreads.append((max(col) - min(col)) * 1e3 / (SUBSCRIBERS - 1))
    return statistics.median(spreads)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="20,200,1000", help="events/s, comma-separated")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each scenario")
    p.add_argument("--repeats", type=int, default=3, help="runs of every scenario; medians")
    p.add_argument("--senders", default=",".join(SENDERS), help="subset of " + ",".join(SENDERS))
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument(
        "--client-sched",
        choices=bench_api.CLIENT_SCHED,
        default=bench_api.CLIENT_SCHED[0],
        help="the subscribers' scheduling policy while they read (bench_api.py's "
        "--ws-client-sched)",
    )
    p.add_argument(
        "--_peer", nargs=4, metavar=("KIND", "RATE", "CBIN", "FD"), help=argparse.SUPPRESS
    )
    args = p.parse_args()
    if args._peer:
        kind, rate, cbin, fd = args._peer
        if kind == "websockets":
            asyncio.run(_peer_websockets(int(fd), float(rate)))
        else:
            _peer(kind, int(fd), float(rate), cbin)
        return

    from jaxmm.api import mint_token

    secret = secrets.token_urlsafe(48)
    token = mint_token("bench", "read", 3600, secret)
    os.environ["JAXMM_BENCH_CLIENT_SCHED"] = args.client_sched
    env = dict(os.environ, JAXMM_JWT_SECRET=secret, JAX_PLATFORMS="cpu")
    keeper = bench_api._hold_rx_timestamps()  # receive times for every read of the run
    rates = [float(x) for x in args.rates.split(",")]
    senders = [s for s in args.senders.split(",") if s]
    cbin = bench_api._compile_c(C_SOURCE, "send") if "c" in senders else None
    if cbin is None and "c" in senders:
        print("no C compiler (cc/gcc): the c sender is left out", file=sys.stderr)
        senders.remove("c")
    runs: list[dict] = []
    for r in range(args.repeats):
        run: dict = {"load_avg_before": os.getloadavg()[0], "by_rate": {}}
        for rate in rates:
            run["by_rate"][f"{rate:g}"] = {
                kind: _one(kind, rate, args.seconds, token, env, cbin) for kind in senders
            }
            print(f"repeat {r + 1}, {rate:g}/s:",
                  {k: round(v["p99_ms"], 3) for k, v in run["by_rate"][f"{rate:g}"].items()},
                  file=sys.stderr)  # fmt: skip
        run["load_avg_after"] = os.getloadavg()[0]
        runs.append(run)
    keeper.close()
    median = bench_api._median_tree([run["by_rate"] for run in runs])
    result = {
        "subscribers": SUBSCRIBERS,
        "frame_bytes": FRAME_BYTES,
        "senders": senders,
        "bar_p99_ms": 1.0,
        "client_sched": args.client_sched,
        "repeats": args.repeats,
        "seconds": args.seconds,
    }
    bench_api._report(None if args.no_write else "ws_floor", result, runs, median, _markdown)


def _markdown(result: dict) -> str:
    senders = result["senders"]
    label = {
        "c": "C `send` loop (floor)",
        "python": "Python `socket.send` loop",
        "websockets": "`websockets` `broadcast()`",
        "jaxmm": "jaxmm (`create_app`, uvicorn)",
    }
    rows = [
        "# WebSocket broadcast to 100 subscribers: jaxmm, peers and the floor "
        "(benchmarks/bench_ws_floor.py)",
        "",
        f"{result['machine']}; one run: every sender in turn, same client (bench_api.py's raw "
        f"client, 100 loopback TCP subscribers in the driver process), same "
        f"~{result['frame_bytes']}-byte text frame, medians of {result['repeats']} runs of "
        f"{result['seconds']:g} s, subscribers reading under "
        + ("`SCHED_BATCH`" if result.get("client_sched") == "batch" else "the default policy")
        + ". 1-minute load average before each run: "
        + ", ".join(f"{x:.2f}" for x in result["load_avg_1min_before_each_run"])
        + ". Delivery = kernel receive time in the subscriber's socket (`SO_TIMESTAMPNS`) minus "
        "the time stamped into the event just before it was sent. Bar: p99 < 1 ms.",
        "",
        "| events/s | sender | delivery p50 / p90 / p99 / max (ms) | p99 / floor p99 "
        "| us per subscriber | server's publish p50 / p99 (ms) | in order |",
        "|---|---|---|---|---|---|---|",
    ]
    for rate, by in result["median"].items():
        floor = by.get("c", {}).get("p99_ms")
        for kind in senders:
            m = by[kind]
            ratio = f"{m['p99_ms'] / floor:.2f}x" if floor else "n/a"
            per = "n/a" if m.get("us_per_subscriber") is None else f"{m['us_per_subscriber']:.1f}"
            pub = (f"{m['publish_p50_ms']:.3f} / {m['publish_p99_ms']:.3f}"
                   if m.get("publish_p50_ms") is not None else "")  # fmt: skip
            rows.append(
                f"| {rate} | {label[kind]} | {m['p50_ms']:.3f} / {m['p90_ms']:.3f} / "
                f"{m['p99_ms']:.3f} / {m['max_ms']:.2f} | {ratio} | {per} | {pub} | "
                f"{m['in_order']} |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
