"""Tests for jitrl_jax.envs.jericho on the shared Jericho ROMs.

The ROMs come from JITRL_ROM_DIR, or ../shared/jericho-games beside the
repository when it is unset; without them the game tests are skipped.
Jericho's valid-action finder is slow (0.1 s to seconds a call, plus loading
spaCy once), so the tests call it only a few times.
"""

import hashlib
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest

from jitrl_jax import envs
from jitrl_jax.envs import jericho as jericho_env

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROM_DIR = os.environ.get(jericho_env.ROM_DIR_ENV) or os.path.join(
    _REPO_ROOT, "..", "shared", "jericho-games"
)
ROM_DIR = os.path.abspath(ROM_DIR)


def _skip_without_roms():
  if not os.path.isdir(ROM_DIR):
    raise absltest.SkipTest(
        f"no Jericho ROM directory at {ROM_DIR}: set JITRL_ROM_DIR to a "
        "directory holding zork1.z5, detective.z5, ... (the shared "
        "jericho-games folder)"
    )


class DetectiveTest(absltest.TestCase):
  """One detective game shared by the tests (loading is cheap, finding not)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    _skip_without_roms()
    cls.env = envs.make_env("jericho:detective", rom_dir=ROM_DIR, seed=7)

  def test_reset_and_step(self):
    env = self.env
    start = env.reset(seed=7)
    self.assertIn("Chief's office", start.observation)
    self.assertEqual(start.reward, 0.0)
    self.assertEqual(start.score, 10.0)  # detective starts with 10 points
    self.assertFalse(start.done)
    self.assertEqual(env.max_score, 360.0)
    self.assertIsInstance(env, envs.TextEnv)
    self.assertEqual(start.info["location"], "Chief's office")
    self.assertEqual(env.step("north").reward, 0.0)
    result = env.step("west")  # detective: the street to the west scores 10
    self.assertEqual(result.reward, 10.0)
    self.assertEqual(result.score, 20.0)
    self.assertEqual(env.score, 20.0)
    self.assertEqual(result.info["moves"], 2)
    self.assertFalse(result.done)
    history = env.view_texts().history
    self.assertIn("path: Chief's office -> Outside", history)
    self.assertIn("scoring actions: west", history)

  def test_valid_actions_are_cached_by_state(self):
    env = self.env
    env.reset(seed=7)
    inner = env._env  # pylint: disable=protected-access
    with mock.patch.object(
        inner, "get_valid_actions", wraps=inner.get_valid_actions
    ) as finder:
      first = env.valid_actions()
      second = env.valid_actions()
      self.assertEqual(finder.call_count, 1)  # the second came from the cache
      env.step("north")
      env.reset()  # the next episode starts in the same world state
      self.assertEqual(env.valid_actions(), first)
      self.assertEqual(finder.call_count, 1)
    self.assertEqual(first, second)
    self.assertIn("take paper", first)
    self.assertEqual(first, sorted(first))
    self.assertGreaterEqual(env.cache_info()["hits"], 2)

  def test_empty_valid_actions_give_fallback(self):
    env = envs.make_env("jericho:detective", rom_dir=ROM_DIR)
    env.reset()
    inner = env._env  # pylint: disable=protected-access
    with mock.patch.object(inner, "get_valid_actions", return_value=[]):
      self.assertEqual(env.valid_actions(), list(envs.FALLBACK_ACTIONS))

  def test_views_probe_without_changing_the_game(self):
    env = self.env
    env.reset(seed=7)
    env.step("north")
    score, moves = env.score, env.moves
    views = env.view_texts()
    self.assertEqual((env.score, env.moves), (score, moves))
    self.assertTrue(views.current)
    self.assertTrue(views.history)
    self.assertEqual(views.task, "")
    self.assertIn("inventory: ", views.history)
    # The next step gives what it gives without the probe.
    probed = env.step("west")
    env.reset(seed=7)
    env.step("north")
    self.assertEqual(env.step("west"), probed)

  def test_step_limit_and_done(self):
    env = envs.make_env(
        "jericho:detective", rom_dir=ROM_DIR, seed=7, step_limit=2
    )
    env.reset()
    self.assertFalse(env.step("wait").done)
    last = env.step("wait")
    self.assertTrue(last.done)
    self.assertTrue(last.info["truncated"])
    self.assertEqual(env.valid_actions(), list(envs.FALLBACK_ACTIONS))
    with self.assertRaisesRegex(RuntimeError, "reset"):
      env.step("wait")


class Zork1Test(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    _skip_without_roms()

  def test_seeded_play_is_deterministic(self):
    actions = [
        "open mailbox",
        "take leaflet",
        "north",
        "east",
        "open window",
        "enter window",
    ]
    runs = []
    for _ in range(2):
      env = jericho_env.JerichoEnv("zork1", rom_dir=ROM_DIR, seed=12)
      env.reset()
      runs.append([env.step(a) for a in actions])
    self.assertEqual(
        [r.observation for r in runs[0]], [r.observation for r in runs[1]]
    )
    self.assertEqual(runs[0][-1].reward, 10.0)  # entering the kitchen
    self.assertEqual(runs[0][-1].info["location"], "Kitchen")

  def test_start_state(self):
    env = jericho_env.JerichoEnv("zork1", rom_dir=ROM_DIR, seed=12)
    start = env.reset()
    self.assertEqual((start.score, env.max_score), (0.0, 350.0))
    views = env.view_texts()
    self.assertIn("mailbox", views.current)
    self.assertEqual(env.moves, 0)  # probing look/inventory took no move
    self.assertIn("open mailbox", env.valid_actions())

  def test_rom_dir_from_environment_variable(self):
    with mock.patch.dict(os.environ, {jericho_env.ROM_DIR_ENV: ROM_DIR}):
      self.assertEqual(
          jericho_env.find_rom("zork1"), os.path.join(ROM_DIR, "zork1.z5")
      )


class RomErrorsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.tmp = self.enterContext(tempfile.TemporaryDirectory())

  def test_no_rom_dir(self):
    with mock.patch.dict(os.environ, {}, clear=True):
      with self.assertRaisesRegex(
          envs.EnvironmentUnavailableError, "JITRL_ROM_DIR"
      ):
        jericho_env.find_rom("zork1")

  def test_missing_dir(self):
    missing = os.path.join(self.tmp, "nowhere")
    with self.assertRaisesRegex(envs.EnvironmentUnavailableError, missing):
      jericho_env.JerichoEnv("zork1", rom_dir=missing)

  def test_missing_rom_lists_directory(self):
    open(os.path.join(self.tmp, "notes.txt"), "w").close()
    with self.assertRaises(envs.EnvironmentUnavailableError) as cm:
      envs.make_env("jericho:zork1", rom_dir=self.tmp)
    message = str(cm.exception)
    for part in (self.tmp, "zork1.z5", "notes.txt", "z-machine-games"):
      self.assertIn(part, message)

  def test_unknown_game(self):
    with self.assertRaisesRegex(envs.UnknownGameError, "not a Jericho game"):
      jericho_env.find_rom("zork9", self.tmp)

  def test_unsupported_rom(self):
    _skip_without_roms()
    with open(os.path.join(ROM_DIR, "zork1.z5"), "rb") as f:
      rom = bytearray(f.read())
    rom[-1] ^= 0xFF  # one changed byte: another md5
    with open(os.path.join(self.tmp, "zork1.z5"), "wb") as f:
      f.write(rom)
    md5 = hashlib.md5(rom).hexdigest()
    with self.assertRaisesRegex(
        envs.UnknownGameError, f"{md5}.*not in Jericho's supported-game table"
    ):
      jericho_env.find_rom("zork1", self.tmp)

  def test_rom_of_another_game(self):
    _skip_without_roms()
    shutil.copy(
        os.path.join(ROM_DIR, "zork3.z5"), os.path.join(self.tmp, "zork1.z5")
    )
    with self.assertRaisesRegex(envs.UnknownGameError, "ROM of 'zork3'"):
      jericho_env.find_rom("zork1", self.tmp)


if __name__ == "__main__":
  absltest.main()
