"""End to end on the simulated market, without the order book (the engine loop over
jaxmm.book / jaxmm.execution is not built yet): feed -> chain quotes -> taker fills ->
post-trade checks -> portfolio -> Greeks re-mark -> hedges -> events."""

import jax.numpy as jnp
import numpy as np

from jaxmm.engine import GreeksRiskManager, HedgeConfig, OptionChain, QuoteParams, quote_chain
from jaxmm.events import EventBroadcaster
from jaxmm.feeds import SimulatedMarket, SmileModel, TakerFlow, UnderlyingModel
from jaxmm.portfolio import Fill, Instrument, Order, Side
from jaxmm.risk import Action, GreekLimits, RiskLimits

STRIKES = np.linspace(80.0, 120.0, 9)
EXPIRY = 0.1
LIMITS = RiskLimits(greeks=GreekLimits(delta=400.0, gamma=60.0, vega=3000.0, theta=1e5))


def test_simulated_session_keeps_limits_and_emits_gap_free_events():
    bus = EventBroadcaster()
    ids = [f"{k:g}{c}" for k in STRIKES for c in "CP"]
    insts = [Instrument.spot("X", lot_size=10)] + [
        Instrument.option(f"{k:g}{c}", "X", strike=k, expiry=EXPIRY, is_call=c == "C",
                          multiplier=10)
        for k in STRIKES for c in "CP"
    ]  # fmt: skip
    rm = GreeksRiskManager(insts, LIMITS, {"X": HedgeConfig("X", band=100.0)}, events=bus)
    mkt = SimulatedMarket(
        {"X": UnderlyingModel(100.0, 0.4)}, dt=1.0 / (365 * 24 * 60), seed=42,
        smiles={"X": SmileModel(0.4, -0.15, level_vol=0.5, skew_vol=0.2)},
    )  # fmt: skip
    flow = TakerFlow(intensity=365 * 24 * 60 * 0.3, k=8.0)  # ~0.3 fills per minute at fair
    chain = OptionChain.grid(jnp.asarray(STRIKES), jnp.asarray([EXPIRY]), multiplier=10.0)
    params = QuoteParams(risk_aversion=2e-4, fill_k=8.0, gamma_widening=0.5, base_size=5.0)
    limits = rm.quote_limits()
    fills = hedges = 0
    for step in range(60):
        spot = mkt.step()[0].price
        true_vol = mkt.implied_vol("X", chain.strike, chain.expiry)
        pos = rm.positions(ids).reshape(chain.strike.shape)
        chain = OptionChain(chain.strike, chain.expiry, chain.is_call, 10.0, jnp.asarray(pos), True)
        # re-mark first (Greeks at the new spot / smile), then quote against the fresh state
        q0 = quote_chain(params, limits, rm.chain_market("X", spot), chain, jnp.asarray(true_vol))
        unit = {i: tuple(float(np.asarray(getattr(q0, g)).reshape(-1)[n])
                         for g in ("delta", "gamma", "vega", "theta"))
                for n, i in enumerate(ids)}  # fmt: skip
        rm.update_market({"X": spot}, unit, now=float(step))
        q = quote_chain(params, limits, rm.chain_market("X", spot), chain, jnp.asarray(true_vol))
        bid, ask = np.asarray(q.bid).reshape(-1), np.asarray(q.ask).reshape(-1)
        bs, az = np.asarray(q.bid_size).reshape(-1), np.asarray(q.ask_size).reshape(-1)
        assert (ask > bid).all() and (bid >= 0).all()
        # fair value for the takers: the option on the true smile (we quote off it too)
        fair = np.asarray(q.theo).reshape(-1)
        lifted, hit = flow.take(bid, ask, fair, mkt.dt, mkt.rng)
        for n, iid in enumerate(ids):
            for took, side, size, px in ((lifted[n], Side.SELL, az[n], ask[n]),
                                         (hit[n], Side.BUY, bs[n], bid[n])):  # fmt: skip
                if not took or size <= 0:
                    continue
                dec = rm.check_order(Order(iid, side, int(size)))
                assert dec.action is Action.ALLOW  # the quoted size always passes
                assert rm.on_fill(Fill(iid, side, dec.qty, px), now=float(step)) == {}
                fills += 1
        for h, dec in rm.hedges():
            if dec.qty:
                rm.on_fill(Fill(h.instrument, h.side, dec.qty, spot), now=float(step))
                hedges += 1
        assert abs(rm.greeks("X")["delta"]) <= 400.0
    assert fills > 5
    seqs = [e.seq for e in bus.history()]
    assert seqs == list(range(1, len(seqs) + 1))
    types = {e.type for e in bus.history()}
    assert {"greeks_updated", "order_filled"} <= types
    assert (hedges > 0) == ("hedge_sent" in types)
    assert sum(abs(p.qty) for p in rm.portfolio.positions.values()) > 0
