"""The text-game report's modules; `python -m experiments.report` runs it.

runs      Run, loading and grouping results.json files, per-run statistics,
          the bootstrap over seeds, the Mann-Whitney tests, build_report
tables    markdown tables and summary text of a report, and its figure
headline  BENCHMARKS.md parsed into data, and the benchmark headline table
readme    the README's generated blocks: registry, render, check, update
"""
