"""Llama-family causal LMs in Flax NNX: loading, scoring, sampling, tilting.

This package knows nothing of JitRL; ``jitrl_jax.agents`` is where the LM and
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
from jitrl_jax.models.sampling import decode
from jitrl_jax.models.sampling import generate
from jitrl_jax.models.sampling import generate_fn
from jitrl_jax.models.sampling import GenerateOutput
from jitrl_jax.models.sampling import sample_logits
from jitrl_jax.models.sampling import SamplingState
from jitrl_jax.models.scoring import bucket_size
from jitrl_jax.models.scoring import CANDIDATE_COUNT_BUCKETS
from jitrl_jax.models.scoring import CANDIDATE_LENGTH_BUCKETS
from jitrl_jax.models.scoring import pad_candidates
from jitrl_jax.models.scoring import pad_prompt
from jitrl_jax.models.scoring import PROMPT_BUCKETS
from jitrl_jax.models.scoring import score_candidates
from jitrl_jax.models.scoring import score_candidates_batch
from jitrl_jax.models.scoring import score_candidates_fn
from jitrl_jax.models import tilting

__all__ = (
    "apply",
    "bucket_size",
    "CANDIDATE_COUNT_BUCKETS",
    "CANDIDATE_LENGTH_BUCKETS",
    "decode",
    "default_gguf_path",
    "encode_chat",
    "generate",
    "generate_fn",
    "GenerateOutput",
    "init_cache",
    "KVCache",
    "Llama",
    "LlamaConfig",
    "load_gguf",
    "load_hf_dir",
    "LoadedModel",
    "ModelFileError",
    "pad_candidates",
    "pad_prompt",
    "PROMPT_BUCKETS",
    "sample_logits",
    "SamplingState",
    "score_candidates",
    "score_candidates_batch",
    "score_candidates_fn",
    "tilting",
)
