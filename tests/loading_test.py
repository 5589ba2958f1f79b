"""Tests for jitrl_jax.models.loading.

The Hugging Face and GGUF paths are checked on small random checkpoints the
tests write themselves, against a plain NumPy forward pass on the original
(Hugging Face layout) tensors: an oracle independent of llama.py. The
embedded SmolLM2 GGUF is checked for its metadata, tokenizer and chat
template; bad files must raise ModelFileError.
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

apply = jax.jit(llama_lib.apply, static_argnames="return_hidden")

# A byte-level BPE vocabulary small enough to write by hand: the 256 byte
# symbols of GPT-2's byte-to-unicode map, two merges and two control tokens.
_BYTES = [chr(c) for c in range(33, 127)] + ["Ġ", "Ċ"]
TINY_TOKENS = (
    ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    + _BYTES
    + [
        "he",
        "Ġhe",
    ]
)
TINY_MERGES = ["h e", "Ġ he"]
TINY_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)


def numpy_forward(t, cfg, ids):
  """Plain NumPy Llama on Hugging Face tensors ([out, in] weights).

  Args:
    t: dict name -> array, Hugging Face names.
    cfg: dict with num_layers, num_heads, num_kv_heads, head_dim, theta, eps,
      qkv_bias, tied.
    ids: [L] token ids.

  Returns:
    [L, V] logits.
  """
  h_n, kv_n, dh = cfg["num_heads"], cfg["num_kv_heads"], cfg["head_dim"]
  eps = cfg["eps"]

  def rms(x, w):
    return w * x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps)

  def rope(x):  # x [L, heads, Dh], rotate-half convention.
    pos = np.arange(x.shape[0])[:, None]
    inv = cfg["theta"] ** (-np.arange(0, dh, 2) / dh)
    ang = pos * inv[None]
    cos, sin = np.cos(ang)[:, None], np.sin(ang)[:, None]
    x1, x2 = x[..., : dh // 2], x[..., dh // 2 :]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

  x = t["model.embed_tokens.weight"][ids].astype(np.float64)
  n = len(ids)
  for i in range(cfg["num_layers"]):
    p = f"model.layers.{i}."
    a = p + "self_attn."
    y = rms(x, t[p + "input_layernorm.weight"])
    q = y @ t[a + "q_proj.weight"].T
    k = y @ t[a + "k_proj.weight"].T
    v = y @ t[a + "v_proj.weight"].T
    if cfg["qkv_bias"]:
      q, k, v = (
          q + t[a + "q_proj.bias"],
          k + t[a + "k_proj.bias"],
          v + t[a + "v_proj.bias"],
      )
    q = rope(q.reshape(n, h_n, dh))
    k = rope(k.reshape(n, kv_n, dh))
    v = v.reshape(n, kv_n, dh)
    out = np.zeros((n, h_n, dh))
    for h in range(h_n):
      kh = h // (h_n // kv_n)  # repeat_kv: consecutive heads share a group.
      for qi in range(n):
        s = k[: qi + 1, kh] @ q[qi, h] / np.sqrt(dh)
        w = np.exp(s - s.max())
        out[qi, h] = (w / w.sum()) @ v[: qi + 1, kh]
    x = x + out.reshape(n, h_n * dh) @ t[a + "o_proj.weight"].T
    y = rms(x, t[p + "post_attention_layernorm.weight"])
    gate = y @ t[p + "mlp.gate_proj.weight"].T
    up = y @ t[p + "mlp.up_proj.weight"].T
    x = x + (gate / (1 + np.exp(-gate)) * up) @ t[p + "mlp.down_proj.weight"].T
  x = rms(x, t["model.norm.weight"])
  head = t["model.embed_tokens.weight" if cfg["tied"] else "lm_head.weight"]
  return x @ head.T


def random_hf_tensors(rng, *, vocab, d, f, layers, h, kv, dh, bias, tied):
  t = {"model.embed_tokens.weight": rng.standard_normal((vocab, d))}
  t["model.norm.weight"] = 1 + 0.1 * rng.standard_normal(d)
  if not tied:
    t["lm_head.weight"] = rng.standard_normal((vocab, d))
  for i in range(layers):
    p = f"model.layers.{i}."
    a = p + "self_attn."
    t[p + "input_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(d)
    t[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(d)
    t[a + "q_proj.weight"] = rng.standard_normal((h * dh, d)) / np.sqrt(d)
    t[a + "k_proj.weight"] = rng.standard_normal((kv * dh, d)) / np.sqrt(d)
    t[a + "v_proj.weight"] = rng.standard_normal((kv * dh, d)) / np.sqrt(d)
    t[a + "o_proj.weight"] = rng.standard_normal((d, h * dh)) / np.sqrt(d)
    if bias:
      t[a + "q_proj.bias"] = 0.5 * rng.standard_normal(h * dh)
      t[a + "k_proj.bias"] = 0.5 * rng.standard_normal(kv * dh)
      t[a + "v_proj.bias"] = 0.5 * rng.standard_normal(kv * dh)
    t[p + "mlp.gate_proj.weight"] = rng.standard_normal((f, d)) / np.sqrt(d)
    t[p + "mlp.up_proj.weight"] = rng.standard_normal((f, d)) / np.sqrt(d)
    t[p + "mlp.down_proj.weight"] = rng.standard_normal((d, f)) / np.sqrt(f)
  return {k: v.astype(np.float32) for k, v in t.items()}


def jax_logits(loaded, ids):
  graphdef, state = nnx.split(loaded.model)
  ids = jnp.asarray(ids, jnp.int32)[None]
  logits, _ = apply(graphdef, state, ids, jnp.arange(ids.shape[1])[None])
  return np.asarray(logits[0])


FAMILIES_DIR = os.path.join(os.path.dirname(__file__), "testdata", "families")


def gguf_lib():
  import gguf  # pylint: disable=g-import-not-at-top

  return gguf


def write_gguf(path, *, arch="llama", tensors=None, metadata=None):
  import gguf  # pylint: disable=g-import-not-at-top

  writer = gguf.GGUFWriter(path, arch)
  for key, value in (metadata or {}).items():
    getattr(writer, key)(*value)
  for name, value in (tensors or {}).items():
    writer.add_tensor(name, value)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()


def llama_cpp_permute(w, heads):
  """llama.cpp convert_hf_to_gguf's LlamaModel.permute of Q/K rows."""
  return (
      w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:])
      .swapaxes(1, 2)
      .reshape(w.shape)
  )


class HuggingFaceDirTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.dir)

  def write_checkpoint(self, model_type, *, bias, tied, shards=1):
    import transformers  # pylint: disable=g-import-not-at-top
    from safetensors import numpy as st_numpy  # pylint: disable=g-import-not-at-top

    sizes = dict(vocab=53, d=24, f=40, layers=2, h=6, kv=2, dh=4)
    cls = {
        "llama": transformers.LlamaConfig,
        "qwen2": transformers.Qwen2Config,
    }[model_type]
    config = cls(
        vocab_size=sizes["vocab"],
        hidden_size=sizes["d"],
        intermediate_size=sizes["f"],
        num_hidden_layers=sizes["layers"],
        num_attention_heads=sizes["h"],
        num_key_value_heads=sizes["kv"],
        head_dim=sizes["dh"],
        rope_theta=1234.0,
        rms_norm_eps=1e-5,
        max_position_embeddings=128,
        tie_word_embeddings=tied,
    )
    config.save_pretrained(self.dir)
    rng = np.random.default_rng(0)
    tensors = random_hf_tensors(rng, bias=bias, tied=tied, **sizes)
    names = sorted(tensors)
    for s in range(shards):
      part = {n: tensors[n] for n in names[s::shards]}
      st_numpy.save_file(
          part, os.path.join(self.dir, f"model-{s:05d}.safetensors")
      )
    cfg = dict(
        num_layers=sizes["layers"],
        num_heads=sizes["h"],
        num_kv_heads=sizes["kv"],
        head_dim=sizes["dh"],
        theta=1234.0,
        eps=1e-5,
        qkv_bias=bias,
        tied=tied,
    )
    return tensors, cfg

  @parameterized.named_parameters(
      ("llama_untied", "llama", False, False, 1),
      ("llama_tied_sharded", "llama", False, True, 2),
      ("qwen2_bias", "qwen2", True, False, 1),
  )
  def test_logits_match_numpy_oracle(self, model_type, bias, tied, shards):
    tensors, cfg = self.write_checkpoint(
        model_type, bias=bias, tied=tied, shards=shards
    )
    loaded = loading.load_hf_dir(self.dir)
    self.assertEqual(loaded.config.attention_bias, bias)
    self.assertEqual(loaded.config.tie_word_embeddings, tied)
    self.assertAlmostEqual(loaded.config.rope_theta, 1234.0)
    self.assertIsNone(loaded.tokenizer)
    ids = [3, 17, 0, 52, 8, 8, 30]
    np.testing.assert_allclose(
        jax_logits(loaded, ids),
        numpy_forward(tensors, cfg, ids),
        rtol=1e-4,
        atol=1e-4,
    )

  def test_tokenizer_json_is_loaded(self):
    from tokenizers import Tokenizer  # pylint: disable=g-import-not-at-top
    from tokenizers import models  # pylint: disable=g-import-not-at-top
    from tokenizers import pre_tokenizers  # pylint: disable=g-import-not-at-top

    self.write_checkpoint("llama", bias=False, tied=True)
    vocab = {w: i for i, w in enumerate(["[UNK]", "go", "north", "open"])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.save(os.path.join(self.dir, "tokenizer.json"))
    with open(os.path.join(self.dir, "tokenizer_config.json"), "w") as f:
      json.dump({"chat_template": TINY_TEMPLATE, "unk_token": "[UNK]"}, f)
    loaded = loading.load_hf_dir(self.dir)
    self.assertEqual(
        loaded.tokenizer.encode("go north", add_special_tokens=False), [1, 2]
    )
    self.assertIsNotNone(loaded.tokenizer.chat_template)

  def test_config_conversion(self):
    import transformers  # pylint: disable=g-import-not-at-top

    mistral = loading.hf_config(
        transformers.MistralConfig(
            sliding_window=4096,
            max_position_embeddings=32768,
            num_hidden_layers=2,
        )
    )
    # A real sliding window on every layer; the context is not cut to it.
    self.assertEqual(mistral.max_position_embeddings, 32768)
    self.assertEqual(
        (mistral.sliding_window, mistral.sliding_layers), (4096, (True, True))
    )
    self.assertFalse(mistral.attention_bias)
    qwen = loading.hf_config(transformers.Qwen2Config())
    self.assertTrue(qwen.attention_bias)
    self.assertFalse(qwen.attention_out_bias)
    self.assertIsNone(qwen.sliding_window)  # use_sliding_window=False
    linear = loading.hf_config(
        transformers.LlamaConfig(
            rope_parameters={
                "rope_type": "linear",
                "factor": 2.0,
                "rope_theta": 1e4,
            }
        )
    )
    self.assertEqual(linear.rope_scaling, llama_lib.RopeScaling("linear", 2.0))
    with self.assertRaisesRegex(loading.ModelFileError, "rope scaling 'yarn'"):
      loading.hf_config(
          transformers.LlamaConfig(
              rope_parameters={
                  "rope_type": "yarn",
                  "factor": 2.0,
                  "rope_theta": 1e4,
              }
          )
      )

  def test_missing_config(self):
    with self.assertRaisesRegex(loading.ModelFileError, "config.json"):
      loading.load_hf_dir(self.dir)

  def test_missing_weights(self):
    self.write_checkpoint("llama", bias=False, tied=True)
    for name in os.listdir(self.dir):
      if name.endswith(".safetensors"):
        os.remove(os.path.join(self.dir, name))
    with self.assertRaisesRegex(loading.ModelFileError, "safetensors"):
      loading.load_hf_dir(self.dir)

  def test_truncated_safetensors(self):
    self.write_checkpoint("llama", bias=False, tied=True)
    path = os.path.join(self.dir, "model-00000.safetensors")
    with open(path, "rb") as f:
      data = f.read()
    with open(path, "wb") as f:
      f.write(data[: len(data) // 2])
    with self.assertRaisesRegex(loading.ModelFileError, "corrupt"):
      loading.load_hf_dir(self.dir)

  def test_unsupported_model_type(self):
    with open(os.path.join(self.dir, "config.json"), "w") as f:
      json.dump({"model_type": "gpt2", "n_layer": 1}, f)
    with self.assertRaisesRegex(loading.ModelFileError, "gpt2"):
      loading.load_hf_dir(self.dir)


class TinyGgufTest(parameterized.TestCase):
  """A Llama GGUF written here: permuted Q/K rows, byte-level vocabulary."""

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.dir)

  def write_llama_gguf(self, path, tied=True, rope_scaling=None):
    sizes = dict(vocab=len(TINY_TOKENS), d=16, f=24, layers=2, h=4, kv=2, dh=4)
    rng = np.random.default_rng(1)
    t = random_hf_tensors(rng, bias=False, tied=tied, **sizes)
    g = {
        "token_embd.weight": t["model.embed_tokens.weight"],
        "output_norm.weight": t["model.norm.weight"],
    }
    if not tied:
      g["output.weight"] = t["lm_head.weight"]
    for i in range(sizes["layers"]):
      p, b = f"model.layers.{i}.", f"blk.{i}."
      a = p + "self_attn."
      g[b + "attn_norm.weight"] = t[p + "input_layernorm.weight"]
      g[b + "ffn_norm.weight"] = t[p + "post_attention_layernorm.weight"]
      g[b + "attn_q.weight"] = llama_cpp_permute(
          t[a + "q_proj.weight"], sizes["h"]
      )
      g[b + "attn_k.weight"] = llama_cpp_permute(
          t[a + "k_proj.weight"], sizes["kv"]
      )
      g[b + "attn_v.weight"] = t[a + "v_proj.weight"]
      g[b + "attn_output.weight"] = t[a + "o_proj.weight"]
      g[b + "ffn_gate.weight"] = t[p + "mlp.gate_proj.weight"]
      g[b + "ffn_up.weight"] = t[p + "mlp.up_proj.weight"]
      g[b + "ffn_down.weight"] = t[p + "mlp.down_proj.weight"]
    types = [3, 3, 3] + [1] * (len(TINY_TOKENS) - 3)
    write_gguf(
        path,
        tensors=g,
        metadata={
            "add_block_count": (sizes["layers"],),
            "add_context_length": (256,),
            "add_embedding_length": (sizes["d"],),
            "add_feed_forward_length": (sizes["f"],),
            "add_head_count": (sizes["h"],),
            "add_head_count_kv": (sizes["kv"],),
            "add_rope_freq_base": (777.0,),
            "add_layer_norm_rms_eps": (1e-5,),
            "add_tokenizer_model": ("gpt2",),
            "add_tokenizer_pre": ("smollm",),
            "add_token_list": (TINY_TOKENS,),
            "add_token_merges": (TINY_MERGES,),
            "add_token_types": (types,),
            "add_bos_token_id": (1,),
            "add_eos_token_id": (2,),
            "add_chat_template": (TINY_TEMPLATE,),
            **(
                {}
                if rope_scaling is None
                else {
                    "add_rope_scaling_type": (
                        gguf_lib().RopeScalingType(rope_scaling[0]),
                    ),
                    "add_rope_scaling_factor": (rope_scaling[1],),
                }
            ),
        },
    )
    cfg = dict(
        num_layers=sizes["layers"],
        num_heads=sizes["h"],
        num_kv_heads=sizes["kv"],
        head_dim=sizes["dh"],
        theta=777.0,
        eps=1e-5,
        qkv_bias=False,
        tied=tied,
    )
    return t, cfg

  @parameterized.parameters(True, False)
  def test_logits_match_numpy_oracle(self, tied):
    path = os.path.join(self.dir, "tiny.gguf")
    tensors, cfg = self.write_llama_gguf(path, tied=tied)
    loaded = loading.load_gguf(path)
    self.assertEqual(loaded.config.num_layers, 2)
    self.assertEqual(loaded.config.tie_word_embeddings, tied)
    ids = [5, 40, 2, 97, 11, 63]
    np.testing.assert_allclose(
        jax_logits(loaded, ids),
        numpy_forward(tensors, cfg, ids),
        rtol=1e-4,
        atol=1e-4,
    )

  def test_tokenizer_from_metadata(self):
    path = os.path.join(self.dir, "tiny.gguf")
    self.write_llama_gguf(path)
    tok = loading.load_gguf(path).tokenizer
    ids = tok.encode("he he", add_special_tokens=False)
    self.assertEqual(tok.convert_ids_to_tokens(ids), ["he", "Ġhe"])
    # Control tokens are atomic; the template renders the chat.
    ids = loading.encode_chat(tok, "he")
    self.assertEqual(ids[0], 1)
    self.assertEqual(
        tok.decode(ids),
        "<|im_start|>user\nhe<|im_end|>\n" "<|im_start|>assistant\n",
    )
    self.assertEqual((tok.bos_token_id, tok.eos_token_id), (1, 2))

  def test_sentencepiece_vocabulary(self):
    # tokenizer.ggml.model "llama" (SentencePiece scores, byte fallback)
    # goes through transformers' GGUF converter; add_bos_token is honoured.
    pieces = ["▁", "h", "e", "l", "o", "▁h", "he", "▁he", "ll", "▁hell"]
    pieces += ["▁hello"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tokens += pieces
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    types = [2, 3, 3] + [6] * 256 + [1] * len(pieces)
    path = os.path.join(self.dir, "spm.gguf")
    d, v = 8, len(tokens)
    rng = np.random.default_rng(0)
    w = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    tensors = {"token_embd.weight": w(v, d), "output_norm.weight": w(d)}
    for name, shape in [
        ("attn_norm", (d,)),
        ("ffn_norm", (d,)),
        ("attn_q", (d, d)),
        ("attn_k", (d, d)),
        ("attn_v", (d, d)),
        ("attn_output", (d, d)),
        ("ffn_gate", (12, d)),
        ("ffn_up", (12, d)),
        ("ffn_down", (d, 12)),
    ]:
      tensors[f"blk.0.{name}.weight"] = w(*shape)
    write_gguf(
        path,
        tensors=tensors,
        metadata={
            "add_block_count": (1,),
            "add_context_length": (64,),
            "add_embedding_length": (d,),
            "add_feed_forward_length": (12,),
            "add_head_count": (2,),
            "add_layer_norm_rms_eps": (1e-5,),
            "add_tokenizer_model": ("llama",),
            "add_token_list": (tokens,),
            "add_token_scores": (scores,),
            "add_token_types": (types,),
            "add_bos_token_id": (1,),
            "add_eos_token_id": (2,),
            "add_unk_token_id": (0,),
            "add_add_bos_token": (True,),
        },
    )
    tok = loading.load_gguf(path).tokenizer
    ids = tok.encode("hello hi!")
    self.assertEqual(
        tok.convert_ids_to_tokens(ids),
        ["<s>", "▁hello", "▁h", "<0x69>", "<0x21>"],
    )
    self.assertEqual(tok.decode(ids, skip_special_tokens=True), "hello hi!")

  def test_llama3_rope_factors_match_torch(self):
    """Llama 3.1-style GGUF: rope_freqs as llama.cpp's converter writes it."""
    from safetensors import numpy as st_numpy  # pylint: disable=g-import-not-at-top

    src = os.path.join(FAMILIES_DIR, "llama3_rope")
    with open(os.path.join(src, "config.json")) as f:
      hf = json.load(f)
    t = {
        k: np.asarray(v, np.float32)
        for k, v in st_numpy.load_file(
            os.path.join(src, "model.safetensors")
        ).items()
    }
    rope = hf["rope_parameters"]
    dh, theta = hf["head_dim"], rope["rope_theta"]
    old = rope["original_max_position_embeddings"]
    low, high = rope["low_freq_factor"], rope["high_freq_factor"]
    factors = []  # convert_hf_to_gguf.py, LlamaModel.generate_extra_tensors
    for freq in 1.0 / theta ** (np.arange(0, dh, 2, dtype=np.float32) / dh):
      wavelen = 2 * np.pi / freq
      if wavelen < old / high:
        factors.append(1.0)
      elif wavelen > old / low:
        factors.append(rope["factor"])
      else:
        smooth = (old / wavelen - low) / (high - low)
        factors.append(1 / ((1 - smooth) / rope["factor"] + smooth))
    g = {
        "token_embd.weight": t["model.embed_tokens.weight"],
        "output_norm.weight": t["model.norm.weight"],
        "rope_freqs.weight": np.asarray(factors, np.float32),
    }
    heads, kv = hf["num_attention_heads"], hf["num_key_value_heads"]
    for i in range(hf["num_hidden_layers"]):
      p, b = f"model.layers.{i}.", f"blk.{i}."
      a = p + "self_attn."
      g[b + "attn_norm.weight"] = t[p + "input_layernorm.weight"]
      g[b + "ffn_norm.weight"] = t[p + "post_attention_layernorm.weight"]
      g[b + "attn_q.weight"] = llama_cpp_permute(t[a + "q_proj.weight"], heads)
      g[b + "attn_k.weight"] = llama_cpp_permute(t[a + "k_proj.weight"], kv)
      g[b + "attn_v.weight"] = t[a + "v_proj.weight"]
      g[b + "attn_output.weight"] = t[a + "o_proj.weight"]
      for n in ("gate", "up", "down"):
        g[b + f"ffn_{n}.weight"] = t[p + f"mlp.{n}_proj.weight"]
    path = os.path.join(self.dir, "llama31.gguf")
    write_gguf(
        path,
        tensors=g,
        metadata={
            "add_block_count": (hf["num_hidden_layers"],),
            "add_context_length": (hf["max_position_embeddings"],),
            "add_embedding_length": (hf["hidden_size"],),
            "add_feed_forward_length": (hf["intermediate_size"],),
            "add_head_count": (heads,),
            "add_head_count_kv": (kv,),
            "add_key_length": (dh,),
            "add_value_length": (dh,),
            "add_rope_freq_base": (theta,),
            "add_layer_norm_rms_eps": (hf["rms_norm_eps"],),
            "add_vocab_size": (hf["vocab_size"],),
        },
    )
    loaded = loading.load_gguf(path)
    self.assertEqual(loaded.config.rope_scaling.kind, "factors")
    ref = np.load(os.path.join(src, "expected.npz"))
    np.testing.assert_allclose(
        jax_logits(loaded, ref["prompt"].tolist()),
        ref["logits"],
        rtol=0,
        atol=1e-3,
    )

  def test_rope_scaling_metadata(self):
    path = os.path.join(self.dir, "tiny.gguf")
    self.write_llama_gguf(path)
    reader = loading._open_gguf(path)  # pylint: disable=protected-access
    self.assertIsNone(loading.gguf_config(reader, path=path).rope_scaling)
    for kind, factor in (("linear", 4.0), ("yarn", 4.0)):
      with self.subTest(kind):
        self.write_llama_gguf(path, rope_scaling=(kind, factor))
        reader = loading._open_gguf(path)  # pylint: disable=protected-access
        if kind == "linear":
          c = loading.gguf_config(reader, path=path)
          self.assertEqual(c.rope_scaling, llama_lib.RopeScaling("linear", 4.0))
        else:
          with self.assertRaisesRegex(loading.ModelFileError, "'yarn'"):
            loading.gguf_config(reader, path=path)

  def test_unsupported_quantisation_type_is_named(self):
    t, _ = self.write_llama_gguf(os.path.join(self.dir, "ok.gguf"))
    del t
    import gguf  # pylint: disable=g-import-not-at-top

    reader = gguf.GGUFReader(os.path.join(self.dir, "ok.gguf"))
    tensors = {}
    for tensor in reader.tensors:
      data = np.asarray(tensor.data).reshape(tuple(reversed(tensor.shape)))
      tensors[tensor.name] = np.array(data, np.float32)
    # An integer tensor (GGML type I8) where a float weight belongs.
    tensors["blk.0.ffn_up.weight"] = np.zeros(
        tensors["blk.0.ffn_up.weight"].shape, np.int8
    )
    path = os.path.join(self.dir, "int8.gguf")
    write_gguf(
        path,
        tensors=tensors,
        metadata={
            "add_block_count": (2,),
            "add_context_length": (256,),
            "add_embedding_length": (16,),
            "add_feed_forward_length": (24,),
            "add_head_count": (4,),
            "add_head_count_kv": (2,),
            "add_vocab_size": (len(TINY_TOKENS),),
        },
    )
    with self.assertRaisesRegex(
        loading.ModelFileError, "blk.0.ffn_up.weight has quantisation type I8"
    ):
      loading.load_gguf(path)

  def test_sha_mismatch(self):
    path = os.path.join(self.dir, "tiny.gguf")
    self.write_llama_gguf(path)
    with self.assertRaisesRegex(loading.ModelFileError, "SHA-256 mismatch"):
      loading.load_gguf(path, expected_sha256="0" * 64)
    loading.load_gguf(path, expected_sha256=loading.file_sha256(path))

  def test_non_llama_architecture(self):
    path = os.path.join(self.dir, "gpt2.gguf")
    write_gguf(
        path,
        arch="gpt2",
        tensors={"token_embd.weight": np.zeros((8, 4), np.float32)},
        metadata={"add_block_count": (1,), "add_embedding_length": (4,)},
    )
    with self.assertRaisesRegex(loading.ModelFileError, "'gpt2'"):
      loading.load_gguf(path)

  def test_missing_file(self):
    with self.assertRaisesRegex(loading.ModelFileError, "not found"):
      loading.load_gguf(os.path.join(self.dir, "nope.gguf"))

  def test_truncated_copy_of_embedded_model(self):
    path = os.path.join(self.dir, "truncated.gguf")
    with open(loading.default_gguf_path(), "rb") as src:
      data = src.read(4096)  # header and the start of the vocabulary
    with open(path, "wb") as dst:
      dst.write(data)
    with self.assertRaisesRegex(loading.ModelFileError, "truncated"):
      loading.load_gguf(path)

  def test_truncated_tensor_data(self):
    path = os.path.join(self.dir, "tiny.gguf")
    self.write_llama_gguf(path)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
      f.truncate(size - 100)
    with self.assertRaises(loading.ModelFileError):
      loading.load_gguf(path)

  def test_not_a_gguf(self):
    path = os.path.join(self.dir, "junk.gguf")
    with open(path, "wb") as f:
      f.write(b"not a gguf file at all" * 10)
    with self.assertRaises(loading.ModelFileError):
      loading.load_gguf(path)


class EmbeddedModelTest(absltest.TestCase):

  def test_default_path_and_hash(self):
    path = loading.default_gguf_path()
    self.assertTrue(path.endswith(loading.DEFAULT_GGUF_NAME))
    self.assertEqual(loading.file_sha256(path), loading.DEFAULT_GGUF_SHA256)

  def test_embedded_model_and_chat_template(self):
    lm = loading.load_gguf()
    self.assertIs(loading.load_gguf(), lm)  # cached per process
    self.assertIs(loading.load_gguf(loading.default_gguf_path()), lm)
    self.assertEqual(lm.config.num_layers, 30)
    tok = lm.tokenizer
    ids = loading.encode_chat(tok, [{"role": "user", "content": "Hi"}])
    text = tok.decode(ids)
    self.assertTrue(text.startswith("<|im_start|>system\n"))
    self.assertTrue(
        text.endswith(
            "<|im_start|>user\nHi<|im_end|>\n" "<|im_start|>assistant\n"
        )
    )
    self.assertEqual(ids[-4:], tok.encode("<|im_start|>assistant\n"))
    # SmolLM splits numbers into single digits.
    self.assertLen(tok.encode("2024", add_special_tokens=False), 4)
    text = "Héllo, wörld!"
    self.assertEqual(tok.decode(tok.encode(text)), text)


if __name__ == "__main__":
  absltest.main()
