"""The theory lab's plots, from the JSON-safe results dict.

regret_curves.png (regret per episode), diagnostics.png (KL and A-error per
episode), bias_variance.png (A-error, Q-error and regret against k for each
memory size), sweeps.png (beta, lambda).
"""

from __future__ import annotations

import os

import numpy as np

COLOURS = {
    "jitrl": "#d62728",
    "reference": "#1f77b4",
    "gradient_kl": "#ff7f0e",
    "reinforce": "#2ca02c",
    "ppo": "#9467bd",
    "static": "#7f7f7f",
    "greedy_memory": "#8c564b",
}
STYLES = {"gradient_kl": "--"}
PLOT_NAMES = ("regret_curves", "diagnostics", "bias_variance", "sweeps")


def _pyplot():
  """matplotlib.pyplot with the Agg backend (imported only to plot)."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def _curve(ax, summary, key, rule, band=True):
  curve = summary[key]
  if isinstance(curve, dict):
    mean = np.asarray(curve["mean"], float)
    half = np.asarray(curve["ci95"], float)
  else:
    mean = np.asarray([np.nan if v is None else v for v in curve], float)
    half = None
  x = np.arange(1, mean.shape[0] + 1)
  ax.plot(
      x,
      mean,
      label=rule,
      color=COLOURS.get(rule),
      linestyle=STYLES.get(rule, "-"),
      lw=1.6,
  )
  if band and half is not None:
    ax.fill_between(
        x, mean - half, mean + half, color=COLOURS.get(rule), alpha=0.2, lw=0
    )


def _figure_legend(fig, ax) -> None:
  """One legend for the figure, in a strip below the panels."""
  handles, labels = ax.get_legend_handles_labels()
  fig.legend(
      handles,
      labels,
      loc="lower center",
      ncol=len(labels),
      fontsize=9,
      frameon=False,
  )
  fig.tight_layout(rect=(0, 0.06, 1, 1))


def _save(plt, fig, path: str) -> str:
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def plot_regret(results: dict, path: str) -> str:
  """Expected regret per episode of every rule, one panel per environment."""
  plt = _pyplot()
  envs = list(results["compare"])
  agents = results["config"]["agents"]
  fig, axes = plt.subplots(
      1, len(envs), figsize=(6.2 * len(envs), 4.4), squeeze=False
  )
  for ax, env_name in zip(axes[0], envs):
    for rule, summary in results["compare"][env_name].items():
      _curve(ax, summary, "regret_curve", rule)
    ax.set_title(f"{env_name}: expected regret per episode ({agents} agents)")
    ax.set_xlabel("episode")
    ax.set_ylabel("regret (mean, 95% CI band)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
  _figure_legend(fig, axes[0][0])
  return _save(plt, fig, path)


def plot_diagnostics(results: dict, path: str) -> str:
  """KL(pi' || pi_theta) and the A-error per episode."""
  plt = _pyplot()
  envs = list(results["compare"])
  fig, axes = plt.subplots(
      2, len(envs), figsize=(6.2 * len(envs), 7.6), squeeze=False
  )
  for col, env_name in enumerate(envs):
    for rule, summary in results["compare"][env_name].items():
      _curve(axes[0][col], summary, "kl_curve", rule)
      _curve(axes[1][col], summary, "a_error_curve", rule)
    axes[0][col].set_title(f"{env_name}: KL(pi' || pi_theta) per step")
    axes[1][col].set_title(
        f"{env_name}: RMS error of A_hat (shift-invariant, all actions)"
    )
    for row in range(2):
      axes[row][col].set_xlabel("episode")
      axes[row][col].grid(alpha=0.3)
  _figure_legend(fig, axes[0][0])
  return _save(plt, fig, path)


def plot_bias_variance(results: dict, path: str) -> str:
  """A-error and Q-error (static behaviour) and jitrl's regret against k."""
  plt = _pyplot()
  grid = results["sweep_memory_k"]
  ks = np.asarray(grid["ks"], float)
  fig, axes = plt.subplots(1, 3, figsize=(17.5, 4.6))
  cmap = plt.get_cmap("viridis")
  sizes = grid["memory_sizes"]
  nan = lambda v: np.nan if v is None else v
  for i, m in enumerate(sizes):
    summaries = grid["summaries"][str(m)]
    colour = cmap(i / max(len(sizes) - 1, 1))
    label = f"memory {m}"
    for key, style, suffix in (
        ("static_summaries", "o-", ""),
        ("static_random_ties_summaries", "s--", ", random ties"),
    ):
      behaviour = grid[key][str(m)]
      for ax, field in ((axes[0], "final_a_error"), (axes[1], "final_q_error")):
        ax.plot(
            ks,
            [nan(s[field]) for s in behaviour],
            style,
            color=colour,
            label=label + suffix,
            alpha=1.0 if not suffix else 0.7,
        )
    axes[2].errorbar(
        ks,
        [s["final_regret"] for s in summaries],
        yerr=[s["final_regret_ci95"] for s in summaries],
        fmt="o-",
        color=colour,
        capsize=3,
        label=label,
    )
  sweep_env = results["config"]["sweep"]["env"]
  agents = results["config"]["sweep"]["agents"]
  axes[0].set_title(f"{sweep_env}: A_hat error vs k (behaviour pi_theta)")
  axes[0].set_ylabel("RMS shift-invariant error of A_hat")
  axes[1].set_title(f"{sweep_env}: Q_hat error vs k (behaviour pi_theta)")
  axes[1].set_ylabel("RMS error of Q_hat (seen actions)")
  axes[2].set_title(f"{sweep_env}: jitrl regret vs k ({agents} agents)")
  axes[2].set_ylabel("expected regret per episode (95% CI)")
  tail_note = "final quarter of the episodes"
  for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"k neighbours ({tail_note})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  return _save(plt, fig, path)


def plot_sweeps(results: dict, path: str) -> str:
  """jitrl's regret and KL against beta and against lambda."""
  plt = _pyplot()
  sweep_env = results["config"]["sweep"]["env"]
  fig, axes = plt.subplots(1, 2, figsize=(12.4, 4.4))
  for ax, name, label in (
      (axes[0], "sweep_beta", "beta"),
      (axes[1], "sweep_lam", "lambda"),
  ):
    values = np.asarray(results[name]["values"], float)
    summaries = results[name]["summaries"]
    reg = np.asarray([s["mean_regret"] for s in summaries])
    half = np.asarray([s["mean_regret_ci95"] for s in summaries])
    ax.errorbar(
        values,
        reg,
        yerr=half,
        fmt="o-",
        color="#d62728",
        capsize=3,
        label="mean regret",
    )
    ax.set_xlabel(label)
    ax.set_ylabel("mean expected regret per episode", color="#d62728")
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(
        values,
        [s["mean_kl"] for s in summaries],
        "s--",
        color="#1f77b4",
        label="KL(pi' || pi_theta)",
    )
    twin.set_ylabel("mean KL(pi' || pi_theta)", color="#1f77b4")
    ax.set_title(f"{sweep_env}, jitrl: sweep of {label}")
  fig.tight_layout()
  return _save(plt, fig, path)


def plot_all(results: dict, out_dir: str) -> list[str]:
  """Writes the four PNGs (`PLOT_NAMES`) into out_dir; returns their paths."""
  plot_fns = (plot_regret, plot_diagnostics, plot_bias_variance, plot_sweeps)
  return [
      fn(results, os.path.join(out_dir, name + ".png"))
      for fn, name in zip(plot_fns, PLOT_NAMES)
  ]
