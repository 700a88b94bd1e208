"""QuantLib peers: AnalyticEuropeanEngine (reused option objects), implied vol, American
binomial (CRR) and finite-difference engines.

Options are built once on quote handles; a timed call moves the spot quote (so QuantLib really
recomputes) and reads NPV and the Greeks. Expiries must be whole days: QuantLib works on dates
with ACT/365F, so T = days / 365 exactly as jaxmm gets it.
"""

from __future__ import annotations

import numpy as np
import QuantLib as ql

__all__ = ["EuropeanBook", "implied_vols", "american_prices", "VERSION"]

VERSION = ql.__version__
_TODAY = ql.Date(15, 1, 2026)
_DC = ql.Actual365Fixed()


def _setup():
    ql.Settings.instance().evaluationDate = _TODAY


class EuropeanBook:
    """A list of European options sharing one spot quote; rate/dividend/vol per option."""

    def __init__(self, s, k, days, r, q, v, is_call):
        _setup()
        self.spot = ql.SimpleQuote(float(s[0]))
        spot_h = ql.QuoteHandle(self.spot)
        self.options = []
        for ki, di, ri, qi, vi, ci in zip(k, days, r, q, v, is_call, strict=True):
            process = ql.BlackScholesMertonProcess(
                spot_h,
                ql.YieldTermStructureHandle(ql.FlatForward(_TODAY, float(qi), _DC)),
                ql.YieldTermStructureHandle(ql.FlatForward(_TODAY, float(ri), _DC)),
                ql.BlackVolTermStructureHandle(
                    ql.BlackConstantVol(_TODAY, ql.NullCalendar(), float(vi), _DC)
                ),
            )
            payoff = ql.PlainVanillaPayoff(ql.Option.Call if ci else ql.Option.Put, float(ki))
            opt = ql.EuropeanOption(payoff, ql.EuropeanExercise(_TODAY + int(di)))
            opt.setPricingEngine(ql.AnalyticEuropeanEngine(process))
            self.options.append(opt)

    def core_greeks(self, spot: float) -> np.ndarray:
        """(6, n): NPV, delta, gamma, vega, theta, rho after moving the spot quote."""
        self.spot.setValue(spot)
        out = np.empty((6, len(self.options)))
        for i, o in enumerate(self.options):
            out[:, i] = (o.NPV(), o.delta(), o.gamma(), o.vega(), o.theta(), o.rho())
        return out


def implied_vols(prices, s, k, days, r, q, is_call) -> np.ndarray:
    """QuantLib ``impliedVolatility`` per option (accuracy 1e-12, up to 200 evaluations)."""
    _setup()
    out = np.empty(len(prices))
    spot = ql.QuoteHandle(ql.SimpleQuote(100.0))
    for i in range(len(prices)):
        spot = ql.QuoteHandle(ql.SimpleQuote(float(s[i])))
        vol = ql.SimpleQuote(0.3)
        process = ql.BlackScholesMertonProcess(
            spot,
            ql.YieldTermStructureHandle(ql.FlatForward(_TODAY, float(q[i]), _DC)),
            ql.YieldTermStructureHandle(ql.FlatForward(_TODAY, float(r[i]), _DC)),
            ql.BlackVolTermStructureHandle(
                ql.BlackConstantVol(_TODAY, ql.NullCalendar(), ql.QuoteHandle(vol), _DC)
            ),
        )
        payoff = ql.PlainVanillaPayoff(ql.Option.Call if is_call[i] else ql.Option.Put, k[i])
        opt = ql.EuropeanOption(payoff, ql.EuropeanExercise(_TODAY + int(days[i])))
        opt.setPricingEngine(ql.AnalyticEuropeanEngine(process))
        try:
            out[i] = opt.impliedVolatility(float(prices[i]), process, 1e-12, 200, 1e-4, 5.0)
        except RuntimeError:
            out[i] = np.nan
    return out


def american_prices(s, k, days, r, q, v, is_call, engine: str, steps: int = 500) -> np.ndarray:
    """American prices with ``engine`` = "crr" (binomial, ``steps``) or "fd" (default grid)."""
    _setup()
    out = np.empty(len(k))
    for i in range(len(k)):
        process = ql.BlackScholesMertonProcess(
            ql.QuoteHandle(ql.SimpleQuote(float(s[i]))),
            ql.YieldTermStructureHandle(ql.FlatForward(_TODAY, float(q[i]), _DC)),
            ql.YieldTermStructureHandle(ql.FlatForward(_TODAY, float(r[i]), _DC)),
            ql.BlackVolTermStructureHandle(
                ql.BlackConstantVol(_TODAY, ql.NullCalendar(), float(v[i]), _DC)
            ),
        )
        maturity = _TODAY + int(days[i])
        payoff = ql.PlainVanillaPayoff(ql.Option.Call if is_call[i] else ql.Option.Put, k[i])
        opt = ql.VanillaOption(payoff, ql.AmericanExercise(_TODAY, maturity))
        if engine == "crr":
            opt.setPricingEngine(ql.BinomialVanillaEngine(process, "crr", steps))
        else:
            opt.setPricingEngine(ql.FdBlackScholesVanillaEngine(process))
        out[i] = opt.NPV()
    return out
