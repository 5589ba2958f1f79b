"""Tests for experiments/reporting/web.py: the MiniWoB++ suite's numbers."""

import json
import os
import tempfile

from absl.testing import absltest

from experiments import web_suite
from experiments.reporting import runs as runs_lib
from experiments.reporting import web as web_lib


def _run(seed, successes):
  """A web suite results.json: successes[agent][task] -> [E] 0/1."""
  return {
      "suite": "miniwob",
      "seed": seed,
      "tasks": list(next(iter(successes.values()))),
      "episodes_per_task": len(
          next(iter(next(iter(successes.values())).values()))
      ),
      "steps": 6,
      "model": {"name": "scripted", "sha256": ""},
      "agents": {
          agent: {
              "tasks": {
                  task: {
                      "success": s,
                      "rewards": [0.9 if x else -1.0 for x in s],
                  }
                  for task, s in per_task.items()
              }
          }
          for agent, per_task in successes.items()
      },
  }


class WilsonTest(absltest.TestCase):

  def test_known_values(self):
    low, high = web_suite.wilson_interval(5, 10)
    self.assertAlmostEqual(low, 0.2366, places=4)
    self.assertAlmostEqual(high, 0.7634, places=4)
    low, high = web_suite.wilson_interval(0, 10)
    self.assertEqual(low, 0.0)
    self.assertAlmostEqual(high, 0.2775, places=4)
    low, high = web_suite.wilson_interval(10, 10)
    self.assertAlmostEqual(low, 0.7225, places=4)
    self.assertEqual(high, 1.0)


class WebReportTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    # Two seeds, two tasks, 4 episodes; k = 2.
    self.runs = [
        _run(
            0,
            {
                "static": {"a": [0, 0, 0, 1], "b": [1, 1, 0, 0]},
                "jitrl": {"a": [0, 1, 1, 1], "b": [1, 1, 1, 1]},
            },
        ),
        _run(
            1,
            {
                "static": {"a": [0, 0, 1, 0], "b": [0, 1, 0, 1]},
                "jitrl": {"a": [0, 0, 1, 1], "b": [0, 1, 1, 0]},
            },
        ),
    ]

  def test_rates_pool_seeds(self):
    report = web_lib.web_report(self.runs, k=2)
    # Task a, jitrl, last 2: (1, 1) and (1, 1) -> 4 of 4.
    last = report["per_task"]["a"]["jitrl"]["last"]
    self.assertEqual((last["successes"], last["episodes"]), (4, 4))
    # Task a, static, first 2: (0, 0) and (0, 0) -> 0 of 4.
    first = report["per_task"]["a"]["static"]["first"]
    self.assertEqual((first["successes"], first["episodes"]), (0, 4))
    self.assertEqual(first["ci"][0], 0.0)
    # All tasks, static, last 2: a (0,1) (1,0), b (0,0) (0,1) -> 3 of 8.
    pooled = report["all"]["static"]["last"]
    self.assertEqual((pooled["successes"], pooled["episodes"]), (3, 8))
    self.assertAlmostEqual(pooled["rate"], 3 / 8)
    self.assertEqual(report["seeds"], [0, 1])
    self.assertEqual(report["curves"]["b"]["jitrl"][1], [0, 1, 1, 0])

  def test_mcnemar_pairs_by_instance(self):
    report = web_lib.web_report(self.runs, k=2)
    # Last 2 pairs (jitrl, static): a s0 (1,0) (1,1); a s1 (1,1) (1,0);
    # b s0 (1,0) (1,0); b s1 (1,0) (0,1): better 5, worse 1.
    paired = report["paired"]["jitrl"]
    self.assertEqual((paired["better"], paired["worse"]), (5, 1))
    # Two-sided binomial: P(X <= 1 or X >= 5), X ~ Bin(6, 1/2) = 14/64.
    self.assertAlmostEqual(paired["p"], 14 / 64)
    self.assertIn("5 pairs", web_lib.paired_text(report))

  def test_table_rows(self):
    table = web_lib.web_table(web_lib.web_report(self.runs, k=2))
    lines = table.splitlines()
    self.assertLen(lines, 2 + 2 + 2)  # header, rule, 2 tasks, last, first
    self.assertIn("1.00 (", lines[2])  # task a, jitrl: 4 of 4
    self.assertTrue(lines[-1].startswith("| **all tasks, first 2**"))

  def test_mismatched_tasks_are_an_error(self):
    other = _run(2, {"static": {"a": [0, 1, 0, 0]}})
    with self.assertRaisesRegex(runs_lib.ReportError, "tasks differ"):
      web_lib.web_report(self.runs + [other], k=2)

  def test_an_agent_on_fewer_seeds_pools_its_own(self):
    extra = {"a": [1, 1, 1, 1], "b": [0, 0, 0, 1]}
    self.runs[0]["agents"]["memory-prompt"] = _run(0, {"m": extra})["agents"][
        "m"
    ]
    report = web_lib.web_report(self.runs, k=2)
    self.assertEqual(report["agents"], ["static", "jitrl", "memory-prompt"])
    self.assertEqual(report["agent_seeds"]["memory-prompt"], [0])
    self.assertEqual(report["agent_seeds"]["jitrl"], [0, 1])
    pooled = report["all"]["memory-prompt"]["last"]
    self.assertEqual((pooled["successes"], pooled["episodes"]), (3, 4))
    # Paired on seed 0 only: a (1,0) (1,1); b (0,0) (1,0): better 2, worse 0.
    paired = report["paired"]["memory-prompt"]
    self.assertEqual((paired["better"], paired["worse"]), (2, 0))
    header = web_lib.web_table(report).splitlines()[0]
    self.assertIn("`memory-prompt` (seed 0)", header)
    self.assertIn("`jitrl` |", header)

  def test_load_suite_runs(self):
    with tempfile.TemporaryDirectory() as d:
      with self.assertRaisesRegex(runs_lib.ReportError, "no web suite"):
        web_lib.load_suite_runs(os.path.join(d, "*.json"))
      for r in reversed(self.runs):
        with open(os.path.join(d, f"s{r['seed']}.json"), "w") as f:
          json.dump(r, f)
      loaded = web_lib.load_suite_runs(os.path.join(d, "*.json"))
      self.assertEqual([r["seed"] for r in loaded], [0, 1])
      with open(os.path.join(d, "s9.json"), "w") as f:
        json.dump({"suite": "jericho", "seed": 9}, f)
      with self.assertRaisesRegex(runs_lib.ReportError, "not a MiniWoB"):
        web_lib.load_suite_runs(os.path.join(d, "*.json"))

  def test_curves_figure(self):
    with tempfile.TemporaryDirectory() as d:
      path = web_lib.plot_web_curves(
          web_lib.web_report(self.runs, k=2), os.path.join(d, "c.png")
      )
      self.assertGreater(os.path.getsize(path), 1000)


if __name__ == "__main__":
  absltest.main()
