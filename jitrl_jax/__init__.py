"""jitrl-jax: JAX-native, functional reference implementation of JitRL.

JitRL (arXiv 2601.18510) lets a frozen LLM agent improve from episode to
episode with no gradient step: a memory of (state, action, return) experiences
is searched by Jaccard similarity over padded token-id sets, neighbour returns
give an advantage A for each candidate action, and the LM's action logits
become z + beta * A, the closed-form maximiser of E_pi[A] - KL(pi||pi_theta) /
beta.

The core (this namespace) imports only jax and numpy. The causal LM lives in
`jitrl_jax.models`, the environments in `jitrl_jax.envs`, the text-game agent
in `jitrl_jax.agents`, and the sharded memory in `jitrl_jax.sharding`; import
them explicitly.
"""

from jitrl_jax import advantage
from jitrl_jax import config
from jitrl_jax import memory
from jitrl_jax import policy
from jitrl_jax import retrieval
from jitrl_jax import returns
from jitrl_jax import similarity
from jitrl_jax import token_sets
from jitrl_jax import update
from jitrl_jax.advantage import AdvantageOutput
from jitrl_jax.advantage import advantages
from jitrl_jax.advantage import memory_action_candidates
from jitrl_jax.advantage import reference_advantages
from jitrl_jax.memory import MemoryFileError
from jitrl_jax.memory import MemoryState
from jitrl_jax.config import Hyper
from jitrl_jax.config import Settings
from jitrl_jax.policy import ActDiagnostics
from jitrl_jax.policy import ActOutput
from jitrl_jax.policy import JitRL
from jitrl_jax.policy import jitrl
from jitrl_jax.retrieval import Neighbours
from jitrl_jax.retrieval import reference_threshold
from jitrl_jax.retrieval import top_k_neighbours
from jitrl_jax.retrieval import top_k_neighbours_bitset
from jitrl_jax.returns import discounted_returns
from jitrl_jax.returns import reference_returns
from jitrl_jax.similarity import bitset_jaccard
from jitrl_jax.similarity import jaccard
from jitrl_jax.similarity import memory_similarity
from jitrl_jax.similarity import weighted_jaccard
from jitrl_jax.token_sets import PAD
from jitrl_jax.token_sets import TokenSet
from jitrl_jax.token_sets import stable_hash
from jitrl_jax.token_sets import text_token_set
from jitrl_jax.update import beta_for_kl_budget
from jitrl_jax.update import kl_divergence
from jitrl_jax.update import kl_regularised_objective
from jitrl_jax.update import modulate_logits
from jitrl_jax.update import reference_choice
from jitrl_jax.update import reference_weight

__version__ = "0.1.0"

__all__ = (
    "ActDiagnostics",
    "ActOutput",
    "AdvantageOutput",
    "Hyper",
    "JitRL",
    "MemoryFileError",
    "MemoryState",
    "Neighbours",
    "PAD",
    "Settings",
    "TokenSet",
    "advantage",
    "advantages",
    "beta_for_kl_budget",
    "bitset_jaccard",
    "config",
    "discounted_returns",
    "jaccard",
    "jitrl",
    "kl_divergence",
    "kl_regularised_objective",
    "memory",
    "memory_action_candidates",
    "memory_similarity",
    "modulate_logits",
    "policy",
    "reference_advantages",
    "reference_choice",
    "reference_returns",
    "reference_threshold",
    "reference_weight",
    "retrieval",
    "returns",
    "similarity",
    "stable_hash",
    "text_token_set",
    "token_sets",
    "top_k_neighbours",
    "top_k_neighbours_bitset",
    "update",
    "weighted_jaccard",
)
