"""Playing a text-game experiment: agents, episodes, the whole comparison.

* building blocks from the config: the LM, B environments, game seeds and
  decision keys (functions of (seed, episode, step), so that every agent sees
  the same games and a resumed run equals an uninterrupted one), and agents
  cached per process;
* `play_episode`: B games side by side, one batched `agent.act` per step;
* `run_agent`: one agent's episodes, each committed to disk (see
  `experiments.persistence`), resuming after the last committed one;
* `run_experiment`: every agent of the config, then the plot, the table and
  results.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from typing import Any, Callable, Sequence

from absl import logging
import jax
import ml_collections
import numpy as np

from experiments import persistence
from experiments import plotting
from experiments import rewards as rewards_lib
from jitrl_jax import agents as agent_lib
from jitrl_jax import config as config_lib
from jitrl_jax import memory as memory_lib
from jitrl_jax.envs import base as envs_base

# ---------------------------------------------------------------------------
# Building blocks from the config.


def build_language_model(
    cfg: ml_collections.ConfigDict,
) -> agent_lib.LanguageModel:
  """config.lm -> LanguageModel.

  `lm.kind`: "gguf" (a GGUF file, Llama-family or Gemma 3, read by its
  architecture; `lm.path` "" for the embedded SmolLM2-135M-Instruct), "hf"
  (a Hugging Face directory), "gemma" (`lm.path` "" for the embedded Gemma 3
  270M of the `gemma` extra, else a Gemma 3 GGUF file) or "scripted".

  Raises:
    ConfigError: an unknown kind, or "hf" without a path.
  """
  kind = cfg.lm.kind
  path = cfg.lm.get("path") or None
  if kind == "scripted":
    return agent_lib.scripted_language_model(
        dict(cfg.lm.get("preferences", {}) or {}),
        default=float(cfg.lm.get("default_logit", 0.0)),
    )
  if kind == "hf" and path is None:
    raise ConfigError("lm.kind 'hf' needs lm.path (a checkpoint directory)")
  if kind in ("gguf", "hf"):
    return agent_lib.load_language_model(path)
  if kind == "gemma":
    return agent_lib.load_language_model(path, kind="gemma3-270m")
  raise ConfigError(
      f"unknown lm.kind {kind!r}: use 'gguf', 'hf', 'gemma' or 'scripted'"
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


def decision_key(cfg, episode: int, step: int, seed=None) -> jax.Array:
  """The act key of a step: (config.seed, or `seed`) folded with both."""
  key = jax.random.key(int(cfg.seed if seed is None else seed))
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


def progress_bar(total, desc, position, leave=True, initial=0):
  """A tqdm bar on a terminal (or with JITRL_PROGRESS=1), else disabled."""
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


# ---------------------------------------------------------------------------
# One episode: B games side by side.


def observation(
    env, result, recent, step, raw_actions
) -> agent_lib.GameObservation:
  """What the agent reads from one game before a decision."""
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


def _new_trajectory(env, result) -> dict[str, Any]:
  return {
      "views": [],
      "actions": [],
      "observations": [result.observation],
      "env_rewards": [],
      "won": False,
      "lost": False,
      "task": env.view_texts().task,
  }


def _record_step(traj, recent, views, choice, res) -> None:
  """Adds one step of one game to its trajectory and its recent moves."""
  traj["views"].append(views)
  traj["actions"].append(choice.action)
  traj["observations"].append(res.observation)
  traj["env_rewards"].append(float(res.reward))
  recent.append((choice.game_command, res.observation))
  del recent[:-8]


def _step_row(episode, game, step, choice, fallback, res) -> dict[str, Any]:
  """One line of steps.jsonl."""
  return {
      "episode": episode,
      "game": game,
      "step": step,
      "action": choice.action,
      "from_memory": choice.from_memory,
      "fallback_actions": fallback,
      "reward": float(res.reward),
      "score": float(res.score),
      **choice.diagnostics,
  }


def _finish_trajectories(cfg, agent_name, trajs, lm, task_id, episode):
  """Rewards of every game -> the agent's Trajectory list, reward notes."""
  trajectories, notes = [], []
  for i, tr in enumerate(trajs):
    rewards, note = rewards_lib.episode_rewards(cfg, tr, lm)
    notes.append(note)
    trajectories.append(
        agent_lib.Trajectory(
            views=tr["views"],
            actions=tr["actions"],
            rewards=rewards,
            task_id=task_id,
            episode_id=episode * len(trajs) + i,
            lost=bool(tr["lost"]),
        )
    )
  return trajectories, notes


def play_episode(
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
    game_seeds=None,
    key_seed=None,
    on_step=None,
):
  """Plays B games side by side; returns trajectories, scores, step rows.

  `game_seeds` (B seeds) and `key_seed` replace `game_seed` and config.seed
  where a suite derives them (the web suite); `on_step(step, envs)` is
  called before every decision and once at the end (the web suite's
  screenshots).
  """
  b = len(envs)
  writes = agent_name in agent_lib.GENERATING_AGENT_NAMES
  if game_seeds is None:
    game_seeds = [game_seed(cfg, episode, i) for i in range(b)]
  results = [env.reset(seed=s) for env, s in zip(envs, game_seeds)]
  recent = [[] for _ in range(b)]
  trajs = [_new_trajectory(envs[i], r) for i, r in enumerate(results)]
  done = [False] * b
  rows = []
  observations = [None] * b
  with progress_bar(
      int(cfg.steps), f"  episode {episode + 1}", position, leave=False
  ) as bar:
    for step in range(int(cfg.steps)):
      if kill_at is not None and kill_at == (agent_name, episode, step):
        os.kill(os.getpid(), signal.SIGKILL)
      if all(done):
        break
      if on_step is not None:
        on_step(step, envs)
      fallback = [False] * b
      for i in range(b):
        if not done[i]:
          # A generating agent never reads the list (and Jericho's can take
          # seconds to build), so it is not asked for.
          raw = [] if writes else envs[i].valid_actions()
          observations[i] = observation(
              envs[i], results[i], recent[i], step, raw
          )
          fallback[i] = not writes and not [a for a in raw if a and a.strip()]
      choices = agent.act(
          state, observations, decision_key(cfg, episode, step, key_seed)
      )
      for i in range(b):
        if done[i]:
          continue
        choice = choices[i]
        obs = observations[i]
        views = agent.state_views(obs.current, obs.history, obs.task)
        res = envs[i].step(choice.game_command)
        _record_step(trajs[i], recent[i], views, choice, res)
        results[i] = res
        rows.append(_step_row(episode, i, step, choice, fallback[i], res))
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
  if on_step is not None:
    on_step(len(rows), envs)
  trajectories, notes = _finish_trajectories(
      cfg, agent_name, trajs, lm, task_id, episode
  )
  scores = [float(env.score) for env in envs]
  return trajectories, scores, rows, notes


# ---------------------------------------------------------------------------
# One agent.


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
    kill_at: (agent, episode, step): SIGKILL before that step, or, with
      "logged" or "saving" for the step, during the episode's commit
      (tests; see `persistence.commit_episode`).
    position: progress-bar row.

  Returns:
    The content of <out_dir>/results.json.
  """
  os.makedirs(out_dir, exist_ok=True)
  agent = cached_agent(agent_name, lm, cfg.agent.to_dict())
  files = persistence.AgentFiles.under(out_dir)
  state, progress = persistence.start_or_resume(
      cfg, agent_name, agent, files, resume=resume
  )
  start = progress["episodes_done"]
  total = int(cfg.episodes)
  rom_md5 = persistence.rom_md5(envs)
  max_score = float(envs[0].max_score)
  task_id = agent_lib.action_id(cfg.game)
  if start < total:
    with progress_bar(
        total, f"{agent_name} episodes", position, initial=start
    ) as ep_bar:
      for episode in range(start, total):
        t0 = time.time()
        trajectories, game_scores, rows, notes = play_episode(
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
        mean_score = persistence.record_episode(
            progress,
            episode,
            game_scores,
            time.time() - t0,
            notes,
            len(rows),
            int(memory_lib.size(state.memory)),
            max_score,
        )
        phase = (
            kill_at[2]
            if kill_at and kill_at[:2] == (agent_name, episode)
            else None
        )
        persistence.commit_episode(
            files,
            state,
            progress,
            rows,
            kill=phase if phase in persistence.KILL_PHASES else None,
        )
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

  results = persistence.agent_results(
      cfg,
      agent_name,
      progress,
      lm=lm,
      compiles=agent.num_compiles(),
      rom_md5_hex=rom_md5,
      max_score=max_score,
  )
  persistence.write_json(files.results, results)
  return results


# ---------------------------------------------------------------------------
# A whole experiment.


class ConfigError(ValueError):
  """The experiment config is invalid (checked before any work is done)."""


def check_agent_config(cfg: ml_collections.ConfigDict) -> None:
  """Raises ConfigError when config.agent has an unknown or bad value."""
  try:
    config_lib.split_kwargs(cfg.agent.to_dict())
  except (TypeError, ValueError) as e:
    raise ConfigError(f"config.agent: {e}") from None


def _agent_names(cfg: ml_collections.ConfigDict) -> list[str]:
  """The agents to run (checked): all, or the first in "single" mode."""
  agents = list(cfg.agents)
  if cfg.get("mode", "compare") == "single":
    agents = agents[:1]
  if not agents:
    raise ConfigError(
        "config.agents is empty; valid agents are: "
        + ", ".join(agent_lib.AGENT_NAMES)
    )
  for name in agents:
    agent_lib.check_agent_name(name)
  if len(set(agents)) != len(agents):
    raise ConfigError(f"config.agents lists an agent twice: {agents}")
  return agents


def check_generating_agents(cfg, agents, lm=None) -> None:
  """Raises ConfigError when a generating agent would get an LM that cannot
  write (the scripted LM, or a given LM without a generator)."""
  generating = [a for a in agents if a in agent_lib.GENERATING_AGENT_NAMES]
  if not generating:
    return
  if lm is not None and lm.generator is None:
    cause = f"the given LM {lm.name!r} has no generator"
  elif lm is None and cfg.lm.kind == "scripted":
    cause = "lm.kind 'scripted' only scores given strings"
  else:
    return
  raise ConfigError(
      f"agents {generating} write their own commands, but {cause}; use "
      "lm.kind 'gguf' or 'hf' for them"
  )


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
  agents = _agent_names(cfg)
  check_agent_config(cfg)
  check_generating_agents(cfg, agents, lm)
  with persistence.run_lock(run_dir):
    return _run_locked(
        cfg, run_dir, agents, resume, after_episode, kill_at, lm, envs
    )


def _run_locked(cfg, run_dir, agents, resume, after_episode, kill_at, lm, envs):
  """`run_experiment` once the run directory is locked."""
  config_path = os.path.join(run_dir, "config.json")
  persistence.refuse_existing_run(config_path, run_dir, resume)
  if resume and os.path.exists(config_path):
    persistence.check_resumed_config(config_path, cfg)
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
      persistence.write_json(config_path, cfg.to_dict())
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
  return persistence.write_experiment_results(
      cfg, run_dir, per_agent, lm=lm, plot_path=plot_path
  )
