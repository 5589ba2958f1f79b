"""Tests for jitrl_jax.similarity."""

import collections

from absl.testing import absltest
from absl.testing import parameterized
import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax import similarity
from jitrl_jax import token_sets

PAD = token_sets.PAD
TokenSet = token_sets.TokenSet
_SETTINGS = hypothesis.settings(max_examples=50, deadline=None)
_METHODS = ("hash", "search", "dense", "unrolled")

_jaccard = jax.jit(similarity.jaccard, static_argnames=("method",))
_bitset = jax.jit(similarity.to_bitset, static_argnames=("n_bits",))
_bitset_jaccard = jax.jit(similarity.bitset_jaccard)
_upper = jax.jit(similarity.bitset_jaccard_upper_bound)


def _ts(ids, size, multiset=True):
  return token_sets.token_set(
      np.asarray(ids, np.int64), size, multiset=multiset
  )


def _oracle_multiset(a, b):
  """Plain-Python multiset Jaccard of two id lists (duplicates = counts)."""
  ca, cb = collections.Counter(a), collections.Counter(b)
  union = sum((ca | cb).values())
  return sum((ca & cb).values()) / union if union else 0.0


def _oracle_set(a, b):
  sa, sb = set(a), set(b)
  return len(sa & sb) / len(sa | sb) if sa | sb else 0.0


def _multiply_shift(x, log2):
  """NumPy twin of the library's bit / slot hash, for building collisions."""
  x = np.asarray(x, np.int64).astype(np.uint32)
  return (x * np.uint32(0x9E3779B1)) >> np.uint32(32 - log2)


_id_lists = st.lists(st.integers(0, 15), max_size=12)


class JaccardTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*_METHODS)
  def test_by_hand(self, method):
    f = self.variant(lambda a, b: similarity.jaccard(a, b, method=method))
    a = _ts([1, 1, 2, 3], 6)  # {1: 2, 2: 1, 3: 1}
    b = _ts([2, 2, 2, 3, 4], 5)  # {2: 3, 3: 1, 4: 1}
    # min: 2 -> 1, 3 -> 1 = 2; max: 1 -> 2, 2 -> 3, 3 -> 1, 4 -> 1 = 7.
    np.testing.assert_allclose(f(a, b), 2 / 7, rtol=1e-6)
    # Set form: {1, 2, 3} vs {2, 3, 4}: 2 shared of 4.
    sa, sb = _ts([1, 1, 2, 3], 6, False), _ts([2, 2, 2, 3, 4], 5, False)
    np.testing.assert_allclose(f(sa, sb), 0.5, rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*_METHODS)
  def test_empty_and_identity(self, method):
    f = self.variant(lambda a, b: similarity.jaccard(a, b, method=method))
    empty = _ts([], 4)
    a = _ts([3, 9, 9], 4)
    self.assertEqual(float(f(empty, a)), 0.0)
    self.assertEqual(float(f(a, empty)), 0.0)
    self.assertEqual(float(f(empty, empty)), 0.0)
    self.assertEqual(float(f(a, a)), 1.0)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*_METHODS)
  def test_padding_contributes_nothing(self, method):
    f = self.variant(lambda a, b: similarity.jaccard(a, b, method=method))
    a = _ts([1, 2], 4)
    # Same set, but a garbage count sits on a PAD slot.
    b = TokenSet(jnp.array([1, 2, PAD, PAD]), jnp.array([1.0, 1.0, 5.0, 0.0]))
    self.assertEqual(float(f(a, b)), 1.0)
    self.assertEqual(float(f(b, a)), 1.0)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters("hash", "dense")
  def test_hash_collisions_are_exact(self, method):
    # n ids that all land in slot 5 of the first pass's table (S = 8 ->
    # T = 2**(3 + _TABLE_LOG2_EXTRA)). n = 2: one leftover, compared
    # directly; n = 8: 7 leftovers, 4 compared directly and 3 placed by
    # further passes of the while loop.
    log2_t = 3 + similarity._TABLE_LOG2_EXTRA
    universe = np.arange(200_000)
    clash = universe[_multiply_shift(universe, log2_t) == 5][:8]
    f = self.variant(lambda a, b: similarity.jaccard(a, b, method=method))
    for n in (2, 8):
      a_ids = list(clash[:n]) + list(clash[:3])  # counts 2,2,(2),1,...
      b_ids = list(clash[1:6]) + [7, 7]
      got = f(_ts(a_ids, 8), _ts(b_ids, 8))
      np.testing.assert_allclose(got, _oracle_multiset(a_ids, b_ids), rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*_METHODS)
  def test_full_multiset_whose_last_id_loses_a_collision(self, method):
    # 0 and 89 share slot 0 of the first pass's table (S = 2 -> T = 2**7);
    # 0 takes it, and 89, in the last slot, is the one leftover. The
    # hash kernel used to scatter the leftover's "placed" flag and the
    # three filler slots' "not placed" flags onto that same index, so 89
    # could be placed a second time and counted twice (J = 1.0).
    log2_t = 1 + similarity._TABLE_LOG2_EXTRA
    self.assertEqual(_multiply_shift(0, log2_t), _multiply_shift(89, log2_t))
    f = self.variant(lambda a, b: similarity.jaccard(a, b, method=method))
    a = TokenSet(np.array([0, 89], np.int32), np.array([1.0, 1.0], np.float32))
    b = TokenSet(np.array([89], np.int32), np.array([2.0], np.float32))
    # min(1, 2) / (2 + 2 - 1) = 1/3, both ways round.
    np.testing.assert_allclose(f(a, b), 1 / 3, rtol=1e-6)
    np.testing.assert_allclose(f(b, a), 1 / 3, rtol=1e-6)
    # (Sets could not show it: min(2 * ca, cb) = min(ca, cb) when cb = 1.)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*_METHODS)
  def test_zero_width_sets_give_zero(self, method):
    f = self.variant(lambda a, b: similarity.jaccard(a, b, method=method))
    none = TokenSet(np.zeros((0,), np.int32), np.zeros((0,), np.float32))
    a = _ts([3, 9, 9], 4)
    self.assertEqual(float(f(none, a)), 0.0)
    self.assertEqual(float(f(a, none)), 0.0)
    self.assertEqual(float(f(none, none)), 0.0)

  @parameterized.parameters(*_METHODS)
  def test_rejects_duplicate_ids_when_concrete(self, method):
    dup = TokenSet(
        np.array([5, 5, 7, PAD, PAD], np.int32),
        np.array([1.0, 2.0, 1.0, 0.0, 0.0], np.float32),
    )
    ok = TokenSet(np.array([5, 7], np.int32), np.array([3.0, 1.0], np.float32))
    with self.assertRaisesRegex(ValueError, r"a has duplicate ids \[5\]"):
      similarity.jaccard(dup, ok, method=method)
    with self.assertRaisesRegex(ValueError, r"b has duplicate ids \[5\]"):
      similarity.jaccard(ok, dup, method=method)
    with self.assertRaisesRegex(ValueError, "entry view 0 has duplicate ids"):
      similarity.weighted_jaccard((ok,), (dup,), (1.0,), method=method)
    # Repeated PAD is padding, not a duplicate.
    pad = TokenSet(np.array([5, PAD, PAD], np.int32), np.ones(3, np.float32))
    np.testing.assert_allclose(
        similarity.jaccard(pad, ok, method=method), 1 / 4, rtol=1e-6
    )
    # Traced values cannot be checked: no error under jit.
    _jaccard(dup, ok, method=method)

  def test_unknown_method(self):
    with self.assertRaisesRegex(ValueError, "method"):
      similarity.jaccard(_ts([1], 2), _ts([1], 2), method="nope")

  def test_unrolled_refuses_large_sets(self):
    big = _ts(list(range(40)), 40)
    with self.assertRaisesRegex(ValueError, "small sets"):
      similarity.jaccard(big, big, method="unrolled")

  def test_rejects_stacked_sets(self):
    stacked = TokenSet(jnp.zeros((2, 3), jnp.int32), jnp.zeros((2, 3)))
    with self.assertRaisesRegex(ValueError, "vmap"):
      similarity.jaccard(stacked, _ts([1], 3))

  @hypothesis.given(_id_lists, _id_lists, st.booleans())
  @_SETTINGS
  def test_matches_python_oracle(self, a_ids, b_ids, multiset):
    a, b = _ts(a_ids, 12, multiset), _ts(b_ids, 13, multiset)
    oracle = _oracle_multiset if multiset else _oracle_set
    want = oracle(a_ids, b_ids)
    for method in _METHODS:
      np.testing.assert_allclose(
          _jaccard(a, b, method=method), want, rtol=1e-6, atol=1e-7
      )

  @hypothesis.given(_id_lists, _id_lists)
  @_SETTINGS
  def test_symmetric_and_bounded(self, a_ids, b_ids):
    a, b = _ts(a_ids, 12), _ts(b_ids, 12)
    ab, ba = float(_jaccard(a, b)), float(_jaccard(b, a))
    self.assertAlmostEqual(ab, ba, places=6)
    self.assertGreaterEqual(ab, 0.0)
    self.assertLessEqual(ab, 1.0)

  @hypothesis.given(_id_lists)
  @_SETTINGS
  def test_identity_gives_one_unless_empty(self, ids):
    a = _ts(ids, 12)
    self.assertEqual(float(_jaccard(a, a)), 1.0 if ids else 0.0)

  @hypothesis.given(_id_lists, _id_lists, st.randoms())
  @_SETTINGS
  def test_invariant_to_padding_and_order(self, a_ids, b_ids, rnd):
    extra = 3  # one padded shape, so one compilation.
    a, b = _ts(a_ids, 12), _ts(b_ids, 12)
    base = float(_jaccard(a, b))
    # More padding at the end.
    b_pad = TokenSet(
        np.concatenate([b.ids, np.full(extra, PAD, np.int32)]),
        np.concatenate([b.counts, np.zeros(extra, np.float32)]),
    )
    self.assertAlmostEqual(float(_jaccard(a, b_pad)), base, places=6)
    self.assertAlmostEqual(float(_jaccard(b_pad, a)), base, places=6)
    # Any order of the input tokens gives the same set.
    shuffled = list(b_ids)
    rnd.shuffle(shuffled)
    self.assertAlmostEqual(
        float(_jaccard(a, _ts(shuffled, 12))), base, places=6
    )
    # The hash and dense kernels accept unsorted (id, count) pairs too.
    perm = np.asarray(rnd.sample(range(12), 12))
    b_perm = TokenSet(b.ids[perm], b.counts[perm])
    for method in ("hash", "dense", "unrolled"):
      self.assertAlmostEqual(
          float(_jaccard(a, b_perm, method=method)), base, places=6
      )


class WeightedTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_by_hand(self):
    q = (_ts([1, 2], 4), _ts([5], 3))
    e = (_ts([2, 3], 4), _ts([5], 3))
    f = self.variant(lambda q, e: similarity.weighted_jaccard(q, e, (0.3, 0.7)))
    # 0.3 * J({1,2},{2,3}) + 0.7 * J({5},{5}) = 0.3 * 1/3 + 0.7 * 1 = 0.8.
    np.testing.assert_allclose(f(q, e), 0.8, rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_floors_filter(self):
    q = (_ts([1, 2], 4), _ts([5], 3))
    e = (_ts([2, 3], 4), _ts([5], 3))
    f = self.variant(
        lambda q, e, floors: similarity.weighted_jaccard(
            q, e, (0.3, 0.7), floors=floors
        )
    )
    # J = (1/3, 1): floors at or under both keep 0.8; one above drops it.
    np.testing.assert_allclose(f(q, e, (0.0, 0.0)), 0.8, rtol=1e-6)
    np.testing.assert_allclose(f(q, e, (1 / 3, 1.0)), 0.8, rtol=1e-6)
    self.assertEqual(float(f(q, e, (0.34, 0.0))), 0.0)
    np.testing.assert_allclose(f(q, e, (0.0, 1.0)), 0.8, rtol=1e-6)
    # A weight-0 view still filters: the URL view of the authors' web key.
    g = self.variant(
        lambda q, e: similarity.weighted_jaccard(
            q, e, (0.0, 1.0), floors=(1.0, 0.0)
        )
    )
    self.assertEqual(float(g(q, e)), 0.0)
    np.testing.assert_allclose(g(e, e), 1.0, rtol=1e-6)

  def test_weight_shape_checked(self):
    q = (_ts([1], 2),)
    with self.assertRaisesRegex(ValueError, "weights"):
      similarity.weighted_jaccard(q, q, (0.5, 0.5))
    with self.assertRaisesRegex(ValueError, "views"):
      similarity.weighted_jaccard(q, q + q, (1.0,))
    with self.assertRaisesRegex(ValueError, "weights must have shape"):
      similarity.weighted_jaccard(q, q, (1.0,), floors=(0.5, 0.5))


def _random_memory(rng, m, sizes, universe=40):
  """M entries with len(sizes) views; returns (stacked views, raw id lists).

  Each entry has at most S tokens, so no set is truncated.
  """
  raws, views = [], []
  for s in sizes:
    raw = [
        list(rng.integers(0, universe, rng.integers(0, s + 1)))
        for _ in range(m)
    ]
    raws.append(raw)
    views.append(token_sets.stack_token_sets([_ts(r, s) for r in raw]))
  return tuple(views), raws


class MemorySimilarityTest(parameterized.TestCase):

  @parameterized.parameters(*_METHODS)
  def test_matches_python_loop(self, method):
    rng = np.random.default_rng(0)
    sizes, weights = (16, 24), (0.3, 0.7)
    mem, raws = _random_memory(rng, 50, sizes)
    q_raw = [list(rng.integers(0, 40, 15)) for _ in sizes]
    q = tuple(_ts(r, s) for r, s in zip(q_raw, sizes))
    f = jax.jit(
        lambda q, m: similarity.memory_similarity(q, m, weights, method=method)
    )
    got = f(q, mem)
    chex.assert_shape(got, (50,))
    want = [
        sum(
            w * _oracle_multiset(qr, raw[i])
            for w, qr, raw in zip(weights, q_raw, raws)
        )
        for i in range(50)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  def test_floors_match_python_loop(self):
    rng = np.random.default_rng(3)
    sizes, weights, floors = (16, 24), (0.3, 0.7), (0.2, 0.1)
    mem, raws = _random_memory(rng, 60, sizes, universe=20)
    q_raw = [list(rng.integers(0, 20, 12)) for _ in sizes]
    q = tuple(_ts(r, s) for r, s in zip(q_raw, sizes))
    got = jax.jit(
        lambda q, m: similarity.memory_similarity(
            q, m, weights, floors=floors, block_rows=16
        )
    )(q, mem)
    want = []
    for i in range(60):
      js = [_oracle_multiset(qr, raw[i]) for qr, raw in zip(q_raw, raws)]
      keep = all(j >= f for j, f in zip(js, floors))
      want.append(sum(w * j for w, j in zip(weights, js)) if keep else 0.0)
    self.assertGreater(sum(w == 0.0 for w in want), 0)  # some filtered
    self.assertGreater(sum(w > 0.0 for w in want), 0)  # some kept
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  def test_blocks_equal_one_piece(self):
    rng = np.random.default_rng(5)
    mem, _ = _random_memory(rng, 50, (8, 8), universe=200)
    q = tuple(_ts(rng.integers(0, 200, 6), 8) for _ in range(2))
    whole = similarity.memory_similarity(q, mem, (0.3, 0.7), block_rows=None)
    # 50 rows in blocks of 8: 6 blocks through lax.map, then a tail of 2.
    blocked = jax.jit(
        lambda q, m: similarity.memory_similarity(
            q, m, (0.3, 0.7), block_rows=8
        )
    )(q, mem)
    np.testing.assert_array_equal(blocked, whole)

  def test_vmapped_twin_over_queries(self):
    rng = np.random.default_rng(1)
    mem, _ = _random_memory(rng, 30, (16,))
    queries = token_sets.stack_token_sets(
        [_ts(rng.integers(0, 40, 12), 16) for _ in range(5)]
    )
    batched = jax.jit(
        jax.vmap(
            lambda q, m: similarity.memory_similarity((q,), m, (1.0,)),
            in_axes=(0, None),
        )
    )(queries, mem)
    chex.assert_shape(batched, (5, 30))
    single = jax.jit(lambda q, m: similarity.memory_similarity((q,), m, (1.0,)))
    for b in range(5):
      q = TokenSet(queries.ids[b], queries.counts[b])
      np.testing.assert_allclose(batched[b], single(q, mem), rtol=1e-6)

  def test_compiles_once(self):
    @jax.jit
    @chex.assert_max_traces(n=1)
    def f(q, m):
      return similarity.memory_similarity(q, m, (0.3, 0.7))

    rng = np.random.default_rng(2)
    for _ in range(3):
      mem, _ = _random_memory(rng, 20, (8, 8))
      q = tuple(_ts(rng.integers(0, 40, 6), 8) for _ in range(2))
      f(q, mem)

  @parameterized.parameters(*_METHODS)
  def test_numpy_query_eagerly_over_blocks(self, method):
    # An eager call with a NumPy query and M > block_rows: the kernel runs
    # inside lax.map, where a NumPy query indexed by a traced value used
    # to raise TracerArrayConversionError.
    rng = np.random.default_rng(6)
    mem, raws = _random_memory(rng, 20, (8,))
    q_raw = list(rng.integers(0, 40, 6))
    q = (_ts(q_raw, 8),)
    self.assertIsInstance(q[0].ids, np.ndarray)
    got = similarity.memory_similarity(
        q, mem, (1.0,), method=method, block_rows=8
    )
    want = [_oracle_multiset(q_raw, raws[0][i]) for i in range(20)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  def test_rejects_unstacked_memory(self):
    with self.assertRaisesRegex(ValueError, r"\[M, S\]"):
      similarity.memory_similarity((_ts([1], 2),), (_ts([1], 2),), (1.0,))


class BitsetTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_to_bitset_by_hand(self):
    # With 32 bits the bit of x is the top 5 bits of uint32(x) * 0x9E3779B1.
    ids = np.array([0, 1, 2, 18], np.int64)
    bits = _multiply_shift(ids, 5)  # 0 -> 0, and 18 -> 3 (see below).
    self.assertEqual(int(bits[0]), 0)
    self.assertEqual(int(bits[3]), 3)
    got = self.variant(lambda t: similarity.to_bitset(t, n_bits=32))(
        _ts(ids, 6)
    )
    chex.assert_shape(got, (1,))
    self.assertEqual(got.dtype, jnp.uint32)
    want = 0
    for b in bits:
      want |= 1 << int(b)
    self.assertEqual(int(got[0]), want)

  @chex.variants(with_jit=True, without_jit=True)
  def test_identity_and_empty(self):
    f = self.variant(similarity.bitset_jaccard)
    a = _bitset(_ts([4, 8, 15, 16, 23, 42], 8))
    empty = _bitset(_ts([], 8))
    chex.assert_shape(a, (64,))
    self.assertEqual(float(f(a, a)), 1.0)
    self.assertEqual(float(f(a, empty)), 0.0)
    self.assertEqual(float(f(empty, empty)), 0.0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_shared_collision_underestimates(self):
    # A = {x, y, z}, B = {x, y}, with x and y on the same bit (32 bits):
    # exact J = 2/3; bits: A -> {b, bz}, B -> {b}: estimate 1/2 < 2/3.
    universe = np.arange(10_000)
    x, y = universe[_multiply_shift(universe, 5) == 3][:2]
    z = universe[_multiply_shift(universe, 5) == 9][0]
    to_bits = lambda ids: _bitset(_ts(ids, 4), n_bits=32)
    a, b = to_bits([x, y, z]), to_bits([x, y])
    self.assertAlmostEqual(
        float(self.variant(similarity.bitset_jaccard)(a, b)), 0.5
    )
    # The one-sided variant: pa = 2, pb = 1, i = 1, |A| = 3, |B| = 2;
    # I+ = min(1 + min(3 - 2, 2 - 1), 3, 2) = 2 -> 2 / (3 + 2 - 2) = 2/3.
    up = self.variant(similarity.bitset_jaccard_upper_bound)(a, b, 3, 2)
    self.assertAlmostEqual(float(up), 2 / 3, places=6)

  def test_error_within_documented_bound_on_random_data(self):
    rng = np.random.default_rng(3)
    n_bits, s = 2048, 64
    diffs, d_values, d_expected = [], [], []
    for _ in range(200):
      shared = rng.integers(0, 2**31 - 1, rng.integers(0, s))
      a_ids = np.concatenate(
          [shared, rng.integers(0, 2**31 - 1, s - len(shared))]
      )
      b_ids = np.concatenate(
          [
              shared,
              rng.integers(0, 2**31 - 1, rng.integers(0, s - len(shared) + 1)),
          ]
      )
      a, b = _ts(a_ids, s, False), _ts(b_ids, s, False)
      sa, sb = set(a_ids.tolist()), set(b_ids.tolist())
      u, c = len(sa | sb), len(sa & sb)
      exact = c / u
      ba, bb = _bitset(a, n_bits=n_bits), _bitset(b, n_bits=n_bits)
      est = float(_bitset_jaccard(ba, bb))
      d = u - int(np.sum([bin(int(w)).count("1") for w in (ba | bb)]))
      slack = 1e-6
      self.assertLessEqual(est, exact + d * (1 + exact) / (u - d) + slack)
      self.assertGreaterEqual(est, exact - d * (1 - exact) / (u - d) - slack)
      up = float(_upper(ba, bb, len(sa), len(sb)))
      self.assertGreaterEqual(up, exact - slack)  # never under-estimates
      diffs.append(est - exact)
      d_values.append(d)
      d_expected.append(similarity.expected_bitset_collisions(u, n_bits))
    # E[D] formula: the mean over 200 pairs (E[D] ~ 1 to 4 each) is close.
    self.assertAlmostEqual(np.mean(d_values), np.mean(d_expected), delta=0.5)
    self.assertLess(np.max(np.abs(diffs)), 0.1)

  @hypothesis.given(_id_lists, _id_lists)
  @_SETTINGS
  def test_upper_bound_never_underestimates(self, a_ids, b_ids):
    # 32 bits and a universe of 16 ids: collisions everywhere.
    a, b = _ts(a_ids, 12, False), _ts(b_ids, 12, False)
    ba, bb = _bitset(a, n_bits=32), _bitset(b, n_bits=32)
    exact = _oracle_set(a_ids, b_ids)
    up = float(_upper(ba, bb, len(set(a_ids)), len(set(b_ids))))
    self.assertGreaterEqual(up, exact - 1e-6)
    self.assertLessEqual(up, 1.0)
    est = float(_bitset_jaccard(ba, bb))
    self.assertAlmostEqual(est, float(_bitset_jaccard(bb, ba)), places=6)
    self.assertGreaterEqual(est, 0.0)
    self.assertLessEqual(est, 1.0)

  def test_memory_bitset_similarity_matches_loop(self):
    rng = np.random.default_rng(4)
    mem, _ = _random_memory(rng, 25, (16, 16), universe=1000)
    bits = tuple(jax.jit(similarity.bitset_matrix)(v) for v in mem)
    q = tuple(_ts(rng.integers(0, 1000, 12), 16) for _ in range(2))
    qb = tuple(_bitset(v) for v in q)
    got = jax.jit(
        lambda q, m: similarity.memory_bitset_similarity(q, m, (0.3, 0.7))
    )(qb, bits)
    chex.assert_shape(got, (25,))
    want = [
        0.3 * _bitset_jaccard(qb[0], bits[0].words[:, i])
        + 0.7 * _bitset_jaccard(qb[1], bits[1].words[:, i])
        for i in range(25)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-6)

  def test_bitset_matrix_is_word_major_with_popcounts(self):
    rng = np.random.default_rng(5)
    mem, _ = _random_memory(rng, 7, (16,), universe=1000)
    bits = jax.jit(similarity.bitset_matrix)(mem[0])
    chex.assert_shape(bits.words, (64, 7))
    for i in range(7):
      row = TokenSet(mem[0].ids[i], mem[0].counts[i])
      column = np.asarray(bits.words[:, i])
      np.testing.assert_array_equal(column, _bitset(row))
      self.assertEqual(
          int(bits.popcounts[i]), sum(bin(int(x)).count("1") for x in column)
      )

  def test_memory_bitset_similarity_rejects_raw_arrays(self):
    words = jnp.zeros((64, 3), jnp.uint32)
    with self.assertRaisesRegex(TypeError, "BitsetMatrix"):
      similarity.memory_bitset_similarity(
          (jnp.zeros((64,), jnp.uint32),), (words,), (1.0,)
      )
    bad = similarity.BitsetMatrix(jnp.zeros((3, 64), jnp.uint32), jnp.zeros(64))
    with self.assertRaisesRegex(ValueError, "word-major"):
      similarity.memory_bitset_similarity(
          (jnp.zeros((64,), jnp.uint32),), (bad,), (1.0,)
      )

  def test_bad_inputs(self):
    with self.assertRaisesRegex(ValueError, "power of two"):
      similarity.to_bitset(_ts([1], 2), n_bits=100)
    with self.assertRaisesRegex(ValueError, r"\[W\]"):
      similarity.bitset_jaccard(
          jnp.zeros((2, 4), jnp.uint32), jnp.zeros((2, 4), jnp.uint32)
      )


if __name__ == "__main__":
  absltest.main()
