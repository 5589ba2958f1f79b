"""Packed candidate scoring and prefix reuse against separate full forwards.

`packing.packed_score_fn` lays the prompt's and the candidates' real tokens
end to end (block-causal segments) and may start after a reused prefix
(`packing.encode_prefix`); every candidate's log-probability must equal the
one a full forward of prefix + prompt + candidate gives (1e-4), whatever the
lengths, for one candidate or many, on both sides of a bucket boundary, and
on a model with sliding-window layers whose window the prompt exceeds.
"""

import dataclasses

from absl.testing import absltest
from absl.testing import parameterized
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax.models import packing
from jitrl_jax.models import scoring
from tests import tiny_llama

TINY = dataclasses.replace(tiny_llama.TINY, max_position_embeddings=256)
# Gemma-like: QK-norm, sandwich norms, a local layer whose window (5) the
# prompts exceed, a soft cap.
LOCAL = dataclasses.replace(
    TINY,
    num_layers=2,
    qk_norm=True,
    sandwich_norms=True,
    sliding_window=5,
    sliding_layers=(True, False),
    local_rope_theta=100.0,
    final_logit_softcap=5.0,
    mlp_activation="gelu_tanh",
)


def _reference(graphdef, state, seq_prefix, cands):
  """log pi(cand | seq_prefix) for each candidate, by full forwards."""
  out = []
  for cand in cands:
    seq = np.asarray(list(seq_prefix) + list(cand), np.int32)
    logits = np.asarray(
        tiny_llama.forward_logits(graphdef, state, seq, len(seq)), np.float64
    )
    logp = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
    out.append(
        sum(logp[len(seq_prefix) - 1 + j, a] for j, a in enumerate(cand))
    )
  return np.asarray(out)


class PackedScoringTest(parameterized.TestCase):

  def _check(self, config, *, prefix_len, prompt_len, lengths, seed=0):
    model = tiny_llama.random_llama(config, seed=seed)
    graphdef, state = nnx.split(model)
    rng = np.random.default_rng(seed + 1)
    v = config.vocab_size
    head = rng.integers(1, v, prefix_len).tolist()
    prompt = rng.integers(1, v, prompt_len).tolist()
    cands = [rng.integers(1, v, n).tolist() for n in lengths]
    want = _reference(graphdef, state, head + prompt, cands)
    ids, lens = scoring.pad_candidates(cands)
    n, k = packing.packed_layout(prompt_len, int(lens.sum()))
    padded, _ = scoring.pad_prompt(prompt, buckets=(64, 128, 256))
    prefix = (
        packing.encode_prefix(graphdef, state, jnp.asarray(head, jnp.int32))
        if prefix_len
        else None
    )
    got = jax.jit(
        packing.packed_score_fn, static_argnames=("total_len", "num_targets")
    )(
        graphdef,
        state,
        padded,
        np.int32(prompt_len),
        ids,
        lens,
        total_len=n,
        num_targets=k,
        prefix=prefix,
    )
    got = np.asarray(got)
    np.testing.assert_allclose(got[: len(cands)], want, atol=1e-4, rtol=1e-5)
    self.assertTrue(np.all(np.isneginf(got[len(cands) :])))
    return n, k

  @parameterized.named_parameters(
      ("ragged", 0, 20, (1, 5, 2, 7, 3)),
      ("one_candidate", 0, 9, (4,)),
      ("many_candidates", 0, 12, tuple(1 + i % 6 for i in range(40))),
      ("prefix", 7, 20, (1, 5, 2, 7, 3)),
      ("prefix_one_token_prompt", 11, 1, (2, 3)),
  )
  def test_equals_full_forwards(self, prefix_len, prompt_len, lengths):
    self._check(
        TINY, prefix_len=prefix_len, prompt_len=prompt_len, lengths=lengths
    )

  @parameterized.named_parameters(
      ("no_prefix", 0),
      ("prefix", 6),
  )
  def test_sliding_window_layers(self, prefix_len):
    self._check(
        LOCAL, prefix_len=prefix_len, prompt_len=14, lengths=(3, 1, 6, 2)
    )

  def test_prompt_on_both_sides_of_a_bucket_boundary(self):
    # Prompt + candidates = 32 fits the first bucket; one more token needs
    # the next.
    lengths = (3, 5)
    small = self._check(TINY, prefix_len=0, prompt_len=24, lengths=lengths)
    large = self._check(TINY, prefix_len=0, prompt_len=25, lengths=lengths)
    self.assertEqual(small[0], 32)
    self.assertEqual(large[0], 64)

  def test_memory_candidates_beyond_the_host_count_fit_the_extra_room(self):
    # K and N sized with room for device-side candidates (extra_tokens):
    # masked rows cost nothing, and every real row is scored.
    n, k = packing.packed_layout(10, 12, extra_tokens=16)
    self.assertGreaterEqual(n, 10 + 12 + 16)
    self.assertGreaterEqual(k, 28)

  def test_layout_buckets(self):
    self.assertEqual(packing.step_bucket(1), 32)
    self.assertEqual(packing.step_bucket(512), 512)
    self.assertEqual(packing.step_bucket(513), 576)
    self.assertEqual(packing.step_bucket(1025), 1152)
    self.assertEqual(packing.step_bucket(129, packing.PACKED_TARGET_STEPS), 160)
    # Past 256 tokens the padding is at most 1/8 of the real length.
    for n in range(256, 3000, 7):
      self.assertLessEqual(packing.step_bucket(n), n * 1.125)


if __name__ == "__main__":
  absltest.main()
