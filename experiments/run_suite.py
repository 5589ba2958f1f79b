r"""Plays a suite of Jericho games, one run directory per game, resumable.

  python -m experiments.run_suite --config=experiments/configs/suite.py
  python -m experiments.run_suite --config=experiments/configs/suite.py \
      --config.seed=1 --suite_dir=runs/suite-seed1

For every game of `config.games` the suite runs `episodes.run_experiment`
with the config's settings and `config.game = "jericho:<game>"` in
`<suite_dir>/<game>`. A game whose directory already holds a run is resumed
(finished episodes stay as they are), so the same command continues a killed
suite. The LM is loaded once for all games. At the end `<suite_dir>/suite.json`
lists each game's results file.
"""

from __future__ import annotations

import json
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
from experiments import run_text_game
from jitrl_jax import agents as agent_lib


def _define_flags() -> None:
  """Defines the command-line flags (only when run as a program)."""
  global _CONFIG, _SUITE_DIR, _ONLY
  _CONFIG = config_flags.DEFINE_config_file(
      "config", "experiments/configs/suite.py", "Suite config file."
  )
  _SUITE_DIR = flags.DEFINE_string(
      "suite_dir",
      None,
      "Suite directory (default: runs/<config.name>-seed<config.seed>).",
  )
  _ONLY = flags.DEFINE_list(
      "only", [], "Run only these games of config.games (default: all)."
  )


def game_config(cfg, game: str):
  """The run config of one game of the suite."""
  g = cfg.copy_and_resolve_references()
  with g.unlocked():
    del g["games"]
    g.game = f"jericho:{game}"
    g.name = f"{cfg.name}-{game}"
  return g


def run_suite(
    cfg,
    suite_dir: str,
    *,
    only: Sequence[str] = (),
    lm: agent_lib.LanguageModel | None = None,
    log=print,
) -> dict[str, str]:
  """Runs (or resumes) every game of the suite; returns game -> results path.

  Raises:
    ValueError: a game of `only` is not in `config.games`.
  """
  games = list(cfg.games)
  unknown = [g for g in only if g not in games]
  if unknown:
    raise ValueError(f"--only: {unknown} not in config.games {games}")
  if only:
    games = [g for g in games if g in only]
  os.makedirs(suite_dir, exist_ok=True)
  done = {}
  for game in games:
    g = game_config(cfg, game)
    run_dir = os.path.join(suite_dir, game)
    resume = os.path.exists(os.path.join(run_dir, "config.json"))
    t0 = time.time()
    log(f"[suite] {game}: {'resuming' if resume else 'starting'} {run_dir}")
    if lm is None:
      lm = episodes.build_language_model(g)
    results = episodes.run_experiment(g, run_dir, resume=resume, lm=lm)
    done[game] = os.path.join(run_dir, "results.json")
    log(f"[suite] {game}: done in {time.time() - t0:.0f} s")
    log(results["table"])
  index = os.path.join(suite_dir, "suite.json")
  persistence.write_json(index, {"games": done, "config": cfg.to_dict()})
  return done


def default_suite_dir(cfg) -> str:
  """runs/<config.name>-seed<config.seed> (under config.runs_root)."""
  return os.path.join(
      cfg.get("runs_root", "runs"), f"{cfg.name}-seed{cfg.seed}"
  )


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cfg = _CONFIG.value
  py_logging.getLogger("py4j").setLevel(py_logging.WARNING)
  suite_dir = _SUITE_DIR.value or default_suite_dir(cfg)
  t0 = time.time()
  try:
    done = run_suite(cfg, suite_dir, only=_ONLY.value)
  except run_text_game.INPUT_ERRORS + (ValueError,) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(json.dumps(done, indent=1))
  print(f"suite directory: {suite_dir}")
  print(f"wall time:       {time.time() - t0:.1f} s")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
