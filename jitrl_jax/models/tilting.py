"""Exact sampling from an exponentially tilted LM over whole strings.

The LM writes the action itself, token by token, and the string it writes is
an exact draw from the tilted policy over all strings (docs/method.md
section 7, with the candidate set widened to every string):

  pi'(y) = pi_theta(y) exp(beta A(y)) / Z,   Z = E_{y ~ pi_theta}[e^{beta A}],

where y is a whole command (its tokens up to and including a terminator),
A(y) = A_s when y is one of S given "memory" commands s, and A(y) = A_0 for
every other string. This module knows nothing of memory or of JitRL: it takes
command tokens, their per-token log-probabilities, advantages, A_0 and beta.

The construction. For a generated prefix h, let

  W(h) = E_{y ~ pi_theta(. | h)}[e^{beta A(y)}]
       = e^{beta A_0} + sum_{s extends h} pi_theta(s | h) (e^{beta A_s}
         - e^{beta A_0}).

Then W(h) = sum_t pi_theta(t | h) W(h t), so drawing token by token from

  pi'(t | h) = pi_theta(t | h) W(h t) / W(h)                           (1)

draws y with probability prod_t pi'(y_t | y_<t) = pi_theta(y) W(y) / W(())
= pi'(y), since W(y) = e^{beta A(y)} for a complete y. Off the memory
commands' prefix tree W(h) = e^{beta A_0}, so there (1) is plain sampling.

Numerical form of W. The signed sum above cancels when the LM puts almost
all its mass on memory commands whose A_s is far below A_0 (W then depends
on 1 - sum_s pi_theta(s | h), a difference of nearly equal numbers). Instead
W is written as a sum of non-negative terms over a partition of the strings
below h. A string either is a memory command s, or leaves the prefix tree at
some node g (a proper prefix of a command): its next token continues no
command. With r(g) = the LM's probability, at g, of the tokens that continue
no command (the "rest" mass),

  W(h) / e^{beta A_0} = [sum_g pi_theta(g | h) r(g) + sum_s pi_theta(s | h)
                         e^{beta (A_s - A_0)}] / [sum_g pi_theta(g | h) r(g)
                         + sum_s pi_theta(s | h)],                      (2)

sums over the distinct nodes g and commands s at or below h. The denominator
is 1 in exact arithmetic (the events partition the strings below h); it is
kept so that rounding cannot bias W, and so that beta = 0 or A_s = A_0 give
log W - beta A_0 = 0 exactly (then the tilted logits equal the LM's logits
bitwise, and sampling reproduces the plain sampler draw for draw). Both sums
are log-sum-exps of finite terms, so W is positive and finite for any finite
advantages. r(g) itself is a log-sum-exp of the LM's next-token
log-probabilities at g over the non-continuing tokens (``next_logits``: one
teacher-forced scoring pass gives them at every node, see
``scoring.candidate_token_logprobs_batch``); without them it falls back to
r(g) = 1 - sum_{children c} pi_theta(c | g) from the per-token
log-probabilities, which is never negative (clamped) but loses relative
accuracy when r(g) is below float precision.

Commands and the budget. A command is a complete string: its tokens end
with a stop id and contain no earlier stop id. Commands that are malformed,
empty, repeat an earlier command, or are longer than the sampler's budget
``max_len`` (= ``max_new_tokens``) are ignored (``valid`` false): a string
that reaches the budget without a stop id is truncated and counts as an
"other" string with A_0, so over-long commands cannot be produced. With that
convention the decoder is exact over the strings of at most ``max_len``
tokens. Token strings are what count: tokenise each command canonically (as
the LM would write it after the prompt) and append the terminator
(``pack_commands``); another tokenisation of the same text is an "other"
string.

Sampling. ``logits_fn`` plugs into ``sampling.decode`` / ``generate`` with a
batched ``Tilt`` as ``logits_fn_state``: the alive commands are those whose
first ``step`` tokens equal the generated prefix (``state.tokens``), so no
extra state is carried. With temperature 1 and no top-k the draws are exact
pi'; greedy takes the argmax of (1) at each step; another temperature
divides the tilted logits by it.

Dimension letters: B batch of prompts, S commands, T tokens per command,
V vocabulary, N generated tokens.
"""

from typing import Any, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax.models import scoring


class Tilt(NamedTuple):
  """The tilting of one prompt, fixed shapes (a pytree; vmap for a batch)."""

  tokens: jax.Array  # [S, T] int32 command tokens, terminator included
  lengths: jax.Array  # [S] int32 tokens per command
  valid: jax.Array  # [S] bool well-formed, distinct, within the budget
  log_w: jax.Array  # [S, T + 1] log W(s[:k]) - beta A_0 (0 where k > n_s)
  log_prob: jax.Array  # [S] log pi_theta(s | x), -inf where not valid
  delta: jax.Array  # [S] beta (A_s - A_0)
  offset: jax.Array  # [] beta A_0


def valid_commands(
    command_ids: jax.Array,
    command_lengths: jax.Array,
    *,
    stop_ids: Sequence[int],
    max_len: jax.Array | int | None = None,
) -> jax.Array:
  """Which commands are distinct complete strings within the budget.

  Command s is valid iff ``1 <= n_s <= T`` (and ``<= max_len``), its last
  token is a stop id, no earlier token is one, and no earlier valid command
  has the same tokens.

  Args:
    command_ids: [S, T] int command tokens, right-padded.
    command_lengths: [S] int n_s.
    stop_ids: static stop ids (the terminators).
    max_len: the generation budget, or None for no limit.

  Returns:
    [S] bool.
  """
  ids = jnp.asarray(command_ids, jnp.int32)
  n = jnp.asarray(command_lengths, jnp.int32)
  _, t = ids.shape
  j = jnp.arange(t)
  is_stop = jnp.isin(ids, jnp.asarray(tuple(stop_ids), jnp.int32))
  last = jnp.take_along_axis(is_stop, jnp.clip(n - 1, 0, t - 1)[:, None], 1)
  interior = jnp.any(is_stop & (j[None, :] < n[:, None] - 1), axis=-1)
  ok = (n >= 1) & (n <= t) & last[:, 0] & ~interior
  if max_len is not None:
    ok &= n <= max_len
  real = j[None, :] < n[:, None]
  same = (n[:, None] == n[None, :]) & jnp.all(
      (ids[:, None] == ids[None, :]) | ~real[:, None], axis=-1
  )  # [S, S]
  earlier = jnp.arange(n.shape[0])[:, None] < jnp.arange(n.shape[0])[None, :]
  repeat = jnp.any(same & earlier & ok[:, None], axis=0)
  return ok & ~repeat


def _shared_prefixes(
    ids: jax.Array, n: jax.Array, valid: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Prefix sharing and node representatives.

  Args:
    ids: [S, T] int32.
    n: [S] int32.
    valid: [S] bool.

  Returns:
    share [S, S, T + 1] bool: s and s2 are valid, ``k <= n_s, n_s2`` and
    ``s[:k] == s2[:k]``; first [S, T + 1] bool: s[:k] is a node (valid s,
    ``k <= n_s``) and s is the first command through it.
  """
  s, t = ids.shape
  match = jnp.cumprod(ids[:, None, :] == ids[None, :, :], axis=-1) > 0
  eq = jnp.concatenate([jnp.ones((s, s, 1), bool), match], axis=-1)
  k = jnp.arange(t + 1)
  fits = (k[None, :] <= n[:, None]) & valid[:, None]  # [S, T + 1]
  share = eq & fits[:, None, :] & fits[None, :, :]
  earlier = jnp.arange(s)[:, None] < jnp.arange(s)[None, :]  # [s'', s2]
  first = fits & ~jnp.any(share & earlier[:, :, None], axis=0)
  return share, first


def _log1mexp(x: jax.Array) -> jax.Array:
  """log(1 - e^x) for x <= 0 (larger x clamp to 0, giving -inf)."""
  x = jnp.minimum(x, 0.0)
  return jnp.where(
      x > -np.log(2.0), jnp.log(-jnp.expm1(x)), jnp.log1p(-jnp.exp(x))
  )


def _log_rest(
    ids: jax.Array,
    n: jax.Array,
    share: jax.Array,
    first: jax.Array,
    token_logp: jax.Array,
    next_logits: jax.Array | None,
) -> jax.Array:
  """log r(s[:k]) [S, T]: the mass at node s[:k] continuing no command.

  The children of node (s, k) are the tokens ``s2[k]`` of the commands s2
  through it with ``k < n_s2``. Exact form (``next_logits`` [S, T, V]):
  ``r = logsumexp`` of the node's log-softmax over the other tokens.
  Fallback: ``r = 1 - sum_{distinct children} pi(child | node)`` as
  ``log1mexp(logsumexp(child log-probs))`` (clamped at 0).
  """
  s, t = ids.shape
  k = jnp.arange(t)
  through = share[:, :, :t] & (k[None, None, :] < n[None, :, None])
  if next_logits is not None:
    v = next_logits.shape[-1]
    idx_v = jnp.where(through, ids[None, :, :], v)  # [S, S2, T]
    idx_s = jnp.arange(s)[:, None, None]
    idx_k = k[None, None, :]
    child = jnp.zeros((s, t, v), bool)
    child = child.at[idx_s, idx_k, idx_v].set(True, mode="drop")
    logp = jax.nn.log_softmax(next_logits.astype(token_logp.dtype), axis=-1)
    return jax.nn.logsumexp(jnp.where(child, -jnp.inf, logp), axis=-1)
  distinct = through & first[None, :, 1:]  # each child node once
  lse = jax.nn.logsumexp(
      jnp.where(distinct, token_logp[None, :, :], -jnp.inf), axis=1
  )
  return _log1mexp(lse)


def _segment_sums(token_logp: jax.Array) -> jax.Array:
  """seg[s, k, k2] = sum_{k <= j < k2} token_logp[s, j]  [S, T + 1, T + 1]."""
  t = token_logp.shape[1]
  k = jnp.arange(t + 1)
  j = jnp.arange(t)
  inside = (k[:, None, None] <= j) & (j < k[None, :, None])  # [k, k2, j]
  return jnp.sum(
      jnp.where(inside[None], token_logp[:, None, None, :], 0.0), axis=-1
  )


def _subtree_log_w(
    share: jax.Array,
    first: jax.Array,
    seg: jax.Array,
    log_rest: jax.Array,
    delta: jax.Array,
    n: jax.Array,
) -> jax.Array:
  """Equation (2) at every node: log W(s[:k]) - beta A_0  [S, T + 1].

  Terms for node (s, k): every distinct node (s2, k2) below it,
  ``k <= k2 < n_s2``, with weight ``seg[s2, k, k2] + log r(s2, k2)`` and
  exponent 0; every command s2 through it with weight ``seg[s2, k, n_s2]``
  and exponent ``delta[s2]``. Result ``lse(w + d) - lse(w)``, 0 where the
  node does not exist (no terms).
  """
  s, _, t1 = share.shape
  t = t1 - 1
  k = jnp.arange(t1)
  k2 = jnp.arange(t)
  through = jnp.transpose(share, (0, 2, 1))  # [s, k, s2]
  below = (
      through[..., None]
      & first[None, None, :, :t]
      & (k[:, None] <= k2[None, :])[None, :, None, :]
      & (k2[None, :] < n[:, None])[None, None]
  )  # [s, k, s2, k2]
  exit_w = jnp.transpose(seg[:, :, :t], (1, 0, 2)) + log_rest[None]
  end_w = jnp.take_along_axis(seg, n[:, None, None], axis=2)[..., 0]  # [s2, k]
  w = jnp.concatenate(
      [
          jnp.where(below, exit_w[None], -jnp.inf).reshape(s, t1, s * t),
          jnp.where(through, end_w.T[None], -jnp.inf),
      ],
      axis=-1,
  )  # [s, k, S T + S]
  d = jnp.concatenate([jnp.zeros((s * t,), delta.dtype), delta])
  num = jax.nn.logsumexp(w + d, axis=-1)
  den = jax.nn.logsumexp(w, axis=-1)
  return jnp.where(den > -jnp.inf, num - den, 0.0)


def make_tilt(
    command_ids: jax.Array,
    command_lengths: jax.Array,
    token_logp: jax.Array,
    advantages: jax.Array,
    baseline: jax.Array | float,
    beta: jax.Array | float,
    *,
    stop_ids: Sequence[int],
    max_len: jax.Array | int | None = None,
    next_logits: jax.Array | None = None,
) -> Tilt:
  """Tabulates W over the memory commands' prefix tree (one prompt).

  Pure and jittable; for B prompts use ``jax.vmap`` (with ``stop_ids``
  bound). Cost O(S^2 T^2) plus O(S T V) with ``next_logits``.

  Args:
    command_ids: [S, T] int command tokens, terminator included, padded.
    command_lengths: [S] int n_s (0 for a padding row).
    token_logp: [S, T] float ``log pi_theta(s_t | x, s_<t)`` (the
      teacher-forced scoring pass; entries past n_s ignored). Its dtype is
      the table's.
    advantages: [S] float A_s (finite).
    baseline: [] A_0, the advantage of every other string.
    beta: [] inverse temperature (>= 0).
    stop_ids: static terminator ids.
    max_len: the sampler's ``max_new_tokens``; longer commands are ignored
      (the budget convention of the module docstring).
    next_logits: [S, T, V] the LM's next-token logits (or log-probs) at
      each node ``s[:t]``, for the exact rest mass; None: the fallback.

  Returns:
    The ``Tilt``.
  """
  ids = jnp.asarray(command_ids, jnp.int32)
  s, t = ids.shape
  n = jnp.asarray(command_lengths, jnp.int32)
  token_logp = jnp.asarray(token_logp)
  dtype = token_logp.dtype
  chex.assert_shape(n, (s,))
  chex.assert_shape(token_logp, (s, t))
  chex.assert_shape(advantages, (s,))
  if next_logits is not None:
    chex.assert_shape(next_logits, (s, t, None))
  valid = valid_commands(ids, n, stop_ids=stop_ids, max_len=max_len)
  share, first = _shared_prefixes(ids, n, valid)
  real = jnp.arange(t)[None, :] < n[:, None]
  token_logp = jnp.where(real, token_logp, 0.0)
  log_rest = _log_rest(ids, n, share, first, token_logp, next_logits)
  seg = _segment_sums(token_logp)
  beta = jnp.asarray(beta, dtype)
  baseline = jnp.asarray(baseline, dtype)
  delta = beta * (jnp.asarray(advantages, dtype) - baseline)
  log_w = _subtree_log_w(share, first, seg, log_rest, delta, n)
  log_prob = jnp.take_along_axis(seg[:, 0, :], n[:, None], axis=1)[:, 0]
  return Tilt(
      tokens=ids,
      lengths=n,
      valid=valid,
      log_w=log_w,
      log_prob=jnp.where(valid, log_prob, -jnp.inf),
      delta=delta,
      offset=beta * baseline,
  )


def alive_commands(tilt: Tilt, prefix: jax.Array, pos: jax.Array) -> jax.Array:
  """Commands that extend the generated prefix by at least one token.

  Args:
    tilt: one prompt's ``Tilt``.
    prefix: [N] int generated tokens (entries from ``pos`` on ignored).
    pos: [] int tokens generated so far.

  Returns:
    [S] bool: valid s with ``pos < n_s`` and ``s[:pos] == prefix[:pos]``.
  """
  _, t = tilt.tokens.shape
  prefix = jnp.asarray(prefix, jnp.int32)
  if prefix.shape[0] >= t:
    prefix = prefix[:t]
  else:
    prefix = jnp.pad(prefix, (0, t - prefix.shape[0]), constant_values=-1)
  ignored = jnp.arange(t) >= pos
  match = jnp.all((tilt.tokens == prefix[None, :]) | ignored[None, :], -1)
  return tilt.valid & (pos < tilt.lengths) & match


def tilt_alive(
    tilt: Tilt, alive: jax.Array, pos: jax.Array, logits: jax.Array
) -> jax.Array:
  """Tilted next-token logits from the alive mask.

    tilted[t] = logits[t] + log W(h t) - beta A_0   [V]

  where ``log W(h t) - beta A_0`` is ``log_w[s, pos + 1]`` when t is token
  ``pos`` of an alive command s, else 0 (scattered into [V]). Softmax of it
  is pi'(t | h) of equation (1); it differs from ``log pi'(t | h)`` by the
  per-row constant ``logsumexp(logits) + log W(h) - beta A_0``.

  Args:
    tilt: one prompt's ``Tilt``.
    alive: [S] bool from ``alive_commands``.
    pos: [] int tokens generated so far (the depth of h).
    logits: [V] the LM's next-token logits after the prompt and h.

  Returns:
    [V] tilted logits, in ``logits.dtype``.
  """
  logits = jnp.asarray(logits)
  v = logits.shape[-1]
  _, t = tilt.tokens.shape
  child = tilt.tokens[:, jnp.minimum(pos, t - 1)]
  value = tilt.log_w[:, jnp.minimum(pos + 1, t)].astype(logits.dtype)
  idx = jnp.where(alive, child, v)  # v is out of range: dropped
  bonus = jnp.full((v,), -jnp.inf, logits.dtype)
  bonus = bonus.at[idx].max(value, mode="drop")
  is_child = jnp.zeros((v,), bool).at[idx].set(True, mode="drop")
  return logits + jnp.where(is_child, bonus, 0.0).astype(logits.dtype)


def tilted_logits(
    tilt: Tilt,
    prefix: jax.Array,
    pos: jax.Array,
    logits: jax.Array,
    *,
    normalise: bool = False,
) -> jax.Array:
  """Tilted next-token logits after a generated prefix (one prompt).

  Args:
    tilt: one prompt's ``Tilt``.
    prefix: [N] int generated tokens (entries from ``pos`` on ignored).
    pos: [] int tokens generated so far.
    logits: [V] the LM's next-token logits.
    normalise: return ``log pi'(t | h) = log pi_theta(t | h) + log W(h t) -
      log W(h)`` [V] instead of the unnormalised ``tilt_alive`` form.

  Returns:
    [V] tilted logits.
  """
  out = tilt_alive(tilt, alive_commands(tilt, prefix, pos), pos, logits)
  return jax.nn.log_softmax(out, axis=-1) if normalise else out


def logits_fn(step: jax.Array, logits: jax.Array, state: Any) -> jax.Array:
  """The ``sampling.decode`` hook: tilts every row's next-token logits.

  Pass ``logits_fn=tilting.logits_fn`` and ``logits_fn_state`` = a ``Tilt``
  with a leading batch axis (``jax.vmap(make_tilt)`` over the prompts, with
  ``max_len = max_new_tokens``).

  Args:
    step: [] int tokens generated so far.
    logits: [B, V] next-token logits.
    state: the ``SamplingState`` (uses ``tokens`` [B, N] and
      ``logits_fn_state`` [B, ...]).

  Returns:
    [B, V] tilted logits.
  """
  return jax.vmap(
      lambda tilt, prefix, lg: tilted_logits(tilt, prefix, step, lg)
  )(state.logits_fn_state, state.tokens, logits)


def _root(tilt: Tilt) -> jax.Array:
  """log W(()) - beta A_0 = log E_{pi_theta}[e^{beta (A - A_0)}]  []."""
  root = jnp.max(jnp.where(tilt.valid, tilt.log_w[:, 0], -jnp.inf))
  return jnp.where(jnp.any(tilt.valid), root, 0.0)


def log_partition(tilt: Tilt) -> jax.Array:
  """log Z = log E_{y ~ pi_theta}[e^{beta A(y)}] over the budgeted strings []."""
  return tilt.offset + _root(tilt)


def command_log_probs(tilt: Tilt) -> jax.Array:
  """log pi'(s) = log pi_theta(s) + beta (A_s - A_0) - log(Z / e^{beta A_0}).

  Returns:
    [S] float, -inf where not valid.
  """
  return tilt.log_prob + tilt.delta - _root(tilt)


def kl_to_base(tilt: Tilt) -> jax.Array:
  """KL(pi' || pi_theta) = beta E_{pi'}[A] - log Z, in closed form [].

  Only memory commands have ``A - A_0 != 0``, so
  ``KL = sum_s pi'(s) beta (A_s - A_0) - log(Z / e^{beta A_0})``.
  """
  p = jnp.exp(command_log_probs(tilt))
  return jnp.sum(jnp.where(tilt.valid, p * tilt.delta, 0.0)) - _root(tilt)


def pack_commands(
    commands: Sequence[Sequence[int]],
    *,
    stop_id: int,
    stop_ids: Sequence[int] | None = None,
    num_commands: int | None = None,
    num_tokens: int | None = None,
    pad_id: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
  """Host side: command token lists -> padded complete strings.

  Appends ``stop_id`` to each command that does not already end with a stop
  id, then pads with ``scoring.pad_candidates`` (its buckets).

  Args:
    commands: S lists of token ids (the canonical tokenisation).
    stop_id: the terminator to append.
    stop_ids: all terminators (default ``(stop_id,)``).
    num_commands: padded S (default: its bucket).
    num_tokens: padded T (default: its bucket).
    pad_id: padding id.

  Returns:
    (ids [S', T'] int32, lengths [S'] int32).

  Raises:
    ValueError: a command has a terminator before its end, or no tokens.
  """
  stops = set(stop_ids or (stop_id,))
  full = []
  for i, cmd in enumerate(commands):
    cmd = [int(x) for x in cmd]
    if not cmd:
      raise ValueError(f"Command {i} has no tokens.")
    if any(x in stops for x in cmd[:-1]):
      raise ValueError(f"Command {i} has a terminator before its end: {cmd}.")
    full.append(cmd if cmd[-1] in stops else cmd + [int(stop_id)])
  return scoring.pad_candidates(
      full, num_candidates=num_commands, num_tokens=num_tokens, pad_id=pad_id
  )
