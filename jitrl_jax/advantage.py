"""Values and advantages from retrieved neighbours.

JitRL (arXiv 2601.18510, docs/method.md section 5) estimates, for a state s,
the value V(s), the action values Q(s, a) and the advantages A(s, a) = Q - V
of the candidate actions from the returns of the K experiences retrieved for s:

  V(s)    = mean_{i in N(s)} G_i
  Q(s, a) = mean_{i in N(s), a_i = a} G_i,  n(s, a) = #{i in N(s): a_i = a}
  A(s, a) = Q(s, a) - V(s)                  where n(s, a) > 0

An action that no neighbour took gets an optimism bonus alpha / |N(s)| with
probability lambda (or its expectation lambda * alpha / |N(s)|); with no
neighbours at all every advantage is 0, so the policy is the LM's own.

Everything is computed with fixed shapes through masked sums over the
[C, K] equality matrix between candidate ids and neighbour action ids; no
Python branch depends on a traced value, so the functions jit and vmap.

`reference_advantages` is the rule of the authors' released code
(docs/method.md section 9), kept as a separate function for comparison.

Dimension letters: K neighbours, C candidates.
"""

from __future__ import annotations

import typing
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

if typing.TYPE_CHECKING:
  from jitrl_jax.retrieval import Neighbours  # pylint: disable=g-bad-import-order


class AdvantageOutput(NamedTuple):
  """Values and advantages of the candidates (paper rule)."""

  value: jax.Array  # [] float V(s); 0 with no neighbours
  q_values: jax.Array  # [C] float Q(s, a); V + A where n(s, a) = 0
  counts: jax.Array  # [C] int32 n(s, a); 0 for masked candidates
  advantages: jax.Array  # [C] float A(s, a); 0 for masked candidates
  num_neighbours: jax.Array  # [] int32 |N(s)|


class ReferenceAdvantageOutput(NamedTuple):
  """Values and advantages of the candidates (reference rule).

  See docs/method.md section 9.
  """

  value: jax.Array  # [] float V(s), recomputed over the table when needed
  q_values: jax.Array  # [C] float Q(s, a) (unseen: V0 + alpha/|N| or 0)
  counts: jax.Array  # [C] int32 n(s, a)
  advantages: jax.Array  # [C] float A = Q - V; 0 for masked candidates
  normalised_advantages: jax.Array  # [C] float A_hat (max-normalised)
  p_explore: jax.Array  # [] float probability of the unseen-action bonus
  num_neighbours: jax.Array  # [] int32 |N(s)|


class MemoryCandidates(NamedTuple):
  """Neighbour actions to add as candidates (fixed shape [K])."""

  action_ids: jax.Array  # [K] int32 the neighbours' action ids
  mean_returns: jax.Array  # [K] float mean return of the slot's action
  counts: jax.Array  # [K] int32 neighbours that took the slot's action
  mask: jax.Array  # [K] bool True for a distinct action to add


def _check_shapes(neighbours, candidate_ids, candidate_mask):
  """Raises ValueError on inconsistent static shapes."""
  k_arrays = [
      jnp.asarray(x)
      for x in (neighbours.action_ids, neighbours.returns, neighbours.mask)
  ]
  c_arrays = [jnp.asarray(candidate_ids), jnp.asarray(candidate_mask)]
  c_message = "candidate_ids and candidate_mask must both have shape [C]"
  chex.assert_rank(
      k_arrays[0],
      1,
      custom_message=(
          "neighbours.action_ids must have shape [K]; vmap the function for"
          " a batch of states"
      ),
      exception_type=ValueError,
  )
  chex.assert_equal_shape(
      k_arrays,
      custom_message=(
          "neighbours.action_ids, .returns and .mask must share one shape [K]"
      ),
      exception_type=ValueError,
  )
  chex.assert_rank(
      c_arrays, 1, custom_message=c_message, exception_type=ValueError
  )
  chex.assert_equal_shape(
      c_arrays, custom_message=c_message, exception_type=ValueError
  )


def _float_dtype(returns: jax.Array):
  return jnp.result_type(returns.dtype, jnp.float32)


def _masked_returns(neighbours: Neighbours) -> jax.Array:
  """[K] returns with masked slots set to 0 (never multiplied, so no NaN)."""
  returns = jnp.asarray(neighbours.returns)
  returns = returns.astype(_float_dtype(returns))
  return jnp.where(neighbours.mask, returns, jnp.zeros_like(returns))


def _match(neighbours, candidate_ids, candidate_mask) -> jax.Array:
  """[C, K] bool: candidate c is a real candidate and neighbour k took it."""
  return (
      (candidate_ids[:, None] == neighbours.action_ids[None, :])
      & candidate_mask[:, None]
      & neighbours.mask[None, :]
  )


def advantages(
    neighbours: Neighbours,
    candidate_ids: jax.Array,
    candidate_mask: jax.Array,
    *,
    lam: float = 0.5,
    alpha: float = 1.0,
    key: jax.Array | None = None,
) -> AdvantageOutput:
  """V, Q, n and A = Q - V for C candidates from K neighbours (paper rule).

    V = sum_k m_k G_k / |N|,  n_c = sum_k E_ck,  Q_c = sum_k E_ck G_k / n_c,
    E_ck = [a_k = id_c] m_k m_c,   A_c = Q_c - V  (n_c > 0),
    A_c = B_c alpha / |N|, B_c ~ Bernoulli(lam)  (n_c = 0, |N| > 0),

  from JitRL (arXiv 2601.18510), docs/method.md section 5. With no neighbours
  every advantage is 0. Masked candidates get A = 0, n = 0 and Q = V.

  Args:
    neighbours: `Neighbours` with action_ids [K] int32, returns [K] float and
      mask [K] bool (the other fields are not used).
    candidate_ids: [C] int32 action ids of the candidates.
    candidate_mask: [C] bool, True for a real candidate.
    lam: probability lambda of the optimism bonus for unseen candidates.
    alpha: size of the bonus numerator; the bonus is alpha / |N(s)|.
    key: PRNG key, consumed to draw one Bernoulli(lam) per candidate (the
      paper's stochastic bonus; do not reuse it). None gives the
      deterministic expectation lam * alpha / |N(s)| instead.

  Returns:
    `AdvantageOutput` with value [], q_values [C], counts [C] int32,
    advantages [C] and num_neighbours [] int32.
  """
  _check_shapes(neighbours, candidate_ids, candidate_mask)
  candidate_mask = jnp.asarray(candidate_mask, bool)
  returns = _masked_returns(neighbours)
  dtype = returns.dtype
  match = _match(neighbours, candidate_ids, candidate_mask)  # [C, K]

  num = jnp.sum(neighbours.mask, dtype=jnp.int32)
  safe_num = jnp.maximum(num, 1).astype(dtype)
  value = jnp.sum(returns) / safe_num

  counts = jnp.sum(match, axis=-1, dtype=jnp.int32)  # [C]
  sums = jnp.sum(jnp.where(match, returns[None, :], 0.0), axis=-1)
  q_seen = sums / jnp.maximum(counts, 1).astype(dtype)

  bonus_size = jnp.asarray(alpha, dtype) / safe_num
  if key is None:
    bonus = jnp.full(candidate_ids.shape, lam, dtype) * bonus_size
  else:
    draws = jax.random.bernoulli(key, lam, candidate_ids.shape)
    bonus = jnp.where(draws, bonus_size, jnp.zeros((), dtype))

  seen = counts > 0
  unseen = candidate_mask & ~seen & (num > 0)
  adv = jnp.where(
      seen, q_seen - value, jnp.where(unseen, bonus, jnp.zeros((), dtype))
  )
  q_values = jnp.where(seen, q_seen, value + adv)
  return AdvantageOutput(
      value=value,
      q_values=q_values,
      counts=counts,
      advantages=adv,
      num_neighbours=num,
  )


def _first_occurrence(ids: jax.Array, mask: jax.Array) -> jax.Array:
  """[N] bool: mask[i] and no earlier masked j has ids[j] == ids[i]."""
  same = (ids[:, None] == ids[None, :]) & mask[:, None] & mask[None, :]
  earlier = jnp.tril(jnp.ones(same.shape, bool), k=-1)
  return mask & ~jnp.any(same & earlier, axis=-1)


def memory_action_candidates(
    neighbours: Neighbours,
    candidate_ids: jax.Array,
    candidate_mask: jax.Array,
    *,
    min_mean_return: float = 0.0,
) -> MemoryCandidates:
  """Neighbour actions that are not candidates but did well, to be added.

  docs/method.md section 5: actions that appear in N(s) but are not among the
  environment's candidates are added as candidates when their mean return
  over N(s) is positive (the reference rule; the LM can score any string).
  The output keeps the fixed shape [K]: slot k stands for the action of
  neighbour k and `mask[k]` is True only for the first slot of each distinct
  action that is absent from the real candidates and has
  mean return > min_mean_return.

  Args:
    neighbours: `Neighbours` with action_ids [K], returns [K], mask [K].
    candidate_ids: [C] int32 action ids of the current candidates.
    candidate_mask: [C] bool, True for a real candidate.
    min_mean_return: strict lower bound on the mean return (0: positive).

  Returns:
    `MemoryCandidates` with action_ids [K], mean_returns [K], counts [K] and
    mask [K] bool.
  """
  _check_shapes(neighbours, candidate_ids, candidate_mask)
  candidate_mask = jnp.asarray(candidate_mask, bool)
  returns = _masked_returns(neighbours)
  ids = neighbours.action_ids
  mask = jnp.asarray(neighbours.mask, bool)
  same = (ids[:, None] == ids[None, :]) & mask[:, None] & mask[None, :]
  counts = jnp.sum(same, axis=-1, dtype=jnp.int32)
  sums = jnp.sum(jnp.where(same, returns[None, :], 0.0), axis=-1)
  mean_returns = sums / jnp.maximum(counts, 1).astype(returns.dtype)
  is_candidate = jnp.any(
      (ids[:, None] == candidate_ids[None, :]) & candidate_mask[None, :],
      axis=-1,
  )
  add = (
      _first_occurrence(ids, mask)
      & ~is_candidate
      & (mean_returns > min_mean_return)
  )
  return MemoryCandidates(
      action_ids=ids, mean_returns=mean_returns, counts=counts, mask=add
  )


def reference_p_explore(
    neighbours: Neighbours,
    *,
    low: float = 0.05,
    high: float = 0.8,
    exponent: float = 0.65,
) -> jax.Array:
  """The reference code's adaptive exploration probability.

  See docs/method.md section 9.

  For every distinct neighbour action with n >= 2 samples, mean mu and
  standard deviation sigma (population form, ddof = 0):

    cv = sigma / mu (infinite if mu <= 0),
    conf = (max(0, mu) / (1 + cv))^0.65 * max(n / 4, 1),
    p = clip(1 / (1 + max conf), 0.05, 0.8),

  and p = 0.8 when no action has n >= 2.

  Args:
    neighbours: `Neighbours` with action_ids [K], returns [K], mask [K].
    low: lower clip bound.
    high: upper clip bound, also the value when no action has n >= 2.
    exponent: the exponent 0.65 of the confidence.

  Returns:
    [] float p_explore.
  """
  returns = _masked_returns(neighbours)
  dtype = returns.dtype
  ids = neighbours.action_ids
  mask = jnp.asarray(neighbours.mask, bool)
  same = (ids[:, None] == ids[None, :]) & mask[:, None] & mask[None, :]
  n = jnp.sum(same, axis=-1, dtype=jnp.int32)
  n_f = jnp.maximum(n, 1).astype(dtype)
  mu = jnp.sum(jnp.where(same, returns[None, :], 0.0), axis=-1) / n_f
  dev = jnp.where(same, returns[None, :] - mu[:, None], 0.0)
  sigma = jnp.sqrt(jnp.sum(dev * dev, axis=-1) / n_f)
  positive = mu > 0
  cv = sigma / jnp.where(positive, mu, 1.0)
  base = jnp.where(positive, mu / (1.0 + cv), 0.0)
  conf = base**exponent * jnp.maximum(n.astype(dtype) / 4.0, 1.0)
  eligible = mask & (n >= 2)
  max_conf = jnp.max(jnp.where(eligible, conf, -jnp.inf))
  p = jnp.clip(1.0 / (1.0 + jnp.maximum(max_conf, 0.0)), low, high)
  return jnp.where(jnp.any(eligible), p, jnp.asarray(high, dtype))


def reference_advantages(
    neighbours: Neighbours,
    candidate_ids: jax.Array,
    candidate_mask: jax.Array,
    *,
    alpha: float = 1.0,
    key: jax.Array | None = None,
    p_explore: float | None = None,
) -> ReferenceAdvantageOutput:
  """Advantages by the rule of the authors' released code.

  See docs/method.md section 9.

  The table holds every distinct neighbour action (Q = its mean return) and
  every distinct unseen candidate, whose Q is

    Q = V0 + alpha / |N|  with probability p_explore,  else Q = 0

  (absolute zero, not V0), with V0 the mean return over N(s). If an unseen
  candidate exists, V is recomputed as the plain mean of the table's Q
  values; otherwise V = V0. Then A = Q - V and

    A_hat = A / max_{table} A   if some table action has A > 0,
    A_hat = A / |min_{table} A| otherwise (A_hat = 0 when all A = 0),

  where the max and min run over every action in the table, candidates or
  not. No neighbours: A = A_hat = 0. Masked candidates: A = A_hat = 0.

  Args:
    neighbours: `Neighbours` with action_ids [K], returns [K], mask [K].
    candidate_ids: [C] int32 action ids of the candidates.
    candidate_mask: [C] bool, True for a real candidate.
    alpha: bonus numerator (alpha / |N|).
    key: PRNG key, consumed to draw one Bernoulli(p_explore) per candidate.
      None uses the expected Q, p_explore * (V0 + alpha / |N|), for unseen
      candidates (a deterministic variant; A_hat is then not the expectation
      of the stochastic A_hat, since the normalisation is not linear).
    p_explore: None for the adaptive text-game rule
      (`reference_p_explore`); a float for a constant (0.05 for web tasks).

  Returns:
    `ReferenceAdvantageOutput` with value [], q_values [C], counts [C],
    advantages [C], normalised_advantages [C], p_explore [],
    num_neighbours [].
  """
  _check_shapes(neighbours, candidate_ids, candidate_mask)
  candidate_mask = jnp.asarray(candidate_mask, bool)
  returns = _masked_returns(neighbours)
  dtype = returns.dtype
  zero = jnp.zeros((), dtype)
  ids = neighbours.action_ids
  nb_mask = jnp.asarray(neighbours.mask, bool)

  num = jnp.sum(nb_mask, dtype=jnp.int32)
  has_neighbours = num > 0
  safe_num = jnp.maximum(num, 1).astype(dtype)
  value0 = jnp.sum(returns) / safe_num

  # Per neighbour slot: Q of its action; first slot of each distinct action.
  same = (ids[:, None] == ids[None, :]) & nb_mask[:, None] & nb_mask[None, :]
  slot_n = jnp.sum(same, axis=-1, dtype=jnp.int32)
  slot_q = jnp.sum(jnp.where(same, returns[None, :], 0.0), axis=-1)
  slot_q = slot_q / jnp.maximum(slot_n, 1).astype(dtype)
  slot_first = _first_occurrence(ids, nb_mask)

  if p_explore is None:
    p = reference_p_explore(neighbours).astype(dtype)
  else:
    p = jnp.asarray(p_explore, dtype)

  # Per candidate.
  match = _match(neighbours, candidate_ids, candidate_mask)
  counts = jnp.sum(match, axis=-1, dtype=jnp.int32)
  q_seen = jnp.sum(jnp.where(match, returns[None, :], 0.0), axis=-1)
  q_seen = q_seen / jnp.maximum(counts, 1).astype(dtype)
  seen = counts > 0
  unseen = candidate_mask & ~seen & has_neighbours
  unseen_first = unseen & _first_occurrence(candidate_ids, candidate_mask)

  explore_q = value0 + jnp.asarray(alpha, dtype) / safe_num
  if key is None:
    q_unseen = jnp.full(candidate_ids.shape, p, dtype) * explore_q
  else:
    draws = jax.random.bernoulli(key, p, candidate_ids.shape)
    q_unseen = jnp.where(draws, explore_q, zero)
  # Duplicated unseen candidate ids share the draw of their first copy.
  dup_of = jnp.argmax(
      (candidate_ids[:, None] == candidate_ids[None, :])
      & candidate_mask[None, :],
      axis=-1,
  )
  q_unseen = q_unseen[dup_of]

  table_sum = jnp.sum(jnp.where(slot_first, slot_q, zero)) + jnp.sum(
      jnp.where(unseen_first, q_unseen, zero)
  )
  table_n = jnp.sum(slot_first, dtype=jnp.int32) + jnp.sum(
      unseen_first, dtype=jnp.int32
  )
  value = jnp.where(
      jnp.any(unseen),
      table_sum / jnp.maximum(table_n, 1).astype(dtype),
      value0,
  )

  q_values = jnp.where(seen, q_seen, jnp.where(unseen, q_unseen, value))
  adv = jnp.where(seen | unseen, q_values - value, zero)

  slot_adv = jnp.where(slot_first, slot_q - value, zero)
  unseen_adv = jnp.where(unseen_first, q_unseen - value, zero)
  max_pos = jnp.maximum(jnp.max(slot_adv), jnp.max(unseen_adv))
  min_adv = jnp.minimum(jnp.min(slot_adv), jnp.min(unseen_adv))
  scale = jnp.where(max_pos > 0, max_pos, jnp.where(min_adv < 0, -min_adv, 1.0))
  adv_hat = adv / scale
  return ReferenceAdvantageOutput(
      value=jnp.where(has_neighbours, value, zero),
      q_values=q_values,
      counts=counts,
      advantages=adv,
      normalised_advantages=adv_hat,
      p_explore=p,
      num_neighbours=num,
  )
