"""Bad runs stop with a clear error: locks, resumed configs, run files.

On the scripted LM and TextWorld Express (a few seconds a run).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest

from experiments import episodes
from experiments import persistence
from experiments.configs import scripted
from jitrl_jax import memory as memory_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JAVA = shutil.which("java") is not None


def _config(**overrides):
  c = scripted.get_config()
  c.name = "test"
  c.agents = ("jitrl",)
  c.episodes = 2
  c.steps = 3
  c.batch_size = 1
  for k, v in overrides.items():
    c[k] = v
  return c


def _cli(*args, timeout=300):
  return subprocess.run(
      [sys.executable, "-m", "experiments.run_text_game", *args],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=timeout,
      env=dict(os.environ, JAX_PLATFORMS="cpu"),
  )


class RunLockTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

  def test_second_run_on_a_locked_directory_names_the_first(self):
    run_dir = os.path.join(self.dir, "run")
    with persistence.run_lock(run_dir):
      with self.assertRaisesRegex(
          persistence.RunDirError,
          f"in use by another run .process {os.getpid()}",
      ):
        episodes.run_experiment(_config(), run_dir)

  def test_stale_lock_of_a_killed_run_is_taken_over(self):
    run_dir = os.path.join(self.dir, "run")
    # A child takes the lock and is killed: its pid stays in the file, but
    # the kernel released its flock.
    code = (
        "import os, signal, sys; sys.path.insert(0, sys.argv[2]);"
        "from experiments import persistence;"
        "ctx = persistence.run_lock(sys.argv[1]); ctx.__enter__();"
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, run_dir, ROOT], check=False
    )
    self.assertEqual(proc.returncode, -9)
    with open(os.path.join(run_dir, ".lock")) as f:
      self.assertNotEqual(f.read().strip(), str(os.getpid()))
    with persistence.run_lock(run_dir):
      with open(os.path.join(run_dir, ".lock")) as f:
        self.assertEqual(f.read().strip(), str(os.getpid()))


class ResumeChecksTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

  def _started_run(self, cfg):
    """A run directory as a run of `cfg` leaves it, without playing."""
    run_dir = os.path.join(self.dir, "run")
    os.makedirs(run_dir)
    persistence.write_json(os.path.join(run_dir, "config.json"), cfg.to_dict())
    return run_dir

  def test_resume_with_another_config_names_the_differences(self):
    run_dir = self._started_run(_config())
    changed = _config(game="twx:cookingworld")
    changed.agent.beta = 2.0
    with self.assertRaisesRegex(persistence.RunDirError, "agent.beta") as cm:
      episodes.run_experiment(changed, run_dir, resume=True)
    self.assertIn("game: 'twx:twc' -> 'twx:cookingworld'", str(cm.exception))

  def test_setting_added_later_at_its_empty_default_may_be_resumed(self):
    cfg = _config()
    run_dir = self._started_run(cfg)
    path = os.path.join(run_dir, "config.json")
    with open(path, encoding="utf-8") as f:
      stored = json.load(f)
    del stored["agent"]["view_floors"]  # a run from before the setting
    persistence.write_json(path, stored)
    persistence.check_resumed_config(path, cfg)
    cfg.agent.view_floors = (0.0, 0.5)
    with self.assertRaisesRegex(persistence.RunDirError, "view_floors"):
      persistence.check_resumed_config(path, cfg)

  def test_more_episodes_may_be_resumed(self):
    cfg = _config()
    run_dir = self._started_run(cfg)
    longer = _config(episodes=5)
    persistence.check_resumed_config(
        os.path.join(run_dir, "config.json"), longer
    )

  def test_other_agents_may_be_resumed(self):
    run_dir = self._started_run(_config())
    fewer = _config()
    fewer.agents = ("static",)
    persistence.check_resumed_config(
        os.path.join(run_dir, "config.json"), fewer
    )

  @absltest.skipUnless(JAVA, "TextWorld Express needs java")
  def test_memory_without_progress_metadata_is_a_clear_error(self):
    cfg = _config()
    run_dir = self._started_run(cfg)
    memory = memory_lib.init(16, tuple(cfg.agent.view_sizes))
    os.makedirs(os.path.join(run_dir, "jitrl"))
    memory_lib.save(memory, os.path.join(run_dir, "jitrl", "memory.npz"))
    with self.assertRaisesRegex(persistence.RunDirError, "no run progress"):
      episodes.run_experiment(cfg, run_dir, resume=True)

  def test_bad_agent_value_is_a_config_error_before_any_work(self):
    cfg = _config()
    cfg.agent.temperature = 0.0
    run_dir = os.path.join(self.dir, "never")
    with self.assertRaisesRegex(episodes.ConfigError, "temperature"):
      episodes.run_experiment(cfg, run_dir)
    self.assertFalse(os.path.exists(run_dir))


class FaultInjectionTest(absltest.TestCase):
  """SIGKILL at several points of a run, then resume: nothing lost or doubled."""

  @absltest.skipUnless(JAVA, "TextWorld Express needs java")
  def test_killed_runs_resume_to_the_uninterrupted_run(self):
    base = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, base, ignore_errors=True)
    flags = [
        "--config=experiments/configs/scripted.py",
        "--config.agents=('jitrl',)",
        "--config.episodes=4",
        "--config.steps=3",
        "--config.batch_size=1",
    ]
    full_dir = os.path.join(base, "full")
    self.assertEqual(_cli(*flags, f"--run_dir={full_dir}").returncode, 0)
    run_dir = os.path.join(base, "killed")
    # Mid-episode; between the step lines and the memory commit; during the
    # memory write; and once more mid-episode after those.
    kills = ["jitrl:0:1", "jitrl:1:logged", "jitrl:2:saving", "jitrl:3:2"]
    for i, where in enumerate(kills):
      proc = _cli(
          *flags,
          f"--run_dir={run_dir}",
          f"--kill_at={where}",
          *(["--resume"] if i else []),
      )
      self.assertEqual(proc.returncode, -9, (where, proc.stderr[-2000:]))
    proc = _cli(*flags, f"--run_dir={run_dir}", "--resume")
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])

    def agent_files(d):
      with open(os.path.join(d, "jitrl", "results.json")) as f:
        results = json.load(f)
      rows = persistence.read_step_logs(os.path.join(d, "jitrl", "steps.jsonl"))
      return results, rows

    full, full_rows = agent_files(full_dir)
    killed, rows = agent_files(run_dir)
    self.assertEqual(killed["game_scores"], full["game_scores"])
    keys = [(r["episode"], r["step"], r["game"]) for r in rows]
    self.assertLen(set(keys), len(keys))  # no step line twice
    self.assertEqual(
        keys, [(r["episode"], r["step"], r["game"]) for r in full_rows]
    )
    self.assertEqual(
        [r["action"] for r in rows], [r["action"] for r in full_rows]
    )
    # The partial file of the killed memory write is gone.
    self.assertEqual(
        sorted(os.listdir(os.path.join(run_dir, "jitrl"))),
        ["memory.npz", "progress.json", "results.json", "steps.jsonl"],
    )


class CliErrorTest(absltest.TestCase):

  def test_truncated_memory_file_is_one_line_and_exit_2(self):
    run_dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, run_dir, ignore_errors=True)
    cfg = scripted.get_config()
    persistence.write_json(os.path.join(run_dir, "config.json"), cfg.to_dict())
    os.makedirs(os.path.join(run_dir, "static"))
    memory = memory_lib.init(16, tuple(cfg.agent.view_sizes))
    path = os.path.join(run_dir, "static", "memory.npz")
    memory_lib.save(memory, path, metadata={"progress": {}})
    with open(path, "rb") as f:
      data = f.read()
    with open(path, "wb") as f:
      f.write(data[: len(data) // 2])
    proc = _cli(
        "--config=experiments/configs/scripted.py",
        f"--run_dir={run_dir}",
        "--resume",
    )
    self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
    self.assertNotIn("Traceback", proc.stderr)
    (line,) = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    self.assertIn("memory.npz", line)

  def test_bad_config_value_is_one_line_and_exit_2(self):
    proc = _cli(
        "--config=experiments/configs/scripted.py",
        "--config.agent.beta=-1.0",
        f"--run_dir={os.path.join(tempfile.mkdtemp(), 'never')}",
    )
    self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
    self.assertNotIn("Traceback", proc.stderr)
    self.assertIn("error: config.agent: beta must be", proc.stderr)


if __name__ == "__main__":
  absltest.main()
