"""The MiniWoB++ suite's report: success rates, intervals, paired tests.

Read from the results.json files of experiments/run_web_suite.py (one per
seed). For every task and agent: the success rate of the first and the last
k episodes, pooled over seeds, with Wilson's 95% score interval. Episodes of
one run share a memory, so they are not independent trials and the interval
is approximate; with 3 seeds of 10 episodes it is wide. Agents are compared
with the baseline on the same page instances (episode e of a task has one
seed for every agent), pair by pair: an exact McNemar test (two-sided
binomial test on the discordant pairs) of the last k episodes.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any, Mapping, Sequence

from scipy import stats

from experiments import web_suite
from experiments.reporting import runs as runs_lib
from experiments.reporting import tables

REPORT_FORMAT = 1


def load_suite_runs(pattern: str) -> list[dict[str, Any]]:
  """The web suite results.json files matching a glob, sorted by seed.

  Raises:
    ReportError: no file matches, a file is not a web suite's, or two
      files have the same seed.
  """
  paths = sorted(glob.glob(pattern))
  if not paths:
    raise runs_lib.ReportError(f"no web suite results match {pattern}")
  runs = []
  for path in paths:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
    if data.get("suite") != "miniwob":
      raise runs_lib.ReportError(f"{path} is not a MiniWoB++ suite's results")
    runs.append(data)
  seeds = [r["seed"] for r in runs]
  if len(set(seeds)) != len(seeds):
    raise runs_lib.ReportError(f"{pattern}: seeds {seeds} repeat")
  return sorted(runs, key=lambda r: r["seed"])


def _rate(successes: Sequence[int]) -> dict[str, Any]:
  s, n = int(sum(successes)), len(successes)
  low, high = web_suite.wilson_interval(s, n)
  return {
      "successes": s,
      "episodes": n,
      "rate": s / n if n else float("nan"),
      "ci": [low, high],
  }


def _mcnemar(a: Sequence[int], b: Sequence[int]) -> dict[str, Any]:
  """Exact McNemar test of paired successes (a: agent, b: baseline)."""
  better = sum(1 for x, y in zip(a, b) if x and not y)
  worse = sum(1 for x, y in zip(a, b) if y and not x)
  p = (
      float(stats.binomtest(better, better + worse, 0.5).pvalue)
      if better + worse
      else 1.0
  )
  return {"better": better, "worse": worse, "p": p}


def web_report(
    runs: Sequence[Mapping[str, Any]], k: int, baseline: str = "static"
) -> dict[str, Any]:
  """Every number of the suite's README block.

  Args:
    runs: web suite results (one per seed, `load_suite_runs`).
    k: the first-k / last-k window (episodes of a task).
    baseline: the agent the others are compared with.

  Returns:
    {"k", "seeds", "tasks", "agents", "agent_seeds": agent -> the seeds
    that ran it, "per_task": task -> agent -> {"first", "last"}, "all":
    agent -> {"first", "last"}, "paired": agent -> McNemar of the last k
    (on the seeds that ran both), "curves": task -> agent -> [runs][E]}.

  Raises:
    ReportError: the runs' tasks differ.
  """
  tasks = list(runs[0]["tasks"])
  agents: list[str] = []
  for r in runs:
    if list(r["tasks"]) != tasks:
      raise runs_lib.ReportError(
          f"seed {r['seed']}: tasks differ from seed {runs[0]['seed']}'s"
      )
    agents += [a for a in r["agents"] if a not in agents]
  # An agent is pooled over the seeds that ran it (a suite may run the
  # costlier agents on fewer seeds); every run must have the baseline.
  seeds_of = {a: [r["seed"] for r in runs if a in r["agents"]] for a in agents}
  per_task, pooled, curves = {}, {}, {}
  for task in tasks:
    per_task[task], curves[task] = {}, {}
    for agent in agents:
      series = [
          r["agents"][agent]["tasks"][task]["success"]
          for r in runs
          if agent in r["agents"]
      ]
      curves[task][agent] = series
      first = [x for s in series for x in s[:k]]
      last = [x for s in series for x in s[-k:]]
      per_task[task][agent] = {"first": _rate(first), "last": _rate(last)}
      entry = pooled.setdefault(agent, {"first": [], "last": []})
      entry["first"] += first
      entry["last"] += last
  paired = {}
  if baseline in agents:
    for agent in agents:
      if agent == baseline:
        continue
      a, b = [], []
      for task in tasks:
        for r in runs:
          if agent not in r["agents"] or baseline not in r["agents"]:
            continue
          a += r["agents"][agent]["tasks"][task]["success"][-k:]
          b += r["agents"][baseline]["tasks"][task]["success"][-k:]
      paired[agent] = _mcnemar(a, b)
  return {
      "format": REPORT_FORMAT,
      "k": k,
      "baseline": baseline,
      "seeds": [r["seed"] for r in runs],
      "episodes_per_task": min(r["episodes_per_task"] for r in runs),
      "tasks": tasks,
      "agents": agents,
      "agent_seeds": seeds_of,
      "model": runs[0]["model"]["name"],
      "per_task": per_task,
      "all": {
          a: {"first": _rate(v["first"]), "last": _rate(v["last"])}
          for a, v in pooled.items()
      },
      "paired": paired,
      "curves": curves,
      "method": {
          "rate": "successes (final reward > 0) of the first or last k "
          "episodes of a task, pooled over seeds",
          "interval": "Wilson 95% score interval on the pooled episodes "
          "(approximate: a run's episodes share a memory)",
          "test": "exact McNemar (two-sided binomial on discordant pairs) "
          "of the last k episodes, paired by task, seed and episode",
      },
  }


def _cell(rate: Mapping[str, Any]) -> str:
  low, high = rate["ci"]
  return f"{rate['rate']:.2f} ({low:.2f}-{high:.2f})"


def _header(report: Mapping[str, Any], agent: str) -> str:
  """`agent`, with its seeds when it ran on fewer than all of them."""
  seeds = report["agent_seeds"][agent]
  if len(seeds) == len(report["seeds"]):
    return f"`{agent}`"
  return (
      f"`{agent}` (seed{'s' * (len(seeds) > 1)} "
      + ", ".join(str(s) for s in seeds)
      + ")"
  )


def web_table(report: Mapping[str, Any]) -> str:
  """Markdown: last-k success rate (95% CI) per task and agent; all tasks."""
  k, agents = report["k"], report["agents"]
  lines = [
      tables.md_row(["task"] + [_header(report, a) for a in agents]),
      tables.md_row(["---"] + ["---:"] * len(agents)),
  ]
  for task in report["tasks"]:
    lines.append(
        tables.md_row(
            [task]
            + [_cell(report["per_task"][task][a]["last"]) for a in agents]
        )
    )
  for which in ("last", "first"):
    lines.append(
        tables.md_row(
            [f"**all tasks, {which} {k}**"]
            + [f"**{_cell(report['all'][a][which])}**" for a in agents]
        )
    )
  return "\n".join(lines)


def _p_text(p: float) -> str:
  text = tables.format_p(p)
  return f"p {text}" if text.startswith("<") else f"p = {text}"


def paired_text(report: Mapping[str, Any]) -> str:
  """One sentence per agent: the paired comparison with the baseline."""
  k, base = report["k"], report["baseline"]
  parts = []
  for agent, t in report["paired"].items():
    parts.append(
        f"`{agent}` succeeded where `{base}` failed in {t['better']} "
        f"pairs and failed where it succeeded in {t['worse']} "
        f"(exact McNemar {_p_text(t['p'])})"
    )
  if not parts:
    return ""
  return (
      f"Paired by instance (task, seed, episode) over the last {k} episodes "
      "of every task: " + "; ".join(parts) + "."
  )


def plot_web_curves(report: Mapping[str, Any], path: str) -> str:
  """The success curves, one panel per task, mean over seeds."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  seeds = report["seeds"]
  fewer = [
      f"{a}: seed{'s' * (len(v) > 1)} " + ", ".join(str(x) for x in v)
      for a, v in report["agent_seeds"].items()
      if len(v) < len(seeds)
  ]
  return web_suite.plot_success_curves(
      report["curves"],
      path,
      title=(
          f"MiniWoB++, {len(report['tasks'])} tasks, LM {report['model']}: "
          f"success per episode, mean of seeds "
          + ", ".join(str(s) for s in seeds)
          + (f" ({'; '.join(fewer)})" if fewer else "")
      ),
  )
