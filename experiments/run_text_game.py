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

This file is the command line only. The rooms behind it:

  experiments/episodes.py     the agents, the episodes, `run_experiment`
  experiments/rewards.py      step rewards of a finished game (env/evaluator)
  experiments/persistence.py  the run directory, commits, resume, provenance

Run directory: see experiments/persistence.py (config.json, per agent
memory.npz, progress.json, steps.jsonl and results.json; results.json,
learning_curve.png and table.md of the whole run).
"""

from __future__ import annotations

import logging as py_logging
import os
import sys
import time
from typing import Sequence

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import episodes
from experiments import persistence
from jitrl_jax import agents as agent_lib
from jitrl_jax import memory as memory_lib
from jitrl_jax.envs import base as envs_base
from jitrl_jax.models import checkpoint

# Bad input: the runner prints one line that says what is wrong, no
# traceback, and exits 2 (run_suite.py too).
INPUT_ERRORS = (
    agent_lib.UnknownAgentError,
    agent_lib.NonFiniteLogitsError,
    agent_lib.NoGeneratorError,
    episodes.ConfigError,
    envs_base.UnknownGameError,
    envs_base.EnvironmentUnavailableError,
    memory_lib.MemoryFileError,
    checkpoint.ModelFileError,
    persistence.RunDirError,
)

# Kept for callers of the former single-module runner (colabs/03_text_game).
run_experiment = episodes.run_experiment
env_kwargs = episodes.env_kwargs


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
      "(0-based episode and step), mid-episode; STEP 'logged' or 'saving': "
      "during the episode's commit, after its step lines are written or "
      "while its memory.npz is written.",
  )


class SimulatedCrash(RuntimeError):
  """Raised by the crash-injection hook (tests)."""


def _parse_kill_at(spec: str):
  if not spec:
    return None
  agent, ep, where = spec.split(":")
  if where in persistence.KILL_PHASES:
    return agent, int(ep), where
  return agent, int(ep), int(where)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cfg = _CONFIG.value
  t0 = time.time()
  # TextWorld Express's py4j logs a traceback at INFO when a JVM closes.
  py_logging.getLogger("py4j").setLevel(py_logging.WARNING)
  try:
    run_dir = persistence.resolve_run_dir(cfg, _RUN_DIR.value, _RESUME.value)
    crash_after = _CRASH_AFTER.value

    def after_episode(agent_name: str, done: int) -> None:
      if crash_after and done == crash_after:
        raise SimulatedCrash(
            f"simulated crash after {agent_name} episode " f"{done}"
        )

    results = episodes.run_experiment(
        cfg,
        run_dir,
        resume=_RESUME.value,
        after_episode=after_episode,
        kill_at=_parse_kill_at(_KILL_AT.value),
    )
  except INPUT_ERRORS as e:
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
