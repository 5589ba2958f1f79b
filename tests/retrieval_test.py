"""Tests for jitrl_jax.retrieval."""

from absl.testing import absltest
from absl.testing import parameterized
import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax import memory as memory_lib
from jitrl_jax import retrieval
from jitrl_jax import similarity
from jitrl_jax import token_sets

TokenSet = token_sets.TokenSet
_SETTINGS = hypothesis.settings(max_examples=50, deadline=None)


def _ts(ids, size):
  return token_sets.token_set(np.asarray(ids, np.int64), size)


def _memory_with(returns, inserted_at, valid, actions=None, size=4):
  """A memory whose bookkeeping fields are set directly (views unused)."""
  m = len(returns)
  mem = memory_lib.init(m, (size,))
  return mem._replace(
      returns=jnp.asarray(returns, jnp.float32),
      inserted_at=jnp.asarray(inserted_at, jnp.int32),
      valid=jnp.asarray(valid, bool),
      action_ids=jnp.asarray(
          actions if actions is not None else 100 + np.arange(m), jnp.int32
      ),
  )


def _oracle(
    sims,
    returns,
    inserted_at,
    valid,
    k,
    threshold,
    k_exact=0,
    exact_threshold=0.98,
):
  """Brute force: sort kept entries by (-sim, -ret, -recency)."""
  kept = [
      i
      for i in range(len(sims))
      if valid[i] and sims[i] >= threshold and sims[i] > 0
  ]
  kept.sort(key=lambda i: (-sims[i], -returns[i], -inserted_at[i]))
  rows = kept[: k + k_exact]
  out = []
  for slot, i in enumerate(rows):
    if slot < k or sims[i] > exact_threshold:
      out.append(i)
  return out


_from_sims = jax.jit(
    retrieval.top_k_from_similarities, static_argnames=("k", "k_exact")
)


class SelectionTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_ties_by_hand(self):
    # row:        0    1    2    3    4    5
    sims = [0.5, 0.9, 0.5, 0.5, 0.0, 0.9]
    rets = [1.0, 0.0, 2.0, 1.0, 9.0, 0.0]
    rec = [10, 11, 12, 13, 14, 15]
    mem = _memory_with(rets, rec, [True] * 6)
    f = self.variant(lambda m, s: retrieval.top_k_from_similarities(m, s, k=4))
    out = f(mem, jnp.asarray(sims, jnp.float32))
    # sim 0.9: rows 1, 5 (same return; 5 is more recent) -> 5, 1.
    # sim 0.5: row 2 (return 2) first; rows 0, 3 tie on return 1 -> the
    # more recent row 3 takes the last slot. Row 4 (sim 0) never counts.
    np.testing.assert_array_equal(out.indices, [5, 1, 2, 3])
    np.testing.assert_array_equal(out.mask, [True] * 4)
    np.testing.assert_allclose(out.similarities, [0.9, 0.9, 0.5, 0.5])
    np.testing.assert_array_equal(out.action_ids, [105, 101, 102, 103])
    np.testing.assert_allclose(out.returns, [0.0, 0.0, 2.0, 1.0])

  @chex.variants(with_jit=True, without_jit=True)
  def test_k_larger_than_capacity_and_threshold(self):
    mem = _memory_with([0.0, 1.0, 2.0], [0, 1, 2], [True, True, False])
    f = self.variant(
        lambda m, s, t: retrieval.top_k_from_similarities(
            m, s, k=5, threshold=t
        )
    )
    sims = jnp.array([0.4, 0.8, 1.0])
    out = f(mem, sims, 0.5)
    # Row 2 is invalid, row 0 is below 0.5: only row 1 remains; 5 slots.
    np.testing.assert_array_equal(out.indices, [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(out.mask, [True, False, False, False, False])
    np.testing.assert_allclose(out.similarities, [0.8, 0, 0, 0, 0])
    np.testing.assert_array_equal(out.action_ids, [101, 0, 0, 0, 0])

  def test_exact_tier_by_hand(self):
    sims = jnp.array([0.99, 0.97, 1.0, 0.995, 0.5], jnp.float32)
    mem = _memory_with([0.0] * 5, [0, 1, 2, 3, 4], [True] * 5)
    out = _from_sims(mem, sims, k=2, k_exact=2)
    # Order: 2 (1.0), 3 (0.995), 0 (0.99), 1 (0.97). Top 2 = rows 2, 3;
    # the tier adds row 0 (> 0.98) but not row 1 (0.97).
    np.testing.assert_array_equal(out.indices, [2, 3, 0, 0])
    np.testing.assert_array_equal(out.mask, [True, True, True, False])

  def test_empty_memory_all_masked(self):
    mem = memory_lib.init(4, (3,))
    out = _from_sims(mem, jnp.ones(4), k=3)
    np.testing.assert_array_equal(out.mask, [False] * 3)
    np.testing.assert_array_equal(out.indices, [0] * 3)

  def test_zero_similarity_never_counts(self):
    mem = _memory_with([5.0, 5.0], [0, 1], [True, True])
    out = _from_sims(mem, jnp.zeros(2), k=2, threshold=0.0)
    np.testing.assert_array_equal(out.mask, [False, False])
    out = _from_sims(mem, jnp.zeros(2), k=2, threshold=-1.0)
    np.testing.assert_array_equal(out.mask, [False, False])

  @hypothesis.given(
      st.integers(0, 2**31 - 1),
      st.sampled_from([1, 3, 20]),
      st.sampled_from([0, 2]),
      st.sampled_from([0.0, 0.25, 0.5]),
  )
  @_SETTINGS
  def test_matches_brute_force(self, seed, k, k_exact, threshold):
    rng = np.random.default_rng(seed)
    m = 12
    # Few distinct values, so ties on similarity and on return are common.
    sims = rng.choice([0.0, 0.25, 0.5, 0.75, 0.99, 1.0], m).astype(np.float32)
    rets = rng.choice([-1.0, 0.0, 1.0], m).astype(np.float32)
    rec = rng.permutation(50)[:m].astype(np.int32)
    valid = rng.random(m) < 0.8
    mem = _memory_with(rets, rec, valid)
    out = _from_sims(
        mem, jnp.asarray(sims), k=k, threshold=threshold, k_exact=k_exact
    )
    want = _oracle(sims, rets, rec, valid, k, threshold, k_exact)
    n = len(want)
    chex.assert_shape(out.indices, (k + k_exact,))
    np.testing.assert_array_equal(out.mask, np.arange(k + k_exact) < n)
    np.testing.assert_array_equal(out.indices[:n], want)
    np.testing.assert_array_equal(out.indices[n:], 0)
    np.testing.assert_array_equal(out.similarities[:n], sims[want])
    np.testing.assert_array_equal(out.returns[:n], rets[want])

  @parameterized.parameters((0, 0.95), (10, 0.90), (20, 0.85), (45, 0.85))
  def test_reference_threshold(self, step, expected):
    # tau_t = 0.95 - 0.1 * min(t / 20, 1): t = 10 -> 0.95 - 0.05 = 0.90.
    self.assertAlmostEqual(
        float(retrieval.reference_threshold(step)), expected, places=6
    )

  def test_reference_threshold_tau0(self):
    self.assertAlmostEqual(
        float(retrieval.reference_threshold(10, tau0=0.5)), 0.45, places=6
    )


def _random_memory(rng, m, sizes=(8, 8)):
  """M entries with random views, actions in [0, 5), returns in {-1, 0, 1}."""
  views = tuple(
      token_sets.stack_token_sets(
          [
              _ts(rng.integers(0, 12, rng.integers(0, s + 1)), s)
              for _ in range(m)
          ]
      )
      for s in sizes
  )
  return _add_episode(
      memory_lib.init(m, sizes),
      views,
      rng.integers(0, 5, m).astype(np.int32),
      rng.integers(-1, 2, m).astype(np.float32),
      np.zeros(m, np.float32),
      np.ones(m, bool),
      0,
      0,
  )


_add_episode = jax.jit(memory_lib.add_episode)


class TopKNeighboursTest(chex.TestCase):

  def test_equals_brute_force_on_views(self):
    rng = np.random.default_rng(0)
    mem = _random_memory(rng, 30)
    q = (_ts(rng.integers(0, 12, 6), 8), _ts(rng.integers(0, 12, 6), 8))
    f = jax.jit(
        lambda m, q: retrieval.top_k_neighbours(
            m, q, k=6, weights=(0.3, 0.7), threshold=0.1
        )
    )
    out = f(mem, q)
    sims = np.asarray(
        jax.jit(lambda q, m: similarity.memory_similarity(q, m, (0.3, 0.7)))(
            q, mem.views
        )
    )
    want = _oracle(
        sims,
        np.asarray(mem.returns),
        np.asarray(mem.inserted_at),
        np.asarray(mem.valid),
        6,
        0.1,
    )
    np.testing.assert_array_equal(out.indices[: len(want)], want)
    np.testing.assert_array_equal(out.mask, np.arange(6) < len(want))
    np.testing.assert_allclose(
        out.similarities[: len(want)], sims[want], rtol=1e-6
    )

  def test_floors_keep_only_entries_above_every_floor(self):
    rng = np.random.default_rng(2)
    mem = _random_memory(rng, 30)
    q = (_ts(rng.integers(0, 12, 6), 8), _ts(rng.integers(0, 12, 6), 8))
    floors = (0.3, 0.0)
    out = jax.jit(
        lambda m, q: retrieval.top_k_neighbours(
            m, q, k=30, weights=(0.3, 0.7), floors=floors
        )
    )(mem, q)
    first = np.asarray(
        jax.jit(lambda q, m: similarity.memory_similarity(q, m, (1.0, 0.0)))(
            q, mem.views
        )
    )
    kept = set(np.asarray(out.indices)[np.asarray(out.mask)].tolist())
    self.assertTrue(kept)
    self.assertLess(len(kept), int(np.sum(mem.valid)))
    for i in kept:
      self.assertGreaterEqual(first[i], 0.3)
    dropped = [
        i for i in range(30) if bool(mem.valid[i]) and 0 < first[i] < 0.3
    ]
    self.assertTrue(dropped)
    self.assertFalse(kept & set(dropped))

  def test_all_padding_query_has_no_neighbours(self):
    rng = np.random.default_rng(1)
    mem = _random_memory(rng, 10)
    empty = (_ts([], 8), _ts([], 8))
    out = jax.jit(
        lambda m, q: retrieval.top_k_neighbours(m, q, k=3, weights=(0.3, 0.7))
    )(mem, empty)
    np.testing.assert_array_equal(out.mask, [False] * 3)

  def test_empty_memory(self):
    mem = memory_lib.init(5, (8, 8))
    q = (_ts([1, 2], 8), _ts([3], 8))
    out = jax.jit(
        lambda m, q: retrieval.top_k_neighbours(m, q, k=7, weights=(0.5, 0.5))
    )(mem, q)
    chex.assert_shape(out.mask, (7,))
    self.assertFalse(np.any(out.mask))

  def test_vmapped_twin_over_queries(self):
    rng = np.random.default_rng(2)
    mem = _random_memory(rng, 20)
    qs = [
        (_ts(rng.integers(0, 12, 6), 8), _ts(rng.integers(0, 12, 6), 8))
        for _ in range(4)
    ]
    stacked = tuple(
        token_sets.stack_token_sets([q[v] for q in qs]) for v in range(2)
    )
    fn = lambda q, m: retrieval.top_k_neighbours(m, q, k=5, weights=(0.3, 0.7))
    batched = jax.jit(jax.vmap(fn, in_axes=(0, None)))(stacked, mem)
    chex.assert_shape(batched.indices, (4, 5))
    single = jax.jit(fn)
    for b, q in enumerate(qs):
      chex.assert_trees_all_equal(
          jax.tree.map(lambda x, b=b: x[b], batched), single(q, mem)
      )

  def test_compiles_once_with_traced_threshold(self):
    @jax.jit
    @chex.assert_max_traces(n=1)
    def act(mem, q, step):
      return retrieval.top_k_neighbours(
          mem,
          q,
          k=4,
          weights=(0.3, 0.7),
          threshold=retrieval.reference_threshold(step),
          k_exact=2,
      )

    rng = np.random.default_rng(3)
    mem = _random_memory(rng, 16)
    for step in range(3):
      q = (_ts(rng.integers(0, 12, 6), 8), _ts(rng.integers(0, 12, 6), 8))
      out = act(mem, q, step)
      chex.assert_shape(out.indices, (6,))

  def test_bitset_variant(self):
    rng = np.random.default_rng(4)
    mem = _random_memory(rng, 25)
    q = (_ts(rng.integers(0, 12, 6), 8), _ts(rng.integers(0, 12, 6), 8))
    bits = jax.jit(retrieval.memory_bitsets)(mem)
    chex.assert_shape(bits[0].words, (64, 25))  # word-major [W, M]
    chex.assert_shape(bits[0].popcounts, (25,))
    qb = jax.jit(retrieval.query_bitsets)(q)
    out = jax.jit(
        lambda m, b, qb: retrieval.top_k_neighbours_bitset(
            m, b, qb, k=5, weights=(0.3, 0.7)
        )
    )(mem, bits, qb)
    sims = np.asarray(
        jax.jit(similarity.memory_bitset_similarity)(qb, bits, (0.3, 0.7))
    )
    want = _oracle(
        sims,
        np.asarray(mem.returns),
        np.asarray(mem.inserted_at),
        np.asarray(mem.valid),
        5,
        0.0,
    )
    np.testing.assert_array_equal(out.indices[: len(want)], want)
    np.testing.assert_array_equal(out.mask, np.arange(5) < len(want))
    # 12 distinct ids in 2048 bits rarely collide: here the bitset and the
    # exact set similarity agree on every row.
    as_set = lambda v: TokenSet(v.ids, (v.ids >= 0).astype(jnp.float32))
    exact = jax.jit(similarity.memory_similarity)(
        tuple(as_set(v) for v in q),
        tuple(as_set(v) for v in mem.views),
        (0.3, 0.7),
    )
    np.testing.assert_allclose(sims, exact, rtol=1e-6)

  def test_numpy_query_eagerly_beyond_block_rows(self):
    # M = 5000 > block_rows = 4096: the similarity kernel runs in lax.map,
    # where the hash kernel used to index the NumPy query's ids with a
    # traced value (TracerArrayConversionError).
    mem = memory_lib.init(5000, (64,))
    q = token_sets.text_token_set("west of house", n=1, size=64)
    self.assertIsInstance(q.ids, np.ndarray)
    mem = memory_lib.add(mem, (q,), 7, 1.5, 0.0, 0, 0)
    out = retrieval.top_k_neighbours(mem, (q,), k=5, weights=[1.0])
    np.testing.assert_array_equal(out.mask, [True, False, False, False, False])
    self.assertEqual(int(out.indices[0]), 0)
    self.assertEqual(float(out.similarities[0]), 1.0)
    self.assertEqual(int(out.action_ids[0]), 7)

  def test_bad_arguments(self):
    mem = memory_lib.init(3, (4,))
    with self.assertRaises(ValueError):
      retrieval.top_k_from_similarities(mem, jnp.zeros(3), k=0)
    with self.assertRaisesRegex(ValueError, r"\[3\]"):
      retrieval.top_k_from_similarities(mem, jnp.zeros(4), k=1)


if __name__ == "__main__":
  absltest.main()
