"""MiniWoB++ in tests: skip without the browser, except in CI (which has it)."""

import importlib.util
import os

from absl.testing import absltest

_CI = os.environ.get("CI") == "true"


def require_browser():
  """Skips (fails under CI=true) where miniwob or the browser is missing."""
  from jitrl_jax.envs import miniwob as miniwob_env  # pylint: disable=g-import-not-at-top

  missing = []
  if importlib.util.find_spec("miniwob") is None:
    missing.append("the miniwob package (pip install -e '.[web]')")
  for variable, default in (
      ("MINIWOB_CHROME_BINARY", miniwob_env.DEFAULT_CHROME_BINARY),
      ("MINIWOB_CHROMEDRIVER", miniwob_env.DEFAULT_CHROMEDRIVER),
  ):
    path = os.environ.get(variable, default)
    if not os.access(path, os.X_OK):
      missing.append(f"{path} (apt-get install chromium chromium-driver)")
  if not missing:
    return
  reason = "MiniWoB++ needs " + "; ".join(missing) + " (`make web`)"
  if _CI:
    raise AssertionError(reason + ": CI=true, where the browser is required")
  raise absltest.SkipTest(reason)
