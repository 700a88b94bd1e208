"""The browser console in a real browser: Debian's headless Chromium driven by Playwright.

The test starts the real service in-process (``jaxmm._cli._serve.serve``: engine on the
simulated market, SimulatedTraders, the FastAPI app with authentication ON, uvicorn on a free
port, in a thread with its own event loop), opens the console URL with ``?token=`` as
``jaxmm serve`` prints it, waits for live quotes, sees them change through the WebSocket,
moves a control slider (PUT /mm/controls) and presses the kill switch; then the page must say
KILLED with an empty quote table AND the exchange's books must hold no order of the market
maker. Screenshots: tests/artifacts/console.png (before the kill) and console_killed.png.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (Debian package
``chromium``; ``make test`` installs it when missing).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from jaxmm._cli._serve import ServeHandle, serve
from jaxmm.api import ApiSettings
from jaxmm.book._book import _OWNER
from jaxmm.engine import MarketMakerConfig, UnderlyingConfig

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def _config() -> MarketMakerConfig:
    return MarketMakerConfig(
        underlyings=[
            UnderlyingConfig(
                symbol="XYZ", spot=100.0, vol=0.5, skew=-0.1,
                strikes=[85.0, 90.0, 95.0, 100.0, 105.0, 110.0, 115.0],
                expiries=[30 / 365, 90 / 365], hedge_band=5.0,
            )
        ],
        quote={"fill_k": 5.0},
        limits={"XYZ": {"delta": 100.0, "gamma": 20.0, "vega": 2000.0, "theta": 20000.0}},
    )  # fmt: skip


@pytest.fixture(scope="module")
def server():
    handle = ServeHandle()
    settings = ApiSettings(jwt_secret="console-test-secret-" + "z" * 32)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(
                serve(_config(), settings, port=0, seed=7, handle=handle, announce=lambda m: None)
            )
        except BaseException as exc:  # surfaced by the fixture below
            errors.append(exc)
            handle.started.set()

    t = threading.Thread(target=run, name="jaxmm-serve", daemon=True)
    t.start()
    assert handle.started.wait(120), "the server did not start"
    if errors:
        raise errors[0]
    yield handle
    handle.stop()
    t.join(60)
    assert not t.is_alive(), "the server did not stop"
    assert not errors, errors


def _in_loop(handle: ServeHandle, fn):
    """Run ``fn()`` inside the server's event loop (the engine is not thread-safe)."""

    async def call():
        return fn()

    return asyncio.run_coroutine_threadsafe(call(), handle.loop).result(10)


def _resting_mm_orders(handle: ServeHandle) -> int:
    def count() -> int:
        mm = handle.engine
        owner = mm.connector.owner
        n = 0
        for sym in mm.exchange.symbols():
            book = mm.exchange.book(sym)
            n += sum(1 for o in book._orders.values() if o[_OWNER] == owner)
        return n

    return _in_loop(handle, count)


def _wait(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_console_live_quotes_controls_and_kill_switch(server):
    assert Path(CHROMIUM).exists(), "Debian's chromium is required (make test installs it)"
    assert server.token and "?token=" in server.url
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page_errors: list[str] = []
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(server.url)
            # initial state from REST: a chain with live two-sided quotes
            page.wait_for_selector("#chain-body td.q-live", timeout=60_000)
            assert page.inner_text("#auth-mode") == "auth: token"
            _wait(lambda: page.inner_text("#ws-status").startswith("stream: live"), 20, "stream")
            first = page.inner_text("#chain-body")
            events0 = page.evaluate("window.jaxmmConsole.quoteEvents")
            # live updates from the WebSocket: quote events arrive and the table changes
            _wait(lambda: page.evaluate("window.jaxmmConsole.quoteEvents") > events0 + 5, 30,
                  "quote events on the stream")  # fmt: skip
            _wait(lambda: page.inner_text("#chain-body") != first, 30, "quotes to change")
            assert "QUOTING" in page.inner_text("#engine-status")
            # the smile, Greeks bars and PnL line have drawn something
            assert page.locator("#greek-bars .bar").count() >= 4
            _wait(lambda: page.evaluate("window.jaxmmConsole.pnl.length") >= 2, 10, "PnL points")
            # a control slider changes the engine's controls (PUT /mm/controls)
            page.eval_on_selector(
                "#spread_multiplier",
                "el => { el.value = '1.5'; el.dispatchEvent(new Event('change')); }",
            )
            _wait(lambda: "spread_multiplier set to 1.50" in page.inner_text("#ctl-msg"), 10,
                  "controls acknowledged")  # fmt: skip
            ctl = _in_loop(server, lambda: server.engine.config.controls.spread_multiplier)
            assert ctl == pytest.approx(1.5)
            assert _resting_mm_orders(server) > 0  # quoting for real before the kill
            page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)

            page.click("#kill")
            _wait(lambda: "KILLED" in page.inner_text("#engine-status"), 15, "KILLED status")
            _wait(lambda: page.locator("#chain-body td.q-live").count() == 0, 15,
                  "an empty quote table")  # fmt: skip
            assert page.locator("#chain-body tr").count() == 7  # the strikes are still shown
            time.sleep(1.0)  # more ticks arrive: quoting must stay stopped
            assert page.locator("#chain-body td.q-live").count() == 0
            assert _resting_mm_orders(server) == 0
            assert _in_loop(server, lambda: server.engine.killed)
            quotes = _in_loop(server, lambda: server.engine.quotes())
            assert quotes and all(q["bid_size"] == 0 and q["ask_size"] == 0 for q in quotes)
            assert "kill_switch" in page.inner_text("#alerts")
            page.screenshot(path=str(ARTIFACTS / "console_killed.png"), full_page=True)
            assert not page_errors, page_errors
        finally:
            browser.close()
