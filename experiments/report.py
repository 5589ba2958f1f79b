r"""Tables, tests and figures from text-game runs; the README's results blocks.

  python -m experiments.report RUN [RUN ...] --out DIR [--k 5]
  python -m experiments.report --readme README.md           # make report
  python -m experiments.report --readme README.md --check   # exit 1 if stale

RUN is a run directory (its `results.json` is read), a `results.json` file
(a run's, with every agent, or one agent's `<agent>/results.json`) or a glob
of them. The runs are grouped by game (or task), agent and seed; every game
gets:

  * per-run rows: Avg (mean score over the episodes), Final (the last
    episode's score), the means of the first k and of the last k episodes,
    and the per-episode scores;
  * pooled rows, one per agent: the mean over seeds of each per-run
    statistic, with a 95% bootstrap interval over seeds;
  * a one-sided test of each agent against the baseline (`static`) on the
    last k episodes;
  * a figure: each agent's per-episode score, mean over seeds, with a band
    from the lowest to the highest seed.

The unit of the statistics is the run (one seed). The episodes of one run
are not independent samples: each episode's score depends on the memory the
earlier episodes wrote, and all of them on the run's seed. So every run is
first reduced to one number per statistic (e.g. the mean of its last k
episodes), and only these per-run numbers are pooled across seeds, resampled
by the bootstrap and compared by the test.

The test is a one-sided Mann-Whitney U test of the agent's per-run last-k
means against the baseline's (alternative: the agent's are larger). It is a
rank test, so it assumes nothing about the distribution of a handful of
per-run values, and it is unpaired, so it assumes nothing about how runs
that share a seed are related. Its p-value is exact: the share of the
C(n + m, n) ways to split the n + m per-run values into groups of n and m
whose U is at least the observed one (ties count one half, as in
`scipy.stats.mannwhitneyu`), computed with `scipy.stats.permutation_test`.
With n = m = 3 runs the smallest p it can give is 1 / C(6, 3) = 0.05. For
comparison only, the report also gives the same test on the pooled last-k
episode scores (`scipy.stats.mannwhitneyu`, normal approximation with tie
and continuity corrections); it counts dependent episodes as independent
samples, so its p-value is not a valid one.

The bootstrap resamples seeds, with replacement, and takes the mean: its
distribution is computed exactly (every multiset of seeds, weighted by its
multinomial probability) up to 10 seeds and from 100,000 resamples of a
fixed-seed generator beyond; the interval is its 2.5% and 97.5% quantiles
(inverted CDF). With 3 seeds it runs from the lowest seed's value to the
highest's: three seeds say little about the spread.

README mode rewrites, in place, every block of the README between
`<!-- report:NAME begin -->` and `<!-- report:NAME end -->`, from the
committed files that README_BLOCKS names (paths relative to the README's
folder): Jericho statistics from the runs' results.json files, and the
benchmark headline from BENCHMARKS.md. `--check` writes nothing and exits 1,
printing a diff, when a block (or a report JSON beside the figures) differs
from what would be written, or a figure it shows is missing.

BENCHMARKS.md is the benchmarks' record; `parse_benchmarks_markdown` reads
its tables, prose and machine lines into a dict, and `benchmarks.run` writes
that dict beside it as BENCHMARKS.json (`benchmarks_json_text`). The
headline is generated from BENCHMARKS.md itself; a BENCHMARKS.json beside it
must equal the parse of BENCHMARKS.md, or the report stops.

This module is the command line; the code is in experiments/reporting/:
`runs` (loading, grouping, the statistics), `tables` (markdown and the
figure), `headline` (BENCHMARKS.md and the headline table) and `readme` (the
README blocks).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Sequence

from experiments.reporting import readme
from experiments.reporting import runs as runs_lib
from experiments.reporting import tables
from jitrl_jax import io as io_lib


def main(argv: Sequence[str] | None = None) -> int:
  """The command line (see the module docstring); returns the exit status."""
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog=__doc__,
  )
  parser.add_argument("runs", nargs="*", help="run dirs, results.json, globs")
  parser.add_argument("--out", help="folder for report.md, .json and figures")
  parser.add_argument("--k", type=int, default=5, help="first-k/last-k window")
  parser.add_argument("--baseline", default=runs_lib.BASELINE)
  parser.add_argument("--readme", help="rewrite this README's report blocks")
  parser.add_argument(
      "--check", action="store_true", help="with --readme: only compare"
  )
  args = parser.parse_args(argv)
  try:
    if args.readme:
      if args.runs or args.out:
        parser.error("--readme takes no runs and no --out")
      if args.check:
        problems = readme.check_readme(args.readme)
        for p in problems:
          print(p, file=sys.stderr)
        if problems:
          print(f"{args.readme} is stale: run `make report`", file=sys.stderr)
          return 1
        print(f"{args.readme}: every report block is up to date")
        return 0
      for path in readme.update_readme(args.readme):
        print(f"wrote {path}")
      return 0
    if not args.runs or not args.out:
      parser.error("give runs and --out (or --readme)")
    report = runs_lib.build_report(
        runs_lib.load_runs(args.runs), args.k, baseline=args.baseline
    )
    os.makedirs(args.out, exist_ok=True)
    figures = {}
    for name, game in report["games"].items():
      slug = re.sub(r"[^\w.-]+", "_", name)
      figures[name] = f"{slug}_curve.png"
      tables.plot_pooled_curves(game, os.path.join(args.out, figures[name]))
    io_lib.atomic_write_text(
        os.path.join(args.out, "report.md"),
        tables.report_markdown(report, figures),
    )
    io_lib.atomic_write_text(
        os.path.join(args.out, "report.json"), runs_lib.report_json_text(report)
    )
    print(
        f"wrote {args.out}/report.md, report.json and {len(figures)} figure(s)"
    )
    return 0
  except runs_lib.ReportError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
