"""Serve the API from its own thread, so an engine tick never delays a read or an event.

In one event loop, every request waits for whatever the engine is doing: a requote of a
126-option chain holds the loop for ~2-3 ms of Python, the simulated traders' step ~1.5 ms, a
surface update ~2.5 ms (measured, 2 cores), and a request that lands behind them waits that long.
:class:`ApiThread` runs uvicorn on a second event loop in a thread of its own:

- **Reads of the views** (``GET /api/v1/mm/quotes`` and ``/mm/positions``) are answered on the
  API thread from a :class:`ViewSnapshots` snapshot: the engine's own :meth:`quotes` and
  :meth:`positions` rows, taken on the engine's loop after every engine step that published an
  event (one refresh per loop iteration, however many events) and every ``interval_s`` as a
  safety net. A snapshot is always a whole step: never half a requote. The routes are the main
  app's own (same validation, auth, errors, bodies), over a read-only engine facade.
- **The event stream** (``/api/v1/mm/ws``) is served on the API thread from a
  :class:`~jaxmm.api.RelayBroadcaster` fed, in order, by the engine's broadcaster (a callback
  queues each stamped event; one thread-safe wake-up per burst relays them): frames carry the
  engine's sequence numbers, replay and ``from_seq`` work as in one loop (the relay keeps its
  own history, seeded with the engine's at start).
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
import collections
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._fanout import RelayBroadcaster

__all__ = ["ApiThread", "ViewSnapshots", "VIEW_PATHS", "make_front_app"]

log = logging.getLogger(__name__)

VIEW_PATHS = frozenset({"/api/v1/mm/quotes", "/api/v1/mm/positions"})
"""The GET routes the API thread answers from a :class:`ViewSnapshots` snapshot."""


@dataclass(frozen=True)
class ViewSnapshot:
    """One engine step's views: ``quotes_version`` (the engine's :meth:`quotes_version` when
    taken), ``quotes`` and ``positions`` (the rows of :meth:`quotes` / :meth:`positions`, never
    changed after the snapshot is published) and ``serial`` (one per snapshot)."""

    serial: int
    quotes_version: int
    quotes: tuple[dict, ...]
    positions: tuple[dict, ...]


class ViewSnapshots:
    """The engine's quote and position views, taken on the engine's loop and read from any
    thread (:attr:`current` is replaced whole, never changed in place).

    Args:
        engine: a :class:`jaxmm.engine.OptionsMarketMaker` (``quotes_version``, ``quotes``,
            ``positions``, ``events``).
        interval_s: the safety-net refresh period (s, finite > 0) for changes that publish no
            event.

    :meth:`start` (on the engine's loop) takes the first snapshot, follows the engine's events
    (each burst schedules one :meth:`refresh` after the current step) and starts the timer;
    :meth:`stop` undoes it. :meth:`refresh` may be called at any time on the engine's loop.

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

    def __init__(self, engine: Any, *, interval_s: float = 0.25) -> None:
        if not (isinstance(interval_s, int | float) and 0 < interval_s < math.inf):
            raise ValueError(f"interval_s: must be finite and > 0 (s), got {interval_s!r}")
        self.engine = engine
        self.interval_s = float(interval_s)
        self.current: ViewSnapshot | None = None
        self._pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.Task | None = None

    def refresh(self) -> ViewSnapshot:
        """Take a snapshot now (engine's loop): quotes rebuilt only when the engine's
        ``quotes_version`` moved, positions kept as the same object when equal."""
        self._pending = False
        e, old = self.engine, self.current
        version = e.quotes_version()
        if old is not None and old.quotes_version == version:
            quotes = old.quotes
        else:
            quotes = tuple(e.quotes())
        positions = tuple(e.positions())
        if old is not None and positions == old.positions:
            positions = old.positions
            if quotes is old.quotes:
                return old
        self.current = ViewSnapshot(
            (old.serial + 1) if old is not None else 1, version, quotes, positions
        )
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
        self.engine.events.add_callback(self._on_event)
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

    def quotes(
        self, underlying: str | None = None, expiry: float | None = None, symbol: str | None = None
    ) -> list[dict]:
        rows = self._snap().quotes
        if symbol is not None:
            return [dict(r) for r in rows if r["symbol"] == symbol]
        return [
            dict(r)
            for r in rows
            if (underlying is None or r["underlying"] == underlying)
            and (expiry is None or math.isclose(r["expiry"], expiry, rel_tol=1e-9))
        ]

    def positions(self) -> list[dict]:
        return [dict(p) for p in self._snap().positions]


class _EventRelay:
    """The engine's events into the API thread's :class:`RelayBroadcaster`, in order: the
    engine-side callback queues each event and wakes the API loop once per burst."""

    def __init__(self, engine: Any, bus: RelayBroadcaster) -> None:
        self.engine = engine
        self.bus = bus
        self._queue: collections.deque = collections.deque()
        self._scheduled = False
        self._api_loop: asyncio.AbstractEventLoop | None = None

    def _drain(self) -> None:  # API loop
        self._scheduled = False  # before draining: an event queued after this is re-scheduled
        q, relay = self._queue, self.bus.relay
        while q:
            relay(q.popleft())

    def _on_event(self, event: Any) -> None:  # engine loop
        self._queue.append(event)
        if not self._scheduled and self._api_loop is not None:
            self._scheduled = True
            self._api_loop.call_soon_threadsafe(self._drain)

    def start(self, api_loop: asyncio.AbstractEventLoop) -> None:
        """On the engine's loop: the engine's history so far, then every new event."""
        self._api_loop = api_loop
        self._queue.extend(self.engine.events.history())
        self.engine.events.add_callback(self._on_event)
        self._scheduled = True
        api_loop.call_soon_threadsafe(self._drain)

    def stop(self) -> None:
        self.engine.events.remove_callback(self._on_event)
        self._api_loop = None


@dataclass
class _Front:
    """The API thread's ASGI app: views and the stream here, the rest on the engine's loop."""

    local: Any  # FastAPI app: view routes (snapshot) + WebSocket (relay)
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
        if kind == "websocket" or (
            kind == "http" and scope["method"] in ("GET", "HEAD") and scope["path"] in VIEW_PATHS
        ):
            await self.local(scope, receive, send)
        elif kind == "http":
            await self._bridge(scope, receive, send)
        # lifespan: uvicorn runs with lifespan="off"

    async def _bridge(self, scope: dict, receive: Any, send: Any) -> None:
        """Run the main app for this request on the engine's loop; its ``receive`` and
        ``send`` come back to this (the API) loop, where the connection lives."""
        api_loop = asyncio.get_running_loop()
        changes = scope["method"] not in ("GET", "HEAD", "OPTIONS")
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


def make_front_app(main: Any, views: ViewSnapshots, engine_loop: Any) -> tuple[Any, Any]:
    """The API thread's app over ``main`` (a :func:`jaxmm.api.create_app` app on
    ``engine_loop``): returns ``(front, relay_bus)``. The view routes and the WebSocket
    route are ``main``'s own, with the same settings, rate limiter and token check."""
    from fastapi import FastAPI

    from ._app import _shell
    from ._routes import ApiContext, router
    from ._ws import router as ws_router

    state = main.state
    local = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    for route in router.routes:
        if getattr(route, "path", None) in VIEW_PATHS and "GET" in getattr(route, "methods", ()):
            local.router.routes.append(route)
    local.include_router(ws_router)
    bus = RelayBroadcaster()
    local.state.settings = state.settings
    local.state.limiter = state.limiter  # one rate limit per subject across both threads
    local.state.auth_verify = state.auth_verify
    local.state.ctx = ApiContext(engine=_SnapshotEngine(state.engine, views))
    local.state.events = bus
    _shell(local, state.settings, warn=False)
    return _Front(local, main, engine_loop, views), bus


class ApiThread:
    """uvicorn serving ``main`` (a :func:`jaxmm.api.create_app` app) from its own thread and
    event loop, on the listening socket ``sock`` (module docstring).

    Call :meth:`start` and :meth:`stop` from the engine's loop (the one ``main`` and the
    engine run on). ``server_factory(app)`` makes the uvicorn server (``jaxmm._live``'s, which
    leaves signals to the caller).
    """

    def __init__(
        self,
        main: Any,
        sock: Any,
        server_factory: Callable[[Any], Any],
        *,
        snapshot_interval_s: float = 0.25,
    ) -> None:
        self.main = main
        self.sock = sock
        self.engine = main.state.engine
        self.views = ViewSnapshots(self.engine, interval_s=snapshot_interval_s)
        self._server_factory = server_factory
        self.server: Any = None
        self.front: _Front | None = None
        self.bus: RelayBroadcaster | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._relay: _EventRelay | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _main(self, engine_loop: asyncio.AbstractEventLoop) -> None:
        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            # the relay first (on the engine's loop: its history and every later event, with
            # nothing published in between), so the first client already sees the history
            self._relay = _EventRelay(self.engine, self.bus)
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self._start_relay(self.loop), engine_loop)
            )
            task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
            while not self.server.started and not task.done():
                await asyncio.sleep(0.01)
            self._ready.set()
            await task

        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported by start() / stop()
            self._error = exc
        finally:
            self._ready.set()

    async def _start_relay(self, api_loop: asyncio.AbstractEventLoop) -> None:
        self._relay.start(api_loop)  # type: ignore[union-attr]

    async def start(self, timeout_s: float = 30.0) -> None:
        """Snapshot the views, start the event relay and the server thread; raises why the
        server did not start."""
        engine_loop = asyncio.get_running_loop()
        self.views.start()
        self.front, self.bus = make_front_app(self.main, self.views, engine_loop)
        self.server = self._server_factory(self.front)
        self._thread = threading.Thread(
            target=self._main, args=(engine_loop,), name="jaxmm-api", daemon=True
        )
        self._thread.start()
        ok = await asyncio.to_thread(self._ready.wait, timeout_s)
        if self._error is not None or not ok or not self.server.started:
            error = self._error
            self._error = None
            await self.stop()
            raise RuntimeError(f"server: did not start ({error or 'timed out'})") from error

    async def wait(self) -> None:
        """Until the server thread ends (after :meth:`stop`, or on its own when it failed:
        then its error is raised)."""
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._error is not None:
            raise self._error

    async def stop(self) -> None:
        """Stop the server (its graceful timeout), then the relay and the snapshots; raises
        the server thread's error if it failed."""
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            # keep this loop running while the server drains: bridged requests need it
            await asyncio.to_thread(self._thread.join)
        if self._relay is not None:
            self._relay.stop()
        self.views.stop()
        if self._error is not None:
            raise self._error
