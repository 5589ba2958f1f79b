"""Tests for jitrl_jax.models.sampling.

The decode loop on a stub ``tokens_to_logits`` (known sequences, stop ids),
sampling rules, ragged left/right padding and compile counts on a tiny random
model, and greedy decoding of the real SmolLM2 model against step-by-step
argmax without a cache.
"""

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jitrl_jax.models import llama as llama_lib
from tests import tiny_llama
from jitrl_jax.models import loading
from jitrl_jax.models import sampling

V = 10
TINY = llama_lib.LlamaConfig(
    vocab_size=40,
    hidden_size=32,
    intermediate_size=48,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    max_position_embeddings=128,
)


def tiny_model(seed=0):
  return tiny_llama.random_llama(TINY, seed=seed, scale=0.5)


def stub_tokens_to_logits(tokens, positions, cache):
  """Next token = (token + 1) mod V, with certainty. Cache counts calls."""
  del positions
  logits = 10.0 * jax.nn.one_hot((tokens + 1) % V, V)
  return logits, cache + 1


def add_bias(step, logits, state):
  """logits_fn: adds the caller's bias [V] (state.logits_fn_state)."""
  del step
  return logits + state.logits_fn_state


class DecodeStubTest(parameterized.TestCase):

  def run_stub(self, first_tokens, **kwargs):
    first = 10.0 * jax.nn.one_hot(jnp.asarray(first_tokens), V)
    b = len(first_tokens)
    return jax.jit(
        lambda f, k: sampling.decode(
            stub_tokens_to_logits,
            f,
            jnp.zeros((), jnp.int32),
            jnp.full((b,), 3, jnp.int32),
            k,
            **kwargs,
        )
    )(first, jax.random.key(0))

  def test_known_sequence(self):
    out = self.run_stub([2, 7], max_new_tokens=5)
    # Row 0: 2 3 4 5 6 ; row 1: 7 8 9 0 1 (mod 10).
    np.testing.assert_array_equal(
        out.tokens, [[2, 3, 4, 5, 6], [7, 8, 9, 0, 1]]
    )
    np.testing.assert_array_equal(out.lengths, [5, 5])

  def test_stop_ids_and_padding(self):
    out = self.run_stub([2, 7], max_new_tokens=6, stop_ids=(4, 9), pad_id=-1)
    # Row 0 stops at 4 (kept), row 1 at 9; the stop is counted in lengths.
    np.testing.assert_array_equal(
        out.tokens, [[2, 3, 4, -1, -1, -1], [7, 8, 9, -1, -1, -1]]
    )
    np.testing.assert_array_equal(out.lengths, [3, 3])

  def test_logits_fn_sees_step_and_state(self):
    def logits_fn(step, logits, state):
      chex.assert_shape(state.tokens, (1, 4))
      # From step 2 on, force token 0.
      return jnp.where(step >= 2, 10.0 * jax.nn.one_hot(0, V)[None], logits)

    out = self.run_stub([5], max_new_tokens=4, logits_fn=logits_fn)
    np.testing.assert_array_equal(out.tokens, [[5, 6, 0, 0]])


class SampleLogitsTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.logits = jnp.log(jnp.asarray([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]))

  def test_greedy(self):
    got = sampling.sample_logits(self.logits, jax.random.key(0))
    np.testing.assert_array_equal(got, [1, 0])

  def test_top_k_one_is_greedy(self):
    got = jax.vmap(
        lambda k: sampling.sample_logits(
            self.logits, k, temperature=2.0, top_k=1
        )
    )(jax.random.split(jax.random.key(0), 50))
    np.testing.assert_array_equal(got, np.tile([[1, 0]], (50, 1)))

  def test_temperature_sampling_frequencies(self):
    keys = jax.random.split(jax.random.key(1), 4000)
    got = np.asarray(
        jax.vmap(
            lambda k: sampling.sample_logits(self.logits, k, temperature=1.0)
        )(keys)
    )
    freq = np.mean(got[:, 0][:, None] == np.arange(3), axis=0)
    np.testing.assert_allclose(freq, [0.1, 0.6, 0.3], atol=0.03)
    # top_k=2 never draws the least likely token (id 0 in row 0).
    got = jax.vmap(
        lambda k: sampling.sample_logits(
            self.logits, k, temperature=1.0, top_k=2
        )
    )(keys[:500])
    self.assertFalse(np.any(np.asarray(got)[:, 0] == 0))


class TinyGenerateTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model = tiny_model()
    rng = np.random.default_rng(0)
    cls.prompts = [rng.integers(0, 40, n).tolist() for n in (3, 7)]

  def padded(self, padding):
    ids = np.zeros((2, 8), np.int32)
    for b, p in enumerate(self.prompts):
      if padding == "right":
        ids[b, : len(p)] = p
      else:
        ids[b, 8 - len(p) :] = p
    return ids, [len(p) for p in self.prompts]

  def test_ragged_batch_equals_argmax_without_cache(self):
    right = sampling.generate(
        self.model, *self.padded("right"), jax.random.key(0), max_new_tokens=5
    )
    left = sampling.generate(
        self.model,
        *self.padded("left"),
        jax.random.key(0),
        max_new_tokens=5,
        padding="left",
    )
    np.testing.assert_array_equal(right.tokens, left.tokens)
    graphdef, state = nnx.split(self.model)
    for b, p in enumerate(self.prompts):
      seq = np.zeros((16,), np.int32)
      seq[: len(p)] = p
      n = len(p)
      for step in range(5):
        logits = tiny_llama.forward_last_logits(
            graphdef, state, jnp.asarray(seq), n
        )
        seq[n] = int(jnp.argmax(logits))
        self.assertEqual(int(right.tokens[b, step]), seq[n])
        n += 1

  def test_one_compile_per_bucket(self):
    traces = []

    def counting_logits_fn(step, logits, state):
      del step, state
      traces.append(1)  # runs once per trace, not per step
      return logits

    def gen(length):
      ids = np.zeros((2, length), np.int32)
      sampling.generate(
          self.model,
          ids,
          [1, length],
          jax.random.key(0),
          max_new_tokens=4,
          logits_fn=counting_logits_fn,
      )

    gen(5)
    gen(9)
    gen(64)  # all in the 64 bucket
    self.assertLen(traces, 1)
    gen(65)  # the 128 bucket
    self.assertLen(traces, 2)

  def test_sampling_is_reproducible_per_key(self):
    ids, lens = self.padded("right")
    kw = dict(max_new_tokens=8, temperature=1.0, top_k=5)
    a = sampling.generate(self.model, ids, lens, jax.random.key(3), **kw)
    b = sampling.generate(self.model, ids, lens, jax.random.key(3), **kw)
    c = sampling.generate(self.model, ids, lens, jax.random.key(4), **kw)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    self.assertFalse(np.array_equal(a.tokens, c.tokens))

  def test_bad_inputs(self):
    with self.assertRaisesRegex(ValueError, "longer than the context"):
      sampling.generate(
          self.model, [[1] * 120], [120], jax.random.key(0), max_new_tokens=9
      )
    with self.assertRaisesRegex(ValueError, "padding"):
      sampling.generate(
          self.model,
          [[1, 2]],
          [2],
          jax.random.key(0),
          max_new_tokens=2,
          padding="middle",
      )
    with self.assertRaisesRegex(ValueError, "prompt_lengths"):
      sampling.generate(
          self.model, [[1, 2]], [0], jax.random.key(0), max_new_tokens=2
      )
    with self.assertRaisesRegex(ValueError, r"\[B, L\]"):
      sampling.generate(
          self.model, [1, 2], [2], jax.random.key(0), max_new_tokens=2
      )


class RealModelGenerateTest(absltest.TestCase):
  """Greedy SmolLM2; one compilation (the bias is traced, not baked in)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.lm = loading.load_gguf()
    cls.prompt = loading.encode_chat(cls.lm.tokenizer, "Name a colour.")
    cls.n_new = 8
    cls.zero_bias = jnp.zeros((cls.lm.config.vocab_size,), jnp.float32)
    cls.out = cls.generate(cls.zero_bias)

  @classmethod
  def generate(cls, bias, key=0):
    return sampling.generate(
        cls.lm,
        [cls.prompt],
        [len(cls.prompt)],
        jax.random.key(key),
        max_new_tokens=cls.n_new,
        logits_fn=add_bias,
        logits_fn_state=bias,
        stop_ids=(cls.lm.tokenizer.eos_token_id,),
    )

  def test_greedy_equals_argmax_without_cache(self):
    graphdef, state = nnx.split(self.lm.model)
    seq = np.zeros((64,), np.int32)
    seq[: len(self.prompt)] = self.prompt
    n = len(self.prompt)
    want = []
    for _ in range(self.n_new):
      logits = tiny_llama.forward_last_logits(
          graphdef, state, jnp.asarray(seq), n
      )
      token = int(jnp.argmax(logits))
      want.append(token)
      seq[n] = token
      n += 1
    np.testing.assert_array_equal(self.out.tokens[0], want)
    np.testing.assert_array_equal(self.out.lengths, [self.n_new])

  def test_greedy_is_deterministic(self):
    again = self.generate(self.zero_bias, key=7)
    np.testing.assert_array_equal(again.tokens, self.out.tokens)

  def test_logits_fn_forbidding_a_token_is_obeyed(self):
    first = int(self.out.tokens[0, 0])
    out = self.generate(self.zero_bias.at[first].set(-jnp.inf))
    tokens = np.asarray(out.tokens[0, : out.lengths[0]])
    self.assertNotIn(first, tokens.tolist())
    self.assertGreater(len(tokens), 0)


if __name__ == "__main__":
  absltest.main()
