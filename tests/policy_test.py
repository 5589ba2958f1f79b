"""Tests for jitrl_jax.policy."""

from absl.testing import absltest
from absl.testing import parameterized
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax import memory as memory_lib
from jitrl_jax import policy as policy_lib
from jitrl_jax import token_sets

S = 8  # set size of both views
VIEW_SIZES = (S, S)


def views(seed):
  """Two views (history, current) of a synthetic state `seed`.

  States are disjoint id ranges: the same seed gives similarity 1, two
  different seeds similarity 0.
  """
  hist = token_sets.token_set(np.arange(4) + 1000 * seed, S)
  cur = token_sets.token_set(np.arange(6) + 1000 * seed + 500, S)
  return tuple(jax.tree.map(jnp.asarray, (hist, cur)))


def stack_views(seeds):
  return jax.tree.map(lambda *xs: jnp.stack(xs), *[views(s) for s in seeds])


# jitrl's observe depends only on gamma (default 0.5).
OBSERVE = jax.jit(policy_lib.jitrl().observe)


@functools.cache
def episode_memory(capacity=16):
  """Memory with two one-step episodes in state 0 and one in state 1.

  state 0, action 11, reward 2 -> G = 2;
  state 0, action 12, reward -1 -> G = -1;
  state 1, action 13, reward 5 -> G = 5 (never a neighbour of state 0).
  Built once per capacity (gamma does not matter for one-step episodes).
  """
  memory = policy_lib.jitrl().init(capacity, VIEW_SIZES)
  for ep, (state, action, reward) in enumerate(
      [(0, 11, 2.0), (0, 12, -1.0), (1, 13, 5.0)]
  ):
    memory = OBSERVE(
        memory,
        stack_views([state]),
        jnp.array([action], jnp.int32),
        jnp.array([reward]),
        jnp.array([True]),
        jnp.int32(0),
        jnp.int32(ep),
    )
  return memory


@functools.cache
def _agent_and_act(**kwargs):
  agent = policy_lib.jitrl(**kwargs)
  return agent, jax.jit(agent.act)


def jitted_act(**kwargs):
  """jax.jit(jitrl(**kwargs).act), shared by tests with the same kwargs."""
  return _agent_and_act(**kwargs)[1]


# Greedy, deterministic bonus, threshold .5 (only exact states retrieved).
GREEDY = dict(k=4, beta=2.0, threshold=0.5, stochastic_bonus=False, greedy=True)


CANDS = jnp.array([11, 12, 13, 14], jnp.int32)
CMASK = jnp.array([True, True, True, False])


class PaperRuleTest(parameterized.TestCase):

  def test_hand_worked_decision(self):
    # Query state 0 with threshold 0.5: neighbours are the two state-0
    # entries, |N| = 2, V = (2 - 1) / 2 = 0.5.
    # A = [2 - .5, -1 - .5, lam * alpha / |N| = .5 * 1 / 2, 0 (masked)]
    #   = [1.5, -1.5, 0.25, 0].
    # z = [0, 0, 0, 0] and beta = 2: z' = [3, -3, .5, -inf];
    # pi' = softmax([3, -3, .5]): e^3 = 20.0855, e^-3 = .049787,
    # e^.5 = 1.648721, sum 21.784; pi' = [.922030, .002286, .075685, 0].
    memory = episode_memory()
    act = jitted_act(**GREEDY)
    out = act(memory, jnp.zeros(4), CANDS, CMASK, views(0), jax.random.key(0))
    d = out.diagnostics
    self.assertEqual(int(d.num_neighbours), 2)
    np.testing.assert_allclose(d.value, 0.5, rtol=1e-6)
    np.testing.assert_allclose(d.advantages, [1.5, -1.5, 0.25, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(d.counts, [1, 1, 0, 0])
    # z' = z + 2 A = [3, -3, .5, -inf], returned shifted by the state's
    # constant -2 max A = -3 (update.modulate_logits): [0, -6, -2.5, -inf].
    np.testing.assert_allclose(d.scores, [0.0, -6.0, -2.5, -np.inf])
    np.testing.assert_allclose(
        d.pi, [0.922030, 0.002286, 0.075685, 0.0], atol=2e-6
    )
    np.testing.assert_allclose(d.pi_theta, [1 / 3, 1 / 3, 1 / 3, 0.0])
    self.assertEqual(int(out.index), 0)
    self.assertEqual(int(d.lm_index), 0)  # ties: first index
    self.assertFalse(bool(d.flipped))
    self.assertFalse(bool(d.nan_logits))

  def test_samples_follow_modulated_policy(self):
    agent = policy_lib.jitrl(
        k=4, beta=1.0, threshold=0.5, stochastic_bonus=False
    )
    memory = episode_memory()
    z = jnp.log(jnp.array([0.2, 0.5, 0.3, 0.4]))
    keys = jax.random.split(jax.random.key(1), 3000)
    outs = jax.jit(
        jax.vmap(agent.act, in_axes=(None, None, None, None, None, 0))
    )(memory, z, CANDS, CMASK, views(0), keys)
    pi = np.asarray(outs.diagnostics.pi[0])
    freq = np.bincount(np.asarray(outs.index), minlength=4) / 3000
    # 4 standard errors of a frequency: 4 * sqrt(p (1 - p) / 3000) <= 0.037.
    np.testing.assert_allclose(freq, pi, atol=0.037)
    self.assertEqual(freq[3], 0.0)  # masked: never chosen

  def test_flip_is_reported(self):
    # The LM prefers 12 (z = [0, 2, 0, 0]); A pushes 11 up: z' with beta 2
    # = [3, -1, .5, -inf] -> greedy index 0 != lm_index 1.
    out = jitted_act(**GREEDY)(
        episode_memory(),
        jnp.array([0.0, 2.0, 0.0, 0.0]),
        CANDS,
        CMASK,
        views(0),
        jax.random.key(0),
    )
    self.assertEqual(int(out.index), 0)
    self.assertEqual(int(out.diagnostics.lm_index), 1)
    self.assertTrue(bool(out.diagnostics.flipped))

  def test_kl_budget_beta(self):
    out = jitted_act(k=4, threshold=0.5, stochastic_bonus=False, kl_budget=0.1)(
        episode_memory(),
        jnp.zeros(4),
        CANDS,
        CMASK,
        views(0),
        jax.random.key(0),
    )
    d = out.diagnostics
    support = np.asarray(CMASK)
    kl = np.sum(d.pi[support] * np.log(d.pi[support] / d.pi_theta[support]))
    np.testing.assert_allclose(kl, 0.1, atol=1e-5)


class BadInputTest(parameterized.TestCase):

  @parameterized.parameters("jitrl", "reference")
  def test_empty_memory_is_the_lm_policy(self, rule):
    memory = policy_lib.jitrl().init(16, VIEW_SIZES)
    z = jnp.array([0.5, -1.0, 2.0, 0.0])
    act = jitted_act(k=4, threshold=0.5, rule=rule)
    out = act(memory, z, CANDS, CMASK, views(0), jax.random.key(0))
    d = out.diagnostics
    self.assertEqual(int(d.num_neighbours), 0)
    np.testing.assert_array_equal(d.advantages, 0.0)
    want = np.exp([0.5, -1.0, 2.0]) / np.exp([0.5, -1.0, 2.0]).sum()
    np.testing.assert_allclose(d.pi_theta[:3], want, rtol=1e-5)
    if rule == "jitrl":
      np.testing.assert_allclose(d.pi, d.pi_theta, rtol=1e-6)
    else:  # argmax p + w * 0 = the LM's argmax.
      self.assertEqual(int(out.index), 2)
      self.assertFalse(bool(d.flipped))

  def test_all_padding_query_and_k_above_capacity(self):
    # Capacity 3 < k = 10: the extra slots are masked. A query with no ids
    # has similarity 0 to every entry, and retrieval never keeps an entry
    # with similarity 0 (even at the paper's threshold 0): no neighbours,
    # A = 0, the LM's policy.
    agent = policy_lib.jitrl(k=10, stochastic_bonus=False, greedy=True)
    memory = episode_memory(capacity=3)
    act = jax.jit(agent.act)
    z = jnp.array([0.0, 1.0, 0.5, 0.0])
    out = act(memory, z, CANDS, CMASK, views(0), jax.random.key(0))
    self.assertEqual(out.diagnostics.neighbours.mask.shape, (10,))
    self.assertEqual(int(out.diagnostics.num_neighbours), 2)
    empty = tuple(
        jax.tree.map(jnp.asarray, token_sets.token_set([], S)) for _ in range(2)
    )
    out = act(memory, z, CANDS, CMASK, empty, jax.random.key(0))
    d = out.diagnostics
    self.assertEqual(int(d.num_neighbours), 0)
    np.testing.assert_array_equal(d.advantages, 0.0)
    np.testing.assert_allclose(d.pi, d.pi_theta, rtol=1e-6)
    self.assertEqual(int(out.index), 1)

  @parameterized.parameters("jitrl", "reference")
  def test_nan_and_neg_inf_logits_under_jit(self, rule):
    # Candidate 0 has a NaN logit, candidate 1 -inf: neither is ever chosen
    # and both have probability 0; nan_logits reports the NaN.
    act = jitted_act(k=4, threshold=0.5, rule=rule)
    memory = episode_memory()
    z = jnp.array([jnp.nan, -jnp.inf, 0.0, 0.0])
    mask = jnp.array([True, True, True, True])
    outs = [
        act(memory, z, CANDS, mask, views(0), jax.random.key(i))
        for i in range(40)
    ]
    outs = jax.tree.map(lambda *x: np.stack(x), *outs)
    idx = np.asarray(outs.index)
    self.assertTrue(np.all((idx == 2) | (idx == 3)))
    np.testing.assert_array_equal(outs.diagnostics.pi[:, :2], 0.0)
    np.testing.assert_array_equal(outs.diagnostics.pi_theta[:, :2], 0.0)
    self.assertTrue(np.all(outs.diagnostics.nan_logits))
    self.assertFalse(np.any(np.isnan(outs.diagnostics.pi)))

  def test_nan_logits_raise_eagerly(self):
    agent = policy_lib.jitrl(k=4)
    memory = agent.init(8, VIEW_SIZES)
    with self.assertRaisesRegex(ValueError, "NaN"):
      agent.act(
          memory,
          jnp.array([0.0, jnp.nan, 0.0, 0.0]),
          CANDS,
          CMASK,
          views(0),
          jax.random.key(0),
      )

  @parameterized.parameters("jitrl", "reference")
  def test_all_candidates_masked(self, rule):
    # Documented: index -1, pi and pi_theta all 0, no NaN.
    out = jitted_act(k=4, threshold=0.5, rule=rule)(
        episode_memory(),
        jnp.zeros(4),
        CANDS,
        jnp.zeros(4, bool),
        views(0),
        jax.random.key(0),
    )
    self.assertEqual(int(out.index), -1)
    np.testing.assert_array_equal(out.diagnostics.pi, 0.0)
    np.testing.assert_array_equal(out.diagnostics.pi_theta, 0.0)
    self.assertFalse(bool(out.diagnostics.flipped))

  @parameterized.parameters(0.0, 1e6)
  def test_extreme_beta(self, beta):
    # beta = 0: pi' = pi_theta exactly. beta = 1e6: the argmax of A among
    # supported candidates (A = [1.5, -1.5, .25]) -> index 0 whatever z,
    # no NaN.
    agent = policy_lib.jitrl(
        k=4, beta=beta, threshold=0.5, stochastic_bonus=False, greedy=True
    )
    z = jnp.array([-3.0, 4.0, 1.0, 0.0])
    out = jax.jit(agent.act)(
        episode_memory(), z, CANDS, CMASK, views(0), jax.random.key(0)
    )
    d = out.diagnostics
    self.assertFalse(np.any(np.isnan(d.pi)))
    if beta == 0.0:
      np.testing.assert_allclose(d.pi, d.pi_theta, rtol=1e-6)
      self.assertEqual(int(out.index), 1)
    else:
      np.testing.assert_allclose(d.pi, [1, 0, 0, 0], atol=1e-6)
      self.assertEqual(int(out.index), 0)


class ReferenceRuleTest(parameterized.TestCase):

  def test_hand_worked(self):
    # Neighbours of state 0: (11, G = 2), (12, G = -1); V0 = 0.5.
    # p_explore: no action has n >= 2 -> 0.8. Candidate 13 unseen: expected
    # Q = 0.8 * (0.5 + 1 / 2) = 0.8 (stochastic_bonus False). Table Q:
    # {11: 2, 12: -1, 13: 0.8}, V = (2 - 1 + .8) / 3 = 0.6.
    # A = [1.4, -1.6, 0.2, 0], max positive 1.4 -> A_hat = [1, -8/7, 1/7, 0].
    # z = log p with p = [.1, .6, .3] (softmax keeps it), e = 50 -> w = 1.5:
    # score = [.1 + 1.5, .6 - 1.7143, .3 + .2143] = [1.6, -1.1143, .5143]
    # -> 0, while the LM's argmax is 1: flipped.
    agent = policy_lib.jitrl(
        k=4, rule="reference", threshold=0.5, stochastic_bonus=False
    )
    z = jnp.log(jnp.array([0.1, 0.6, 0.3, 1.0]))
    out = jax.jit(agent.act)(
        episode_memory(),
        z,
        CANDS,
        CMASK,
        views(0),
        jax.random.key(0),
        0,
        50,
    )
    d = out.diagnostics
    np.testing.assert_allclose(d.p_explore, 0.8, rtol=1e-6)
    np.testing.assert_allclose(d.value, 0.6, rtol=1e-5)
    np.testing.assert_allclose(d.advantages, [1.4, -1.6, 0.2, 0.0], atol=1e-5)
    np.testing.assert_allclose(
        d.rule_advantages, [1.0, -8 / 7, 1 / 7, 0.0], atol=1e-5
    )
    np.testing.assert_allclose(d.weight, 1.5)
    np.testing.assert_allclose(
        d.scores, [1.6, 0.6 - 12 / 7, 0.3 + 1.5 / 7, -np.inf], atol=1e-5
    )
    self.assertEqual(int(out.index), 0)
    self.assertEqual(int(d.lm_index), 1)
    self.assertTrue(bool(d.flipped))
    np.testing.assert_array_equal(d.pi, [1.0, 0.0, 0.0, 0.0])

  def test_exp_probabilities_and_web_weight(self):
    # p = exp(z) = [.1, .6, .3] directly; web: w = 1 for any e, p_explore
    # 0.05 -> expected Q(13) = .05 * 1 = .05, V = (2 - 1 + .05) / 3 = .35,
    # A = [1.65, -1.35, -.3], A_hat = A / 1.65.
    act = jitted_act(
        k=4,
        rule="reference",
        threshold=0.5,
        stochastic_bonus=False,
        web=True,
        reference_probabilities="exp",
    )
    z = jnp.log(jnp.array([0.1, 0.6, 0.3, 1.0]))
    out = act(
        episode_memory(),
        z,
        CANDS,
        CMASK,
        views(0),
        jax.random.key(0),
        0,
        80,
    )
    d = out.diagnostics
    np.testing.assert_allclose(d.weight, 1.0)
    np.testing.assert_allclose(d.p_explore, 0.05, rtol=1e-6)
    a_hat = np.array([1.65, -1.35, -0.3]) / 1.65
    np.testing.assert_allclose(
        d.scores[:3], np.array([0.1, 0.6, 0.3]) + a_hat, atol=1e-5
    )

  def test_reference_threshold_schedule_is_default(self):
    # Reference rule, threshold None -> tau_t = .95 - .1 min(t / 20, 1).
    # A "near" state: state 0's history ids and current ids plus one more id:
    # similarity .3 * 1 + .7 * 6 / 7 = .9, retrieved at t = 30 (tau .85) but
    # not at t = 0 (tau .95); state 0's own entries (similarity 1) always.
    agent = policy_lib.jitrl(k=4, rule="reference")
    near = (
        token_sets.token_set(np.arange(4), S),
        token_sets.token_set(np.r_[np.arange(6) + 500, 999], S),
    )
    near = jax.tree.map(lambda x: jnp.asarray(x)[None], near)
    memory = OBSERVE(
        episode_memory(),
        near,
        jnp.array([14], jnp.int32),
        jnp.array([0.0]),
        jnp.array([True]),
        jnp.int32(0),
        jnp.int32(7),
    )
    act = jax.jit(agent.act)
    for step, want in ((0, 2), (30, 3)):
      out = act(
          memory, jnp.zeros(4), CANDS, CMASK, views(0), jax.random.key(0), step
      )
      self.assertEqual(int(out.diagnostics.num_neighbours), want)


class ObserveTest(absltest.TestCase):

  def test_discounted_returns_written(self):
    # Rewards [1, 4, 7*] (* masked), gamma = 0.5:
    # G_1 = 4, G_0 = 1 + .5 * 4 = 3; the masked step is not stored.
    agent = policy_lib.jitrl(gamma=0.5)
    memory = agent.init(8, VIEW_SIZES)
    memory = jax.jit(agent.observe)(
        memory,
        stack_views([0, 1, 2]),
        jnp.array([5, 6, 7], jnp.int32),
        jnp.array([1.0, 4.0, 7.0]),
        jnp.array([True, True, False]),
        jnp.int32(3),
        jnp.int32(9),
    )
    self.assertEqual(int(memory_lib.size(memory)), 2)
    valid = np.asarray(memory.valid)
    np.testing.assert_allclose(np.asarray(memory.returns)[valid], [3.0, 4.0])
    np.testing.assert_array_equal(np.asarray(memory.action_ids)[valid], [5, 6])
    np.testing.assert_array_equal(np.asarray(memory.episode_ids)[valid], 9)

  def test_reference_failure_penalty_on_the_last_real_step(self):
    # Rewards [1, 4, 7*], lost: the last real step gets 4 - 2 = 2, so
    # G_1 = 2, G_0 = 1 + .5 * 2 = 2. The jitrl rule ignores the penalty,
    # and a won episode is untouched (G = 3, 4 as above).
    def returns(rule, lost):
      agent = policy_lib.jitrl(gamma=0.5, rule=rule, failure_penalty=-2.0)
      memory = agent.observe(
          agent.init(8, VIEW_SIZES),
          stack_views([0, 1, 2]),
          jnp.array([5, 6, 7], jnp.int32),
          jnp.array([1.0, 4.0, 7.0]),
          jnp.array([True, True, False]),
          jnp.int32(3),
          jnp.int32(9),
          lost,
      )
      return np.asarray(memory.returns)[np.asarray(memory.valid)]

    np.testing.assert_allclose(returns("reference", True), [2.0, 2.0])
    np.testing.assert_allclose(returns("reference", False), [3.0, 4.0])
    np.testing.assert_allclose(returns("jitrl", True), [3.0, 4.0])


class CompileAndBatchTest(chex.TestCase):

  @parameterized.parameters("jitrl", "reference")
  def test_act_compiles_once(self, rule):
    agent = policy_lib.jitrl(k=4, rule=rule)
    act = jax.jit(chex.assert_max_traces(agent.act, n=1))
    memory = agent.init(16, VIEW_SIZES)
    rng = np.random.default_rng(0)
    for i in range(3):
      out = act(
          memory,
          jnp.asarray(rng.normal(size=4), jnp.float32),
          CANDS,
          CMASK,
          views(i % 2),
          jax.random.key(i),
          i,
          i,
      )
      memory = OBSERVE(
          memory,
          stack_views([i % 2]),
          CANDS[out.index][None],
          jnp.array([float(i)]),
          jnp.array([True]),
          jnp.int32(0),
          jnp.int32(i),
      )
    chex.clear_trace_counter()

  @parameterized.parameters("jitrl", "reference")
  def test_vmapped_twin_matches_loop(self, rule):
    agent, act = _agent_and_act(k=4, threshold=0.5, rule=rule)
    memory = episode_memory()
    b = 3
    rng = np.random.default_rng(3)
    z = jnp.asarray(rng.normal(size=(b, 4)), jnp.float32)
    cands = jnp.tile(CANDS, (b, 1))
    cmask = jnp.asarray(rng.random((b, 4)) < 0.8).at[:, 0].set(True)
    qviews = stack_views([0, 1, 0])
    keys = jax.random.split(jax.random.key(5), b)
    steps = jnp.arange(b)
    eps = jnp.arange(b) * 20
    batched = jax.jit(jax.vmap(agent.act, in_axes=(None, 0, 0, 0, 0, 0, 0, 0)))(
        memory, z, cands, cmask, qviews, keys, steps, eps
    )
    for i in range(b):
      one = act(
          memory,
          z[i],
          cands[i],
          cmask[i],
          jax.tree.map(lambda x: x[i], qviews),
          keys[i],
          int(steps[i]),  # Python ints, as the other tests: one compile
          int(eps[i]),
      )
      chex.assert_trees_all_close(
          jax.tree.map(lambda x: x[i], batched), one, rtol=1e-6
      )


if __name__ == "__main__":
  absltest.main()
