"""Loading Hugging Face checkpoint directories, without torch.

A directory holds ``config.json`` and ``*.safetensors`` (float32, float16 or
bfloat16 tensors, one file or shards), and optionally ``tokenizer.json``.
The config is read with ``transformers.AutoConfig`` (offline), the tensors
lazily with ``safetensors`` (numpy), one at a time, cast to float32, and
laid out as the ``Llama`` state (``llama.py``). Supported ``model_type``:

* ``llama`` (SmolLM, Llama 2 / 3 / 3.1 / 3.2; rope scaling ``llama3`` or
  ``linear``), ``mistral`` (sliding window on every layer);
* ``qwen2`` (q/k/v biases), ``qwen3`` (per-head q/k RMSNorm, own
  ``head_dim``);
* ``gemma3_text`` (Gemma 3 1B, ``Gemma3ForCausalLM``) and ``gemma3`` (the
  text part of ``Gemma3ForConditionalGeneration``; the vision tower is not
  read): local and global layers, two rotary bases, q/k norms, sandwich
  norms, scaled embeddings, GELU-tanh MLP. Gemma's RMSNorm multiplies by
  ``1 + w``; the stored norm weights are ``1 + w``.

Anything else (another model type or rope type, quantised weights, logit
soft-capping inside attention, bidirectional attention) raises
``ModelFileError`` naming what the directory holds.
"""

import dataclasses
import glob
import json
import math
import os

import jax.numpy as jnp
import numpy as np

from jitrl_jax.models import checkpoint
from jitrl_jax.models import llama as llama_lib
from jitrl_jax.models import rope as rope_lib

ModelFileError = checkpoint.ModelFileError

SUPPORTED_HF_MODEL_TYPES = (
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma3_text",
    "gemma3",
)
_GEMMA = ("gemma3_text", "gemma3")
_QK_NORM = ("qwen3",) + _GEMMA
# transformers' activation names -> LlamaConfig.mlp_activation.
_ACTIVATIONS = {
    "silu": "silu",
    "swish": "silu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
    "gelu": "gelu",
}
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_ROPE_TYPES = ("linear", "llama3")  # rope_type values read from config.json
# Where the decoder's tensors live: causal LMs, then the language model of
# a multimodal checkpoint (transformers >= 4.52, then older).
_PREFIXES = ("model.", "model.language_model.", "language_model.model.")
_HEADS = ("lm_head.weight", "language_model.lm_head.weight")


def _check_not_quantised(c) -> None:
  quant = getattr(c, "quantization_config", None)
  if quant:
    if isinstance(quant, dict):
      method = quant.get("quant_method")
    else:
      method = getattr(quant, "quant_method", None)
    raise ModelFileError(
        f"Quantised checkpoints are not supported (quantization_config with "
        f"quant_method {str(method)!r}): only float16 / bfloat16 / float32 "
        "weights load."
    )


def _rope(params, default_theta: float):
  """(theta, RopeScaling or None) of one rope-parameters dict."""
  params = dict(params or {})
  kind = params.get("rope_type", params.get("type")) or "default"
  theta = float(params.get("rope_theta") or default_theta)
  if float(params.get("partial_rotary_factor", 1.0)) != 1.0:
    raise ModelFileError(
        "Partial rotary embeddings (partial_rotary_factor="
        f"{params['partial_rotary_factor']}) are not supported."
    )
  if kind == "default":
    return theta, None
  if kind not in _ROPE_TYPES:
    raise ModelFileError(
        f"Unsupported rope scaling {kind!r} (rope_type in config.json): "
        f"only default, {', '.join(_ROPE_TYPES)}."
    )
  keys = ("factor",)
  if kind == "llama3":
    keys += (
        "low_freq_factor",
        "high_freq_factor",
        "original_max_position_embeddings",
    )
  missing = [k for k in keys if params.get(k) is None]
  if missing:
    raise ModelFileError(f"Rope scaling {kind!r} lacks {missing}.")
  try:
    return theta, rope_lib.RopeScaling(kind, **{k: params[k] for k in keys})
  except ValueError as e:
    raise ModelFileError(str(e)) from e


def _rope_settings(c):
  """(theta, scaling, local_theta) of a transformers config."""
  default_theta = getattr(c, "rope_theta", None) or 10000.0
  params = getattr(c, "rope_parameters", None)
  if isinstance(params, dict) and (
      "full_attention" in params or "sliding_attention" in params
  ):  # transformers 5: one dict per layer type
    theta, scaling = _rope(params.get("full_attention"), default_theta)
    local = params.get("sliding_attention")
    if local is None:
      return theta, scaling, None
    local_theta, local_scaling = _rope(local, default_theta)
    if local_scaling is not None:
      raise ModelFileError(
          f"Rope scaling {local_scaling.kind!r} on sliding-window layers is "
          "not supported."
      )
    return theta, scaling, local_theta
  theta, scaling = _rope(
      params or getattr(c, "rope_scaling", None), default_theta
  )
  local_theta = getattr(c, "rope_local_base_freq", None)  # Gemma 3, tf 4.x
  return theta, scaling, None if local_theta is None else float(local_theta)


def _sliding_layers(c, model_type: str):
  """(sliding_window or None, per-layer local flags) of a config."""
  n = c.num_hidden_layers
  window = getattr(c, "sliding_window", None)
  types = getattr(c, "layer_types", None)
  if model_type == "mistral":
    local = [bool(window)] * n
  elif types is not None:
    unknown = sorted(set(types) - {"full_attention", "sliding_attention"})
    if unknown:
      raise ModelFileError(f"Unsupported attention layer types {unknown}.")
    if len(types) != n:
      raise ModelFileError(f"{len(types)} layer_types for {n} layers.")
    local = [t == "sliding_attention" for t in types]
  elif model_type in _GEMMA:  # transformers 4.x: a period
    period = int(getattr(c, "sliding_window_pattern", 6))
    local = [(i + 1) % period != 0 for i in range(n)]
  elif getattr(c, "use_sliding_window", False) and window:  # Qwen, tf 4.x
    first = int(getattr(c, "max_window_layers", 0))
    local = [i >= first for i in range(n)]
  else:
    local = []
  if not any(local):
    return None, ()
  if not window:
    raise ModelFileError("Sliding-window layers without a sliding_window.")
  return int(window), tuple(local)


def _check_features(c, model_type: str) -> str:
  """Raises on what the model cannot express; returns the MLP activation."""
  name = None
  if model_type in _GEMMA:
    name = getattr(c, "hidden_activation", None)
  name = name or getattr(c, "hidden_act", None) or "silu"
  if name not in _ACTIVATIONS:
    raise ModelFileError(f"Unsupported activation {name!r}.")
  if getattr(c, "mlp_bias", False):
    raise ModelFileError("MLP biases are not supported.")
  if getattr(c, "attn_logit_softcapping", None) is not None:
    raise ModelFileError(
        "Attention logit soft-capping (attn_logit_softcapping="
        f"{c.attn_logit_softcapping}) is not supported."
    )
  if getattr(c, "use_bidirectional_attention", False):
    raise ModelFileError("Bidirectional attention is not supported.")
  return _ACTIVATIONS[name]


def hf_config(hf_config_obj, *, dtype=jnp.float32) -> llama_lib.LlamaConfig:
  """Converts a transformers config to ``LlamaConfig``.

  Args:
    hf_config_obj: a ``transformers.PretrainedConfig`` of a supported
      ``model_type`` (``SUPPORTED_HF_MODEL_TYPES``); for ``gemma3`` its
      ``text_config`` is used.
    dtype: parameter dtype.

  Returns:
    The config.

  Raises:
    ModelFileError: an unsupported model type, rope type, quantisation or
      feature, named in the message.
  """
  c = hf_config_obj
  model_type = getattr(c, "model_type", None)
  if model_type not in SUPPORTED_HF_MODEL_TYPES:
    raise ModelFileError(
        f"Unsupported model_type {model_type!r}: only "
        f"{SUPPORTED_HF_MODEL_TYPES}."
    )
  _check_not_quantised(c)
  tied = getattr(c, "tie_word_embeddings", None)
  if model_type == "gemma3":
    c = c.text_config
    tied = getattr(c, "tie_word_embeddings", None) if tied is None else tied
  activation = _check_features(c, model_type)
  theta, scaling, local_theta = _rope_settings(c)
  window, local = _sliding_layers(c, model_type)
  heads = c.num_attention_heads
  head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
  gemma = model_type in _GEMMA
  if model_type == "qwen2":
    qkv_bias, out_bias = True, False
  else:
    qkv_bias = out_bias = bool(getattr(c, "attention_bias", False))
  return llama_lib.LlamaConfig(
      vocab_size=c.vocab_size,
      hidden_size=c.hidden_size,
      intermediate_size=c.intermediate_size,
      num_layers=c.num_hidden_layers,
      num_heads=heads,
      num_kv_heads=getattr(c, "num_key_value_heads", None) or heads,
      head_dim=head_dim,
      rope_theta=float(theta),
      rms_norm_eps=float(c.rms_norm_eps),
      max_position_embeddings=int(c.max_position_embeddings),
      tie_word_embeddings=bool(tied),
      dtype=dtype,
      attention_bias=qkv_bias,
      attention_out_bias=out_bias,
      rope_scaling=scaling,
      qk_norm=model_type in _QK_NORM,
      sandwich_norms=gemma,
      embed_scale=math.sqrt(c.hidden_size) if gemma else 1.0,
      mlp_activation=activation,
      query_scale=(float(c.query_pre_attn_scalar) ** -0.5 if gemma else None),
      sliding_window=window,
      sliding_layers=local,
      local_rope_theta=local_theta if window else None,
      final_logit_softcap=getattr(c, "final_logit_softcapping", None),
  )


class _Tensors:
  """The tensors of a directory's ``*.safetensors``, read on demand."""

  def __init__(self, path: str):
    from safetensors import safe_open  # pylint: disable=g-import-not-at-top

    self.path = path
    files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
    if not files:
      raise ModelFileError(f"No *.safetensors files in {path}.")
    self.where = {}
    for file in files:
      try:
        handle = safe_open(file, framework="numpy")
        names = list(handle.keys())
      except Exception as e:  # pylint: disable=broad-except
        raise ModelFileError(
            f"Cannot read {file} (truncated or corrupt?): {e}"
        ) from e
      self.where.update({name: (file, handle) for name in names})

  def __contains__(self, name: str) -> bool:
    return name in self.where

  def get(self, name: str) -> np.ndarray:
    """Tensor ``name`` as float32 (raises ModelFileError if unusable)."""
    if name not in self.where:
      raise ModelFileError(f"Checkpoint {self.path} lacks tensor {name}.")
    file, handle = self.where[name]
    try:
      dtype = handle.get_slice(name).get_dtype()
      if dtype not in _FLOAT_DTYPES:
        raise ModelFileError(
            f"Tensor {name} in {file} has dtype {dtype}: quantised or "
            f"integer weights are not supported (only {_FLOAT_DTYPES})."
        )
      return np.asarray(handle.get_tensor(name), np.float32)
    except ModelFileError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise ModelFileError(
          f"Cannot read tensor {name} from {file} (truncated or corrupt?): "
          f"{e}"
      ) from e


def _decoder_prefix(tensors: _Tensors) -> str:
  for prefix in _PREFIXES:
    if prefix + "embed_tokens.weight" in tensors:
      return prefix
  raise ModelFileError(
      f"Checkpoint {tensors.path} lacks the token embeddings (looked for "
      f"{[p + 'embed_tokens.weight' for p in _PREFIXES]})."
  )


def _hf_params(tensors: _Tensors, config: llama_lib.LlamaConfig, gemma: bool):
  """Hugging Face tensors ([out, in] weights) as the ``Llama`` state."""
  get = tensors.get
  offset = np.float32(1.0 if gemma else 0.0)

  def norm(name):  # Gemma's RMSNorm scales by 1 + w
    return get(name) + offset

  c = config
  p = _decoder_prefix(tensors)
  params = {
      "embed": get(p + "embed_tokens.weight"),
      "final_norm": norm(p + "norm.weight"),
      "blocks": {},
  }
  if not c.tie_word_embeddings:
    head = next((h for h in _HEADS if h in tensors), _HEADS[0])
    params["lm_head"] = get(head).T
  for i in range(c.num_layers):
    l = f"{p}layers.{i}."
    a = l + "self_attn."
    block = {
        "attn_norm": norm(l + "input_layernorm.weight"),
        "wqkv": np.concatenate(
            [get(a + f"{n}_proj.weight") for n in "qkv"], axis=0
        ).T,
        "wo": get(a + "o_proj.weight").T,
        "w_gate_up": np.concatenate(
            [get(l + "mlp.gate_proj.weight"), get(l + "mlp.up_proj.weight")],
            axis=0,
        ).T,
        "w_down": get(l + "mlp.down_proj.weight").T,
    }
    if c.sandwich_norms:
      block["attn_post_norm"] = norm(l + "post_attention_layernorm.weight")
      block["mlp_norm"] = norm(l + "pre_feedforward_layernorm.weight")
      block["mlp_post_norm"] = norm(l + "post_feedforward_layernorm.weight")
    else:
      block["mlp_norm"] = norm(l + "post_attention_layernorm.weight")
    if c.qk_norm:
      block["q_norm"] = norm(a + "q_norm.weight")
      block["k_norm"] = norm(a + "k_norm.weight")
    if c.attention_bias:
      block["bqkv"] = np.concatenate(
          [get(a + f"{n}_proj.bias") for n in "qkv"], axis=0
      )
    if c.attention_out_bias:
      block["bo"] = get(a + "o_proj.bias")
    params["blocks"][i] = block
  return params


def _hf_tokenizer(path: str):
  if not os.path.isfile(os.path.join(path, "tokenizer.json")):
    return None
  import transformers  # pylint: disable=g-import-not-at-top

  try:
    return transformers.AutoTokenizer.from_pretrained(path)
  except Exception:  # pylint: disable=broad-except
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_file=os.path.join(path, "tokenizer.json")
    )
    config_path = os.path.join(path, "tokenizer_config.json")
    if os.path.isfile(config_path):
      with open(config_path) as f:
        template = json.load(f).get("chat_template")
      if template:
        tokenizer.chat_template = template
    return tokenizer


def _read_config(path: str):
  """The transformers config of a directory, model_type checked first."""
  import transformers  # pylint: disable=g-import-not-at-top

  config_path = os.path.join(path, "config.json")
  if not os.path.isfile(config_path):
    raise ModelFileError(f"No config.json in {path}.")
  try:
    with open(config_path) as f:
      raw = json.load(f)
  except (OSError, ValueError) as e:
    raise ModelFileError(f"Cannot read {config_path}: {e}") from e
  model_type = raw.get("model_type") if isinstance(raw, dict) else None
  if model_type not in SUPPORTED_HF_MODEL_TYPES:
    raise ModelFileError(
        f"Unsupported model_type {model_type!r} in {config_path}: only "
        f"{SUPPORTED_HF_MODEL_TYPES}."
    )
  try:
    return transformers.AutoConfig.from_pretrained(path)
  except Exception as e:  # pylint: disable=broad-except
    raise ModelFileError(f"Cannot read {config_path}: {e}") from e


def load_hf_dir(path: str, *, dtype=jnp.float32) -> checkpoint.LoadedModel:
  """Loads a Hugging Face checkpoint directory without torch.

  Args:
    path: a directory with ``config.json`` and ``*.safetensors`` (and
      optionally ``tokenizer.json``, ``tokenizer_config.json``).
    dtype: parameter/compute dtype.

  Returns:
    ``LoadedModel(model, config, tokenizer)``; tokenizer None when the
    directory has no ``tokenizer.json``.

  Raises:
    ModelFileError: missing or unreadable files; an unsupported model type,
      rope type, quantisation or feature.
  """
  path = os.fspath(path)
  hf_cfg = _read_config(path)
  config = hf_config(hf_cfg, dtype=dtype)
  tensors = _Tensors(path)
  if not config.tie_word_embeddings and not any(h in tensors for h in _HEADS):
    config = dataclasses.replace(config, tie_word_embeddings=True)
  params = _hf_params(tensors, config, hf_cfg.model_type in _GEMMA)
  model = checkpoint.build_model(config, params)
  return checkpoint.LoadedModel(model, config, _hf_tokenizer(path))
