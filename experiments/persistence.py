"""A text-game run on disk: run directories, progress, resume, step logs.

Run directory (see experiments/run_text_game.py):

  config.json            the config of the run
  <agent>/memory.npz     memory + progress (the commit point, atomic)
  <agent>/progress.json  the same progress, readable
  <agent>/steps.jsonl    one line per step: |N(s)|, V, Q, A, beta, pi, pi', ...
  <agent>/results.json   the agent's scores and provenance
  results.json           every agent: Avg, Final, per-episode scores
  learning_curve.png     the agents' learning curves on one plot
  table.md               the results table

An episode is committed in this order: its step lines are appended to
steps.jsonl (fsynced), then memory.npz is replaced atomically (the commit
point: it holds the memory and the progress), then progress.json. A run
killed between two commits resumes from memory.npz; `start_or_resume` drops
the step lines of episodes that memory.npz does not hold.

While a run uses its directory it holds an exclusive lock on `<run_dir>/.lock`
(`run_lock`): a second process on the same directory stops with an error that
names the first one's process id. The lock is an `fcntl.flock`, which the
kernel releases when its process dies, so the lock file of a killed run is
simply taken over. A resumed run must have the stored config.json's settings
(only `RESUMABLE_KEYS` may change).

Provenance (`versions`, the ROM's md5, the model's sha256) goes into every
results.json. Every file is written with `jitrl_jax.io`'s atomic writers,
except steps.jsonl, which is appended to.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import glob
import importlib.metadata
import json
import os
import platform
import signal
from typing import Any, NamedTuple, Sequence, TYPE_CHECKING

import jax
import ml_collections
import numpy as np

from experiments import plotting
from jitrl_jax import io as io_lib
from jitrl_jax import memory as memory_lib
from jitrl_jax.envs import base as envs_base

if TYPE_CHECKING:
  from jitrl_jax import agents as agent_lib

PROGRESS_FORMAT = 1
# Config keys a resumed run may change (a run can be extended).
# The scoring layout changes how fast the LM pass runs, not the scores
# (packing.packed_score_fn equals the padded pass), so a run may resume on
# the other one. Every agent plays in its own directory with its own memory,
# so a resumed run may name more agents or fewer (the results then cover
# the agents named).
RESUMABLE_KEYS = frozenset(
    {"episodes", "runs_root", "agent.scoring_layout", "agents"}
)


class RunDirError(RuntimeError):
  """The run directory does not match the request (exists, or missing)."""


# ---------------------------------------------------------------------------
# Files and provenance.


def write_text(path: str, text: str) -> None:
  """Writes a run file atomically (creating its directory if needed)."""
  io_lib.atomic_write_text(path, text, make_parents=True)


def write_json(path: str, obj: Any) -> None:
  """Writes a run file as indented JSON, atomically."""
  io_lib.atomic_write_json(path, obj, indent=1, make_parents=True)


def read_step_logs(path: str, *, before_episode: int | None = None):
  """Reads steps.jsonl; skips torn lines and episodes >= before_episode."""
  out = []
  if not os.path.exists(path):
    return out
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        continue  # A line torn by a kill.
      if before_episode is None or row.get("episode", 0) < before_episode:
        out.append(row)
  return out


def _step_lines(rows: Sequence[dict[str, Any]]) -> str:
  return "".join(json.dumps(r) + "\n" for r in rows)


def append_step_logs(path: str, rows: Sequence[dict[str, Any]]) -> None:
  """Appends one episode's step lines to steps.jsonl and fsyncs them."""
  with open(path, "a", encoding="utf-8") as f:
    f.write(_step_lines(rows))
    f.flush()
    os.fsync(f.fileno())


def versions() -> dict[str, str]:
  """Python, package versions and the JAX backend, for results.json."""
  out = {"python": platform.python_version()}
  for pkg in (
      "jitrl-jax",
      "jax",
      "jaxlib",
      "flax",
      "numpy",
      "transformers",
      "jericho",
      "textworld-express",
      "ml-collections",
  ):
    try:
      out[pkg] = importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
      pass
  out["jax_backend"] = jax.default_backend()
  return out


def rom_md5(envs: Sequence[envs_base.TextEnv]) -> str:
  """md5 of the games' ROM file, or "" where the game has none."""
  if getattr(envs[0], "rom_path", None):
    return io_lib.file_md5(envs[0].rom_path)
  return ""


# ---------------------------------------------------------------------------
# The run directory.


def resolve_run_dir(cfg, run_dir: str | None, resume: bool) -> str:
  """The run directory: given, latest of the config (resume), or new."""
  root = os.path.join(cfg.get("runs_root", "runs"), cfg.name)
  if run_dir:
    if resume and not os.path.isdir(run_dir):
      raise RunDirError(f"--resume: run directory {run_dir} does not exist")
    return run_dir
  if resume:
    found = sorted(glob.glob(os.path.join(root, "*", "config.json")))
    if not found:
      raise RunDirError(
          f"--resume: no run of config {cfg.name!r} under "
          f"{root}; pass --run_dir"
      )
    return os.path.dirname(found[-1])
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  return os.path.join(root, stamp)


@contextlib.contextmanager
def run_lock(run_dir: str):
  """Holds `<run_dir>/.lock` exclusively while the block runs.

  Raises:
    RunDirError: another live process holds it (its pid is named).
  """
  os.makedirs(run_dir, exist_ok=True)
  path = os.path.join(run_dir, ".lock")
  with open(path, "a+", encoding="utf-8") as f:
    try:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "unknown"
      raise RunDirError(
          f"{run_dir} is in use by another run (process {holder}); wait for "
          "it to end or choose another --run_dir"
      ) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    try:
      yield
    finally:
      fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _json_form(obj: Any) -> Any:
  """obj as config.json stores it (tuples become lists)."""
  return json.loads(json.dumps(obj))


def _differences(stored: Any, current: Any, prefix: str = "") -> list[str]:
  """'key: stored -> current' for every leaf that differs.

  A key the stored config lacks whose current value is empty ((), [] or
  None) is no difference: a setting added to the library after the run
  started, at its neutral default (e.g. `view_floors`), changes nothing.
  """
  if stored == "<absent>" and current in ((), [], None):
    return []
  if isinstance(stored, dict) and isinstance(current, dict):
    out = []
    for key in sorted(set(stored) | set(current)):
      name = f"{prefix}{key}"
      if name in RESUMABLE_KEYS:
        continue
      out += _differences(
          stored.get(key, "<absent>"), current.get(key, "<absent>"), name + "."
      )
    return out
  if stored != current:
    return [f"{prefix.rstrip('.')}: {stored!r} -> {current!r}"]
  return []


def check_resumed_config(config_path: str, cfg: ml_collections.ConfigDict):
  """Raises RunDirError if cfg differs from the run's stored config.json."""
  try:
    with open(config_path, encoding="utf-8") as f:
      stored = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise RunDirError(f"cannot read the stored config {config_path}: {e}")
  diffs = _differences(stored, _json_form(cfg.to_dict()))
  if diffs:
    shown = "; ".join(diffs[:6]) + ("; ..." if len(diffs) > 6 else "")
    raise RunDirError(
        f"--resume with another config than the run's {config_path}: "
        f"{shown}. Resume with the same config (only "
        f"{', '.join(sorted(RESUMABLE_KEYS))} may change) or start a new "
        "--run_dir"
    )


def refuse_existing_run(config_path: str, run_dir: str, resume: bool) -> None:
  """Raises RunDirError when run_dir holds a run and resume is off."""
  if os.path.exists(config_path) and not resume:
    raise RunDirError(
        f"{run_dir} already holds a run; pass --resume to "
        "continue it or choose another --run_dir"
    )


# ---------------------------------------------------------------------------
# One agent: progress, commits, resume.


class AgentFiles(NamedTuple):
  """The files of one agent's directory."""

  directory: str
  memory: str  # memory.npz, the commit point
  steps: str  # steps.jsonl
  progress: str  # progress.json
  results: str  # results.json

  @classmethod
  def under(cls, out_dir: str) -> AgentFiles:
    return cls(
        out_dir,
        os.path.join(out_dir, "memory.npz"),
        os.path.join(out_dir, "steps.jsonl"),
        os.path.join(out_dir, "progress.json"),
        os.path.join(out_dir, "results.json"),
    )


def new_progress(cfg: ml_collections.ConfigDict, agent_name: str):
  """The progress of an agent that has played no episode."""
  return {
      "format": PROGRESS_FORMAT,
      "agent": agent_name,
      "game": cfg.game,
      "episodes_done": 0,
      "episodes_total": int(cfg.episodes),
      "episode_scores": [],
      "game_scores": [],
      "episode_seconds": [],
      "reward_notes": [],
      "decisions": 0,
      "resumed_at": [],
  }


def start_or_resume(
    cfg: ml_collections.ConfigDict,
    agent_name: str,
    agent: agent_lib.TextGameAgent,
    files: AgentFiles,
    *,
    resume: bool,
):
  """The agent's state and progress: fresh, or from its committed episodes.

  Args:
    cfg: the experiment config.
    agent_name: the agent.
    agent: the agent (its `init` and `restore`).
    files: the agent's files.
    resume: continue from the committed episodes; without it an existing
      memory.npz is an error.

  Returns:
    (agent state, progress dict).

  Raises:
    RunDirError: the directory holds a run and resume is off.
  """
  state = agent.init()
  progress = new_progress(cfg, agent_name)
  remove_stale_temp_files(files.memory)
  if os.path.exists(files.memory):
    if not resume:
      raise RunDirError(
          f"{files.directory} already holds a run; pass --resume to continue "
          "it or choose another --run_dir"
      )
    memory, meta = memory_lib.load(
        files.memory, view_sizes=agent.settings.view_sizes
    )
    if "progress" not in meta or "action_texts" not in meta:
      raise RunDirError(
          f"{files.memory} has no run progress in its metadata (it was not "
          "written by this runner), so the run cannot be resumed from it; "
          "move it away or choose another --run_dir"
      )
    progress = meta["progress"]
    if progress.get("agent", agent_name) != agent_name:
      raise RunDirError(
          f"{files.memory} holds agent {progress.get('agent')!r}, not "
          f"{agent_name!r}"
      )
    state = agent.restore(
        memory,
        {int(k): v for k, v in meta["action_texts"].items()},
        progress["episodes_done"],
    )
    progress["resumed_at"].append(progress["episodes_done"])
    progress["episodes_total"] = int(cfg.episodes)
    # Drop step lines of the episode that was running when the run died.
    rows = read_step_logs(files.steps, before_episode=progress["episodes_done"])
    write_text(files.steps, _step_lines(rows))
  elif os.path.exists(files.steps):
    os.remove(files.steps)  # Nothing committed: start clean.
  return state, progress


def record_episode(
    progress: dict[str, Any],
    episode: int,
    game_scores: Sequence[float],
    seconds: float,
    notes: Sequence[str],
    num_rows: int,
    memory_size: int,
    max_score: float,
) -> float:
  """Adds a played episode to the progress; returns its mean score."""
  mean_score = float(np.mean(game_scores))
  progress["episodes_done"] = episode + 1
  progress["episode_scores"].append(mean_score)
  progress["game_scores"].append([float(s) for s in game_scores])
  progress["episode_seconds"].append(round(seconds, 3))
  progress["reward_notes"].append(notes)
  progress["decisions"] += num_rows
  progress["memory_size"] = memory_size
  progress["max_score"] = max_score
  return mean_score


KILL_PHASES = ("logged", "saving")


def _die_while_saving(path: str) -> None:
  """Testing hook: SIGKILL mid-write of `path`'s temporary file.

  Leaves what a kill during `memory.save` leaves: a partial temporary file
  beside the untouched `path`.
  """
  directory, name = os.path.split(os.path.abspath(path))
  with open(os.path.join(directory, f".{name}.killed.tmp"), "wb") as f:
    f.write(b"PK\x03\x04 partial npz")
    f.flush()
    os.fsync(f.fileno())
  os.kill(os.getpid(), signal.SIGKILL)


def remove_stale_temp_files(path: str) -> list[str]:
  """Removes temporary files a killed writer of `path` left behind."""
  directory, name = os.path.split(os.path.abspath(path))
  stale = glob.glob(os.path.join(directory, f".{glob.escape(name)}.*tmp"))
  for p in stale:
    os.remove(p)
  return stale


def commit_episode(
    files: AgentFiles,
    state: agent_lib.AgentState,
    progress: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    *,
    kill: str | None = None,
) -> None:
  """Writes an episode: step lines, then memory.npz (the commit), progress.

  Args:
    files: the agent's files.
    state: the agent after the episode.
    progress: its progress.
    rows: the episode's step lines.
    kill: testing hook (`KILL_PHASES`): SIGKILL after the step lines are
      written ("logged") or while memory.npz is written ("saving").
  """
  append_step_logs(files.steps, rows)
  if kill == "logged":
    os.kill(os.getpid(), signal.SIGKILL)
  if kill == "saving":
    _die_while_saving(files.memory)
  memory_lib.save(
      state.memory,
      files.memory,
      metadata={
          "progress": progress,
          "action_texts": {str(k): v for k, v in state.action_texts.items()},
      },
  )
  write_json(files.progress, progress)


# ---------------------------------------------------------------------------
# Results.


def agent_results(
    cfg: ml_collections.ConfigDict,
    agent_name: str,
    progress: dict[str, Any],
    *,
    lm: agent_lib.LanguageModel,
    compiles: Any,
    rom_md5_hex: str,
    max_score: float,
) -> dict[str, Any]:
  """The content of <agent>/results.json: scores and provenance."""
  total = int(cfg.episodes)
  summary = plotting.summarise_scores(progress["episode_scores"])
  results = {
      "agent": agent_name,
      "game": cfg.game,
      "episodes": total,
      "steps": int(cfg.steps),
      "batch_size": int(cfg.batch_size),
      "avg": summary["avg"],
      "final": summary["final"],
      "best": summary["best"],
      "episode_scores": progress["episode_scores"],
      "game_scores": progress["game_scores"],
      "max_score": progress.get("max_score", max_score),
      "memory_size": progress.get("memory_size", 0),
      "decisions": progress["decisions"],
      "seconds": round(float(np.sum(progress["episode_seconds"])), 2),
      "resumed_at": progress["resumed_at"],
      "reward_notes": progress["reward_notes"],
      "seeds": {
          "seed": int(cfg.seed),
          "game_seed": int(cfg.game_seed),
          "vary_game_seed": bool(cfg.get("vary_game_seed", False)),
      },
      "model": {"name": lm.name, "sha256": lm.sha256},
      "rom_md5": rom_md5_hex or progress.get("rom_md5", ""),
      "versions": versions(),
      "compiles": compiles,
  }
  # Not written anywhere after this point (progress.json and memory.npz were
  # committed before); kept as it was.
  progress["rom_md5"] = results["rom_md5"]
  return results


_SUMMARY_KEYS = (
    "avg",
    "final",
    "best",
    "episode_scores",
    "memory_size",
    "seconds",
    "decisions",
)


def write_experiment_results(
    cfg: ml_collections.ConfigDict,
    run_dir: str,
    per_agent: dict[str, dict[str, Any]],
    *,
    lm: agent_lib.LanguageModel,
    plot_path: Any,
) -> dict[str, Any]:
  """Writes table.md and results.json of the run; returns the results."""
  table = plotting.markdown_table(per_agent)
  write_text(os.path.join(run_dir, "table.md"), table + "\n")
  first = next(iter(per_agent.values()))
  results = {
      "game": cfg.game,
      "agents": {
          n: {k: r[k] for k in _SUMMARY_KEYS} for n, r in per_agent.items()
      },
      "plot": plot_path,
      "table": table,
      "seeds": first["seeds"],
      "model": {"name": lm.name, "sha256": lm.sha256},
      "rom_md5": first["rom_md5"],
      "versions": versions(),
  }
  write_json(os.path.join(run_dir, "results.json"), results)
  return results
