"""Tests for benchmarks/theory_bench.py's ablation stand-in.

The theory benchmark runs the lab with `_recent_neighbours` as the runner's
`neighbours_fn` to measure what an agent-step costs without the retrieval;
this checks that the stand-in returns what its docstring says (the k most recent valid rows), so the
ablation row measures a well-formed step. No timings are asserted.
"""

from absl.testing import absltest
from absl.testing import parameterized
import jax.numpy as jnp
import numpy as np

from benchmarks import theory_bench
from experiments.theory import rules
from jitrl_jax import config as config_lib
from jitrl_jax import memory as memory_lib
from jitrl_jax import token_sets


def _memory(capacity: int, steps: int):
  """A memory of `capacity` rows after `steps` writes, return = step index."""
  memory = memory_lib.init(capacity, (2,))
  views = (
      token_sets.TokenSet(
          jnp.arange(2 * steps, dtype=jnp.int32).reshape(steps, 2),
          jnp.ones((steps, 2), jnp.float32),
      ),
  )
  return memory_lib.add_episode(
      memory,
      views,
      jnp.arange(steps, dtype=jnp.int32) + 100,
      jnp.arange(steps, dtype=jnp.float32),
      jnp.zeros((steps,)),
      jnp.ones((steps,), bool),
      jnp.int32(0),
      jnp.int32(0),
  )


def _settings(k_max: int):
  policy = config_lib.Settings(k=k_max, memory_capacity=8)
  return rules.Settings(episodes=1, policy=policy)


def _hyper(k: int):
  return rules.Hyper(
      policy=config_lib.Hyper(beta=1.0, lam=0.0, alpha=0.0),
      k=jnp.int32(k),
      random_ties=jnp.bool_(False),
  )


class RecentNeighboursTest(parameterized.TestCase):

  def test_most_recent_first_after_the_ring_wraps(self):
    memory = _memory(capacity=8, steps=11)  # steps 3..10 survive
    nb = theory_bench._recent_neighbours(
        _settings(4), _hyper(4), memory, views=None, key=None
    )
    np.testing.assert_array_equal(nb.returns, [10.0, 9.0, 8.0, 7.0])
    np.testing.assert_array_equal(nb.action_ids, [110, 109, 108, 107])
    np.testing.assert_array_equal(nb.mask, [True] * 4)
    np.testing.assert_array_equal(
        memory.returns[nb.indices], np.asarray(nb.returns)
    )

  @parameterized.named_parameters(
      # 2 rows written: the last two slots are empty (the last also > k).
      ("empty_rows", 2, 3, [True, True, False, False], [1.0, 0.0, 0, 0]),
      # 8 rows written: k = 2 masks real rows too.
      ("beyond_hyper_k", 8, 2, [True, True, False, False], [7.0, 6.0, 0, 0]),
  )
  def test_masked_slots_are_zero(self, steps, k, mask, returns):
    memory = _memory(capacity=8, steps=steps)
    nb = theory_bench._recent_neighbours(
        _settings(4), _hyper(k), memory, views=None, key=None
    )
    np.testing.assert_array_equal(nb.mask, mask)
    np.testing.assert_array_equal(nb.returns, returns)
    np.testing.assert_array_equal(nb.similarities, np.asarray(mask, float))
    np.testing.assert_array_equal(nb.indices[2:], [0, 0])


if __name__ == "__main__":
  absltest.main()
