"""Tests for jitrl_jax.returns."""

from absl.testing import absltest
from absl.testing import parameterized
import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax import returns as returns_lib

_SETTINGS = hypothesis.settings(max_examples=50, deadline=None)


def _oracle(rewards, mask, gamma, anchors=None):
  """Plain loop; with anchors, future zero rewards become anchors[t]."""
  t_len = len(rewards)
  out = []
  for t in range(t_len):
    if not mask[t]:
      out.append(0.0)
      continue
    g, disc = rewards[t], gamma
    for j in range(t + 1, t_len):
      if not mask[j]:
        break
      r = rewards[j]
      if anchors is not None and r == 0:
        r = anchors[t]
      g += disc * r
      disc *= gamma
    out.append(g)
  return np.asarray(out)


class DiscountedReturnsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_by_hand(self):
    f = self.variant(
        lambda r, m: returns_lib.discounted_returns(r, m, gamma=0.5)
    )
    # G_2 = 2; G_1 = 0 + 0.5 * 2 = 1; G_0 = 1 + 0.5 * 1 = 1.5; step 3 pad.
    got = f(
        jnp.array([1.0, 0.0, 2.0, 7.0]), jnp.array([True, True, True, False])
    )
    np.testing.assert_allclose(got, [1.5, 1.0, 2.0, 0.0])

  @parameterized.parameters((0.0, [1.0, -2.0, 3.0]), (1.0, [2.0, 1.0, 3.0]))
  def test_gamma_extremes(self, gamma, expected):
    # gamma 0: the rewards; gamma 1: suffix sums 1-2+3, -2+3, 3.
    got = returns_lib.discounted_returns(
        jnp.array([1.0, -2.0, 3.0]), jnp.ones(3, bool), gamma=gamma
    )
    np.testing.assert_allclose(got, expected)

  def test_masked_step_is_an_episode_end(self):
    got = returns_lib.discounted_returns(
        jnp.array([1.0, 5.0, 1.0]), jnp.array([True, False, True]), gamma=0.5
    )
    np.testing.assert_allclose(got, [1.0, 0.0, 1.0])

  @hypothesis.given(
      st.lists(st.floats(-3, 3), min_size=6, max_size=6),
      st.integers(0, 6),
      st.floats(0, 1),
  )
  @_SETTINGS
  def test_matches_loop(self, rewards, length, gamma):
    mask = np.arange(6) < length
    got = _jit_discounted(np.asarray(rewards, np.float32), mask, gamma)
    np.testing.assert_allclose(
        got, _oracle(rewards, mask, gamma), rtol=1e-5, atol=1e-5
    )

  def test_vmapped_twin(self):
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(4, 7)).astype(np.float32)
    mask = np.arange(7)[None, :] < np.array([[7], [3], [0], [5]])
    got = jax.vmap(
        lambda r, m: returns_lib.discounted_returns(r, m, gamma=0.9)
    )(rewards, mask)
    for b in range(4):
      np.testing.assert_allclose(
          got[b], _oracle(rewards[b], mask[b], 0.9), rtol=1e-5, atol=1e-6
      )

  def test_compiles_once(self):
    @jax.jit
    @chex.assert_max_traces(n=1)
    def f(r, m, gamma):
      return returns_lib.discounted_returns(r, m, gamma=gamma)

    for gamma in (0.1, 0.5, 0.9):  # traced gamma: no recompilation.
      f(jnp.ones(5), jnp.ones(5, bool), gamma)

  def test_shape_checked(self):
    with self.assertRaisesRegex(ValueError, "mask"):
      returns_lib.discounted_returns(jnp.ones(3), jnp.ones(2, bool), gamma=1)
    with self.assertRaisesRegex(ValueError, "rewards"):
      returns_lib.discounted_returns(
          jnp.ones((2, 3)), jnp.ones(3, bool), gamma=1
      )


_jit_discounted = jax.jit(
    lambda r, m, g: returns_lib.discounted_returns(r, m, gamma=g)
)
_jit_reference = jax.jit(
    lambda r, m, a, g: returns_lib.reference_returns(
        r, m, a, gamma=g, substitute_zeros=True
    )
)


class ReferenceReturnsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_by_hand(self):
    f = self.variant(
        lambda r, m, a: returns_lib.reference_returns(
            r, m, a, gamma=0.5, substitute_zeros=True
        )
    )
    rewards = jnp.array([1.0, 0.0, 2.0])
    anchors = jnp.array([3.0, 4.0, 5.0])
    # G_0 = 1 + 0.5 * 3 (r_1 = 0 -> a_0 = 3) + 0.25 * 2 = 3.0
    # G_1 = 0 + 0.5 * 2 = 1.0 (its own zero reward is not replaced)
    # G_2 = 2.0
    got = f(rewards, jnp.ones(3, bool), anchors)
    np.testing.assert_allclose(got, [3.0, 1.0, 2.0])

  def test_off_by_default(self):
    rewards = jnp.array([1.0, 0.0, 2.0])
    got = returns_lib.reference_returns(
        rewards, jnp.ones(3, bool), jnp.array([3.0, 4.0, 5.0]), gamma=0.5
    )
    np.testing.assert_allclose(got, [1.5, 1.0, 2.0])  # plain returns.

  @hypothesis.given(
      st.lists(st.sampled_from([0.0, 1.0, -2.0, 0.5]), min_size=6, max_size=6),
      st.lists(st.floats(-3, 3), min_size=6, max_size=6),
      st.integers(0, 6),
      st.floats(0, 1),
  )
  @_SETTINGS
  def test_matches_loop(self, rewards, anchors, length, gamma):
    mask = np.arange(6) < length
    got = _jit_reference(
        np.asarray(rewards, np.float32),
        mask,
        np.asarray(anchors, np.float32),
        gamma,
    )
    np.testing.assert_allclose(
        got, _oracle(rewards, mask, gamma, anchors), rtol=1e-5, atol=1e-5
    )


if __name__ == "__main__":
  absltest.main()
