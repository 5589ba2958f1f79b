"""Tests for jitrl_jax.agents: prompt, candidates, one jitted decision."""

import math

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np

from jitrl_jax import agents as agent_lib
from jitrl_jax import memory as memory_lib
from tests import agent_memory

_ROOM = (
    "You are in the kitchen. You see a fridge that is closed and a red apple."
)
_OTHER = "You are in the garden. There is a shovel and a closed shed here."


def _obs(actions, *, current=_ROOM, history="path: kitchen", step=0, recent=()):
  return agent_lib.GameObservation(
      observation=current,
      current=current,
      history=history,
      task="Put the apple in the fridge.",
      valid_actions=list(actions),
      recent=recent,
      step=step,
  )


def _agent(name, preferences=None, default=0.0, **kw):
  lm = agent_lib.scripted_language_model(preferences or {}, default=default)
  kw.setdefault("view_sizes", (32, 64))
  kw.setdefault("memory_capacity", 64)
  kw.setdefault("candidate_buckets", (8, 16))
  kw.setdefault("token_buckets", (4,))
  kw.setdefault("prompt_buckets", (64,))
  return agent_lib.make_agent(name, lm, **kw)


class AgentNameTest(parameterized.TestCase):

  def test_unknown_agent_lists_valid_names(self):
    with self.assertRaises(agent_lib.UnknownAgentError) as cm:
      _agent("jitrl-plus")
    message = str(cm.exception)
    self.assertIn("jitrl-plus", message)
    for name in agent_lib.AGENT_NAMES:
      self.assertIn(name, message)

  def test_unknown_agent_is_caught_as_a_value_error(self):
    with self.assertRaises(ValueError):
      _agent("jitrl-plus")

  def test_unknown_setting_is_a_clear_error(self):
    with self.assertRaisesRegex(TypeError, "betaa"):
      _agent("jitrl", betaa=2.0)


class PrepareTest(parameterized.TestCase):

  def test_shapes_are_bucketed(self):
    agent = _agent("jitrl")
    inputs = agent.prepare(
        [
            _obs(["take apple", "open fridge"]),
            _obs(["north", "south", "east"], step=3),
        ]
    )
    self.assertEqual(inputs.prompt_ids.shape, (2, 64))
    self.assertEqual(inputs.candidate_tokens.shape, (2, 8, 4))
    np.testing.assert_array_equal(inputs.candidate_mask.sum(-1), [2, 3])
    np.testing.assert_array_equal(inputs.steps, [0, 3])
    self.assertEqual(
        inputs.candidate_ids[0, 0], agent_lib.action_id("take apple")
    )
    self.assertEqual(len(inputs.views), 2)
    self.assertEqual(inputs.views[0].ids.shape, (2, 32))  # history
    self.assertEqual(inputs.views[1].ids.shape, (2, 64))  # current

  def test_token_bucket_fits_memory_actions(self):
    agent = _agent("jitrl", token_buckets=(4, 8, 16))
    inputs = agent.prepare([_obs(["north"])])
    self.assertEqual(inputs.candidate_tokens.shape[-1], 4)
    # A remembered action of 6 tokens may join: T grows to its bucket.
    inputs = agent.prepare([_obs(["north"])], min_tokens=6)
    self.assertEqual(inputs.candidate_tokens.shape[-1], 8)

  def test_duplicates_and_blanks_dropped(self):
    agent = _agent("static")
    inputs = agent.prepare([_obs(["look", " look ", "", "north"])])
    self.assertEqual(int(inputs.candidate_mask.sum()), 2)

  def test_empty_valid_action_list_is_a_clear_error(self):
    agent = _agent("jitrl")
    with self.assertRaisesRegex(ValueError, "empty valid-action list"):
      agent.prepare([_obs([])])
    with self.assertRaisesRegex(ValueError, "empty valid-action list"):
      agent.prepare([_obs(["", "  "])])

  def test_prompt_has_goal_history_observation_and_memory(self):
    obs = _obs(["take apple"], recent=[("open fridge", "The fridge opens.")])
    text = agent_lib.build_user_message(
        obs,
        history_turns=2,
        list_actions=True,
        experiences='- "take apple": average return 1.00 over 1 try',
    )
    self.assertIn("Goal: Put the apple in the fridge.", text)
    self.assertIn("> open fridge\nThe fridge opens.", text)
    self.assertIn("take apple", text)
    self.assertIn("earlier games", text)
    self.assertTrue(text.endswith("What is your next command?"))

  def test_format_experiences_aggregates_per_action(self):
    texts = {1: "take apple", 2: "north"}
    out = agent_lib.format_experiences(
        texts,
        np.array([1, 2, 1, 9]),
        np.array([1.0, 0.0, 0.5, 3.0]),
        np.array([True, True, True, False]),
    )
    # take apple: mean (1 + 0.5) / 2 = 0.75 over 2; north 0 over 1; 9 masked.
    self.assertEqual(
        out.splitlines(),
        [
            '- "take apple": average return 0.75 over 2 tries',
            '- "north": average return 0.00 over 1 try',
        ],
    )


class DecideTest(parameterized.TestCase):

  def test_static_follows_the_lm(self):
    agent = _agent(
        "static", {"open fridge": 2.0, "take apple": 0.0}, greedy=True
    )
    state = agent.init()
    (choice,) = agent.act(
        state, [_obs(["take apple", "open fridge"])], jax.random.key(0)
    )
    self.assertEqual(choice.action, "open fridge")
    d = choice.diagnostics
    # pi_theta(open fridge) = e^2 / (e^2 + 1).
    self.assertAlmostEqual(
        d["pi_theta"], math.exp(2) / (math.exp(2) + 1), places=5
    )
    self.assertFalse(d["flipped"])
    self.assertEqual(d["num_neighbours"], 0)

  def test_static_samples_from_softmax_of_z(self):
    agent = _agent("static", {"open fridge": math.log(3.0)})
    state = agent.init()
    picks = []
    for i in range(300):
      (c,) = agent.act(
          state, [_obs(["take apple", "open fridge"])], jax.random.key(i)
      )
      picks.append(c.action == "open fridge")
    # P(open fridge) = 3 / 4; 300 draws: sd 0.025.
    self.assertAlmostEqual(np.mean(picks), 0.75, delta=0.1)

  def test_jitrl_overrides_a_wrong_prior_from_memory(self):
    prefs = {"open fridge": 3.0, "take apple": 0.0}
    agent = _agent(
        "jitrl", prefs, beta=20.0, greedy=True, stochastic_bonus=False
    )
    state = agent_memory.with_memory(
        agent,
        [
            (_ROOM, "path: kitchen", "take apple", 1.0),
            (_ROOM, "path: kitchen", "open fridge", 0.0),
        ],
    )
    self.assertEqual(int(memory_lib.size(state.memory)), 2)
    (choice,) = agent.act(
        state, [_obs(["take apple", "open fridge"])], jax.random.key(0)
    )
    d = choice.diagnostics
    self.assertEqual(choice.action, "take apple")
    self.assertTrue(d["flipped"])
    self.assertEqual(d["lm_argmax_action"], "open fridge")
    self.assertEqual(d["num_neighbours"], 2)
    # V = (1 + 0) / 2; Q(take apple) = 1; A = 0.5.
    self.assertAlmostEqual(d["value"], 0.5, places=5)
    self.assertAlmostEqual(d["q"], 1.0, places=5)
    self.assertAlmostEqual(d["advantage"], 0.5, places=5)
    self.assertAlmostEqual(d["weight"], 20.0)
    # pi'(take apple) = softmax(z + 20 A) = 1 / (1 + e^(3 - 10 - 10)).
    self.assertAlmostEqual(d["pi"], 1 / (1 + math.exp(3 - 20)), places=5)

  def test_jitrl_with_empty_memory_is_the_lm(self):
    prefs = {"open fridge": 1.0}
    agent = _agent("jitrl", prefs, beta=5.0)
    state = agent.init()
    inputs = agent.prepare([_obs(["take apple", "open fridge"])])
    out = agent.decide(
        agent_lib.scripted_language_model(prefs).params,
        state.memory,
        state.table,
        inputs,
        jax.random.key(0),
        0,
    )
    np.testing.assert_allclose(out.pi[0], out.pi_theta[0], atol=1e-6)
    np.testing.assert_array_equal(out.advantages[0], 0.0)

  def test_memory_action_is_added_as_candidate(self):
    agent = _agent("jitrl", beta=20.0, greedy=True, stochastic_bonus=False)
    # V = 1; A(xyzzy) = 2 - 1 = 1 beats A(take apple) = -1 and the bonus of
    # the unseen open fridge, 0.5 / 2.
    state = agent_memory.with_memory(
        agent,
        [
            (_ROOM, "path: kitchen", "xyzzy", 2.0),
            (_ROOM, "path: kitchen", "take apple", 0.0),
        ],
    )
    (choice,) = agent.act(
        state, [_obs(["take apple", "open fridge"])], jax.random.key(0)
    )
    self.assertEqual(choice.action, "xyzzy")
    self.assertTrue(choice.from_memory)
    self.assertEqual(choice.diagnostics["num_memory_candidates"], 1)
    self.assertEqual(choice.diagnostics["num_candidates"], 3)

  def test_negative_memory_action_is_not_added(self):
    agent = _agent("jitrl", beta=20.0, greedy=True)
    state = agent_memory.with_memory(
        agent, [(_ROOM, "path: kitchen", "xyzzy", -1.0)]
    )
    (choice,) = agent.act(
        state, [_obs(["take apple", "open fridge"])], jax.random.key(0)
    )
    self.assertFalse(choice.from_memory)
    self.assertEqual(choice.diagnostics["num_memory_candidates"], 0)

  def test_reference_agent_is_argmax_of_p_plus_w_ahat(self):
    agent = _agent(
        "jitrl-reference",
        {"open fridge": 3.0},
        stochastic_bonus=False,
        tau0=0.0,
    )
    state = agent_memory.with_memory(
        agent,
        [
            (_ROOM, "path: kitchen", "take apple", 1.0),
            (_ROOM, "path: kitchen", "open fridge", 0.0),
        ],
    )
    (choice,) = agent.act(
        state, [_obs(["take apple", "open fridge"])], jax.random.key(0)
    )
    # p(open fridge) = e^3 / (1 + e^3) = 0.95, p(take apple) = 0.05;
    # V = 0.5, A = +-0.5, so A_hat(take apple) = 1, A_hat(open fridge) = -1;
    # w = 1.01 after 1 episode: 0.05 + 1.01 > 0.95 - 1.01.
    self.assertEqual(choice.action, "take apple")
    self.assertAlmostEqual(choice.diagnostics["weight"], 1.01, places=5)
    self.assertEqual(choice.diagnostics["pi"], 1.0)

  def test_memory_prompt_writes_memory_into_prompt_only(self):
    encoded = []
    lm = agent_lib.scripted_language_model({"open fridge": 3.0})
    spy = lm._replace(
        encode=lambda text: encoded.append(text) or lm.encode(text)
    )
    agent = agent_lib.make_agent(
        "memory-prompt",
        spy,
        greedy=True,
        view_sizes=(32, 64),
        memory_capacity=64,
        candidate_buckets=(8, 16),
        token_buckets=(4,),
        prompt_buckets=(256,),
    )
    state = agent_memory.with_memory(
        agent, [(_ROOM, "path: kitchen", "take apple", 1.0)]
    )
    encoded.clear()
    (choice,) = agent.act(
        state, [_obs(["take apple", "open fridge"])], jax.random.key(0)
    )
    # The experience reaches the prompt that is tokenised...
    line = '- "take apple": average return 1.00 over 1 try'
    prompts = [t for t in encoded if "What is your next command?" in t]
    self.assertLen(prompts, 1)
    self.assertIn(line, prompts[0])
    # ... and the prompt ids are those of that text, not of the bare prompt.
    inputs = agent.prepare([_obs(["take apple", "open fridge"])], [line])
    bare = agent.prepare([_obs(["take apple", "open fridge"])])
    self.assertEqual(inputs.prompt_ids[0, 0], lm.encode(prompts[0])[0])
    self.assertNotEqual(inputs.prompt_ids[0, 0], bare.prompt_ids[0, 0])
    # The logits are not changed: the LM's preference wins.
    self.assertEqual(choice.action, "open fridge")
    self.assertEqual(choice.diagnostics["advantage"], 0.0)
    self.assertEqual(choice.diagnostics["num_neighbours"], 1)

  @parameterized.parameters(
      "static", "jitrl", "jitrl-reference", "memory-prompt"
  )
  def test_a_nan_logit_is_never_chosen_and_is_logged(self, name):
    agent = _agent(name, {"open fridge": math.nan, "take apple": 0.0})
    # A neighbour (so the policy path runs) whose action is not added.
    state = agent_memory.with_memory(
        agent, [(_ROOM, "path: kitchen", "north", -1.0)]
    )
    for i in range(5):
      (choice,) = agent.act(
          state, [_obs(["take apple", "open fridge"])], jax.random.key(i)
      )
      self.assertEqual(choice.action, "take apple")
      self.assertTrue(choice.diagnostics["nan_logits"])

  @parameterized.parameters(
      "static", "jitrl", "jitrl-reference", "memory-prompt"
  )
  def test_all_nan_logits_stop_the_decision_with_a_clear_error(self, name):
    agent = _agent(name, default=math.nan)
    with self.assertRaisesRegex(
        agent_lib.NonFiniteLogitsError, "no candidate has a finite logit"
    ):
      agent.act(agent.init(), [_obs(["a", "b"])], jax.random.key(0))

  def test_agent_state_crosses_jit(self):
    agent = _agent("jitrl")
    carry = agent_memory.with_memory(agent, [(_ROOM, "h", "take apple", 1.0)])
    out = jax.jit(lambda s: s._replace(episodes_done=s.episodes_done + 1))(
        carry.state
    )
    self.assertEqual(int(out.episodes_done), 2)
    np.testing.assert_array_equal(out.memory.returns, carry.memory.returns)

  def test_batch_matches_single_games(self):
    prefs = {"open fridge": 1.0, "north": -1.0}
    agent = _agent("jitrl", prefs, beta=3.0, stochastic_bonus=False)
    state = agent_memory.with_memory(
        agent,
        [
            (_ROOM, "path: kitchen", "take apple", 1.0),
            (_OTHER, "path: garden", "north", 0.5),
        ],
    )
    games = [
        _obs(["take apple", "open fridge"]),
        _obs(["north", "open shed"], current=_OTHER, history="path: garden"),
    ]
    params = agent_lib.scripted_language_model(prefs).params
    both = agent.decide(
        params,
        state.memory,
        state.table,
        agent.prepare(games),
        jax.random.key(0),
        1,
    )
    for i, g in enumerate(games):
      one = agent.decide(
          params,
          state.memory,
          state.table,
          agent.prepare([g]),
          jax.random.key(0),
          1,
      )
      np.testing.assert_allclose(both.scores[i], one.scores[0], rtol=1e-6)
      np.testing.assert_allclose(
          both.advantages[i], one.advantages[0], rtol=1e-6
      )

  def test_one_compile_serves_a_run(self):
    agent = _agent("jitrl", beta=2.0)
    state = agent.init()
    key = jax.random.key(0)
    for step, acts in enumerate([["a"], ["a", "b", "c"], ["north", "south"]]):
      state_obs = [_obs(acts, step=step), _obs(acts[::-1], step=step)]
      agent.act(state, state_obs, key)
      traj = agent_lib.Trajectory(
          views=[agent.state_views(_ROOM, "h", "")],
          actions=[acts[0]],
          rewards=[float(step)],
          task_id=0,
          episode_id=step,
      )
      state = agent.observe(state, [traj])
    self.assertEqual(agent.num_compiles(), 1)

  def test_observe_and_restore(self):
    agent = _agent("jitrl")
    state = agent_memory.with_memory(
        agent, [(_ROOM, "h", "Take  Apple", 1.0), (_ROOM, "h", "north", 0.0)]
    )
    self.assertEqual(state.episodes_done, 1)
    self.assertEqual(int(memory_lib.size(state.memory)), 2)
    self.assertEqual(
        state.action_texts[agent_lib.action_id("take apple")], "take apple"
    )
    again = agent.restore(state.memory, dict(state.action_texts), 1)
    np.testing.assert_array_equal(
        again.table.action_ids, state.table.action_ids
    )
    np.testing.assert_array_equal(again.table.tokens, state.table.tokens)

  def test_discounted_returns_are_stored(self):
    agent = _agent("jitrl", gamma=0.5)
    traj = agent_lib.Trajectory(
        views=[agent.state_views(_ROOM, "h", "")] * 3,
        actions=["a", "b", "c"],
        rewards=[0.0, 0.0, 1.0],
        task_id=0,
        episode_id=0,
    )
    state = agent.observe(agent.init(), [traj])
    returns = np.asarray(state.memory.returns)[np.asarray(state.memory.valid)]
    # G = (0.25, 0.5, 1) in insertion order.
    np.testing.assert_allclose(sorted(returns), [0.25, 0.5, 1.0])

  def test_static_keeps_no_memory(self):
    agent = _agent("static")
    state = agent_memory.with_memory(agent, [(_ROOM, "h", "a", 1.0)])
    self.assertEqual(int(memory_lib.size(state.memory)), 0)
    self.assertEqual(state.episodes_done, 1)


if __name__ == "__main__":
  absltest.main()
