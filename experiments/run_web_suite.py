r"""Runs the MiniWoB++ suite in a real browser, resumable.

  make web-suite SEED=0
  python -m experiments.run_web_suite --config=experiments/configs/web_suite.py \
      --config.seed=1 --suite_dir=runs/miniwob-suite-seed1
  python -m experiments.run_web_suite ... --config.tasks="('click-button',)" \
      --config.episodes=2 --config.agents="('static','jitrl')"

Every agent of the config plays every task of `config.tasks`, interleaved,
with one memory across them (`experiments/web_suite.py`). A killed suite
continues where it stopped with the same command (an existing suite
directory is resumed). Chromium and its driver come from apt (`make web`).
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

from experiments import run_suite
from experiments import run_text_game
from experiments import web_suite


def _define_flags() -> None:
  """Defines the command-line flags (only when run as a program)."""
  global _CONFIG, _SUITE_DIR
  _CONFIG = config_flags.DEFINE_config_file(
      "config", "experiments/configs/web_suite.py", "Web suite config file."
  )
  _SUITE_DIR = flags.DEFINE_string(
      "suite_dir",
      None,
      "Suite directory (default: runs/<config.name>-seed<config.seed>); an "
      "existing one is resumed.",
  )


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cfg = _CONFIG.value
  py_logging.getLogger("selenium").setLevel(py_logging.WARNING)
  suite_dir = _SUITE_DIR.value or run_suite.default_suite_dir(cfg)
  resume = os.path.exists(os.path.join(suite_dir, "config.json"))
  t0 = time.time()
  try:
    results = web_suite.run_web_suite(cfg, suite_dir, resume=resume)
  except run_text_game.INPUT_ERRORS as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print()
  print(results["table"])
  print()
  print(f"success curves:  {results['plot']}")
  if results["strip"]:
    print(f"screenshots:     {results['strip']}")
  print(f"results:         {os.path.join(suite_dir, 'results.json')}")
  print(f"wall time:       {time.time() - t0:.1f} s")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
