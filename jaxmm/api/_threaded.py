"""Serve the API from its own thread, so an engine step does not hold up every request.

In one event loop, every request waits for whatever the engine is doing: a requote of a
126-option chain holds the loop for ~2-3 ms of Python, the simulated traders' step ~1.5 ms, a
surface update ~2.5 ms (measured, 2 cores), and a request that lands behind them waits that long.
:class:`ApiThread` runs uvicorn on a second event loop in a thread of its own:

- **Reads of the views** (``GET /api/v1/mm/quotes`` and ``/mm/positions``) are answered on the
  API thread from a :class:`ViewSnapshots` snapshot: the engine's own :meth:`quotes` and
  :meth:`positions` rows, taken on the engine's loop after every engine step that published an
  event (one refresh per loop iteration, however many events) and every ``interval_s`` as a
  safety net. A snapshot is always a whole step: never half a requote. The routes are the main
  app's own (same validation, auth, errors, bodies), over a read-only engine facade; the common
  read (a valid ``read`` token, no query) is answered by :class:`HotViews` with the same bytes
  without FastAPI's stack, and a new snapshot's bodies are serialised as it arrives.
  Only events that can change the views (:data:`VIEW_EVENTS`) trigger a refresh.
- **The event stream** (``/api/v1/mm/ws``) stays on the engine's loop: the API thread reads a
  new connection's first bytes (without taking them) and hands a stream handshake to a second
  uvicorn server there, so each event's frame is still written to every subscriber inside the
  engine's ``publish``, with no hop between threads (docs/events.md).
- **Everything else** (orders, controls, configuration, the other views, ``/docs``, the
  console page) is handed to the main app (:func:`jaxmm.api.create_app`) **on the engine's
  loop**, as one loop would run it: the engine is only ever touched from its own thread. A
  changing request (not GET/HEAD) refreshes the snapshot before its response starts, so a
  client reads its own writes.

The GIL still serialises Python: :func:`jaxmm._live.run_live` lowers the interpreter's switch
interval while the API thread runs (``sys.setswitchinterval``, restored at the end) so the API
thread waits at most that long for the engine thread's Python; numbers in docs/api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..engine import same_expiry
from ._auth import RATE_COUNTED, Scope, _authenticate

__all__ = [
    "ApiThread",
    "HotViews",
    "ViewSnapshots",
    "VIEW_PATHS",
    "VIEW_EVENTS",
    "make_front_app",
    "uvicorn_server",
]

log = logging.getLogger(__name__)

VIEW_PATHS = frozenset({"/api/v1/mm/quotes", "/api/v1/mm/positions"})
"""The GET routes the API thread answers from a :class:`ViewSnapshots` snapshot."""

VIEW_EVENTS = frozenset(
    {
        "price_updated",
        "quote_updated",
        "order_filled",
        "greeks_updated",
        "hedge_sent",
        "circuit_breaker",
        "config_changed",
    }
)
"""The engine events after which the views may have changed (alerts and arbitrage signals do
not change them); anything else is caught by the periodic refresh."""


@dataclass(frozen=True)
class ViewSnapshot:
    """One engine step's views: ``quotes_version`` (the engine's :meth:`quotes_version` when
    taken), ``quotes`` and ``positions`` (the rows of :meth:`quotes` / :meth:`positions`, never
    changed after the snapshot is published) and ``positions_version`` (moves when the
    positions rows do)."""

    quotes_version: int
    quotes: tuple[dict, ...]
    positions_version: int
    positions: tuple[dict, ...]


class ViewSnapshots:
    """The engine's quote and position views, taken on the engine's loop and read from any
    thread (:attr:`current` is replaced whole, never changed in place).

    Args:
        engine: a :class:`jaxmm.engine.OptionsMarketMaker` (``quotes_version``, ``quotes``,
            ``positions``, ``events``).
        interval_s: the safety-net refresh period (s, finite > 0) for changes that publish no
            event.
        on_refresh: called (engine's loop) with the snapshot after every :meth:`refresh`,
            the same object when nothing changed (how :class:`jaxmm.api.ApiProcess` ships
            each new one to its process).

    :meth:`start` (on the engine's loop) takes the first snapshot, follows the engine's
    :data:`VIEW_EVENTS` (each burst schedules one :meth:`refresh` after the current step) and
    starts the timer; :meth:`stop` undoes it. :meth:`refresh` may be called at any time on the
    engine's loop.

    Example:
        >>> import asyncio
        >>> from jaxmm.engine import MarketMakerConfig, OptionsMarketMaker
        >>> async def demo():
        ...     mm = OptionsMarketMaker(MarketMakerConfig.demo())
        ...     views = ViewSnapshots(mm)
        ...     views.start()
        ...     snap = views.current
        ...     views.stop()
        ...     return list(snap.quotes) == mm.quotes(), list(snap.positions) == mm.positions()
        >>> asyncio.run(demo())
        (True, True)
    """

    def __init__(
        self,
        engine: Any,
        *,
        interval_s: float = 0.25,
        on_refresh: Callable[[ViewSnapshot], Any] | None = None,
    ) -> None:
        if not (isinstance(interval_s, int | float) and 0 < interval_s < math.inf):
            raise ValueError(f"interval_s: must be finite and > 0 (s), got {interval_s!r}")
        self.engine = engine
        self.interval_s = float(interval_s)
        self.on_refresh = on_refresh
        self.current: ViewSnapshot | None = None
        self._pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.Task | None = None

    def refresh(self) -> ViewSnapshot:
        """Take a snapshot now (engine's loop): quotes rebuilt only when the engine's
        ``quotes_version`` moved, positions kept as the same object when equal."""
        snap = self._take()
        if self.on_refresh is not None:
            self.on_refresh(snap)
        return snap

    def _take(self) -> ViewSnapshot:
        self._pending = False
        e, old = self.engine, self.current
        version = e.quotes_version()
        if old is not None and old.quotes_version == version:
            quotes = old.quotes
        else:
            quotes = tuple(e.quotes())
        positions = tuple(e.positions())
        if old is None:
            self.current = ViewSnapshot(version, quotes, 1, positions)
            return self.current
        pv = old.positions_version
        if positions == old.positions:
            positions = old.positions
            if quotes is old.quotes:
                return old
        else:
            pv += 1
        self.current = ViewSnapshot(version, quotes, pv, positions)
        return self.current

    def _on_event(self, _event: Any) -> None:
        if not self._pending and self._loop is not None:
            self._pending = True
            self._loop.call_soon(self.refresh)  # after the step that published it

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.refresh()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.refresh()
        self.engine.events.add_callback(self._on_event, VIEW_EVENTS)
        self._timer = self._loop.create_task(self._tick(), name="jaxmm-view-snapshots")

    def stop(self) -> None:
        self.engine.events.remove_callback(self._on_event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None


class _SnapshotEngine:
    """The read-only engine the API thread's view routes see: ``quotes`` and ``positions`` from
    the current snapshot (the filters of :meth:`jaxmm.engine.OptionsMarketMaker.quotes`),
    ``config`` the engine's own (an immutable object, replaced whole on a change)."""

    def __init__(self, engine: Any, views: ViewSnapshots) -> None:
        self._engine = engine
        self._views = views

    @property
    def config(self) -> Any:
        return self._engine.config

    def _snap(self) -> ViewSnapshot:
        snap = self._views.current
        if snap is None:
            raise RuntimeError("views: no snapshot yet (ViewSnapshots.start not called)")
        return snap

    def quotes_version(self) -> int:
        return self._snap().quotes_version

    def quotes(self, underlying: str | None = None, expiry: float | None = None) -> list[dict]:
        rows = self._snap().quotes
        return [
            dict(r)
            for r in rows
            if (underlying is None or r["underlying"] == underlying)
            and (expiry is None or same_expiry(r["expiry"], expiry))
        ]

    def positions_version(self) -> int:
        return self._snap().positions_version

    def positions(self) -> list[dict]:
        return [dict(p) for p in self._snap().positions]


@dataclass
class _Front:
    """The API thread's ASGI app: the views here (``local``), everything else ``main`` on the
    engine's loop."""

    local: Any  # HotViews over the FastAPI app of the view routes over the snapshot
    main: Any  # the create_app app, run on the engine's loop
    engine_loop: asyncio.AbstractEventLoop
    views: ViewSnapshots
    bridged: int = field(default=0)

    @property
    def state(self) -> Any:
        """The main app's state (settings, engine, limiter, ...)."""
        return self.main.state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http" and scope["method"] in ("GET", "HEAD") and scope["path"] in VIEW_PATHS:
            await self.local(scope, receive, send)
        elif kind in ("http", "websocket"):
            await self._bridge(scope, receive, send)
        # lifespan: uvicorn runs with lifespan="off"

    async def _bridge(self, scope: dict, receive: Any, send: Any) -> None:
        """Run the main app for this request on the engine's loop; its ``receive`` and
        ``send`` come back to this (the API) loop, where the connection lives. (A WebSocket
        opened on a connection that began as HTTP lands here too: served the same way, frame
        by frame, without the direct write path.)"""
        api_loop = asyncio.get_running_loop()
        changes = scope.get("method", "GET") not in ("GET", "HEAD", "OPTIONS")
        views = self.views

        async def on_api(coro: Any) -> Any:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, api_loop))

        async def receive_e() -> Any:
            return await on_api(receive())

        async def send_e(message: dict) -> None:
            if changes and message["type"] == "http.response.start":
                views.refresh()  # read-your-writes: the change is in the views first
            await on_api(send(message))

        self.bridged += 1
        fut = asyncio.run_coroutine_threadsafe(
            self.main(dict(scope), receive_e, send_e), self.engine_loop
        )
        try:
            await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            fut.cancel()
            raise


def make_front_app(main: Any, views: ViewSnapshots, engine_loop: Any) -> _Front:
    """The API thread's app over ``main`` (a :func:`jaxmm.api.create_app` app on
    ``engine_loop``): the view routes are ``main``'s own, over the snapshot, with the same
    settings, rate limiter and token check; everything else is ``main`` on ``engine_loop``."""
    state = main.state
    # one rate limit per subject across both threads: the main app's limiter
    local = view_app(_SnapshotEngine(state.engine, views), state.settings, state.limiter)
    return _Front(HotViews(local), main, engine_loop, views)


def view_app(engine: Any, settings: Any, limiter: Any) -> Any:
    """A FastAPI app with only the main router's own view routes (:data:`VIEW_PATHS`, GET)
    over ``engine`` (a read-only facade: ``config``, ``quotes``, ``quotes_version``,
    ``positions``, ``positions_version``), with ``settings``' auth, error shape and CORS and
    ``limiter`` for the per-subject rate limit."""
    from fastapi import FastAPI

    from ._app import _shell
    from ._auth import verifier
    from ._routes import ApiContext, router

    local = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    for route in router.routes:
        if getattr(route, "path", None) in VIEW_PATHS and "GET" in getattr(route, "methods", ()):
            local.router.routes.append(route)
    local.state.settings = settings
    local.state.limiter = limiter
    local.state.auth_verify = verifier(settings)
    local.state.ctx = ApiContext(engine=engine)
    _shell(local, settings, warn=False)
    return local


class HotViews:
    """ASGI wrapper of a :func:`view_app` app that answers the common request of its two
    routes itself: ``GET /api/v1/mm/quotes`` or ``/mm/positions`` with no query, a valid
    bearer token with scope ``read``, no ``Origin`` header, auth enabled and the subject's rate
    limit not reached. The answer is the one the app would give, byte for byte: the route's
    body (cached per snapshot version, as the route caches it) and the headers of the app's own
    first answer to that route (the middleware's ``Vary: Origin`` included), with this body's
    length. It skips FastAPI's middleware stack, dependency resolution and response wrappers:
    ~0.4 ms of Python per request on the benchmark machine, most of what a view read cost
    (docs/api.md, "Performance"). Every other request, and any that does not pass every check,
    goes to the app unchanged, which answers it (and its errors) as before. The token check
    and the rate limit are the app's own (:func:`jaxmm.api._auth._authenticate`,
    ``app.state.limiter``); a request refused for its rate is counted once, by the app.

    Example:
        >>> from jaxmm.api import ApiSettings
        >>> from jaxmm.api._auth import TokenBucketLimiter
        >>> class Views:  # a read-only snapshot facade
        ...     config = None
        ...     def quotes(self, **_): return []
        ...     def quotes_version(self): return 1
        ...     def positions(self): return []
        ...     def positions_version(self): return 1
        >>> app = HotViews(view_app(Views(), ApiSettings(jwt_secret="k" * 32),
        ...                         TokenBucketLimiter(100.0, 10)))
        >>> app.state.ctx.engine.quotes_version()
        1
    """

    __slots__ = ("app", "_settings", "_limiter", "_ctx", "_bodies", "_headers")

    def __init__(self, app: Any):
        from ._routes import _positions_body, _quotes_body

        self.app = app
        self._settings = app.state.settings
        self._limiter = app.state.limiter
        self._ctx = app.state.ctx
        self._bodies: dict[str, Callable[[Any], bytes]] = {
            "/api/v1/mm/quotes": lambda ctx: _quotes_body(ctx, None, None),
            "/api/v1/mm/positions": _positions_body,
        }
        # path -> the app's response headers after content-length, from its first 200 answer
        self._headers: dict[str, list[tuple[bytes, bytes]]] = {}

    @property
    def state(self) -> Any:
        """The wrapped app's state."""
        return self.app.state

    def _common(self, scope: dict) -> tuple[str, bytes] | None:
        """``(subject, body)`` when this request is the common case above (rate limit not yet
        applied), else None."""
        body_of = self._bodies.get(scope["path"])
        if body_of is None or scope["method"] != "GET" or scope["query_string"]:
            return None
        settings = self._settings
        if settings.auth_disabled or scope.get(RATE_COUNTED):
            return None
        auth = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if auth is not None:
                    return None  # two: the app decides
                auth = value
            elif name == b"origin":
                return None  # CORS: the app's middleware answers
        if auth is None:
            return None
        scheme, _, token = auth.decode("latin-1").partition(" ")  # as HTTPBearer parses it
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            return _authenticate(settings, token, Scope.READ).subject, body_of(self._ctx)
        except Exception:  # 401 / 403, or a failing view: the app gives the error answer
            return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        common = self._common(scope) if scope["type"] == "http" else None
        if common is None:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = self._headers.get(path)
        if headers is None:  # the app answers the first one; its headers are kept
            await self.app(scope, receive, self._learning(path, send))
            return
        if self._limiter.acquire(common[0]) > 0:
            await self.app(scope, receive, send)  # nothing was taken: the app counts, 429
            return
        body = common[1]
        length = (b"content-length", str(len(body)).encode())
        await send({"type": "http.response.start", "status": 200, "headers": [length, *headers]})
        await send({"type": "http.response.body", "body": body})

    def prepare(self) -> None:
        """Serialise the current snapshot's bodies now (into the routes' own caches), so the
        first read after a new snapshot does not pay for it (~0.35 ms for 126 quotes): called
        where a new snapshot arrives, on the thread or loop that serves the reads."""
        for body_of in self._bodies.values():
            with contextlib.suppress(Exception):  # a failing view: its route answers the error
                body_of(self._ctx)

    def _learning(self, path: str, send: Any) -> Any:
        async def learn(message: dict) -> None:
            if message["type"] == "http.response.start" and message.get("status") == 200:
                raw = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
                if raw and raw[0][0].lower() == b"content-length":  # the shape answered here
                    self._headers[path] = raw[1:]
            await send(message)

        return learn


def uvicorn_server(app: Any) -> Any:
    """The uvicorn server this service runs ``app`` with: no lifespan, warnings only, a 2 s
    graceful shutdown, permessage-deflate as ``app.state.settings.ws_per_message_deflate`` says
    (off by default: event frames are small, per-connection zlib costs more than it saves), and
    uvicorn's own signal handling off — the caller owns SIGINT/SIGTERM (uvicorn's handler would
    re-raise SIGINT after its shutdown, before the engine is stopped and the store flushed).

    Example:
        >>> from fastapi import FastAPI
        >>> server = uvicorn_server(FastAPI())
        >>> server.config.lifespan, server.config.ws_per_message_deflate
        ('off', False)
    """
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[override]
            yield

    settings = getattr(app.state, "settings", None)
    cfg = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=2,
        ws_per_message_deflate=bool(getattr(settings, "ws_per_message_deflate", False)),
    )
    return _Server(cfg)


WS_PATH = b"/api/v1/mm/ws"
_PEEK_BYTES = 64


async def _first_bytes(conn: socket.socket, timeout_s: float) -> bytes:
    """The first bytes the client sent on ``conn``, left in the socket (``MSG_PEEK``): enough
    to read the request line's path; ``b""`` if the client closed or said nothing in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        ready = loop.create_future()
        loop.add_reader(conn.fileno(), lambda f=ready: f.done() or f.set_result(None))
        try:
            async with asyncio.timeout_at(deadline):
                await ready
        except TimeoutError:
            return b""
        finally:
            loop.remove_reader(conn.fileno())
        try:
            data = conn.recv(_PEEK_BYTES, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            return b""
        # a request line split across segments: wait for more unless it already decides
        if not data or len(data) >= len(WS_PATH) + 4 or b" " in data[4:]:
            return data
        await asyncio.sleep(0.001)


def _goes_to_engine(first: bytes) -> bool:
    """A WebSocket handshake for the event stream (``GET /api/v1/mm/ws...``)."""
    if not first.startswith(b"GET "):
        return False
    path = first[4:].split(b" ", 1)[0]
    return path == WS_PATH or path.startswith(WS_PATH + b"?")


async def serve_accepted(server: Any, conn: socket.socket) -> None:
    """Serve the accepted connection ``conn`` with the uvicorn ``server`` on the running loop,
    through the protocol uvicorn's ``Server.startup`` hands to ``create_server`` (for
    connections accepted elsewhere: the server runs with no listening socket of its own)."""
    loop = asyncio.get_running_loop()
    config = server.config

    def make() -> Any:
        return config.http_protocol_class(
            config=config,
            server_state=server.server_state,
            app_state=server.lifespan.state,
            _loop=loop,
        )

    await loop.connect_accepted_socket(make, conn)


async def accept_routed(
    sock: socket.socket,
    to_stream: Callable[[socket.socket], Awaitable[Any]],
    to_api: Callable[[socket.socket], Awaitable[Any]],
    first_bytes_timeout_s: float = 10.0,
    routed: dict[str, int] | None = None,
) -> None:
    """Accept every connection on ``sock`` (listening, non-blocking) until cancelled, and hand
    each to ``to_stream`` when its first bytes (read without taking them) are a WebSocket
    handshake for the event stream, else to ``to_api``; ``routed``, if given, counts them
    (``"stream"``, ``"api"``). A connection that says nothing within ``first_bytes_timeout_s``
    (s), or that its handler fails to take, is closed; the others and the loop go on."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task] = set()

    async def route(conn: socket.socket) -> None:
        try:
            first = await _first_bytes(conn, first_bytes_timeout_s)
            if not first:
                conn.close()
                return
            stream = _goes_to_engine(first)
            if routed is not None:
                routed["stream" if stream else "api"] += 1
            await (to_stream if stream else to_api)(conn)
        except asyncio.CancelledError:  # the server is stopping
            conn.close()
            raise
        except Exception:  # this connection only: the others and the server go on
            log.warning("a connection could not be handed to its server", exc_info=True)
            conn.close()

    try:
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:  # out of descriptors, a connection reset before accept
                log.warning("accept failed (%s); retrying in 0.1 s", exc)
                await asyncio.sleep(0.1)
                continue
            t = loop.create_task(route(conn))
            pending.add(t)
            t.add_done_callback(pending.discard)
    finally:
        for t in pending:
            t.cancel()


class ApiThread:
    """uvicorn serving ``main`` (a :func:`jaxmm.api.create_app` app) on the listening socket
    ``sock`` from a thread and event loop of its own, except the event stream (module
    docstring).

    The API thread accepts every connection and reads (without taking them) its first bytes: a
    WebSocket handshake for ``/api/v1/mm/ws`` is handed to a second uvicorn server running
    ``main`` on the engine's loop, where each event's frame is written straight to the
    subscribers inside ``publish`` (docs/events.md); every other connection is served on the
    API thread by the front app (:func:`make_front_app`). Call :meth:`start` and :meth:`stop`
    from the engine's loop. ``server_factory(app)`` makes each uvicorn server (default
    :func:`uvicorn_server`, which leaves signals to the caller). ``sock``: a listening,
    non-blocking TCP socket (:func:`jaxmm._live.bind_socket`), not closed here.

    Example:
        >>> import asyncio, httpx
        >>> from jaxmm._live import bind_socket
        >>> from jaxmm.api import ApiSettings, create_app
        >>> from jaxmm.engine import MarketMakerConfig, OptionsMarketMaker
        >>> async def demo():
        ...     mm = OptionsMarketMaker(MarketMakerConfig.demo())
        ...     await mm.start()
        ...     sock, _ = bind_socket("127.0.0.1", 0)
        ...     api = ApiThread(create_app(mm, settings=ApiSettings(auth_disabled=True)), sock)
        ...     await api.start()
        ...     url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1/mm/quotes"
        ...     async with httpx.AsyncClient() as client:
        ...         rows = (await client.get(url)).json()
        ...     await api.stop()
        ...     sock.close()
        ...     await mm.stop()
        ...     return rows == mm.quotes(), api.routed, api.front.bridged
        >>> asyncio.run(demo())
        (True, {'api': 1, 'stream': 0}, 0)
    """

    def __init__(
        self,
        main: Any,
        sock: socket.socket,
        server_factory: Callable[[Any], Any] | None = None,
        *,
        snapshot_interval_s: float = 0.25,
        first_bytes_timeout_s: float = 10.0,
    ) -> None:
        self.main = main
        self.sock = sock
        self.engine = main.state.engine
        self.views = ViewSnapshots(self.engine, interval_s=snapshot_interval_s)
        self.first_bytes_timeout_s = first_bytes_timeout_s
        self._server_factory = server_factory or uvicorn_server
        self.server: Any = None  # the API thread's
        self.stream_server: Any = None  # the engine loop's (the event stream)
        self.front: _Front | None = None
        self._prepared: ViewSnapshot | None = None  # the last snapshot handed to prepare
        self.loop: asyncio.AbstractEventLoop | None = None
        self.routed = {"api": 0, "stream": 0}
        self._engine_loop: asyncio.AbstractEventLoop | None = None
        self._stream_task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ API thread
    def _main(self) -> None:
        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            task = asyncio.create_task(self.server.serve(sockets=[]))
            while not self.server.started and not task.done():
                await asyncio.sleep(0.01)
            accept = asyncio.create_task(self._accept())
            self._ready.set()
            try:
                await task
            finally:
                accept.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await accept

        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported by start() / wait() / stop()
            self._error = exc
        finally:
            self._ready.set()

    async def _accept(self) -> None:
        await accept_routed(
            self.sock, self._to_engine, self._to_api, self.first_bytes_timeout_s, self.routed
        )

    async def _to_engine(self, conn: socket.socket) -> None:
        await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(
                serve_accepted(self.stream_server, conn), self._engine_loop
            )
        )

    async def _to_api(self, conn: socket.socket) -> None:
        await serve_accepted(self.server, conn)

    # ------------------------------------------------------------------ engine's loop
    def _on_refresh(self, snap: ViewSnapshot) -> None:
        """A snapshot was taken: a new one has its bodies serialised on the API thread at once
        (:meth:`HotViews.prepare`), not by the first read of it."""
        if snap is self._prepared or self.loop is None or self.front is None:
            return
        self._prepared = snap
        with contextlib.suppress(RuntimeError):  # the API loop has closed: nothing to prepare
            self.loop.call_soon_threadsafe(self.front.local.prepare)

    async def start(self, timeout_s: float = 30.0) -> None:
        """Snapshot the views, start the stream server (engine's loop) and the API thread;
        raises why a server did not start."""
        self._engine_loop = asyncio.get_running_loop()
        self.views.start()
        self.front = make_front_app(self.main, self.views, self._engine_loop)
        self.views.on_refresh = self._on_refresh
        self.stream_server = self._server_factory(self.main)
        self._stream_task = asyncio.create_task(self.stream_server.serve(sockets=[]))
        while not self.stream_server.started and not self._stream_task.done():
            await asyncio.sleep(0.01)
        if self._stream_task.done():
            self.views.stop()
            self._stream_task.result()  # raises why it did not start
            raise RuntimeError("server: the stream server did not start")
        self.server = self._server_factory(self.front)
        self._thread = threading.Thread(target=self._main, name="jaxmm-api", daemon=True)
        self._thread.start()
        ok = await asyncio.to_thread(self._ready.wait, timeout_s)
        if self._error is not None or not ok or not self.server.started:
            error = self._error
            self._error = None
            await self.stop()
            raise RuntimeError(f"server: did not start ({error or 'timed out'})") from error

    async def wait(self) -> None:
        """Until the API thread or the stream server ends (after :meth:`stop`, or on its own
        when it failed: then its error is raised)."""
        waiters: list[asyncio.Future] = []
        if self._thread is not None:
            waiters.append(asyncio.ensure_future(asyncio.to_thread(self._thread.join)))
        if self._stream_task is not None:
            waiters.append(self._stream_task)
        if waiters:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if self._error is not None:
            raise self._error
        if self._stream_task is not None and self._stream_task.done():
            self._stream_task.result()  # its error, if it failed

    async def stop(self) -> None:
        """Stop accepting, then both servers (their graceful timeout), then the snapshots;
        raises the API thread's error if it failed."""
        if self.server is not None:
            self.server.should_exit = True
        if self.stream_server is not None:
            self.stream_server.should_exit = True
        if self._thread is not None:
            # keep this loop running while the API thread drains: bridged requests need it
            await asyncio.to_thread(self._thread.join)
        if self._stream_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._stream_task
        self.views.stop()
        if self._error is not None:
            raise self._error
