"""Seeded models for tests, the demo and the benchmarks (no weights can be downloaded here).

Offers: tiny and full-size SD1.5-family pipelines saved by diffusers and transformers themselves,
with init-like or trained-like values (`models`), and the repo zoo: real-world repo layouts
written by the real libraries (`zoo`, `zoo_parts`).
"""
