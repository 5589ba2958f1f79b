"""JitRL as a triple of pure functions: init, act, observe.

`jitrl(...)` closes over the hyperparameters and returns `JitRL(init, act,
observe)`, optax style, so callers can `jax.jit(agent.act)` with no static
arguments and `jax.vmap` it over a batch of states.

One decision (JitRL, arXiv 2601.18510; docs/method.md sections 4, 5, 7 and 9):

  N(s)  = top_k_neighbours(memory, views(s))               (retrieval)
  A     = advantages(N(s), candidates)                     (advantage)
  jitrl rule:      z' = z + beta * A, a ~ softmax(z')      (update)
  reference rule:  a = argmax p + w * A_hat, p = softmax(z) or exp(z)

and at the end of an episode, `observe` computes the discounted returns
G_t = sum_j gamma^j r_{t+j} and writes every step into memory.

The generating agents (the LM writes the command) tilt the LM over whole
strings instead of candidates; `memory_command_advantages` is their one glue
from N(s) to (the neighbours' commands, A = Q - V, and A_0 for every other
string), and `models.tilting` does the rest.

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

import chex
import jax
import jax.numpy as jnp

from jitrl_jax import advantage as advantage_lib
from jitrl_jax import config as config_lib
from jitrl_jax import memory as memory_lib
from jitrl_jax import retrieval as retrieval_lib
from jitrl_jax import returns as returns_lib
from jitrl_jax import update as update_lib

RULES = config_lib.RULES
Settings = config_lib.Settings
Hyper = config_lib.Hyper


class ActDiagnostics(NamedTuple):
  """What the decision saw; every field has a fixed shape."""

  num_neighbours: jax.Array  # [] int32 |N(s)|
  value: jax.Array  # [] float V(s)
  q_values: jax.Array  # [C] float Q(s, a)
  counts: jax.Array  # [C] int32 n(s, a)
  advantages: jax.Array  # [C] float A = Q - V
  rule_advantages: jax.Array  # [C] float A (jitrl) or A_hat (reference)
  weight: jax.Array  # [] float beta (jitrl) or w (reference)
  p_explore: jax.Array  # [] float bonus probability (lam or p_explore)
  logits: jax.Array  # [C] float z with masked / NaN candidates at -inf
  scores: (
      jax.Array
  )  # [C] float z' (jitrl; shifted by a constant) or p + w A_hat
  pi_theta: jax.Array  # [C] float softmax(z), the LM's policy
  pi: jax.Array  # [C] float softmax(z') (jitrl) or one-hot (reference)
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


def threshold_fn(settings: Settings) -> Callable[[jax.Array], jax.Array]:
  """step -> [] float32 similarity threshold tau of the settings' rule."""
  threshold = settings.threshold
  if threshold is None:
    if settings.rule == "reference":
      return lambda step: retrieval_lib.reference_threshold(
          step, tau0=settings.tau0
      )
    return lambda step: jnp.float32(0.0)
  if callable(threshold):
    return threshold
  return lambda step: jnp.float32(threshold)


def retrieve(
    settings: Settings,
    memory: memory_lib.MemoryState,
    query_views,
    step=0,
) -> retrieval_lib.Neighbours:
  """N(s): the settings' top-k neighbours of one query (docs/method.md 4).

  Args:
    settings: the static settings (k, view weights, threshold, exact tier,
      kernel).
    memory: the memory, M rows.
    query_views: V TokenSets, view v ids [S_v], counts [S_v].
    step: [] int step within the episode (threshold schedule).

  Returns:
    Neighbours, each field [K] with K = `settings.neighbour_slots`.
  """
  reference = settings.rule == "reference"
  return retrieval_lib.top_k_neighbours(
      memory,
      query_views,
      k=settings.k,
      weights=settings.view_weights,
      threshold=threshold_fn(settings)(step),
      k_exact=settings.k_exact if reference else 0,
      exact_threshold=settings.exact_threshold,
      method=settings.similarity_method,
      floors=settings.view_floors or None,
  )


class MemoryCommands(NamedTuple):
  """The neighbours' commands and their advantages (one state).

  What a generating agent tilts its LM by (`memory_command_advantages`):
  A(s, y) = advantages[j] when y is the command of slot j, A_0 = baseline
  for every other string.
  """

  action_ids: jax.Array  # [S] int32 the neighbours' action ids
  advantages: jax.Array  # [S] float A_s = Q(s, a_s) - V(s); 0 where masked
  mask: jax.Array  # [S] bool the first slot of each distinct action
  baseline: jax.Array  # [] float A_0, the advantage of every other string
  value: jax.Array  # [] float V(s)
  counts: jax.Array  # [S] int32 n(s, a_s)


def memory_command_advantages(
    settings: Settings, hyper: Hyper, neighbours: retrieval_lib.Neighbours
) -> MemoryCommands:
  """N(s) -> the S = K distinct commands the neighbours took, with A = Q - V.

  The glue between memory and a generating agent: the neighbours' distinct
  action ids become the candidates of `advantage.advantages` (the paper
  rule, docs/method.md section 5), so each gets A_s = Q(s, a_s) - V(s);
  none is unseen, so no optimism bonus is drawn. Every other string y gets
  A_0: 0 (`settings.other_command_advantage == "zero"`), or the expected
  bonus lam * alpha / |N(s)| ("expected_bonus"; 0 with no neighbours). The
  slots keep the neighbours' order (slot j stands for neighbour j's
  action; repeats are masked), so no distinct action is dropped.

  Args:
    settings: the static settings (other_command_advantage).
    hyper: lam and alpha (the bonus of A_0).
    neighbours: N(s), fields [K].

  Returns:
    `MemoryCommands` with fields [S], S = K.
  """
  ids = jnp.asarray(neighbours.action_ids, jnp.int32)
  # No environment candidates and no return bound: the mask is the first
  # occurrence of each distinct neighbour action.
  distinct = advantage_lib.memory_action_candidates(
      neighbours,
      jnp.zeros((0,), jnp.int32),
      jnp.zeros((0,), bool),
      min_mean_return=-jnp.inf,
  ).mask
  out = advantage_lib.advantages(
      neighbours, ids, distinct, lam=hyper.lam, alpha=hyper.alpha, key=None
  )
  dtype = out.advantages.dtype
  if settings.other_command_advantage == "expected_bonus":
    size = jnp.maximum(out.num_neighbours, 1).astype(dtype)
    bonus = jnp.asarray(hyper.lam, dtype) * jnp.asarray(hyper.alpha, dtype)
    baseline = jnp.where(out.num_neighbours > 0, bonus / size, 0.0)
  else:
    baseline = jnp.zeros((), dtype)
  return MemoryCommands(
      action_ids=ids,
      advantages=jnp.where(distinct, out.advantages, 0.0),
      mask=distinct,
      baseline=baseline.astype(dtype),
      value=out.value,
      counts=out.counts,
  )


def _with_failure_penalty(rewards, mask, lost, penalty):
  """[T] rewards with `penalty` added at the last real step if `lost`.

  The reference rule's failure signal (docs/method.md section 9).
  """
  rewards = jnp.asarray(rewards)
  mask = jnp.asarray(mask, bool)
  last = jnp.sum(mask, dtype=jnp.int32) - 1
  hit = (jnp.arange(rewards.shape[0]) == last) & jnp.asarray(lost, bool)
  return jnp.where(hit, rewards + jnp.asarray(penalty, rewards.dtype), rewards)


def _check_candidates(logits, candidate_ids, candidate_mask) -> None:
  chex.assert_rank(logits, 1)
  chex.assert_equal_shape(
      [logits, jnp.asarray(candidate_ids), jnp.asarray(candidate_mask)]
  )


def _jitrl_rule(settings, hyper, nb, z, valid, ids, bonus_key, choice_key):
  """The paper rule: z' = z + beta A, a ~ softmax(z') (or its argmax)."""
  out = advantage_lib.advantages(
      nb, ids, valid, lam=hyper.lam, alpha=hyper.alpha, key=bonus_key
  )
  adv = out.advantages.astype(z.dtype)
  if settings.kl_budget is None:
    weight = jnp.asarray(hyper.beta, z.dtype)
  else:
    weight = update_lib.beta_for_kl_budget(z, adv, settings.kl_budget)
  scores = update_lib.modulate_logits(z, adv, weight)
  if settings.greedy:
    index = _argmax_or_minus_one(scores)
  else:
    sample = jax.random.categorical(choice_key, scores).astype(jnp.int32)
    index = jnp.where(jnp.any(valid), sample, jnp.int32(-1))
  p_bonus = jnp.asarray(hyper.lam, z.dtype)
  pi = update_lib.softmax_policy(scores)
  return out, adv, adv, weight, scores, pi, index, p_bonus


def _reference_rule(
    settings, hyper, nb, z, valid, ids, bonus_key, pi_theta, episodes_done
):
  """The authors' code rule: a = argmax p + w A_hat (docs/method.md 9)."""
  out = advantage_lib.reference_advantages(
      nb,
      ids,
      valid,
      alpha=hyper.alpha,
      key=bonus_key,
      p_explore=settings.explore_probability,
  )
  adv = out.advantages.astype(z.dtype)
  rule_adv = out.normalised_advantages.astype(z.dtype)
  if settings.reference_probabilities == "softmax":
    p = pi_theta
  else:
    p = jnp.where(valid, jnp.exp(z), 0.0)
  weight = update_lib.reference_weight(episodes_done, web=settings.web)
  weight = weight.astype(z.dtype)
  scores = jnp.where(valid, p + weight * rule_adv, -jnp.inf)
  index = update_lib.reference_choice(p, rule_adv, weight, mask=valid)
  pi = jax.nn.one_hot(index, z.shape[0], dtype=z.dtype)  # zeros for -1
  p_bonus = out.p_explore.astype(z.dtype)
  return out, adv, rule_adv, weight, scores, pi, index, p_bonus


def jitrl(
    settings: Settings | None = None,
    hyper: Hyper | None = None,
    **kwargs,
) -> JitRL:
  """Builds the JitRL agent's pure functions (JitRL, arXiv 2601.18510).

  Either pass `settings` and `hyper` (see `jitrl_jax.config`) or the fields
  of either as keyword arguments (`jitrl(k=4, beta=2.0, rule="reference")`);
  keywords override the fields of the values given.

  Args:
    settings: static settings (rule, k, view weights, switches).
    hyper: hyperparameters (beta, lam, alpha, gamma); `act` may also take
      them per call, traced.
    **kwargs: fields of `Settings` or `Hyper`.

  Returns:
    `JitRL(init, act, observe)`:

    * init(capacity, view_sizes) -> MemoryState.
    * act(memory, logits [C], candidate_ids [C], candidate_mask [C],
      query_views, key, step=0, episodes_done=0, *, neighbours=None,
      hyper=None) -> ActOutput. The key is consumed (retrieval is
      deterministic; the bonus draws and the sample use it). `step` is the
      step within the episode (threshold schedule); `episodes_done` feeds
      the reference weight w. `neighbours`: N(s) already retrieved (for
      instance by `retrieve`, once per decision), which skips retrieval and
      makes `memory` and `query_views` unused. `hyper`: this call's
      hyperparameters (traced), instead of the constructor's.
    * observe(memory, views [T, ...], action_ids [T], rewards [T],
      mask [T], task_id, episode_id, lost=False) -> MemoryState. `lost`:
      the episode was lost (the reference rule's failure penalty).

  Raises:
    ValueError: on an unknown rule or probability form.
    TypeError: on an unknown keyword.
  """
  settings = settings or Settings()
  hyper = config_lib.check_hyper(hyper or Hyper())
  if kwargs:
    base = config_lib.as_dict(settings, hyper)
    base.update(kwargs)
    settings, hyper, _ = config_lib.split_kwargs(base)
  default_hyper = hyper

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
      *,
      neighbours=None,
      hyper=None,
  ) -> ActOutput:
    hyper = default_hyper if hyper is None else config_lib.check_hyper(hyper)
    logits = jnp.asarray(logits)
    _check_candidates(logits, candidate_ids, candidate_mask)
    candidate_ids = jnp.asarray(candidate_ids, jnp.int32)
    mask = jnp.asarray(candidate_mask, bool)
    k_bonus, k_choice = jax.random.split(key)
    bonus_key = k_bonus if settings.stochastic_bonus else None

    zeros = jnp.zeros_like(logits)
    nan_logits = jnp.any(
        update_lib.nan_candidates(logits, zeros, 0.0, mask=mask)
    )
    # Eagerly raises on NaN; traced: NaN and masked -> -inf.
    z = update_lib.modulate_logits(logits, zeros, 0.0, mask=mask)
    valid = ~jnp.isneginf(z)
    pi_theta = update_lib.softmax_policy(z)
    lm_index = _argmax_or_minus_one(z)

    if neighbours is None:
      neighbours = retrieve(settings, memory, query_views, step)
    if settings.rule == "jitrl":
      parts = _jitrl_rule(
          settings,
          hyper,
          neighbours,
          z,
          valid,
          candidate_ids,
          bonus_key,
          k_choice,
      )
    else:
      parts = _reference_rule(
          settings,
          hyper,
          neighbours,
          z,
          valid,
          candidate_ids,
          bonus_key,
          pi_theta,
          episodes_done,
      )
    out, adv, rule_adv, weight, scores, pi, index, p_bonus = parts

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
      lost=False,
  ):
    if settings.rule == "reference" and settings.failure_penalty:
      rewards = _with_failure_penalty(
          rewards, mask, lost, settings.failure_penalty
      )
    rets = returns_lib.discounted_returns(
        rewards, mask, gamma=default_hyper.gamma
    )
    return memory_lib.add_episode(
        memory, views, action_ids, rets, rewards, mask, task_id, episode_id
    )

  return JitRL(init=init, act=act, observe=observe)
