"""Llama-family causal LMs in Flax NNX: loading, candidate scoring, sampling.

This package knows nothing of JitRL; ``jitrl_jax.agent`` is where the LM and
the policy meet.
"""

from jitrl_jax.models.llama import apply
from jitrl_jax.models.llama import init_cache
from jitrl_jax.models.llama import KVCache
from jitrl_jax.models.llama import Llama
from jitrl_jax.models.llama import LlamaConfig
from jitrl_jax.models.loading import default_gguf_path
from jitrl_jax.models.loading import encode_chat
from jitrl_jax.models.loading import load_gguf
from jitrl_jax.models.loading import load_hf_dir
from jitrl_jax.models.loading import LoadedModel
from jitrl_jax.models.loading import ModelFileError

__all__ = (
    "apply",
    "default_gguf_path",
    "encode_chat",
    "init_cache",
    "KVCache",
    "Llama",
    "LlamaConfig",
    "load_gguf",
    "load_hf_dir",
    "LoadedModel",
    "ModelFileError",
)
