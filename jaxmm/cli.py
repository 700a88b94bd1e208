"""The ``jaxmm`` command line: ``jaxmm <command> --help`` for each command.

Commands:

- ``price IN.csv OUT.csv`` — price a chain from CSV with Greeks and implied vols;
- ``calibrate QUOTES.csv --out DIR`` — fit an SVI (per expiry) or SSVI surface, write its
  parameters (JSON) and a smile plot (PNG);
- ``backtest --config FILE --out DIR`` — run the Monte-Carlo market-making simulator
  (:mod:`jaxmm.sim`), write a markdown report, metrics JSON and a plot;
- ``bench`` — the chain-refresh benchmark (:func:`jaxmm.engine.quote_chain` on 100 and 500
  options, p50/p99);
- ``token --subject NAME --scopes read,trade --ttl 3600`` — mint an API bearer token;
- ``db upgrade|downgrade|current [--db URL]`` — store schema migrations;
- ``serve`` — the market maker on the simulated market, the REST/WebSocket API and the
  browser console.

Bad input (a missing column, a bad cell, a bad option) prints ``jaxmm: error: ...`` naming the
file, row and column, and exits with status 2. The command line is an application: it runs
JAX in float64. Details: ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``argparse`` parser of every subcommand (each sets ``func``)."""
    p = argparse.ArgumentParser(
        prog="jaxmm",
        description="jaxmm: JAX options pricing and market making.",
        epilog="See docs/cli.md for file formats and examples.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("price", help="price a chain from a CSV file (Greeks, implied vols)")
    s.add_argument("input", metavar="IN.csv")
    s.add_argument("output", metavar="OUT.csv")
    s.set_defaults(func=_lazy("_price", "run_price"))

    s = sub.add_parser("calibrate", help="fit an SVI/SSVI surface to quotes; params + plot")
    s.add_argument("quotes", metavar="QUOTES.csv")
    s.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    s.add_argument("--model", choices=["svi", "ssvi", "both"], default="both")
    s.add_argument("--starts", type=int, default=16, help="multi-start count (default 16)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=_lazy("_calibrate", "run_calibrate"))

    s = sub.add_parser("backtest", help="run the Monte-Carlo MM simulator from a config")
    s.add_argument("--config", required=True, metavar="FILE", help=".json or .toml config")
    s.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=_lazy("_backtest", "run_backtest"))

    s = sub.add_parser("bench", help="chain-refresh benchmark (quote_chain, 100 and 500 options)")
    s.add_argument("--repeats", type=int, default=200, help="timed calls per case (>= 10)")
    s.add_argument("--json", metavar="FILE", default=None, help="also write results as JSON")
    s.set_defaults(func=_lazy("_bench", "run_bench"))

    s = sub.add_parser("token", help="mint an API bearer token (JWT HS256)")
    s.add_argument("--subject", required=True, help="who acts (recorded as config author)")
    s.add_argument("--scopes", default="read", help="comma separated: read,trade,admin")
    s.add_argument("--ttl", type=float, default=3600.0, help="lifetime in seconds (> 0)")
    s.add_argument("--config", default=None, metavar="FILE",
                   help="API settings file (.toml/.json) holding jwt_secret; else "
                        "JAXMM_JWT_SECRET")  # fmt: skip
    s.set_defaults(func=_lazy("_token", "run_token"))

    s = sub.add_parser("db", help="store schema migrations")
    s.add_argument("action", choices=["upgrade", "downgrade", "current"])
    s.add_argument("--db", default=None, metavar="URL",
                   help="database URL (default: the embedded SQLite file)")  # fmt: skip
    s.add_argument("--revision", default=None, help="target revision (head / base / an id)")
    s.set_defaults(func=_lazy("_db", "run_db"))

    s = sub.add_parser("serve", help="market maker on the simulated market + API + console")
    s.add_argument("--db", default=None, metavar="URL", help="store URL (default: no store)")
    s.add_argument("--config", default=None, metavar="FILE",
                   help="settings file (.toml/.json): [api] settings and/or an [mm] "
                        "market-maker config")  # fmt: skip
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--seconds", type=float, default=None, help="stop by itself after N seconds")
    s.add_argument("--seed", type=int, default=0, help="seed of the simulated market")
    s.add_argument("--no-auth", action="store_true",
                   help="local mode: no authentication (loud warning; localhost only)")  # fmt: skip
    layout = s.add_mutually_exclusive_group()
    layout.add_argument("--api-process", action="store_true",
                        help="the API from a process of its own (connections, the views); the "
                             "event stream's connections handed to the engine's process, "
                             "which writes their frames (the default)")  # fmt: skip
    layout.add_argument(
        "--api-relay",
        action="store_true",
        help="the API and the event stream from a process of its own, fed every event by the "
        "engine's process (which then only trades)",
    )
    layout.add_argument(
        "--api-thread",
        action="store_true",
        help="the API from a thread of its own in the engine's process (the event stream and "
        "changes on the engine's loop)",
    )
    layout.add_argument(
        "--single-loop",
        action="store_true",
        help="the whole API on the engine's event loop",
    )
    s.set_defaults(func=_lazy("_serve", "run_serve"))
    return p


def _lazy(module: str, name: str):
    """Import a subcommand's module only when it runs (``token`` needs no JAX compile)."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        mod = importlib.import_module(f"jaxmm._cli.{module}")
        return getattr(mod, name)(args)

    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input).

    Example:
        >>> main(["price", "/nonexistent/in.csv", "out.csv"])  # message on stderr
        2
    """
    from ._cli._common import CliError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (CliError, ValueError) as exc:
        print(f"jaxmm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxmm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
