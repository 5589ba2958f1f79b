"""Autoregressive generation in one ``lax.while_loop`` with a KV cache.

The loop sees the language model through one seam, as Flax's lm1b decoder
and the Gemma sampler do:

  tokens_to_logits(tokens [B], positions [B], cache) -> (logits [B, V], cache)

and edits the next-token logits at one point before sampling:

  logits_fn(step, logits [B, V], state: SamplingState) -> logits [B, V]

which is where token-level modulation plugs in (e.g. forbid a token, add a
bias). ``logits_fn`` is static (part of the compiled program); arrays it needs
that change between calls (a bias, a mask) go in ``logits_fn_state``, a pytree
carried as ``state.logits_fn_state``, so new values do not recompile.

Sampling is greedy (``temperature == 0``) or from
``softmax(logits / temperature)``, optionally restricted to the ``top_k``
largest logits. A row stops after emitting one of ``stop_ids``; the loop ends
when every row has stopped or ``max_new_tokens`` tokens were generated.

Prompts are batch-first and ragged, given as ``prompt_ids [B, L]`` plus
``prompt_lengths [B]``:

* ``padding="right"`` (default): row b's tokens are ``prompt_ids[b, :n_b]``;
* ``padding="left"``: row b's tokens are ``prompt_ids[b, L - n_b:]``.

Either way the real tokens get positions ``0 .. n_b - 1`` (cache slots), and
generated token ``s`` of row b sits at position ``n_b + s``; padding never
enters the cache, so both layouts give the same result.

Dimension letters: B batch, L prompt length, N new tokens, V vocabulary.
"""

from typing import Any, Callable, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jitrl_jax.models import llama as llama_lib
from jitrl_jax.models import scoring


class SamplingState(NamedTuple):
  """The carry of the decode loop (also passed to ``logits_fn``)."""

  step: jax.Array  # [] int32 tokens generated so far
  tokens: jax.Array  # [B, N] int32 generated tokens, pad_id after a stop
  lengths: jax.Array  # [B] int32 tokens generated per row (incl. the stop)
  done: jax.Array  # [B] bool row has emitted a stop id
  positions: jax.Array  # [B] int32 position of the next generated token
  logits: jax.Array  # [B, V] float32 logits of the next token
  cache: Any  # the model's decoding state (a KVCache)
  key: jax.Array  # PRNG key
  logits_fn_state: Any  # caller's pytree for logits_fn, passed through
  # [2, B] float32 running sums of the drawn tokens' log-probabilities
  # (after, before logits_fn), or None (see decode's return_log_probs).
  log_probs: Any = None


class GenerateOutput(NamedTuple):
  """Generated tokens (and, on request, their log-probabilities)."""

  tokens: jax.Array  # [B, N] int32, pad_id past each row's length
  lengths: jax.Array  # [B] int32 valid tokens per row (incl. a stop id)
  # [B] sum over the row's tokens of log softmax(logits after logits_fn)
  # at the drawn token (temperature 1, no top-k), or None.
  log_probs: jax.Array | None = None
  # [B] the same for the model's own logits (before logits_fn), or None.
  base_log_probs: jax.Array | None = None


def sample_logits(
    logits: jax.Array,
    key: jax.Array,
    *,
    temperature: jax.Array | float = 0.0,
    top_k: int = 0,
) -> jax.Array:
  """Draws one token per row: greedy, temperature and top-k.

  ``temperature <= 0`` takes ``argmax logits``; otherwise a sample from
  ``softmax(logits / temperature)`` over the ``top_k`` largest logits
  (all when ``top_k == 0``).

  Args:
    logits: [B, V] float32.
    key: PRNG key, consumed.
    temperature: [] float (may be traced).
    top_k: static int, 0 = no restriction.

  Returns:
    [B] int32 token ids.
  """
  greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  if top_k > 0:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  temperature = jnp.asarray(temperature, jnp.float32)
  scaled = logits / jnp.maximum(temperature, 1e-6)
  sampled = jax.random.categorical(key, scaled, axis=-1).astype(jnp.int32)
  return jnp.where(temperature > 0, sampled, greedy)


def decode(
    tokens_to_logits: Callable[..., tuple[jax.Array, Any]],
    first_logits: jax.Array,
    cache: Any,
    positions: jax.Array,
    key: jax.Array,
    *,
    max_new_tokens: int,
    temperature: jax.Array | float = 0.0,
    top_k: int = 0,
    logits_fn: Callable[..., jax.Array] | None = None,
    stop_ids: Sequence[int] = (),
    pad_id: int = 0,
    logits_fn_state: Any = None,
    return_log_probs: bool = False,
) -> GenerateOutput:
  """The decode loop: sample, append, feed back, in one ``lax.while_loop``.

  Args:
    tokens_to_logits: ``(tokens [B], positions [B], cache) -> (logits [B, V],
      cache)``, the model seam.
    first_logits: [B, V] logits of the first new token (after the prompt).
    cache: the model's decoding state after the prompt.
    positions: [B] int32 position of the first new token per row.
    key: PRNG key, consumed.
    max_new_tokens: N (static).
    temperature: 0 = greedy.
    top_k: static int, 0 = off.
    logits_fn: ``(step, logits [B, V], state) -> logits [B, V]`` applied
      before sampling, or None.
    stop_ids: static token ids that end a row (the stop id is kept).
    pad_id: id written after a row stops.
    logits_fn_state: a pytree of arrays for ``logits_fn`` (traced).
    return_log_probs: static; also sum, over each row's tokens, the drawn
      token's log-probability under the logits after ``logits_fn`` and under
      the model's logits (both at temperature 1, without top-k): with
      ``logits_fn`` a tilt, log pi'(y) and log pi_theta(y).

  Returns:
    ``GenerateOutput(tokens [B, N], lengths [B])``, with ``log_probs`` [B]
    and ``base_log_probs`` [B] when ``return_log_probs``.
  """
  b = first_logits.shape[0]
  stop = jnp.asarray(tuple(stop_ids) or (-1,), jnp.int32)
  init = SamplingState(
      step=jnp.zeros((), jnp.int32),
      tokens=jnp.full((b, max_new_tokens), pad_id, jnp.int32),
      lengths=jnp.zeros((b,), jnp.int32),
      done=jnp.zeros((b,), bool),
      positions=positions.astype(jnp.int32),
      logits=first_logits.astype(jnp.float32),
      cache=cache,
      key=key,
      logits_fn_state=logits_fn_state,
      log_probs=jnp.zeros((2, b), jnp.float32) if return_log_probs else None,
  )

  def cond(state):
    return (state.step < max_new_tokens) & ~jnp.all(state.done)

  def body(state):
    logits = state.logits
    if logits_fn is not None:
      logits = logits_fn(state.step, logits, state)
    key, sub = jax.random.split(state.key)
    token = sample_logits(logits, sub, temperature=temperature, top_k=top_k)
    token = jnp.where(state.done, pad_id, token)
    tokens = jax.lax.dynamic_update_slice(
        state.tokens, token[:, None], (0, state.step)
    )
    lengths = state.lengths + (~state.done).astype(jnp.int32)
    done = state.done | jnp.isin(token, stop)
    log_probs = state.log_probs
    if return_log_probs:
      log_probs = log_probs + _drawn_log_probs(
          jnp.stack([logits, state.logits]), token, state.done
      )
    # The model does not run after the last token (its logits are unused).
    finished = (state.step + 1 >= max_new_tokens) | jnp.all(done)

    def feed():
      logits, cache = tokens_to_logits(token, state.positions, state.cache)
      return logits.astype(jnp.float32), cache

    next_logits, cache = jax.lax.cond(
        finished, lambda: (state.logits, state.cache), feed
    )
    return SamplingState(
        step=state.step + 1,
        tokens=tokens,
        lengths=lengths,
        done=done,
        positions=state.positions + 1,
        logits=next_logits,
        cache=cache,
        key=key,
        logits_fn_state=state.logits_fn_state,
        log_probs=log_probs,
    )

  final = jax.lax.while_loop(cond, body, init)
  if not return_log_probs:
    return GenerateOutput(tokens=final.tokens, lengths=final.lengths)
  return GenerateOutput(
      tokens=final.tokens,
      lengths=final.lengths,
      log_probs=final.log_probs[0],
      base_log_probs=final.log_probs[1],
  )


def _drawn_log_probs(logits, token, done):
  """[2, B] log softmax(logits)[token], 0 for rows already done.

  Args:
    logits: [2, B, V] (after and before ``logits_fn``).
    token: [B] the drawn tokens.
    done: [B] rows that had stopped before this step.
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  idx = jnp.broadcast_to(token[None, :, None], logp.shape[:2] + (1,))
  picked = jnp.take_along_axis(logp, idx, axis=-1)[..., 0]
  return jnp.where(done[None, :], 0.0, picked)


def prompt_layout(
    prompt_lengths: jax.Array, length: int, padding: str
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Positions, real-token mask and last real index of padded prompts.

  Args:
    prompt_lengths: [B] int32 real lengths n_b.
    length: L, padded length.
    padding: "right" or "left".

  Returns:
    (positions [B, L] int32, real [B, L] bool, last [B] int32 index of the
    last real token).
  """
  idx = jnp.arange(length)[None, :]
  n = prompt_lengths.astype(jnp.int32)[:, None]
  if padding == "right":
    real = idx < n
    positions = idx
    last = n[:, 0] - 1
  elif padding == "left":
    offset = length - n
    real = idx >= offset
    positions = jnp.maximum(idx - offset, 0)
    last = jnp.full_like(n[:, 0], length - 1)
  else:
    raise ValueError(f"padding must be 'right' or 'left', got {padding!r}.")
  return jnp.broadcast_to(positions, real.shape), real, last


def prefill(
    model: llama_lib.Llama,
    prompt_ids: jax.Array,
    prompt_lengths: jax.Array,
    *,
    cache_len: int,
    padding: str = "right",
) -> tuple[jax.Array, llama_lib.KVCache]:
  """Encodes padded prompts into a fresh cache (the first step of generation).

  The output projection is applied only at each row's last real token.

  Args:
    model: the ``Llama``.
    prompt_ids: [B, L] int32 padded prompts.
    prompt_lengths: [B] int32 real lengths (>= 1).
    cache_len: static number of cache slots (>= L plus the tokens to come).
    padding: "right" or "left" (static), see the module docstring.

  Returns:
    (first_logits [B, V] float32 of the first new token, the cache).
  """
  b, l = prompt_ids.shape
  positions, real, last = prompt_layout(prompt_lengths, l, padding)
  cache = llama_lib.init_cache(model.config, b, cache_len)
  hidden, cache = model(
      prompt_ids.astype(jnp.int32),
      positions,
      cache,
      attention_mask=real,
      return_hidden=True,
  )
  h_last = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
  return model.unembed(h_last), cache


def generate_fn(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    prompt_ids: jax.Array,
    prompt_lengths: jax.Array,
    key: jax.Array,
    *,
    max_new_tokens: int,
    temperature: jax.Array | float = 0.0,
    top_k: int = 0,
    logits_fn: Callable[..., jax.Array] | None = None,
    stop_ids: Sequence[int] = (),
    padding: str = "right",
    pad_id: int = 0,
    logits_fn_state: Any = None,
) -> GenerateOutput:
  """Pure, jittable generation on ``nnx.split(model)``.

  Prefills the prompts into a cache of ``L + max_new_tokens`` slots (the
  output projection only at each row's last token), then runs ``decode``.

  Args:
    graphdef: the ``Llama`` graph definition.
    state: its parameters.
    prompt_ids: [B, L] int32 padded prompts.
    prompt_lengths: [B] int32 real lengths (>= 1).
    key: PRNG key, consumed.
    max_new_tokens: N (static).
    temperature: 0 = greedy.
    top_k: static, 0 = off.
    logits_fn: see ``decode``.
    stop_ids: static tuple of stop ids.
    padding: "right" or "left" (static), see the module docstring.
    pad_id: id after a row stops.
    logits_fn_state: a pytree of arrays for ``logits_fn`` (traced).

  Returns:
    ``GenerateOutput(tokens [B, N], lengths [B])``.
  """
  b, l = prompt_ids.shape
  chex.assert_shape(prompt_lengths, (b,))
  model = nnx.merge(graphdef, state)
  first_logits, cache = prefill(
      model,
      prompt_ids,
      prompt_lengths,
      cache_len=l + max_new_tokens,
      padding=padding,
  )

  def tokens_to_logits(tokens, pos, cache):
    logits, cache = model(tokens[:, None], pos[:, None], cache)
    return logits[:, 0], cache

  return decode(
      tokens_to_logits,
      first_logits,
      cache,
      prompt_lengths.astype(jnp.int32),
      key,
      max_new_tokens=max_new_tokens,
      temperature=temperature,
      top_k=top_k,
      logits_fn=logits_fn,
      stop_ids=stop_ids,
      pad_id=pad_id,
      logits_fn_state=logits_fn_state,
  )


_generate_jit = jax.jit(
    generate_fn,
    static_argnames=(
        "max_new_tokens",
        "top_k",
        "logits_fn",
        "stop_ids",
        "padding",
        "pad_id",
    ),
)


def generate(
    model,
    prompt_ids,
    prompt_lengths,
    key: jax.Array,
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int = 0,
    logits_fn: Callable[..., jax.Array] | None = None,
    stop_ids: Sequence[int] = (),
    padding: str = "right",
    pad_id: int = 0,
    logits_fn_state: Any = None,
    buckets: Sequence[int] | None = scoring.PROMPT_BUCKETS,
) -> GenerateOutput:
  """Generates up to ``max_new_tokens`` tokens per prompt (jitted).

  The host-side boundary: validates, pads L to a bucket of ``buckets`` (on
  the padding side), and runs the jitted ``generate_fn``. Calls with the same
  bucket, B, N and static options reuse one compilation; ``logits_fn`` is a
  static argument, so pass the same function object to avoid recompiling.

  Args:
    model: a ``Llama`` (or a ``LoadedModel``).
    prompt_ids: [B, L] int padded prompts (see ``padding``).
    prompt_lengths: [B] int real lengths (>= 1).
    key: PRNG key, consumed (unused when greedy).
    max_new_tokens: N.
    temperature: 0 = greedy.
    top_k: 0 = off.
    logits_fn: ``(step, logits [B, V], state) -> logits`` before sampling.
    stop_ids: ids that end a row (kept in the output, counted in lengths).
    padding: "right" (tokens first) or "left" (tokens last).
    pad_id: id used for padding and after a row stops.
    logits_fn_state: a pytree of arrays passed to ``logits_fn`` as
      ``state.logits_fn_state`` (traced: new values reuse the compilation).
    buckets: prompt length buckets; None keeps L.

  Returns:
    ``GenerateOutput(tokens [B, N], lengths [B])``.

  Raises:
    ValueError: bad shapes, empty prompts, or prompt plus new tokens longer
      than the model's context.
  """
  model = getattr(model, "model", model)
  ids = np.asarray(prompt_ids, np.int32)
  if ids.ndim != 2:
    raise ValueError(f"prompt_ids must be [B, L]; got shape {ids.shape}.")
  b, l = ids.shape
  lens = np.asarray(prompt_lengths, np.int32).reshape(-1)
  if lens.shape != (b,):
    raise ValueError(f"prompt_lengths must be [{b}]; got {lens.shape}.")
  if np.any(lens < 1) or np.any(lens > l):
    raise ValueError(f"prompt_lengths must be in [1, {l}]; got {lens}.")
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1; got {max_new_tokens}.")
  context = model.config.max_position_embeddings
  if int(lens.max()) + max_new_tokens > context:
    raise ValueError(
        f"Prompt of {int(lens.max())} tokens plus {max_new_tokens} new "
        f"tokens is longer than the context ({context})."
    )
  if padding not in ("right", "left"):
    raise ValueError(f"padding must be 'right' or 'left', got {padding!r}.")
  if buckets is not None:
    size = scoring.bucket_size(l, buckets)
    pad = np.full((b, size - l), pad_id, np.int32)
    ids = np.concatenate([ids, pad] if padding == "right" else [pad, ids], 1)
  graphdef, state = nnx.split(model)
  return _generate_jit(
      graphdef,
      state,
      jnp.asarray(ids),
      jnp.asarray(lens),
      key,
      max_new_tokens=int(max_new_tokens),
      temperature=jnp.float32(temperature),
      top_k=int(top_k),
      logits_fn=logits_fn,
      stop_ids=tuple(int(s) for s in stop_ids),
      padding=padding,
      pad_id=int(pad_id),
      logits_fn_state=logits_fn_state,
  )
