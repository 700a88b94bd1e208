"""Peer implementations measured side by side with jaxmm in ``benchmarks/bench_pricing.py``.

Each module wraps one peer behind the same small surface (prices and the five first-order
Greeks of a batch, implied vols, American prices) so the benchmark feeds every peer the same
inputs and checks every peer's values against jaxmm's. Nothing here is imported by the library.
"""
