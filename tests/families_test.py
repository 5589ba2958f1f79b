"""Checkpoint families against transformers' torch implementations.

tests/testdata/families/<name>/ holds a tiny random Hugging Face checkpoint
(bfloat16 safetensors) and ``expected.npz``, written by
tools/make_family_fixtures.py with transformers + torch (float32, eager
attention): the logits at every position of a 40-token prompt and 16 greedy
tokens. Here the directory is loaded with ``loading.load_hf_dir`` (no
torch) and must give the same logits (within 1e-3), the same top-5 at the
last position, and the same greedy continuation through the KV cache.

Families: Llama with llama3 and with linear rope scaling, Qwen2, Qwen3,
Gemma 3 (local and global layers, prompt longer than the window) and Mistral
(sliding window). Real checkpoints' config.json files (as published) are
converted without weights; unsupported rope types, model types and
quantisations must raise errors that name them.
"""

import json
import os
import shutil
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jitrl_jax.models import llama as llama_lib
from jitrl_jax.models import loading

FAMILIES_DIR = os.path.join(os.path.dirname(__file__), "testdata", "families")
FAMILIES = (
    "llama3_rope",
    "llama_linear_rope",
    "qwen2",
    "qwen3",
    "gemma3",
    "mistral",
)
LOGIT_TOL = 1e-3
CACHE_SLOTS = 64

apply = jax.jit(llama_lib.apply, static_argnames="return_hidden")


def expected(name):
  return dict(np.load(os.path.join(FAMILIES_DIR, name, "expected.npz")))


def forward(lm, prompt):
  """Logits [L, V] of one prompt, without a cache."""
  graphdef, state = nnx.split(lm.model)
  ids = jnp.asarray(prompt, jnp.int32)[None]
  positions = jnp.arange(ids.shape[1], dtype=jnp.int32)[None]
  logits, _ = apply(graphdef, state, ids, positions)
  return np.asarray(logits[0])


def greedy_with_cache(lm, prompt, steps):
  """Prefill through the cache, then ``steps`` one-token greedy steps.

  Returns:
    (prefill logits [L, V], greedy ids [steps]).
  """
  graphdef, state = nnx.split(lm.model)
  cache = llama_lib.init_cache(lm.config, 1, CACHE_SLOTS)
  n = len(prompt)
  logits, cache = apply(
      graphdef,
      state,
      jnp.asarray(prompt, jnp.int32)[None],
      jnp.arange(n, dtype=jnp.int32)[None],
      cache,
  )
  prefill = np.asarray(logits[0])
  out = [int(np.argmax(prefill[-1]))]
  for i in range(steps - 1):
    logits, cache = apply(
        graphdef,
        state,
        jnp.asarray([[out[-1]]], jnp.int32),
        jnp.asarray([[n + i]], jnp.int32),
        cache,
    )
    out.append(int(np.argmax(logits[0, -1])))
  return prefill, np.array(out)


class TorchParityTest(parameterized.TestCase):
  """Each fixture directory against transformers + torch."""

  @parameterized.named_parameters((name, name) for name in FAMILIES)
  def test_logits_top5_and_greedy_match(self, name):
    ref = expected(name)
    lm = loading.load_hf_dir(os.path.join(FAMILIES_DIR, name))
    logits = forward(lm, ref["prompt"])
    np.testing.assert_allclose(logits, ref["logits"], rtol=0, atol=LOGIT_TOL)
    top5 = np.argsort(-logits[-1], kind="stable")[:5]
    ref_top5 = np.argsort(-ref["logits"][-1], kind="stable")[:5]
    np.testing.assert_array_equal(top5, ref_top5)
    prefill, tokens = greedy_with_cache(lm, ref["prompt"], len(ref["greedy"]))
    np.testing.assert_allclose(prefill, ref["logits"], rtol=0, atol=LOGIT_TOL)
    np.testing.assert_array_equal(tokens, ref["greedy"])

  def test_configs_read_the_family_features(self):
    import transformers  # pylint: disable=g-import-not-at-top

    def config(name):
      directory = os.path.join(FAMILIES_DIR, name)
      return loading.hf_config(
          transformers.AutoConfig.from_pretrained(directory)
      )

    c = config("llama3_rope")
    self.assertEqual(c.rope_scaling.kind, "llama3")
    self.assertEqual(c.rope_scaling.original_max_position_embeddings, 32)
    self.assertEqual((c.head_dim, c.tie_word_embeddings), (16, True))
    c = config("llama_linear_rope")
    self.assertEqual(
        (c.rope_scaling.kind, c.rope_scaling.factor), ("linear", 4)
    )
    self.assertTrue(c.attention_bias and c.attention_out_bias)
    self.assertFalse(c.tie_word_embeddings)
    c = config("qwen2")
    self.assertTrue(c.attention_bias)
    self.assertFalse(c.attention_out_bias or c.qk_norm)
    c = config("qwen3")
    self.assertTrue(c.qk_norm)
    self.assertFalse(c.attention_bias)
    self.assertEqual(c.head_dim, 16)  # != hidden / heads = 8
    c = config("gemma3")
    self.assertEqual(c.sliding_layers, (True, False, True))
    self.assertEqual(c.sliding_window, 8)
    self.assertEqual((c.rope_theta, c.local_rope_theta), (1e5, 100.0))
    self.assertEqual(c.rope_scaling.kind, "linear")
    self.assertTrue(c.qk_norm and c.sandwich_norms and c.tie_word_embeddings)
    self.assertEqual(c.mlp_activation, "gelu_tanh")
    self.assertAlmostEqual(c.embed_scale, 32**0.5)
    self.assertAlmostEqual(c.query_scale, 24**-0.5)
    self.assertEqual(c.final_logit_softcap, 30.0)
    c = config("mistral")
    self.assertEqual(c.sliding_layers, (True, True))
    self.assertEqual(c.max_position_embeddings, 256)  # not cut to the window

  def test_gemma3_multimodal_layout(self):
    """The text part of a Gemma3ForConditionalGeneration directory."""
    from safetensors import numpy as st_numpy  # pylint: disable=g-import-not-at-top

    src = os.path.join(FAMILIES_DIR, "gemma3")
    tmp = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, tmp)
    with open(os.path.join(src, "config.json")) as f:
      text_config = json.load(f)
    config = {
        "model_type": "gemma3",
        "architectures": ["Gemma3ForConditionalGeneration"],
        "text_config": text_config,
        "vision_config": {"model_type": "siglip_vision_model"},
        "tie_word_embeddings": True,
    }
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump(config, f)
    tensors = st_numpy.load_file(os.path.join(src, "model.safetensors"))
    renamed = {
        "model.language_model." + k[len("model.") :]: v
        for k, v in tensors.items()
    }
    renamed["model.vision_tower.dummy.weight"] = np.zeros((2, 2), np.float32)
    st_numpy.save_file(renamed, os.path.join(tmp, "model.safetensors"))
    lm = loading.load_hf_dir(tmp)
    ref = expected("gemma3")
    logits = forward(lm, ref["prompt"])
    np.testing.assert_allclose(logits, ref["logits"], rtol=0, atol=LOGIT_TOL)


def _write_config(directory, config):
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(config, f)


# config.json of published checkpoints (sizes as released; no weights).
LLAMA_3_2_1B = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "vocab_size": 128256,
}
QWEN3_0_6B = {
    "architectures": ["Qwen3ForCausalLM"],
    "attention_bias": False,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "max_position_embeddings": 40960,
    "max_window_layers": 28,
    "model_type": "qwen3",
    "num_attention_heads": 16,
    "num_hidden_layers": 28,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "tie_word_embeddings": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
GEMMA_3_1B = {
    "architectures": ["Gemma3ForCausalLM"],
    "attention_bias": False,
    "attn_logit_softcapping": None,
    "final_logit_softcapping": None,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 1152,
    "intermediate_size": 6912,
    "max_position_embeddings": 32768,
    "model_type": "gemma3_text",
    "num_attention_heads": 4,
    "num_hidden_layers": 26,
    "num_key_value_heads": 1,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06,
    "rope_local_base_freq": 10000,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": 512,
    "sliding_window_pattern": 6,
    "vocab_size": 262144,
}
GEMMA_3_4B = {
    "architectures": ["Gemma3ForConditionalGeneration"],
    "model_type": "gemma3",
    "text_config": {
        "head_dim": 256,
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "model_type": "gemma3_text",
        "num_attention_heads": 8,
        "num_hidden_layers": 34,
        "num_key_value_heads": 4,
        "query_pre_attn_scalar": 256,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024,
    },
    "vision_config": {"model_type": "siglip_vision_model"},
}


class PublishedConfigTest(absltest.TestCase):
  """config.json files as released convert to the right LlamaConfig."""

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.dir)

  def convert(self, config):
    import transformers  # pylint: disable=g-import-not-at-top

    _write_config(self.dir, config)
    return loading.hf_config(transformers.AutoConfig.from_pretrained(self.dir))

  def test_llama_3_2(self):
    c = self.convert(LLAMA_3_2_1B)
    self.assertEqual(
        c.rope_scaling,
        llama_lib.RopeScaling("llama3", 32.0, 1.0, 4.0, 8192),
    )
    self.assertEqual((c.rope_theta, c.head_dim, c.num_kv_heads), (5e5, 64, 8))
    self.assertEqual(c.max_position_embeddings, 131072)
    self.assertFalse(c.qk_norm or c.sliding_layers)

  def test_qwen3(self):
    c = self.convert(QWEN3_0_6B)
    self.assertTrue(c.qk_norm)
    self.assertFalse(c.attention_bias)
    self.assertEqual((c.head_dim, c.rope_theta), (128, 1e6))
    self.assertIsNone(c.sliding_window)

  def test_gemma_3_1b(self):
    c = self.convert(GEMMA_3_1B)
    self.assertEqual(
        c.sliding_layers, tuple((i + 1) % 6 != 0 for i in range(26))
    )
    self.assertEqual(c.sliding_window, 512)
    self.assertEqual((c.rope_theta, c.local_rope_theta), (1e6, 1e4))
    self.assertIsNone(c.rope_scaling)
    self.assertTrue(c.tie_word_embeddings and c.qk_norm and c.sandwich_norms)
    self.assertAlmostEqual(c.query_scale, 256**-0.5)

  def test_gemma_3_4b_text_part(self):
    c = self.convert(GEMMA_3_4B)
    self.assertEqual((c.hidden_size, c.num_layers), (2560, 34))
    self.assertEqual(c.rope_scaling, llama_lib.RopeScaling("linear", 8.0))
    self.assertEqual(c.local_rope_theta, 1e4)
    self.assertEqual(c.sliding_window, 1024)
    self.assertTrue(c.tie_word_embeddings)


class UnsupportedTest(parameterized.TestCase):
  """What cannot load says what it found."""

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.dir)

  @parameterized.parameters(
      ({"rope_type": "yarn", "factor": 4.0},),
      ({"rope_type": "dynamic", "factor": 2.0},),
      (
          {
              "rope_type": "longrope",
              "factor": 2.0,
              "short_factor": [1.0] * 32,
              "long_factor": [2.0] * 32,
          },
      ),
  )
  def test_rope_type(self, rope):
    _write_config(self.dir, dict(LLAMA_3_2_1B, rope_scaling=rope))
    with self.assertRaisesRegex(
        loading.ModelFileError, f"rope scaling '{rope['rope_type']}'"
    ):
      loading.load_hf_dir(self.dir)

  @parameterized.parameters("gemma2", "phi3", "not_a_model")
  def test_model_type(self, model_type):
    _write_config(self.dir, {"model_type": model_type})
    with self.assertRaisesRegex(loading.ModelFileError, f"'{model_type}'"):
      loading.load_hf_dir(self.dir)

  @parameterized.parameters("awq", "gptq", "bitsandbytes", "fp8")
  def test_quantised_config(self, method):
    _write_config(
        self.dir,
        dict(QWEN3_0_6B, quantization_config={"quant_method": method}),
    )
    with self.assertRaisesRegex(
        loading.ModelFileError, f"quant_method '{method}'"
    ):
      loading.load_hf_dir(self.dir)

  def test_integer_tensor(self):
    from safetensors import numpy as st_numpy  # pylint: disable=g-import-not-at-top

    src = os.path.join(FAMILIES_DIR, "qwen3")
    shutil.copy(os.path.join(src, "config.json"), self.dir)
    tensors = st_numpy.load_file(os.path.join(src, "model.safetensors"))
    name = "model.layers.0.mlp.up_proj.weight"
    tensors[name] = np.zeros(tensors[name].shape, np.int8)
    st_numpy.save_file(tensors, os.path.join(self.dir, "model.safetensors"))
    with self.assertRaisesRegex(loading.ModelFileError, f"{name}.*dtype I8"):
      loading.load_hf_dir(self.dir)

  def test_attention_softcapping(self):
    _write_config(self.dir, dict(GEMMA_3_1B, attn_logit_softcapping=50.0))
    with self.assertRaisesRegex(loading.ModelFileError, "soft-capping"):
      loading.load_hf_dir(self.dir)


if __name__ == "__main__":
  absltest.main()
