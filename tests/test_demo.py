"""``python -m jaxmm.demo`` (what ``make demo`` runs): settings, port fallback, report writer,
and the live demo in a subprocess stopped by Ctrl-C.

The full bounded run (finishes by itself, API checked while it runs, summary checked against
the SQLite file) is driven by ``tests/test_readme.py`` through the README's quick-start
``make demo``; the helpers it uses live here (:class:`DemoProcess`, :func:`check_run`).

References are independent of the code under test: fill counts and positions are recomputed
from the SQLite file with the standard library's ``sqlite3`` and an average-cost fold written
here (docs/risk.md's position rules: average cost, realised on the closed quantity).
"""

from __future__ import annotations

import doctest
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
from decimal import Decimal
from pathlib import Path

import pytest

import jaxmm.demo as demo

ROOT = Path(__file__).resolve().parents[1]
PNGS = ("pnl.png", "greeks.png", "fills.png", "latency.png")
FILLS_LINE = re.compile(
    r"fills: (\d+) option fills \+ (\d+) hedge fills \(\d+ hedge orders\) = (\d+); "
    r"(\d+) stored in the fill log"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh machine: no secret, no local mode, no settings file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXMM_")}
    env.update(extra)
    return env


class DemoProcess:
    """A demo subprocess whose combined output is read line by line in a thread."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 180.0) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    break
                self._cond.wait(min(left, 0.5))
        self.kill()
        pytest.fail(f"no line matching {pattern!r}; output:\n{self.text}")

    def wait(self, timeout: float = 180.0) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the demo did not finish within {timeout} s; output:\n{self.text}")
        self.close()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.close()

    def close(self) -> None:
        self._reader.join(10)
        if self.proc.stdout is not None and not self._reader.is_alive():
            self.proc.stdout.close()


def check_live_api(proc: DemoProcess) -> dict:
    """While the demo runs: the printed console URL and token work against the real API."""
    import httpx

    url = proc.wait_for(r"^console: (http://\S+)$").group(1)
    token = proc.wait_for(r"^token \(read trade admin, subject 'demo'\): (\S+)$").group(1)
    base, _, query = url.partition("?")
    assert query == f"token={token}"
    with httpx.Client(base_url=base, timeout=20.0) as c:
        h = c.get("/api/v1/health")
        assert h.status_code == 200, h.text
        assert h.json()["status"] == "ok" and h.json()["auth"] == "enabled"
        assert c.get("/api/v1/mm/quotes").status_code == 401  # the token is really needed
        assert c.get("/").status_code == 200  # the console page
        auth = {"Authorization": f"Bearer {token}"}
        quoted: list[dict] = []
        rows: list[dict] = []
        deadline = time.monotonic() + 30.0
        while not quoted and time.monotonic() < deadline and proc.proc.poll() is None:
            r = c.get("/api/v1/mm/quotes", headers=auth)
            assert r.status_code == 200, r.text
            rows = r.json()
            quoted = [q for q in rows if q["bid_size"] > 0 and q["ask_size"] > 0]
            time.sleep(0.1)
    # MarketMakerConfig.demo(): BTC 3 expiries x 21 strikes, SPX 2 x 21, calls and puts
    assert len(rows) == (3 + 2) * 21 * 2
    assert {"symbol", "bid", "ask", "bid_size", "ask_size", "theo", "iv", "status"} <= set(rows[0])
    assert quoted, "no two-sided quote seen while the demo ran"
    assert all(q["bid"] < q["ask"] for q in quoted)  # our own quotes never cross
    return {"url": url, "token": token}


def wait_for_fills(base: str, token: str, proc: DemoProcess, timeout: float = 60.0) -> None:
    """Poll ``/api/v1/mm/stats`` until the market maker has been filled at least once."""
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base, timeout=20.0) as c:
        while time.monotonic() < deadline and proc.proc.poll() is None:
            r = c.get("/api/v1/mm/stats", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
            if r.json()["fills"] > 0:
                return
            time.sleep(0.2)
    pytest.fail(f"no fill within {timeout} s; output:\n{proc.text}")


def _fold(fills: list[tuple[str, Decimal, Decimal]]) -> tuple[Decimal, Decimal, Decimal]:
    """Average-cost position from ``(side, price, qty)``: (quantity, avg price, realised)."""
    q = avg = realised = Decimal(0)
    for side, px, qty in fills:
        d = qty if side == "buy" else -qty
        if q == 0 or (q > 0) == (d > 0):
            avg = (avg * abs(q) + px * qty) / (abs(q) + qty)
            q += d
            continue
        closed = min(qty, abs(q))
        realised += closed * (px - avg) * (1 if q > 0 else -1)
        if qty > abs(q):
            avg = px
        q += d
    return q, avg, realised


def check_run(text: str, out: Path, *, interrupted: bool) -> dict:
    """After the demo exited: printed numbers == summary.json == the SQLite fill log; report
    and plots written."""
    m = FILLS_LINE.search(text)
    assert m, text
    options, hedges, total, stored = map(int, m.groups())
    assert options + hedges == total == stored
    assert options > 0, "the demo's market maker was never filled"
    assert ("(stopped by Ctrl-C)" in text) is interrupted
    assert re.search(r"refresh latency .*: p50 \d+ us, p95 \d+ us, p99 \d+ us over [1-9]", text)
    assert re.search(r"\(0 left resting\)", text)  # every quote cancelled at stop
    s = json.loads((out / "summary.json").read_text())
    assert s["interrupted"] is interrupted
    assert s["fills"]["total"] == total and s["fills"]["stored"] == total
    assert sum(s["fills"]["by_instrument"].values()) == total
    lat = s["refresh_latency_us"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    # the store, read with sqlite3 (independent of jaxmm.store)
    db = out / demo.DB_NAME
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT instrument, side, price, quantity, fee FROM fills ORDER BY id"
        ).fetchall()
    assert len(rows) == total
    by: dict[str, list] = {}
    for inst, side, px, qty, fee in rows:
        assert Decimal(fee) == 0  # the in-process venue charges no fees
        by.setdefault(inst, []).append((side, Decimal(px), Decimal(qty)))
    assert {k: len(v) for k, v in by.items()} == s["fills"]["by_instrument"]
    positions = {p["symbol"]: p for p in s["positions"]}
    assert set(positions) == set(by)
    for inst, fills in by.items():
        qty, avg, realised = _fold(fills)  # demo config: multiplier 1 everywhere
        p = positions[inst]
        assert p["quantity"] == float(qty), inst
        if qty != 0:
            assert p["avg_price"] == pytest.approx(float(avg), rel=1e-12, abs=1e-12), inst
        assert p["realised"] == pytest.approx(float(realised), rel=1e-9, abs=1e-9), inst
    # report and plots
    report = (out / "report.md").read_text()
    for name in PNGS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({name})" in report
    for inst in positions:
        assert f"| {inst} |" in report
    return s


# ------------------------------------------------------------------------ unit tests
def test_docstring_examples_of_the_demo_module():
    res = doctest.testmod(demo, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.attempted >= 8 and res.failed == 0


def test_options_flags_override_env_override_defaults(tmp_path):
    env = {"JAXMM_DEMO_SECONDS": "7", "JAXMM_DEMO_PORT": "9001", "JAXMM_DEMO_OUT": str(tmp_path),
           "JAXMM_DEMO_PRICING": "0", "JAXMM_DEMO_SEED": "3"}  # fmt: skip
    o = demo.parse_options(["--seconds", "2.5"], env=env)
    assert (o.seconds, o.port, o.out, o.pricing, o.seed, o.serve) == (
        2.5, 9001, tmp_path, False, 3, True
    )  # fmt: skip
    d = demo.parse_options([], env={})
    assert (d.seconds, d.port, d.host, d.out, d.db) == (
        60.0, 8000, "127.0.0.1", Path("demo-output"), None
    )  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--seconds", "0"], {}, r"seconds: must be in \(0, 86400\], got 0.0"),
        ([], {"JAXMM_DEMO_SECONDS": "nan"}, "seconds: must be a finite number"),
        ([], {"JAXMM_DEMO_SECONDS": "abc"}, "JAXMM_DEMO_SECONDS: must be float"),
        (["--port", "70000"], {}, r"port: must be an int in \[0, 65535\], got 70000"),
        ([], {"JAXMM_DEMO_PORT": "-1"}, r"port: must be an int in \[0, 65535\]"),
        ([], {"JAXMM_DEMO_PRICING": "maybe"}, "JAXMM_DEMO_PRICING: must be 1/0"),
        ([], {"JAXMM_DEMO_SEED": "-2"}, "seed: must be an int >= 0"),
    ],
)
def test_bad_settings_name_the_field(argv, env, message):
    with pytest.raises(ValueError, match=message):
        demo.parse_options(argv, env=env)


def test_bad_setting_exits_2_with_the_message(capsys, monkeypatch):
    monkeypatch.setenv("JAXMM_DEMO_PORT", "99999")
    assert demo.main([]) == 2
    assert "jaxmm.demo: error: port: must be an int in [0, 65535], got 99999" in (
        capsys.readouterr().err
    )


def test_taken_port_falls_back_to_a_free_one():
    holder, _ = demo.bind_socket("127.0.0.1", 0)
    try:
        taken = holder.getsockname()[1]
        sock, moved = demo.bind_socket("127.0.0.1", taken)
        try:
            assert moved and sock.getsockname()[1] not in (taken, 0)
            with socket.create_connection(("127.0.0.1", sock.getsockname()[1]), timeout=5):
                pass  # it is listening
        finally:
            sock.close()
        free = free_port()
        sock, moved = demo.bind_socket("127.0.0.1", free)
        assert not moved and sock.getsockname()[1] == free
        sock.close()
    finally:
        holder.close()


def test_without_the_api_extra_the_demo_says_so_and_goes_on(monkeypatch):
    monkeypatch.setitem(sys.modules, "jaxmm.api", None)  # import jaxmm.api -> ImportError
    got = demo._api_settings(env={})
    assert isinstance(got, str)
    assert got.startswith("the API/console modules are not importable")
    assert got.endswith("Continuing without a server.")


def test_api_settings_secret_from_the_environment_else_a_fresh_one_per_run():
    given = demo._api_settings(env={"JAXMM_JWT_SECRET": "s" * 40})
    assert given.jwt_secret.get_secret_value() == "s" * 40 and not given.auth_disabled
    a, b = demo._api_settings(env={}), demo._api_settings(env={})
    sa, sb = a.jwt_secret.get_secret_value(), b.jwt_secret.get_secret_value()
    assert sa != sb and len(sa) >= 32  # made for this run, never reused
    with pytest.raises(demo.DemoError, match="(?s)api settings: .*rate_limit_per_s"):
        demo._api_settings(env={"JAXMM_RATE_LIMIT_PER_S": "-1"})


def test_unusable_store_url_exits_2_naming_it(tmp_path, capsys):
    url = "postgresql+asyncpg://nobody@127.0.0.1:1/none"  # port 1: connection refused
    argv = ["--db", url, "--no-pricing", "--no-serve", "--out", str(tmp_path), "--seconds", "1"]
    assert demo.main(argv) == 2
    assert f"jaxmm.demo: error: db: cannot open {url}: " in capsys.readouterr().err


def test_bad_api_setting_exits_2_before_the_engine_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JAXMM_RATE_LIMIT_PER_S", "-1")
    argv = ["--no-pricing", "--out", str(tmp_path), "--seconds", "1", "--port", "0"]
    assert demo.main(argv) == 2
    io = capsys.readouterr()
    assert "jaxmm.demo: error: api settings: " in io.err and "rate_limit_per_s" in io.err
    assert "engine started" not in io.out


# ------------------------------------------------------------------------ the live demo
def test_ctrl_c_stops_cleanly_with_summary_and_report(tmp_path):
    """A 300 s run interrupted once the market maker runs: exit 0, quotes cancelled, every
    fill in the store, summary and report written for the part that ran."""
    out = tmp_path / "out"
    env = demo_env(JAXMM_DEMO_SECONDS="300", JAXMM_DEMO_PORT=str(free_port()),
                   JAXMM_DEMO_OUT=str(out), JAXMM_DEMO_PRICING="0")  # fmt: skip
    proc = DemoProcess([sys.executable, "-m", "jaxmm.demo"], env)
    try:
        proc.wait_for(r"^running for 300 s")
        url = proc.wait_for(r"^console: (http://\S+)$").group(1)
        base, _, token = url.partition("?token=")
        wait_for_fills(base, token, proc)
        proc.proc.send_signal(signal.SIGINT)
        rc = proc.wait(120)
    finally:
        proc.kill()
    assert rc == 0, proc.text
    assert "Ctrl-C: stopping" in proc.text
    s = check_run(proc.text, out, interrupted=True)
    assert s["seconds_run"] < 300
