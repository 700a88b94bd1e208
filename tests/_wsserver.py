"""Shared helpers of the WebSocket tests: a real uvicorn server on a loopback socket, and
reads with a deadlock guard (nothing asserts on time)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import uvicorn

from jaxmm.api._ws import WS_PATH

GUARD_S = 30.0  # deadlock guard only


@contextlib.asynccontextmanager
async def serve(app, *, sndbuf=None, **config):
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port); yields the stream's ws:// URL.

    ``sndbuf``: SO_SNDBUF of the listening socket (accepted sockets inherit it on Linux), so
    back-pressure comes quickly; ``config``: more ``uvicorn.Config`` arguments."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    kw = {"log_level": "warning", "lifespan": "off", "ws_ping_interval": None, **config}
    server = uvicorn.Server(uvicorn.Config(app, **kw))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"ws://127.0.0.1:{port}{WS_PATH}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def recv_text(ws, guard: float = GUARD_S):
    async with asyncio.timeout(guard):
        return await ws.recv()


async def recv_json(ws, guard: float = GUARD_S):
    return json.loads(await recv_text(ws, guard))


async def recv_events(ws, n, guard: float = GUARD_S):
    """The next n event frames (heartbeats skipped)."""
    out = []
    while len(out) < n:
        frame = await recv_json(ws, guard)
        if "seq" in frame:
            out.append(frame)
    return out


async def subscribe(ws, guard: float = GUARD_S, **msg):
    """Send a subscribe op; the first frame that is not a heartbeat (its acknowledgement)."""
    await ws.send(json.dumps({"op": "subscribe", **msg}))
    while True:
        frame = await recv_json(ws, guard)
        if frame.get("type") != "heartbeat":
            return frame
