"""``jaxmm serve``: the market maker on the simulated market, the API and the browser console.

One asyncio loop running :func:`jaxmm._live.run_live` (the wiring ``make demo`` runs too): an
:class:`jaxmm.engine.OptionsMarketMaker` fed by a :class:`jaxmm.feeds.SimulatedFeed` paced in
real time (``steps_per_second`` market steps per wall-clock second; a surface update every
5 steps) with :class:`jaxmm.engine.SimulatedTraders` trading against its quotes (one
:class:`jaxmm.feeds.TakerFlow` per underlying, decay = that underlying's ``fill_k``), and the
FastAPI app of :func:`jaxmm.api.create_app` under uvicorn, which also serves the console page
at ``/``.

Settings: ``--config FILE`` (``.toml``/``.json``) may hold an ``[api]`` table
(:class:`jaxmm.api.ApiSettings` fields, e.g. ``jwt_secret``) and an ``[mm]`` table (a
:class:`jaxmm.engine.MarketMakerConfig`; default :meth:`~jaxmm.engine.MarketMakerConfig.demo`).
``JAXMM_*`` environment variables override the file. With authentication on, the command mints
a ``read trade admin`` token for subject ``console`` (valid for the run plus an hour, at most a
day) and prints the console URL with ``?token=``; ``--no-auth`` is local mode (no tokens, a
loud warning). ``--db URL`` opens (and migrates) a store for fills, positions and configs.
``--seconds N`` stops by itself after N seconds; without it the server runs until Ctrl-C or
SIGTERM. Either way the stop is clean: quotes cancelled, the store's fill writer flushed (every
fill the engine counted is committed), the store closed, the final counts printed, exit
status 0. A second Ctrl-C abandons the stop (status 130).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from .._live import LiveSession, run_live
from ._common import CliError, read_config_file

__all__ = ["ServeHandle", "load_serve_config", "serve", "run_serve"]

STEPS_PER_SECOND = 10
SURFACE_EVERY = 5


def load_serve_config(path: str | None, *, no_auth: bool, env=None) -> tuple[Any, Any]:
    """``(MarketMakerConfig, ApiSettings)`` from ``--config`` (optional), the environment and
    ``--no-auth``. Raises :class:`CliError` naming what is missing or wrong."""
    try:
        from jaxmm.api import ApiSettings
    except ImportError as exc:
        raise CliError(f"serve needs the api extra (pip install 'jaxmm[api]'): {exc}") from None
    from pydantic import ValidationError

    from jaxmm.engine import MarketMakerConfig

    data = read_config_file(path) if path else {}
    mm_data = data.get("mm")
    try:
        cfg = (
            MarketMakerConfig.demo()
            if mm_data is None
            else MarketMakerConfig.model_validate(mm_data)
        )
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(x) for x in e["loc"])
        raise CliError(f"{path}: mm.{loc}: {e['msg']}") from None
    overrides = {"auth_disabled": True} if no_auth else {}
    settings_path = path if (path and "api" in data) else None
    try:
        settings = ApiSettings.load(settings_path, env=env, **overrides)
    except ValidationError as exc:
        e = exc.errors()[0]
        msg = e["msg"]
        if "jwt_secret" in msg:
            raise CliError(
                "no signing secret: set JAXMM_JWT_SECRET (>= 32 characters), put jwt_secret in "
                "the [api] table of --config, or use --no-auth for local mode"
            ) from None
        loc = ".".join(str(x) for x in e["loc"])
        raise CliError(f"api settings: {loc}: {msg}") from None
    return cfg, settings


class ServeHandle(LiveSession):
    """What a running :func:`serve` exposes (for tests and embedding): a
    :class:`jaxmm._live.LiveSession` — ``engine``, ``app``, ``server``, ``store``, ``traders``,
    ``url``, ``token`` (``None`` in local mode), ``loop``, ``started`` (a
    :class:`threading.Event`) — whose ``stop()`` (thread-safe) ends the run cleanly.

    Example:
        >>> h = ServeHandle()
        >>> h.started.is_set(), h.token is None
        (False, True)
    """


async def serve(
    config: Any,
    settings: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    seconds: float | None = None,
    seed: int = 0,
    db: str | None = None,
    steps_per_second: int = STEPS_PER_SECOND,
    handle: ServeHandle | None = None,
    announce: Any = print,
    layout: str = "process",
) -> ServeHandle:
    """Run engine + simulated market + API + console until ``seconds`` pass, Ctrl-C / SIGTERM
    or ``handle.stop()``; then stop everything (quotes cancelled, store flushed and closed) and
    announce the final counts. ``layout``: where the API is served (:func:`jaxmm._live.run_live`:
    ``"process"``, the default, ``"relay"``, ``"thread"`` or ``"loop"``). Returns the handle.

    Raises :class:`CliError` for a store that cannot be opened, ``ValueError`` naming a bad
    argument, ``OSError`` when ``host:port`` cannot be bound (nothing started then)."""
    h = handle if handle is not None else ServeHandle()
    store = None
    if db is not None:
        from jaxmm.store import Store

        try:
            store = await Store.open(db, migrate=True)
        except Exception as exc:  # a bad URL or an unreachable server: say which
            raise CliError(f"db: cannot open {db!r}: {exc}") from None

    def ready(s: LiveSession) -> None:
        base = s.base_url
        announce(f"jaxmm serve: console {s.url}")
        announce(f"jaxmm serve: API docs {base}docs; health {base}api/v1/health")
        if s.token:
            announce(f"jaxmm serve: token (read trade admin, subject 'console'): {s.token}")
        else:
            announce("jaxmm serve: WARNING local mode, authentication disabled")
        announce(
            "jaxmm serve: " + (f"stopping after {seconds:g} s" if seconds else "Ctrl-C to stop")
        )

    def on_signal(s: LiveSession, name: str) -> None:
        announce(
            f"jaxmm serve: {name}: stopping (quotes cancelled, store flushed); Ctrl-C again "
            "to abandon"
        )

    try:
        await run_live(
            config, seconds=seconds, seed=seed, store=store, settings=settings, host=host,
            port=port, on_ready=ready, on_signal=on_signal, steps_per_second=steps_per_second,
            surface_every=SURFACE_EVERY, token_subject="console", session=h,
            layout=layout,
        )  # fmt: skip
    finally:
        if store is not None:
            await store.close()
    s = h.engine.stats()
    stored = f"; {s.get('fills_acked', 0):.0f} stored" if store is not None else ""
    announce(
        f"jaxmm serve: stopped; ticks {s.get('ticks', 0):.0f}, orders sent "
        f"{s.get('orders_sent', 0):.0f}, fills {s.get('fills', 0):.0f} "
        f"(+{s.get('hedge_fills', 0):.0f} hedge){stored} ({h.stop_reason})"
    )
    return h


def serve_layout(args: argparse.Namespace) -> str:
    """The ``layout`` of ``jaxmm serve``'s flags: ``--api-thread`` -> ``"thread"``,
    ``--single-loop`` -> ``"loop"``, ``--api-relay`` -> ``"relay"``, else (``--api-process``
    or nothing) ``"process"``."""
    if args.single_loop:
        return "loop"
    if args.api_relay:
        return "relay"
    return "thread" if args.api_thread else "process"


def run_serve(args: argparse.Namespace) -> int:
    """``jaxmm serve``: see the module docstring. Returns 0 (finished or stopped by Ctrl-C /
    SIGTERM), 2 (bad settings, a port that cannot be bound) or 130 (abandoned)."""
    from ._common import enable_float64

    enable_float64()
    cfg, settings = load_serve_config(args.config, no_auth=args.no_auth)

    def announce(msg: str) -> None:
        print(msg, flush=True)

    try:
        asyncio.run(
            serve(
                cfg, settings, host=args.host, port=args.port, seconds=args.seconds,
                seed=args.seed, db=args.db, announce=announce,
                layout=serve_layout(args),
            )
        )  # fmt: skip
    except OSError as exc:  # the port is taken, the host is not ours
        print(f"jaxmm: error: serve: {exc}", file=sys.stderr)
        return 2
    except asyncio.CancelledError:  # a second Ctrl-C during the stop
        print("jaxmm: serve: abandoned (Ctrl-C)", file=sys.stderr)
        return 130
    return 0
