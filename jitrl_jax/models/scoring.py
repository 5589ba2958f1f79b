"""Log-probabilities of C candidate continuations in one forward pass.

For a prompt ``x`` and candidates ``a_1 .. a_C`` (token sequences), the score
of candidate ``c`` is its summed log-probability after the prompt,

  z_c = sum_{t < T_c} log pi(a_{c,t} | x, a_{c,<t}),

optionally divided by its length ``T_c`` (``normalise=True``).
``candidate_token_logprobs_batch`` gives the per-token terms before the sum
(every prefix's log-probability at once).

All candidates share the prompt: the prompt and every candidate are laid out
as one sequence ``[x (L) | a_1 (T) | ... | a_C (T)]`` with a block attention
mask. Prompt tokens attend causally to the prompt; candidate tokens attend to
the whole (real) prompt and causally to their own candidate only; candidate
tokens sit at positions ``len(x) + t``. One forward pass of ``L + C T`` tokens
therefore gives every ``z_c`` — the prompt is encoded once instead of C times.
The output projection is applied only to the ``C T`` predicting positions.

Shapes are padded to buckets (``PROMPT_BUCKETS`` for L,
``CANDIDATE_LENGTH_BUCKETS`` for T, ``CANDIDATE_COUNT_BUCKETS`` for C) so that
one compilation serves a whole episode. Padded candidates (length 0) score
``-inf``.

Dimension letters: B batch of prompts, L prompt length, C candidates,
T candidate tokens, N = L + C T, D hidden, V vocabulary.

Batching prompts: ``score_candidates_batch`` is natively batched over B and is
the efficient form. ``score_candidates_fn`` is the unbatched kernel; it is
also ``jax.vmap``-able over prompts with the parameters unbatched:
``jax.vmap(score_candidates_fn, in_axes=(None, None, 0, 0, 0, 0))``.
"""

import math
from typing import Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jitrl_jax.models import llama as llama_lib

PROMPT_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
CANDIDATE_LENGTH_BUCKETS = (4, 8, 16, 32, 64)
CANDIDATE_COUNT_BUCKETS = (4, 8, 16, 32, 64, 128)
# Most bytes of float32 logits `target_log_probs` builds at once (above it,
# the log-sum-exp runs over vocabulary chunks).
MAX_LOGITS_BYTES = 256 * 2**20


def bucket_size(n: int, buckets: Sequence[int]) -> int:
  """The smallest bucket ``>= n``; past the last, a multiple of the last.

  Args:
    n: a length or count (>= 0).
    buckets: ascending bucket sizes.

  Returns:
    The padded size.
  """
  for b in buckets:
    if n <= b:
      return int(b)
  last = int(buckets[-1])
  return -(-n // last) * last


def pad_prompt(
    prompt_ids: Sequence[int] | np.ndarray,
    *,
    length: int | None = None,
    buckets: Sequence[int] = PROMPT_BUCKETS,
    pad_id: int = 0,
) -> tuple[np.ndarray, int]:
  """Right-pads a prompt to its bucket length.

  Args:
    prompt_ids: [n] token ids.
    length: pad to this length instead of a bucket.
    buckets: prompt buckets.
    pad_id: padding id.

  Returns:
    (ids [L] int32, n).
  """
  ids = np.asarray(prompt_ids, np.int32).reshape(-1)
  n = ids.shape[0]
  size = bucket_size(n, buckets) if length is None else length
  if size < n:
    raise ValueError(f"Prompt of {n} tokens does not fit length {size}.")
  out = np.full((size,), pad_id, np.int32)
  out[:n] = ids
  return out, n


def pad_candidates(
    candidates: Sequence[Sequence[int]],
    *,
    num_candidates: int | None = None,
    num_tokens: int | None = None,
    count_buckets: Sequence[int] = CANDIDATE_COUNT_BUCKETS,
    length_buckets: Sequence[int] = CANDIDATE_LENGTH_BUCKETS,
    pad_id: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
  """Packs ragged candidate token lists into a padded, bucketed array.

  Args:
    candidates: C lists of token ids (each non-empty).
    num_candidates: padded C (default: its bucket). Extra rows have length 0.
    num_tokens: padded T (default: the bucket of the longest candidate).
    count_buckets: buckets for C.
    length_buckets: buckets for T.
    pad_id: padding id.

  Returns:
    (ids [C', T'] int32, lengths [C'] int32).
  """
  if not candidates:
    raise ValueError("The candidate list is empty.")
  lengths = [len(c) for c in candidates]
  if min(lengths) == 0:
    raise ValueError("A candidate has no tokens.")
  c = (
      bucket_size(len(candidates), count_buckets)
      if num_candidates is None
      else num_candidates
  )
  t = (
      bucket_size(max(lengths), length_buckets)
      if num_tokens is None
      else (num_tokens)
  )
  if c < len(candidates) or t < max(lengths):
    raise ValueError(
        f"{len(candidates)} candidates of up to {max(lengths)} tokens do not "
        f"fit [{c}, {t}]."
    )
  ids = np.full((c, t), pad_id, np.int32)
  lens = np.zeros((c,), np.int32)
  for i, cand in enumerate(candidates):
    ids[i, : len(cand)] = cand
    lens[i] = len(cand)
  return ids, lens


def candidate_layout_mask(
    prompt_len: int, num_candidates: int, num_tokens: int
) -> jax.Array:
  """The [N, N] block attention pattern of ``[prompt | cand_1 | ...]``.

  Query ``q`` may attend key ``k`` iff both are prompt tokens with
  ``k <= q``, or ``k`` is a prompt token and ``q`` a candidate token, or
  both belong to the same candidate with ``k <= q``. (Padding is masked
  separately.)

  Args:
    prompt_len: L (the padded prompt length).
    num_candidates: C.
    num_tokens: T.

  Returns:
    [N, N] bool, N = L + C T.
  """
  l, c, t = prompt_len, num_candidates, num_tokens
  seg = jnp.concatenate(
      [jnp.zeros((l,), jnp.int32), jnp.repeat(jnp.arange(1, c + 1), t)]
  )
  idx = jnp.concatenate([jnp.arange(l), jnp.tile(jnp.arange(t), c)])
  causal = idx[None, :] <= idx[:, None]
  from_prompt = (seg[None, :] == 0) & ((seg[:, None] != 0) | causal)
  same_candidate = (seg[None, :] == seg[:, None]) & (seg[:, None] != 0) & causal
  return from_prompt | same_candidate


def candidate_token_logprobs_batch(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    prompt_ids: jax.Array,
    prompt_lens: jax.Array,
    candidate_ids: jax.Array,
    candidate_lengths: jax.Array,
    *,
    return_log_softmax: bool = False,
    max_logits_bytes: int = MAX_LOGITS_BYTES,
) -> jax.Array | tuple[jax.Array, jax.Array]:
  """Per-token log-probabilities of C candidates after B prompts, one pass.

  The teacher-forced pass of the module docstring, before the sum:

    lp[b, c, t] = log pi(a_{c,t} | x_b, a_{c,<t})    (t < T_c; 0 past T_c)

  so ``sum_{t < k} lp[b, c, t]`` is the log-probability of the first k tokens
  of candidate c, for every prefix length k at once. Pure and jittable.

  Args:
    graphdef: the ``Llama`` graph definition.
    state: its parameters.
    prompt_ids: [B, L] int32 right-padded prompts.
    prompt_lens: [B] int32 real prompt lengths (>= 1).
    candidate_ids: [B, C, T] int32 right-padded candidates.
    candidate_lengths: [B, C] int32 tokens per candidate; 0 masks it.
    return_log_softmax: static; also return the whole next-token
      distribution at every predicting position (it is materialised, so
      `max_logits_bytes` does not apply).
    max_logits_bytes: static; above this size the [B, C T, V] logits are
      not built at once: the log-sum-exp runs over vocabulary chunks
      (`target_log_probs`; a 262k vocabulary, e.g. Gemma 3's, reaches the
      default at 256 predicting positions).

  Returns:
    [B, C, T] float32 ``lp`` (0 at padding). With ``return_log_softmax``, a
    pair ``(lp, log_softmax)`` where ``log_softmax`` [B, C, T, V] float32 is
    ``log pi(. | x_b, a_{c,<t})`` (rows past ``T_c`` are meaningless).
  """
  b, l = prompt_ids.shape
  _, c, t = candidate_ids.shape
  chex.assert_shape(prompt_lens, (b,))
  chex.assert_shape(candidate_lengths, (b, c))
  model = nnx.merge(graphdef, state)
  prompt_lens = prompt_lens.astype(jnp.int32)
  candidate_lengths = candidate_lengths.astype(jnp.int32)
  tok_idx = jnp.tile(jnp.arange(t), c)  # [C T]
  prompt_real = jnp.arange(l)[None, :] < prompt_lens[:, None]  # [B, L]
  cand_real = tok_idx[None, :] < jnp.repeat(candidate_lengths, t, axis=1)
  real = jnp.concatenate([prompt_real, cand_real], axis=1)  # [B, N]
  tokens = jnp.concatenate(
      [prompt_ids, candidate_ids.reshape(b, c * t)], axis=1
  ).astype(jnp.int32)
  tokens = jnp.where(real, tokens, 0)
  positions = jnp.concatenate(
      [
          jnp.broadcast_to(jnp.arange(l), (b, l)),
          prompt_lens[:, None] + tok_idx[None, :],
      ],
      axis=1,
  )
  mask = candidate_layout_mask(l, c, t)[None] & real[:, None, :]
  hidden, _ = model(tokens, positions, attention_mask=mask, return_hidden=True)
  # Token t of candidate c is predicted at the previous token: the last
  # prompt token for t = 0, else candidate token t - 1.
  pred = jnp.where(
      tok_idx[None, :] == 0,
      prompt_lens[:, None] - 1,
      l + jnp.arange(c * t)[None, :] - 1,
  )  # [B, C T]
  h = jnp.take_along_axis(hidden, pred[:, :, None], axis=1)  # [B, C T, D]
  targets = jnp.where(cand_real, candidate_ids.reshape(b, c * t), 0)
  if return_log_softmax:
    logp = jax.nn.log_softmax(model.unembed(h), axis=-1)  # [B, C T, V]
    token_logp = jnp.take_along_axis(logp, targets[:, :, None], axis=2)[..., 0]
  else:
    token_logp = target_log_probs(
        model, h, targets, max_logits_bytes=max_logits_bytes
    )
  token_logp = jnp.where(cand_real, token_logp, 0.0).reshape(b, c, t)
  if return_log_softmax:
    return token_logp, logp.reshape(b, c, t, logp.shape[-1])
  return token_logp


def vocab_chunk(positions: int, vocab: int, max_logits_bytes: int) -> int:
  """The vocabulary chunk of `target_log_probs`: V itself when [positions, V]
  float32 logits fit in the budget, else the largest divisor of V whose
  [positions, chunk] logits do (at least 1)."""
  if positions * vocab * 4 <= max_logits_bytes:
    return vocab
  fit = max(1, max_logits_bytes // (4 * max(positions, 1)))
  return max(d for d in range(1, min(fit, vocab) + 1) if vocab % d == 0)


def target_log_probs(
    model: llama_lib.Llama,
    hidden: jax.Array,
    targets: jax.Array,
    *,
    max_logits_bytes: int = MAX_LOGITS_BYTES,
) -> jax.Array:
  """log softmax(unembed(hidden))[target], within a memory budget.

  When [..., V] float32 logits of all the positions fit in
  `max_logits_bytes`, they are computed at once; otherwise the log-sum-exp
  runs over vocabulary chunks (`vocab_chunk`) in a `lax.scan` with a running
  maximum and sum, so at most [positions, chunk] logits exist at a time, and
  the target's logit is one dot product per position. Equal to the one-shot
  form up to float32 rounding.

  Args:
    model: the `Llama` (its output projection and soft cap).
    hidden: [..., D] final-normed hidden states.
    targets: [...] int32 token ids.
    max_logits_bytes: static budget for the logits in memory.

  Returns:
    [...] float32 log-probabilities of the targets.
  """
  w = model.output_weights()  # [V, D]
  v, d = w.shape
  n = math.prod(hidden.shape[:-1])
  chunk = vocab_chunk(n, v, max_logits_bytes)
  if chunk == v:
    logp = jax.nn.log_softmax(model.unembed(hidden), axis=-1)
    return jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
  target_logit = model.cap_logits(
      jnp.einsum("...d,...d->...", hidden, jnp.take(w, targets, axis=0))
  )

  def step(carry, w_chunk):
    m, total = carry
    z = model.cap_logits(jnp.einsum("...d,vd->...v", hidden, w_chunk))
    m_new = jnp.maximum(m, jnp.max(z, axis=-1))
    total = total * jnp.exp(m - m_new) + jnp.sum(
        jnp.exp(z - m_new[..., None]), axis=-1
    )
    return (m_new, total), None

  init = (
      jnp.full(hidden.shape[:-1], -jnp.inf, jnp.float32),
      jnp.zeros(hidden.shape[:-1], jnp.float32),
  )
  (m, total), _ = jax.lax.scan(step, init, w.reshape(v // chunk, chunk, d))
  return target_logit - (m + jnp.log(total))


def score_candidates_batch(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    prompt_ids: jax.Array,
    prompt_lens: jax.Array,
    candidate_ids: jax.Array,
    candidate_lengths: jax.Array,
    *,
    normalise: bool = False,
) -> jax.Array:
  """Scores C candidates after each of B prompts, one forward pass in all.

  Pure and jittable; the parameters cross jit as ``nnx.split(model)``. The
  sum over t of ``candidate_token_logprobs_batch``.

  Args:
    graphdef: the ``Llama`` graph definition.
    state: its parameters.
    prompt_ids: [B, L] int32 right-padded prompts.
    prompt_lens: [B] int32 real prompt lengths (>= 1).
    candidate_ids: [B, C, T] int32 right-padded candidates.
    candidate_lengths: [B, C] int32 tokens per candidate; 0 masks it.
    normalise: divide each sum by the candidate's length.

  Returns:
    [B, C] float32 ``sum_t log pi(a_{c,t} | x, a_{c,<t})`` (or its mean);
    ``-inf`` where ``candidate_lengths == 0``.
  """
  candidate_lengths = candidate_lengths.astype(jnp.int32)
  token_logp = candidate_token_logprobs_batch(
      graphdef,
      state,
      prompt_ids,
      prompt_lens,
      candidate_ids,
      candidate_lengths,
  )
  return sum_scores(token_logp, candidate_lengths, normalise=normalise)


def sum_scores(
    token_logp: jax.Array, candidate_lengths: jax.Array, *, normalise: bool
) -> jax.Array:
  """[..., C, T] per-token log-probs -> [..., C] scores (sum, or mean with
  `normalise`), ``-inf`` where the length is 0."""
  lens = candidate_lengths.astype(jnp.int32)
  total = token_logp.sum(axis=-1)
  if normalise:
    total = total / jnp.maximum(lens, 1).astype(jnp.float32)
  return jnp.where(lens > 0, total, -jnp.inf)


def score_candidates_fn(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    prompt_ids: jax.Array,
    prompt_len: jax.Array,
    candidate_ids: jax.Array,
    candidate_lengths: jax.Array,
    *,
    normalise: bool = False,
) -> jax.Array:
  """Unbatched ``score_candidates_batch``: one prompt, C candidates.

  Pure, jittable and ``jax.vmap``-able over prompts
  (``in_axes=(None, None, 0, 0, 0, 0)``).

  Args:
    graphdef: the ``Llama`` graph definition.
    state: its parameters.
    prompt_ids: [L] int32 right-padded prompt.
    prompt_len: [] int32 real prompt length (>= 1).
    candidate_ids: [C, T] int32 right-padded candidates.
    candidate_lengths: [C] int32; 0 masks a candidate.
    normalise: divide each sum by the candidate's length.

  Returns:
    [C] float32 summed log-probabilities, ``-inf`` for masked candidates.
  """
  return score_candidates_batch(
      graphdef,
      state,
      prompt_ids[None],
      jnp.reshape(prompt_len, (1,)),
      candidate_ids[None],
      candidate_lengths[None],
      normalise=normalise,
  )[0]


_score_batch_jit = jax.jit(score_candidates_batch, static_argnames="normalise")


def _as_model(model) -> llama_lib.Llama:
  return getattr(model, "model", model)


def score_candidates(
    model,
    prompt_ids,
    prompt_len,
    candidate_ids,
    candidate_lengths,
    *,
    normalise: bool = False,
    prompt_buckets: Sequence[int] = PROMPT_BUCKETS,
    length_buckets: Sequence[int] = CANDIDATE_LENGTH_BUCKETS,
    count_buckets: Sequence[int] = CANDIDATE_COUNT_BUCKETS,
) -> jax.Array:
  """Scores C candidates after one prompt (jitted, bucketed shapes).

  The public, host-side boundary: it pads the prompt to a bucket of
  ``prompt_buckets``, the candidates to buckets of ``count_buckets`` x
  ``length_buckets``, runs the jitted ``score_candidates_batch`` and drops
  the padding. Calls with the same buckets reuse one compilation.

  Args:
    model: a ``Llama`` (or a ``LoadedModel``).
    prompt_ids: [L] int token ids (entries past ``prompt_len`` ignored).
    prompt_len: [] int, real prompt length (>= 1).
    candidate_ids: [C, T] int token ids, right-padded.
    candidate_lengths: [C] int; 0 masks a candidate.
    normalise: divide each sum by the candidate's length.
    prompt_buckets: buckets for L.
    length_buckets: buckets for T.
    count_buckets: buckets for C.

  Returns:
    [C] float32 ``sum_t log pi(a_{c,t} | prompt, a_{c,<t})``; ``-inf`` where
    ``candidate_lengths == 0``.

  Raises:
    ValueError: no candidates, an empty prompt, or prompt plus candidates
      longer than the model's context.
  """
  model = _as_model(model)
  config = model.config
  prompt_ids = np.asarray(prompt_ids, np.int32).reshape(-1)
  prompt_len = int(prompt_len)
  cand = np.asarray(candidate_ids, np.int32)
  lens = np.asarray(candidate_lengths, np.int32).reshape(-1)
  if cand.ndim != 2 or cand.shape[0] == 0 or lens.shape[0] == 0:
    raise ValueError(
        f"Need a non-empty candidate list [C, T]; got shape {cand.shape}."
    )
  if lens.shape[0] != cand.shape[0]:
    raise ValueError(
        f"candidate_lengths has {lens.shape[0]} entries for "
        f"{cand.shape[0]} candidates."
    )
  if np.any(lens < 0) or np.any(lens > cand.shape[1]):
    raise ValueError(f"candidate_lengths out of [0, {cand.shape[1]}].")
  if not 1 <= prompt_len <= prompt_ids.shape[0]:
    raise ValueError(
        f"prompt_len={prompt_len} must be in [1, {prompt_ids.shape[0]}]."
    )
  longest = int(lens.max())
  if prompt_len + longest > config.max_position_embeddings:
    raise ValueError(
        f"Prompt of {prompt_len} tokens plus candidates of {longest} tokens "
        f"is longer than the context ({config.max_position_embeddings})."
    )
  c = bucket_size(cand.shape[0], count_buckets)
  t = bucket_size(max(longest, 1), length_buckets)
  padded_cand = np.zeros((c, t), np.int32)
  padded_lens = np.zeros((c,), np.int32)
  tt = min(t, cand.shape[1])
  padded_cand[: cand.shape[0], :tt] = cand[:, :tt]
  padded_lens[: lens.shape[0]] = lens
  padded_prompt, _ = pad_prompt(prompt_ids[:prompt_len], buckets=prompt_buckets)
  graphdef, state = nnx.split(model)
  scores = _score_batch_jit(
      graphdef,
      state,
      jnp.asarray(padded_prompt)[None],
      jnp.asarray([prompt_len], jnp.int32),
      jnp.asarray(padded_cand)[None],
      jnp.asarray(padded_lens)[None],
      normalise=normalise,
  )
  return scores[0, : cand.shape[0]]
