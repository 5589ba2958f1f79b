"""Learning curves and result tables for text-game runs.

One figure compares agents run on the same game with the same seeds: the
score of every episode (mean over the batch of games played in that episode,
with a band of one standard error when the batch has more than one game) and
a dashed line for each agent's average over episodes.
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # Files only; never a display.
from matplotlib import ticker  # pylint: disable=g-import-not-at-top
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from jitrl_jax import io as io_lib

_COLOURS = {
    "static": "#7f7f7f",
    "jitrl": "#d62728",
    "jitrl-reference": "#1f77b4",
    "memory-prompt": "#2ca02c",
}


def summarise_scores(episode_scores: Sequence[float]) -> dict[str, float]:
  """Avg and Final of a learning curve.

  Avg is the mean of the per-episode scores over all episodes; Final is the
  score of the last episode (the paper's two numbers).

  Args:
    episode_scores: [E] score of each episode.

  Returns:
    {"avg": ..., "final": ..., "best": ..., "episodes": E}; NaN when E = 0.
  """
  s = np.asarray(episode_scores, dtype=np.float64)
  if s.size == 0:
    return {"avg": math.nan, "final": math.nan, "best": math.nan, "episodes": 0}
  return {
      "avg": float(s.mean()),
      "final": float(s[-1]),
      "best": float(s.max()),
      "episodes": int(s.size),
  }


def plot_learning_curves(
    curves: Mapping[str, Sequence[Sequence[float]]],
    path: str,
    *,
    title: str = "",
    max_score: float | None = None,
) -> str:
  """Writes one PNG with a learning curve per agent.

  Args:
    curves: agent name -> [E][B] scores (episode, game in the batch). A flat
      [E] list is accepted too.
    path: output PNG path; parent directories are created.
    title: figure title.
    max_score: if given, a dotted line at the game's maximum score.

  Returns:
    The path written.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=120)
  top = 0.0
  for i, (name, per_episode) in enumerate(curves.items()):
    if len(per_episode) == 0:  # pylint: disable=g-explicit-length-test
      continue
    rows = [np.atleast_1d(np.asarray(x, np.float64)) for x in per_episode]
    mean = np.array([r.mean() for r in rows])
    sem = np.array(
        [r.std(ddof=1) / math.sqrt(r.size) if r.size > 1 else 0.0 for r in rows]
    )
    top = max(top, float(np.max(mean + sem)))
    x = np.arange(1, len(rows) + 1)
    colour = _COLOURS.get(name, f"C{i}")
    ax.plot(
        x,
        mean,
        marker="o",
        ms=3,
        lw=1.6,
        color=colour,
        label=f"{name} (avg {mean.mean():.2f}, final {mean[-1]:.2f})",
    )
    if np.any(sem > 0):
      ax.fill_between(x, mean - sem, mean + sem, color=colour, alpha=0.15, lw=0)
    ax.axhline(mean.mean(), color=colour, lw=0.8, ls="--", alpha=0.6)
  ylabel = "score (mean over the games of the episode)"
  if max_score is not None and max_score > 0:
    if top <= max_score / 3:  # The line would flatten the curves.
      ylabel += f"; game max {max_score:g}"
    else:
      ax.axhline(max_score, color="black", lw=0.8, ls=":", label="max score")
  ax.set_xlabel("episode")
  ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  ax.set_ylabel(ylabel, fontsize=9)
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(loc="best", fontsize=8)
  fig.tight_layout()
  with io_lib.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png")
  plt.close(fig)
  return path


def markdown_table(
    results: Mapping[str, Mapping[str, object]], *, max_episodes_shown: int = 50
) -> str:
  """A markdown table: per agent Avg, Final and the per-episode scores.

  Args:
    results: agent name -> {"avg", "final", "episode_scores": [E]}.
    max_episodes_shown: longer curves are elided in the middle.

  Returns:
    The table as a string.
  """
  lines = [
      "| agent | Avg | Final | per-episode scores |",
      "|---|---:|---:|---|",
  ]
  for name, r in results.items():
    scores = [float(s) for s in r["episode_scores"]]  # type: ignore[index]
    shown = [f"{s:g}" for s in scores]
    if len(shown) > max_episodes_shown:
      half = max_episodes_shown // 2
      shown = shown[:half] + ["..."] + shown[-half:]
    lines.append(
        f"| {name} | {float(r['avg']):.3f} | {float(r['final']):.3f} | "
        f"{' '.join(shown)} |"
    )
  return "\n".join(lines)
