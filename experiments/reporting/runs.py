"""Runs, their grouping and statistics: the numbers of a text-game report.

A Run is one agent's episode scores on one game with one seed, read from a
results.json of experiments.run_text_game. The statistics take the run as
the unit: each run is reduced to its per-run statistics (run_statistics),
which are pooled over seeds with a percentile bootstrap interval
(bootstrap_mean_ci) and compared with the baseline's by a one-sided
Mann-Whitney U test with an exact permutation p (mann_whitney_exact); the
same test on pooled episode scores (mann_whitney_episodes) is shown for
comparison only. game_report and build_report hold every number of a
report. The method is described in experiments/report.py's docstring.
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import json
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

REPORT_FORMAT = 1
BASELINE = "static"
LEVEL = 0.95
# Exact bootstrap up to this many seeds (C(19, 10) = 92,378 multisets).
EXACT_BOOTSTRAP_MAX_SEEDS = 10
BOOTSTRAP_RESAMPLES = 100_000
# Exact permutation test up to this many splits, else Monte Carlo.
EXACT_PERMUTATIONS_MAX = 200_000


METHOD = {
    "unit": "the run (one seed): each run is reduced to one value per "
    "statistic before pooling, resampling or testing",
    "pooled": "mean over seeds of the per-run values",
    "interval": "percentile bootstrap over seeds (exact up to "
    f"{EXACT_BOOTSTRAP_MAX_SEEDS} seeds), inverted-CDF quantiles",
    "test": "one-sided Mann-Whitney U of the agent's per-run last-k means "
    "against the baseline's, exact permutation p "
    "(scipy.stats.permutation_test)",
    "episodes_test": "for comparison only, not valid: the same test on "
    "pooled last-k episode scores (scipy.stats.mannwhitneyu, asymptotic)",
}


class ReportError(ValueError):
  """Runs that cannot be reported together, or a malformed README block."""


# ----------------------------------------------------------------- runs --


@dataclasses.dataclass(frozen=True)
class Run:
  """One agent's run on one game with one seed.

  Attributes:
    game: the game or task, e.g. "jericho:detective".
    agent: the agent's name, e.g. "jitrl".
    seed: the run's seed (`seeds.seed` of results.json).
    episode_scores: the score of every episode, in order.
    source: the results.json the run was read from.
  """

  game: str
  agent: str
  seed: int
  episode_scores: tuple[float, ...]
  source: str


def _results_path(path: str) -> str:
  if os.path.isdir(path):
    path = os.path.join(path, "results.json")
  if not os.path.isfile(path):
    raise ReportError(f"no results file at {path}")
  return path


def runs_from_results(results: Mapping[str, Any], source: str) -> list[Run]:
  """The runs of one results.json.

  Args:
    results: a run's results.json (`{"game", "agents": {name: {...}},
      "seeds"}`) or one agent's (`{"game", "agent", "episode_scores",
      "seeds"}`).
    source: where it was read from (kept in the report).

  Returns:
    One Run per agent, in the file's order.

  Raises:
    ReportError: the dict is neither kind of results.json.
  """
  try:
    game = str(results["game"])
    seed = int(results["seeds"]["seed"])
    if "agents" in results:
      per_agent = results["agents"]
    else:
      per_agent = {results["agent"]: results}
    return [
        Run(
            game=game,
            agent=str(name),
            seed=seed,
            episode_scores=tuple(float(s) for s in r["episode_scores"]),
            source=source,
        )
        for name, r in per_agent.items()
    ]
  except (KeyError, TypeError) as e:
    raise ReportError(
        f"{source} is not a results.json of experiments.run_text_game "
        f"(missing {e})"
    ) from e


def load_runs(paths: Sequence[str]) -> list[Run]:
  """Reads the runs of run directories, results.json files or globs.

  Args:
    paths: each a run directory, a results.json file, or a glob of them
      (expanded in sorted order).

  Returns:
    The runs, in the order of the paths.

  Raises:
    ReportError: a path (or glob) matches nothing, or is not a results file.
  """
  runs = []
  for pattern in paths:
    matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else []
    if glob.has_magic(pattern) and not matches:
      raise ReportError(f"{pattern} matches no file")
    for path in matches or [pattern]:
      path = _results_path(path)
      with open(path, encoding="utf-8") as f:
        runs.extend(runs_from_results(json.load(f), path))
  return runs


def group_runs(runs: Sequence[Run]) -> dict[str, dict[str, dict[int, Run]]]:
  """Groups runs by game, agent and seed.

  Games and agents keep the order in which they first appear; seeds are
  sorted.

  Args:
    runs: the runs.

  Returns:
    game -> agent -> seed -> run.

  Raises:
    ReportError: two runs of one game, agent and seed; or runs of one game
      with different numbers of episodes.
  """
  grouped: dict[str, dict[str, dict[int, Run]]] = {}
  for run in runs:
    seeds = grouped.setdefault(run.game, {}).setdefault(run.agent, {})
    if run.seed in seeds:
      raise ReportError(
          f"{run.game}, {run.agent}, seed {run.seed} twice: in "
          f"{seeds[run.seed].source} and {run.source}"
      )
    seeds[run.seed] = run
  for game, agents in grouped.items():
    lengths = {
        len(r.episode_scores)
        for seeds in agents.values()
        for r in seeds.values()
    }
    if len(lengths) != 1:
      raise ReportError(
          f"the runs of {game} have different numbers of episodes "
          f"({sorted(lengths)}); report them separately"
      )
    for agent in agents:
      agents[agent] = dict(sorted(agents[agent].items()))
  return grouped


# ----------------------------------------------------------- statistics --


def run_statistics(scores: Sequence[float], k: int) -> dict[str, float]:
  """The per-run statistics of one learning curve.

  Args:
    scores: [E] the score of every episode.
    k: the window of the first-k and last-k means, 1 <= k <= E.

  Returns:
    {"avg": mean of all E, "final": the last score, "first_k": mean of the
    first k, "last_k": mean of the last k}.

  Raises:
    ReportError: k is out of range.
  """
  s = np.asarray(scores, dtype=np.float64)
  if not 1 <= k <= s.size:
    raise ReportError(f"k = {k} with {s.size} episodes; need 1 <= k <= E")
  return {
      "avg": float(s.mean()),
      "final": float(s[-1]),
      "first_k": float(s[:k].mean()),
      "last_k": float(s[-k:].mean()),
  }


def _quantile_of_weighted(values, weights, q: float) -> float:
  """The inverted-CDF q-quantile: the least v with P(X <= v) >= q."""
  order = np.argsort(values, kind="stable")
  cdf = np.cumsum(np.asarray(weights, np.float64)[order])
  cdf /= cdf[-1]
  # A tolerance, so that P(X <= v) = q exactly counts as reaching q.
  i = int(np.searchsorted(cdf, q - 1e-12, side="left"))
  return float(np.asarray(values, np.float64)[order][min(i, cdf.size - 1)])


def bootstrap_mean_ci(
    values: Sequence[float], level: float = LEVEL
) -> tuple[float, float]:
  """Percentile bootstrap interval of the mean, resampling the values.

  Exact (every multiset of n values from the n, weighted by its multinomial
  probability) for n <= EXACT_BOOTSTRAP_MAX_SEEDS; else from
  BOOTSTRAP_RESAMPLES resamples of `np.random.default_rng(0)`. The bounds are
  the inverted-CDF (1 - level) / 2 and (1 + level) / 2 quantiles of the
  resampled means.

  Args:
    values: [n] one value per unit (per run).
    level: the interval's coverage.

  Returns:
    (low, high); (v, v) for one value.

  Raises:
    ReportError: no values.
  """
  v = np.sort(np.asarray(values, dtype=np.float64))
  n = v.size
  if n == 0:
    raise ReportError("a bootstrap interval of no values")
  if n <= EXACT_BOOTSTRAP_MAX_SEEDS:
    means, weights = [], []
    for idx in itertools.combinations_with_replacement(range(n), n):
      counts = np.bincount(idx, minlength=n)
      ways = math.factorial(n) // math.prod(math.factorial(c) for c in counts)
      means.append(round(float(v[list(idx)].sum()) / n, 12))
      weights.append(ways)
  else:
    rng = np.random.default_rng(0)
    means = v[rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))].mean(axis=1)
    weights = np.ones_like(means)
  alpha = 1.0 - level
  return (
      _quantile_of_weighted(means, weights, alpha / 2),
      _quantile_of_weighted(means, weights, 1.0 - alpha / 2),
  )


def _u_statistic(x, y, axis=-1):
  """Mann-Whitney U of x over y: pairs with x > y, plus half the ties."""
  x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
  y = np.moveaxis(np.asarray(y, np.float64), axis, -1)
  diff = x[..., :, None] - y[..., None, :]
  return (diff > 0).sum(axis=(-2, -1)) + 0.5 * (diff == 0).sum(axis=(-2, -1))


def mann_whitney_exact(
    x: Sequence[float], y: Sequence[float]
) -> dict[str, float]:
  """One-sided Mann-Whitney U test that x tends to exceed y, exact.

  The p-value is the share of the splits of the pooled values into groups
  of len(x) and len(y) whose U (ties one half) is at least the observed U:
  `scipy.stats.permutation_test` over all C(n + m, n) splits (independent
  samples), or 100,000 random ones of a fixed-seed generator when there are
  more than EXACT_PERMUTATIONS_MAX. A group of one run (which SciPy refuses)
  is enumerated here: its n + m splits.

  Args:
    x: [n] the agent's per-run values.
    y: [m] the baseline's per-run values.

  Returns:
    {"u": U of x over y, "p": the one-sided p-value, "min_p": the smallest p
    the test can give with these sizes, 1 / C(n + m, n)}.
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  splits = math.comb(x.size + y.size, x.size)
  if min(x.size, y.size) == 1:
    pooled = np.concatenate([x, y])
    u_obs = float(_u_statistic(x, y))
    us = []
    for idx in itertools.combinations(range(pooled.size), x.size):
      mask = np.zeros(pooled.size, bool)
      mask[list(idx)] = True
      us.append(float(_u_statistic(pooled[mask], pooled[~mask])))
    p = float(np.mean(np.asarray(us) >= u_obs - 1e-9))
    return {"u": u_obs, "p": p, "min_p": 1.0 / splits}
  exact = splits <= EXACT_PERMUTATIONS_MAX
  kwargs = dict(
      permutation_type="independent",
      vectorized=True,
      n_resamples=np.inf if exact else 100_000,
      alternative="greater",
  )
  if not exact:  # SciPy < 1.15 calls the generator random_state.
    try:
      result = stats.permutation_test(
          (x, y), _u_statistic, rng=np.random.default_rng(0), **kwargs
      )
    except TypeError:
      result = stats.permutation_test(
          (x, y),
          _u_statistic,
          random_state=np.random.default_rng(0),
          **kwargs,
      )
  else:
    result = stats.permutation_test((x, y), _u_statistic, **kwargs)
  return {
      "u": float(result.statistic),
      "p": float(result.pvalue),
      "min_p": 1.0 / splits,
  }


def mann_whitney_episodes(
    x: Sequence[float], y: Sequence[float]
) -> dict[str, float]:
  """One-sided Mann-Whitney U test on pooled episode scores (not valid).

  `scipy.stats.mannwhitneyu(x, y, alternative="greater",
  method="asymptotic")`: the normal approximation with tie and continuity
  corrections. It treats every episode as an independent sample, which the
  episodes of one run are not; the report shows it only for comparison.

  Args:
    x: the agent's episode scores, pooled over runs.
    y: the baseline's, pooled the same way.

  Returns:
    {"u": U of x over y, "p": the one-sided p-value}.
  """
  r = stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic")
  return {"u": float(r.statistic), "p": float(r.pvalue)}


STATISTICS = ("avg", "final", "first_k", "last_k")


def game_report(
    agents: Mapping[str, Mapping[int, Run]],
    k: int,
    *,
    baseline: str = BASELINE,
    level: float = LEVEL,
) -> dict[str, Any]:
  """Every number of one game's report.

  Args:
    agents: agent -> seed -> run, all of one game (see group_runs).
    k: the first-k / last-k window.
    baseline: the agent the others are tested against; no tests when it is
      not among the agents.
    level: the bootstrap interval's coverage.

  Returns:
    {"game", "episodes", "seeds", "runs": [per-run rows, seed-major],
    "pooled": {agent: {"runs", "seeds", stat: {"mean", "ci", "per_seed"}}},
    "comparisons": {agent: {"runs": {...}, "episodes": {...}}},
    "curves": {agent: {"mean", "low", "high"}}}; see the module docstring.
  """
  first = next(iter(next(iter(agents.values())).values()))
  all_seeds = sorted({s for seeds in agents.values() for s in seeds})
  rows = []
  for seed in all_seeds:
    for agent, seeds in agents.items():
      if seed in seeds:
        run = seeds[seed]
        rows.append(
            {
                "seed": seed,
                "agent": agent,
                **run_statistics(run.episode_scores, k),
                "episode_scores": list(run.episode_scores),
                "source": run.source,
            }
        )
  pooled, curves = {}, {}
  for agent, seeds in agents.items():
    per_seed = {
        s: run_statistics(r.episode_scores, k) for s, r in seeds.items()
    }
    entry: dict[str, Any] = {"runs": len(seeds), "seeds": list(seeds)}
    for stat in STATISTICS:
      values = [per_seed[s][stat] for s in seeds]
      low, high = bootstrap_mean_ci(values, level)
      entry[stat] = {
          "mean": float(np.mean(values)),
          "ci": [low, high],
          "per_seed": values,
      }
    pooled[agent] = entry
    scores = np.array([r.episode_scores for r in seeds.values()], np.float64)
    curves[agent] = {
        "mean": scores.mean(axis=0).tolist(),
        "low": scores.min(axis=0).tolist(),
        "high": scores.max(axis=0).tolist(),
    }
  tests = {}
  if baseline in agents:
    base = agents[baseline]
    base_last = pooled[baseline]["last_k"]["per_seed"]
    base_episodes = [s for r in base.values() for s in r.episode_scores[-k:]]
    for agent, seeds in agents.items():
      if agent == baseline:
        continue
      episodes = [s for r in seeds.values() for s in r.episode_scores[-k:]]
      tests[agent] = {
          "statistic": "last_k",
          "alternative": f"{agent} > {baseline}",
          "runs": {
              "unit": "run (seed)",
              "test": "Mann-Whitney U, one-sided, exact permutation p",
              "n": [len(seeds), len(base)],
              **mann_whitney_exact(
                  pooled[agent]["last_k"]["per_seed"], base_last
              ),
          },
          "episodes": {
              "unit": "episode (not independent: for comparison only)",
              "test": "Mann-Whitney U, one-sided, normal approximation",
              "n": [len(episodes), len(base_episodes)],
              **mann_whitney_episodes(episodes, base_episodes),
          },
      }
  return {
      "game": first.game,
      "episodes": len(first.episode_scores),
      "seeds": all_seeds,
      "k": k,
      "baseline": baseline,
      "level": level,
      "runs": rows,
      "pooled": pooled,
      "comparisons": tests,
      "curves": curves,
  }


def build_report(
    runs: Sequence[Run],
    k: int,
    *,
    baseline: str = BASELINE,
    level: float = LEVEL,
) -> dict[str, Any]:
  """The report of every game of the runs (see game_report).

  Args:
    runs: the runs, of any games.
    k: the first-k / last-k window.
    baseline: the agent the others are tested against.
    level: the bootstrap interval's coverage.

  Returns:
    {"format", "unit", "k", "baseline", "level", "method", "games": {game:
    game_report}}.
  """
  if not runs:
    raise ReportError("no runs to report")
  games = {
      game: game_report(agents, k, baseline=baseline, level=level)
      for game, agents in group_runs(runs).items()
  }
  return {
      "format": REPORT_FORMAT,
      "unit": "run (one seed)",
      "k": k,
      "baseline": baseline,
      "level": level,
      "method": METHOD,
      "games": games,
  }


def _rounded(obj, digits: int = 6):
  """obj with every float rounded, so the JSON is stable across versions."""
  if isinstance(obj, float):
    return round(obj, digits)
  if isinstance(obj, dict):
    return {k: _rounded(v, digits) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_rounded(v, digits) for v in obj]
  return obj


def report_json_text(report: Mapping[str, Any]) -> str:
  """The report as JSON text (floats rounded to 6 decimals)."""
  return json.dumps(_rounded(report), indent=1) + "\n"
