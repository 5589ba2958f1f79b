"""Tests for jitrl_jax.models.llama.

Parity with the reference implementation (transformers + torch on the same
GGUF file, tests/testdata/reference_logits.npz written by
tools/make_reference_logits.py), KV-cache consistency, ragged batches and
masks on a tiny random model.
"""

import dataclasses
import os

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jitrl_jax.models import llama as llama_lib
from jitrl_jax.models import rope as rope_lib
from tests import tiny_llama
from jitrl_jax.models import loading

FIXTURE = os.path.join(
    os.path.dirname(__file__), "testdata", "reference_logits.npz"
)
TINY = llama_lib.LlamaConfig(
    vocab_size=61,
    hidden_size=32,
    intermediate_size=48,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    rope_theta=500.0,
    max_position_embeddings=64,
)

apply = jax.jit(llama_lib.apply, static_argnames="return_hidden")


def tiny_model(config=TINY, seed=0):
  """A Llama with random numpy weights (no per-op compiles at set-up)."""
  return tiny_llama.random_llama(config, seed=seed)


class ReferenceParityTest(parameterized.TestCase):
  """The embedded SmolLM2 GGUF in Flax against transformers + torch."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.lm = loading.load_gguf()
    cls.ref = dict(np.load(FIXTURE))
    cls.graphdef, cls.state = nnx.split(cls.lm.model)
    # All prompts in one right-padded batch: one compilation.
    lengths = cls.ref["lengths"]
    ids = np.where(cls.ref["token_ids"] >= 0, cls.ref["token_ids"], 0)
    n, l = ids.shape
    positions = np.broadcast_to(np.arange(l), (n, l))
    mask = np.arange(l)[None, :] < lengths[:, None]
    logits, _ = apply(
        cls.graphdef,
        cls.state,
        jnp.asarray(ids),
        jnp.asarray(positions),
        attention_mask=jnp.asarray(mask),
    )
    cls.last_logits = np.asarray(logits)[np.arange(n), lengths - 1]  # [n, V]

  def test_config_read_from_metadata(self):
    c = self.lm.config
    self.assertEqual(
        (c.num_layers, c.num_heads, c.num_kv_heads, c.hidden_size),
        (30, 9, 3, 576),
    )
    self.assertEqual((c.intermediate_size, c.vocab_size), (1536, 49152))
    self.assertEqual(c.head_dim, 64)
    self.assertAlmostEqual(c.rope_theta, 1e5)
    self.assertTrue(c.tie_word_embeddings)

  def test_tokenizer_matches_reference(self):
    for text, ids, n in zip(
        self.ref["texts"], self.ref["token_ids"], self.ref["lengths"]
    ):
      got = self.lm.tokenizer.encode(str(text), add_special_tokens=False)
      self.assertEqual(got, ids[:n].tolist(), msg=str(text))

  def test_logits_match_reference(self):
    max_diff = 0.0
    for i in range(len(self.ref["lengths"])):
      ours = self.last_logits[i]
      ref_ids = self.ref["top_ids"][i]
      diff = np.abs(ours[ref_ids] - self.ref["top_logits"][i]).max()
      max_diff = max(max_diff, float(diff))
      np.testing.assert_array_equal(np.argsort(-ours)[:5], ref_ids[:5])
      m = ours.max()
      lse = m + np.log(np.exp(ours - m).sum())
      np.testing.assert_allclose(
          [m, ours.mean(), ours.std(), lse],
          self.ref["stats"][i],
          atol=1e-3,
      )
    # Measured: about 4e-5 (transformers 5.12 + torch 2.13, float32).
    self.assertLessEqual(max_diff, 1e-3)


class TinyLlamaTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model = tiny_model()
    cls.graphdef, cls.state = nnx.split(cls.model)
    rng = np.random.default_rng(0)
    cls.tokens = jnp.asarray(rng.integers(0, TINY.vocab_size, (2, 10)))
    cls.positions = jnp.broadcast_to(jnp.arange(10), (2, 10))

  def full(self, tokens, positions=None, mask=None):
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    return apply(self.graphdef, self.state, tokens, positions, None, mask)[0]

  def test_shapes_and_dtype(self):
    logits, cache = apply(
        self.graphdef, self.state, self.tokens, self.positions
    )
    chex.assert_shape(logits, (2, 10, TINY.vocab_size))
    self.assertEqual(logits.dtype, jnp.float32)
    self.assertIsNone(cache)
    hidden, _ = apply(
        self.graphdef,
        self.state,
        self.tokens,
        self.positions,
        return_hidden=True,
    )
    chex.assert_shape(hidden, (2, 10, TINY.hidden_size))
    unembed = jax.jit(lambda m, h: m.unembed(h))
    np.testing.assert_allclose(
        unembed(self.model, hidden), logits, rtol=1e-5, atol=1e-5
    )

  def test_causal(self):
    # Changing a later token leaves earlier logits unchanged.
    logits = self.full(self.tokens)
    changed = self.tokens.at[:, 7].set((self.tokens[:, 7] + 1) % 61)
    logits2 = self.full(changed)
    np.testing.assert_allclose(logits[:, :7], logits2[:, :7], atol=1e-5)
    self.assertGreater(
        float(jnp.abs(logits[:, 7:] - logits2[:, 7:]).max()), 1e-3
    )

  @parameterized.parameters(1, 3, 4)
  def test_incremental_cache_matches_full(self, chunk):
    logits = self.full(self.tokens)
    cache = llama_lib.init_cache(TINY, 2, 12)
    outs = []
    for start in range(0, 10, chunk):
      sl = slice(start, min(start + chunk, 10))
      out, cache = apply(
          self.graphdef,
          self.state,
          self.tokens[:, sl],
          self.positions[:, sl],
          cache,
      )
      outs.append(out)
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), logits, atol=1e-5)
    np.testing.assert_array_equal(
        cache.valid, jnp.arange(12)[None].repeat(2, 0) < 10
    )

  def test_padding_mask_matches_unpadded(self):
    # Row 1 is right-padded after 6 tokens (pad id -1 is clipped, harmless).
    tokens = self.tokens.at[1, 6:].set(-1)
    mask = jnp.arange(10)[None] < jnp.asarray([[10], [6]])
    logits = self.full(tokens, mask=mask)
    alone = self.full(self.tokens[1:, :6])
    np.testing.assert_allclose(logits[1, :6], alone[0], atol=1e-5)
    self.assertTrue(np.all(np.isfinite(np.asarray(logits))))

  def test_left_padded_cache_matches_unpadded(self):
    # Row 0: 4 pads then 6 tokens at positions 0..5; written to slots 0..5.
    real = self.tokens[0, :6]
    tokens = jnp.concatenate([jnp.zeros((4,), jnp.int32), real])[None]
    positions = jnp.maximum(jnp.arange(10) - 4, 0)[None]
    mask = (jnp.arange(10) >= 4)[None]
    cache = llama_lib.init_cache(TINY, 1, 8)
    logits, cache = apply(
        self.graphdef, self.state, tokens, positions, cache, mask
    )
    alone = self.full(real[None])
    np.testing.assert_allclose(logits[0, 4:], alone[0], atol=1e-5)
    np.testing.assert_array_equal(cache.valid[0], jnp.arange(8) < 6)

  def test_full_mask_equals_default_causal(self):
    l = 10
    causal = jnp.broadcast_to(jnp.tril(jnp.ones((l, l), bool)), (2, l, l))
    np.testing.assert_allclose(
        self.full(self.tokens, mask=causal), self.full(self.tokens), atol=1e-6
    )

  def test_rotary_depends_on_relative_positions(self):
    # Rotary embeddings: only relative positions matter for attention.
    shifted = self.full(self.tokens, self.positions + 5)
    np.testing.assert_allclose(shifted, self.full(self.tokens), atol=1e-4)

  @parameterized.named_parameters(
      (
          "mha_untied_bias",
          dict(
              num_kv_heads=4,
              tie_word_embeddings=False,
              attention_bias=True,
              attention_out_bias=True,
          ),
      ),
      ("mqa", dict(num_kv_heads=1)),
  )
  def test_variants_run_and_cache(self, overrides):
    config = llama_lib.LlamaConfig(**{**TINY.__dict__, **overrides})
    graphdef, state = nnx.split(tiny_model(config))
    logits, _ = apply(graphdef, state, self.tokens, self.positions)
    chex.assert_shape(logits, (2, 10, TINY.vocab_size))
    cache = llama_lib.init_cache(config, 2, 10)
    cached, _ = apply(graphdef, state, self.tokens, self.positions, cache)
    np.testing.assert_allclose(cached, logits, atol=1e-5)

  def test_bfloat16_option(self):
    config = llama_lib.LlamaConfig(**{**TINY.__dict__, "dtype": jnp.bfloat16})
    model = tiny_model(config)
    logits, _ = apply(*nnx.split(model), self.tokens, self.positions)
    self.assertEqual(logits.dtype, jnp.float32)
    self.assertEqual(model.embed[...].dtype, jnp.bfloat16)
    ref, _ = apply(self.graphdef, self.state, self.tokens, self.positions)
    # bfloat16 keeps ~3 significant digits: compare the distributions.
    np.testing.assert_allclose(
        jax.nn.softmax(logits), jax.nn.softmax(ref), atol=0.05
    )

  @parameterized.parameters(True, False)
  def test_chunked_attention_equals_full(self, causal):
    # L = 300 queries: chunks [0, 128), [128, 256), [256, 300).
    rng = np.random.default_rng(0)
    b, l, kvh, g, dh = 2, 300, 2, 3, 8
    s = l if causal else l + 20
    q = jnp.asarray(rng.standard_normal((b, l, kvh, g, dh)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((b, kvh, s, dh)), jnp.float32)
    v = jnp.asarray(rng.standard_normal((b, kvh, s, dh)), jnp.float32)
    mask = jnp.asarray(rng.random((b, l, s)) < 0.7)
    if causal:
      mask &= jnp.tril(jnp.ones((l, s), bool))[None]
    full = jax.jit(llama_lib.attention)(q, k, v, mask)
    chunked = jax.jit(
        lambda *a: llama_lib.chunked_attention(*a, causal=causal)
    )(q, k, v, mask)
    chex.assert_shape(chunked, (b, l, kvh * g * dh))
    np.testing.assert_allclose(chunked, full, atol=1e-5)
    # A plain softmax oracle for one head.
    scores = np.einsum("ld,sd->ls", q[0, :, 1, 2], k[0, 1])
    scores = np.where(mask[0], scores, -np.inf)
    w = np.exp(scores - scores.max(-1, keepdims=True))
    want = (w / w.sum(-1, keepdims=True)) @ np.asarray(v[0, 1])
    head = (1 * g + 2) * dh
    np.testing.assert_allclose(chunked[0, :, head : head + dh], want, atol=1e-5)

  def test_bad_heads(self):
    with self.assertRaisesRegex(ValueError, "multiple"):
      llama_lib.LlamaConfig(**{**TINY.__dict__, "num_kv_heads": 3})

  def test_jit_compiles_once(self):
    @chex.assert_max_traces(n=1)
    def forward(graphdef, state, tokens, positions):
      return llama_lib.apply(graphdef, state, tokens, positions)[0]

    f = jax.jit(forward)
    f(self.graphdef, self.state, self.tokens, self.positions)
    f(self.graphdef, self.state, self.tokens + 1, self.positions)
    # nnx.split again gives an equal graphdef: no retrace.
    graphdef, state = nnx.split(self.model)
    f(graphdef, state, self.tokens, self.positions)


# Every switch of the Gemma 3 family on, with a window of 3 positions.
GEMMA_LIKE = llama_lib.LlamaConfig(
    **{
        **TINY.__dict__,
        "qk_norm": True,
        "sandwich_norms": True,
        "embed_scale": 32**0.5,
        "mlp_activation": "gelu_tanh",
        "query_scale": 0.2,
        "sliding_window": 3,
        "sliding_layers": (True, False),
        "local_rope_theta": 50.0,
        "rope_scaling": llama_lib.RopeScaling("linear", 2.0),
        "final_logit_softcap": 5.0,
    }
)


class LocalLayersTest(parameterized.TestCase):
  """Sliding-window layers and the other family switches (no reference)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    rng = np.random.default_rng(1)
    cls.tokens = jnp.asarray(rng.integers(0, TINY.vocab_size, (2, 12)))
    cls.positions = jnp.broadcast_to(jnp.arange(12), (2, 12))

  @parameterized.parameters(1, 5)
  def test_incremental_cache_matches_full(self, chunk):
    graphdef, state = nnx.split(tiny_model(GEMMA_LIKE))
    logits, _ = apply(graphdef, state, self.tokens, self.positions)
    self.assertLessEqual(float(jnp.abs(logits).max()), 5.0)  # soft cap
    cache = llama_lib.init_cache(GEMMA_LIKE, 2, 16)
    outs = []
    for start in range(0, 12, chunk):
      sl = slice(start, min(start + chunk, 12))
      out, cache = apply(
          graphdef, state, self.tokens[:, sl], self.positions[:, sl], cache
      )
      outs.append(out)
    np.testing.assert_allclose(jnp.concatenate(outs, 1), logits, atol=1e-5)

  def test_window_bounds_the_receptive_field(self):
    # Two local layers of window 3: position p sees tokens p-4 .. p only.
    config = dataclasses.replace(GEMMA_LIKE, sliding_layers=(True, True))
    graphdef, state = nnx.split(tiny_model(config))
    logits, _ = apply(graphdef, state, self.tokens, self.positions)
    changed = self.tokens.at[:, 3].set((self.tokens[:, 3] + 1) % 61)
    logits2, _ = apply(graphdef, state, changed, self.positions)
    diff = np.abs(np.asarray(logits - logits2)).max(axis=(0, 2))  # [L]
    self.assertTrue(np.all(diff[:3] < 1e-6))
    self.assertTrue(np.all(diff[3:8] > 1e-4))
    self.assertTrue(np.all(diff[8:] < 1e-6))
    # The window is in relative positions: a shift changes nothing.
    shifted, _ = apply(graphdef, state, self.tokens, self.positions + 7)
    np.testing.assert_allclose(shifted, logits, atol=1e-4)

  def test_global_layer_sees_everything(self):
    graphdef, state = nnx.split(tiny_model(GEMMA_LIKE))
    logits, _ = apply(graphdef, state, self.tokens, self.positions)
    changed = self.tokens.at[:, 0].set((self.tokens[:, 0] + 1) % 61)
    logits2, _ = apply(graphdef, state, changed, self.positions)
    self.assertGreater(float(jnp.abs(logits - logits2)[:, -1].max()), 1e-4)

  def test_rope_scaling_frequencies(self):
    base = rope_lib.inv_frequencies(16, 10000.0)
    linear = rope_lib.inv_frequencies(
        16, 10000.0, llama_lib.RopeScaling("linear", 4.0)
    )
    np.testing.assert_allclose(linear, base / 4)
    scaling = llama_lib.RopeScaling("llama3", 8.0, 1.0, 4.0, 32)
    got = rope_lib.inv_frequencies(16, 10000.0, scaling)
    wavelen = 2 * np.pi / base
    for f, b, w in zip(got, base, wavelen):
      if w < 32 / 4:  # high frequency: kept
        self.assertAlmostEqual(f, b)
      elif w > 32 / 1:  # low frequency: scaled
        self.assertAlmostEqual(f, b / 8)
      else:  # between: interpolated
        smooth = (32 / w - 1) / (4 - 1)
        self.assertAlmostEqual(f, (1 - smooth) * b / 8 + smooth * b)
    self.assertEqual(int(np.sum((wavelen >= 8) & (wavelen <= 32))), 1)

  def test_bad_configs(self):
    with self.assertRaisesRegex(ValueError, "relu"):
      dataclasses.replace(TINY, mlp_activation="relu")
    with self.assertRaisesRegex(ValueError, "3 entries for 2 layers"):
      dataclasses.replace(TINY, sliding_layers=(True,) * 3, sliding_window=4)
    with self.assertRaisesRegex(ValueError, "sliding_window"):
      dataclasses.replace(TINY, sliding_layers=(True, False))
    with self.assertRaisesRegex(ValueError, "'yarn'"):
      llama_lib.RopeScaling("yarn", 2.0)


if __name__ == "__main__":
  absltest.main()
