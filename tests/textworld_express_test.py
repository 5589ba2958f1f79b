"""Tests for jitrl_jax.envs.textworld_express (one JVM for the whole file)."""

import importlib.util
import shutil
from unittest import mock

from absl.testing import absltest

from jitrl_jax import envs
from jitrl_jax.envs import textworld_express as twx_env

_HAVE_TWX = importlib.util.find_spec("textworld_express") is not None
# The seed-0 game of the default settings in textworld-express 1.1 (its gold
# path, found with generateGoldPath=True): put the shirt in the wardrobe.
_SEED0_SOLUTION = (
    "take clean brown shirt",
    "open wardrobe",
    "put clean brown shirt in wardrobe",
)


@absltest.skipUnless(_HAVE_TWX, "textworld-express is not installed")
class TextWorldExpressTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    if shutil.which("java") is None:
      raise absltest.SkipTest("no `java` on PATH: TextWorld Express needs it")
    cls.env = envs.make_env("twx", step_limit=20)
    cls.addClassCleanup(cls.env.close)

  def test_default_game(self):
    self.assertEqual(self.env.name, "twx:" + twx_env.DEFAULT_GAME)
    self.assertEqual(
        self.env.game_params, twx_env.SMALL_GAME_PARAMS[twx_env.DEFAULT_GAME]
    )
    self.assertIsInstance(self.env, envs.TextEnv)
    self.assertEqual(self.env.max_score, 1.0)

  def test_solve_seed0(self):
    env = self.env
    start = env.reset(seed=0)
    self.assertEqual((start.reward, start.score, start.done), (0.0, 0.0, False))
    self.assertEqual(start.info["location"], "bedroom")
    views = env.view_texts()
    self.assertIn("bedroom", views.current)
    self.assertIn("Your task is to pick up objects", views.task)
    self.assertIn("path: bedroom", views.history)
    self.assertIn(_SEED0_SOLUTION[0], env.valid_actions())
    take, open_, put = (env.step(a) for a in _SEED0_SOLUTION)
    # Half the task for taking the object, half for putting it away.
    self.assertEqual([take.reward, open_.reward, put.reward], [0.5, 0.0, 0.5])
    self.assertEqual([take.score, put.score], [0.5, 1.0])
    self.assertFalse(open_.done)
    self.assertTrue(put.done)
    self.assertTrue(put.info["won"])
    self.assertFalse(put.info["truncated"])
    self.assertTrue(env.done)
    self.assertIn(
        "scoring actions: take clean brown shirt; put clean brown shirt in "
        "wardrobe",
        env.view_texts().history,
    )
    self.assertEqual(env.valid_actions(), list(twx_env.FALLBACK_ACTIONS))
    with self.assertRaisesRegex(RuntimeError, "reset"):
      env.step("look around")

  def test_seeded_reset_is_deterministic(self):
    env = self.env
    first = env.reset(seed=5)
    first_actions = env.valid_actions()
    env.step("inventory")
    again = env.reset(seed=5)
    self.assertEqual(again.observation, first.observation)
    self.assertEqual(env.valid_actions(), first_actions)
    self.assertEqual(first_actions, sorted(first_actions))
    replay = env.reset()  # no seed: the last one again
    self.assertEqual(replay.observation, first.observation)
    other = env.reset(seed=6)
    self.assertNotEqual(
        (other.observation, env.valid_actions()),
        (first.observation, first_actions),
    )

  def test_unknown_action_and_step_limit(self):
    env = self.env
    env.reset(seed=0)
    for _ in range(19):
      result = env.step("fly to the moon")
      self.assertEqual(result.reward, 0.0)
      self.assertFalse(result.done)
    last = env.step("fly to the moon")
    self.assertTrue(last.done)
    self.assertTrue(last.info["truncated"])
    self.assertFalse(last.info["won"])


@absltest.skipUnless(_HAVE_TWX, "textworld-express is not installed")
class TextWorldExpressErrorsTest(absltest.TestCase):
  """Errors raised before a JVM starts (cheap)."""

  def test_java_missing(self):
    with mock.patch.object(shutil, "which", return_value=None):
      with self.assertRaisesRegex(
          envs.EnvironmentUnavailableError, "`java` is not on PATH"
      ):
        twx_env.TextWorldExpressEnv("coin")

  def test_unknown_game(self):
    with self.assertRaisesRegex(envs.UnknownGameError, "coin"):
      envs.make_env("twx:nethack")

  def test_bad_params(self):
    if shutil.which("java") is None:
      self.skipTest("no `java` on PATH")
    with self.assertRaisesRegex(ValueError, "bogus"):
      envs.make_env("twx:coin", game_params={"bogus": 1})

  def test_format_game_params(self):
    self.assertEqual(
        twx_env.format_game_params({"numLocations": 2, "includeDoors": False}),
        "numLocations=2,includeDoors=0",
    )
    self.assertEqual(twx_env.format_game_params("a=1"), "a=1")

  def test_location_of(self):
    self.assertEqual(
        twx_env.location_of("You are in the living room. You see a box."),
        "living room",
    )
    self.assertEqual(twx_env.location_of("Simon says, 'smell apple'."), "")


if __name__ == "__main__":
  absltest.main()
