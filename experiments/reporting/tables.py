"""Markdown and figures of a text-game report (see runs.build_report).

Per-run and pooled tables, the paragraph that states the pooled means and
the tests, a game's and a whole report's markdown, and the PNG of the
learning curves; md_row is the markdown table row the headline uses too.
"""

from __future__ import annotations

import math
import os
import textwrap
from typing import Any, Mapping, Sequence

import numpy as np

from experiments.reporting import runs as runs_lib
from jitrl_jax import io as io_lib

# ------------------------------------------------------------- markdown --


def _short(x: float) -> str:
  """One decimal, without a trailing ".0": 32.0 -> "32", 34.67 -> "34.7"."""
  text = f"{x:.1f}"
  return text[:-2] if text.endswith(".0") else text


def format_p(p: float) -> str:
  """A p-value: two decimals from 0.1 up, three below, "< 0.001" below that.

  Args:
    p: the p-value.

  Returns:
    e.g. "0.25", "0.050", "0.006", "< 0.001".
  """
  if p < 0.001:
    return "< 0.001"
  return f"{p:.2f}" if p >= 0.1 else f"{p:.3f}"


def _and(items: Sequence[str]) -> str:
  items = list(items)
  if len(items) <= 2:
    return " and ".join(items)
  return ", ".join(items[:-1]) + " and " + items[-1]


def per_run_table(game: Mapping[str, Any]) -> str:
  """The per-run markdown table of one game's report.

  Args:
    game: a game_report.

  Returns:
    One row per seed and agent: Avg, Final, first-k and last-k means and the
    per-episode scores.
  """
  k = game["k"]
  lines = [
      f"| seed | agent | Avg | Final | first {k} episodes | last {k} episodes"
      " | per-episode scores |",
      "|---|---|---:|---:|---:|---:|---|",
  ]
  for r in game["runs"]:
    scores = " ".join(f"{s:g}" for s in r["episode_scores"])
    lines.append(
        f"| {r['seed']} | {r['agent']} | {r['avg']:.1f} | {r['final']:g} | "
        f"{_short(r['first_k'])} | {_short(r['last_k'])} | {scores} |"
    )
  return "\n".join(lines)


def pooled_table(game: Mapping[str, Any]) -> str:
  """The pooled markdown table of one game's report.

  Args:
    game: a game_report.

  Returns:
    One row per agent: the mean over seeds of each per-run statistic with
    its bootstrap interval, and the p-values of the last-k test against the
    baseline (over runs, and over episodes for comparison).
  """
  k, base = game["k"], game["baseline"]
  lines = [
      f"| agent | runs | Avg | Final | first {k} episodes | last {k} episodes"
      f" | last {k} > {base}: p, runs | p, episodes (invalid) |",
      "|---|---:|---|---|---|---|---:|---:|",
  ]
  for agent, entry in game["pooled"].items():
    cells = []
    for stat in runs_lib.STATISTICS:
      mean, (low, high) = entry[stat]["mean"], entry[stat]["ci"]
      cells.append(f"{mean:.1f} [{low:.1f}, {high:.1f}]")
    test = game["comparisons"].get(agent)
    p_runs = format_p(test["runs"]["p"]) if test else ""
    p_eps = format_p(test["episodes"]["p"]) if test else ""
    lines.append(md_row([agent, str(entry["runs"]), *cells, p_runs, p_eps]))
  return "\n".join(lines)


def summary_text(game: Mapping[str, Any]) -> str:
  """A paragraph stating the pooled means and the tests of one game.

  Args:
    game: a game_report.

  Returns:
    Markdown prose (one paragraph, wrapped at 78 columns).
  """
  k, base = game["k"], game["baseline"]
  pooled, tests = game["pooled"], game["comparisons"]
  agents = [a for a in pooled if a != base]
  n_seeds = len(game["seeds"])
  seeds = _and([str(s) for s in game["seeds"]])

  def means(stat):
    shown = agents + [base] * (base in pooled)
    return _and([f"{pooled[a][stat]['mean']:.1f} for `{a}`" for a in shown])

  text = (
      f"Over the {n_seeds} seeds ({seeds}) the last {k} episodes average "
      f"{means('last_k')} (the first {k}: {means('first_k')})."
  )
  sizes = {tuple(t["runs"]["n"]) for t in tests.values()}
  if len(sizes) > 1:  # Agents with different numbers of runs.
    runs_p = _and(
        [f"{format_p(tests[a]['runs']['p'])} for `{a}`" for a in tests]
    )
    eps_p = _and([format_p(tests[a]["episodes"]["p"]) for a in tests])
    n_base = next(iter(tests.values()))["runs"]["n"][1]
    floors = _and(
        [
            f"{format_p(tests[a]['runs']['min_p'])} for `{a}`"
            f" ({tests[a]['runs']['n'][0]} run"
            f"{'s' * (tests[a]['runs']['n'][0] != 1)})"
            for a in tests
        ]
    )
    text += (
        f" A one-sided Mann-Whitney test of each agent's per-run last-{k}"
        f" means against `{base}`'s {n_base} (the unit is the run: episodes"
        f" of one run are not independent) gives p = {runs_p}; the smallest"
        f" p each can give is {floors}. The same test on the pooled last-{k}"
        f" episode scores gives p = {eps_p}, but it counts each episode as"
        " an independent sample, which it is not (its score depends on the"
        " memory the earlier episodes wrote), so those p-values are not"
        " valid; they are shown only for comparison."
    )
  elif tests:
    n_runs, n_base = next(iter(tests.values()))["runs"]["n"]
    runs_p = _and(
        [f"{format_p(tests[a]['runs']['p'])} for `{a}`" for a in tests]
    )
    eps_p = _and([format_p(tests[a]["episodes"]["p"]) for a in tests])
    n_eps = next(iter(tests.values()))["episodes"]["n"]
    min_p = next(iter(tests.values()))["runs"]["min_p"]
    text += (
        f" A one-sided Mann-Whitney test of each agent's {n_runs} per-run"
        f" last-{k} means against `{base}`'s {n_base} (the unit is the run:"
        f" episodes of one run are not independent) gives p = {runs_p};"
        f" {format_p(min_p)} is the smallest p that {n_runs} runs against"
        f" {n_base} can give (1 of the"
        f" {math.comb(n_runs + n_base, n_runs)} ways to split them). The"
        f" same test on the {n_eps[0]} against {n_eps[1]} pooled last-{k}"
        f" episode scores gives p = {eps_p}, but it counts each episode as"
        " an independent sample, which it is not (its score depends on the"
        " memory the earlier episodes wrote), so those p-values are not"
        " valid; they are shown only for comparison."
    )
  text += (
      f" Brackets: 95% bootstrap interval over seeds (with {n_seeds} seeds,"
      " from the lowest seed's value to the highest's). Method:"
      " `experiments/report.py`."
      if n_seeds <= 3
      else f" Brackets: {game['level']:.0%} bootstrap interval over seeds."
      " Method: `experiments/report.py`."
  )
  return _wrap(text)


def _wrap(text: str, width: int = 78) -> str:
  return textwrap.fill(
      text, width=width, break_long_words=False, break_on_hyphens=False
  )


def game_markdown(
    game: Mapping[str, Any], figure: str | None = None, source: str = ""
) -> str:
  """The markdown of one game: figure, per-run table, pooled table, prose.

  Args:
    game: a game_report.
    figure: the figure's path as the markdown should link it, if any.
    source: what the runs were read from, for the "generated" comment.

  Returns:
    Markdown text, no trailing newline.
  """
  parts = []
  if source:
    parts.append(
        "<!-- Generated by `make report` (experiments/report.py) from "
        f"{source}; do not edit by hand. -->"
    )
  if figure:
    agents = len(game["pooled"])
    parts.append(
        f"![{game['game']}: {agents} agents, {game['episodes']} episodes,"
        f" mean of {len(game['seeds'])} seeds, band from the lowest to the"
        f" highest seed]({figure})"
    )
  parts += [per_run_table(game), pooled_table(game), summary_text(game)]
  return "\n\n".join(parts)


def report_markdown(report: Mapping[str, Any], figures=None) -> str:
  """The markdown of a whole report, one section per game.

  Args:
    report: a build_report.
    figures: game -> figure path to link, if any.

  Returns:
    Markdown text ending in a newline.
  """
  figures = figures or {}
  parts = ["# Results", ""]
  for name, game in report["games"].items():
    parts += [f"## {name}", "", game_markdown(game, figures.get(name)), ""]
  return "\n".join(parts)


# -------------------------------------------------------------- figures --


def plot_pooled_curves(game: Mapping[str, Any], path: str) -> str:
  """Writes a PNG of one game's learning curves, mean over seeds, with bands.

  One panel per agent other than the baseline, each showing that agent and
  the baseline (one panel when there is no baseline): every episode's score,
  mean over seeds, with a band from the lowest to the highest seed and a
  dashed line at the mean over all episodes. Colours are
  experiments.plotting's.

  Args:
    game: a game_report.
    path: the PNG to write (atomically); parent folders are created.

  Returns:
    The path written.
  """
  # pylint: disable=g-import-not-at-top
  from experiments import plotting  # Sets the Agg backend.
  from matplotlib import ticker
  import matplotlib.pyplot as plt

  # pylint: enable=g-import-not-at-top

  colours = plotting._COLOURS  # pylint: disable=protected-access
  curves, base, k = game["curves"], game["baseline"], game["k"]
  others = [a for a in curves if a != base]
  panels = [[base, a] for a in others] if base in curves and others else []
  panels = panels or [list(curves)]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig, axes = plt.subplots(
      1,
      len(panels),
      figsize=(0.6 + 3.6 * len(panels), 3.8),
      dpi=120,
      sharey=True,
      squeeze=False,
  )
  order = list(curves)
  for ax, agents in zip(axes[0], panels):
    for agent in agents:
      curve = curves[agent]
      mean = np.asarray(curve["mean"])
      x = np.arange(1, mean.size + 1)
      colour = colours.get(agent, f"C{order.index(agent)}")
      last = game["pooled"][agent]["last_k"]["mean"]
      ax.plot(
          x,
          mean,
          marker="o",
          ms=3,
          lw=1.6,
          color=colour,
          label=f"{agent} (avg {mean.mean():.1f}, last {k} {last:.1f})",
      )
      if len(game["seeds"]) > 1:
        ax.fill_between(
            x, curve["low"], curve["high"], color=colour, alpha=0.15, lw=0
        )
      ax.axhline(mean.mean(), color=colour, lw=0.8, ls="--", alpha=0.6)
    ax.set_xlabel("episode")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
  axes[0][0].set_ylabel("score")
  seeds = ", ".join(str(s) for s in game["seeds"])
  fig.suptitle(
      f"{game['game']}: score per episode, mean of seeds {seeds}; band: "
      "lowest to highest seed",
      fontsize=10,
  )
  fig.tight_layout()
  with io_lib.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", metadata={"Software": None})
  plt.close(fig)
  return path


def md_row(cells: Sequence[str]) -> str:
  """A markdown table row; an empty cell is one space."""
  return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


# ---------------------------------------------------------------- suite --


def suite_table(report: Mapping[str, Any]) -> str:
  """The paper's layout: one row per game and agent, Avg, Final, last-k.

  With several seeds each cell is the mean over seeds; the runs column
  says how many.

  Args:
    report: a build_report of several games.

  Returns:
    A markdown table.
  """
  k = report["k"]
  lines = [
      md_row(["game", "agent", "runs", "Avg", "Final", f"last-{k} mean"]),
      md_row(["---", "---", "---:", "---:", "---:", "---:"]),
  ]
  for name, game in report["games"].items():
    for agent, entry in game["pooled"].items():
      lines.append(
          md_row(
              [
                  name.split(":")[-1],
                  f"`{agent}`",
                  str(entry["runs"]),
                  _short(entry["avg"]["mean"]),
                  _short(entry["final"]["mean"]),
                  _short(entry["last_k"]["mean"]),
              ]
          )
      )
  return "\n".join(lines)


def plot_suite_curves(report: Mapping[str, Any], path: str) -> str:
  """Writes a PNG with one panel per game: every agent's learning curve.

  Args:
    report: a build_report of several games.
    path: the PNG to write (atomically); parent folders are created.

  Returns:
    The path written.
  """
  # pylint: disable=g-import-not-at-top
  from experiments import plotting  # Sets the Agg backend.
  from matplotlib import ticker
  import matplotlib.pyplot as plt

  # pylint: enable=g-import-not-at-top

  colours = plotting._COLOURS  # pylint: disable=protected-access
  games = list(report["games"].items())
  cols = min(4, len(games))
  rows = -(-len(games) // cols)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig, axes = plt.subplots(
      rows, cols, figsize=(3.3 * cols, 2.9 * rows), dpi=110, squeeze=False
  )
  for ax in axes.flat[len(games) :]:
    ax.axis("off")
  for ax, (name, game) in zip(axes.flat, games):
    for i, (agent, curve) in enumerate(game["curves"].items()):
      mean = np.asarray(curve["mean"])
      ax.plot(
          np.arange(1, mean.size + 1),
          mean,
          marker="o",
          ms=2.5,
          lw=1.4,
          color=colours.get(agent, f"C{i}"),
          label=agent,
      )
    ax.set_title(name.split(":")[-1], fontsize=9)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
  axes[0][0].legend(fontsize=7)
  seeds = sorted({s for _, g in games for s in g["seeds"]})
  fig.suptitle(
      "score per episode (x: episode), seed"
      + ("s " if len(seeds) > 1 else " ")
      + ", ".join(str(s) for s in seeds)
      + (" (mean)" if len(seeds) > 1 else ""),
      fontsize=9,
  )
  fig.tight_layout()
  with io_lib.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", metadata={"Software": None})
  plt.close(fig)
  return path
