"""Tests for the report: statistics, tables, README blocks.

The code is experiments/reporting/ and its command line experiments/report.py.
The statistics are checked on small hand-made runs whose expected values are
worked out by hand in the comments; the README test ties every generated
block of README.md to what `make report` makes of the committed files
(docs/ and BENCHMARKS.md).
"""

import json
import os
import tempfile
from unittest import mock

from absl.testing import absltest

from experiments import report
from experiments.reporting import headline
from experiments.reporting import readme as readme_lib
from experiments.reporting import runs as runs_lib
from experiments.reporting import tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BENCHMARKS = os.path.join(ROOT, "BENCHMARKS.md")
DOCS = os.path.join(ROOT, "docs")

# Toy runs: game "toy:a", 4 episodes, agents static and jitrl, seeds 0-2.
TOY = {
    0: {"static": [1, 2, 3, 2], "jitrl": [1, 3, 5, 5]},
    1: {"static": [2, 2, 2, 4], "jitrl": [2, 4, 4, 6]},
    2: {"static": [0, 2, 2, 2], "jitrl": [2, 2, 6, 6]},
}


def _run_results(seed, agents, game="toy:a"):
  """A run's results.json, as experiments.run_text_game writes it."""
  return {
      "game": game,
      "agents": {
          name: {"episode_scores": [float(s) for s in scores]}
          for name, scores in agents.items()
      },
      "seeds": {"seed": seed, "game_seed": 0, "vary_game_seed": False},
  }


def _agent_results(seed, agent, scores, game="toy:a"):
  """One agent's <agent>/results.json."""
  return {
      "agent": agent,
      "game": game,
      "episode_scores": [float(s) for s in scores],
      "seeds": {"seed": seed, "game_seed": 0, "vary_game_seed": False},
  }


def _write_json(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(obj, f)


def make_tempdir(test):
  """A temporary folder removed after the test (works under pytest too)."""
  tmp = tempfile.TemporaryDirectory()
  test.addCleanup(tmp.cleanup)
  return tmp.name


def write_toy_runs(root):
  """Seeds 0 and 1 as run directories, seed 2 as two per-agent files."""
  for seed in (0, 1):
    _write_json(
        os.path.join(root, f"run{seed}", "results.json"),
        _run_results(seed, TOY[seed]),
    )
  for agent, scores in TOY[2].items():
    _write_json(
        os.path.join(root, "run2", agent, "results.json"),
        _agent_results(2, agent, scores),
    )
  return [
      os.path.join(root, "run0"),
      os.path.join(root, "run1"),
      os.path.join(root, "run2", "*", "results.json"),
  ]


class StatisticsTest(absltest.TestCase):

  def test_run_statistics(self):
    # Avg (1 + 2 + 3 + 4 + 6) / 5 = 3.2; Final 6; first 2: (1 + 2) / 2 =
    # 1.5; last 2: (4 + 6) / 2 = 5.
    self.assertEqual(
        runs_lib.run_statistics([1, 2, 3, 4, 6], 2),
        {"avg": 3.2, "final": 6.0, "first_k": 1.5, "last_k": 5.0},
    )

  def test_k_out_of_range(self):
    with self.assertRaises(runs_lib.ReportError):
      runs_lib.run_statistics([1, 2], 3)
    with self.assertRaises(runs_lib.ReportError):
      runs_lib.run_statistics([1, 2], 0)

  def test_bootstrap_three_values_spans_min_to_max(self):
    # 27 equally likely resamples; the mean is 1 only for (1, 1, 1): P =
    # 1/27 = 0.037 >= 0.025, so the lower bound is 1; it is 6 only for (6,
    # 6, 6): P(mean < 6) = 26/27 = 0.963 < 0.975, so the upper bound is 6.
    self.assertEqual(runs_lib.bootstrap_mean_ci([2, 6, 1]), (1.0, 6.0))

  def test_bootstrap_two_values_quantiles(self):
    # Resamples of [0, 3]: (0, 0) mean 0 with P 1/4, (0, 3) in either order
    # mean 1.5 with P 1/2, (3, 3) mean 3 with P 1/4. CDF: 0.25 at 0, 0.75
    # at 1.5, 1 at 3. Level 0.5: the 0.25 quantile is 0 (the CDF reaches
    # 0.25 exactly there) and the 0.75 quantile is 1.5.
    self.assertEqual(runs_lib.bootstrap_mean_ci([0, 3], level=0.5), (0.0, 1.5))
    self.assertEqual(runs_lib.bootstrap_mean_ci([0, 3]), (0.0, 3.0))
    self.assertEqual(runs_lib.bootstrap_mean_ci([4]), (4.0, 4.0))

  def test_bootstrap_monte_carlo_beyond_exact(self):
    # 11 seeds (past the exact limit): every resample of equal values has
    # their mean.
    self.assertEqual(runs_lib.bootstrap_mean_ci([2.0] * 11), (2.0, 2.0))

  def test_mann_whitney_exact_all_greater(self):
    # Every x above every y: U = 3 * 3 = 9, the largest; only 1 of the
    # C(6, 3) = 20 splits reaches it, so p = 1/20 = 0.05 = min_p.
    r = runs_lib.mann_whitney_exact([4, 5, 6], [1, 2, 3])
    self.assertEqual(r["u"], 9.0)
    self.assertAlmostEqual(r["p"], 0.05)
    self.assertAlmostEqual(r["min_p"], 0.05)

  def test_mann_whitney_exact_with_ties(self):
    # The Detective memory-prompt and static per-seed last-5 means. Pooled
    # midranks: 34 -> 1, 36 36 -> 2.5, 38 38 -> 4.5, 40 -> 6; U = R_x - 6.
    # x = {40, 36, 38}: R = 6 + 2.5 + 4.5 = 13, U = 7. Splits with R >= 13
    # need the 6 (the other five ranks sum to at most 11.5) and two ranks
    # summing to >= 7: {4.5, 4.5} (1 way) or {4.5, 2.5} (2 x 2 = 4 ways):
    # 5 of 20, p = 0.25.
    r = runs_lib.mann_whitney_exact([40, 36, 38], [36, 38, 34])
    self.assertEqual(r["u"], 7.0)
    self.assertAlmostEqual(r["p"], 0.25)

  def test_mann_whitney_exact_with_one_run(self):
    # One run against three (SciPy refuses a group of one): the 4 splits
    # put the single value at each rank; only the top reaches U = 3.
    r = runs_lib.mann_whitney_exact([3.0], [1.0, 2.0, 0.5])
    self.assertEqual(r["u"], 3.0)
    self.assertAlmostEqual(r["p"], 0.25)
    self.assertAlmostEqual(r["min_p"], 0.25)
    # Three runs against one, with a tie: U = 1 + 0.5 + 1 = 2.5 against
    # y = 2. Leaving out each pooled value as y: 3 -> U = 1, either 2 ->
    # 2.5, 4 -> 0; 2 of the 4 splits reach 2.5.
    r = runs_lib.mann_whitney_exact([3.0, 2.0, 4.0], [2.0])
    self.assertEqual(r["u"], 2.5)
    self.assertAlmostEqual(r["p"], 0.5)
    # All equal: every split has the same U, p = 1.
    self.assertEqual(runs_lib.mann_whitney_exact([1.0], [1.0, 1.0])["p"], 1.0)

  def test_mann_whitney_episodes_normal_approximation(self):
    # x = [3, 4] over y = [1, 2]: U = 4, mean n m / 2 = 2, sd sqrt(n m (n +
    # m + 1) / 12) = sqrt(5/3) = 1.2910; with the continuity correction z =
    # (4 - 2 - 0.5) / 1.2910 = 1.1619 and p = 1 - Phi(1.1619) = 0.12264.
    r = runs_lib.mann_whitney_episodes([3, 4], [1, 2])
    self.assertEqual(r["u"], 4.0)
    self.assertAlmostEqual(r["p"], 0.12264, places=5)

  def test_format_p(self):
    self.assertEqual(tables.format_p(0.2463), "0.25")
    self.assertEqual(tables.format_p(0.05), "0.050")
    self.assertEqual(tables.format_p(0.006008), "0.006")
    self.assertEqual(tables.format_p(0.0004), "< 0.001")


class ToyReportTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = make_tempdir(self)
    self.paths = write_toy_runs(self.dir)
    self.report = runs_lib.build_report(runs_lib.load_runs(self.paths), 2)
    self.game = self.report["games"]["toy:a"]

  def test_grouping(self):
    self.assertEqual(list(self.report["games"]), ["toy:a"])
    self.assertEqual(self.game["seeds"], [0, 1, 2])
    self.assertEqual(self.game["episodes"], 4)
    self.assertEqual(
        [(r["seed"], r["agent"]) for r in self.game["runs"]],
        [(s, a) for s in (0, 1, 2) for a in ("static", "jitrl")],
    )

  def test_per_run_rows(self):
    # static seed 1, [2, 2, 2, 4]: Avg 2.5, Final 4, first 2: 2, last 2: 3.
    row = self.game["runs"][2]
    self.assertEqual((row["seed"], row["agent"]), (1, "static"))
    self.assertEqual(
        (row["avg"], row["final"], row["first_k"], row["last_k"]),
        (2.5, 4.0, 2.0, 3.0),
    )

  def test_pooled_rows(self):
    # Per-seed last-2 means: static 2.5, 3, 2 (mean 2.5); jitrl 5, 5, 6
    # (mean 16/3 = 5.333). With 3 seeds the interval runs from the lowest
    # seed's value to the highest's.
    static = self.game["pooled"]["static"]["last_k"]
    jitrl = self.game["pooled"]["jitrl"]["last_k"]
    self.assertEqual(static["per_seed"], [2.5, 3.0, 2.0])
    self.assertEqual(static["mean"], 2.5)
    self.assertEqual(static["ci"], [2.0, 3.0])
    self.assertEqual(jitrl["per_seed"], [5.0, 5.0, 6.0])
    self.assertAlmostEqual(jitrl["mean"], 16 / 3)
    self.assertEqual(jitrl["ci"], [5.0, 6.0])
    # jitrl Avg: 3.5, 4, 4 -> 11.5 / 3 = 3.833; Final: 5, 6, 6 -> 5.667.
    self.assertAlmostEqual(
        self.game["pooled"]["jitrl"]["avg"]["mean"], 11.5 / 3
    )
    self.assertAlmostEqual(
        self.game["pooled"]["jitrl"]["final"]["mean"], 17 / 3
    )

  def test_tests_against_static(self):
    # Runs: jitrl's 5, 5, 6 are all above static's 2.5, 3, 2: U = 9, p =
    # 1/20. Episodes (last 2 of each run, pooled): jitrl 5 5 4 6 6 6,
    # static 3 2 2 4 2 2: U = 6 + 6 + 5.5 + 3 x 6 = 35.5 (the 4s tie). Mean
    # 18; ties 2 x4, 4 x2, 5 x2, 6 x3 give sum(t^3 - t) = 60 + 6 + 6 + 24 =
    # 96, so var = 36/12 * (13 - 96 / (12 * 11)) = 36.818, sd 6.0678; z =
    # (35.5 - 18 - 0.5) / 6.0678 = 2.8017, p = 1 - Phi(2.8017) = 0.002542.
    test = self.game["comparisons"]["jitrl"]
    self.assertEqual(test["runs"]["n"], [3, 3])
    self.assertEqual(test["runs"]["u"], 9.0)
    self.assertAlmostEqual(test["runs"]["p"], 0.05)
    self.assertEqual(test["episodes"]["n"], [6, 6])
    self.assertEqual(test["episodes"]["u"], 35.5)
    self.assertAlmostEqual(test["episodes"]["p"], 0.002542, places=6)
    self.assertNotIn("static", self.game["comparisons"])

  def test_curves(self):
    # Episode 3 of jitrl over seeds: 5, 4, 6 -> mean 5, low 4, high 6.
    curve = self.game["curves"]["jitrl"]
    self.assertEqual(curve["mean"][2], 5.0)
    self.assertEqual((curve["low"][2], curve["high"][2]), (4.0, 6.0))

  def test_markdown(self):
    lines = tables.per_run_table(self.game).splitlines()
    self.assertEqual(lines[2], "| 0 | static | 2.0 | 2 | 1.5 | 2.5 | 1 2 3 2 |")
    pooled = tables.pooled_table(self.game).splitlines()
    self.assertEqual(
        pooled[2],
        "| static | 3 | 2.0 [1.5, 2.5] | 2.7 [2.0, 4.0] | 1.5 [1.0, 2.0] |"
        " 2.5 [2.0, 3.0] | | |",
    )
    # Avg 3.833, Final 5.667, first 2: (2 + 3 + 2) / 3 = 2.333, last 2
    # 5.333; p over runs 0.05, over episodes 0.0025.
    self.assertEqual(
        pooled[3],
        "| jitrl | 3 | 3.8 [3.5, 4.0] | 5.7 [5.0, 6.0] | 2.3 [2.0, 3.0] |"
        " 5.3 [5.0, 6.0] | 0.050 | 0.003 |",
    )
    text = " ".join(tables.summary_text(self.game).split())
    self.assertIn("the last 2 episodes average 5.3 for `jitrl` and 2.5", text)
    self.assertIn("gives p = 0.050 for `jitrl`", text)

  def test_agents_with_different_numbers_of_runs(self):
    # A third agent with one run: its test and its floor are its own.
    path = os.path.join(self.dir, "one", "results.json")
    _write_json(path, _run_results(0, {"picker": [3, 3, 6, 6]}))
    report = runs_lib.build_report(runs_lib.load_runs([*self.paths, path]), 2)
    game = report["games"]["toy:a"]
    self.assertEqual(game["comparisons"]["picker"]["runs"]["n"], [1, 3])
    self.assertAlmostEqual(game["comparisons"]["picker"]["runs"]["p"], 0.25)
    text = " ".join(tables.summary_text(game).split())
    self.assertIn("the smallest p each can give is 0.050 for `jitrl`", text)
    self.assertIn("0.25 for `picker` (1 run)", text)

  def test_duplicate_runs_rejected(self):
    with self.assertRaisesRegex(runs_lib.ReportError, "twice"):
      runs_lib.group_runs(runs_lib.load_runs(self.paths[:1] * 2))

  def test_different_lengths_rejected(self):
    path = os.path.join(self.dir, "short", "results.json")
    _write_json(path, _run_results(5, {"static": [1, 2]}))
    with self.assertRaisesRegex(runs_lib.ReportError, "numbers of episodes"):
      runs_lib.build_report(runs_lib.load_runs([*self.paths, path]), 2)

  def test_missing_and_malformed_inputs(self):
    with self.assertRaises(runs_lib.ReportError):
      runs_lib.load_runs([os.path.join(self.dir, "nothing-*.json")])
    bad = os.path.join(self.dir, "bad", "results.json")
    _write_json(bad, {"game": "x"})
    with self.assertRaisesRegex(runs_lib.ReportError, "not a results.json"):
      runs_lib.load_runs([bad])

  def test_command_line_writes_markdown_json_and_figure(self):
    out = os.path.join(self.dir, "out")
    self.assertEqual(report.main([*self.paths, "--out", out, "--k", "2"]), 0)
    self.assertTrue(os.path.getsize(os.path.join(out, "toy_a_curve.png")))
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
      data = json.load(f)
    self.assertEqual(data["unit"], "run (one seed)")
    self.assertAlmostEqual(
        data["games"]["toy:a"]["pooled"]["jitrl"]["last_k"]["mean"], 5.333333
    )
    with open(os.path.join(out, "report.md"), encoding="utf-8") as f:
      self.assertIn("![toy:a", f.read())


class ReadmeBlocksTest(absltest.TestCase):

  def test_readme_blocks_match_generated_output(self):
    # The README says what the committed results files say: every block
    # between `<!-- report:NAME begin -->` and `end` is what `make report`
    # generates from docs/ and BENCHMARKS.md.
    problems = readme_lib.check_readme(README)
    self.assertEqual(problems, [], "\n".join(problems))
    blocks = readme_lib.readme_blocks(open(README, encoding="utf-8").read())
    self.assertEqual(set(blocks), set(readme_lib.README_BLOCKS))

  def test_detective_statistics(self):
    # Per-seed last-5 means (seeds 0, 1, 2): static 36, 38, 34 (mean 36);
    # jitrl 46, 44, 42 (44); jitrl-reference 46, 46, 42 (44.67);
    # memory-prompt 40, 36, 38 (38). First 5: static 32, 26, 34 (30.67);
    # jitrl 26, 40, 38 (34.67); jitrl-reference 24, 20, 22 (22);
    # memory-prompt 26, 38, 38 (34).
    runs = runs_lib.load_runs(
        [os.path.join(DOCS, "jericho_detective*_results.json")]
    )
    game = runs_lib.build_report(runs, 5)["games"]["jericho:detective"]
    self.assertEqual(game["seeds"], [0, 1, 2])
    means = {
        a: round(p["last_k"]["mean"], 2) for a, p in game["pooled"].items()
    }
    self.assertEqual(
        means,
        {
            "static": 36,
            "jitrl": 44,
            "jitrl-reference": 44.67,
            "memory-prompt": 38,
        },
    )
    firsts = {
        a: round(p["first_k"]["mean"], 2) for a, p in game["pooled"].items()
    }
    self.assertEqual(
        firsts,
        {
            "static": 30.67,
            "jitrl": 34.67,
            "jitrl-reference": 22,
            "memory-prompt": 34,
        },
    )
    tests = game["comparisons"]
    # Over runs: both JitRL flavours beat static in every seed, U = 9, p =
    # 1/20; memory-prompt: U = 7, p = 5/20 (see the ties test above).
    self.assertEqual(
        {a: t["runs"]["u"] for a, t in tests.items()},
        {"jitrl": 9, "jitrl-reference": 9, "memory-prompt": 7},
    )
    self.assertEqual(
        {a: round(t["runs"]["p"], 3) for a, t in tests.items()},
        {"jitrl": 0.05, "jitrl-reference": 0.05, "memory-prompt": 0.25},
    )
    # Over the 15 + 15 pooled last-5 episodes (the README's earlier numbers,
    # reproduced): U = 170.5, 168 and 128.5 of 225 give p = 0.006, 0.008
    # and 0.25 by the normal approximation with tie and continuity
    # corrections.
    self.assertEqual(
        {a: t["episodes"]["u"] for a, t in tests.items()},
        {"jitrl": 170.5, "jitrl-reference": 168, "memory-prompt": 128.5},
    )
    self.assertEqual(
        {a: tables.format_p(t["episodes"]["p"]) for a, t in tests.items()},
        {"jitrl": "0.006", "jitrl-reference": "0.008", "memory-prompt": "0.25"},
    )

  def test_check_finds_stale_block_and_update_fixes_it(self):
    d = make_tempdir(self)
    write_toy_runs(d)
    blocks = {
        "toy": readme_lib.RunsBlock(
            runs="run[01]/results.json",
            k=2,
            figure="out/toy.png",
            json="out/toy.json",
        )
    }
    readme = os.path.join(d, "README.md")
    with open(readme, "w", encoding="utf-8") as f:
      f.write(
          "# T\n\n<!-- report:toy begin -->\nhand-written 44\n"
          "<!-- report:toy end -->\n\nafter\n"
      )
    problems = readme_lib.check_readme(readme, blocks)
    self.assertLen(problems, 3)  # The block, the JSON, the figure.
    self.assertIn("-hand-written 44", problems[0])
    with mock.patch.dict(readme_lib.README_BLOCKS, blocks, clear=True):
      self.assertEqual(report.main(["--readme", readme, "--check"]), 1)
      self.assertEqual(report.main(["--readme", readme]), 0)
      self.assertEqual(report.main(["--readme", readme, "--check"]), 0)
    with open(readme, encoding="utf-8") as f:
      text = f.read()
    self.assertTrue(text.startswith("# T\n\n<!-- report:toy begin -->\n"))
    self.assertTrue(text.endswith("<!-- report:toy end -->\n\nafter\n"))
    self.assertIn("| 1 | jitrl | 4.0 | 6 | 3 | 5 | 2 4 4 6 |", text)
    self.assertEqual(readme_lib.check_readme(readme, blocks), [])

  def test_unpaired_markers_rejected(self):
    with self.assertRaisesRegex(runs_lib.ReportError, "pair up"):
      readme_lib.readme_blocks("<!-- report:a begin -->\nx\n")
    with self.assertRaisesRegex(runs_lib.ReportError, "not one of"):
      readme_lib.generate_block("nope", ROOT)


SMALL_BENCHMARKS = """\
# Benchmarks

Generated 2026-01-01 00:00 UTC by `python -m benchmarks.run --out B.md`.

- machine: box, Linux
- JAX backend: cpu (cpu), 1 device(s)

## Agent step (one JitRL decision)

| B | decision latency (s) |
|---:|---:|
| 1 | 1.600 |

B = 8 gives 0.94x the decisions per second of B = 1 (target >= 3x: NOT met).
Roofline: so even at the matmul rate B = 8 could give at most 1.24x the
decisions per second.

_agent_bench: 12.5 s in all._

## Theory lab: vmapped agents

* M = 256, k = 16: vmapped over the loop at 100 agents 3.8x (misses it).
* M = 16, k = 4: vmapped over the loop at 100 agents 25.0x (fine).

### Sharded retrieval: M = 8

| devices | equal | seconds per batch |
|---:|---|---:|
| 1 | yes | 0.1 |
| 2 | no | 0.1 |

_theory_bench: 3.0 s in all._
"""


class BenchmarksTest(absltest.TestCase):

  def test_parse(self):
    data = headline.parse_benchmarks_markdown(SMALL_BENCHMARKS)
    self.assertEqual(data["command"], "python -m benchmarks.run --out B.md")
    self.assertEqual(data["machine"]["JAX backend"], "cpu (cpu), 1 device(s)")
    paths = [s["path"] for s in data["sections"]]
    self.assertEqual(
        paths,
        [
            ["Agent step (one JitRL decision)"],
            ["Theory lab: vmapped agents"],
            ["Theory lab: vmapped agents", "Sharded retrieval: M = 8"],
        ],
    )
    agent = data["sections"][0]
    self.assertEqual((agent["module"], agent["seconds"]), ("agent_bench", 12.5))
    self.assertEqual(
        agent["tables"],
        [{"columns": ["B", "decision latency (s)"], "rows": [["1", "1.600"]]}],
    )
    self.assertLen(agent["text"], 1)  # One paragraph over three lines.
    self.assertEqual(data["sections"][1]["seconds"], 3.0)
    self.assertLen(data["sections"][1]["text"], 2)  # Two bullets.

  def test_headline_rows_and_targets(self):
    data = headline.parse_benchmarks_markdown(SMALL_BENCHMARKS)
    rows = {
        line.split(" | ")[0][2:]: line
        for line in headline.headline_table(data).splitlines()[2:]
    }
    self.assertEqual(
        rows["B = 8 games at once, decisions per second against B = 1"],
        "| B = 8 games at once, decisions per second against B = 1 | 0.94x"
        " (roofline bound here: 1.24x) | >= 3x: not met on CPU |",
    )
    # Not met: 3.8 < 20 even though 25.0 >= 20 (every value must reach it).
    self.assertIn(
        "| 3.8x (M = 256), 25.0x (M = 16) | >= 20x: not met on CPU |",
        rows["vmapped against a Python loop, 100 agents"],
    )
    self.assertIn(
        "NOT bitwise equal on 2 devices",
        rows["sharded retrieval on 1, 2, 4, 8 fake devices"],
    )
    # Sections this markdown lacks say so, with no verdict on the target.
    self.assertIn(
        "| not in BENCHMARKS.md | >= 20x |",
        rows[
            "exact Jaccard, 1 query against 10^5 entries, against Python "
            "`Counter`"
        ],
    )

  def test_json_copy_round_trips_and_stale_copy_is_refused(self):
    d = make_tempdir(self)
    md = os.path.join(d, "B.md")
    with open(md, "w", encoding="utf-8") as f:
      f.write(SMALL_BENCHMARKS)
    with open(os.path.join(d, "B.json"), "w", encoding="utf-8") as f:
      f.write(headline.benchmarks_json_text(SMALL_BENCHMARKS))
    self.assertEqual(
        headline.load_benchmarks(md),
        headline.parse_benchmarks_markdown(SMALL_BENCHMARKS),
    )
    with open(md, "a", encoding="utf-8") as f:
      f.write("\n## New\n\ntext\n")
    with self.assertRaisesRegex(runs_lib.ReportError, "make bench"):
      headline.load_benchmarks(md)

  def test_committed_benchmarks_parse(self):
    data = headline.load_benchmarks(BENCHMARKS)
    self.assertEqual(
        [s["module"] for s in data["sections"] if s["module"]],
        [
            "agent_bench",
            "gemma_bench",
            "generate_bench",
            "lm_bench",
            "retrieval_bench",
            "theory_bench",
            "web_bench",
        ],
    )
    self.assertNotIn("not in BENCHMARKS.md", headline.headline_table(data))


if __name__ == "__main__":
  absltest.main()
