"""``jaxmm serve`` (a real server in a subprocess, stopped by Ctrl-C; and in process, stopped
by ``seconds``) and ``jaxmm bench``.

Split from tests/test_cli.py so ``pytest --dist loadfile`` runs the slow halves in parallel.
References: PyJWT decodes the printed token; the standard library's ``sqlite3`` reads the
store's fill log; the taker decays are the numbers written in the test's config.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import jwt
import pytest

from jaxmm._cli._serve import serve
from jaxmm.cli import main

ROOT = Path(__file__).resolve().parents[1]
SECRET = "test-secret-" + "x" * 32


# ---------------------------------------------------------------------------- bench


def test_bench_prints_percentiles(tmp_path, capsys):
    assert main(["bench", "--repeats", "10", "--json", str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "chain_100" in out and "chain_500" in out and "p99 us" in out
    res = json.loads((tmp_path / "b.json").read_text())
    assert res["chain_100"]["options"] == 100 and res["chain_500"]["options"] == 500
    for case in ("chain_100", "chain_500"):
        assert 0 < res[case]["p50_us"] <= res[case]["p99_us"]
    assert main(["bench", "--repeats", "3"]) == 2


# ---------------------------------------------------------------------------- serve

SMALL_MM = """
[mm]
quote = { fill_k = 5.0 }
[[mm.underlyings]]
symbol = "XYZ"
spot = 100.0
vol = 0.5
strikes = [90.0, 95.0, 100.0, 105.0, 110.0]
expiries = [0.0821917808219178, 0.2465753424657534]
hedge_band = 5.0
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lines:
    """A subprocess's stdout read line by line in a thread (stderr goes to a file)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines, self._cond = proc, [], threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 180.0) -> re.Match:
        rx, deadline = re.compile(pattern), time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if m := rx.search(line):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.lines))
                self._cond.wait(min(left, 0.5))

    def text(self) -> str:
        """Everything, once the process has exited (closes the pipe)."""
        self._thread.join(30)
        if not self._thread.is_alive():
            self.proc.stdout.close()
        return "\n".join(self.lines)


@pytest.mark.parametrize("layout", [[], ["--api-thread"], ["--api-relay"]],
                         ids=["api-process", "api-thread", "api-relay"])  # fmt: skip
def test_serve_with_auth_and_store_stopped_by_sigint_flushes_every_fill(tmp_path, layout):
    """Ctrl-C (SIGINT) on a running ``jaxmm serve --db``: exit 0, no traceback, and the SQLite
    file (read with sqlite3) holds every fill the engine counted and acknowledged; with the
    API from a process of its own (the default, and with the stream relayed there too) and on
    a thread of its own."""
    (tmp_path / "serve.toml").write_text(SMALL_MM)
    port = _free_port()
    env = {**os.environ, "JAXMM_JWT_SECRET": SECRET}
    env.pop("JAXMM_AUTH_DISABLED", None)
    db_file = tmp_path / "serve.db"
    with (tmp_path / "stderr.txt").open("w") as stderr:  # the child keeps its own copy
        proc = subprocess.Popen(
            [sys.executable, "-m", "jaxmm.cli", "serve", "--config", str(tmp_path / "serve.toml"),
             "--port", str(port), "--db", f"sqlite+aiosqlite:///{db_file}", *layout],
            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT, env=env,
        )  # fmt: skip
    out = Lines(proc)
    base = f"http://127.0.0.1:{port}"
    try:
        token = out.wait_for(r"console http://\S+\?token=(\S+)$").group(1)
        out.wait_for(r"Ctrl-C to stop$")
        health = httpx.get(f"{base}/api/v1/health", timeout=10).json()
        assert health["status"] == "ok" and health["auth"] == "enabled"
        assert httpx.get(f"{base}/api/v1/mm/quotes", timeout=10).status_code == 401
        page = httpx.get(f"{base}/", timeout=10)
        assert page.status_code == 200 and "jaxmm console" in page.text
        assert httpx.get(f"{base}/static/console.js", timeout=10).status_code == 200
        auth = {"Authorization": f"Bearer {token}"}
        deadline, fills = time.monotonic() + 90, 0
        while fills == 0 and time.monotonic() < deadline and proc.poll() is None:
            r = httpx.get(f"{base}/api/v1/mm/stats", headers=auth, timeout=10)
            assert r.status_code == 200, r.text
            fills = r.json()["fills"]
            time.sleep(0.2)
        assert fills > 0, "the market maker was never filled"
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        text = out.text()
    err = (tmp_path / "stderr.txt").read_text()
    assert rc == 0, text + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "SIGINT: stopping" in text
    m = re.search(r"stopped; ticks \d+, orders sent \d+, fills (\d+) \(\+(\d+) hedge\); (\d+) "
                  r"stored \(SIGINT\)$", text, re.M)  # fmt: skip
    assert m, text
    options, hedges, acked = map(int, m.groups())
    assert options >= fills > 0
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="jaxmm")
    assert set(claims["scope"].split()) == {"read", "trade", "admin"} and claims["sub"] == "console"
    with sqlite3.connect(db_file) as con:
        rows = con.execute("SELECT instrument FROM fills").fetchall()
    assert len(rows) == options + hedges == acked  # every counted fill is in the file
    assert sum(1 for (inst,) in rows if inst != "XYZ") == options  # option fills vs hedges


def test_serve_in_process_stops_by_itself_with_per_underlying_takers(tmp_path):
    """``serve(seconds=...)``: stops by itself, store flushed and closed; each underlying's
    takers decay with its own ``fill_k`` (5.0 and 0.8 here, the global is 2.0)."""
    from jaxmm.api import ApiSettings
    from jaxmm.engine import MarketMakerConfig, UnderlyingConfig

    cfg = MarketMakerConfig(
        underlyings=[
            UnderlyingConfig(symbol="XYZ", spot=100.0, vol=0.5, strikes=[95.0, 100.0, 105.0],
                             expiries=[30 / 365], hedge_band=5.0, quote={"fill_k": 5.0}),
            UnderlyingConfig(symbol="ABC", spot=50.0, vol=0.3, strikes=[45.0, 50.0, 55.0],
                             expiries=[30 / 365], hedge_band=5.0, quote={"fill_k": 0.8}),
        ],
        quote={"fill_k": 2.0},
    )  # fmt: skip
    said: list[str] = []
    db_file = tmp_path / "s.db"
    h = asyncio.run(
        serve(cfg, ApiSettings(auth_disabled=True), port=0, seconds=1.5,
              db=f"sqlite+aiosqlite:///{db_file}", announce=said.append, layout="loop")
    )  # fmt: skip
    assert h.api is None and h.server is not None  # --single-loop: no API thread
    assert {u: f.k for u, f in h.traders.flow.items()} == {"XYZ": 5.0, "ABC": 0.8}
    assert h.stop_reason == "deadline" and h.token is None
    assert any("WARNING local mode" in s for s in said)
    assert said[-1].startswith("jaxmm serve: stopped; ticks") and said[-1].endswith("(deadline)")
    st = h.engine.stats()
    with sqlite3.connect(db_file) as con:
        n = con.execute("SELECT count(*) FROM fills").fetchone()[0]
    assert n == st["fills"] + st["hedge_fills"] == st["fills_acked"]
    with pytest.raises(ValueError, match="seconds: must be None or finite and > 0"):
        asyncio.run(serve(cfg, ApiSettings(auth_disabled=True), port=0, seconds=-1.0))


def test_serve_refuses_without_secret(monkeypatch, capsys):
    monkeypatch.delenv("JAXMM_JWT_SECRET", raising=False)
    monkeypatch.delenv("JAXMM_API_SETTINGS", raising=False)
    monkeypatch.delenv("JAXMM_AUTH_DISABLED", raising=False)
    assert main(["serve", "--seconds", "1"]) == 2
    assert "--no-auth" in capsys.readouterr().err
