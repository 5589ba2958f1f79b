"""Tests for experiments/web_suite.py: the MiniWoB++ suite runner.

The helpers (schedule, seeds, intervals, the table) need nothing. The end
to end test plays two tasks x two episodes with the real SmolLM2 in a real
headless Chromium: it skips where the browser is missing, except under
CI=true, where it fails instead (CI installs it: `make web-install`).
"""

import json
import os
import tempfile
from unittest import mock

from absl.testing import absltest

from experiments import episodes
from experiments import persistence
from experiments import web_suite
from experiments.configs import web_suite as web_suite_config
from jitrl_jax import agents as agent_lib
from jitrl_jax.envs import base as envs_base
from tests import browser


def _alive(pid: int) -> bool:
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
      stat = f.read()
  except OSError:
    return False
  return stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X")


class HelpersTest(absltest.TestCase):

  def test_schedule_interleaves_tasks(self):
    self.assertEqual(
        web_suite.schedule(("a", "b", "c"), 2),
        [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("c", 1)],
    )

  def test_instance_seeds_differ_by_episode_and_seed(self):
    seeds = {web_suite.instance_seed(s, e) for s in range(3) for e in range(20)}
    self.assertLen(seeds, 60)

  def test_wilson_interval(self):
    # Known values (Wilson 1927; e.g. 8 of 10: 0.490 to 0.943).
    low, high = web_suite.wilson_interval(8, 10)
    self.assertAlmostEqual(low, 0.4902, places=3)
    self.assertAlmostEqual(high, 0.9433, places=3)
    self.assertEqual(web_suite.wilson_interval(0, 10)[0], 0.0)
    self.assertEqual(web_suite.wilson_interval(10, 10)[1], 1.0)
    low, high = web_suite.wilson_interval(0, 0)
    self.assertTrue(low != low and high != high)  # nan: no trials

  def test_success_table_counts_the_last_k(self):
    per_agent = {
        "static": {"tasks": {"t": {"success": [1, 1, 0, 0]}}},
        "jitrl": {"tasks": {"t": {"success": [0, 0, 1, 1]}}},
    }
    table = web_suite.success_table(per_agent, 2)
    self.assertIn("| t | 0/2 | 2/2 |", table)
    self.assertIn("| **all** | **0.00** | **1.00** |", table)

  def test_config_errors(self):
    cfg = web_suite_config.get_config()
    cfg.tasks = ()
    with self.assertRaisesRegex(episodes.ConfigError, "tasks is empty"):
      web_suite.check_config(cfg)
    cfg.tasks = ("click-button", "click-button")
    with self.assertRaisesRegex(episodes.ConfigError, "twice"):
      web_suite.check_config(cfg)

  def test_three_views_include_the_task(self):
    lm = agent_lib.scripted_language_model({})
    cfg = web_suite_config.get_config()
    agent = agent_lib.make_agent("jitrl", lm, **cfg.agent.to_dict())
    a = agent.state_views("page", "actions: none", 'Click on "Ok".')
    b = agent.state_views("page", "actions: none", 'Click on "No".')
    self.assertLen(a, 3)
    self.assertEqual(a[0].ids.tolist(), b[0].ids.tolist())
    self.assertNotEqual(a[2].ids.tolist(), b[2].ids.tolist())

  def test_four_views_are_refused(self):
    lm = agent_lib.scripted_language_model({})
    with self.assertRaisesRegex(ValueError, "two views"):
      agent_lib.make_agent(
          "jitrl",
          lm,
          view_sizes=(8, 8, 8, 8),
          view_ngrams=(1, 1, 1, 1),
          view_weights=(1.0, 1.0, 1.0, 1.0),
      )


class WebSuiteEndToEndTest(absltest.TestCase):
  """Two tasks x two episodes, static and jitrl, real LM, real browser."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    browser.require_browser()
    cls.lm = agent_lib.load_language_model()

  def _config(self):
    cfg = web_suite_config.get_config()
    cfg.tasks = ("click-button", "enter-text")
    cfg.episodes = 2
    cfg.steps = 3
    cfg.env.step_limit = 3
    cfg.agents = ("static", "jitrl")
    cfg.screenshots.agent = "jitrl"
    cfg.screenshots.task = "enter-text"
    return cfg

  def test_suite_runs_resumes_and_leaves_no_browser(self):
    cfg = self._config()
    run_dir = tempfile.mkdtemp(prefix="jitrl-web-suite-")
    made, pids = [], set()
    real_make = web_suite.make_task_envs

    def make_task_envs(c):
      envs = real_make(c)
      made.append(envs)
      return envs

    class Stop(RuntimeError):
      pass

    def stop_after_three(agent_name, done):
      for env in made[-1].values():
        pids.update(env.browser_processes())
      if agent_name == "jitrl" and done == 3:
        raise Stop()

    with mock.patch.object(web_suite, "make_task_envs", make_task_envs):
      with self.assertRaises(Stop):
        web_suite.run_web_suite(
            cfg, run_dir, lm=self.lm, after_episode=stop_after_three
        )
      self.assertTrue(pids, "the browsers' processes were never seen")
      self.assertEqual([p for p in pids if _alive(p)], [])
      progress = json.load(
          open(os.path.join(run_dir, "jitrl", "progress.json"))
      )
      self.assertEqual(progress["episodes_done"], 3)
      self.assertEqual(
          progress["tasks"], ["click-button", "enter-text", "click-button"]
      )
      with self.assertRaisesRegex(persistence.RunDirError, "resume"):
        web_suite.run_web_suite(cfg, run_dir, lm=self.lm)
      results = web_suite.run_web_suite(cfg, run_dir, resume=True, lm=self.lm)
    self.assertEqual([p for p in pids if _alive(p)], [])
    for env in made[-1].values():
      self.assertEqual(env.browser_processes(), [])

    # Every agent played every task twice; jitrl's run was resumed once.
    for agent in ("static", "jitrl"):
      tasks = results["agents"][agent]["tasks"]
      self.assertEqual(sorted(tasks), ["click-button", "enter-text"])
      for t in tasks.values():
        self.assertLen(t["rewards"], 2)
        for r, s in zip(t["rewards"], t["success"]):
          self.assertTrue(-1.0 <= r <= 1.0)
          self.assertEqual(s, int(r > 0))
    agent_results = json.load(
        open(os.path.join(run_dir, "jitrl", "results.json"))
    )
    self.assertEqual(agent_results["resumed_at"], [3])
    rows = persistence.read_step_logs(
        os.path.join(run_dir, "jitrl", "steps.jsonl")
    )
    self.assertEqual(sorted({r["episode"] for r in rows}), [0, 1, 2, 3])
    self.assertEqual({r["task"] for r in rows}, {"click-button", "enter-text"})
    self.assertGreater(agent_results["memory_size"], 0)
    self.assertTrue(os.path.exists(results["plot"]))
    self.assertTrue(os.path.exists(results["strip"]))
    self.assertIn("| click-button |", results["table"])

  def test_generating_agents_write_web_actions(self):
    cfg = self._config()
    cfg.tasks = ("click-button",)
    cfg.episodes = 1
    cfg.agents = ("static-generate", "jitrl-generate")
    cfg.screenshots.agent = ""
    run_dir = tempfile.mkdtemp(prefix="jitrl-web-suite-")
    results = web_suite.run_web_suite(cfg, run_dir, lm=self.lm)
    for agent in cfg.agents:
      rows = persistence.read_step_logs(
          os.path.join(run_dir, agent, "steps.jsonl")
      )
      self.assertNotEmpty(rows)
      for row in rows:
        # The LM wrote the line; the page got it as an action of its
        # grammar or as a recorded no-op: never a crash.
        self.assertIn("generated_text", row)
        self.assertIsInstance(row["game_command"], str)
      (reward,) = results["agents"][agent]["tasks"]["click-button"]["rewards"]
      self.assertTrue(-1.0 <= reward <= 1.0)

  def test_unknown_task_lists_the_tasks(self):
    cfg = self._config()
    cfg.tasks = ("click-buton",)
    with self.assertRaisesRegex(envs_base.UnknownGameError, "click-button"):
      web_suite.run_web_suite(
          cfg, tempfile.mkdtemp(prefix="jitrl-web-suite-"), lm=self.lm
      )


if __name__ == "__main__":
  absltest.main()
