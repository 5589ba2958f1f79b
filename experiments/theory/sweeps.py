"""The theory lab's experiments: the rule comparison, the sweeps, the outputs.

Sweeps (jitrl on `sweep.env`), every knob traced and vmapped with the
agents: the (memory size, k) grid (k through the prefix of the top-k_max, so
one retrieval serves every k; one compile per memory size) and beta and
lambda (riding along with the grid's default memory size).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.theory import plots
from experiments.theory import rules as rules_lib
from experiments.theory import runner as runner_lib
from experiments.theory import summaries

EpisodeMetrics = runner_lib.EpisodeMetrics
Hyper = rules_lib.Hyper


def compare_rules(
    cfg: ml_collections.ConfigDict,
    env_name: str,
    rules: Sequence[str] | None = None,
    *,
    log=print,
) -> dict[str, EpisodeMetrics]:
  """Every rule on the same agents' keys: {rule: metrics [A, E]}.

  One compiled program per environment and shape (the rule is a traced
  index; programs are cached by `runner.get_runner`).
  """
  keys = runner_lib.agent_keys(cfg.seed, cfg.agents)
  hyper = runner_lib.default_hyper(cfg)
  runner = runner_lib.get_runner(cfg, env_name, runner_lib.settings_for(cfg))
  out = {}
  for rule in rules or cfg.rules:
    start = time.perf_counter()
    out[rule] = summaries.to_numpy(runner(rules_lib.rule_id(rule), hyper, keys))
    log(
        f"  {env_name:6s} {rule:14s} {time.perf_counter() - start:6.1f} s  "
        f"mean regret {np.mean(out[rule].regret):.4f}"
    )
  return out


def hyper_grid(base: Hyper, name: str, values, agents: int) -> Hyper:
  """[len(values) * agents] hyper: `name` varies, repeated per agent.

  Args:
    base: the [] hyperparameters of every setting.
    name: a field of `Hyper` or of its `policy` (`config.Hyper`).
    values: the field's values, one per setting.
    agents: agents per setting.

  Returns:
    Hyper with every field [len(values) * agents]: setting i holds rows i *
    agents to (i + 1) * agents.
  """
  h = len(values)
  grid = jax.tree.map(lambda x: jnp.broadcast_to(x, (h,)), base)
  dtype = rules_lib.hyper_field(grid, name).dtype
  grid = rules_lib.replace_hyper(grid, name, jnp.asarray(values, dtype))
  return jax.tree.map(lambda x: jnp.repeat(x, agents), grid)


def _sweep_parts(m: int, grid_sizes, default_m: int, ks, betas, lams):
  """(output key, rule, hyper field, values, random ties) run at memory m."""
  parts = []
  if m in grid_sizes:
    parts.append(("memory_k", "jitrl", "k", ks, False))
    parts.append(("memory_k_static", "static", "k", ks, False))
    parts.append(("memory_k_static_random_ties", "static", "k", ks, True))
  if m == default_m:
    parts.append(("beta", "jitrl", "beta", betas, False))
    parts.append(("lam", "jitrl", "lam", lams, False))
  return parts


def run_sweeps(cfg: ml_collections.ConfigDict, *, log=print) -> dict[str, Any]:
  """The (memory size, k) grid and the beta and lambda sweeps.

  Regret: jitrl at every setting. Estimation error: the (memory, k) grid is
  also run with the static rule, whose behaviour (pi_theta) does not depend
  on k or the memory, so its A and Q errors show the estimator's bias /
  variance trade-off alone (under jitrl the data would change with k too);
  once with the retrieval's tie rule (higher return first) and once with
  similarity ties broken at random, which isolates the selection bias of the
  return tie-break (Jaccard values of small sets tie often).

  Every knob is traced and vmapped with the agents. The settings of one
  memory size run in calls of one fixed batch (the longest sweep; shorter
  ones are padded with repeats and the padding dropped), so there is one
  compile per memory size. The same agent keys serve every setting (common
  random numbers).

  Args:
    cfg: the (resolved) config.
    log: print-like progress function.

  Returns:
    {"beta": metrics [Hb, A, E], "lam": metrics [Hl, A, E],
     "memory_k": {M: metrics [len(ks), A, E]} (jitrl),
     "memory_k_static": {M: metrics [len(ks), A, E]} (static),
     "memory_k_static_random_ties": the same with random tie-breaks}.
  """
  a = int(cfg.sweep.agents)
  keys = runner_lib.agent_keys(cfg.seed, a)
  base = runner_lib.default_hyper(cfg)
  ks = tuple(int(k) for k in cfg.sweep.ks)
  betas = tuple(float(b) for b in cfg.sweep.betas)
  lams = tuple(float(x) for x in cfg.sweep.lams)
  grid_sizes = [int(m) for m in cfg.sweep.memory_sizes]
  default_m = int(cfg.jitrl.memory_size)
  sizes = grid_sizes + ([] if default_m in grid_sizes else [default_m])
  k_max = max(ks + (int(cfg.jitrl.k),))
  chunk = max(len(ks), len(betas), len(lams))
  out = {
      "memory_k": {},
      "memory_k_static": {},
      "memory_k_static_random_ties": {},
  }
  for m in sizes:
    start = time.perf_counter()
    parts = _sweep_parts(m, grid_sizes, default_m, ks, betas, lams)
    settings = runner_lib.settings_for(
        cfg, episodes=cfg.sweep.episodes, memory_size=m, k_max=k_max
    )
    runner = runner_lib.get_runner(
        cfg, cfg.sweep.env, settings, per_agent_hyper=True
    )
    tiled = jnp.tile(keys, chunk)
    for name, rule, field, values, random_ties in parts:
      padded = tuple(values) + (values[-1],) * (chunk - len(values))
      hyper = hyper_grid(
          base._replace(random_ties=jnp.asarray(random_ties)), field, padded, a
      )
      metrics = summaries.to_numpy(
          runner(rules_lib.rule_id(rule), hyper, tiled)
      )
      h = len(values)
      piece = EpisodeMetrics(
          *[x[: h * a].reshape((h, a) + x.shape[1:]) for x in metrics]
      )
      if name.startswith("memory_k"):
        out[name][m] = piece
      else:
        out[name] = piece
    log(
        f"  sweep memory {m:4d}: {len(parts)} x {chunk} settings x {a} agents"
        f" {time.perf_counter() - start:6.1f} s"
    )
  return out


def _sweep_results(cfg: ml_collections.ConfigDict, sweeps: dict) -> dict:
  """The sweeps' entries of results.json."""
  tail = max(1, cfg.sweep.episodes // 4)
  by_size = lambda name: {
      str(m): summaries.sweep_summary(metrics, tail)
      for m, metrics in sweeps[name].items()
  }
  return {
      "sweep_beta": {
          "values": list(cfg.sweep.betas),
          "summaries": summaries.sweep_summary(sweeps["beta"], tail),
      },
      "sweep_lam": {
          "values": list(cfg.sweep.lams),
          "summaries": summaries.sweep_summary(sweeps["lam"], tail),
      },
      "sweep_memory_k": {
          "ks": list(cfg.sweep.ks),
          "memory_sizes": [int(m) for m in cfg.sweep.memory_sizes],
          "summaries": by_size("memory_k"),
          "static_summaries": by_size("memory_k_static"),
          "static_random_ties_summaries": by_size(
              "memory_k_static_random_ties"
          ),
      },
  }


def run_lab(cfg: ml_collections.ConfigDict, out_dir: str, *, log=print):
  """Runs the comparison and the sweeps; writes results.json and the plots.

  Args:
    cfg: the (resolved) config.
    out_dir: output folder, created if needed.
    log: a print-like function for progress lines.

  Returns:
    The results dict (also written to out_dir/results.json).
  """
  os.makedirs(out_dir, exist_ok=True)
  timings = {}
  tail = max(1, cfg.episodes // 4)
  results: dict[str, Any] = {
      "config": cfg.to_dict(),
      "devices": [str(d) for d in jax.devices()],
      "compare": {},
  }
  for env_name in cfg.envs:
    start = time.perf_counter()
    metrics = compare_rules(cfg, env_name, log=log)
    timings[f"compare_{env_name}"] = time.perf_counter() - start
    results["compare"][env_name] = {
        rule: summaries.summarise(m, tail=tail) for rule, m in metrics.items()
    }

  start = time.perf_counter()
  sweeps = run_sweeps(cfg, log=log)
  timings["sweeps"] = time.perf_counter() - start
  results.update(_sweep_results(cfg, sweeps))
  results["timings_s"] = timings

  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(summaries.json_safe(results), f, indent=1)
  plots.plot_all(summaries.json_safe(results), out_dir)
  return results
