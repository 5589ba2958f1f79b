"""Tests for jitrl_jax.evaluator: prompt, robust parsing, reward sources."""

from absl.testing import absltest
from absl.testing import parameterized
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np

from jitrl_jax import evaluator

_TRAJECTORY = (
    evaluator.TrajectoryStep("West of House. A mailbox.", "open mailbox", 0.0),
    evaluator.TrajectoryStep("A leaflet is in the mailbox.", "take leaflet", 0),
    evaluator.TrajectoryStep("Taken.", "north", 5.0),
)
_ENV_REWARDS = np.array([0.0, 0.0, 5.0], np.float32)


class _Generator:
  """A stand-in LM: records the prompts and answers a fixed text."""

  def __init__(self, answer):
    self.answer = answer
    self.prompts = []

  def __call__(self, messages):
    self.prompts.append(messages)
    if isinstance(self.answer, Exception):
      raise self.answer
    return self.answer


class PromptTest(absltest.TestCase):

  def test_prompt_shows_the_whole_trajectory(self):
    messages = evaluator.build_prompt(
        _TRAJECTORY, success=False, task="Find the treasure."
    )
    self.assertEqual([m["role"] for m in messages], ["system", "user"])
    user = messages[1]["content"]
    for step in _TRAJECTORY:
      self.assertIn(f"action: {step.action}", user)
      self.assertIn(step.observation, user)
    self.assertIn("Step 3", user)
    self.assertIn("reward: 5", user)
    self.assertIn("did not succeed", user)
    self.assertIn("Task: Find the treasure.", user)
    self.assertIn("from -3 to 3", user)
    self.assertIn("useful", user)
    self.assertIn("certain", user)
    self.assertIn("JSON list of 3 numbers", user)

  def test_success_scale_and_snippets(self):
    long_step = evaluator.TrajectoryStep("word " * 200, "wait", 0.0)
    user = evaluator.build_prompt(
        [long_step],
        success=True,
        scale=evaluator.REFERENCE_SCALE,
        max_observation_chars=50,
    )[1]["content"]
    self.assertIn("The episode succeeded", user)
    self.assertIn("from -10 to 10", user)
    observation_line = [l for l in user.splitlines() if "observation:" in l][0]
    # "  observation: " + 47 characters + "..."
    self.assertLen(observation_line, len("  observation: ") + 50)


class ParseTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("plain", "[1, -2, 0]", [1, -2, 0]),
      ("prose_around", "Here you go: [1, -2, 0] Hope this helps.", [1, -2, 0]),
      ("fence", "```json\n[1, -2, 0]\n```", [1, -2, 0]),
      ("fence_no_language", "```\n[1.5, -2, 0]\n```", [1.5, -2, 0]),
      ("trailing_comma", "[1, -2, 0,]", [1, -2, 0]),
      ("strings", '["1", "-2", " +0.5 "]', [1, -2, 0.5]),
      ("scores_object", '{"scores": [1, -2, 0]}', [1, -2, 0]),
      ("scores_key_case", '{"Scores": [1, -2, 0], "reason": "x"}', [1, -2, 0]),
      (
          "step_objects",
          '[{"step": 1, "score": 1}, {"step": 2, "score": -2},'
          ' {"step": 3, "score": 0}]',
          [1, -2, 0],
      ),
      (
          "step_objects_unordered",
          '[{"step": 3, "score": 0}, {"step": 1, "score": "1"},'
          ' {"step": 2, "score": -2}]',
          [1, -2, 0],
      ),
      (
          "zero_based_steps",
          '[{"step": 0, "score": 1}, {"step": 1, "score": -2},'
          ' {"step": 2, "score": 0}]',
          [1, -2, 0],
      ),
      (
          "step_objects_without_step",
          '[{"score": 1}, {"score": -2}, {"score": 0}]',
          [1, -2, 0],
      ),
      ("step_mapping", '{"1": 1, "2": -2, "3": 0}', [1, -2, 0]),
      (
          "step_name_mapping",
          '{"step 1": 1, "step 2": -2, "step 3": 0}',
          [1, -2, 0],
      ),
      (
          "python_quotes",
          "[{'step': 1, 'score': 1}, {'step': 2, 'score': -2},"
          " {'step': 3, 'score': 0}]",
          [1, -2, 0],
      ),
      ("bracketed_prose_first", "Steps [1-3] scored: [1, -2, 0]", [1, -2, 0]),
      (
          "nested_under_steps",
          '{"steps": [{"index": 1, "rating": 1}, {"index": 2, "rating": -2},'
          ' {"index": 3, "rating": 0}]}',
          [1, -2, 0],
      ),
  )
  def test_valid_answers(self, text, expected):
    result = evaluator.parse_step_scores(text, 3)
    self.assertIsNone(result.error)
    np.testing.assert_allclose(result.scores, expected)
    self.assertEqual(result.scores.dtype, np.float32)
    self.assertFalse(result.missing.any())
    self.assertEqual(result.num_clipped, 0)

  @parameterized.named_parameters(
      ("truncated_list", "[1, -2,", "truncated"),
      (
          "truncated_objects",
          '[{"step": 1, "score": 1}, {"step": 2',
          "truncated",
      ),
      ("truncated_fence", "```json\n[1, -2", "truncated"),
      ("no_json", "The agent did well overall.", "no JSON"),
      ("empty", "   ", "empty answer"),
      ("none", None, "empty answer"),
      ("words_in_list", '["good", "bad", "ok"]', "no JSON"),
      ("object_without_scores", '{"verdict": "good"}', "no JSON"),
  )
  def test_malformed_answers(self, text, error):
    result = evaluator.parse_step_scores(text, 3)
    self.assertIsNone(result.scores)
    self.assertIn(error, result.error)

  def test_out_of_range_is_clipped_and_recorded(self):
    result = evaluator.parse_step_scores("[7, -4.5, 2]", 3)
    np.testing.assert_allclose(result.scores, [3, -3, 2])
    self.assertEqual(result.num_clipped, 2)
    self.assertTrue(any("clipped" in n for n in result.notes))

  def test_reference_scale(self):
    result = evaluator.parse_step_scores("[7, -14, 2]", 3, low=-10, high=10)
    np.testing.assert_allclose(result.scores, [7, -10, 2])
    self.assertEqual(result.num_clipped, 1)

  def test_missing_steps_are_filled_and_flagged(self):
    # 4 steps, step 3 not scored: 1 of 4 missing <= 0.5, so filled with 0.
    text = (
        '[{"step": 1, "score": 2}, {"step": 2, "score": 1},'
        ' {"step": 4, "score": -1}]'
    )
    result = evaluator.parse_step_scores(text, 4)
    np.testing.assert_allclose(result.scores, [2, 1, 0, -1])
    np.testing.assert_array_equal(result.missing, [False, False, True, False])
    self.assertTrue(any("missing" in n for n in result.notes))
    short = evaluator.parse_step_scores("[2, 1, -1]", 4, fill_value=-0.5)
    np.testing.assert_allclose(short.scores, [2, 1, -1, -0.5])
    np.testing.assert_array_equal(short.missing, [False, False, False, True])

  def test_too_many_missing_steps_is_malformed(self):
    result = evaluator.parse_step_scores("[2]", 4)
    self.assertIsNone(result.scores)
    self.assertIn("only 1 of 4 steps scored", result.error)

  def test_extra_scores_are_dropped(self):
    result = evaluator.parse_step_scores("[1, 2, 3, 0, 0]", 3)
    np.testing.assert_allclose(result.scores, [1, 2, 3])
    self.assertTrue(any("dropped" in n for n in result.notes))

  def test_non_numbers_count_as_missing(self):
    result = evaluator.parse_step_scores('[1, "n/a", 2, NaN]', 4)
    np.testing.assert_allclose(result.scores, [1, 0, 2, 0])
    np.testing.assert_array_equal(result.missing, [False, True, False, True])
    # Booleans and nulls are no scores either: 3 of 4 missing > 0.5.
    self.assertIsNone(
        evaluator.parse_step_scores('[1, "x", null, true]', 4).scores
    )

  def test_zero_steps(self):
    result = evaluator.parse_step_scores("anything", 0)
    self.assertEqual(result.scores.shape, (0,))
    self.assertIsNone(result.error)

  @settings(max_examples=50, deadline=None)
  @given(
      st.lists(
          st.floats(allow_nan=False, allow_infinity=False, width=32),
          min_size=1,
          max_size=12,
      )
  )
  def test_scores_always_in_range(self, values):
    result = evaluator.parse_step_scores(str(values), len(values))
    self.assertEqual(result.scores.shape, (len(values),))
    self.assertTrue(np.all(result.scores >= -3) and np.all(result.scores <= 3))
    expected_clipped = sum(1 for v in values if not -3 <= v <= 3)
    self.assertEqual(result.num_clipped, expected_clipped)


class RewardSourceTest(parameterized.TestCase):

  def test_env_source_does_not_call_the_lm(self):
    generate = _Generator("[3, 3, 3]")
    result = evaluator.evaluate_episode(
        generate, _TRAJECTORY, True, reward_source="env"
    )
    self.assertEqual(generate.prompts, [])
    np.testing.assert_allclose(result.rewards, _ENV_REWARDS)
    self.assertFalse(result.used_fallback)
    self.assertIsNone(result.parse)

  def test_evaluator_source(self):
    generate = _Generator("[1, -2, 9]")
    result = evaluator.evaluate_episode(
        generate, _TRAJECTORY, True, reward_source="evaluator"
    )
    self.assertLen(generate.prompts, 1)
    self.assertEqual(result.messages, generate.prompts[0])
    np.testing.assert_allclose(result.rewards, [1, -2, 3])
    self.assertEqual(result.parse.num_clipped, 1)
    self.assertEqual(result.answer, "[1, -2, 9]")
    self.assertFalse(result.used_fallback)

  def test_mixed_source_uses_env_where_evaluator_is_silent(self):
    answer = '[{"step": 1, "score": 2}, {"step": 2, "score": -1}]'
    result = evaluator.evaluate_episode(
        _Generator(answer), _TRAJECTORY, False, reward_source="mixed"
    )
    # Steps 1, 2 from the evaluator; step 3 (missing) from the env: 5.
    np.testing.assert_allclose(result.rewards, [2, -1, 5])
    evaluator_only = evaluator.evaluate_episode(
        _Generator(answer), _TRAJECTORY, False, reward_source="evaluator"
    )
    np.testing.assert_allclose(evaluator_only.rewards, [2, -1, 0])

  @parameterized.named_parameters(
      ("evaluator_truncated", "evaluator", "[1, 2,"),
      ("mixed_non_json", "mixed", "I think the agent did fine."),
      ("evaluator_raises", "evaluator", RuntimeError("out of memory")),
  )
  def test_malformed_answer_falls_back_to_env_and_logs(self, source, answer):
    with self.assertLogs(level="WARNING") as logs:
      result = evaluator.evaluate_episode(
          _Generator(answer), _TRAJECTORY, True, reward_source=source
      )
    np.testing.assert_allclose(result.rewards, _ENV_REWARDS)
    self.assertTrue(result.used_fallback)
    self.assertIsNone(result.parse.scores)
    self.assertIn("using env rewards", "\n".join(logs.output))

  def test_tuples_and_empty_trajectories(self):
    result = evaluator.evaluate_episode(
        _Generator("[1, 1]"),
        [("obs", "look", 0.0), ("obs", "wait", 1.0)],
        True,
    )
    np.testing.assert_allclose(result.rewards, [1, 1])
    generate = _Generator("[1]")
    empty = evaluator.evaluate_episode(generate, [], True)
    self.assertEqual(empty.rewards.shape, (0,))
    self.assertEqual(generate.prompts, [])

  def test_unknown_source(self):
    with self.assertRaises(ValueError):
      evaluator.evaluate_episode(
          _Generator("[]"), _TRAJECTORY, True, reward_source="oracle"
      )
    with self.assertRaises(ValueError):
      evaluator.select_rewards(_ENV_REWARDS, None, "oracle")

  def test_select_rewards(self):
    parse = evaluator.parse_step_scores("[1, 2]", 3)
    np.testing.assert_allclose(
        evaluator.select_rewards(_ENV_REWARDS, parse, "mixed")[0], [1, 2, 5]
    )
    rewards, fell_back = evaluator.select_rewards(_ENV_REWARDS, None, "mixed")
    np.testing.assert_allclose(rewards, _ENV_REWARDS)
    self.assertTrue(fell_back)


if __name__ == "__main__":
  absltest.main()
