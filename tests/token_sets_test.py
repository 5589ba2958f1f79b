"""Tests for jitrl_jax.token_sets."""

import collections
import os
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax import token_sets

PAD = token_sets.PAD
_SETTINGS = hypothesis.settings(max_examples=50, deadline=None)


class StableHashTest(parameterized.TestCase):

  # Values computed once, independently of this module, with coreutils:
  #   printf '%s' "$s" | b2sum -l 64   -> 8-byte digest as hex
  #   int.from_bytes(bytes.fromhex(hex), "little") % (2**31 - 1)
  @parameterized.parameters(
      ("north", 848780641),
      ("open mailbox", 826396821),
      ("west of house", 13344685),
      ("kitchen->attic", 1839790975),
      ("café", 89234366),
      ("", 1090886095),
  )
  def test_known_values(self, text, expected):
    self.assertEqual(token_sets.stable_hash(text), expected)

  def test_independent_of_python_hash_seed(self):
    code = (
        "from jitrl_jax.token_sets import stable_hash;"
        "print(stable_hash('open mailbox'), hash('open mailbox'))"
    )
    outs = []
    for seed in ("1", "2"):
      env = dict(os.environ, PYTHONHASHSEED=seed, JAX_PLATFORMS="cpu")
      out = subprocess.run(
          [sys.executable, "-c", code],
          env=env,
          check=True,
          capture_output=True,
          text=True,
      ).stdout.split()
      outs.append(out)
    self.assertEqual(outs[0][0], "826396821")
    self.assertEqual(outs[1][0], "826396821")
    self.assertNotEqual(outs[0][1], outs[1][1])  # Python's hash is salted.

  @hypothesis.given(st.text(max_size=30))
  @_SETTINGS
  def test_range(self, text):
    h = token_sets.stable_hash(text)
    self.assertGreaterEqual(h, 0)
    self.assertLess(h, 2**31 - 1)


class WordsTest(parameterized.TestCase):

  def test_lowercase_and_whitespace(self):
    self.assertEqual(
        token_sets.words("  Open\tthe MAILBOX\nnow "),
        ["open", "the", "mailbox", "now"],
    )

  def test_reference_filter_drops_punctuated_words(self):
    text = "You are in the Kitchen. Path: kitchen->attic, cellar 2nd"
    self.assertEqual(
        token_sets.words(text),
        [
            "you",
            "are",
            "in",
            "the",
            "kitchen.",
            "path:",
            "kitchen->attic,",
            "cellar",
            "2nd",
        ],
    )
    # "kitchen." "path:" and "kitchen->attic," all contain punctuation.
    self.assertEqual(
        token_sets.words(text, reference_filter=True),
        ["you", "are", "in", "the", "cellar", "2nd"],
    )


class NgramTest(parameterized.TestCase):

  def test_bigrams(self):
    ids = token_sets.word_ngram_ids("Open the Mailbox now", 2)
    h = token_sets.stable_hash
    # 4 words -> 3 bigrams, joined by one space after lowercasing.
    np.testing.assert_array_equal(
        ids, [h("open the"), h("the mailbox"), h("mailbox now")]
    )
    self.assertEqual(ids.dtype, np.int32)

  def test_short_text_falls_back_to_unigrams(self):
    h = token_sets.stable_hash
    ids = token_sets.word_ngram_ids("go north", 4)
    np.testing.assert_array_equal(ids, [h("go"), h("north")])

  def test_empty_text(self):
    self.assertEqual(token_sets.word_ngram_ids("   ", 3).shape, (0,))

  def test_exact_length_text(self):
    ids = token_sets.word_ngram_ids("a b c", 3)
    np.testing.assert_array_equal(ids, [token_sets.stable_hash("a b c")])

  def test_rejects_bad_n(self):
    with self.assertRaises(ValueError):
      token_sets.word_ngram_ids("a b", 0)


class TokenSetTest(parameterized.TestCase):

  def test_multiset_by_hand(self):
    # ids 7,3,7,-1,9,7: distinct sorted 3,7,9 with counts 1,3,1; size 5 pads
    # two slots with PAD and count 0.
    ts = token_sets.token_set([7, 3, 7, -1, 9, 7], 5)
    np.testing.assert_array_equal(ts.ids, [3, 7, 9, PAD, PAD])
    np.testing.assert_array_equal(ts.counts, [1, 3, 1, 0, 0])
    self.assertEqual(ts.ids.dtype, np.int32)
    self.assertEqual(ts.counts.dtype, np.float32)

  def test_set_form(self):
    ts = token_sets.token_set([7, 3, 7], 4, multiset=False)
    np.testing.assert_array_equal(ts.ids, [3, 7, PAD, PAD])
    np.testing.assert_array_equal(ts.counts, [1, 1, 0, 0])

  def test_truncation_keeps_smallest(self):
    ts = token_sets.token_set([50, 10, 40, 20, 30, 10], 3)
    np.testing.assert_array_equal(ts.ids, [10, 20, 30])
    np.testing.assert_array_equal(ts.counts, [2, 1, 1])

  def test_empty(self):
    ts = token_sets.token_set([], 3)
    np.testing.assert_array_equal(ts.ids, [PAD] * 3)
    np.testing.assert_array_equal(ts.counts, [0] * 3)

  def test_text_token_set_oracle(self):
    text = "go north go north go south"
    ts = token_sets.text_token_set(text, n=2, size=8)
    # bigrams: "go north" x2, "north go" x2, "go south" x1.
    expected = collections.Counter(
        token_sets.stable_hash(g)
        for g in ["go north", "north go", "go north", "north go", "go south"]
    )
    got = {int(i): float(c) for i, c in zip(ts.ids, ts.counts) if i != PAD}
    self.assertEqual(got, {k: float(v) for k, v in expected.items()})
    self.assertEqual(list(ts.ids[:3]), sorted(expected))

  def test_stack(self):
    a = token_sets.token_set([1, 2], 3)
    b = token_sets.token_set([5], 3)
    s = token_sets.stack_token_sets([a, b])
    chex.assert_shape([s.ids, s.counts], (2, 3))
    np.testing.assert_array_equal(s.ids, [[1, 2, PAD], [5, PAD, PAD]])


class _HFStyle:

  def encode(self, text, add_special_tokens=True):
    del add_special_tokens
    return [len(w) for w in text.split()]


class _TokenizersStyle:

  class _Encoding:

    def __init__(self, ids):
      self.ids = ids

  def encode(self, text):
    return self._Encoding([len(w) for w in text.split()])


class TokenizerTokenSetTest(parameterized.TestCase):

  @parameterized.parameters(_HFStyle, _TokenizersStyle)
  def test_tokenizer_ids(self, cls):
    # word lengths 2,3,2,5 -> ids {2: 2, 3: 1, 5: 1}.
    ts = token_sets.tokenizer_token_set(cls(), "go the up north", size=4)
    np.testing.assert_array_equal(ts.ids, [2, 3, 5, PAD])
    np.testing.assert_array_equal(ts.counts, [2, 1, 1, 0])


class AsTokenSetTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_by_hand(self):
    f = self.variant(lambda x: token_sets.as_token_set(x, size=3))
    ts = f(jnp.array([5, 3, -1, 5, 7, 3, 5], jnp.int32))
    # distinct 3 (x2), 5 (x3), 7 (x1); PAD ignored.
    np.testing.assert_array_equal(ts.ids, [3, 5, 7])
    np.testing.assert_array_equal(ts.counts, [2, 3, 1])

  @chex.variants(with_jit=True, without_jit=True)
  def test_set_form_and_padding(self):
    f = self.variant(
        lambda x: token_sets.as_token_set(x, size=5, multiset=False)
    )
    ts = f(jnp.array([5, 3, -1, 5], jnp.int32))
    np.testing.assert_array_equal(ts.ids, [3, 5, PAD, PAD, PAD])
    np.testing.assert_array_equal(ts.counts, [1, 1, 0, 0, 0])

  @chex.variants(with_jit=True, without_jit=True)
  def test_all_padding(self):
    f = self.variant(lambda x: token_sets.as_token_set(x, size=2))
    ts = f(jnp.full((4,), PAD, jnp.int32))
    np.testing.assert_array_equal(ts.ids, [PAD, PAD])
    np.testing.assert_array_equal(ts.counts, [0, 0])

  @hypothesis.given(
      st.lists(st.integers(-1, 30), min_size=1, max_size=24),
      st.integers(1, 12),
      st.booleans(),
  )
  @_SETTINGS
  def test_matches_host_token_set(self, ids, size, multiset):
    # Jitted once per (length, size, multiset) shape.
    got = jax.jit(
        token_sets.as_token_set, static_argnames=("size", "multiset")
    )(jnp.asarray(ids, jnp.int32), size=size, multiset=multiset)
    want = token_sets.token_set(ids, size, multiset=multiset)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.counts, want.counts)

  def test_vmapped_twin(self):
    rng = np.random.default_rng(0)
    batch = rng.integers(-1, 10, size=(6, 12)).astype(np.int32)
    got = jax.vmap(lambda x: token_sets.as_token_set(x, size=8))(batch)
    chex.assert_shape([got.ids, got.counts], (6, 8))
    for b in range(6):
      want = token_sets.token_set(batch[b], 8)
      np.testing.assert_array_equal(got.ids[b], want.ids)
      np.testing.assert_array_equal(got.counts[b], want.counts)

  def test_compiles_once(self):
    @jax.jit
    @chex.assert_max_traces(n=1)
    def f(x):
      return token_sets.as_token_set(x, size=6)

    rng = np.random.default_rng(1)
    for _ in range(3):
      f(jnp.asarray(rng.integers(-1, 20, size=(10,)), jnp.int32))


if __name__ == "__main__":
  absltest.main()
