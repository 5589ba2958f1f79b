"""Tests for jitrl_jax/envs/synthetic.py (known values, jit, vmap)."""

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax.envs import synthetic


class BanditTest(parameterized.TestCase):

  def test_prototype_layout_by_hand(self):
    # N=3, P=4, one shared token (0); U = 3 own tokens per cluster:
    # cluster 0 -> 1, 2, 3; cluster 1 -> 4, 5, 6; cluster 2 -> 7, 8, 9.
    env = synthetic.contextual_bandit(
        num_clusters=3, proto_size=4, num_shared=1, num_traps=0
    )
    params = env.init_params(jax.random.key(0))
    np.testing.assert_array_equal(
        params.prototypes, [[0, 1, 2, 3], [0, 4, 5, 6], [0, 7, 8, 9]]
    )

  def test_noise_free_context_is_the_prototype(self):
    env = synthetic.contextual_bandit(
        num_clusters=3, proto_size=4, num_shared=1, token_noise=0.0
    )
    params = env.init_params(jax.random.key(0))
    state = env.reset(params, jax.random.key(3))
    (view,) = env.views(params, state)
    np.testing.assert_array_equal(view.ids, params.prototypes[state.cluster])
    np.testing.assert_array_equal(view.counts, np.ones(4))

  def test_noise_tokens_lie_above_the_prototypes(self):
    # Noise ids start at N * P = 3 * 4 = 12; with token_noise=1 every token
    # is noise, so every id is in [12, 12 + 5).
    env = synthetic.contextual_bandit(
        num_clusters=3,
        proto_size=4,
        num_shared=1,
        token_noise=1.0,
        noise_vocab=5,
    )
    params = env.init_params(jax.random.key(0))
    state = env.reset(params, jax.random.key(1))
    ids = np.asarray(state.tokens.ids)
    real = ids[ids >= 0]
    self.assertTrue(np.all((real >= 12) & (real < 17)))
    # Sorted, unique, padded at the end.
    np.testing.assert_array_equal(real, np.unique(real))

  def test_prior_is_right_except_at_the_traps(self):
    env = synthetic.contextual_bandit(num_clusters=8, num_traps=3)
    for seed in range(5):
      params = env.init_params(jax.random.key(seed))
      best = np.argmax(params.q_values, axis=1)
      prior_best = np.argmax(params.prior_logits, axis=1)
      trap = np.asarray(params.trap)
      np.testing.assert_array_equal(trap, np.arange(8) < 3)
      np.testing.assert_array_equal(prior_best[~trap], best[~trap])
      np.testing.assert_array_equal(
          prior_best[trap], np.asarray(params.trap_action)[trap]
      )
      self.assertTrue(np.all(prior_best[trap] != best[trap]))

  def test_noise_free_reward_is_q(self):
    env = synthetic.contextual_bandit(reward_noise=0.0, horizon=2)
    params = env.init_params(jax.random.key(0))
    state = env.reset(params, jax.random.key(1))
    for action in range(env.num_actions):
      _, reward, done = env.step(
          params, state, jnp.int32(action), jax.random.key(2)
      )
      self.assertAlmostEqual(
          float(reward), float(params.q_values[state.cluster, action]), places=6
      )
      self.assertFalse(bool(done))
      np.testing.assert_allclose(
          env.true_q(params, state), params.q_values[state.cluster]
      )

  def test_episode_ends_at_horizon(self):
    env = synthetic.contextual_bandit(horizon=3)
    params = env.init_params(jax.random.key(0))
    state = env.reset(params, jax.random.key(1))
    dones = []
    for t in range(3):
      state, _, done = env.step(params, state, jnp.int32(0), jax.random.key(t))
      dones.append(bool(done))
    self.assertEqual(dones, [False, False, True])

  def test_mean_reward_matches_q_statistically(self):
    env = synthetic.contextual_bandit(reward_noise=0.5)
    params = env.init_params(jax.random.key(0))
    state = env.reset(params, jax.random.key(1))
    keys = jax.random.split(jax.random.key(2), 20000)
    step = jax.vmap(env.step, in_axes=(None, None, None, 0))
    _, rewards, _ = step(params, state, jnp.int32(1), keys)
    # Standard error 0.5 / sqrt(20000) = 0.0035; 5 sigma = 0.018.
    self.assertAlmostEqual(
        float(rewards.mean()),
        float(params.q_values[state.cluster, 1]),
        delta=0.018,
    )


class TreeTest(parameterized.TestCase):

  def test_tree_q_values_by_hand(self):
    # C=2, D=2, gamma=0.5, leaves (level order) [0.1, 0.5, 0.3, 0.2]:
    # node 1 (leaves 0, 1): Q = [0.1, 0.5]; node 2 (leaves 2, 3): [0.3, 0.2];
    # root: 0.5 * [max(0.1, 0.5), max(0.3, 0.2)] = [0.25, 0.15].
    q = synthetic.tree_q_values(
        jnp.asarray([0.1, 0.5, 0.3, 0.2]), branching=2, depth=2, gamma=0.5
    )
    np.testing.assert_allclose(
        q, [[0.25, 0.15], [0.1, 0.5], [0.3, 0.2]], rtol=1e-6
    )

  def test_tree_leaf_values_by_hand(self):
    # C=2, D=2; edges: root [0.2, 0.4], node 1 [0.6, 0.0], node 2 [1.0, 0.8].
    # Leaves: (0.2 + 0.6) / 2, (0.2 + 0) / 2, (0.4 + 1) / 2, (0.4 + 0.8) / 2.
    leaves = synthetic.tree_leaf_values(
        jnp.asarray([[0.2, 0.4], [0.6, 0.0], [1.0, 0.8]]),
        branching=2,
        depth=2,
    )
    np.testing.assert_allclose(leaves, [0.4, 0.1, 0.7, 0.6], rtol=1e-6)

  def test_walk_tokens_and_reward_by_hand(self):
    # C=2, D=2: internal nodes 0, 1, 2; leaves 3..6. Path tokens j*C + a_j;
    # node token D*C + n = 4 + n; noise from 4 + 3 + 4 = 11.
    env = synthetic.tree_mdp(
        branching=2,
        depth=2,
        gamma=0.5,
        num_noise=1,
        noise_vocab=1,
        reward_noise=0.0,
        num_traps=0,
    )
    params = env.init_params(jax.random.key(0))
    params = params._replace(leaf_values=jnp.asarray([0.1, 0.5, 0.3, 0.2]))
    state = env.reset(params, jax.random.key(1))
    (view,) = env.views(params, state)
    np.testing.assert_array_equal(view.ids, [4, 11, -1, -1])  # node 0, noise
    state, reward, done = env.step(
        params, state, jnp.int32(1), jax.random.key(2)
    )
    self.assertEqual(int(state.node), 2)
    self.assertEqual((float(reward), bool(done)), (0.0, False))
    (view,) = env.views(params, state)
    np.testing.assert_array_equal(view.ids, [1, 6, 11, -1])  # a_0=1, node 2
    state, reward, done = env.step(
        params, state, jnp.int32(0), jax.random.key(3)
    )
    # Node 2 * 2 + 1 + 0 = 5 = leaf 2 -> 0.3.
    self.assertEqual(int(state.node), 5)
    self.assertAlmostEqual(float(reward), 0.3, places=6)
    self.assertTrue(bool(done))
    (view,) = env.views(params, state)
    np.testing.assert_array_equal(view.ids, [1, 2, 9, 11])

  def test_root_is_a_trap(self):
    env = synthetic.tree_mdp(num_traps=2)
    for seed in range(5):
      params = env.init_params(jax.random.key(seed))
      q = np.asarray(params.q_values)
      z = np.asarray(params.prior_logits)
      trap = np.asarray(params.trap)
      self.assertTrue(trap[0])
      self.assertEqual(trap.sum(), 2)
      self.assertNotEqual(z[0].argmax(), q[0].argmax())
      # Second trap: the root's optimal child (3 * 0 + 1 + a*).
      self.assertTrue(trap[1 + q[0].argmax()])
      np.testing.assert_array_equal(z[~trap].argmax(1), q[~trap].argmax(1))

  def test_q_star_matches_monte_carlo(self):
    # Take root action a, then act optimally; E[G_0] = Q*(root, a).
    env = synthetic.tree_mdp(branching=3, depth=3, gamma=0.9, reward_noise=0.3)
    params = env.init_params(jax.random.key(4))

    def rollout(first, key):
      keys = jax.random.split(key, 4)
      state = env.reset(params, keys[0])
      state, r0, _ = env.step(params, state, first, keys[1])
      a1 = jnp.argmax(env.true_q(params, state))
      state, r1, _ = env.step(params, state, a1, keys[2])
      a2 = jnp.argmax(env.true_q(params, state))
      _, r2, _ = env.step(params, state, a2, keys[3])
      return r0 + 0.9 * r1 + 0.81 * r2

    keys = jax.random.split(jax.random.key(5), 8000)
    all_actions = jax.jit(
        jax.vmap(jax.vmap(rollout, in_axes=(None, 0)), in_axes=(0, None))
    )
    g = all_actions(jnp.arange(3, dtype=jnp.int32), keys).mean(axis=1)
    # Standard error 0.81 * 0.3 / sqrt(8000) = 0.0027; 5 sigma = 0.014.
    np.testing.assert_allclose(g, params.q_values[0], atol=0.014)


class CommonTest(parameterized.TestCase):

  @parameterized.parameters("bandit", "tree")
  def test_jit_vmap_and_single_trace(self, name):
    chex.clear_trace_counter()
    env = synthetic.make(name)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def episode(key):
      k_p, k_r, k_s = jax.random.split(key, 3)
      params = env.init_params(k_p)
      state = env.reset(params, k_r)

      def body(state, key):
        q = env.true_q(params, state)
        action = jnp.argmax(env.prior_logits(params, state))
        state, reward, done = env.step(params, state, action, key)
        return state, (reward, done, q)

      _, out = jax.lax.scan(body, state, jax.random.split(k_s, env.horizon))
      return out

    keys = jax.random.split(jax.random.key(0), 16)
    rewards, dones, q = jax.vmap(episode)(keys)
    chex.assert_shape(rewards, (16, env.horizon))
    chex.assert_shape(q, (16, env.horizon, env.num_actions))
    self.assertTrue(bool(jnp.all(dones[:, -1])))
    self.assertFalse(bool(jnp.any(dones[:, :-1])))
    # A second batch of keys reuses the compiled function.
    jax.vmap(episode)(jax.random.split(jax.random.key(1), 16))

  @parameterized.parameters("bandit", "tree")
  def test_views_have_declared_shapes(self, name):
    env = synthetic.make(name)
    params = env.init_params(jax.random.key(0))
    state = env.reset(params, jax.random.key(1))
    views = env.views(params, state)
    self.assertLen(views, len(env.view_sizes))
    for view, size in zip(views, env.view_sizes):
      chex.assert_shape(view.ids, (size,))
      chex.assert_type(view.ids, jnp.int32)
      chex.assert_type(view.counts, jnp.float32)
    self.assertLess(int(env.state_id(params, state)), env.num_states)

  def test_step_regret_by_hand(self):
    # max Q = 1; E_pi[Q] = 0.5 * 1 + 0.5 * 0 = 0.5 -> regret 0.5.
    self.assertAlmostEqual(
        float(
            synthetic.step_regret(
                jnp.asarray([1.0, 0.0]), jnp.asarray([0.5, 0.5])
            )
        ),
        0.5,
    )

  def test_unknown_name(self):
    with self.assertRaisesRegex(ValueError, "unknown synthetic"):
      synthetic.make("chess")


if __name__ == "__main__":
  absltest.main()
