"""Playing the MiniWoB++ suite: every agent on every task, one memory each.

Schedule: the tasks are **interleaved**, episode e of every task before
episode e + 1 of any (`schedule`). So every task's episode e meets a memory
holding e episodes of every task, the order of `config.tasks` biases no
task's curve (in sequence, the last task would meet a memory full of the
others and the first an empty one), and a killed suite has results for
every task so far. The price is one browser per task, open for the whole
run (about 100 MB each; `make bench` measures their latency).

An agent's memory spans the suite: experiences of every task and instance
go into one memory, and the task's utterance is a view of the state, so
that neighbours come from the same task and similar instances
(`configs/web_suite.py`). Episode e of a task is the page instance of seed
`instance_seed(seed, e)` for every agent; the act keys fold the global
episode index (`schedule` position) and the step into config.seed.

Run directory (resumable like a game run, `experiments/persistence.py`):

  config.json, <agent>/memory.npz, progress.json, steps.jsonl, results.json
  results.json        every agent's rewards and successes per task
  table.md            success rate of the last k episodes per task
  success_curves.png  success per episode, one panel per task
  strip.png           screenshots of one episode (config.screenshots)

Success is MiniWoB's: a final reward > 0.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from typing import Any, Callable, Mapping, Sequence

from absl import logging
import matplotlib

matplotlib.use("Agg")  # Files only; never a display.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import ml_collections
import numpy as np

from experiments import episodes
from experiments import persistence
from jitrl_jax import agents as agent_lib
from jitrl_jax import io as io_lib
from jitrl_jax import memory as memory_lib
from jitrl_jax.envs import base as envs_base

LAST_K = 10  # success rate of the last k episodes of a task
_COLOURS = {
    "static": "#7f7f7f",
    "jitrl": "#d62728",
    "jitrl-reference": "#1f77b4",
    "memory-prompt": "#2ca02c",
    "static-generate": "#9467bd",
    "jitrl-generate": "#ff7f0e",
}


def schedule(
    tasks: Sequence[str], episodes_per_task: int
) -> list[tuple[str, int]]:
  """The (task, episode of that task) of every global episode, interleaved."""
  return [(t, e) for e in range(episodes_per_task) for t in tasks]


def instance_seed(seed: int, episode: int) -> int:
  """The page seed of a task's episode `episode` in a run of seed `seed`."""
  return 1000 * int(seed) + int(episode)


def wilson_interval(
    successes: int, trials: int, z: float = 1.96
) -> tuple[float, float]:
  """Wilson's score interval of a success rate (95% for z = 1.96).

  Args:
    successes: how many trials succeeded.
    trials: how many there were.
    z: the normal quantile.

  Returns:
    (low, high); (nan, nan) for no trials.
  """
  if trials <= 0:
    return math.nan, math.nan
  p = successes / trials
  d = 1 + z * z / trials
  centre = (p + z * z / (2 * trials)) / d
  half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials**2)) / d
  return max(0.0, centre - half), min(1.0, centre + half)


# ---------------------------------------------------------------------------
# The browsers.


def make_task_envs(cfg) -> dict[str, envs_base.TextEnv]:
  """One MiniWoB++ environment (one browser) per task; all closed on error."""
  envs: dict[str, envs_base.TextEnv] = {}
  try:
    for task in cfg.tasks:
      envs[task] = envs_base.make_env(
          f"miniwob:{task}", **episodes.env_kwargs(cfg)
      )
  except BaseException:
    close_envs(envs)
    raise
  return envs


def close_envs(envs: Mapping[str, envs_base.TextEnv]) -> None:
  for env in envs.values():
    with contextlib.suppress(Exception):
      env.close()


# ---------------------------------------------------------------------------
# Screenshots.


class _Strip:
  """Screenshots of one episode: before every decision and at the end."""

  def __init__(self, directory: str):
    self.directory = directory
    self.frames: list[str] = []

  def __call__(self, step: int, envs) -> None:
    path = os.path.join(self.directory, f"step{step:02d}.png")
    with contextlib.suppress(Exception):  # a picture never ends a run
      self.frames.append(envs[0].screenshot(path))


def plot_strip(
    frames: Sequence[str], captions: Sequence[str], path: str, title: str
) -> str:
  """The frames side by side, each with its caption under it."""
  n = max(len(frames), 1)
  fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 3.6), squeeze=False)
  for ax, frame, caption in zip(axes[0], frames, captions):
    ax.imshow(plt.imread(frame))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(_wrap(caption, 26), fontsize=7)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  with io_lib.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
  plt.close(fig)
  return path


def _wrap(text: str, width: int) -> str:
  lines, line = [], ""
  for word in text.split():
    if line and len(line) + 1 + len(word) > width:
      lines.append(line)
      line = word
    else:
      line = f"{line} {word}".strip()
  return "\n".join(lines + [line])


def _strip_captions(rows, reward: float) -> list[str]:
  captions = [f"{r['step'] + 1}. {r['action']}" for r in rows]
  return captions + [f"end: reward {reward:.2f}"]


# ---------------------------------------------------------------------------
# One agent.


def _new_progress(cfg, agent_name: str, total: int) -> dict[str, Any]:
  return {
      **persistence.new_progress(cfg, agent_name),
      "episodes_total": total,
      "tasks": [],
  }


def run_web_agent(
    cfg: ml_collections.ConfigDict,
    agent_name: str,
    lm: agent_lib.LanguageModel,
    out_dir: str,
    envs: Mapping[str, envs_base.TextEnv],
    *,
    resume: bool,
    strip_path: str | None = None,
    after_episode: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
  """Runs (or resumes) one agent through the suite's schedule.

  Args:
    cfg: the suite config.
    agent_name: one of `agent_lib.AGENT_NAMES`.
    lm: the LM.
    out_dir: the agent's directory.
    envs: task -> its environment.
    resume: continue from out_dir's committed episodes.
    strip_path: where to draw config.screenshots' episode, if this agent
      plays it.
    after_episode: called with (agent, episodes committed) after a commit.

  Returns:
    The content of <out_dir>/results.json.
  """
  os.makedirs(out_dir, exist_ok=True)
  agent = episodes.cached_agent(agent_name, lm, cfg.agent.to_dict())
  files = persistence.AgentFiles.under(out_dir)
  slots = schedule(cfg.tasks, int(cfg.episodes))
  state, progress = persistence.start_or_resume(
      cfg, agent_name, agent, files, resume=resume
  )
  if progress["episodes_done"] == 0:
    progress = _new_progress(cfg, agent_name, len(slots))
  progress["episodes_total"] = len(slots)
  shots = _screenshot_slot(cfg, agent_name)
  for g in range(progress["episodes_done"], len(slots)):
    task, e = slots[g]
    t0 = time.time()
    strip = None
    with tempfile.TemporaryDirectory(prefix="jitrl-strip-") as frames:
      if strip_path and shots == (task, e):
        strip = _Strip(frames)
      trajectories, scores, rows, notes = episodes.play_episode(
          cfg,
          agent,
          state,
          lm,
          [envs[task]],
          g,
          agent_name,
          agent_lib.action_id(task),
          kill_at=None,
          position=0,
          game_seeds=[instance_seed(cfg.seed, e)],
          on_step=strip,
      )
      if strip is not None:
        plot_strip(
            strip.frames,
            _strip_captions(rows, scores[0]),
            strip_path,
            f"{agent_name} on {task}, episode {e + 1} (seed {cfg.seed}): "
            + envs[task].view_texts().task,
        )
    for r in rows:
      r["task"] = task
    state = agent.observe(state, trajectories)
    persistence.record_episode(
        progress,
        g,
        scores,
        time.time() - t0,
        notes,
        len(rows),
        int(memory_lib.size(state.memory)),
        1.0,
    )
    progress["tasks"].append(task)
    persistence.commit_episode(files, state, progress, rows)
    logging.info(
        "%s %s episode %d/%d: reward %.2f (%.1fs)",
        agent_name,
        task,
        e + 1,
        int(cfg.episodes),
        scores[0],
        time.time() - t0,
    )
    if after_episode is not None:
      after_episode(agent_name, g + 1)
  results = agent_results(cfg, agent_name, progress, lm, agent)
  persistence.write_json(files.results, results)
  return results


def _screenshot_slot(cfg, agent_name: str) -> tuple[str, int] | None:
  shots = cfg.get("screenshots")
  if not shots or shots.get("agent") != agent_name:
    return None
  if shots.get("task") not in cfg.tasks:
    return None
  return shots["task"], int(shots.get("episode", -1)) % int(cfg.episodes)


def agent_results(cfg, agent_name, progress, lm, agent) -> dict[str, Any]:
  """One agent's rewards and successes per task, with provenance."""
  per_task: dict[str, dict[str, list[float]]] = {
      t: {"rewards": [], "success": []} for t in cfg.tasks
  }
  for task, reward in zip(progress["tasks"], progress["episode_scores"]):
    per_task[task]["rewards"].append(float(reward))
    per_task[task]["success"].append(int(reward > 0))
  return {
      "agent": agent_name,
      "tasks": per_task,
      "episodes_per_task": int(cfg.episodes),
      "steps": int(cfg.steps),
      "decisions": progress["decisions"],
      "seconds": round(float(np.sum(progress["episode_seconds"])), 2),
      "memory_size": progress.get("memory_size", 0),
      "resumed_at": progress["resumed_at"],
      "seed": int(cfg.seed),
      "model": {"name": lm.name, "sha256": lm.sha256},
      "versions": persistence.versions(),
      "compiles": agent.num_compiles(),
  }


# ---------------------------------------------------------------------------
# The suite.


def success_table(per_agent: Mapping[str, Mapping[str, Any]], k: int) -> str:
  """Success rate of the last k episodes per task (one run), per agent."""
  agents = list(per_agent)
  tasks = list(next(iter(per_agent.values()))["tasks"])
  lines = [
      "| task | " + " | ".join(agents) + " |",
      "|---|" + "---:|" * len(agents),
  ]
  totals = {a: [0, 0] for a in agents}
  for task in tasks:
    cells = []
    for a in agents:
      last = per_agent[a]["tasks"][task]["success"][-k:]
      totals[a][0] += sum(last)
      totals[a][1] += len(last)
      cells.append(f"{sum(last)}/{len(last)}")
    lines.append(f"| {task} | " + " | ".join(cells) + " |")
  lines.append(
      "| **all** | "
      + " | ".join(f"**{s / n:.2f}**" if n else "-" for s, n in totals.values())
      + " |"
  )
  return "\n".join(lines)


def plot_success_curves(
    per_task: Mapping[str, Mapping[str, Sequence[Sequence[int]]]],
    path: str,
    *,
    window: int = 5,
    title: str = "",
) -> str:
  """Success per episode, one panel per task, a line per agent.

  Args:
    per_task: task -> agent -> runs (seeds) -> [E] successes (0 or 1).
    path: the PNG.
    window: the trailing moving-average window (episodes).
    title: the figure's title.

  Returns:
    path.
  """
  tasks = list(per_task)
  cols = 4
  rows = math.ceil(len(tasks) / cols)
  fig, axes = plt.subplots(
      rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False
  )
  for ax, task in zip(axes.flat, tasks):
    for agent, runs in per_task[task].items():
      runs = [np.asarray(r, np.float64) for r in runs if len(r)]
      if not runs:
        continue
      e = min(len(r) for r in runs)
      mean = np.mean([r[:e] for r in runs], axis=0)
      smooth = [mean[max(0, i - window + 1) : i + 1].mean() for i in range(e)]
      ax.plot(
          np.arange(1, e + 1),
          smooth,
          color=_COLOURS.get(agent),
          lw=1.4,
          label=agent,
      )
    ax.set_title(task, fontsize=9)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
  for ax in list(axes.flat)[len(tasks) :]:
    ax.axis("off")
  handles, labels = axes.flat[0].get_legend_handles_labels()
  fig.legend(
      handles,
      labels,
      loc="lower center",
      bbox_to_anchor=(0.5, 0.0),
      ncol=len(labels),
      fontsize=8,
  )
  fig.supxlabel(
      f"episode of the task (success, mean of the last {window})",
      y=0.045,
      fontsize=9,
  )
  fig.suptitle(title, fontsize=10)
  fig.tight_layout(rect=(0, 0.07, 1, 1))
  with io_lib.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
  plt.close(fig)
  return path


def check_config(cfg) -> None:
  """Raises ConfigError on a suite config that cannot run."""
  if not list(cfg.get("tasks", ())):
    raise episodes.ConfigError("config.tasks is empty: name MiniWoB++ tasks")
  if len(set(cfg.tasks)) != len(cfg.tasks):
    raise episodes.ConfigError(f"config.tasks lists a task twice: {cfg.tasks}")
  if int(cfg.episodes) < 1 or int(cfg.steps) < 1:
    raise episodes.ConfigError("config.episodes and config.steps must be >= 1")
  if int(cfg.batch_size) != 1:
    raise episodes.ConfigError("the web suite plays one page at a time")


def run_web_suite(
    cfg: ml_collections.ConfigDict,
    run_dir: str,
    *,
    resume: bool = False,
    lm: agent_lib.LanguageModel | None = None,
    after_episode: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
  """Runs (or resumes) every agent of the suite; writes results and figures.

  Raises:
    ConfigError, UnknownAgentError, UnknownGameError,
    EnvironmentUnavailableError, RunDirError: bad input, before any
    episode is played.
  """
  check_config(cfg)
  agents = episodes._agent_names(cfg)  # pylint: disable=protected-access
  episodes.check_agent_config(cfg)
  episodes.check_generating_agents(cfg, agents, lm)
  with persistence.run_lock(run_dir):
    config_path = os.path.join(run_dir, "config.json")
    persistence.refuse_existing_run(config_path, run_dir, resume)
    if resume and os.path.exists(config_path):
      persistence.check_resumed_config(config_path, cfg)
    envs = make_task_envs(cfg)  # an unknown task fails here, in seconds
    try:
      os.makedirs(run_dir, exist_ok=True)
      if not os.path.exists(config_path):
        persistence.write_json(config_path, cfg.to_dict())
      if lm is None:
        lm = episodes.build_language_model(cfg)
      per_agent = {
          name: run_web_agent(
              cfg,
              name,
              lm,
              os.path.join(run_dir, name),
              envs,
              resume=resume,
              strip_path=os.path.join(run_dir, "strip.png"),
              after_episode=after_episode,
          )
          for name in agents
      }
    finally:
      close_envs(envs)
    return write_suite_results(cfg, run_dir, per_agent, lm)


def write_suite_results(cfg, run_dir, per_agent, lm) -> dict[str, Any]:
  """table.md, success_curves.png and results.json of a suite run."""
  table = success_table(per_agent, LAST_K)
  persistence.write_text(os.path.join(run_dir, "table.md"), table + "\n")
  curves = {
      t: {a: [r["tasks"][t]["success"]] for a, r in per_agent.items()}
      for t in cfg.tasks
  }
  plot = plot_success_curves(
      curves,
      os.path.join(run_dir, "success_curves.png"),
      title=f"MiniWoB++, seed {cfg.seed}: LM {lm.name}",
  )
  strip = os.path.join(run_dir, "strip.png")
  results = {
      "suite": "miniwob",
      "tasks": list(cfg.tasks),
      "seed": int(cfg.seed),
      "episodes_per_task": int(cfg.episodes),
      "steps": int(cfg.steps),
      "agents": {
          n: {k: r[k] for k in ("tasks", "decisions", "seconds", "memory_size")}
          for n, r in per_agent.items()
      },
      "table": table,
      "plot": plot,
      "strip": strip if os.path.exists(strip) else None,
      "model": {"name": lm.name, "sha256": lm.sha256},
      "versions": persistence.versions(),
  }
  persistence.write_json(os.path.join(run_dir, "results.json"), results)
  return results
