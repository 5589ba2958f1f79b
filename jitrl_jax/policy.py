"""JitRL as a triple of pure functions: init, act, observe.

`jitrl(...)` closes over the hyperparameters and returns `JitRL(init, act,
observe)`, optax style, so callers can `jax.jit(agent.act)` with no static
arguments and `jax.vmap` it over a batch of states.

One decision (JitRL, arXiv 2601.18510; SPEC sections 4, 5, 7 and 9):

  N(s)  = top_k_neighbours(memory, views(s))               (retrieval)
  A     = advantages(N(s), candidates)                     (advantage)
  paper rule:      z' = z + beta * A, a ~ softmax(z')      (update)
  reference rule:  a = argmax p + w * A_hat, p = softmax(z) or exp(z)

and at the end of an episode, `observe` computes the discounted returns
G_t = sum_j gamma^j r_{t+j} and writes every step into memory.

Masking: masked candidates (mask False or logit -inf) are never chosen and
have probability 0. NaN logits of unmasked candidates: an eager call raises
ValueError; under jit they are treated as masked and `nan_logits` in the
diagnostics is True (see `update`). All candidates masked: index = -1 and
pi = pi_theta = 0.

Dimension letters: C candidates, K neighbours, T episode steps, M memory
capacity, S set size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jitrl_jax import advantage as advantage_lib
from jitrl_jax import memory as memory_lib
from jitrl_jax import retrieval as retrieval_lib
from jitrl_jax import returns as returns_lib
from jitrl_jax import update as update_lib

RULES = ("paper", "reference")


class ActDiagnostics(NamedTuple):
  """What the decision saw; every field has a fixed shape."""

  num_neighbours: jax.Array  # [] int32 |N(s)|
  value: jax.Array  # [] float V(s)
  q_values: jax.Array  # [C] float Q(s, a)
  counts: jax.Array  # [C] int32 n(s, a)
  advantages: jax.Array  # [C] float A = Q - V
  rule_advantages: jax.Array  # [C] float A (paper) or A_hat (reference)
  weight: jax.Array  # [] float beta (paper) or w (reference)
  p_explore: jax.Array  # [] float bonus probability (lam or p_explore)
  logits: jax.Array  # [C] float z with masked / NaN candidates at -inf
  scores: jax.Array  # [C] float z' (paper) or p + w A_hat (reference)
  pi_theta: jax.Array  # [C] float softmax(z), the LM's policy
  pi: jax.Array  # [C] float softmax(z') (paper) or one-hot (reference)
  lm_index: jax.Array  # [] int32 argmax z (-1 if all masked)
  flipped: jax.Array  # [] bool index != lm_index
  nan_logits: jax.Array  # [] bool some unmasked logit was NaN
  neighbours: retrieval_lib.Neighbours  # fields [K]


class ActOutput(NamedTuple):
  index: jax.Array  # [] int32 chosen candidate, -1 if all are masked
  diagnostics: ActDiagnostics


class JitRL(NamedTuple):
  """The pure functions of a JitRL agent (see `jitrl`)."""

  init: Callable[..., memory_lib.MemoryState]
  act: Callable[..., ActOutput]
  observe: Callable[..., memory_lib.MemoryState]


def _argmax_or_minus_one(scores: jax.Array) -> jax.Array:
  """[] int32 argmax over the finite-or-+inf scores, -1 if all are -inf."""
  index = jnp.argmax(scores).astype(jnp.int32)
  return jnp.where(jnp.any(~jnp.isneginf(scores)), index, jnp.int32(-1))


def jitrl(
    *,
    k: int = 10,
    beta: float = 1.0,
    lam: float = 0.5,
    alpha: float = 1.0,
    view_weights: tuple[float, ...] = (0.3, 0.7),
    threshold: float | Callable[[jax.Array], jax.Array] | None = None,
    rule: str = "paper",
    greedy: bool = False,
    stochastic_bonus: bool = True,
    kl_budget: float | None = None,
    gamma: float = 0.5,
    k_exact: int = 0,
    exact_threshold: float = 0.98,
    p_explore: float | None = None,
    web: bool = False,
    reference_probabilities: str = "softmax",
    tau0: float = 0.95,
) -> JitRL:
  """Builds the JitRL agent's pure functions (JitRL, arXiv 2601.18510).

  Args:
    k: neighbours retrieved per state (K).
    beta: update strength (paper rule): z' = z + beta * A.
    lam: probability of the optimism bonus for unseen candidates (paper).
    alpha: bonus numerator, the bonus is alpha / |N(s)| (both rules).
    view_weights: weight of each view in the similarity.
    threshold: similarity threshold tau; a float, a function of the step
      within the episode (a schedule, as optax's), or None for the rule's
      default: 0.0 for the paper rule, `retrieval.reference_threshold`
      (tau0 -> tau0 - 0.1) for the reference rule.
    rule: "paper" (SPEC 5, 7) or "reference" (SPEC 9).
    greedy: paper rule: argmax of z' instead of a sample.
    stochastic_bonus: draw the bonus (paper: Bernoulli(lam); reference:
      Bernoulli(p_explore)) with the act key; False uses its expectation.
    kl_budget: paper rule: if set, beta is chosen per state by
      `update.beta_for_kl_budget` so that KL(pi' || pi_theta) = kl_budget,
      and `beta` is ignored.
    gamma: discount of the returns written by `observe`.
    k_exact: reference exact tier (second cap, see `top_k_neighbours`).
    exact_threshold: similarity above which an entry is in the exact tier.
    p_explore: reference rule: None for the adaptive text-game rule, a
      float for a constant.
    web: reference rule for web tasks: w = 1 and p_explore = 0.05 (unless
      given).
    reference_probabilities: reference rule's p: "softmax" (softmax of z
      over the candidates) or "exp" (exp z, for z the log-probability of
      an option token).
    tau0: first threshold of the reference schedule (threshold None).

  Returns:
    `JitRL(init, act, observe)`:

    * init(capacity, view_sizes) -> MemoryState.
    * act(memory, logits [C], candidate_ids [C], candidate_mask [C],
      query_views, key, step=0, episodes_done=0) -> ActOutput. The key is
      consumed (retrieval is deterministic; the bonus draws and the sample
      use it). `step` is the step within the episode (threshold
      schedule); `episodes_done` feeds the reference weight w.
    * observe(memory, views [T, ...], action_ids [T], rewards [T],
      mask [T], task_id, episode_id) -> MemoryState.

  Raises:
    ValueError: on an unknown rule or probability form.
  """
  if rule not in RULES:
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
  if reference_probabilities not in ("softmax", "exp"):
    raise ValueError(
        "reference_probabilities must be 'softmax' or 'exp', got "
        f"{reference_probabilities!r}"
    )
  if kl_budget is not None and rule != "paper":
    raise ValueError("kl_budget applies to the paper rule only")
  if web and p_explore is None:
    p_explore = 0.05

  if threshold is None:
    if rule == "reference":
      threshold_fn = lambda step: retrieval_lib.reference_threshold(
          step, tau0=tau0
      )
    else:
      threshold_fn = lambda step: jnp.float32(0.0)
  elif callable(threshold):
    threshold_fn = threshold
  else:
    threshold_fn = lambda step: jnp.float32(threshold)

  def init(capacity: int, view_sizes: tuple[int, ...]):
    return memory_lib.init(capacity, view_sizes)

  def act(
      memory,
      logits,
      candidate_ids,
      candidate_mask,
      query_views,
      key,
      step=0,
      episodes_done=0,
  ) -> ActOutput:
    logits = jnp.asarray(logits)
    c = logits.shape
    if len(c) != 1:
      raise ValueError(
          f"act is unbatched: logits must be [C], got {c}; vmap it."
      )
    if jnp.shape(candidate_ids) != c or jnp.shape(candidate_mask) != c:
      raise ValueError(
          f"candidate_ids {jnp.shape(candidate_ids)} and candidate_mask "
          f"{jnp.shape(candidate_mask)} must match logits {c}."
      )
    candidate_ids = jnp.asarray(candidate_ids, jnp.int32)
    mask = jnp.asarray(candidate_mask, bool)
    k_bonus, k_choice = jax.random.split(key)
    bonus_key = k_bonus if stochastic_bonus else None

    nan_logits = jnp.any(
        update_lib.nan_candidates(
            logits, jnp.zeros_like(logits), 0.0, mask=mask
        )
    )
    # Eagerly raises on NaN; traced: NaN and masked -> -inf.
    z = update_lib.modulate_logits(
        logits, jnp.zeros_like(logits), 0.0, mask=mask
    )
    valid = ~jnp.isneginf(z)
    pi_theta = update_lib.softmax_policy(z)
    lm_index = _argmax_or_minus_one(z)

    neighbours = retrieval_lib.top_k_neighbours(
        memory,
        query_views,
        k=k,
        weights=view_weights,
        threshold=threshold_fn(step),
        k_exact=k_exact,
        exact_threshold=exact_threshold,
    )

    if rule == "paper":
      out = advantage_lib.advantages(
          neighbours,
          candidate_ids,
          valid,
          lam=lam,
          alpha=alpha,
          key=bonus_key,
      )
      adv = out.advantages.astype(z.dtype)
      if kl_budget is None:
        weight = jnp.asarray(beta, z.dtype)
      else:
        weight = update_lib.beta_for_kl_budget(z, adv, kl_budget)
      scores = update_lib.modulate_logits(z, adv, weight)
      pi = update_lib.softmax_policy(scores)
      if greedy:
        index = _argmax_or_minus_one(scores)
      else:
        sample = jax.random.categorical(k_choice, scores).astype(jnp.int32)
        index = jnp.where(jnp.any(valid), sample, jnp.int32(-1))
      rule_adv = adv
      p_bonus = jnp.asarray(lam, z.dtype)
    else:
      out = advantage_lib.reference_advantages(
          neighbours,
          candidate_ids,
          valid,
          alpha=alpha,
          key=bonus_key,
          p_explore=p_explore,
      )
      adv = out.advantages.astype(z.dtype)
      rule_adv = out.normalised_advantages.astype(z.dtype)
      if reference_probabilities == "softmax":
        p = pi_theta
      else:
        p = jnp.where(valid, jnp.exp(z), 0.0)
      weight = update_lib.reference_weight(episodes_done, web=web)
      weight = weight.astype(z.dtype)
      scores = jnp.where(valid, p + weight * rule_adv, -jnp.inf)
      index = update_lib.reference_choice(p, rule_adv, weight, mask=valid)
      pi = jax.nn.one_hot(index, c[0], dtype=z.dtype)  # zeros for -1
      p_bonus = out.p_explore.astype(z.dtype)

    diagnostics = ActDiagnostics(
        num_neighbours=out.num_neighbours,
        value=out.value.astype(z.dtype),
        q_values=out.q_values.astype(z.dtype),
        counts=out.counts,
        advantages=adv,
        rule_advantages=rule_adv,
        weight=weight,
        p_explore=p_bonus,
        logits=z,
        scores=scores,
        pi_theta=pi_theta,
        pi=pi,
        lm_index=lm_index,
        flipped=(index != lm_index) & (index >= 0),
        nan_logits=nan_logits,
        neighbours=neighbours,
    )
    return ActOutput(index=index, diagnostics=diagnostics)

  def observe(
      memory,
      views,
      action_ids,
      rewards,
      mask,
      task_id,
      episode_id,
  ):
    rets = returns_lib.discounted_returns(rewards, mask, gamma=gamma)
    return memory_lib.add_episode(
        memory, views, action_ids, rets, rewards, mask, task_id, episode_id
    )

  return JitRL(init=init, act=act, observe=observe)
