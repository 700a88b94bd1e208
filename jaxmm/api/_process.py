"""Serve the API from a process of its own: the engine's process only trades.

:class:`jaxmm.api.ApiThread` moves the API to a second thread, but both threads still share
one interpreter: each request waits for the engine thread to hand over the GIL (up to one
switch interval per system call) and is stopped by every garbage collection of the engine's
heap. :class:`ApiProcess` runs the service in a child process (:func:`main`) that shares
nothing with the engine but the listening socket, one stream pair, one Unix socket for
forwarded requests and (by default) one more for stream connections:

- **The listening socket** is inherited by the API process, which accepts every connection.
- **The event stream** (``/api/v1/mm/ws``), ``stream="engine"`` (the default): the API process
  reads a new connection's first bytes without taking them (``MSG_PEEK``) and hands a stream
  handshake's socket to the engine's process (its descriptor, ``SCM_RIGHTS`` over a
  ``SOCK_SEQPACKET`` pair); there the engine's server (the main app on the engine's loop)
  reads the handshake and serves the stream, and ``publish`` writes each frame to the
  subscribers directly, as in one loop: no hop between processes for an event. A stream asked
  for on a connection that already served another request is refused (400, rule
  ``new_connection``). ``stream="api"`` (the relay): the engine ships every event it publishes
  (its history first) and the API process serves the stream from a
  :class:`~jaxmm.api.RelayBroadcaster` fed with them: the engine's own sequence numbers, replay,
  heartbeats, the slow-client cut-off, the direct write path (docs/events.md). The engine then
  pays one local write per event burst however many clients subscribe, and every event takes a
  hop.
- **The engine ships, in order, over the stream pair** (pickled, length-prefixed): a
  :class:`~jaxmm.api.ViewSnapshots` snapshot of the quote and position views whenever a refresh
  changed it or the engine's configuration changed, with the common reads' JSON bodies made
  from it in the engine's process (the ones that changed), and, with ``stream="api"``, the
  events. While the API process has no WebSocket connection open (always, by default; with the
  relay it says so, one byte back on the pair), nobody there waits for an event: the engine
  then holds everything it ships in a loop iteration and writes it in one piece at the start of
  the next, so an engine step wakes the API process once; with a relayed stream open, each
  event goes at once.
- **Reads of the views** (``GET /api/v1/mm/quotes`` and ``/mm/positions``) are answered in the
  API process by the main router's own routes over the latest snapshot. The common read (no
  query) is answered with the bodies the engine made, so the API process serialises nothing
  for it and unpickles a snapshot's rows only when another read needs them (a filter).
- **Every other request** is forwarded over a Unix socket (in a private temporary directory) to
  the main :func:`jaxmm.api.create_app` app served on the engine's loop, and its answer relayed
  back. A changing request (not GET/HEAD/OPTIONS) refreshes the views before its response
  starts and says in a header which snapshot holds the change: the API process answers only
  once it has that snapshot (read-your-writes, as with the API thread).
- **Auth, errors, CORS** are the main app's, on both sides. The per-subject **rate limit** is
  counted once, in the API process, for every request whose token is valid (the engine's app
  does not count requests that came through it); so a request the route then refuses for its
  scope (403) or an unknown path (404) also counts there.

Stopping: the engine's side closes the stream; the API process stops accepting, finishes what
it serves (uvicorn's graceful timeout, while the engine still answers forwarded requests) and
exits; the engine's side then stops its server. The API process also exits when the engine's
process dies (the stream ends), and :meth:`ApiProcess.wait` ends (raising) when the API process
dies or stops reading what the engine ships.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from fastapi import Request, Response, WebSocket

from ._auth import RATE_COUNTED
from ._routes import _positions_json, _quotes_json, _seed_view_bodies
from ._threaded import (
    WS_PATH,
    HotViews,
    ViewSnapshot,
    ViewSnapshots,
    _SnapshotEngine,
    accept_routed,
    serve_accepted,
    uvicorn_server,
    view_app,
)

__all__ = ["ApiProcess", "SERIAL_HEADER", "STREAM_SIDES"]

log = logging.getLogger(__name__)

SERIAL_HEADER = "x-jaxmm-view-serial"
"""Response header (engine to API process only, never to a client): the number of the
snapshot that holds a change's effect."""

_ENTRY = "from jaxmm.api._process import main; main()"
STREAM_SIDES = ("engine", "api")
"""Where :class:`ApiProcess` serves the event stream: ``"engine"`` (default), the engine's
process (the API process hands it each stream connection); ``"api"``, the API process (the
engine ships it every event)."""
WS_ROUTE = WS_PATH.decode()
FIRST_BYTES_TIMEOUT_S = 10.0  # a new connection that says nothing for this long is closed
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_LEN = struct.Struct("!I")
# the API process to the engine, one byte each: serving; a first stream opened; the last closed
_READY, _STREAMS_OPEN, _STREAMS_CLOSED = b"RSs"
# request headers not forwarded (hop-by-hop, RFC 9110 7.6.1; the length is recomputed)
_REQ_DROP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"te", b"trailer",
     b"proxy-connection", b"content-length"}
)  # fmt: skip
# answer headers not relayed: hop-by-hop, the length (recomputed), what the API process's own
# server and middleware set again (date, server, CORS, the local-mode header) and the serial
_RESP_DROP = _REQ_DROP | {
    b"date", b"server", b"vary", b"x-jaxmm-auth", SERIAL_HEADER.encode(),
}  # fmt: skip


def _frame(obj: Any) -> bytes:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    """The next object on the stream; raises ``asyncio.IncompleteReadError`` at its end."""
    (n,) = _LEN.unpack(await reader.readexactly(_LEN.size))
    return pickle.loads(await reader.readexactly(n))


class _Internal:
    """The main app as the engine's process serves it to the API process (over the Unix
    socket): rate limit already counted; a changing request ships the views before its
    response starts and names the snapshot in :data:`SERIAL_HEADER`."""

    def __init__(self, main: Any, owner: ApiProcess) -> None:
        self.main = main
        self.owner = owner

    @property
    def state(self) -> Any:
        return self.main.state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.main(scope, receive, send)  # lifespan is off; nothing else is sent here
            return
        owner = self.owner
        owner.proxied += 1
        scope = {**scope, RATE_COUNTED: True}
        if scope["method"] in _READS:
            await self.main(scope, receive, send)
            return

        async def send_synced(message: dict) -> None:
            if message["type"] == "http.response.start":
                owner.views.refresh()  # the change is shipped before its answer
                header = (SERIAL_HEADER.encode(), str(owner.serial).encode())
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        await self.main(scope, receive, send_synced)


class ApiProcess:
    """The API served from a process of its own (module docstring): connections accepted, the
    views answered and the event stream served there; every other request on the engine's loop.

    Args:
        main: a :func:`jaxmm.api.create_app` app (its engine, settings, store).
        sock: a listening, non-blocking TCP socket (:func:`jaxmm._live.bind_socket`); shared
            with the API process, not closed here.
        server_factory: makes the engine's uvicorn server for forwarded requests and handed
            stream connections (default :func:`jaxmm.api.uvicorn_server`).
        stream: where the event stream is served (one of :data:`STREAM_SIDES`): ``"engine"``
            (default), in this process, its connections handed over by the API process;
            ``"api"``, in the API process, from every event shipped to it.
        snapshot_interval_s: the views' safety-net refresh period (s, finite > 0).
        start_timeout_s: how long :meth:`start` waits for the API process (its imports).
        max_unread_bytes: what the engine lets the API process fall behind in reading (bytes
            shipped and not yet read); beyond it the API process is taken as hung and killed,
            and :meth:`wait` raises.

    Call :meth:`start`, :meth:`wait` and :meth:`stop` on the engine's loop. :attr:`proxied`
    counts the requests forwarded to the engine, :attr:`serial` the snapshots,
    :attr:`events` the events shipped and :attr:`streams_taken` the stream connections handed
    over.

    Example:
        >>> import asyncio, httpx
        >>> from jaxmm._live import bind_socket
        >>> from jaxmm.api import ApiSettings, create_app
        >>> from jaxmm.engine import MarketMakerConfig, OptionsMarketMaker
        >>> async def demo():
        ...     mm = OptionsMarketMaker(MarketMakerConfig.demo())
        ...     await mm.start()
        ...     sock, _ = bind_socket("127.0.0.1", 0)
        ...     api = ApiProcess(create_app(mm, settings=ApiSettings(auth_disabled=True)), sock)
        ...     await api.start()
        ...     url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1"
        ...     async with httpx.AsyncClient(base_url=url) as client:
        ...         rows = (await client.get("/mm/quotes")).json()
        ...         health = (await client.get("/health")).json()["status"]
        ...     await api.stop()
        ...     sock.close()
        ...     await mm.stop()
        ...     return rows == mm.quotes(), health, api.proxied, api.process.returncode
        >>> asyncio.run(demo())
        (True, 'ok', 1, 0)
    """

    def __init__(
        self,
        main: Any,
        sock: socket.socket,
        server_factory: Callable[[Any], Any] | None = None,
        *,
        stream: str = "engine",
        snapshot_interval_s: float = 0.25,
        start_timeout_s: float = 120.0,
        max_unread_bytes: int = 256 * 2**20,
    ) -> None:
        if stream not in STREAM_SIDES:
            raise ValueError(f"stream: must be one of {', '.join(STREAM_SIDES)}, got {stream!r}")
        self.stream = stream
        self.main = main
        self.sock = sock
        self.engine = main.state.engine
        self.bus = main.state.events
        self.views = ViewSnapshots(
            self.engine, interval_s=snapshot_interval_s, on_refresh=self._ship
        )
        self.start_timeout_s = float(start_timeout_s)
        self.max_unread_bytes = int(max_unread_bytes)
        self._server_factory = server_factory or uvicorn_server
        self.internal_server: Any = None  # the engine loop's: requests forwarded to it
        self.process: subprocess.Popen | None = None
        self.proxied = 0
        self.serial = 0
        self.events = 0
        self.streams_taken = 0  # stream connections the API process handed to this one
        self._handoff: socket.socket | None = None  # stream="engine": connections come in here
        self._shipped: tuple[Any, Any] = (None, None)  # (snapshot, config) last shipped
        self._batch: list[Any] = []  # events held until the end of this loop iteration
        self._burst = False  # an event was shipped in this loop iteration
        self._streams = False  # the API process has a stream connection open
        self._held: list[bytes] | None = None  # frames held until _flush (no stream open)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ready = asyncio.Event()
        self._gone = asyncio.Event()  # the API process closed its end (or was killed)
        self._dir: str | None = None
        self._internal_task: asyncio.Task | None = None
        self._watch_task: asyncio.Task | None = None
        self._following = False
        self._stopping = False

    # ------------------------------------------------------------------ shipping
    def _send(self, obj: Any) -> None:
        """Ship one message: written at once while the API process has a stream open (or
        outside a running loop); otherwise held, with everything else shipped in this loop
        iteration, and written in one piece at the start of the next (:meth:`_flush`), so an
        engine step wakes the API process once."""
        if self._writer is None:
            return
        frame = _frame(obj)
        if self._held is not None:
            self._held.append(frame)  # a flush is due: after what it holds
            return
        if not self._streams:
            with contextlib.suppress(RuntimeError):  # no running loop: written now
                asyncio.get_running_loop().call_soon(self._flush)
                self._held = [frame]
                return
        self._write(frame)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held and self._writer is not None:
            self._write(b"".join(held))

    def _write(self, data: bytes) -> None:
        writer = self._writer
        writer.write(data)
        if writer.transport.get_write_buffer_size() > self.max_unread_bytes:
            log.error("the API process stopped reading (%d bytes unread); killing it",
                      writer.transport.get_write_buffer_size())  # fmt: skip
            self._writer = None
            writer.transport.abort()
            if self.process is not None:
                self.process.kill()
            self._gone.set()

    def _ship(self, snap: ViewSnapshot) -> None:
        """ViewSnapshots hook (engine's loop): send a snapshot that changed, with the
        configuration when that changed too (after the events published before it)."""
        self._ship_batch()
        config = self.engine.config
        last_snap, last_config = self._shipped
        if self._writer is None or (snap is last_snap and config is last_config):
            return
        self.serial += 1
        self._shipped = (snap, config)
        bodies = self._bodies(snap, last_snap)
        rows = pickle.dumps((snap.quotes, snap.positions), protocol=pickle.HIGHEST_PROTOCOL)
        packed = (snap.quotes_version, snap.positions_version, rows)
        new_config = None if config is last_config else config
        self._send(("views", self.serial, packed, new_config, bodies))

    @staticmethod
    def _bodies(snap: ViewSnapshot, last: ViewSnapshot | None) -> tuple[Any, Any]:
        """The common reads' JSON bodies of ``snap`` that ``last`` (the snapshot shipped
        before) did not have: ``((quotes_version, body) | None, (positions_version, body) |
        None)``. Made here, in the engine's process while its step runs, so the API process only
        stores them; a view that fails to serialise is sent as None and its route answers the
        error."""
        quotes = positions = None
        if last is None or snap.quotes_version != last.quotes_version:
            quotes = _versioned(snap.quotes_version, _quotes_json, snap.quotes)
        if last is None or snap.positions_version != last.positions_version:
            positions = _versioned(snap.positions_version, _positions_json, snap.positions)
        return quotes, positions

    def _ship_event(self, event: Any) -> None:
        """Broadcaster callback (inside the engine's ``publish``). The first event of a loop
        iteration is sent at once; the ones after it in the same iteration (a requote publishes
        a burst) are sent together when it ends, or when the engine marks the end of the burst
        (``bus.burst()``): two local writes per burst instead of one per event, and an event on
        its own is never held. While the API process has no stream open, nobody waits for an
        event there: the first one is held with the rest (:meth:`_send`)."""
        self.events += 1
        if self._burst:
            self._batch.append(event)
            return
        try:
            asyncio.get_running_loop().call_soon(self._end_burst)
        except RuntimeError:  # no running loop: nothing to wait for
            self._send(("events", [event]))
            return
        self._burst = True
        if self._streams:  # someone is watching: the first event goes at once
            self._send(("events", [event]))
        else:  # nobody streams: with the rest of the step and its snapshot, in one write
            self._batch.append(event)

    def _ship_batch(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            self._send(("events", batch))

    def _end_burst(self) -> None:
        self._burst = False
        self._ship_batch()

    async def _watch(self) -> None:
        """The API process's side of the stream: its ready byte, whether it has a stream open
        (:data:`_STREAMS_OPEN` / :data:`_STREAMS_CLOSED`), then its end."""
        with contextlib.suppress(ConnectionError, OSError):
            while data := await self._reader.read(64):
                for byte in data:
                    if byte == _READY:
                        self._ready.set()
                    elif byte in (_STREAMS_OPEN, _STREAMS_CLOSED):
                        self._streams = byte == _STREAMS_OPEN
                        if self._streams:
                            self._flush()  # what was held goes now
        self._gone.set()

    def _take_streams(self) -> None:
        """Reader callback (``stream="engine"``): the stream connections the API process
        handed over (one descriptor per message), each served from here on by the engine's
        server (the main app: the stream's frames written inside ``publish``, as in one
        loop)."""
        loop = asyncio.get_running_loop()
        while self._handoff is not None:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self._handoff, 16, 4)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data and not fds:  # the API process closed its end: no more to take
                self._close_handoff()
                return
            for fd in fds:
                conn = socket.socket(fileno=fd)  # TCP: asyncio sets TCP_NODELAY on it
                conn.setblocking(False)
                self.streams_taken += 1
                loop.create_task(self._adopt(conn))

    def _close_handoff(self) -> None:
        """Take no more stream connections (those taken go on being served)."""
        if self._handoff is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            asyncio.get_running_loop().remove_reader(self._handoff.fileno())
        self._handoff.close()
        self._handoff = None

    async def _adopt(self, conn: socket.socket) -> None:
        try:
            await serve_accepted(self.internal_server, conn)
        except Exception:  # this connection only
            log.warning("a stream connection could not be served", exc_info=True)
            conn.close()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the engine's server and the API process, ship the event history and the
        first snapshot, and wait until the API process serves; raises why something did not
        start (everything started is stopped again)."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="jaxmm-api-")  # mode 0700: this user only
        path = os.path.join(self._dir, "engine.sock")
        uds = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        uds.bind(path)
        uds.listen(128)
        uds.setblocking(False)
        self.internal_server = server = self._server_factory(_Internal(self.main, self))
        self._internal_task = asyncio.create_task(server.serve(sockets=[uds]))
        while not server.started and not self._internal_task.done():
            await asyncio.sleep(0.01)
        if self._internal_task.done():
            self._internal_task.result()  # raises why it did not start
            raise RuntimeError("server: the engine's server did not start")

        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pairs = [(mine, theirs)]
        if self.stream == "engine":  # stream connections come back over a second pair
            pairs.append(socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET))
        fds = (self.sock.fileno(), *(theirs.fileno() for _, theirs in pairs))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, *map(str, fds)], pass_fds=fds, close_fds=True
            )
        finally:
            for _, theirs in pairs:
                theirs.close()
        if self.stream == "engine":
            self._handoff = pairs[1][0]
            self._handoff.setblocking(False)
            asyncio.get_running_loop().add_reader(self._handoff.fileno(), self._take_streams)
        self._reader, self._writer = await asyncio.open_unix_connection(sock=mine)
        self._watch_task = asyncio.create_task(self._watch())
        self._send(("init", self.main.state.settings, path))
        if self.stream == "api":
            # the history, then every event as published: no gap, no repeat (same loop step)
            history = self.bus.history()
            self.events += len(history)
            self._send(("events", history))
            self.bus.add_callback(self._ship_event)
            self.bus.on_burst_end(self._end_burst)  # a requote's events go when its loop ends
            self._following = True
        self.views.start()  # the first snapshot (and the configuration) shipped
        ready = asyncio.ensure_future(self._ready.wait())
        gone = asyncio.ensure_future(self._gone.wait())
        try:
            await asyncio.wait({ready, gone}, timeout=self.start_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            ready.cancel()
            gone.cancel()
        if not self._ready.is_set():
            rc = self.process.poll()
            raise RuntimeError(
                "server: the API process did not start "
                + (f"(exit code {rc})" if rc is not None else "(timed out)")
            )

    async def wait(self) -> None:
        """Until the API process ends or the engine's server does; raises if the API process
        ended without being asked to, or the server failed."""
        gone = asyncio.ensure_future(self._gone.wait())
        waiters = {gone, *([self._internal_task] if self._internal_task else [])}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if self._internal_task is not None and self._internal_task.done():
            self._internal_task.result()  # its error, if it failed
        if self._gone.is_set() and not self._stopping:
            rc = await asyncio.to_thread(self._reap, 5.0)
            raise RuntimeError(f"server: the API process ended on its own (exit code {rc})")

    def _reap(self, timeout_s: float) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("the API process did not exit in %.0f s; killing it", timeout_s)
            self.process.kill()
            return self.process.wait()

    async def stop(self) -> None:
        """Let the API process drain and exit (the engine still answers what it forwards),
        then stop the engine's server and the snapshots; idempotent."""
        self._stopping = True
        if self._following:
            self.bus.remove_callback(self._ship_event)
            self.bus.remove_burst_end(self._end_burst)
            self._ship_batch()
            self._flush()
            self._following = False
        if self.views._loop is not None:  # started
            self.views.stop()
        self._close_handoff()
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()  # the end of the stream: the API process stops
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if self.process is not None:
            await asyncio.to_thread(self._reap, 15.0)
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        if self.internal_server is not None:
            self.internal_server.should_exit = True
        if self._internal_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._internal_task
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _versioned(version: int, dump: Callable[[Any], bytes], rows: Any) -> tuple[int, bytes] | None:
    """``(version, dump(rows))``, or None (logged) when the rows do not serialise."""
    try:
        return version, dump(rows)
    except Exception:
        log.exception("views: a snapshot's body did not serialise")
        return None


# ---------------------------------------------------------------------- the API process ----


class _ShippedSnapshot:
    """A :class:`~jaxmm.api.ViewSnapshot` as the API process receives it: its two versions at
    once, its rows (pickled in the engine's process) unpickled on first use. The common reads
    are answered from the bodies the engine made, so most snapshots are never unpickled."""

    __slots__ = ("quotes_version", "positions_version", "_pickled", "_rows")

    def __init__(self, quotes_version: int, positions_version: int, pickled: bytes) -> None:
        self.quotes_version = quotes_version
        self.positions_version = positions_version
        self._pickled = pickled
        self._rows: tuple[tuple[dict, ...], tuple[dict, ...]] | None = None

    def _load(self) -> tuple[tuple[dict, ...], tuple[dict, ...]]:
        if self._rows is None:
            self._rows = pickle.loads(self._pickled)
            self._pickled = b""
        return self._rows

    @property
    def quotes(self) -> tuple[dict, ...]:
        return self._load()[0]

    @property
    def positions(self) -> tuple[dict, ...]:
        return self._load()[1]


class _RemoteViews:
    """The API process's copy of the engine's views: the latest snapshot and configuration
    shipped, and its number; :meth:`at_least` waits for a given number."""

    def __init__(self) -> None:
        self.current: _ShippedSnapshot | None = None
        self.config: Any = None
        self.serial = 0
        # the latest common-read bodies the engine made: (version, JSON bytes)
        self.quotes_body: tuple[int, bytes] | None = None
        self.positions_body: tuple[int, bytes] | None = None
        self._waiters: list[tuple[int, asyncio.Future]] = []

    def apply(self, message: tuple[int, tuple[int, int, bytes], Any, tuple[Any, Any]]) -> None:
        serial, packed, config, (quotes, positions) = message
        self.current = _ShippedSnapshot(*packed)
        if config is not None:
            self.config = config
        self.quotes_body = quotes or self.quotes_body
        self.positions_body = positions or self.positions_body
        self.serial = serial
        keep = []
        for n, fut in self._waiters:
            if n <= serial:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((n, fut))
        self._waiters = keep

    async def at_least(self, serial: int, timeout_s: float) -> None:
        if self.serial >= serial:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((serial, fut))
        try:
            await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            log.warning("snapshot %d did not arrive in %.1f s; answering anyway", serial,
                        timeout_s)  # fmt: skip


def front_app(views: _RemoteViews, bus: Any, settings: Any, uds_path: str) -> Any:
    """The API process's app: the view routes over ``views``, the event stream from ``bus``
    (a :class:`~jaxmm.api.RelayBroadcaster`; None: no stream here, the engine's process
    serves it), then one catch-all route that forwards everything else to the engine's
    process over ``uds_path``."""
    import httpx

    from ._auth import TokenBucketLimiter, rate_limited, subject_of
    from ._ws import router as ws_router

    limiter = TokenBucketLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    app = view_app(_SnapshotEngine(views, views), settings, limiter)
    if bus is not None:
        app.include_router(ws_router)
        app.state.events = bus
    else:
        app.add_api_websocket_route(WS_ROUTE, _stream_elsewhere)
    client = httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=uds_path), base_url="http://engine", timeout=None
    )
    app.state.client = client

    async def forward(request: Request) -> Response:
        subject = subject_of(settings, request.headers.get("authorization"))
        if subject is not None:
            wait = limiter.acquire(subject)
            if wait > 0:
                raise rate_limited(settings, wait)
        scope = request.scope
        target = scope.get("raw_path") or scope["path"].encode()
        if scope["query_string"]:
            target += b"?" + scope["query_string"]
        upstream = await client.send(
            client.build_request(
                request.method,
                target.decode("latin-1"),
                headers=[(k, v) for k, v in request.headers.raw if k not in _REQ_DROP],
                content=await request.body(),
            ),
            stream=True,
        )
        try:
            body = b"".join([chunk async for chunk in upstream.aiter_raw()])
        finally:
            await upstream.aclose()
        serial = upstream.headers.get(SERIAL_HEADER)
        if serial is not None:
            await views.at_least(int(serial), 5.0)  # read-your-writes
        response = Response(status_code=upstream.status_code)
        length = upstream.headers.get("content-length") if request.method == "HEAD" else None
        response.body = body
        response.raw_headers = [
            *((k, v) for k, v in upstream.headers.raw if k.lower() not in _RESP_DROP),
            (b"content-length", (length or str(len(body))).encode()),
        ]
        return response

    app.add_api_route(
        "/{path:path}",
        forward,
        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        include_in_schema=False,
    )
    return app


async def _stream_elsewhere(websocket: WebSocket) -> None:
    """The event stream asked for on a connection that began with another request (the
    accept loop handed it to this process's server): refused, 400 with the usual error body.
    Clients open a stream on a connection of its own (browsers and WebSocket libraries always
    do), which goes to the engine's process."""
    from ._app import _error

    message = "open the event stream on a new connection, not one that served other requests"
    await websocket.send_denial_response(_error(400, "connection", "new_connection", message))


async def _api_process(listen_fd: int, stream_fd: int, handoff_fd: int | None = None) -> None:
    from ._fanout import RelayBroadcaster
    from ._ws import coalesced

    listener = socket.socket(fileno=listen_fd)
    listener.setblocking(False)
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=stream_fd))
    tag, settings, uds_path = await _read_frame(reader)
    if tag != "init":
        raise RuntimeError(f"API process: expected the init message first, got {tag!r}")
    views = _RemoteViews()
    # the stream served here (events shipped), or in the engine's process (handed over)
    bus = RelayBroadcaster(queue_size=settings.ws_queue_size) if handoff_fd is None else None
    while views.current is None:  # the history (stream here), then the first snapshot
        _follow_one(await _read_frame(reader), views, bus)
    app = front_app(views, bus, settings, uds_path)
    ctx = app.state.ctx
    _seed_view_bodies(ctx, views.quotes_body, views.positions_body)
    hot = HotViews(app)  # the common view read without FastAPI's stack
    server = uvicorn_server(hot if bus is None else _StreamsOpen(hot, writer.write))
    # what start-up left (the imported modules, the app) is never collected again: a full
    # collection then walks only what serving allocates (as the engine does, gc_freeze)
    gc.collect()
    gc.freeze()

    async def follow() -> None:
        """Everything the engine ships, as it comes: each read's whole messages handed on
        together, so a burst of events costs each subscriber one send (``coalesced``)."""
        buf = bytearray()
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1 << 20):
                buf += data
                messages, pos = [], 0
                while len(buf) - pos >= _LEN.size:
                    (n,) = _LEN.unpack_from(buf, pos)
                    if len(buf) - pos - _LEN.size < n:
                        break
                    start = pos + _LEN.size
                    messages.append(pickle.loads(buf[start : start + n]))
                    pos = start + n
                del buf[:pos]
                with coalesced(app):
                    for message in messages:
                        _follow_one(message, views, bus)
                if any(message[0] == "views" for message in messages):
                    # the engine made the new snapshot's bodies: stored, not serialised here
                    _seed_view_bodies(ctx, views.quotes_body, views.positions_body)

    accepting: asyncio.Task | None = None
    if handoff_fd is None:  # uvicorn accepts
        serving = asyncio.create_task(server.serve(sockets=[listener]))
    else:  # accepted here: stream connections handed to the engine's process
        serving = asyncio.create_task(server.serve(sockets=[]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if serving.done():
        serving.result()
        return
    if handoff_fd is not None:
        handoff = socket.socket(fileno=handoff_fd)
        handoff.setblocking(False)
        to_engine = functools.partial(_hand_over, handoff, timeout_s=FIRST_BYTES_TIMEOUT_S)
        to_api = functools.partial(serve_accepted, server)
        accepting = asyncio.create_task(
            accept_routed(listener, to_engine, to_api, FIRST_BYTES_TIMEOUT_S)
        )
    following = asyncio.create_task(follow())
    writer.write(bytes([_READY]))
    try:
        await asyncio.wait({following, serving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if accepting is not None:
            accepting.cancel()  # stop accepting
        server.should_exit = True  # then drain what is being served
        await serving
        following.cancel()
        await app.state.client.aclose()


async def _hand_over(handoff: socket.socket, conn: socket.socket, timeout_s: float) -> None:
    """Send the connection ``conn`` (its descriptor) to the engine's process over ``handoff``
    and close it here; the engine's server then reads the handshake (still in the socket: only
    peeked at). Raises TimeoutError if the engine takes none for ``timeout_s`` (s)."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                socket.send_fds(handoff, [b"c"], [conn.fileno()])
                break
            except (BlockingIOError, InterruptedError):  # the engine is behind in taking them
                await asyncio.sleep(0.005)
    conn.close()


class _StreamsOpen:
    """ASGI wrapper (API process): tells the engine's process, one byte on the stream pair,
    when the first WebSocket connection opens (:data:`_STREAMS_OPEN`) and when the last one
    closes (:data:`_STREAMS_CLOSED`): the engine ships each event at once only while one is
    open (:meth:`ApiProcess._send`)."""

    def __init__(self, app: Any, tell: Callable[[bytes], Any]) -> None:
        self.app = app
        self.tell = tell
        self.open = 0

    @property
    def state(self) -> Any:
        return self.app.state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        self.open += 1
        if self.open == 1:
            self.tell(bytes([_STREAMS_OPEN]))
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1
            if self.open == 0:
                self.tell(bytes([_STREAMS_CLOSED]))


def _follow_one(message: tuple, views: _RemoteViews, bus: Any) -> None:
    if message[0] == "events" and bus is not None:
        for event in message[1]:
            bus.relay(event)
    elif message[0] == "views":
        views.apply(message[1:])
    else:
        raise RuntimeError(f"API process: unknown message {message[0]!r}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the API process (``python -c`` :data:`_ENTRY` ``LISTEN STREAM
    [HANDOFF]``: inherited descriptors; started by :class:`ApiProcess`; with ``HANDOFF``, the
    event stream's connections are handed to the engine's process over it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine's process decides when to stop
    logging.basicConfig(level=logging.WARNING)
    fds = [int(a) for a in (argv or sys.argv[1:])]
    asyncio.run(_api_process(*fds))
