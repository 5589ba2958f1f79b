"""Tests for jitrl_jax.models.scoring.

One-pass candidate scoring must equal scoring each candidate by its own full
forward pass (the real SmolLM2 model, short prompts), with ragged candidate
lengths, padding and masked candidates; the batched and vmapped forms must
agree on a tiny random model.
"""

import dataclasses

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tests import tiny_llama
from jitrl_jax.models import loading
from jitrl_jax.models import scoring

TINY = tiny_llama.TINY
FORWARD_LEN = 48  # every reference forward pass is padded to this length


@jax.jit
def forward_logprobs(graphdef, state, tokens, length):
  """log pi over one right-padded sequence [L]: [L, V]."""
  return jax.nn.log_softmax(
      tiny_llama.forward_logits(graphdef, state, tokens, length), axis=-1
  )


def separate_scores(graphdef, state, prompt, candidates, normalise=False):
  """The oracle: one full forward pass per candidate."""
  out = []
  for cand in candidates:
    seq = np.zeros((FORWARD_LEN,), np.int32)
    full = list(prompt) + list(cand)
    seq[: len(full)] = full
    logp = np.asarray(
        forward_logprobs(graphdef, state, jnp.asarray(seq), len(full))
    )
    total = sum(logp[len(prompt) - 1 + t, tok] for t, tok in enumerate(cand))
    out.append(total / len(cand) if normalise else total)
  return np.asarray(out, np.float32)


def tiny_model(seed=0):
  return tiny_llama.random_llama(TINY, seed=seed)


class RealModelScoringTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.lm = loading.load_gguf()
    cls.graphdef, cls.state = nnx.split(cls.lm.model)
    tok = cls.lm.tokenizer
    cls.prompt = tok.encode(
        "You are in a kitchen. There is a fridge here. Exits: north.\n>",
        add_special_tokens=False,
    )
    texts = [" go north", " open the fridge", " eat", " take the rusty key"]
    cls.candidates = [tok.encode(t, add_special_tokens=False) for t in texts]

  @parameterized.parameters(False, True)
  def test_one_pass_equals_separate_forwards(self, normalise):
    ids, lens = scoring.pad_candidates(self.candidates)
    # 4 real candidates padded to the bucket of 4; T padded to 8.
    chex.assert_shape(ids, (4, 8))
    got = scoring.score_candidates(
        self.lm, self.prompt, len(self.prompt), ids, lens, normalise=normalise
    )
    want = separate_scores(
        self.graphdef, self.state, self.prompt, self.candidates, normalise
    )
    chex.assert_shape(got, (4,))
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=1e-5)

  def test_masked_candidates_are_minus_inf(self):
    # 3 real candidates in the [4, 8] bucket (same compilation as above);
    # row 3 is padding, row 1 is masked by the caller.
    ids, lens = scoring.pad_candidates(self.candidates[:3], num_candidates=4)
    lens[1] = 0
    got = np.asarray(
        scoring.score_candidates(
            self.lm.model, self.prompt, len(self.prompt), ids, lens
        )
    )
    self.assertEqual(got.shape, (4,))
    self.assertTrue(np.all(np.isneginf(got[[1, 3]])))
    want = separate_scores(
        self.graphdef,
        self.state,
        self.prompt,
        [self.candidates[i] for i in (0, 2)],
    )
    np.testing.assert_allclose(got[[0, 2]], want, atol=1e-4, rtol=1e-5)

  def test_empty_candidate_list(self):
    with self.assertRaisesRegex(ValueError, "empty"):
      scoring.pad_candidates([])
    with self.assertRaisesRegex(ValueError, "non-empty candidate"):
      scoring.score_candidates(
          self.lm, self.prompt, len(self.prompt), np.zeros((0, 4)), []
      )

  def test_prompt_longer_than_context(self):
    n = self.lm.config.max_position_embeddings
    with self.assertRaisesRegex(ValueError, "longer than the context"):
      scoring.score_candidates(
          self.lm, np.zeros((n,), np.int32), n, [[1, 2]], [2]
      )


class TinyScoringTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model = tiny_model()
    cls.graphdef, cls.state = nnx.split(cls.model)
    rng = np.random.default_rng(0)
    cls.prompts = [rng.integers(0, 50, n).tolist() for n in (5, 11)]
    cls.cands = [
        [rng.integers(0, 50, n).tolist() for n in (1, 3, 2)],
        [rng.integers(0, 50, n).tolist() for n in (4, 1, 3)],
    ]

  def test_bucket_helpers(self):
    self.assertEqual(scoring.bucket_size(1, (4, 8)), 4)
    self.assertEqual(scoring.bucket_size(8, (4, 8)), 8)
    self.assertEqual(scoring.bucket_size(9, (4, 8)), 16)
    self.assertEqual(scoring.bucket_size(17, (4, 8)), 24)
    ids, n = scoring.pad_prompt([7, 8, 9])
    self.assertEqual((ids.shape, n), ((64,), 3))
    np.testing.assert_array_equal(ids[:4], [7, 8, 9, 0])
    ids, lens = scoring.pad_candidates([[1], [2, 3, 4, 5, 6]], pad_id=-1)
    np.testing.assert_array_equal(lens, [1, 5, 0, 0])
    chex.assert_shape(ids, (4, 8))
    np.testing.assert_array_equal(ids[0, :2], [1, -1])
    with self.assertRaisesRegex(ValueError, "no tokens"):
      scoring.pad_candidates([[1], []])

  def test_layout_mask(self):
    # Prompt of 2, 2 candidates of 2 tokens: [p0 p1 | a0 a1 | b0 b1].
    mask = np.asarray(scoring.candidate_layout_mask(2, 2, 2)).astype(int)
    np.testing.assert_array_equal(
        mask,
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 0, 0, 1, 0],
            [1, 1, 0, 0, 1, 1],
        ],
    )

  def padded(self):
    prompts = np.zeros((2, 16), np.int32)
    lens = np.zeros((2,), np.int32)
    cands = np.full((2, 4, 4), -1, np.int32)  # -1 padding is harmless
    cand_lens = np.zeros((2, 4), np.int32)
    for b in range(2):
      prompts[b, : len(self.prompts[b])] = self.prompts[b]
      lens[b] = len(self.prompts[b])
      for c, cand in enumerate(self.cands[b]):
        cands[b, c, : len(cand)] = cand
        cand_lens[b, c] = len(cand)
    return prompts, lens, cands, cand_lens

  @chex.variants(with_jit=True)
  def test_batch_equals_separate_forwards(self):
    prompts, lens, cands, cand_lens = self.padded()
    fn = self.variant(scoring.score_candidates_batch)
    got = np.asarray(
        fn(self.graphdef, self.state, prompts, lens, cands, cand_lens)
    )
    chex.assert_shape(got, (2, 4))
    for b in range(2):
      want = separate_scores(
          self.graphdef, self.state, self.prompts[b], self.cands[b]
      )
      np.testing.assert_allclose(got[b, :3], want, atol=1e-4, rtol=1e-5)
      self.assertTrue(np.isneginf(got[b, 3]))

  def test_vmap_twin_and_unbatched(self):
    prompts, lens, cands, cand_lens = self.padded()
    batched = jax.jit(scoring.score_candidates_batch)(
        self.graphdef, self.state, prompts, lens, cands, cand_lens
    )
    vmapped = jax.jit(
        jax.vmap(scoring.score_candidates_fn, in_axes=(None, None, 0, 0, 0, 0))
    )(self.graphdef, self.state, prompts, lens, cands, cand_lens)
    np.testing.assert_allclose(vmapped, batched, atol=1e-5)
    single = jax.jit(scoring.score_candidates_fn)(
        self.graphdef, self.state, prompts[1], lens[1], cands[1], cand_lens[1]
    )
    np.testing.assert_allclose(single, batched[1], atol=1e-5)

  def test_prompt_padding_invariance(self):
    # The same prompt padded to 16 or 32 scores the same.
    prompts, lens, cands, cand_lens = self.padded()
    f = jax.jit(scoring.score_candidates_fn)
    a = f(
        self.graphdef, self.state, prompts[0], lens[0], cands[0], cand_lens[0]
    )
    longer = np.concatenate([prompts[0], np.full((16,), 7, np.int32)])
    b = f(self.graphdef, self.state, longer, lens[0], cands[0], cand_lens[0])
    np.testing.assert_allclose(a, b, atol=1e-5)

  def test_one_compile_per_bucket(self):
    # pylint: disable=protected-access
    jitted = scoring._score_batch_jit
    before = jitted._cache_size()
    for b in range(2):
      for cands in (self.cands[b], self.cands[b][:2]):
        ids, lens = scoring.pad_candidates(cands)
        scoring.score_candidates(
            self.model, self.prompts[b], len(self.prompts[b]), ids, lens
        )
    # Prompts of 5 and 11 tokens share the 64 bucket; 2 or 3 candidates of
    # up to 4 tokens share the [4, 4] bucket: one compilation in all.
    self.assertEqual(jitted._cache_size() - before, 1)

  def test_bad_lengths(self):
    with self.assertRaisesRegex(ValueError, "prompt_len"):
      scoring.score_candidates(self.model, [1, 2], 0, [[1]], [1])
    with self.assertRaisesRegex(ValueError, "candidate_lengths"):
      scoring.score_candidates(self.model, [1, 2], 2, [[1]], [2])
    with self.assertRaisesRegex(ValueError, "longer than the context"):
      scoring.score_candidates(self.model, list(range(95)), 95, [[1, 2]], [2])


class ChunkedLogSumExpTest(parameterized.TestCase):
  """target_log_probs within a memory budget equals the one-shot form."""

  def test_vocab_chunk(self):
    self.assertEqual(scoring.vocab_chunk(4, 50, 4 * 4 * 50), 50)  # fits
    self.assertEqual(scoring.vocab_chunk(4, 50, 4 * 4 * 12), 10)  # 10 | 50
    self.assertEqual(scoring.vocab_chunk(4, 50, 1), 1)
    self.assertEqual(scoring.vocab_chunk(256, 262144, 256 * 2**20), 262144)
    self.assertEqual(scoring.vocab_chunk(257, 262144, 256 * 2**20), 131072)

  @parameterized.parameters(
      dict(tied=True, cap=None),
      dict(tied=False, cap=None),
      dict(tied=True, cap=3.0),
  )
  def test_chunks_equal_one_shot(self, tied, cap):
    config = dataclasses.replace(
        TINY, tie_word_embeddings=tied, final_logit_softcap=cap
    )
    model = tiny_llama.random_llama(config, seed=3)
    rng = np.random.default_rng(0)
    hidden = jnp.asarray(rng.normal(size=(2, 6, TINY.hidden_size)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, TINY.vocab_size, (2, 6)), jnp.int32)
    want = jnp.take_along_axis(
        jax.nn.log_softmax(model.unembed(hidden), axis=-1),
        targets[..., None],
        axis=-1,
    )[..., 0]
    for budget in (4 * 12 * 5, 4 * 12 * 25, 1):  # chunks of 5, 25, 1
      got = scoring.target_log_probs(
          model, hidden, targets, max_logits_bytes=budget
      )
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

  def test_candidate_scores_within_a_budget(self):
    graphdef, state = nnx.split(tiny_llama.random_llama(TINY, seed=1))
    rng = np.random.default_rng(1)
    prompts = jnp.asarray(rng.integers(0, TINY.vocab_size, (2, 16)), jnp.int32)
    cands = jnp.asarray(rng.integers(0, TINY.vocab_size, (2, 3, 4)), jnp.int32)
    lens = jnp.asarray([[4, 2, 0], [1, 3, 4]], jnp.int32)
    plens = jnp.asarray([9, 16], jnp.int32)
    full = scoring.candidate_token_logprobs_batch(
        graphdef, state, prompts, plens, cands, lens
    )
    small = scoring.candidate_token_logprobs_batch(
        graphdef, state, prompts, plens, cands, lens, max_logits_bytes=400
    )
    np.testing.assert_allclose(small, full, rtol=1e-5, atol=1e-5)


if __name__ == "__main__":
  absltest.main()
