"""Tests for the text-game runner: runs, results, resume, bad input.

experiments/run_text_game.py (the command line), experiments/episodes.py
(`run_experiment`) and experiments/persistence.py (run directory, step logs).

Most runs use the scripted LM (a table of logits per action string) so that
they take seconds; one short run uses the real SmolLM2-135M.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from experiments import episodes
from experiments import persistence
from experiments import run_text_game
from experiments.configs import scripted
from jitrl_jax import agents as agent_lib
from jitrl_jax import memory as memory_lib
from jitrl_jax.envs import base as envs_base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROM_DIR = os.environ.get(
    "JITRL_ROM_DIR",
    os.path.join(os.path.dirname(ROOT), "shared", "jericho-games"),
)


def _have_java():
  return shutil.which("java") is not None


def _have_rom(name="detective.z5"):
  return os.path.isfile(os.path.join(ROM_DIR, name))


def scripted_config(
    *,
    game="twx:twc",
    agents=("static", "jitrl"),
    episodes=3,
    steps=5,
    batch_size=2,
    seed=0,
    preferences=(),
    beta=8.0,
):
  """The demo config on the scripted LM with small settings."""
  c = scripted.get_config()
  c.name = "test"
  c.game = game
  if not game.startswith("twx:"):
    c.env = {"step_limit": None}
  c.agents = tuple(agents)
  c.episodes = episodes
  c.steps = steps
  c.batch_size = batch_size
  c.seed = seed
  c.lm.preferences = tuple(preferences)
  c.agent.beta = beta
  return c


class _NoActionsEnv:
  """A one-room game whose engine lists no valid action."""

  def __init__(self, game="", **kwargs):
    del kwargs
    self.name = "noactions:" + game
    self._score = 0.0
    self._done = False
    self._moves = 0

  def reset(self, seed=None):
    del seed
    self._score, self._done, self._moves = 0.0, False, 0
    return envs_base.StepResult(
        "A bare room.", 0.0, 0.0, False, {"won": False, "lost": False}
    )

  def step(self, action):
    self._moves += 1
    reward = 1.0 if action == "look" and self._score == 0 else 0.0
    self._score += reward
    self._done = self._moves >= 3
    return envs_base.StepResult(
        f"You {action}.",
        reward,
        self._score,
        self._done,
        {"won": False, "lost": False},
    )

  def valid_actions(self):
    return []

  def view_texts(self):
    return envs_base.ViewTexts("A bare room.", "path: room", "")

  @property
  def score(self):
    return self._score

  max_score = 1.0

  @property
  def done(self):
    return self._done

  def close(self):
    pass


envs_base.register_env("noactions", _NoActionsEnv)


class RunTextGameTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp(prefix="run_text_game_test_")
    self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

  def _check_run(self, results, run_dir, cfg):
    self.assertTrue(os.path.isfile(os.path.join(run_dir, "results.json")))
    self.assertTrue(os.path.isfile(os.path.join(run_dir, "learning_curve.png")))
    with open(os.path.join(run_dir, "learning_curve.png"), "rb") as f:
      self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
    on_disk = json.load(open(os.path.join(run_dir, "results.json")))
    self.assertEqual(set(on_disk["agents"]), set(cfg.agents))
    for name in cfg.agents:
      r = json.load(open(os.path.join(run_dir, name, "results.json")))
      scores = np.asarray(r["game_scores"])
      self.assertEqual(scores.shape, (cfg.episodes, cfg.batch_size))
      # Avg = mean over episodes of the per-episode mean; Final = last.
      per_episode = scores.mean(axis=1)
      np.testing.assert_allclose(r["episode_scores"], per_episode)
      self.assertAlmostEqual(r["avg"], per_episode.mean())
      self.assertAlmostEqual(r["final"], per_episode[-1])
      self.assertAlmostEqual(results["agents"][name]["avg"], r["avg"])
      self.assertIn("jax", r["versions"])
      self.assertEqual(r["seeds"]["seed"], cfg.seed)
      rows = persistence.read_step_logs(
          os.path.join(run_dir, name, "steps.jsonl")
      )
      self.assertLen(rows, r["decisions"])
      for key in (
          "num_neighbours",
          "value",
          "q",
          "advantage",
          "weight",
          "rule_advantage",
          "nan_logits",
          "pi_theta",
          "pi",
          "flipped",
          "action",
          "reward",
      ):
        self.assertIn(key, rows[0])
      memory, meta = memory_lib.load(os.path.join(run_dir, name, "memory.npz"))
      self.assertEqual(meta["progress"]["episodes_done"], cfg.episodes)
      if name == "static":
        self.assertEqual(int(memory_lib.size(memory)), 0)
      else:  # Every step of every game is in memory.
        self.assertEqual(int(memory_lib.size(memory)), len(rows))
        self.assertGreater(len(rows), 0)
      # Nothing of an episode is retrievable before it ends.
      first = [x for x in rows if x["episode"] == 0]
      self.assertTrue(all(x["num_neighbours"] == 0 for x in first))

  @absltest.skipUnless(_have_java(), "TextWorld Express needs java")
  def test_end_to_end_textworld_express(self):
    cfg = scripted_config(episodes=3, steps=5)
    run_dir = os.path.join(self.dir, "twx")
    results = episodes.run_experiment(cfg, run_dir)
    self._check_run(results, run_dir, cfg)
    # Memory grows episode after episode.
    progress = json.load(open(os.path.join(run_dir, "jitrl", "progress.json")))
    self.assertEqual(progress["episodes_done"], 3)
    self.assertGreater(progress["memory_size"], 0)
    self.assertIn("| jitrl |", results["table"])

  def test_end_to_end_jericho(self):
    if not _have_rom():
      self.skipTest(
          f"no Jericho ROM detective.z5 in {ROM_DIR} (set "
          "JITRL_ROM_DIR to the jericho-games directory)"
      )
    os.environ["JITRL_ROM_DIR"] = ROM_DIR
    cfg = scripted_config(
        game="jericho:detective",
        # The scripted LM cannot write: the scoring agents only.
        agents=tuple(
            a
            for a in agent_lib.AGENT_NAMES
            if a not in agent_lib.GENERATING_AGENT_NAMES
        ),
        episodes=2,
        steps=3,
        batch_size=1,
    )
    run_dir = os.path.join(self.dir, "jericho")
    results = episodes.run_experiment(cfg, run_dir)
    self._check_run(results, run_dir, cfg)
    r = json.load(open(os.path.join(run_dir, "jitrl", "results.json")))
    self.assertLen(r["rom_md5"], 32)
    rows = persistence.read_step_logs(
        os.path.join(run_dir, "jitrl", "steps.jsonl")
    )
    # The same opening every episode: the second finds the first's steps.
    second = [x for x in rows if x["episode"] == 1]
    self.assertGreater(second[0]["num_neighbours"], 0)

  @absltest.skipUnless(_have_java(), "TextWorld Express needs java")
  def test_real_lm_short_run(self):
    try:
      from jitrl_jax.models import loading  # pylint: disable=g-import-not-at-top

      loading.default_gguf_path()
    except Exception as e:  # pylint: disable=broad-except
      self.skipTest(f"embedded SmolLM2 GGUF unavailable: {e}")
    cfg = scripted_config(
        agents=("static", "jitrl"), episodes=2, steps=2, batch_size=1
    )
    cfg.lm.kind = "gguf"
    # One bucket per shape: one compilation per agent.
    cfg.agent.prompt_buckets = (384,)
    cfg.agent.token_buckets = (16,)
    cfg.agent.candidate_buckets = (16,)
    run_dir = os.path.join(self.dir, "real")
    results = episodes.run_experiment(cfg, run_dir)
    self._check_run(results, run_dir, cfg)
    r = json.load(open(os.path.join(run_dir, "jitrl", "results.json")))
    self.assertLen(r["model"]["sha256"], 64)
    rows = persistence.read_step_logs(
        os.path.join(run_dir, "jitrl", "steps.jsonl")
    )
    # Real log-probabilities: pi_theta strictly inside (0, 1).
    self.assertTrue(all(0 < x["pi_theta"] < 1 for x in rows))

  # -- Learning ---------------------------------------------------------------

  @absltest.skipUnless(_have_java(), "TextWorld Express needs java")
  def test_jitrl_learns_where_static_does_not(self):
    """Final-episode score, JitRL vs static, paired over 8 seeds.

    A misleading scripted LM prefers the two commands that never score
    ("look around", "inventory") by 1 nat; static stays at its level, JitRL
    learns from the scoring episodes. Each seed is a different game (game
    seed) and different sampling keys; an episode is 4 games. Pass: the mean
    paired difference of final-episode scores exceeds 2 standard errors,
    and JitRL is ahead in at least 6 of the 8 seeds (one-sided sign test,
    p = 37/256 = 0.14 under "no difference" on its own).
    """
    prefs = (("look around", 1.0), ("inventory", 1.0))
    base = scripted_config(
        episodes=6, steps=6, batch_size=4, preferences=prefs, beta=10.0
    )
    envs = episodes.make_envs(base)
    self.addCleanup(lambda: [e.close() for e in envs])
    diffs = []
    for seed in range(8):
      cfg = scripted_config(
          episodes=6,
          steps=6,
          batch_size=4,
          seed=seed,
          preferences=prefs,
          beta=10.0,
      )
      cfg.game_seed = seed
      results = episodes.run_experiment(
          cfg, os.path.join(self.dir, f"learn{seed}"), envs=envs
      )
      final = {n: results["agents"][n]["final"] for n in cfg.agents}
      diffs.append(final["jitrl"] - final["static"])
    diffs = np.asarray(diffs)
    se = diffs.std(ddof=1) / np.sqrt(diffs.size)
    print("final-episode score differences (jitrl - static):", diffs)
    self.assertGreater(diffs.mean(), 2 * se, msg=f"diffs {diffs}")
    self.assertGreaterEqual(int(np.sum(diffs > 0)), 6, msg=f"diffs {diffs}")

  # -- Resume -----------------------------------------------------------------

  @absltest.skipUnless(_have_java(), "TextWorld Express needs java")
  def test_resume_after_exception_matches_uninterrupted_run(self):
    cfg = scripted_config(agents=("jitrl",), episodes=4, steps=4)
    full_dir = os.path.join(self.dir, "full")
    full = episodes.run_experiment(cfg, full_dir)

    run_dir = os.path.join(self.dir, "crash")

    def crash(agent_name, done):
      if done == 2:
        raise run_text_game.SimulatedCrash(agent_name)

    with self.assertRaises(run_text_game.SimulatedCrash):
      episodes.run_experiment(cfg, run_dir, after_episode=crash)
    progress = json.load(open(os.path.join(run_dir, "jitrl", "progress.json")))
    self.assertEqual(progress["episodes_done"], 2)
    before = progress["game_scores"]
    # Without --resume the directory is refused.
    with self.assertRaises(persistence.RunDirError):
      episodes.run_experiment(cfg, run_dir)
    resumed = episodes.run_experiment(cfg, run_dir, resume=True)
    r = json.load(open(os.path.join(run_dir, "jitrl", "results.json")))
    self.assertEqual(r["game_scores"][:2], before)
    self.assertLen(r["game_scores"], 4)
    self.assertEqual(r["resumed_at"], [2])
    # Seeds are functions of (seed, episode, step): same as no crash.
    self.assertEqual(
        resumed["agents"]["jitrl"]["episode_scores"],
        full["agents"]["jitrl"]["episode_scores"],
    )
    rows = persistence.read_step_logs(
        os.path.join(run_dir, "jitrl", "steps.jsonl")
    )
    full_rows = persistence.read_step_logs(
        os.path.join(full_dir, "jitrl", "steps.jsonl")
    )
    self.assertEqual(
        [x["action"] for x in rows], [x["action"] for x in full_rows]
    )

  @absltest.skipUnless(_have_java(), "TextWorld Express needs java")
  def test_resume_after_sigkill_mid_episode(self):
    run_dir = os.path.join(self.dir, "killed")
    cmd = [
        sys.executable,
        "-m",
        "experiments.run_text_game",
        "--config=experiments/configs/scripted.py",
        "--config.episodes=4",
        "--config.steps=4",
        "--config.batch_size=2",
        f"--run_dir={run_dir}",
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    # Killed in jitrl's episode 2 (0-based), at step 1.
    proc = subprocess.run(
        cmd + ["--kill_at=jitrl:2:1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    self.assertEqual(proc.returncode, -9, msg=proc.stderr[-2000:])
    progress = json.load(open(os.path.join(run_dir, "jitrl", "progress.json")))
    self.assertEqual(progress["episodes_done"], 2)
    before = progress["game_scores"]
    # The killed episode had written no line (lines go out at commit).
    rows = persistence.read_step_logs(
        os.path.join(run_dir, "jitrl", "steps.jsonl")
    )
    self.assertEqual({x["episode"] for x in rows}, {0, 1})
    proc = subprocess.run(
        cmd + ["--resume"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    self.assertEqual(proc.returncode, 0, msg=proc.stderr[-2000:])
    self.assertIn("learning curve:", proc.stdout)
    r = json.load(open(os.path.join(run_dir, "jitrl", "results.json")))
    self.assertEqual(r["game_scores"][:2], before)
    self.assertLen(r["game_scores"], 4)
    s = json.load(open(os.path.join(run_dir, "static", "results.json")))
    self.assertLen(s["game_scores"], 4)
    self.assertEqual(s["resumed_at"], [4])  # Finished before the kill.
    rows = persistence.read_step_logs(
        os.path.join(run_dir, "jitrl", "steps.jsonl")
    )
    self.assertEqual(sorted({x["episode"] for x in rows}), [0, 1, 2, 3])

  def test_torn_step_log_lines_are_skipped(self):
    path = os.path.join(self.dir, "steps.jsonl")
    with open(path, "w") as f:
      f.write(
          '{"episode": 0, "step": 0}\n{"episode": 1, "step": 0}\n'
          '{"episode": 2, "st'
      )
    self.assertLen(persistence.read_step_logs(path), 2)
    self.assertLen(persistence.read_step_logs(path, before_episode=1), 1)

  # -- Bad input --------------------------------------------------------------

  def test_unknown_agent(self):
    cfg = scripted_config(agents=("static", "gpt-agent"))
    with self.assertRaisesRegex(
        agent_lib.UnknownAgentError,
        "gpt-agent.*static, jitrl, jitrl-reference, " "memory-prompt",
    ):
      episodes.run_experiment(cfg, os.path.join(self.dir, "x"))
    self.assertFalse(os.path.exists(os.path.join(self.dir, "x")))

  def test_unsupported_game(self):
    for game in ("jericho:not-a-game", "twx:not-a-game", "atari:pong"):
      cfg = scripted_config(game=game)
      with self.assertRaises(envs_base.UnknownGameError, msg=game):
        episodes.run_experiment(cfg, os.path.join(self.dir, "x"))

  def test_missing_rom(self):
    empty = os.path.join(self.dir, "empty_rom_dir")
    os.makedirs(empty)
    old = os.environ.get("JITRL_ROM_DIR")
    os.environ["JITRL_ROM_DIR"] = empty
    try:
      cfg = scripted_config(game="jericho:zork1")
      with self.assertRaisesRegex(
          envs_base.EnvironmentUnavailableError, "zork1"
      ):
        episodes.run_experiment(cfg, os.path.join(self.dir, "x"))
    finally:
      if old is None:
        del os.environ["JITRL_ROM_DIR"]
      else:
        os.environ["JITRL_ROM_DIR"] = old

  def test_empty_valid_action_list_uses_fallback(self):
    cfg = scripted_config(
        game="noactions:room",
        agents=("jitrl",),
        episodes=2,
        steps=3,
        batch_size=1,
        preferences=(("look", 1.0),),
    )
    cfg.env = {}
    run_dir = os.path.join(self.dir, "noactions")
    episodes.run_experiment(cfg, run_dir)
    rows = persistence.read_step_logs(
        os.path.join(run_dir, "jitrl", "steps.jsonl")
    )
    self.assertLen(rows, 6)
    # Every action came from the fallback list, and the log says so.
    self.assertTrue(all(x["fallback_actions"] for x in rows))
    self.assertTrue(
        all(x["action"] in envs_base.FALLBACK_ACTIONS for x in rows)
    )

  def test_cli_reports_bad_input_cleanly(self):
    cmd = [
        sys.executable,
        "-m",
        "experiments.run_text_game",
        "--config=experiments/configs/demo.py",
        "--config.agents=('static','nope')",
        f"--run_dir={os.path.join(self.dir, 'cli')}",
    ]
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    self.assertEqual(proc.returncode, 2)
    self.assertIn("unknown agent 'nope'", proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)

  def test_resume_without_a_run_is_an_error(self):
    cfg = scripted_config()
    with self.assertRaises(persistence.RunDirError):
      persistence.resolve_run_dir(
          cfg, os.path.join(self.dir, "none"), resume=True
      )


if __name__ == "__main__":
  absltest.main()
