"""One live run: the options market maker on the simulated market, with the API served.

The single wiring behind ``jaxmm serve`` (:mod:`jaxmm._cli._serve`) and ``make demo``
(:mod:`jaxmm.demo`). In the caller's asyncio loop (the engine's), :func:`run_live` runs

- the engine, :class:`jaxmm.engine.OptionsMarketMaker` ``(config, store=store)``;
- the market, :func:`jaxmm.engine.simulated_market` ``(config, dt, seed)`` with
  ``dt = 1 / (steps_per_second x 365 x 86400)`` years, so one simulated second is one
  wall-clock second, streamed by a :class:`jaxmm.feeds.SimulatedFeed` paced at
  ``steps_per_second`` steps per second (``pause = 1 / steps_per_second`` s), with a TRUE-smile
  surface update on each chain's own grid every ``surface_every`` steps;
- the counterparties, :class:`jaxmm.engine.SimulatedTraders` (seed ``seed + 1``), one step per
  market step (:meth:`~jaxmm.engine.SimulatedTraders.follow`, woken by the engine's requote
  of that step, with a poll every half market step as a fallback), with one
  :class:`jaxmm.feeds.TakerFlow` **per underlying**: intensity ``taker_intensity`` arrivals
  per second per side per option book at zero distance from fair (``x 365 x 86400`` per
  year) and decay ``k`` = that underlying's own ``fill_k`` quote parameter (the rule of
  :func:`jaxmm.engine.run_simulation`);
- when ``settings`` (:class:`jaxmm.api.ApiSettings`) are given, :func:`jaxmm.api.create_app`
  under uvicorn (REST API, WebSocket, console at ``/``) on a socket bound before the engine
  starts, served as ``layout`` says: by default (``"process"``) from a process of its own
  (:class:`jaxmm.api.ApiProcess`: connections accepted and the views served there, the event
  stream's connections handed to the engine's process, every other request forwarded to the
  engine's loop); ``"relay"``, the same with the event stream served in the API process from
  the events the engine ships it; ``"thread"``, from a thread and
  event loop of its own (:class:`jaxmm.api.ApiThread`; the interpreter's switch interval
  lowered to ``switch_interval_s`` meanwhile), with the event stream and every request but the
  quote and position views still run on the engine's loop; ``"loop"``, on the engine's loop —
  and a ``read trade admin`` token for ``token_subject`` valid for
  ``min(seconds + 3600, 86400)`` s (3600 s for an unbounded run) unless authentication is off.

Start: signal handlers, socket (bound first: a port that cannot be bound raises ``OSError``
before anything is built), engine start (JIT warm-up), server started, token,
``on_ready(session)``, then the market and traders. The run ends at ``seconds`` (wall clock;
``None`` = no deadline), on :meth:`LiveSession.stop` (thread-safe), on the first SIGINT or
SIGTERM, or when a task fails (its exception is raised after the stop). Stop, in this order:
the market (feed closed, traders stopped), the engine (:meth:`~jaxmm.engine.OptionsMarketMaker
.stop`: every quote cancelled, the fill writer flushed — every fill the engine counted is
committed to the store), the server (2 s graceful timeout), the socket, the signal handlers.
The store belongs to the caller: opened before :func:`run_live`, still open after it (to be
read back), closed by the caller.

Signals (main thread only; elsewhere use :meth:`LiveSession.stop`): the first SIGINT or SIGTERM
stops the run as above (``session.interrupted``, ``on_signal(session, name)``); a later SIGINT
(Ctrl-C again) cancels the task running :func:`run_live` (abandon: ``asyncio.CancelledError``
out of it; the stop is cut short), a later SIGTERM changes nothing. uvicorn's own signal
capture is switched off: it would re-raise SIGINT after its shutdown (a ``KeyboardInterrupt``
traceback, status 130, and no engine stop or store flush).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["API_LAYOUTS", "LiveSession", "bind_socket", "run_live", "SECONDS_PER_YEAR"]

SECONDS_PER_YEAR = 365 * 86_400  # ACT/365F
TOKEN_TTL_MAX_S = 86_400.0
API_SWITCH_INTERVAL_S = 0.0002
"""The thread switch interval while the API thread runs (s; CPython's default is 0.005)."""
API_LAYOUTS = ("process", "relay", "thread", "loop")
"""Where :func:`run_live` serves the API: a process of its own with the event stream in the
engine's (the default), a process of its own that relays the stream too, a thread of its own,
or the engine's event loop."""
_SIGNALS = ("SIGINT", "SIGTERM")


def bind_socket(host: str, port: int, *, fallback: bool = True) -> tuple[socket.socket, bool]:
    """A listening TCP socket on ``host:port``; when ``port`` is taken and ``fallback``, on a
    free port of ``host`` instead (else the ``OSError``). Returns ``(socket, fell_back)``. The
    socket is handed to uvicorn as is, so no other process can take the port between the check
    and the server start.

    Example:
        >>> a, moved = bind_socket("127.0.0.1", 0)
        >>> b, moved_b = bind_socket("127.0.0.1", a.getsockname()[1])
        >>> moved_b, b.getsockname()[1] != a.getsockname()[1]
        (True, True)
        >>> a.close(); b.close()
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family = infos[0][0] if infos else socket.AF_INET
    # proto = IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto
    # says TCP; with Nagle on, a response written in two parts waits ~40 ms for the client's
    # delayed ACK (every REST request of `jaxmm serve` took ~45 ms on loopback)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        fell_back = False
        try:
            sock.bind((host, port))
        except OSError:
            if not fallback:
                raise
            sock.bind((host, 0))
            fell_back = True
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, fell_back


class LiveSession:
    """A live run, filled in by :func:`run_live` as it starts (pass one in with ``session=``
    to reach it from another thread before the call returns).

    Attributes:
        config: the :class:`jaxmm.engine.MarketMakerConfig`.
        seconds: the planned wall-clock length (None = until stopped).
        engine, market, feed, traders: the engine, the :class:`jaxmm.feeds.SimulatedMarket`,
            its :class:`jaxmm.feeds.SimulatedFeed`, the :class:`jaxmm.engine.SimulatedTraders`
            (``traders.flow``: underlying -> :class:`jaxmm.feeds.TakerFlow`).
        app, server, store, settings: the FastAPI app and uvicorn server (None without
            ``settings``), the caller's store, the API settings.
        api: the :class:`jaxmm.api.ApiProcess` (layout ``"process"`` or ``"relay"``) or
            :class:`jaxmm.api.ApiThread` (``"thread"``) serving ``app``; else None.
        host, port, port_moved: where the server listens (``port_moved``: the asked port was
            taken and a free one is used).
        base_url, url, token: ``http://host:port/``, the console URL (``?token=`` when
            authentication is on) and the token (None in local mode or without a server).
        interrupted, stop_reason: stopped early (signal or :meth:`stop`), and why the run
            ended: ``"deadline"``, ``"SIGINT"``, ``"SIGTERM"``, ``"stop()"`` or
            ``"task ended"``.
        seconds_run: wall-clock seconds from the start of the market to the stop.
        started: a :class:`threading.Event` set once the session is ready (after
            ``on_ready``).
        loop: the event loop it runs in.

    Example:
        >>> s = LiveSession()
        >>> s.stop()            # before the run: it stops as soon as it is ready
        >>> s.interrupted, s.stop_reason
        (True, 'stop()')
    """

    def __init__(self) -> None:
        self.config: Any = None
        self.seconds: float | None = None
        self.engine: Any = None
        self.market: Any = None
        self.feed: Any = None
        self.traders: Any = None
        self.app: Any = None
        self.api: Any = None
        self.server: Any = None
        self.store: Any = None
        self.settings: Any = None
        self.host: str | None = None
        self.port: int | None = None
        self.port_moved = False
        self.base_url: str | None = None
        self.url: str | None = None
        self.token: str | None = None
        self.interrupted = False
        self.stop_reason: str | None = None
        self.seconds_run = 0.0
        self.started = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_early = False

    def _request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.interrupted = reason != "deadline"
        if self._stop is not None:
            self._stop.set()
        else:
            self._stop_early = True

    def stop(self) -> None:
        """Ask the run to stop (engine stopped, quotes cancelled, store flushed, server shut
        down); returns at once. Safe to call from any thread, before or during the run."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                loop.call_soon_threadsafe(self._request_stop, "stop()")
                return
        self._request_stop("stop()")


def _token_ttl(seconds: float | None) -> float:
    return min(TOKEN_TTL_MAX_S, (seconds or 0.0) + 3600.0)


def _check(
    config: Any,
    seconds: float | None,
    seed: int,
    port: int,
    steps_per_second: int,
    surface_every: int,
    taker_intensity: float,
    sample_every: float,
    switch_interval_s: float | None = None,
    layout: str = "process",
) -> None:
    from .engine import MarketMakerConfig

    if not isinstance(config, MarketMakerConfig):
        raise ValueError(f"config: expected a MarketMakerConfig, got {type(config).__name__}")
    if seconds is not None and not (
        isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0
    ):
        raise ValueError(f"seconds: must be None or finite and > 0, got {seconds!r}")
    if type(seed) is not int or seed < 0:
        raise ValueError(f"seed: must be an int >= 0, got {seed!r}")
    if type(port) is not int or not 0 <= port <= 65_535:
        raise ValueError(f"port: must be an int in [0, 65535], got {port!r}")
    if type(steps_per_second) is not int or steps_per_second < 1:
        raise ValueError(f"steps_per_second: must be an int >= 1, got {steps_per_second!r}")
    if type(surface_every) is not int or surface_every < 1:
        raise ValueError(f"surface_every: must be an int >= 1, got {surface_every!r}")
    if not (math.isfinite(taker_intensity) and taker_intensity >= 0):
        raise ValueError(f"taker_intensity: must be finite and >= 0, got {taker_intensity!r}")
    if not (math.isfinite(sample_every) and sample_every > 0):
        raise ValueError(f"sample_every: must be finite and > 0, got {sample_every!r}")
    if switch_interval_s is not None and not (
        isinstance(switch_interval_s, int | float) and 0 < switch_interval_s < math.inf
    ):
        raise ValueError(
            f"switch_interval_s: must be None or finite and > 0 (s), got {switch_interval_s!r}"
        )
    if layout not in API_LAYOUTS:
        raise ValueError(f"layout: must be one of {', '.join(API_LAYOUTS)}, got {layout!r}")


async def _settle(task: asyncio.Task) -> None:
    """Wait for a task that was told to end; its own cancellation or failure is not ours (a
    failure was raised before the stop began), but a cancellation of the waiting task (Ctrl-C
    again: abandon) goes through."""
    try:
        await task
    except asyncio.CancelledError:
        me = asyncio.current_task()
        if me is not None and me.cancelling():
            raise
    except Exception:  # report it; the stop goes on
        log.warning("task %r ended with an error during the stop", task.get_name(), exc_info=True)


async def run_live(
    config: Any,
    *,
    seconds: float | None,
    seed: int = 0,
    store: Any = None,
    settings: Any = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    port_fallback: bool = False,
    on_ready: Callable[[LiveSession], Any] | None = None,
    on_sample: Callable[[LiveSession, float], Any] | None = None,
    sample_every: float = 0.5,
    on_signal: Callable[[LiveSession, str], Any] | None = None,
    steps_per_second: int = 10,
    surface_every: int = 5,
    taker_intensity: float = 0.2,
    token_subject: str = "console",
    session: LiveSession | None = None,
    layout: str = "process",
    switch_interval_s: float | None = API_SWITCH_INTERVAL_S,
) -> LiveSession:
    """Run the market maker live on the simulated market (module docstring) until
    ``seconds`` pass, :meth:`LiveSession.stop`, or SIGINT/SIGTERM; stop everything; return the
    session (engine stopped: its views hold the run's results).

    Args:
        config: a :class:`jaxmm.engine.MarketMakerConfig`.
        seconds: wall-clock length (finite > 0), or None to run until stopped.
        seed: seeds the market (``seed``) and the traders (``seed + 1``); int >= 0.
        store: an open :class:`jaxmm.store.Store` for the engine (fills, snapshots, configs);
            not closed here.
        settings: :class:`jaxmm.api.ApiSettings` to serve the API and console; None: no server.
        host, port: where to serve (port 0 = a free one); ``port_fallback``: use a free port
            when ``port`` is taken (else the ``OSError`` is raised before the engine starts).
        on_ready: called once with the session when the engine and server run, before the
            market starts (print the URL here).
        on_sample: called with ``(session, seconds since the market started)`` at the start, then
            every ``sample_every`` seconds while the market runs.
        on_signal: called with ``(session, "SIGINT" | "SIGTERM")`` on the first signal.
        steps_per_second, surface_every, taker_intensity: the market's pace (steps per
            wall-clock second, int >= 1), steps between surface updates (int >= 1), and taker
            arrivals per second per side per option book at zero distance from fair (>= 0).
        token_subject: the subject of the minted token.
        session: a :class:`LiveSession` to fill in (default: a new one).
        layout: where the API is served (one of :data:`API_LAYOUTS`). ``"process"``
            (default): from a process of its own (:class:`jaxmm.api.ApiProcess`: connections
            accepted and the views served there from what the engine ships, the event
            stream's connections handed to the engine's process, where ``publish`` writes
            their frames, every other request forwarded to the engine's loop); ``"relay"``:
            the same, but the event stream served in the API process from every event the
            engine ships it (the engine's process then only trades); ``"thread"``: from its
            own thread and event loop
            (:class:`jaxmm.api.ApiThread`: the quote and position views answered there from
            whole-step snapshots; every other request and the event stream on the engine's
            loop); ``"loop"``: the server shares the engine's loop. Numbers for each:
            docs/api.md, "Performance".
        switch_interval_s: with layout ``"thread"``, the interpreter's thread switch interval
            (``sys.setswitchinterval``, s, finite > 0) while the server runs, restored after:
            the longest the API thread waits for the engine thread's Python; None leaves it.

    Raises ``ValueError`` naming the argument for a bad value (before anything starts).

    Example:
        >>> import asyncio
        >>> from jaxmm.engine import MarketMakerConfig, UnderlyingConfig
        >>> cfg = MarketMakerConfig(underlyings=[UnderlyingConfig(symbol="XYZ", spot=100.0,
        ...     strikes=[95.0, 100.0, 105.0], expiries=[30 / 365], hedge_band=5.0, vol=0.5)],
        ...     quote={"fill_k": 5.0})
        >>> s = asyncio.run(run_live(cfg, seconds=0.3, seed=0))
        >>> s.stop_reason, s.traders.flow["XYZ"].k, s.server is None
        ('deadline', 5.0, True)
    """
    _check(
        config, seconds, seed, port, steps_per_second, surface_every, taker_intensity,
        sample_every, switch_interval_s, layout,
    )  # fmt: skip
    from .engine import OptionsMarketMaker, SimulatedTraders, simulated_market
    from .feeds import SimulatedFeed, TakerFlow

    s = session if session is not None else LiveSession()
    s.config, s.seconds, s.store, s.settings = config, seconds, store, settings
    s.loop = loop = asyncio.get_running_loop()
    s._stop = stop = asyncio.Event()
    if s._stop_early:
        stop.set()
    main_task = asyncio.current_task()

    # --- signals first: a Ctrl-C during the JIT warm-up stops the run as soon as it starts
    signalled = False

    def on_sig(name: str) -> None:
        nonlocal signalled
        if not signalled:
            signalled = True
            s._request_stop(name)
            if on_signal is not None:
                on_signal(s, name)
        elif name == "SIGINT" and main_task is not None:
            main_task.cancel()  # Ctrl-C again: abandon

    installed = []
    for name in _SIGNALS:
        sig = getattr(signal, name)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_sig, name)
            installed.append(sig)

    sock = server = server_task = api = None
    old_switch = sys.getswitchinterval()
    tasks: list[asyncio.Task] = []
    follow_stop = asyncio.Event()
    t_start = time.monotonic()
    mm = None
    try:
        # --- the socket first: a port that cannot be bound fails before anything is built
        if settings is not None:
            sock, s.port_moved = bind_socket(host, port, fallback=port_fallback)
            s.host, s.port = host, sock.getsockname()[1]
        # --- the pieces
        dt = 1.0 / (steps_per_second * SECONDS_PER_YEAR)
        s.market = market = simulated_market(config, dt=dt, seed=seed)
        s.feed = feed = SimulatedFeed(
            market,
            n_steps=None,
            pause=1.0 / steps_per_second,
            surface_every=surface_every,
            strikes_by_underlying={u.symbol: u.strikes for u in config.underlyings},
            expiries_by_underlying={u.symbol: u.expiries for u in config.underlyings},
        )
        flow = {
            u.symbol: TakerFlow(
                intensity=taker_intensity * SECONDS_PER_YEAR,
                k=float(config.quote_params(u.symbol).fill_k),
            )
            for u in config.underlyings
        }
        s.engine = mm = OptionsMarketMaker(config, store=store)
        s.traders = traders = SimulatedTraders(mm.exchange, market, flow, seed + 1, config=config)
        if settings is not None:
            from .api import create_app, uvicorn_server

            s.app = create_app(mm, store=store, settings=settings)
            if layout == "loop":
                s.server = server = uvicorn_server(s.app)

        # --- engine, then server
        await mm.start()
        if s.app is not None and layout in ("process", "relay"):
            from .api import ApiProcess

            s.api = api = ApiProcess(s.app, sock, stream="api" if layout == "relay" else "engine")
            await api.start()
            s.server = api.internal_server
            server_task = asyncio.create_task(api.wait())
        elif s.app is not None and layout == "thread":
            from .api import ApiThread

            s.api = api = ApiThread(s.app, sock)
            if switch_interval_s is not None:
                sys.setswitchinterval(switch_interval_s)
            await api.start()
            s.server = api.server
            server_task = asyncio.create_task(api.wait())
        elif server is not None:
            server_task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started and not server_task.done():
                await asyncio.sleep(0.02)
            if server_task.done():
                server_task.result()  # raises why the server did not start
                raise RuntimeError(f"server: did not start on {host}:{s.port}")
        if s.server is not None:
            h = f"[{host}]" if ":" in host else host
            s.base_url = f"http://{h}:{s.port}/"
            if not settings.auth_disabled:
                from .api import mint_token

                s.token = mint_token(
                    token_subject, ["read", "trade", "admin"], _token_ttl(seconds),
                    settings.jwt_secret.get_secret_value(), issuer=settings.jwt_issuer,
                )  # fmt: skip
            s.url = f"{s.base_url}?token={s.token}" if s.token else s.base_url
        if on_ready is not None:
            on_ready(s)
        s.started.set()

        # --- the market, until the deadline, a stop request or a task's end
        t_start = time.monotonic()
        # the traders step once per market step, woken by the engine's requote (so they act
        # on the new step's quotes); the poll is only a fallback for steps without a requote
        follower = traders.follow(follow_stop, wake=mm.tick_event, poll=0.5 / steps_per_second)
        tasks = [asyncio.create_task(mm.run(feed)), asyncio.create_task(follower)]
        watched = {*tasks, *([server_task] if server_task is not None else [])}
        stop_waiter = asyncio.create_task(stop.wait())
        deadline = math.inf if seconds is None else t_start + seconds
        next_sample = t_start
        try:
            while True:
                now = time.monotonic()
                if on_sample is not None and now >= next_sample:
                    on_sample(s, now - t_start)
                    while next_sample <= now:
                        next_sample += sample_every
                if stop.is_set():
                    break
                if now >= deadline:
                    s._request_stop("deadline")
                    break
                if any(t.done() for t in watched):
                    s.stop_reason = s.stop_reason or "task ended"
                    break
                wake = min(deadline, next_sample if on_sample is not None else math.inf)
                await asyncio.wait(
                    {stop_waiter, *watched},
                    timeout=None if wake == math.inf else max(wake - now, 0.0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
        finally:
            stop_waiter.cancel()
        for t in watched:
            if t.done() and not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        # market first, then the engine (quotes cancelled, fill writer flushed), then the
        # server; the caller's store stays open
        try:
            s.seconds_run = time.monotonic() - t_start
            follow_stop.set()
            if s.feed is not None:
                await s.feed.close()
            for t in tasks:
                t.cancel()
            for t in tasks:
                await _settle(t)
            if mm is not None:
                await mm.stop()
        finally:
            if api is not None:
                try:
                    await api.stop()
                finally:
                    sys.setswitchinterval(old_switch)
                if server_task is not None:
                    await _settle(server_task)
            elif server is not None:
                server.should_exit = True
                if server_task is not None:
                    await _settle(server_task)
            if sock is not None:
                sock.close()
            for sig in installed:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)
    return s
