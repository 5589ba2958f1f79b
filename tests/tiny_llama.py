"""Small Llama models with random weights, shared by the LM tests.

Weights are drawn with NumPy and put into an abstract (eval_shape) model, so
building one compiles nothing: the tests stay fast on CPU.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax.models import llama as llama_lib


def random_llama(
    config: llama_lib.LlamaConfig, *, seed: int = 0, scale: float = 0.3
) -> llama_lib.Llama:
  """A Llama of `config` with N(0, scale^2) weights (norm scales 1 + noise)."""
  abstract = nnx.eval_shape(lambda: llama_lib.Llama(config, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  rng = np.random.default_rng(seed)
  values = jax.tree.map(
      lambda x: jnp.asarray(
          (1.0 if x.ndim == 1 else 0.0)
          + scale * rng.standard_normal(x.shape, np.float32),
          x.dtype,
      ),
      nnx.to_pure_dict(state),
  )
  nnx.replace_by_pure_dict(state, values)
  return nnx.merge(graphdef, state)


# The small config the scoring and tilting tests share.
TINY = llama_lib.LlamaConfig(
    vocab_size=50,
    hidden_size=32,
    intermediate_size=48,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    max_position_embeddings=96,
)


@jax.jit
def forward_logits(graphdef, state, tokens, length):
  """Logits at every position of a right-padded sequence [L], no cache: [L, V]."""
  mask = (jnp.arange(tokens.shape[0]) < length)[None]
  logits, _ = llama_lib.apply(
      graphdef,
      state,
      tokens[None],
      jnp.arange(tokens.shape[0])[None],
      attention_mask=mask,
  )
  return logits[0]


@jax.jit
def forward_last_logits(graphdef, state, tokens, length):
  """The next-token logits after a right-padded sequence [L], no cache: [V]."""
  return forward_logits(graphdef, state, tokens, length)[length - 1]
