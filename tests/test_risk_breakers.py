"""Circuit-breaker state machines and alert de-duplication."""

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxmm.risk import (
    AlertManager,
    BreakerPanel,
    BreakerState,
    BreakerStateMachine,
    CallbackHandler,
    CollectingHandler,
    ConsecutiveLossBreaker,
    DailyLossBreaker,
    DrawdownBreaker,
    GreeksUtilisationBreaker,
    LogHandler,
    Severity,
    VolatilitySpikeBreaker,
)

A, T, C = BreakerState.ACTIVE, BreakerState.TRIPPED, BreakerState.COOLDOWN


def _path(b):
    return [(e.old, e.new) for e in b.events]


def test_full_cycle_with_halt_and_cooldown_timing():
    seen = []
    b = DrawdownBreaker(100.0, min_halt=60.0, cooldown=30.0, cooldown_size_factor=0.25)
    b.listeners.append(seen.append)
    b.update(0.0, 1000.0)
    b.update(1.0, 900.0)  # drawdown exactly 100: trips
    assert b.state is T and b.size_factor == 0.0 and not b.allows_trading
    b.update(30.0, 1000.0)  # condition clear but halt not elapsed
    assert b.state is T
    b.update(61.0, 950.0)  # 50 below peak: clear, halt elapsed -> cooldown
    assert b.state is C and b.size_factor == 0.25
    b.update(80.0, 899.0)  # breach during cooldown -> tripped again
    assert b.state is T
    b.update(141.0, 1000.0)
    b.update(170.0, 1000.0)  # 29 s into cooldown
    assert b.state is C
    b.update(171.0, 1000.0)
    assert b.state is A and b.size_factor == 1.0
    assert _path(b) == [(A, T), (T, C), (C, T), (T, C), (C, A)]
    assert seen == b.events


def test_manual_trip_is_latched_until_reset():
    b = DrawdownBreaker(100.0, min_halt=0.0, cooldown=0.0)
    b.trip(5.0, "operator")
    for t in (6.0, 100.0, 1e6):
        b.update(t, 1000.0)
        assert b.state is T
    b.reset(1e6 + 1)
    assert b.state is A and not b.latched
    assert _path(b) == [(A, T), (T, A)]
    assert b.events[0].reason == "operator"
    assert b.reset(1e6 + 2) is None  # already active: no event


def test_daily_loss_uses_net_pnl_gains_and_resets_at_configured_time():
    reset = 8 * 3600.0  # 08:00 UTC
    b = DailyLossBreaker(1000.0, reset_time=reset, min_halt=0.0, cooldown=0.0)
    day = 86400.0
    b.update(day + reset + 1, 0.0)  # baseline 0
    b.update(day + reset + 2, 2000.0)  # gains
    b.update(day + reset + 3, 1100.0)  # -900 from the high, +1100 on the day: fine
    assert b.state is A
    b.update(day + reset + 4, -999.0)
    assert b.state is A
    b.update(day + reset + 5, -1000.0)  # -1000 on the day: trips
    assert b.state is T
    b.update(2 * day + reset - 1, -1000.0)  # 07:59:59 next day: same trading day
    assert b.state is T
    b.update(2 * day + reset, -1000.0)  # 08:00: new day, baseline -1000, condition clear
    assert b.state is C and b.baseline == -1000.0
    b.update(2 * day + reset + 1, -1500.0)
    assert b.state is A  # cooldown 0 elapsed; -500 on the day does not trip
    with pytest.raises(ValueError, match="reset_time: must be < 86400"):
        DailyLossBreaker(1.0, reset_time=86400.0)
    with pytest.raises(ValueError, match="net_pnl: must be finite"):
        b.update(0.0, float("nan"))


def test_consecutive_losses_zero_is_neutral_and_gain_resets():
    b = ConsecutiveLossBreaker(3, min_halt=10.0, cooldown=5.0)
    for t, p in enumerate([-1.0, 0.0, -1.0, 2.0, -1.0, -1.0]):
        b.record(float(t), p)
    assert b.state is A and b.streak == 2
    b.record(6.0, -1.0)
    assert b.state is T and b.streak == 0
    b.tick(15.0)
    assert b.state is T
    b.tick(16.0)
    assert b.state is C
    b.tick(21.0)
    assert b.state is A


def test_volatility_spike_and_greeks_utilisation():
    b = VolatilitySpikeBreaker(
        short_window=2, long_window=10, ratio=2.0, min_halt=0.0, cooldown=0.0
    )
    prices = [100.0, 100.1] * 6
    for t, p in enumerate(prices):
        b.update(float(t), p)
    assert b.state is A  # constant vol
    b.update(20.0, 106.0)
    assert b.state is T
    g = GreeksUtilisationBreaker(threshold=0.9)
    g.update(0.0, {"greeks.delta:X": 0.5, "greeks.vega:X": 0.89})
    assert g.state is A
    g.update(1.0, {"greeks.delta:X": 0.5, "greeks.vega:X": 0.9})
    assert g.state is T and "greeks.vega:X" in g.events[-1].reason


def test_panel_takes_minimum_size():
    d = DrawdownBreaker(10.0, min_halt=0.0, cooldown=100.0, cooldown_size_factor=0.5)
    c = ConsecutiveLossBreaker(5)
    panel = BreakerPanel([d, c])
    assert panel.size_factor == 1.0
    d.update(0.0, 100.0)
    d.update(1.0, 80.0)
    d.update(2.0, 100.0)
    assert d.state is C and panel.size_factor == 0.5 and panel.allows_trading
    with pytest.raises(ValueError, match="names must be unique"):
        BreakerPanel([DrawdownBreaker(1.0), DrawdownBreaker(2.0)])


def test_bad_breaker_config():
    with pytest.raises(ValueError, match="min_halt: must be finite and >= 0"):
        DrawdownBreaker(1.0, min_halt=-1.0)
    with pytest.raises(ValueError, match="cooldown_size_factor: must be <= 1"):
        DrawdownBreaker(1.0, cooldown_size_factor=2.0)
    with pytest.raises(ValueError, match="max_losses: must be an integer >= 1"):
        ConsecutiveLossBreaker(0)


def test_alert_dedup_never_hides_a_higher_severity():
    sink = CollectingHandler()
    got = []
    am = AlertManager(window=60.0, handlers=[sink, CallbackHandler(got.append)])
    am.raise_alert("delta", Severity.WARNING, "w1", 0.0)
    assert am.raise_alert("delta", Severity.WARNING, "w2", 59.9) is None
    crit = am.raise_alert("delta", Severity.CRITICAL, "c1", 30.0)
    assert crit is not None
    assert am.raise_alert("delta", Severity.CRITICAL, "c2", 31.0) is None
    assert am.raise_alert("vega", Severity.WARNING, "other type", 31.0) is not None
    assert am.raise_alert("delta", Severity.WARNING, "w3", 60.0) is not None  # window passed
    assert [a.message for a in sink.alerts] == ["w1", "c1", "other type", "w3"]
    assert got == sink.alerts
    assert am.suppressed == {("delta", Severity.WARNING): 1, ("delta", Severity.CRITICAL): 1}
    am.acknowledge(crit.id)
    assert [a.message for a in am.unacknowledged(Severity.CRITICAL)] == []
    assert len(am.unacknowledged()) == 3
    with pytest.raises(ValueError, match="unknown alert 999"):
        am.acknowledge(999)


def test_log_handler_and_failing_handler(caplog):
    def broken(alert):
        raise RuntimeError("boom")

    sink = CollectingHandler()
    am = AlertManager(window=0.0, handlers=[broken, LogHandler(), sink])
    with caplog.at_level(logging.INFO, logger="jaxmm.risk.alerts"):
        am.raise_alert("pnl", Severity.CRITICAL, "loss", 0.0)
        am.raise_alert("pnl", Severity.CRITICAL, "loss again", 0.0)  # window 0: no dedup
    assert len(sink.alerts) == 2
    assert any("CRITICAL" in r.getMessage() and "loss" in r.getMessage() for r in caplog.records)
    assert any(r.exc_info for r in caplog.records)


_ALLOWED = {(A, T), (T, C), (C, T), (C, A), (T, A)}  # (T, A) and (C, A) also by manual reset

ops_st = st.lists(
    st.tuples(
        st.floats(0.0, 50.0),
        st.sampled_from(["clear", "breach", "trip", "reset"]),
    ),
    min_size=1,
    max_size=60,
)


@given(ops_st, st.floats(0.0, 40.0), st.floats(0.0, 40.0))
def test_state_machine_only_takes_documented_transitions(ops, halt, cool):
    sm = BreakerStateMachine("p", min_halt=halt, cooldown=cool)
    now = 0.0
    tripped_at = None
    for dt, op in ops:
        now += dt
        before = sm.state
        if op == "trip":
            ev = sm.trip(now)
        elif op == "reset":
            ev = sm.reset(now)
        else:
            ev = sm.step(now, op == "breach")
        if ev is not None:
            assert (ev.old, ev.new) == (before, sm.state)
            assert (ev.old, ev.new) in _ALLOWED
            if ev.new is A and op != "reset":
                assert ev.old is C  # automatic recovery only from cooldown
            if ev.new is C:
                assert op == "clear" and now >= tripped_at + halt and not sm.latched
            if ev.new is T:
                tripped_at = now
        else:
            assert sm.state is before
        if op == "breach":
            assert sm.state is T  # a breach always leaves the breaker tripped
        if sm.latched:
            assert sm.state is T
    assert [e.ts for e in sm.events] == sorted(e.ts for e in sm.events)
