"""The theory lab's rules: settings, hyperparameters and one step's policy.

Rules (the policy pi' an agent acts with in state s, prior logits z):

  jitrl          pi' = softmax(z + beta A_hat), sampled: `policy.act` with
                 the jitrl rule (docs/method.md sections 5, 7)
  reference      argmax(p + w A_hat_ref): `policy.act` with the reference rule
                 (the authors' code, docs/method.md section 9)
  gradient_kl    the same KL-regularised objective as jitrl, max_pi
                 E_pi[A_hat] - KL(pi || pi_theta) / beta, solved by `steps`
                 optax gradient steps on the logits from z
  reinforce      REINFORCE on per-state logits (a table over the hidden
                 states, initialised at the prior), optax SGD after each
                 episode, per-state EMA baseline
  ppo            PPO-clip on the same table: `ppo_epochs` clipped steps on each
                 episode's batch (one on-policy update per episode)
  static         pi' = pi_theta (no update)
  greedy_memory  argmax_a A_hat(s, a) (no prior; unseen actions get the
                 expected optimism bonus, ties broken at random)

The lab retrieves N(s) once a step (`neighbours`, or the runner's
`neighbours_fn`) and hands it to `policy.act` (`neighbours=`), which is the
only code that turns neighbours into the jitrl and reference policies; the lab
keeps its own draw of the action (inverse CDF of one shared uniform, see
`inverse_cdf`) so that every rule sees the same random numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jitrl_jax import advantage as advantage_lib
from jitrl_jax import config as config_lib
from jitrl_jax import memory as memory_lib
from jitrl_jax import policy as policy_lib
from jitrl_jax import retrieval as retrieval_lib
from jitrl_jax import update as update_lib

RULES = (
    "jitrl",
    "reference",
    "gradient_kl",
    "reinforce",
    "ppo",
    "static",
    "greedy_memory",
)
MEMORY_RULES = ("jitrl", "reference", "gradient_kl", "greedy_memory")
PG_RULES = ("reinforce", "ppo")


class Hyper(NamedTuple):
  """Hyperparameters that may be traced (so vmapped in sweeps).

  Attributes:
    policy: the policy's `config.Hyper` ([] float32 each): beta, lam and
      alpha are read; gamma and temperature are unused (returns are
      discounted with the environment's gamma, and the prior is not
      tempered).
    k: [] int32 neighbours used (<= Settings.k_max).
    random_ties: [] bool: break similarity ties at random instead of by
      higher return (the retrieval rule); a diagnostic of the rule's
      selection bias.
  """

  policy: config_lib.Hyper
  k: jax.Array
  random_ties: jax.Array


def hyper_field(hyper: Hyper, name: str) -> jax.Array:
  """The field `name` of `hyper` or of its `policy` hyperparameters."""
  if name in config_lib.HYPER_FIELDS:
    return getattr(hyper.policy, name)
  return getattr(hyper, name)


def replace_hyper(hyper: Hyper, name: str, value) -> Hyper:
  """`hyper` with the field `name` (its own or its policy's) set to value."""
  if name in config_lib.HYPER_FIELDS:
    return hyper._replace(policy=hyper.policy._replace(**{name: value}))
  return hyper._replace(**{name: value})


@dataclasses.dataclass(frozen=True)
class Settings:
  """Static settings of one compiled run (shapes and the fixed knobs).

  The rule is not here: it is a traced index into RULES, dispatched with
  `lax.switch` on an unbatched index, so one compiled program serves every
  rule (only the chosen branch runs). `policy.rule` is "jitrl"; the reference
  branch acts with a copy whose rule is "reference".

  Attributes:
    episodes: episodes per agent.
    policy: the policy's static `config.Settings`: k (the k_max neighbours
      retrieved, of which `Hyper.k` are used), memory_capacity (M),
      threshold, stochastic_bonus (for both memory rules: the jitrl bonus
      Bernoulli(lam) and the reference bonus Bernoulli(p_explore)) and
      similarity_method. Every view weighs 1 (`view_weights` is ignored).
    gkl_steps, gkl_learning_rate, gkl_optimizer: the gradient_kl rule.
    pg_learning_rate, baseline_rate, ppo_epochs, ppo_clip: the
      policy-gradient rules.
  """

  episodes: int
  policy: config_lib.Settings
  gkl_steps: int = 100
  gkl_learning_rate: float = 0.1
  gkl_optimizer: str = "adam"
  pg_learning_rate: float = 0.5
  baseline_rate: float = 0.1
  ppo_epochs: int = 4
  ppo_clip: float = 0.2

  @property
  def k_max(self) -> int:
    """Neighbours retrieved (the most a sweep's `Hyper.k` may use)."""
    return self.policy.k

  @property
  def memory_size(self) -> int:
    """M, each agent's memory capacity."""
    return self.policy.memory_capacity


class StateValues(NamedTuple):
  """What a step reads of its state, computed once a step."""

  z: jax.Array  # [C] prior logits
  q_true: jax.Array  # [C] true Q
  views: tuple  # V token-set views


class StepOutput(NamedTuple):
  """The policy of one step and its diagnostics."""

  pi: jax.Array  # [C] the distribution acted from
  action: jax.Array  # [] int32
  a_err2: jax.Array  # [] shift-invariant squared A error (mean over C)
  q_err2: jax.Array  # [] sum of squared Q errors over seen actions
  q_count: jax.Array  # [] number of seen actions
  num_neighbours: jax.Array  # [] int32 |N(s)|
  tv_jitrl: jax.Array  # [] TV(pi', jitrl's pi') (gradient_kl)


# neighbours_fn(settings, hyper, memory, views, key) -> Neighbours [k_max].
NeighboursFn = Callable[..., retrieval_lib.Neighbours]


def rule_id(rule: str) -> jax.Array:
  """[] int32 index of `rule` in RULES."""
  if rule not in RULES:
    raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")
  return jnp.int32(RULES.index(rule))


def state_values(env, params, state) -> StateValues:
  """The state's prior logits, true Q and views."""
  return StateValues(
      env.prior_logits(params, state),
      env.true_q(params, state),
      env.views(params, state),
  )


def inverse_cdf(pi: jax.Array, u: jax.Array) -> jax.Array:
  """Index a with cdf(a - 1) <= u < cdf(a): a draw from pi given u ~ U(0,1).

  Args:
    pi: [C] probabilities.
    u: [] uniform in [0, 1).

  Returns:
    [] int32 in [0, C).
  """
  cdf = jnp.cumsum(pi)
  return jnp.minimum(jnp.sum(cdf <= u), pi.shape[0] - 1).astype(jnp.int32)


def gkl_optimizer(settings: Settings) -> optax.GradientTransformation:
  """The optax optimizer of the gradient-kl rule."""
  if settings.gkl_optimizer == "adam":
    return optax.adam(settings.gkl_learning_rate)
  if settings.gkl_optimizer == "sgd":
    return optax.sgd(settings.gkl_learning_rate)
  raise ValueError(f"unknown optimizer {settings.gkl_optimizer!r}")


def gradient_kl_policy(
    logits: jax.Array,
    advantages: jax.Array,
    beta: jax.Array,
    *,
    steps: int,
    optimizer: optax.GradientTransformation,
    trajectory: bool = False,
) -> jax.Array:
  """The KL-regularised optimum by gradient ascent on the logits.

  Maximises J(y) = E_{a ~ softmax(y)}[A(a)] - KL(softmax(y) || softmax(z)) /
  beta (`update.kl_regularised_objective`) over y with `steps` optimizer
  steps from y = z. Each step costs one gradient of J; the closed form
  softmax(z + beta A) costs one addition.

  Args:
    logits: [C] z, the prior's logits.
    advantages: [C] A.
    beta: [] strength (> 0).
    steps: number of gradient steps.
    optimizer: an optax optimizer (it minimises -J).
    trajectory: if True, return every iterate's policy.

  Returns:
    [C] probabilities softmax(y_steps), or [steps, C] softmax(y_1..steps)
    with `trajectory`.
  """
  pi_theta = jax.nn.softmax(logits)

  def loss(y):
    return -update_lib.kl_regularised_objective(
        jax.nn.softmax(y), pi_theta, advantages, beta
    )

  def body(carry, _):
    y, opt_state = carry
    grads = jax.grad(loss)(y)
    updates, opt_state = optimizer.update(grads, opt_state, y)
    y = optax.apply_updates(y, updates)
    return (y, opt_state), (jax.nn.softmax(y) if trajectory else None)

  (y, _), iterates = jax.lax.scan(
      body, (logits, optimizer.init(logits)), None, length=steps
  )
  return iterates if trajectory else jax.nn.softmax(y)


def neighbours(settings, hyper, memory, views, key):
  """Top-k_max neighbours (`policy.retrieve`), truncated to the first hyper.k.

  The retrieval order is total (recency is unique), so the top k is the
  prefix of length k of the top k_max: one retrieval serves every k <= k_max.

  With hyper.random_ties the similarity ties are broken by a random key
  instead of the higher return (the retrieval sorts by the `returns` field
  after similarity, so it is given uniform noise there, and the real
  returns are read back for the chosen rows).

  Args:
    settings: static settings (the policy's k, threshold, kernel).
    hyper: Hyper (k, random_ties).
    memory: the agent's memory.
    views: the query's views.
    key: PRNG key for the random tie-break, consumed.

  Returns:
    Neighbours [k_max], masked beyond hyper.k.
  """
  # The noise is drawn only when asked for (lax.cond on an unbatched flag;
  # a per-agent flag in sweeps becomes a select, as before).
  tie_order = jax.lax.cond(
      hyper.random_ties,
      lambda: jax.random.uniform(key, memory.returns.shape),
      lambda: memory.returns,
  )
  order = memory._replace(returns=tie_order)
  rule = dataclasses.replace(settings.policy, view_weights=(1.0,) * len(views))
  nb = policy_lib.retrieve(rule, order, views)
  mask = nb.mask & (jnp.arange(settings.k_max) < hyper.k)
  returns = jnp.where(mask, memory.returns[nb.indices], 0.0)
  return nb._replace(mask=mask, returns=returns)


def estimation_errors(nb, q_true, hyper: Hyper):
  """Errors of the memory's estimates in one state (measurements only).

  With the expected bonus (lam * alpha / |N|, no draw), so that the bonus
  draw is not counted as error. A matters only up to a constant (softmax),
  so the A error is shift-invariant: d = A_hat - Q, error^2 = mean_a (d_a -
  mean d)^2, over all C candidates (unseen ones carry the bonus).

  Args:
    nb: the state's Neighbours.
    q_true: [C] true Q (candidate a is action a).
    hyper: Hyper (lam, alpha).

  Returns:
    (advantage output with the expected bonus, [] a_err2, [] q_err2,
    [] q_count).
  """
  c = q_true.shape[0]
  expected = advantage_lib.advantages(
      nb,
      jnp.arange(c, dtype=jnp.int32),
      jnp.ones((c,), bool),
      lam=hyper.policy.lam,
      alpha=hyper.policy.alpha,
  )
  d = expected.advantages - q_true
  a_err2 = jnp.mean((d - d.mean()) ** 2)
  seen = expected.counts > 0
  q_err2 = jnp.sum(jnp.where(seen, (expected.q_values - q_true) ** 2, 0.0))
  q_count = jnp.sum(seen).astype(jnp.float32)
  return expected, a_err2, q_err2, q_count


def step_policy(
    env,
    settings: Settings,
    hyper: Hyper,
    rule,
    agent,
    params,
    env_state,
    key,
    episode,
    values: StateValues,
    *,
    neighbours_fn: NeighboursFn = neighbours,
) -> StepOutput:
  """pi' of rule `rule` (traced index) in env_state, action, diagnostics.

  Args:
    env: a synthetic `Environment`.
    settings: static `Settings`.
    hyper: `Hyper` (traced).
    rule: [] int32 index into RULES (traced, unbatched).
    agent: the agent (its `memory` and policy-gradient `table`).
    params: the environment instance.
    env_state: the state acted in.
    key: PRNG key of the step, consumed: split as `policy.act` splits it
      into (bonus draws, choice); the choice key gives the uniform of the
      inverse-CDF draw, shared by every rule.
    episode: [] int32 episodes done (the reference weight w).
    values: the state's `StateValues` (the caller computes them once).
    neighbours_fn: the retrieval, `neighbours` unless replaced (an ablation
      passes a stand-in with the same signature).

  Returns:
    StepOutput.
  """
  z, q_true, views = values
  c = env.num_actions
  _, k_choice = jax.random.split(key)  # policy.act's split
  u = jax.random.uniform(k_choice)
  nb = neighbours_fn(
      settings, hyper, agent.memory, views, jax.random.fold_in(key, 2)
  )

  def act(rule_name: str) -> policy_lib.ActOutput:
    """`policy.act` of the jitrl or reference rule on the neighbours nb."""
    rule_settings = dataclasses.replace(settings.policy, rule=rule_name)
    return policy_lib.jitrl(rule_settings).act(
        agent.memory,
        z,
        jnp.arange(c, dtype=jnp.int32),
        jnp.ones((c,), bool),
        views,
        key,
        episodes_done=episode,
        neighbours=nb,
        hyper=hyper.policy,
    )

  paper = act("jitrl").diagnostics
  expected, a_err2, q_err2, q_count = estimation_errors(nb, q_true, hyper)
  zero = jnp.float32(0.0)

  def jitrl():
    return paper.pi, inverse_cdf(paper.pi, u), zero

  def reference():
    out = act("reference")
    return out.diagnostics.pi, out.index, zero

  def gradient_kl():
    pi = gradient_kl_policy(
        z,
        paper.advantages,
        hyper.policy.beta,
        steps=settings.gkl_steps,
        optimizer=gkl_optimizer(settings),
    )
    return pi, inverse_cdf(pi, u), 0.5 * jnp.sum(jnp.abs(pi - paper.pi))

  def tabular():  # reinforce and ppo act the same way
    pi = jax.nn.softmax(agent.table[env.state_id(params, env_state)])
    return pi, inverse_cdf(pi, u), zero

  def static():
    pi = jax.nn.softmax(z)
    return pi, inverse_cdf(pi, u), zero

  def greedy_memory():
    tie = 1e-6 * jax.random.uniform(jax.random.fold_in(k_choice, 1), (c,))
    action = jnp.argmax(expected.advantages + tie).astype(jnp.int32)
    return jax.nn.one_hot(action, c), action, zero

  branches = {
      "jitrl": jitrl,
      "reference": reference,
      "gradient_kl": gradient_kl,
      "reinforce": tabular,
      "ppo": tabular,
      "static": static,
      "greedy_memory": greedy_memory,
  }
  pi, action, tv = jax.lax.switch(rule, [branches[r] for r in RULES])
  return StepOutput(
      pi=pi,
      action=action,
      a_err2=a_err2,
      q_err2=q_err2,
      q_count=q_count,
      num_neighbours=paper.num_neighbours,
      tv_jitrl=tv,
  )


class AgentState(NamedTuple):
  """What one agent carries from episode to episode."""

  memory: memory_lib.MemoryState  # its own memory (capacity M)
  table: jax.Array  # [N, C] per-state logits (policy-gradient rules)
  baseline: jax.Array  # [N] EMA of the return per hidden state


def pg_update(settings, agent, state_ids, actions, returns, *, ppo: bool):
  """One REINFORCE step, or `ppo_epochs` PPO-clip steps, on the table.

  Advantage estimate G_t - b(s_t) with b the per-state EMA baseline; then
  b(s) <- b(s) + rate (G_t - b(s)) for each visited s. Optimiser: optax SGD.

    REINFORCE: loss = -sum_t (G_t - b(s_t)) log pi(a_t | s_t)
    PPO-clip:  loss = -sum_t min(r_t adv_t, clip(r_t, 1 - eps, 1 + eps)
               adv_t), r_t = pi(a_t | s_t) / pi_old(a_t | s_t)

  Args:
    settings: static settings (learning rate, PPO clip and epochs).
    agent: the `AgentState`.
    state_ids: [T] int32 hidden states visited.
    actions: [T] int32 actions taken.
    returns: [T] returns G_t.
    ppo: PPO-clip (True) or REINFORCE (False).

  Returns:
    The agent with its table and baseline updated.
  """
  opt = optax.sgd(settings.pg_learning_rate)
  adv = returns - agent.baseline[state_ids]

  def log_probs(table):
    lp = jax.nn.log_softmax(table[state_ids])  # [T, C]
    return jnp.take_along_axis(lp, actions[:, None], axis=1)[:, 0]

  old = jax.lax.stop_gradient(log_probs(agent.table))

  def loss(table):
    if not ppo:
      return -jnp.sum(adv * log_probs(table))
    ratio = jnp.exp(log_probs(table) - old)
    clipped = jnp.clip(ratio, 1.0 - settings.ppo_clip, 1.0 + settings.ppo_clip)
    return -jnp.sum(jnp.minimum(ratio * adv, clipped * adv))

  def body(carry, _):
    table, opt_state = carry
    updates, opt_state = opt.update(jax.grad(loss)(table), opt_state, table)
    return (optax.apply_updates(table, updates), opt_state), None

  (table, _), _ = jax.lax.scan(
      body,
      (agent.table, opt.init(agent.table)),
      None,
      length=settings.ppo_epochs if ppo else 1,
  )
  baseline = agent.baseline.at[state_ids].add(
      settings.baseline_rate * (returns - agent.baseline[state_ids])
  )
  return agent._replace(table=table, baseline=baseline)
