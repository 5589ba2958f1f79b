"""Benchmarks for jitrl-jax; `python -m benchmarks.run` writes BENCHMARKS.md.

Each benchmark is a module `benchmarks/<name>_bench.py` exposing
`run(quick: bool) -> str`, which returns a markdown section.
"""
