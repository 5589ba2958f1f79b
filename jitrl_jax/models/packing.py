"""Packed candidate scoring: real tokens end to end, after a reused head.

``scoring.candidate_token_logprobs_batch`` lays a prompt padded to its
bucket and a [C, T] grid of candidate slots into one pass, so most of a text
game's pass is padding (a 400-token prompt padded to 512, 20 candidates to
32 slots of 8 tokens: 800 positions for about 500 real tokens). Here the
prompt's real tokens and every candidate's real tokens are laid end to end
in one sequence padded once, to a total-length bucket (``step_bucket``);
segment ids give the block-causal mask (prompt tokens causal among
themselves, each candidate's tokens see the prompt and their own earlier
tokens), each candidate's tokens sit at positions ``prompt_len + t``, and
the output projection runs only at the predicting positions, gathered into
a second bucket. The same log-probabilities as the padded pass.

The prompt head that every step shares (the chat template's system turn) is
encoded once per run (``encode_prefix``) and its keys and values reused
(``Llama.__call__(prefix=)``): the step's text and the candidates are
encoded after it, at positions shifted by its length. Exact as well.

Dimension letters: L prompt, C candidates, T candidate tokens, N packed
length, K predicting positions, P prefix, D hidden.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jitrl_jax.models import llama as llama_lib
from jitrl_jax.models import scoring

# Total-length buckets of the packed layout: multiples of 32 up to 512, of 64
# up to 1024, then of 128 (at most 1/8 of padding past 256 tokens).
PACKED_LENGTH_STEPS = ((512, 32), (1024, 64), (None, 128))
# Predicting-position buckets (the output projection's rows): multiples of 16
# up to 128, then of 32.
PACKED_TARGET_STEPS = ((128, 16), (None, 32))


def step_bucket(n: int, steps=PACKED_LENGTH_STEPS) -> int:
  """``n`` rounded up to the step of its range (``steps``: (upper, step))."""
  n = max(int(n), 1)
  for upper, step in steps:
    if upper is None or n <= upper:
      return -(-n // step) * step
  raise AssertionError("the last step has no upper bound")


def packed_layout(
    prompt_len: int, candidate_tokens: int, *, extra_tokens: int = 0
) -> tuple[int, int]:
  """The static sizes (N, K) of a packed scoring call.

  Args:
    prompt_len: real prompt tokens (after any reused prefix).
    candidate_tokens: real tokens of the candidates known on the host.
    extra_tokens: an upper bound on tokens of candidates that join on the
      device (e.g. memory actions: slots x their width).

  Returns:
    (total_len N, num_targets K): the bucketed sequence length and number of
    predicting positions.
  """
  k = candidate_tokens + extra_tokens
  return (
      step_bucket(prompt_len + k, PACKED_LENGTH_STEPS),
      step_bucket(k, PACKED_TARGET_STEPS),
  )


def packed_token_logprobs(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    prompt_ids: jax.Array,
    prompt_len: jax.Array,
    candidate_ids: jax.Array,
    candidate_lengths: jax.Array,
    *,
    total_len: int,
    num_targets: int,
    prefix: llama_lib.KVCache | None = None,
    max_logits_bytes: int = scoring.MAX_LOGITS_BYTES,
) -> jax.Array:
  """Per-token log-probabilities of C candidates, packed (one prompt).

  The same ``lp[c, t] = log pi(a_{c,t} | x, a_{c,<t})`` as
  ``scoring.candidate_token_logprobs_batch``, from a shorter pass: the prompt's real
  tokens and then every candidate's real tokens end to end, in one sequence
  of ``total_len`` positions (segment 0 the prompt, segment c + 1 candidate
  c, the rest padding), with the block-causal mask of those segments and
  each candidate's tokens at positions ``prompt_len + t``. The packing
  happens on the device (an exclusive cumulative sum of the lengths), so
  candidates whose lengths are only known there (memory actions) pack too.
  The output projection runs on ``num_targets`` gathered predicting
  positions only.

  With a ``prefix`` (a ``KVCache`` of P tokens at positions ``0 .. P-1``,
  e.g. the chat template's system turn, encoded once by ``encode_prefix``),
  ``prompt_ids`` is the prompt after those P tokens and everything sits at
  positions shifted by P: the same log-probabilities as a full pass over
  prefix + prompt.

  Args:
    graphdef: the ``Llama`` graph definition.
    state: its parameters.
    prompt_ids: [L] int32 right-padded prompt (after the prefix).
    prompt_len: [] int32 real prompt length (>= 1).
    candidate_ids: [C, T] int32 right-padded candidates.
    candidate_lengths: [C] int32; 0 masks a candidate.
    total_len: static N >= prompt_len + sum(candidate_lengths).
    num_targets: static K >= sum(candidate_lengths).
    prefix: the reused prefix's cache (batch 1), or None.
    max_logits_bytes: static, as ``scoring.target_log_probs``.

  Returns:
    [C, T] float32 (0 at padding). Tokens that do not fit N or K are
    dropped (their entries are 0): size them with ``packed_layout``.
  """
  model = nnx.merge(graphdef, state)
  l = prompt_ids.shape[0]
  c, t = candidate_ids.shape
  n, k = int(total_len), int(num_targets)
  plen = jnp.asarray(prompt_len, jnp.int32)
  lens = candidate_lengths.astype(jnp.int32)
  starts = jnp.cumsum(lens) - lens  # [C] exclusive
  tok = jnp.arange(t, dtype=jnp.int32)[None, :]  # [1, T]
  real = tok < lens[:, None]  # [C, T]
  at = jnp.where(real, plen + starts[:, None] + tok, n)  # packed index
  slot = jnp.where(real, starts[:, None] + tok, k)  # target slot
  idx = jnp.arange(n, dtype=jnp.int32)
  in_prompt = idx < plen
  m = min(l, n)
  head = jnp.zeros((n,), jnp.int32).at[:m].set(prompt_ids[:m].astype(jnp.int32))
  tokens = (
      jnp.where(in_prompt, head, 0)
      .at[at]
      .set(candidate_ids.astype(jnp.int32), mode="drop")
  )
  owner = jnp.broadcast_to(
      jnp.arange(1, c + 1, dtype=jnp.int32)[:, None], (c, t)
  )
  seg = jnp.where(in_prompt, 0, -1).at[at].set(owner, mode="drop")
  offset = 0 if prefix is None else prefix.valid.shape[1]
  positions = (
      jnp.where(in_prompt, idx, 0)
      .at[at]
      .set(jnp.broadcast_to(plen + tok, (c, t)), mode="drop")
      + offset
  )
  mask = (
      (seg[None, :] >= 0)
      & (seg[:, None] >= 0)
      & ((seg[None, :] == 0) | (seg[None, :] == seg[:, None]))
  )
  hidden, _ = model(
      tokens[None],
      positions[None],
      attention_mask=mask[None],
      return_hidden=True,
      prefix=prefix,
  )
  pred = jnp.where(tok == 0, plen - 1, at - 1)  # [C, T]
  pred_k = jnp.zeros((k,), jnp.int32).at[slot].set(pred, mode="drop")
  target_k = (
      jnp.zeros((k,), jnp.int32)
      .at[slot]
      .set(candidate_ids.astype(jnp.int32), mode="drop")
  )
  lp_k = scoring.target_log_probs(
      model,
      hidden[0, pred_k],
      target_k,
      max_logits_bytes=max_logits_bytes,
  )
  fits = real & (at < n) & (slot < k)
  return jnp.where(fits, lp_k[jnp.minimum(slot, k - 1)], 0.0)


def packed_score_fn(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    prompt_ids: jax.Array,
    prompt_len: jax.Array,
    candidate_ids: jax.Array,
    candidate_lengths: jax.Array,
    *,
    total_len: int,
    num_targets: int,
    prefix: llama_lib.KVCache | None = None,
    normalise: bool = False,
) -> jax.Array:
  """``scoring.score_candidates_fn`` on the packed layout (``packed_token_logprobs``).

  Returns:
    [C] float32 summed log-probabilities, ``-inf`` for masked candidates.
  """
  token_logp = packed_token_logprobs(
      graphdef,
      state,
      prompt_ids,
      prompt_len,
      candidate_lengths=candidate_lengths,
      candidate_ids=candidate_ids,
      total_len=total_len,
      num_targets=num_targets,
      prefix=prefix,
  )
  return scoring.sum_scores(token_logp, candidate_lengths, normalise=normalise)


def encode_prefix(
    graphdef: nnx.GraphDef, state: nnx.State, prefix_ids: jax.Array
) -> llama_lib.KVCache:
  """The cache of a prompt head shared by every prompt (batch 1).

  Args:
    graphdef: the ``Llama`` graph definition.
    state: its parameters.
    prefix_ids: [P] int32, all real.

  Returns:
    A ``KVCache`` of P slots (positions ``0 .. P-1``), for the ``prefix`` of
    ``packed_token_logprobs`` and ``Llama.__call__``.
  """
  model = nnx.merge(graphdef, state)
  p = prefix_ids.shape[0]
  cache = llama_lib.init_cache(model.config, 1, p)
  _, cache = model(
      prefix_ids[None].astype(jnp.int32),
      jnp.arange(p, dtype=jnp.int32)[None],
      cache,
      return_hidden=True,
  )
  return cache
