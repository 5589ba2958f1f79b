"""Jericho ROMs in tests: skip without them, except in CI (which has them)."""

import os

from jitrl_jax.envs import base as envs_base
from jitrl_jax.envs import jericho


def require_roms(test, *games: str) -> None:
  """Skips `test` when a game's ROM is not found (JITRL_ROM_DIR); under
  CI=true the error is raised instead (CI has ../shared/jericho-games)."""
  try:
    for game in games:
      jericho.find_rom(game)
  except envs_base.EnvironmentUnavailableError as e:
    if os.environ.get("CI") == "true":
      raise
    test.skipTest(f"{e} (CI has the ROMs: ../shared/jericho-games)")
