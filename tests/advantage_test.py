"""Tests for jitrl_jax.advantage."""

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax import advantage as adv_lib

from jitrl_jax import memory as memory_lib
from jitrl_jax import retrieval
from jitrl_jax import token_sets

Neighbours = retrieval.Neighbours


# Jitted once per shape: eager mode would compile every jnp op separately.
advantages = jax.jit(adv_lib.advantages, static_argnames=("lam", "alpha"))
reference_advantages = jax.jit(
    adv_lib.reference_advantages, static_argnames=("alpha", "p_explore")
)
reference_p_explore = jax.jit(adv_lib.reference_p_explore)
memory_action_candidates = jax.jit(adv_lib.memory_action_candidates)


def make_neighbours(action_ids, returns, mask=None):
  action_ids = jnp.asarray(action_ids, jnp.int32)
  k = action_ids.shape[0]
  if mask is None:
    mask = jnp.ones((k,), bool)
  return Neighbours(
      indices=jnp.arange(k, dtype=jnp.int32),
      similarities=jnp.ones((k,), jnp.float32),
      action_ids=action_ids,
      returns=jnp.asarray(returns, jnp.float32),
      mask=jnp.asarray(mask, bool),
  )


def numpy_advantages(
    action_ids, returns, mask, cand_ids, cand_mask, lam, alpha
):
  """Plain loop oracle for the deterministic (expected-bonus) rule."""
  rets = [float(r) for a, r, m in zip(action_ids, returns, mask) if m]
  acts = [int(a) for a, m in zip(action_ids, mask) if m]
  n_total = len(rets)
  value = sum(rets) / n_total if n_total else 0.0
  out = []
  for c, cm in zip(cand_ids, cand_mask):
    if not cm or n_total == 0:
      out.append(0.0)
      continue
    mine = [r for a, r in zip(acts, rets) if a == int(c)]
    if mine:
      out.append(sum(mine) / len(mine) - value)
    else:
      out.append(lam * alpha / n_total)
  return value, np.array(out)


class AdvantagesTest(chex.TestCase, parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_hand_worked_example(self):
    # Neighbours: actions [1, 1, 2, 3*] returns [2, 4, 0, 100*] (* masked).
    # |N| = 3, V = (2 + 4 + 0) / 3 = 2.
    # cand 1: n = 2, Q = 3, A = 1.   cand 2: n = 1, Q = 0, A = -2.
    # cand 5: unseen, A = lam * alpha / |N| = 0.5 * 1 / 3 = 1/6, Q = 2 + 1/6.
    # cand 3: the only neighbour with action 3 is masked -> unseen, A = 1/6.
    # cand 1 again but masked -> A = 0, n = 0, Q = V.
    nb = make_neighbours(
        [1, 1, 2, 3], [2.0, 4.0, 0.0, 100.0], [True, True, True, False]
    )
    cands = jnp.array([1, 2, 5, 3, 1], jnp.int32)
    cmask = jnp.array([True, True, True, True, False])
    fn = self.variant(lambda n, c, m: adv_lib.advantages(n, c, m))
    out = fn(nb, cands, cmask)
    np.testing.assert_allclose(out.value, 2.0, rtol=1e-6)
    np.testing.assert_array_equal(out.counts, [2, 1, 0, 0, 0])
    np.testing.assert_allclose(
        out.advantages, [1.0, -2.0, 1 / 6, 1 / 6, 0.0], rtol=1e-6
    )
    np.testing.assert_allclose(
        out.q_values, [3.0, 0.0, 2 + 1 / 6, 2 + 1 / 6, 2.0], rtol=1e-6
    )
    self.assertEqual(int(out.num_neighbours), 3)

  def test_nan_in_masked_returns_does_not_leak(self):
    nb = make_neighbours([1, 2], [1.0, jnp.nan], [True, False])
    out = advantages(nb, jnp.array([1, 2]), jnp.array([True, True]))
    # V = 1, A(1) = 0, A(2) = 0.5 * 1 / 1 = 0.5 (unseen).
    np.testing.assert_allclose(out.advantages, [0.0, 0.5])
    self.assertTrue(np.all(np.isfinite(out.q_values)))

  @parameterized.parameters(None, 0)
  def test_no_neighbours_gives_zero(self, seed):
    nb = make_neighbours([1, 2, 3], [5.0, 6.0, 7.0], [False] * 3)
    key = None if seed is None else jax.random.key(seed)
    out = advantages(
        nb, jnp.array([1, 2, 9]), jnp.array([True, True, True]), key=key
    )
    np.testing.assert_array_equal(out.advantages, 0.0)
    self.assertEqual(float(out.value), 0.0)
    self.assertEqual(int(out.num_neighbours), 0)
    ref = reference_advantages(
        nb, jnp.array([1, 2, 9]), jnp.array([True, True, True]), key=key
    )
    np.testing.assert_array_equal(ref.advantages, 0.0)
    np.testing.assert_array_equal(ref.normalised_advantages, 0.0)

  def test_stochastic_bonus_values_and_mean(self):
    # |N| = 4 -> bonus alpha / |N| = 2 / 4 = 0.5 with probability lam = 0.3.
    nb = make_neighbours([1, 1, 1, 1], [1.0, 2.0, 3.0, 4.0])
    cands = jnp.array([7, 8, 1], jnp.int32)
    cmask = jnp.ones((3,), bool)
    keys = jax.random.split(jax.random.key(0), 4000)
    outs = jax.vmap(
        lambda k: advantages(nb, cands, cmask, lam=0.3, alpha=2.0, key=k)
    )(keys)
    a = np.asarray(outs.advantages)
    self.assertTrue(np.all(np.isin(a[:, :2], [0.0, 0.5])))
    np.testing.assert_allclose(a[:, 2], 0.0, atol=1e-6)  # Q = V = 2.5
    # Mean 0.3 * 0.5 = 0.15; std of one draw 0.5 * sqrt(.21) = 0.229,
    # standard error 0.229 / sqrt(4000) = 0.0036; allow 4 SE.
    np.testing.assert_allclose(a[:, :2].mean(0), 0.15, atol=0.0145)
    # Independent draws per candidate: the two columns differ somewhere.
    self.assertFalse(np.array_equal(a[:, 0], a[:, 1]))

  def test_random_against_numpy_oracle(self):
    rng = np.random.default_rng(0)
    fn = jax.jit(lambda n, c, m: advantages(n, c, m, lam=0.4, alpha=1.5))
    for _ in range(20):
      k, c = 12, 6
      acts = rng.integers(0, 5, size=k)
      rets = rng.normal(size=k).astype(np.float32)
      mask = rng.random(k) < 0.7
      cands = rng.integers(0, 8, size=c)
      cmask = rng.random(c) < 0.8
      out = fn(
          make_neighbours(acts, rets, mask),
          jnp.asarray(cands),
          jnp.asarray(cmask),
      )
      value, want = numpy_advantages(acts, rets, mask, cands, cmask, 0.4, 1.5)
      np.testing.assert_allclose(out.value, value, atol=1e-5)
      np.testing.assert_allclose(out.advantages, want, atol=1e-5)

  def test_padding_and_order_invariance(self):
    nb = make_neighbours([3, 1, 2, 1], [1.0, 2.0, -1.0, 0.5])
    cands, cmask = jnp.array([1, 2, 3, 4]), jnp.ones((4,), bool)
    base = advantages(nb, cands, cmask)
    perm = jnp.array([2, 0, 3, 1])
    permuted = make_neighbours(nb.action_ids[perm], nb.returns[perm])
    padded = make_neighbours(
        [3, 1, 9, 2, 1, 1],
        [1.0, 2.0, 99.0, -1.0, 0.5, -50.0],
        [True, True, False, True, True, False],
    )
    for other in (permuted, padded):
      out = advantages(other, cands, cmask)
      np.testing.assert_allclose(out.advantages, base.advantages, atol=1e-6)

  def test_shift_of_returns_leaves_seen_advantages(self):
    nb = make_neighbours([1, 2, 2, 3], [1.0, 2.0, 4.0, 0.0])
    shifted = nb._replace(returns=nb.returns + 10.0)
    cands, cmask = jnp.array([1, 2, 3]), jnp.ones((3,), bool)
    np.testing.assert_allclose(
        advantages(shifted, cands, cmask).advantages,
        advantages(nb, cands, cmask).advantages,
        atol=1e-5,
    )

  def test_vmapped_twin_matches_loop(self):
    rng = np.random.default_rng(1)
    b, k, c = 5, 8, 4
    nbs = make_neighbours(
        rng.integers(0, 4, (b, k)),
        rng.normal(size=(b, k)),
        rng.random((b, k)) < 0.8,
    )
    nbs = nbs._replace(
        indices=jnp.zeros((b, k), jnp.int32), similarities=jnp.zeros((b, k))
    )
    cands = jnp.asarray(rng.integers(0, 6, (b, c)))
    cmask = jnp.asarray(rng.random((b, c)) < 0.9)
    keys = jax.random.split(jax.random.key(3), b)
    batched = jax.vmap(
        lambda n, ci, cm, kk: adv_lib.advantages(n, ci, cm, key=kk)
    )(nbs, cands, cmask, keys)
    for i in range(b):
      one = advantages(
          jax.tree.map(lambda x: x[i], nbs), cands[i], cmask[i], key=keys[i]
      )
      chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], batched), one)

  def test_rejects_batched_input(self):
    nb = make_neighbours(
        jnp.zeros((2, 3), jnp.int32), jnp.zeros((2, 3)), jnp.ones((2, 3), bool)
    )
    with self.assertRaisesRegex(ValueError, "vmap"):
      adv_lib.advantages(nb, jnp.array([1]), jnp.array([True]))


class MemoryActionCandidatesTest(absltest.TestCase):

  def test_hand_worked(self):
    # Neighbour actions [4, 5, 4, 6, 7, 8*] returns [1, 3, -3, 2, -1, 9*].
    # Candidates [5, 9]. Mean returns: 4 -> (1 - 3) / 2 = -1 (not added),
    # 5 -> candidate already, 6 -> 2 (added, slot 3), 7 -> -1 (not added),
    # 8 -> masked neighbour (not added).
    nb = make_neighbours(
        [4, 5, 4, 6, 7, 8],
        [1.0, 3.0, -3.0, 2.0, -1.0, 9.0],
        [True] * 5 + [False],
    )
    out = memory_action_candidates(
        nb, jnp.array([5, 9]), jnp.array([True, True])
    )
    np.testing.assert_array_equal(out.mask, [0, 0, 0, 1, 0, 0])
    np.testing.assert_allclose(out.mean_returns[:5], [-1, 3, -1, 2, -1])
    np.testing.assert_array_equal(out.counts, [2, 1, 2, 1, 1, 0])

  def test_duplicates_added_once_and_masked_candidate_ignored(self):
    # Action 6 twice (mean 1.5): only its first slot is added. Action 5 is a
    # masked candidate, so it is not a real candidate: added (mean 3).
    nb = make_neighbours([6, 5, 6], [1.0, 3.0, 2.0])
    out = memory_action_candidates(nb, jnp.array([5]), jnp.array([False]))
    np.testing.assert_array_equal(out.mask, [1, 1, 0])


class ReferenceAdvantagesTest(chex.TestCase):

  def _example(self):
    # Actions [1, 1, 2, 2, 3], returns [2, 4, 1, 1, -1]; V0 = 7 / 5 = 1.4.
    return make_neighbours([1, 1, 2, 2, 3], [2.0, 4.0, 1.0, 1.0, -1.0])

  def test_p_explore_hand_worked(self):
    # Action 1: n = 2, mu = 3, sigma = 1 (ddof 0), cv = 1/3,
    #   conf = (3 / (4/3))^0.65 * max(2/4, 1) = 2.25^0.65 = 1.694020.
    # Action 2: n = 2, mu = 1, sigma = 0, cv = 0, conf = 1.
    # Action 3: n = 1, not eligible.
    # p = clip(1 / (1 + 1.694020), 0.05, 0.8) = 0.371192.
    p = reference_p_explore(self._example())
    np.testing.assert_allclose(p, 1 / (1 + 2.25**0.65), rtol=1e-5)
    np.testing.assert_allclose(p, 0.371192, rtol=1e-5)

  def test_p_explore_limits(self):
    # No action with n >= 2 -> 0.8.
    nb = make_neighbours([1, 2, 3], [5.0, 5.0, 5.0])
    self.assertAlmostEqual(float(reference_p_explore(nb)), 0.8)
    # Non-positive mean -> cv infinite -> conf 0 -> 1 / (1 + 0) clipped 0.8.
    nb = make_neighbours([1, 1], [-1.0, 0.0])
    self.assertAlmostEqual(float(reference_p_explore(nb)), 0.8)
    # Very confident: 8 samples of 100 -> conf = 100^0.65 * 2 = 39.8,
    # p = 1 / 40.8 = 0.0245 -> clipped to 0.05.
    nb = make_neighbours([1] * 8, [100.0] * 8)
    self.assertAlmostEqual(float(reference_p_explore(nb)), 0.05, places=6)
    # Masked neighbours do not count: one real sample of action 1 -> 0.8.
    nb = make_neighbours([1, 1], [3.0, 3.0], [True, False])
    self.assertAlmostEqual(float(reference_p_explore(nb)), 0.8)

  @chex.variants(with_jit=True, without_jit=True)
  def test_hand_worked_expected_bonus(self):
    # p = 0.371192 (see above), unseen candidate 9: expected
    #   Q9 = p * (V0 + alpha / |N|) = 0.371192 * (1.4 + 0.2) = 0.593908.
    # Table Q: {1: 3, 2: 1, 3: -1, 9: 0.593908} (3 is not a candidate but is
    #   in the table). An unseen candidate exists, so
    #   V = (3 + 1 - 1 + 0.593908) / 4 = 0.898477.
    # A: 1 -> 2.101523, 2 -> 0.101523, 9 -> -0.304569, (3 -> -1.898477).
    # Max positive A over the table = 2.101523:
    # A_hat = [1, 0.048309, -0.144928]; masked candidate 2 -> 0.
    p = 1 / (1 + 2.25**0.65)
    q9 = p * 1.6
    v = (3 + 1 - 1 + q9) / 4
    want_a = np.array([3 - v, 1 - v, q9 - v, 0.0])
    want_hat = want_a / (3 - v)
    fn = self.variant(lambda n, c, m: adv_lib.reference_advantages(n, c, m))
    out = fn(
        self._example(),
        jnp.array([1, 2, 9, 2]),
        jnp.array([True, True, True, False]),
    )
    np.testing.assert_allclose(out.value, v, rtol=1e-5)
    np.testing.assert_allclose(out.advantages, want_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        out.normalised_advantages, want_hat, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        want_hat[:3], [1.0, 0.048309, -0.144928], rtol=1e-4
    )
    np.testing.assert_array_equal(out.counts, [2, 2, 0, 0])

  def test_no_unseen_keeps_weighted_mean_and_table_max(self):
    # Candidates [1, 2]: all seen, V = V0 = 1.4 (weighted mean, not the table
    # mean 1). A: 1 -> 1.6, 2 -> -0.4; action 3 (not a candidate) has
    # A = -2.4. Max positive over the table is 1.6 -> A_hat = [1, -0.25].
    out = reference_advantages(
        self._example(), jnp.array([1, 2]), jnp.array([True, True])
    )
    np.testing.assert_allclose(out.value, 1.4, rtol=1e-6)
    np.testing.assert_allclose(out.advantages, [1.6, -0.4], rtol=1e-5)
    np.testing.assert_allclose(
        out.normalised_advantages, [1.0, -0.25], rtol=1e-5
    )

  def test_non_candidate_table_action_sets_the_scale(self):
    # Actions [1, 7], returns [1, 5]; candidate only 1. V0 = 3; A(1) = -2,
    # A(7) = 2 (not a candidate) -> A_hat(1) = -2 / 2 = -1.
    nb = make_neighbours([1, 7], [1.0, 5.0])
    out = reference_advantages(nb, jnp.array([1]), jnp.array([True]))
    np.testing.assert_allclose(out.normalised_advantages, [-1.0], rtol=1e-6)

  def test_constant_p_explore_stochastic(self):
    # p_explore = 0.05 (web). Unseen candidate 9: Q = V0 + 1/5 = 1.6 w.p.
    # 0.05 else Q = 0 (absolute zero).
    keys = jax.random.split(jax.random.key(0), 2000)
    nb = self._example()
    outs = jax.vmap(
        lambda k: adv_lib.reference_advantages(
            nb,
            jnp.array([1, 9]),
            jnp.array([True, True]),
            key=k,
            p_explore=0.05,
        )
    )(keys)
    q9 = np.asarray(outs.q_values[:, 1])
    self.assertTrue(np.all(np.isclose(q9, 0.0) | np.isclose(q9, 1.6)))
    # Mean of the indicator: 0.05 +- 4 * sqrt(.05 * .95 / 2000) = 0.0195.
    self.assertAlmostEqual(np.mean(np.isclose(q9, 1.6)), 0.05, delta=0.0195)
    np.testing.assert_allclose(outs.p_explore, 0.05)


class EstimatorConsistencyTest(absltest.TestCase):
  """The kNN advantage on a synthetic bandit with known Q."""

  def test_unbiased_with_exact_neighbours(self):
    # One state, 3 actions with true Q = [1, -0.5, 2]; the neighbours are
    # exact (all from this state) with the fixed design n = [3, 2, 5].
    # Behaviour distribution mu = n / 10, true V = (3 - 1 + 10) / 10 = 1.2,
    # true A = Q - V = [-0.2, -1.7, 0.8]. Returns are Q + N(0, 1) noise, so
    # the estimator is linear in the noise and E[A_hat] = A exactly.
    # Candidate 3 is unseen: E[A] = lam * alpha / 10 = 0.05.
    q_true = np.array([1.0, -0.5, 2.0])
    acts = np.array([0] * 3 + [1] * 2 + [2] * 5)
    true_a = np.array([-0.2, -1.7, 0.8, 0.05])
    cands, cmask = jnp.array([0, 1, 2, 3]), jnp.ones((4,), bool)

    def one(key):
      k_noise, k_bonus = jax.random.split(key)
      rets = q_true[acts] + jax.random.normal(k_noise, (10,))
      return adv_lib.advantages(
          make_neighbours(acts, rets), cands, cmask, key=k_bonus
      ).advantages

    n = 4000
    est = np.asarray(
        jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(42), n))
    )
    se = est.std(0) / np.sqrt(n)
    np.testing.assert_array_less(np.abs(est.mean(0) - true_a), 4 * se + 1e-6)

  def test_converges_as_memory_grows(self):
    # Four states (disjoint token sets), four actions, Q[s, a] known. The
    # memory holds n entries of each state, each with a uniform random
    # action and return Q + N(0, 1), written with memory.add_episode; the
    # neighbours of state 0 come from retrieval.top_k_neighbours with k = n,
    # so they are exactly state 0's entries (similarity 1; other states have
    # similarity 0 and are never neighbours). True A under the uniform
    # behaviour: Q[0] - mean(Q[0]) = [.5, -.5, -1.5, 1.5]. The error falls
    # like 1 / sqrt(n).
    q = jnp.array(
        [
            [1.0, 0.0, -1.0, 2.0],
            [0.5, 0.5, 0.5, 0.5],
            [3.0, -3.0, 0.0, 0.0],
            [0.0, 1.0, 2.0, 3.0],
        ]
    )
    true_a = np.asarray(q[0] - q[0].mean())
    cands, cmask = jnp.arange(4), jnp.ones((4,), bool)

    def state_views(states):  # [N] -> one view, ids [N, 6]
      ids = states[:, None] * 100 + jnp.arange(6)[None, :]
      return token_sets.TokenSet(
          ids.astype(jnp.int32), jnp.ones(ids.shape, jnp.float32)
      )

    def error(key, n):
      k_a, k_r = jax.random.split(key)
      states = jnp.repeat(jnp.arange(4), n)
      actions = jax.random.randint(k_a, (4 * n,), 0, 4)
      rets = q[states, actions] + jax.random.normal(k_r, (4 * n,))
      memory = memory_lib.add_episode(
          memory_lib.init(4 * n, (6,)),
          (state_views(states),),
          actions,
          rets,
          rets,
          jnp.ones((4 * n,), bool),
          0,
          0,
      )
      query = jax.tree.map(lambda x: x[0], state_views(jnp.zeros((1,), int)))
      nb = retrieval.top_k_neighbours(memory, (query,), k=n, weights=(1.0,))
      a = adv_lib.advantages(nb, cands, cmask, key=None).advantages
      return jnp.mean(jnp.abs(a - true_a)), jnp.sum(nb.mask)

    errs = []
    for n in (8, 64, 512):
      keys = jax.random.split(jax.random.key(n), 8)
      err, num = jax.jit(jax.vmap(lambda kk: error(kk, n)))(keys)
      np.testing.assert_array_equal(num, n)  # exact neighbours only
      errs.append(float(jnp.mean(err)))
    # Expected mean |error| ~ 0.8 * sqrt(4 / n) * sqrt(1 + ...): about
    # 0.6, 0.2, 0.07 for n = 8, 64, 512.
    self.assertLess(errs[1], errs[0])
    self.assertLess(errs[2], errs[1])
    self.assertLess(errs[2], 0.15)


if __name__ == "__main__":
  absltest.main()
