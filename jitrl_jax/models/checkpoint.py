"""What every checkpoint loader shares: its error, its result, the model build.

``loading`` (GGUF files) and ``hf_loading`` (Hugging Face directories) both
turn a file's tensors into a dict of numpy arrays laid out as the ``Llama``
state and call ``build_model``; both raise ``ModelFileError``.
"""

from typing import Any, NamedTuple

import jax.numpy as jnp
from flax import nnx

from jitrl_jax.models import llama as llama_lib


class ModelFileError(ValueError):
  """A model file is missing, corrupt, unsupported or fails its hash check."""


class LoadedModel(NamedTuple):
  """A loaded causal LM."""

  model: llama_lib.Llama
  config: llama_lib.LlamaConfig
  tokenizer: Any  # transformers.PreTrainedTokenizerFast, or None


def build_model(config: llama_lib.LlamaConfig, params: dict) -> llama_lib.Llama:
  """A ``Llama`` whose parameters are the given numpy arrays.

  Args:
    config: the model config.
    params: nested dict of arrays, as ``nnx.to_pure_dict`` of the state
      (blocks keyed by layer index).

  Returns:
    The model, parameters cast to ``config.dtype``.

  Raises:
    ModelFileError: a parameter is missing or has the wrong shape.
  """
  abstract = nnx.eval_shape(lambda: llama_lib.Llama(config, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  expected = nnx.to_pure_dict(state)

  def convert(exp, got, where):
    if isinstance(exp, dict):
      missing = set(exp) - set(got)
      if missing:
        raise ModelFileError(f"Missing parameters {where}{sorted(missing)}.")
      return {k: convert(exp[k], got[k], f"{where}{k}.") for k in exp}
    if tuple(got.shape) != tuple(exp.shape):
      raise ModelFileError(
          f"Parameter {where[:-1]} has shape {got.shape}, expected "
          f"{exp.shape}."
      )
    return jnp.asarray(got, dtype=exp.dtype)

  nnx.replace_by_pure_dict(state, convert(expected, params, ""))
  return nnx.merge(graphdef, state)
