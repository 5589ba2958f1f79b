"""The Jericho suite driver: every game in its own run directory, resumable.

Runs on two real games with the scripted LM (seconds, not minutes): the
suite writes each game's results and an index, a second call resumes (no
episode is played twice), and `--only` names an unknown game in its error.
"""

import json
import os
import tempfile

from absl.testing import absltest

from experiments import run_suite
from experiments.configs import suite as suite_config
from tests import roms


def _config():
  c = suite_config.get_config()
  c.games = ("detective", "balances")
  c.episodes, c.steps = 2, 2
  c.lm.kind = "scripted"
  c.lm.preferences = ()
  c.lm.default_logit = 0.0
  c.agent.prompt_buckets = (64,)
  c.agent.token_buckets = (4,)
  return c


class RunSuiteTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    roms.require_roms(self, *_config().games)

  def test_suite_runs_every_game_and_resumes(self):
    cfg = _config()
    self.assertEqual(len(suite_config.GAMES), 7)
    with tempfile.TemporaryDirectory() as folder:
      logs = []
      done = run_suite.run_suite(cfg, folder, log=logs.append)
      self.assertEqual(list(done), ["detective", "balances"])
      for game, path in done.items():
        with open(path) as f:
          results = json.load(f)
        self.assertEqual(results["game"], f"jericho:{game}")
        self.assertEqual(set(results["agents"]), {"static", "jitrl"})
        for agent in results["agents"].values():
          self.assertLen(agent["episode_scores"], 2)
      with open(os.path.join(folder, "suite.json")) as f:
        self.assertEqual(json.load(f)["games"], done)
      self.assertIn("[suite] detective: starting", "\n".join(logs))
      # Again: every game resumes and plays nothing more.
      steps = os.path.join(folder, "detective", "jitrl", "steps.jsonl")
      with open(steps) as f:
        before = f.read()
      logs.clear()
      run_suite.run_suite(cfg, folder, log=logs.append)
      self.assertIn("[suite] detective: resuming", "\n".join(logs))
      with open(steps) as f:
        self.assertEqual(f.read(), before)

  def test_only_names_unknown_games(self):
    with tempfile.TemporaryDirectory() as folder:
      with self.assertRaisesRegex(ValueError, r"'zork9'.*detective"):
        run_suite.run_suite(_config(), folder, only=("zork9",))


if __name__ == "__main__":
  absltest.main()
