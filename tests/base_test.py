"""Tests for jitrl_jax.envs.base: history by rule, fallback, registry."""

from absl.testing import absltest
from absl.testing import parameterized

from jitrl_jax import envs
from jitrl_jax.envs import base


class _FakeEnv:
  """A minimal TextEnv for the registry and protocol tests."""

  def __init__(self, game="", **kwargs):
    self.name = "fake:" + game
    self.kwargs = kwargs

  def reset(self, seed=None):
    return base.StepResult("start", 0.0, 0.0, False, {})

  def step(self, action):
    return base.StepResult(action, 1.0, 1.0, True, {})

  def valid_actions(self):
    return ["wait"]

  def view_texts(self):
    return base.ViewTexts("", "", "")

  score = 0.0
  max_score = 1.0
  done = False

  def close(self):
    pass


class HistoryTest(parameterized.TestCase):

  def test_path_collapses_repeats_and_keeps_scoring_actions(self):
    h0 = base.start_history("West of House")
    h1 = base.record_step(h0, action="north", reward=0.0, location="North")
    h2 = base.record_step(h1, action="wait", reward=0.0, location="North")
    h3 = base.record_step(h2, action="open  window", reward=10, location="")
    h4 = base.record_step(h3, action="hit troll", reward=-1, location="Hall")
    self.assertEqual(h0.locations, ("West of House",))  # h0 unchanged
    self.assertEqual(h4.locations, ("West of House", "North", "Hall"))
    # Only reward > 0 counts; whitespace is normalised.
    self.assertEqual(h4.scoring_actions, ("open window",))

  def test_start_history_without_location(self):
    self.assertEqual(base.start_history(""), base.EpisodeHistory((), ()))

  def test_history_text(self):
    h = base.EpisodeHistory(("kitchen", "attic"), ("take coin",))
    text = base.history_text(h, "You carry:\n  a coin")
    self.assertEqual(
        text,
        "inventory: You carry: a coin\npath: kitchen -> attic\n"
        "scoring actions: take coin",
    )
    empty = base.history_text(base.EpisodeHistory((), ()), "")
    self.assertEqual(
        empty, "inventory: unknown\npath: unknown\nscoring actions: none"
    )

  @parameterized.named_parameters(
      ("both", "Room. A lamp.", "Taken.", "Room. A lamp.\nTaken."),
      ("equal", "Room.\n A lamp.", "Room. A lamp.", "Room. A lamp."),
      ("no_look", "", "Taken.", "Taken."),
      ("no_observation", "Room.", " ", "Room."),
  )
  def test_current_text(self, look, observation, expected):
    self.assertEqual(base.current_text(look, observation), expected)


class FallbackTest(parameterized.TestCase):

  def test_sorted_unique_stripped(self):
    self.assertEqual(
        base.with_fallback(["west ", "east", "west", "", "  "]),
        ["east", "west"],
    )

  @parameterized.parameters(([],), ([""],))
  def test_empty_gives_fallback(self, actions):
    self.assertEqual(base.with_fallback(actions), list(base.FALLBACK_ACTIONS))
    self.assertEqual(base.with_fallback(actions, ("wait",)), ["wait"])


class EpisodeEndTest(parameterized.TestCase):

  @parameterized.parameters(
      (False, 3, None, (False, False)),
      (True, 3, None, (True, False)),
      (False, 2, 3, (False, False)),
      (False, 3, 3, (True, True)),
      (True, 3, 3, (True, False)),  # the game ended it, not the limit
  )
  def test_episode_end(self, game_done, moves, limit, expected):
    self.assertEqual(base.episode_end(game_done, moves, limit), expected)

  def test_check_can_step(self):
    base.check_can_step("g", started=True, done=False)
    with self.assertRaisesRegex(RuntimeError, "g: call reset"):
      base.check_can_step("g", started=False, done=False)
    with self.assertRaisesRegex(RuntimeError, "episode is over"):
      base.check_can_step("g", started=True, done=True)


class RegistryTest(absltest.TestCase):

  def test_unknown_prefix(self):
    with self.assertRaisesRegex(envs.UnknownGameError, "jericho:.*twx:"):
      envs.make_env("nethack:dlvl1")

  def test_register_and_make(self):
    envs.register_env("fake", _FakeEnv)
    self.addCleanup(base._FACTORIES.pop, "fake", None)
    env = envs.make_env("fake:maze", seed=3)
    self.assertEqual(env.name, "fake:maze")
    self.assertEqual(env.kwargs, {"seed": 3})
    self.assertIsInstance(env, envs.TextEnv)
    self.assertEqual(envs.make_env("fake").name, "fake:")

  def test_register_by_import_string(self):
    envs.register_env("fakestr", __name__ + ":_FakeEnv")
    self.addCleanup(base._FACTORIES.pop, "fakestr", None)
    self.assertEqual(envs.make_env("fakestr:x").name, "fake:x")

  def test_bad_prefix(self):
    with self.assertRaises(ValueError):
      envs.register_env("Bad:Prefix", _FakeEnv)

  def test_unknown_family_is_caught_as_a_value_error_naming_it(self):
    # Callers that catch ValueError for bad input see an unknown family too.
    with self.assertRaisesRegex(ValueError, "nosuchfamily") as cm:
      envs.make_env("nosuchfamily:x")
    self.assertIsInstance(cm.exception, envs.UnknownGameError)


if __name__ == "__main__":
  absltest.main()
