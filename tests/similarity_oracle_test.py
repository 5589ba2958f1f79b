"""Property test: every exact Jaccard kernel against a Counter oracle.

The sets here use every slot (no padding) and are built to collide in the
hash kernel's first pass: ids are made by inverting the first pass's
multiply-shift hash, so chosen groups of ids share a table slot. Then the
smallest id of a group takes the slot and the others are leftovers, and
with the largest id among the losers, the leftover sits in the last slot of
the (sorted) set, next to the filler indices of the leftover list.
"""

import collections

from absl.testing import absltest
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax import similarity
from jitrl_jax import token_sets

TokenSet = token_sets.TokenSet
_METHODS = similarity._ALL_METHODS  # pylint: disable=protected-access
# (S_a, S_b): S from 1 to 256, powers of two and not, S_a < S_b and S_a >
# S_b. A short fixed menu: each pair compiles every kernel twice (jit, and
# op by op), a few seconds on CPU, which is most of this test's time.
_SHAPES = ((2, 1), (7, 9), (256, 100))
_MULT = similarity._MULT  # pylint: disable=protected-access
_MULT_INV = pow(_MULT, -1, 2**32)
_EXTRA = similarity._TABLE_LOG2_EXTRA  # pylint: disable=protected-access
_UNROLLED_MAX = (
    similarity._UNROLLED_MAX_PAIRS  # pylint: disable=protected-access
)
_ID_LIMIT = 2**31  # valid ids: int32 >= 0


def _first_pass_slot(ids, log2_t):
  """The hash kernel's first-pass slot: top log2_t bits of x * _MULT."""
  ids = np.asarray(ids, np.uint64)
  return ((ids * np.uint64(_MULT)) % np.uint64(2**32)) >> np.uint64(32 - log2_t)


def _log2_table(s_a):
  return int(np.ceil(np.log2(s_a))) + _EXTRA


def _ids_in_slot(rng, slot, n, log2_t, used, above=-1):
  """n new ids > above whose first-pass slot is `slot` (hash inverted)."""
  shift = 32 - log2_t
  out = []
  while len(out) < n:
    low = rng.integers(0, 2**shift, 256, dtype=np.uint64)
    y = (np.uint64(slot) << np.uint64(shift)) | low
    x = (y * np.uint64(_MULT_INV)) % np.uint64(2**32)
    for v in x.tolist():
      if above < v < _ID_LIMIT and v not in used and len(out) < n:
        used.add(v)
        out.append(v)
  return out


@st.composite
def _cases(draw):
  """(a_ids, a_counts, b_ids, b_counts): full multisets, a with collisions.

  The test also runs each case as sets (every count 1).
  """
  s_a, s_b = draw(st.sampled_from(_SHAPES))
  # 1 to 3 groups of 2 to 6 ids sharing a slot: 1 to 15 leftovers, so
  # both the direct compares (<= 4) and the further passes run.
  groups = draw(st.lists(st.integers(2, 6), min_size=1, max_size=3))
  last_loses = draw(st.booleans())  # a's largest id is in the last group.
  rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
  log2_t = _log2_table(s_a)
  num_slots = 2**log2_t
  used = set()
  grouped, slots = [], []
  for g in groups:
    g = min(g, s_a - sum(map(len, grouped)))  # what still fits in a.
    if g < 2:
      break
    slot = int(rng.integers(0, num_slots))
    grouped.append(_ids_in_slot(rng, slot, g, log2_t, used))
    slots.append(slot)
  flat = [x for group in grouped for x in group]
  singles = []
  while len(flat) + len(singles) < s_a:
    slot = int(rng.integers(0, num_slots))
    singles += _ids_in_slot(rng, slot, 1, log2_t, used)
  if last_loses and grouped:
    # Swap the last group's largest id for one above every other id.
    group = grouped[-1]
    top = max(flat + singles)
    (new,) = _ids_in_slot(rng, slots[-1], 1, log2_t, used, above=top)
    flat[flat.index(max(group))] = new
  a_ids = np.sort(np.asarray(flat + singles, np.int64))
  # b: some of a's ids (its colliding ones first, the largest first: the
  # one in a's last slot when last_loses), ids that share a slot of a
  # without being in a (decoys: the table's stored id must be compared),
  # and fresh ids.
  n_shared = min(s_a, s_b) - draw(st.integers(0, min(s_a, s_b)))
  shared = sorted(flat, reverse=True) + rng.permutation(singles).tolist()
  shared = shared[:n_shared]
  n_decoys = draw(st.integers(0, s_b - n_shared))
  a_slots = _first_pass_slot(a_ids, log2_t).tolist()
  decoys = []
  for _ in range(n_decoys):
    slot = a_slots[int(rng.integers(0, s_a))]
    decoys += _ids_in_slot(rng, slot, 1, log2_t, used)
  fresh = []
  while n_shared + n_decoys + len(fresh) < s_b:
    fresh += _ids_in_slot(rng, int(rng.integers(0, num_slots)), 1, log2_t, used)
  b_ids = np.sort(np.asarray(shared + decoys + fresh, np.int64))
  # Counts 1 to 3, or b's above a's: an id of a counted twice would then
  # show, min(2 ca, cb) != min(ca, cb).
  b_heavier = draw(st.booleans())
  b_counts = rng.integers(1, 4, s_b) + (3 if b_heavier else 0)
  return a_ids, rng.integers(1, 4, s_a), b_ids, b_counts


def _oracle(a_ids, a_counts, b_ids, b_counts):
  """sum_x min(ca, cb) / sum_x max(ca, cb) with collections.Counter."""
  ca = collections.Counter(dict(zip(a_ids.tolist(), a_counts.tolist())))
  cb = collections.Counter(dict(zip(b_ids.tolist(), b_counts.tolist())))
  union = sum((ca | cb).values())
  return sum((ca & cb).values()) / union if union else 0.0


def _methods_for(a, b):
  pairs = a.ids.shape[0] * b.ids.shape[0]
  return tuple(m for m in _METHODS if m != "unrolled" or pairs <= _UNROLLED_MAX)


def _all_methods(a, b):
  return jnp.stack(
      [similarity.jaccard(a, b, method=m) for m in _methods_for(a, b)]
  )


_all_methods_jit = jax.jit(_all_methods)


def _token_set(ids, counts):
  return TokenSet(np.asarray(ids, np.int32), np.asarray(counts, np.float32))


# The brief's case: 0 and 89 collide for S_a = 2; 89 is the leftover, in
# the last slot.
_TWO_IDS = (np.array([0, 89]), np.array([1, 1]), np.array([89]), np.array([2]))


class OracleTest(absltest.TestCase):

  def test_method_list(self):
    # A new exact kernel belongs in this test too.
    self.assertCountEqual(_METHODS, ("hash", "search", "dense", "unrolled"))

  def test_cases_collide_in_the_first_pass(self):
    # The generator does what it says: ids of one group share a slot.
    rng = np.random.default_rng(0)
    for s_a in (2, 7, 256):
      log2_t = _log2_table(s_a)
      ids = _ids_in_slot(rng, 5, 6, log2_t, set())
      np.testing.assert_array_equal(_first_pass_slot(ids, log2_t), 5)
      self.assertTrue(all(0 <= x < _ID_LIMIT for x in ids))

  @hypothesis.given(_cases())
  @hypothesis.example(_TWO_IDS)
  @hypothesis.settings(
      max_examples=25,
      deadline=None,
      suppress_health_check=[hypothesis.HealthCheck.too_slow],
  )
  def test_every_method_matches_counter_oracle(self, case):
    a_ids, a_counts, b_ids, b_counts = case
    ones_a, ones_b = np.ones_like(a_counts), np.ones_like(b_counts)
    for form, ca, cb in (
        ("multiset", a_counts, b_counts),
        ("set", ones_a, ones_b),
    ):
      a, b = _token_set(a_ids, ca), _token_set(b_ids, cb)
      want = _oracle(a_ids, ca, b_ids, cb)
      methods = _methods_for(a, b)
      with jax.disable_jit():  # eagerly, op by op (loops in Python too)
        eager = _all_methods(a, b)
      jitted = _all_methods_jit(a, b)
      for name, got in (("eager", eager), ("jit", jitted)):
        for method, value in zip(methods, np.asarray(got)):
          np.testing.assert_allclose(
              value, want, rtol=1e-6, err_msg=f"{method}, {form}, {name}"
          )


if __name__ == "__main__":
  absltest.main()
