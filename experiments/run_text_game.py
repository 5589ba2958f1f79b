r"""Runs JitRL and its baselines on a text game, episode after episode.

  python -m experiments.run_text_game --config=experiments/configs/demo.py
  python -m experiments.run_text_game --config=experiments/configs/text_game.py \
      --config.game=jericho:detective --config.episodes=10
  python -m experiments.run_text_game --config=... --run_dir=runs/x --resume

Each agent of `config.agents` plays `config.episodes` episodes of at most
`config.steps` steps; an episode is a batch of `config.batch_size` games
played side by side (one batched device call per step) and its score is the
mean of their final scores. After every episode the agent's memory is written
(atomically) together with the run's progress, so a killed run continues with
`--resume`: finished episodes stay as they are and the run goes on to E.
Decision keys and game seeds are functions of (seed, episode, step), so every
agent sees the same games and a resumed run equals an uninterrupted one.

Run directory:

  config.json            the config of the run
  <agent>/memory.npz     memory + progress (the commit point, atomic)
  <agent>/progress.json  the same progress, readable
  <agent>/steps.jsonl    one line per step: |N(s)|, V, Q, A, beta, pi, pi', ...
  <agent>/results.json   the agent's scores and provenance
  results.json           every agent: Avg, Final, per-episode scores
  learning_curve.png     the agents' learning curves on one plot
  table.md               the results table
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import hashlib
import importlib.metadata
import json
import logging as py_logging
import os
import platform
import signal
import sys
import time
from typing import Any, Callable, Sequence

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
from ml_collections import config_flags
import numpy as np

from experiments import plotting
from jitrl_jax import agent as agent_lib
from jitrl_jax import memory as memory_lib
from jitrl_jax.envs import base as envs_base


def _define_flags() -> None:
  """Defines the command-line flags (only when run as a program).

  Defining them at import time would clash with other experiments' flags of
  the same name (`--config`) in any process that imports both.
  """
  global _CONFIG, _RUN_DIR, _RESUME, _CRASH_AFTER, _KILL_AT
  _CONFIG = config_flags.DEFINE_config_file(
      "config", "experiments/configs/demo.py", "Experiment config file."
  )
  _RUN_DIR = flags.DEFINE_string(
      "run_dir",
      None,
      "Run directory (default: runs/<config.name>/<timestamp>, or the latest "
      "one of that config with --resume).",
  )
  _RESUME = flags.DEFINE_bool(
      "resume", False, "Continue the run in --run_dir (or the latest one)."
  )
  _CRASH_AFTER = flags.DEFINE_integer(
      "crash_after_episode",
      0,
      "Testing hook: raise SimulatedCrash once this many episodes of an agent "
      "are committed (0: never).",
  )
  _KILL_AT = flags.DEFINE_string(
      "kill_at",
      "",
      "Testing hook 'AGENT:EPISODE:STEP': SIGKILL this process at that step "
      "(0-based episode and step), mid-episode.",
  )


PROGRESS_FORMAT = 1


class SimulatedCrash(RuntimeError):
  """Raised by the crash-injection hook (tests)."""


class RunDirError(RuntimeError):
  """The run directory does not match the request (exists, or missing)."""


# ---------------------------------------------------------------------------
# Files.


def atomic_write_text(path: str, text: str) -> None:
  """Writes a file so that readers see the old or the new content, whole."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def atomic_write_json(path: str, obj: Any) -> None:
  atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


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


def _md5(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.md5(f.read()).hexdigest()


def versions() -> dict[str, str]:
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


# ---------------------------------------------------------------------------
# Building blocks from the config.


def build_language_model(
    cfg: ml_collections.ConfigDict,
) -> agent_lib.LanguageModel:
  """config.lm -> LanguageModel ("gguf"/"hf" real model, or "scripted")."""
  kind = cfg.lm.kind
  if kind == "scripted":
    return agent_lib.scripted_language_model(
        dict(cfg.lm.get("preferences", {}) or {}),
        default=float(cfg.lm.get("default_logit", 0.0)),
    )
  if kind in ("gguf", "hf"):
    return agent_lib.load_language_model(cfg.lm.get("path") or None)
  raise ValueError(
      f"unknown lm.kind {kind!r}: use 'gguf', 'hf' or " "'scripted'"
  )


def env_kwargs(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
  kw = cfg.env.to_dict() if "env" in cfg else {}
  return {k: v for k, v in kw.items() if v is not None}


def make_envs(cfg: ml_collections.ConfigDict) -> list[envs_base.TextEnv]:
  """B environments of config.game (errors are the adapters' own)."""
  envs = []
  try:
    for _ in range(cfg.batch_size):
      envs.append(envs_base.make_env(cfg.game, **env_kwargs(cfg)))
  except BaseException:
    for e in envs:
      e.close()
    raise
  return envs


def game_seed(cfg, episode: int, game: int) -> int:
  """The same game every episode (protocol) unless vary_game_seed."""
  if cfg.get("vary_game_seed", False):
    return int(cfg.game_seed) + episode * int(cfg.batch_size) + game
  return int(cfg.game_seed)


def decision_key(cfg, episode: int, step: int) -> jax.Array:
  key = jax.random.key(int(cfg.seed))
  return jax.random.fold_in(jax.random.fold_in(key, episode), step)


_AGENTS: dict[tuple[str, int, str], tuple[Any, agent_lib.TextGameAgent]] = {}


def cached_agent(
    name: str, lm: agent_lib.LanguageModel, kwargs: dict[str, Any]
) -> agent_lib.TextGameAgent:
  """`make_agent`, reused for the same (name, LM, settings) in a process.

  The agent's jitted functions keep their compilations, so several runs in
  one process (seeds, a notebook) compile once per shape.
  """
  key = (name, id(lm), json.dumps(kwargs, sort_keys=True, default=str))
  if key not in _AGENTS or _AGENTS[key][0] is not lm:
    if len(_AGENTS) >= 16:
      _AGENTS.pop(next(iter(_AGENTS)))
    _AGENTS[key] = (lm, agent_lib.make_agent(name, lm, **kwargs))
  return _AGENTS[key][1]


# ---------------------------------------------------------------------------
# Rewards.


def episode_rewards(
    cfg,
    agent_name: str,
    trajectory: dict[str, Any],
    lm: agent_lib.LanguageModel,
) -> tuple[np.ndarray, str]:
  """Step rewards of one game for the memory (SPEC 6).

  Args:
    cfg: the config (config.rewards).
    agent_name: the agent (the reference rule adds its failure penalty).
    trajectory: {"actions", "observations" [T + 1], "env_rewards", "won",
      "lost", "task"}.
    lm: the LM (the evaluator uses its `generate_text`).

  Returns:
    ([T] rewards, a note on where they came from).
  """
  env_r = np.asarray(trajectory["env_rewards"], np.float32)
  # Scaled score changes, minus a cost per step (0 by default): with the
  # cost, a step that changes nothing has a negative return, as the
  # evaluator's "wasted step" judgement would give it.
  env_r = env_r * float(cfg.rewards.get("env_scale", 1.0)) - float(
      cfg.rewards.get("step_penalty", 0.0)
  )
  source = cfg.rewards.source
  if source not in ("env", "evaluator", "mixed"):
    raise ValueError(
        f"unknown rewards.source {source!r}: use env, evaluator " "or mixed"
    )
  rewards, note = env_r, "env"
  if source != "env" and env_r.size:
    if lm.generate_text is None:
      note = "env (evaluator fallback: the LM cannot generate text)"
    else:
      from jitrl_jax import evaluator  # pylint: disable=g-import-not-at-top

      max_new = int(cfg.rewards.get("evaluator_max_new_tokens", 96))
      steps = [
          evaluator.TrajectoryStep(o, a, float(r))
          for o, a, r in zip(
              trajectory["observations"], trajectory["actions"], env_r
          )
      ]
      result = evaluator.evaluate_episode(
          lambda messages: lm.generate_text(messages, max_new),
          steps,
          bool(trajectory["won"]),
          reward_source=source,
          scale=(
              float(cfg.rewards.get("evaluator_low", -3.0)),
              float(cfg.rewards.get("evaluator_high", 3.0)),
          ),
          task=trajectory.get("task", ""),
          final_observation=trajectory["observations"][-1],
      )
      rewards = np.asarray(result.rewards, np.float32)
      if result.used_fallback:
        why = result.parse.error if result.parse is not None else "no answer"
        note = f"env (evaluator fallback: {why})"
      else:
        note = source
  rewards = np.nan_to_num(np.array(rewards, np.float32), nan=0.0)
  penalty = float(cfg.rewards.get("reference_failure_penalty", 0.0))
  if (
      agent_name == "jitrl-reference"
      and penalty
      and trajectory["lost"]
      and rewards.size
  ):
    rewards[-1] += penalty
  return rewards, note


# ---------------------------------------------------------------------------
# One agent.


def _progress_bar(total, desc, position, leave=True, initial=0):
  try:
    from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
  except ImportError:  # pragma: no cover
    return contextlib.nullcontext(None)
  disable = (
      not sys.stderr.isatty() and os.environ.get("JITRL_PROGRESS", "") != "1"
  )
  return tqdm.tqdm(
      total=total,
      desc=desc,
      position=position,
      leave=leave,
      initial=initial,
      disable=disable,
      dynamic_ncols=True,
  )


def _parse_kill_at(spec: str):
  if not spec:
    return None
  agent, ep, st = spec.split(":")
  return agent, int(ep), int(st)


def run_agent(
    cfg: ml_collections.ConfigDict,
    agent_name: str,
    lm: agent_lib.LanguageModel,
    out_dir: str,
    envs: Sequence[envs_base.TextEnv],
    *,
    resume: bool,
    after_episode: Callable[[str, int], None] | None = None,
    kill_at: tuple[str, int, int] | None = None,
    position: int = 0,
) -> dict[str, Any]:
  """Runs (or resumes) one agent; returns its results dict.

  Args:
    cfg: the experiment config.
    agent_name: one of `agent_lib.AGENT_NAMES`.
    lm: the LM shared by every agent.
    out_dir: the agent's directory.
    envs: B environments (reset at every episode; not closed here).
    resume: continue from out_dir's committed episodes.
    after_episode: called with (agent, episodes committed) after each commit.
    kill_at: (agent, episode, step): SIGKILL before that step (tests).
    position: progress-bar row.

  Returns:
    The content of <out_dir>/results.json.
  """
  os.makedirs(out_dir, exist_ok=True)
  agent = cached_agent(agent_name, lm, cfg.agent.to_dict())
  memory_path = os.path.join(out_dir, "memory.npz")
  steps_path = os.path.join(out_dir, "steps.jsonl")
  progress_path = os.path.join(out_dir, "progress.json")
  state = agent.init()
  progress = {
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
  if os.path.exists(memory_path):
    if not resume:
      raise RunDirError(
          f"{out_dir} already holds a run; pass --resume to continue it or "
          "choose another --run_dir"
      )
    memory, meta = memory_lib.load(memory_path)
    progress = meta["progress"]
    state = agent.restore(
        memory,
        {int(k): v for k, v in meta["action_texts"].items()},
        progress["episodes_done"],
    )
    progress["resumed_at"].append(progress["episodes_done"])
    progress["episodes_total"] = int(cfg.episodes)
    # Drop step lines of the episode that was running when the run died.
    rows = read_step_logs(steps_path, before_episode=progress["episodes_done"])
    atomic_write_text(steps_path, "".join(json.dumps(r) + "\n" for r in rows))
  elif os.path.exists(steps_path):
    os.remove(steps_path)  # Nothing committed: start clean.

  start = progress["episodes_done"]
  total = int(cfg.episodes)
  rom_md5 = ""
  if getattr(envs[0], "rom_path", None):
    rom_md5 = _md5(envs[0].rom_path)
  max_score = float(envs[0].max_score)
  task_id = agent_lib.action_id(cfg.game)
  if start < total:
    with _progress_bar(
        total, f"{agent_name} episodes", position, initial=start
    ) as ep_bar:
      for episode in range(start, total):
        t0 = time.time()
        trajectories, game_scores, rows, notes = _play_episode(
            cfg,
            agent,
            state,
            lm,
            envs,
            episode,
            agent_name,
            task_id,
            kill_at=kill_at,
            position=position + 1,
        )
        state = agent.observe(state, trajectories)
        mean_score = float(np.mean(game_scores))
        progress["episodes_done"] = episode + 1
        progress["episode_scores"].append(mean_score)
        progress["game_scores"].append([float(s) for s in game_scores])
        progress["episode_seconds"].append(round(time.time() - t0, 3))
        progress["reward_notes"].append(notes)
        progress["decisions"] += len(rows)
        progress["memory_size"] = int(memory_lib.size(state.memory))
        progress["max_score"] = max_score
        # Commit: step lines first, then the memory file (the commit point,
        # atomic), then the readable copy of the progress.
        with open(steps_path, "a", encoding="utf-8") as f:
          f.write("".join(json.dumps(r) + "\n" for r in rows))
          f.flush()
          os.fsync(f.fileno())
        memory_lib.save(
            state.memory,
            memory_path,
            metadata={
                "progress": progress,
                "action_texts": {
                    str(k): v for k, v in state.action_texts.items()
                },
            },
        )
        atomic_write_json(progress_path, progress)
        if ep_bar is not None:
          ep_bar.update(1)
          ep_bar.set_postfix(
              score=f"{mean_score:.2f}", memory=progress["memory_size"]
          )
        logging.info(
            "%s episode %d/%d: score %.3f |memory| %d (%.1fs)",
            agent_name,
            episode + 1,
            total,
            mean_score,
            progress["memory_size"],
            time.time() - t0,
        )
        if after_episode is not None:
          after_episode(agent_name, episode + 1)

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
      "rom_md5": rom_md5 or progress.get("rom_md5", ""),
      "versions": versions(),
      "compiles": agent.num_compiles(),
  }
  progress["rom_md5"] = results["rom_md5"]
  atomic_write_json(os.path.join(out_dir, "results.json"), results)
  return results


def _observation(
    env, result, recent, step, raw_actions
) -> agent_lib.GameObservation:
  views = env.view_texts()
  return agent_lib.GameObservation(
      observation=result.observation,
      current=views.current,
      history=views.history,
      task=views.task,
      valid_actions=envs_base.with_fallback(raw_actions),
      recent=tuple(recent),
      step=step,
  )


def _play_episode(
    cfg,
    agent,
    state,
    lm,
    envs,
    episode,
    agent_name,
    task_id,
    *,
    kill_at,
    position,
):
  """Plays B games side by side; returns trajectories, scores, step rows."""
  b = len(envs)
  results = [
      env.reset(seed=game_seed(cfg, episode, i)) for i, env in enumerate(envs)
  ]
  recent = [[] for _ in range(b)]
  trajs = [
      {
          "views": [],
          "actions": [],
          "observations": [r.observation],
          "env_rewards": [],
          "won": False,
          "lost": False,
          "task": envs[i].view_texts().task,
      }
      for i, r in enumerate(results)
  ]
  done = [False] * b
  rows = []
  observations = [None] * b
  with _progress_bar(
      int(cfg.steps), f"  episode {episode + 1}", position, leave=False
  ) as bar:
    for step in range(int(cfg.steps)):
      if kill_at is not None and kill_at == (agent_name, episode, step):
        os.kill(os.getpid(), signal.SIGKILL)
      if all(done):
        break
      fallback = [False] * b
      for i in range(b):
        if not done[i]:
          raw = envs[i].valid_actions()
          observations[i] = _observation(
              envs[i], results[i], recent[i], step, raw
          )
          fallback[i] = not [a for a in raw if a and a.strip()]
      choices = agent.act(state, observations, decision_key(cfg, episode, step))
      for i in range(b):
        if done[i]:
          continue
        choice = choices[i]
        obs = observations[i]
        trajs[i]["views"].append(
            agent.state_views(obs.current, obs.history, obs.task)
        )
        res = envs[i].step(choice.action)
        trajs[i]["actions"].append(choice.action)
        trajs[i]["observations"].append(res.observation)
        trajs[i]["env_rewards"].append(float(res.reward))
        recent[i].append((choice.action, res.observation))
        del recent[i][:-8]
        results[i] = res
        rows.append(
            {
                "episode": episode,
                "game": i,
                "step": step,
                "action": choice.action,
                "from_memory": choice.from_memory,
                "fallback_actions": fallback[i],
                "reward": float(res.reward),
                "score": float(res.score),
                **choice.diagnostics,
            }
        )
        if res.done:
          done[i] = True
          trajs[i]["won"] = bool(res.info.get("won", False))
          trajs[i]["lost"] = bool(res.info.get("lost", False))
      if bar is not None:
        bar.update(1)
        bar.set_postfix(
            score=f"{np.mean([r.score for r in results]):.2f}",
            memory=int(memory_lib.size(state.memory)),
        )
  trajectories, notes = [], []
  for i, tr in enumerate(trajs):
    rewards, note = episode_rewards(cfg, agent_name, tr, lm)
    notes.append(note)
    trajectories.append(
        agent_lib.Trajectory(
            views=tr["views"],
            actions=tr["actions"],
            rewards=rewards,
            task_id=task_id,
            episode_id=episode * b + i,
        )
    )
  scores = [float(env.score) for env in envs]
  return trajectories, scores, rows, notes


# ---------------------------------------------------------------------------
# A whole experiment.


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


def run_experiment(
    cfg: ml_collections.ConfigDict,
    run_dir: str,
    *,
    resume: bool = False,
    after_episode: Callable[[str, int], None] | None = None,
    kill_at: tuple[str, int, int] | None = None,
    lm: agent_lib.LanguageModel | None = None,
    envs: Sequence[envs_base.TextEnv] | None = None,
) -> dict[str, Any]:
  """Runs every agent of the config; writes results, the plot and the table.

  Args:
    cfg: the experiment config.
    run_dir: where everything goes.
    resume: continue a run in run_dir.
    after_episode: hook called after each committed episode.
    kill_at: testing hook, see --kill_at.
    lm: a ready LM (else built from config.lm).
    envs: config.batch_size ready environments of config.game, owned by the
      caller (else made here, shared by the agents, and closed at the end).

  Returns:
    The content of <run_dir>/results.json.

  Raises:
    UnknownAgentError, UnknownGameError, EnvironmentUnavailableError,
    RunDirError, ValueError: bad input, before any work is done.
  """
  agents = list(cfg.agents)
  if cfg.get("mode", "compare") == "single":
    agents = agents[:1]
  if not agents:
    raise ValueError(
        "config.agents is empty; valid agents are: "
        + ", ".join(agent_lib.AGENT_NAMES)
    )
  for name in agents:
    agent_lib.check_agent_name(name)
  if len(set(agents)) != len(agents):
    raise ValueError(f"config.agents lists an agent twice: {agents}")
  config_path = os.path.join(run_dir, "config.json")
  if os.path.exists(config_path) and not resume:
    raise RunDirError(
        f"{run_dir} already holds a run; pass --resume to "
        "continue it or choose another --run_dir"
    )
  # Make the games before loading the LM: a missing ROM or an unknown game
  # fails in seconds, with the adapter's message.
  own_envs = envs is None
  if own_envs:
    envs = make_envs(cfg)
  elif len(envs) != int(cfg.batch_size):
    raise ValueError(
        f"{len(envs)} environments for batch_size {cfg.batch_size}"
    )
  try:
    os.makedirs(run_dir, exist_ok=True)
    if not os.path.exists(config_path):
      atomic_write_json(config_path, cfg.to_dict())
    if lm is None:
      lm = build_language_model(cfg)
    per_agent = {}
    for i, name in enumerate(agents):
      per_agent[name] = run_agent(
          cfg,
          name,
          lm,
          os.path.join(run_dir, name),
          envs,
          resume=resume,
          after_episode=after_episode,
          kill_at=kill_at,
          position=2 * i,
      )
  finally:
    if own_envs:
      for e in envs:
        with contextlib.suppress(Exception):
          e.close()
  curves = {n: r["game_scores"] for n, r in per_agent.items()}
  plot_path = plotting.plot_learning_curves(
      curves,
      os.path.join(run_dir, "learning_curve.png"),
      title=(
          f"{cfg.game}: {cfg.episodes} episodes x {cfg.steps} steps x "
          f"{cfg.batch_size} game{'s' if cfg.batch_size != 1 else ''}"
          f"\nLM {lm.name}"
      ),
      max_score=next(iter(per_agent.values()))["max_score"],
  )
  table = plotting.markdown_table(per_agent)
  atomic_write_text(os.path.join(run_dir, "table.md"), table + "\n")
  results = {
      "game": cfg.game,
      "agents": {
          n: {
              k: r[k]
              for k in (
                  "avg",
                  "final",
                  "best",
                  "episode_scores",
                  "memory_size",
                  "seconds",
                  "decisions",
              )
          }
          for n, r in per_agent.items()
      },
      "plot": plot_path,
      "table": table,
      "seeds": next(iter(per_agent.values()))["seeds"],
      "model": {"name": lm.name, "sha256": lm.sha256},
      "rom_md5": next(iter(per_agent.values()))["rom_md5"],
      "versions": versions(),
  }
  atomic_write_json(os.path.join(run_dir, "results.json"), results)
  return results


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cfg = _CONFIG.value
  t0 = time.time()
  # TextWorld Express's py4j logs a traceback at INFO when a JVM closes.
  py_logging.getLogger("py4j").setLevel(py_logging.WARNING)
  try:
    run_dir = resolve_run_dir(cfg, _RUN_DIR.value, _RESUME.value)
    crash_after = _CRASH_AFTER.value

    def after_episode(agent_name: str, done: int) -> None:
      if crash_after and done == crash_after:
        raise SimulatedCrash(
            f"simulated crash after {agent_name} episode " f"{done}"
        )

    results = run_experiment(
        cfg,
        run_dir,
        resume=_RESUME.value,
        after_episode=after_episode,
        kill_at=_parse_kill_at(_KILL_AT.value),
    )
  except (
      agent_lib.UnknownAgentError,
      envs_base.UnknownGameError,
      envs_base.EnvironmentUnavailableError,
      RunDirError,
  ) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print()
  print(results["table"])
  print()
  print(f"learning curve: {results['plot']}")
  print(f"results:        {os.path.join(run_dir, 'results.json')}")
  print(f"run directory:  {run_dir}")
  print(f"wall time:      {time.time() - t0:.1f} s")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
