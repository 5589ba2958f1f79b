r"""Theory lab: JitRL's update rules where every value is known exactly.

  python -m experiments.theory_lab                       # default config
  python -m experiments.theory_lab --config.quick=True   # seconds
  python -m experiments.theory_lab --out=runs/x --config.agents=4000

Many independent agents play the synthetic environments of
`jitrl_jax.envs.synthetic` (a contextual bandit over clusters of token sets and
a tree MDP with delayed reward), each with its own memory
(`jitrl_jax.memory.MemoryState`). Agents are vmapped, episodes run under
`lax.scan`, and every rule sees the same environment instances, the same prior
pi_theta and the same random draws (common random numbers: the keys depend on
the agent and the episode, never on the rule; actions are drawn by inverse CDF
from one shared uniform, so rules with equal policies take equal actions).

Rules (the policy pi' an agent acts with in state s, prior logits z):

  closed_form    pi' = softmax(z + beta A_hat), sampled (the paper; A_hat from
                 `advantage.advantages`, logits from `update.modulate_logits`)
  reference      argmax(p + w A_hat_ref) (the authors' code:
                 `advantage.reference_advantages`, `update.reference_choice`)
  gradient_kl    the same KL-regularised objective as closed_form,
                 max_pi E_pi[A_hat] - KL(pi || pi_theta) / beta, solved by
                 `steps` optax gradient steps on the logits from z
  reinforce      REINFORCE on per-state logits (a table over the hidden
                 states, initialised at the prior), optax SGD after each
                 episode, per-state EMA baseline
  ppo            PPO-clip on the same table: `ppo_epochs` clipped steps on each
                 episode's batch (one on-policy update per episode)
  static         pi' = pi_theta (no update)
  greedy_memory  argmax_a A_hat(s, a) (no prior; unseen actions get the
                 expected optimism bonus, ties broken at random)

The policy-gradient rules see the hidden state identity (cluster / node); the
memory rules see only the noisy token sets. Every rule writes its episodes to
its memory, so the error of the advantage estimate is measured for all.

Metrics per agent and episode:

  return     sum_t w^t r_t (w = 1 for the bandit, gamma for the tree)
  regret     sum_t w^t (max_a Q(s_t, a) - sum_a pi'(a | s_t) Q(s_t, a)): the
             expected regret of pi' against the optimal policy along the
             visited states (performance-difference lemma), so that
             E[return + regret] = optimal return
  kl         mean_t KL(pi'(. | s_t) || pi_theta(. | s_t))
  a_error    RMS over steps of the shift-invariant advantage error: with
             d_a = A_hat(s, a) - Q(s, a) over all C candidates, error^2 =
             mean_a (d_a - mean_a d)^2. The update softmax(z + beta A) sees
             A only up to a constant, and A(s, a) = Q(s, a) - V(s) for any
             baseline V, so this is the error of A_hat against the true A
             that matters to the policy. A_hat is taken with the expected
             optimism bonus (lam * alpha / |N|) for unseen actions; with no
             neighbours A_hat = 0 and the error is the spread of the true Q.
  q_error    RMS over steps and seen actions (n(s, a) > 0) of Q_hat(s, a) -
             Q(s, a).
  For the tree, Q is Q* while the memory's returns follow the behaviour
  policy, so both errors also hold that policy gap.

Sweeps (closed_form on `sweep.env`), every knob traced and vmapped with the
agents: the (memory size, k) grid (k through the prefix of the top-k_max, so
one retrieval serves every k; one compile per memory size) and beta and
lambda (riding along with the grid's default memory size).

Outputs in --out (default runs/theory_lab): results.json, regret_curves.png,
diagnostics.png (KL and A-error per episode), bias_variance.png (A-error,
Q-error and regret against k for each memory size), sweeps.png (beta,
lambda).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, NamedTuple, Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np
import optax

from jitrl_jax import advantage as advantage_lib
from jitrl_jax import memory as memory_lib
from jitrl_jax import retrieval as retrieval_lib
from jitrl_jax import returns as returns_lib
from jitrl_jax import update as update_lib
from jitrl_jax.envs import synthetic

_DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "configs", "theory_lab.py"
)

RULES = (
    "closed_form",
    "reference",
    "gradient_kl",
    "reinforce",
    "ppo",
    "static",
    "greedy_memory",
)
MEMORY_RULES = ("closed_form", "reference", "gradient_kl", "greedy_memory")
PG_RULES = ("reinforce", "ppo")


class Hyper(NamedTuple):
  """Hyper-parameters that may be traced (so vmapped in sweeps)."""

  beta: jax.Array  # [] float32 strength of the closed-form update
  lam: jax.Array  # [] float32 probability of the optimism bonus
  alpha: jax.Array  # [] float32 bonus numerator
  k: jax.Array  # [] int32 neighbours used (<= Settings.k_max)
  # [] bool: break similarity ties at random instead of by higher return
  # (the retrieval rule); a diagnostic of the rule's selection bias.
  random_ties: jax.Array


@dataclasses.dataclass(frozen=True)
class Settings:
  """Static settings of one compiled run (shapes and the fixed knobs).

  The rule is not here: it is a traced index into RULES, dispatched with
  `lax.switch` on an unbatched index, so one compiled program serves every
  rule (only the chosen branch runs).
  """

  episodes: int
  memory_size: int
  k_max: int
  threshold: float = 0.0
  stochastic_bonus: bool = True
  similarity_method: str = "unrolled"
  gkl_steps: int = 100
  gkl_learning_rate: float = 0.1
  gkl_optimizer: str = "adam"
  pg_learning_rate: float = 0.5
  baseline_rate: float = 0.1
  ppo_epochs: int = 4
  ppo_clip: float = 0.2


class AgentState(NamedTuple):
  """What one agent carries from episode to episode."""

  memory: memory_lib.MemoryState  # its own memory (capacity M)
  table: jax.Array  # [N, C] per-state logits (policy-gradient rules)
  baseline: jax.Array  # [N] EMA of the return per hidden state


class StepOutput(NamedTuple):
  """The policy of one step and its diagnostics."""

  pi: jax.Array  # [C] the distribution acted from
  action: jax.Array  # [] int32
  a_err2: jax.Array  # [] shift-invariant squared A error (mean over C)
  q_err2: jax.Array  # [] sum of squared Q errors over seen actions
  q_count: jax.Array  # [] number of seen actions
  num_neighbours: jax.Array  # [] int32 |N(s)|
  tv_closed_form: jax.Array  # [] TV(pi', closed-form pi') (gradient_kl)


class EpisodeMetrics(NamedTuple):
  """Metrics of one episode of one agent (leading axes [A, E] when run)."""

  ret: jax.Array  # [] sum_t w^t r_t
  regret: jax.Array  # [] expected regret along the visited states
  kl: jax.Array  # [] mean_t KL(pi' || pi_theta)
  a_err2: jax.Array  # [] sum over steps of the squared A error
  a_count: jax.Array  # [] number of steps measured (T)
  q_err2: jax.Array  # [] sum of squared Q errors over (step, seen action)
  q_count: jax.Array  # [] number of (step, seen action) pairs
  num_neighbours: jax.Array  # [] mean_t |N(s_t)|
  tv_closed_form: jax.Array  # [] mean_t TV to the closed-form policy


def rule_id(rule: str) -> jax.Array:
  """[] int32 index of `rule` in RULES."""
  if rule not in RULES:
    raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")
  return jnp.int32(RULES.index(rule))


def default_hyper(cfg: ml_collections.ConfigDict) -> Hyper:
  """Hyper from the config's `jitrl` block."""
  return Hyper(
      beta=jnp.float32(cfg.jitrl.beta),
      lam=jnp.float32(cfg.jitrl.lam),
      alpha=jnp.float32(cfg.jitrl.alpha),
      k=jnp.int32(cfg.jitrl.k),
      random_ties=jnp.asarray(bool(cfg.jitrl.random_ties)),
  )


def settings_for(
    cfg: ml_collections.ConfigDict,
    *,
    episodes: int | None = None,
    memory_size: int | None = None,
    k_max: int | None = None,
) -> Settings:
  """Static settings from the config (with optional overrides)."""
  return Settings(
      episodes=int(episodes or cfg.episodes),
      memory_size=int(memory_size or cfg.jitrl.memory_size),
      k_max=int(k_max or cfg.jitrl.k),
      threshold=float(cfg.jitrl.threshold),
      stochastic_bonus=bool(cfg.jitrl.stochastic_bonus),
      similarity_method=str(cfg.jitrl.similarity_method),
      gkl_steps=int(cfg.gradient_kl.steps),
      gkl_learning_rate=float(cfg.gradient_kl.learning_rate),
      gkl_optimizer=str(cfg.gradient_kl.optimizer),
      pg_learning_rate=float(cfg.pg.learning_rate),
      baseline_rate=float(cfg.pg.baseline_rate),
      ppo_epochs=int(cfg.pg.ppo_epochs),
      ppo_clip=float(cfg.pg.ppo_clip),
  )


def make_env(cfg: ml_collections.ConfigDict, name: str):
  """The synthetic environment `name` with the config's knobs."""
  return synthetic.make(name, **cfg[name].to_dict())


# ----------------------------------------------------------------------------
# Policies.


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
  """Top-k_max neighbours, truncated to the first hyper.k.

  The retrieval order is total (recency is unique), so the top k is the
  prefix of length k of the top k_max: one retrieval serves every k <= k_max.

  With hyper.random_ties the similarity ties are broken by a random key
  instead of the higher return (the retrieval sorts by the `returns` field
  after similarity, so it is given uniform noise there, and the real
  returns are read back for the chosen rows).

  Args:
    settings: static settings (k_max, threshold, kernel).
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
  nb = retrieval_lib.top_k_neighbours(
      order,
      views,
      k=settings.k_max,
      weights=(1.0,) * len(views),
      threshold=settings.threshold,
      method=settings.similarity_method,
  )
  mask = nb.mask & (jnp.arange(settings.k_max) < hyper.k)
  returns = jnp.where(mask, memory.returns[nb.indices], 0.0)
  return nb._replace(mask=mask, returns=returns)


class StateValues(NamedTuple):
  """What a step reads of its state, computed once a step."""

  z: jax.Array  # [C] prior logits
  q_true: jax.Array  # [C] true Q
  views: tuple  # V token-set views


def state_values(env, params, state) -> StateValues:
  """The state's prior logits, true Q and views."""
  return StateValues(
      env.prior_logits(params, state),
      env.true_q(params, state),
      env.views(params, state),
  )


def _policy(
    env,
    settings,
    hyper,
    rule,
    agent,
    params,
    env_state,
    key,
    episode,
    values,
):
  """pi' of rule `rule` (traced index) in env_state, action, diagnostics.

  values: the state's `StateValues` (the caller computes them once a step).
  """
  z, q_true, views = values
  c = env.num_actions
  # The split of policy.act: (bonus draws, choice).
  k_bonus, k_choice = jax.random.split(key)
  u = jax.random.uniform(k_choice)
  candidates = jnp.arange(c, dtype=jnp.int32)
  candidate_mask = jnp.ones((c,), bool)

  nb = neighbours(
      settings, hyper, agent.memory, views, jax.random.fold_in(key, 2)
  )
  adv = advantage_lib.advantages(
      nb,
      candidates,
      candidate_mask,
      lam=hyper.lam,
      alpha=hyper.alpha,
      key=k_bonus if settings.stochastic_bonus else None,
  )
  # Estimation errors (with the expected bonus, so the bonus draw is not
  # counted as error). A matters only up to a constant (softmax), so the A
  # error is shift-invariant: d = A_hat - Q, error^2 = mean_a (d_a -
  # mean d)^2, over all C candidates (unseen ones carry the bonus).
  expected = advantage_lib.advantages(
      nb, candidates, candidate_mask, lam=hyper.lam, alpha=hyper.alpha
  )
  d = expected.advantages - q_true
  a_err2 = jnp.mean((d - d.mean()) ** 2)
  seen = expected.counts > 0
  q_err2 = jnp.sum(jnp.where(seen, (expected.q_values - q_true) ** 2, 0.0))
  q_count = jnp.sum(seen).astype(jnp.float32)
  closed = jax.nn.softmax(
      update_lib.modulate_logits(z, adv.advantages, hyper.beta)
  )
  zero = jnp.float32(0.0)

  def closed_form():
    return closed, inverse_cdf(closed, u), zero

  def reference():
    ref = advantage_lib.reference_advantages(
        nb, candidates, candidate_mask, alpha=hyper.alpha, key=k_bonus
    )
    action = update_lib.reference_choice(
        jax.nn.softmax(z),
        ref.normalised_advantages,
        update_lib.reference_weight(episode),
    ).astype(jnp.int32)
    return jax.nn.one_hot(action, c), action, zero

  def gradient_kl():
    pi = gradient_kl_policy(
        z,
        adv.advantages,
        hyper.beta,
        steps=settings.gkl_steps,
        optimizer=gkl_optimizer(settings),
    )
    return pi, inverse_cdf(pi, u), 0.5 * jnp.sum(jnp.abs(pi - closed))

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
      "closed_form": closed_form,
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
      num_neighbours=adv.num_neighbours,
      tv_closed_form=tv,
  )


# ----------------------------------------------------------------------------
# Policy-gradient updates on the per-state table.


def pg_update(settings, agent, state_ids, actions, returns, *, ppo: bool):
  """One REINFORCE step, or `ppo_epochs` PPO-clip steps, on the table.

  Advantage estimate G_t - b(s_t) with b the per-state EMA baseline; then
  b(s) <- b(s) + rate (G_t - b(s)) for each visited s. Optimiser: optax SGD.

    REINFORCE: loss = -sum_t (G_t - b(s_t)) log pi(a_t | s_t)
    PPO-clip:  loss = -sum_t min(r_t adv_t, clip(r_t, 1 - eps, 1 + eps)
               adv_t), r_t = pi(a_t | s_t) / pi_old(a_t | s_t)

  Args:
    settings: static settings (learning rate, PPO clip and epochs).
    agent: the agent.
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


# ----------------------------------------------------------------------------
# Episodes and agents.


def init_agent(env, settings: Settings, params) -> AgentState:
  """An empty memory and the prior as the per-state table."""
  return AgentState(
      memory=memory_lib.init(settings.memory_size, env.view_sizes),
      table=params.prior_logits,
      baseline=jnp.zeros((env.num_states,), jnp.float32),
  )


def run_episode(env, settings, hyper, rule, params, agent, key, episode):
  """One episode of one agent: act T steps, then write memory / update.

  Nothing of the episode is retrievable before it ends (SPEC 8).

  Args:
    env: a synthetic `Environment`.
    settings: static `Settings`.
    hyper: `Hyper` (traced).
    rule: [] int32 index into RULES (traced, unbatched).
    params: the environment instance.
    agent: `AgentState`.
    key: PRNG key, consumed.
    episode: [] int32 episodes done so far.

  Returns:
    (agent, EpisodeMetrics).
  """
  horizon = env.horizon
  k_reset, k_steps = jax.random.split(key)
  state0 = env.reset(params, k_reset)

  def body(state, key):
    k_pol, k_env = jax.random.split(key)
    values = state_values(env, params, state)
    out = _policy(
        env, settings, hyper, rule, agent, params, state, k_pol, episode, values
    )
    record = dict(
        views=values.views,
        state_id=env.state_id(params, state),
        regret=synthetic.step_regret(values.q_true, out.pi),
        kl=update_lib.kl_divergence(out.pi, jax.nn.softmax(values.z)),
        out=out,
    )
    state, reward, _ = env.step(params, state, out.action, k_env)
    record["reward"] = reward
    return state, record

  _, traj = jax.lax.scan(body, state0, jax.random.split(k_steps, horizon))
  out = traj["out"]
  mask = jnp.ones((horizon,), bool)
  returns = returns_lib.discounted_returns(
      traj["reward"], mask, gamma=env.gamma
  )
  memory = memory_lib.add_episode(
      agent.memory,
      traj["views"],
      out.action,
      returns,
      traj["reward"],
      mask,
      jnp.int32(0),
      jnp.asarray(episode, jnp.int32),
  )
  agent = agent._replace(memory=memory)
  update = lambda ppo: lambda a: pg_update(
      settings, a, traj["state_id"], out.action, returns, ppo=ppo
  )
  branch = jnp.where(
      rule == RULES.index("reinforce"),
      1,
      jnp.where(rule == RULES.index("ppo"), 2, 0),
  )
  agent = jax.lax.switch(
      branch, [lambda a: a, update(False), update(True)], agent
  )
  w = env.regret_discount ** jnp.arange(horizon, dtype=jnp.float32)
  metrics = EpisodeMetrics(
      ret=jnp.sum(w * traj["reward"]),
      regret=jnp.sum(w * traj["regret"]),
      kl=jnp.mean(traj["kl"]),
      a_err2=jnp.sum(out.a_err2),
      a_count=jnp.float32(horizon),
      q_err2=jnp.sum(out.q_err2),
      q_count=jnp.sum(out.q_count),
      num_neighbours=jnp.mean(out.num_neighbours.astype(jnp.float32)),
      tv_closed_form=jnp.mean(out.tv_closed_form),
  )
  return agent, metrics


def run_agent(env, settings: Settings, hyper: Hyper, rule, key):
  """One agent from an empty memory over `settings.episodes` episodes.

  The key splits into the environment instance's key and the episodes'
  keys (fold_in of the episode index): the same for every rule.

  Args:
    env: a synthetic `Environment`.
    settings: static `Settings`.
    hyper: `Hyper`.
    rule: [] int32 index into RULES.
    key: PRNG key of the agent, consumed.

  Returns:
    EpisodeMetrics with a leading [E] axis.
  """
  k_params, k_run = jax.random.split(key)
  params = env.init_params(k_params)
  agent = init_agent(env, settings, params)

  def body(agent, episode):
    return run_episode(
        env,
        settings,
        hyper,
        rule,
        params,
        agent,
        jax.random.fold_in(k_run, episode),
        episode,
    )

  _, metrics = jax.lax.scan(
      body, agent, jnp.arange(settings.episodes, dtype=jnp.int32)
  )
  return metrics


def make_runner(env, settings: Settings, *, per_agent_hyper: bool = False):
  """A jitted run of a batch of agents: one program for every rule.

  Args:
    env: a synthetic `Environment`.
    settings: static `Settings`.
    per_agent_hyper: if True, hyper has a leading [A] axis (one setting per
      agent, for sweeps); otherwise it is shared.

  Returns:
    fn(rule [] int32, hyper, keys [A]) -> EpisodeMetrics [A, E]. The rule
    index is not batched, so `lax.switch` runs only the chosen branch.
  """

  def run(rule, hyper, keys):
    one = lambda h, k: run_agent(env, settings, h, rule, k)
    return jax.vmap(one, in_axes=(0 if per_agent_hyper else None, 0))(
        hyper, keys
    )

  return jax.jit(run)


_RUNNERS: dict[Any, Any] = {}


def get_runner(
    cfg: ml_collections.ConfigDict,
    env_name: str,
    settings: Settings,
    *,
    per_agent_hyper: bool = False,
):
  """`make_runner` for the config's env, cached: one compile per shape.

  Args:
    cfg: the config (its `env_name` block sets the environment).
    env_name: "bandit" or "tree".
    settings: static settings.
    per_agent_hyper: see `make_runner`.

  Returns:
    The jitted fn(rule, hyper, keys) -> EpisodeMetrics [A, E].
  """
  env_kwargs = tuple(sorted(cfg[env_name].to_dict().items()))
  key = (env_name, env_kwargs, settings, per_agent_hyper)
  if key not in _RUNNERS:
    _RUNNERS[key] = make_runner(
        make_env(cfg, env_name), settings, per_agent_hyper=per_agent_hyper
    )
  return _RUNNERS[key]


def agent_keys(seed: int, agents: int) -> jax.Array:
  """[A] keys of the agents, the same for every rule."""
  return jax.random.split(jax.random.key(seed), agents)


# ----------------------------------------------------------------------------
# Summaries.


def _rms(err2, count, axis) -> np.ndarray:
  err2 = np.asarray(err2, np.float64).sum(axis=axis)
  count = np.asarray(count, np.float64).sum(axis=axis)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(count > 0, np.sqrt(err2 / np.maximum(count, 1)), np.nan)


def a_error(metrics: EpisodeMetrics, axis=None) -> np.ndarray:
  """RMS (shift-invariant) advantage error over steps, along `axis`."""
  return _rms(metrics.a_err2, metrics.a_count, axis)


def q_error(metrics: EpisodeMetrics, axis=None) -> np.ndarray:
  """RMS Q error over (step, seen action) pairs along `axis` (NaN if none)."""
  return _rms(metrics.q_err2, metrics.q_count, axis)


def _band(x: np.ndarray) -> dict[str, list[float]]:
  """Mean over agents (axis 0) and a 95% normal confidence half-width."""
  x = np.asarray(x, np.float64)
  mean = x.mean(axis=0)
  half = 1.96 * x.std(axis=0, ddof=1) / np.sqrt(max(x.shape[0], 1))
  return {"mean": mean.tolist(), "ci95": half.tolist()}


def _tail(metrics: EpisodeMetrics, tail: int) -> EpisodeMetrics:
  """The last `tail` episodes of [A, E] metrics."""
  return EpisodeMetrics(*[np.asarray(m)[:, -tail:] for m in metrics])


def summarise(metrics: EpisodeMetrics, *, tail: int) -> dict[str, Any]:
  """Curves and scalars of one rule's [A, E] metrics.

  Args:
    metrics: EpisodeMetrics with [A, E] arrays.
    tail: number of final episodes for the "final" numbers.

  Returns:
    A JSON-ready dict (NaN where undefined, e.g. A-error with no estimate).
  """
  regret = np.asarray(metrics.regret, np.float64)
  agents = regret.shape[0]
  per_agent_mean = regret.mean(axis=1)
  per_agent_tail = regret[:, -tail:].mean(axis=1)

  def ci(x):
    return float(1.96 * x.std(ddof=1) / np.sqrt(max(agents, 1)))

  return {
      "agents": agents,
      "episodes": regret.shape[1],
      "regret_curve": _band(regret),
      "return_curve": _band(metrics.ret),
      "kl_curve": _band(metrics.kl),
      "a_error_curve": a_error(metrics, axis=0).tolist(),
      "mean_regret": float(per_agent_mean.mean()),
      "mean_regret_ci95": ci(per_agent_mean),
      "final_regret": float(per_agent_tail.mean()),
      "final_regret_ci95": ci(per_agent_tail),
      "mean_return": float(np.mean(metrics.ret)),
      "mean_kl": float(np.mean(metrics.kl)),
      "final_kl": float(np.mean(np.asarray(metrics.kl)[:, -tail:])),
      "a_error": float(a_error(metrics)),
      "final_a_error": float(a_error(_tail(metrics, tail))),
      "q_error_curve": q_error(metrics, axis=0).tolist(),
      "q_error": float(q_error(metrics)),
      "final_q_error": float(q_error(_tail(metrics, tail))),
      "mean_neighbours": float(np.mean(metrics.num_neighbours)),
      "tv_closed_form": float(np.mean(metrics.tv_closed_form)),
  }


# ----------------------------------------------------------------------------
# The lab: comparison, sweeps, outputs.


def resolve_config(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Applies `quick=True` (a small setting for tests and CI) to a copy."""
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  if cfg.quick:
    # Compilation dominates at this size, so agents stay plentiful (the
    # statistical tests use them) while episodes, memory and sweeps shrink.
    cfg.agents = min(cfg.agents, 256)
    cfg.episodes = min(cfg.episodes, 16)
    cfg.jitrl.memory_size = min(cfg.jitrl.memory_size, 64)
    cfg.jitrl.k = min(cfg.jitrl.k, 16)
    cfg.sweep.agents = min(cfg.sweep.agents, 32)
    cfg.sweep.episodes = min(cfg.sweep.episodes, 12)
    cfg.sweep.betas = (0.0, 4.0, 16.0)
    cfg.sweep.lams = (0.0, 1.0)
    cfg.sweep.memory_sizes = (cfg.jitrl.memory_size,)  # one compile
    cfg.sweep.ks = (1, 4, 16)
  return cfg


def _to_numpy(metrics: EpisodeMetrics) -> EpisodeMetrics:
  return EpisodeMetrics(*[np.asarray(jax.device_get(m)) for m in metrics])


def compare_rules(
    cfg: ml_collections.ConfigDict,
    env_name: str,
    rules: Sequence[str] | None = None,
    *,
    log=print,
) -> dict[str, EpisodeMetrics]:
  """Every rule on the same agents' keys: {rule: metrics [A, E]}.

  One compiled program per environment and shape (the rule is a traced
  index; programs are cached by `get_runner`).
  """
  keys = agent_keys(cfg.seed, cfg.agents)
  hyper = default_hyper(cfg)
  runner = get_runner(cfg, env_name, settings_for(cfg))
  out = {}
  for rule in rules or cfg.rules:
    start = time.perf_counter()
    out[rule] = _to_numpy(runner(rule_id(rule), hyper, keys))
    log(
        f"  {env_name:6s} {rule:14s} {time.perf_counter() - start:6.1f} s  "
        f"mean regret {np.mean(out[rule].regret):.4f}"
    )
  return out


def _hyper_grid(base: Hyper, name: str, values, agents: int) -> Hyper:
  """[len(values) * agents] hyper: `name` varies, repeated per agent."""
  h = len(values)
  fields = {f: jnp.broadcast_to(x, (h,)) for f, x in zip(Hyper._fields, base)}
  fields[name] = jnp.asarray(values, fields[name].dtype)
  return Hyper(**{f: jnp.repeat(x, agents) for f, x in fields.items()})


def run_sweeps(cfg: ml_collections.ConfigDict, *, log=print) -> dict[str, Any]:
  """The (memory size, k) grid and the beta and lambda sweeps.

  Regret: closed_form at every setting. Estimation error: the (memory, k)
  grid is also run with the static rule, whose behaviour (pi_theta) does not
  depend on k or the memory, so its A and Q errors show the estimator's
  bias / variance trade-off alone (under closed_form the data would change
  with k too); once with the retrieval's tie rule (higher return first) and
  once with similarity ties broken at random, which isolates the selection
  bias of the return tie-break (Jaccard values of small sets tie often).

  Every knob is traced and vmapped with the agents. The settings of one
  memory size run in calls of one fixed batch (the longest sweep; shorter
  ones are padded with repeats and the padding dropped), so there is one
  compile per memory size. The same agent keys serve every setting (common
  random numbers).

  Args:
    cfg: the (resolved) config.
    log: print-like progress function.

  Returns:
    {"beta": metrics [Hb, A, E], "lam": metrics [Hl, A, E],
     "memory_k": {M: metrics [len(ks), A, E]} (closed_form),
     "memory_k_static": {M: metrics [len(ks), A, E]} (static),
     "memory_k_static_random_ties": the same with random tie-breaks}.
  """
  a = int(cfg.sweep.agents)
  keys = agent_keys(cfg.seed, a)
  base = default_hyper(cfg)
  ks = tuple(int(k) for k in cfg.sweep.ks)
  betas = tuple(float(b) for b in cfg.sweep.betas)
  lams = tuple(float(x) for x in cfg.sweep.lams)
  grid_sizes = [int(m) for m in cfg.sweep.memory_sizes]
  default_m = int(cfg.jitrl.memory_size)
  sizes = grid_sizes + ([] if default_m in grid_sizes else [default_m])
  k_max = max(ks + (int(cfg.jitrl.k),))
  chunk = max(len(ks), len(betas), len(lams))
  out = {
      "memory_k": {},
      "memory_k_static": {},
      "memory_k_static_random_ties": {},
  }
  for m in sizes:
    start = time.perf_counter()
    parts = []  # (output key, rule, hyper field, values)
    if m in grid_sizes:
      parts.append(("memory_k", "closed_form", "k", ks, False))
      parts.append(("memory_k_static", "static", "k", ks, False))
      parts.append(("memory_k_static_random_ties", "static", "k", ks, True))
    if m == default_m:
      parts.append(("beta", "closed_form", "beta", betas, False))
      parts.append(("lam", "closed_form", "lam", lams, False))
    settings = settings_for(
        cfg, episodes=cfg.sweep.episodes, memory_size=m, k_max=k_max
    )
    runner = get_runner(cfg, cfg.sweep.env, settings, per_agent_hyper=True)
    tiled = jnp.tile(keys, chunk)
    for name, rule, field, values, random_ties in parts:
      padded = tuple(values) + (values[-1],) * (chunk - len(values))
      hyper = _hyper_grid(
          base._replace(random_ties=jnp.asarray(random_ties)), field, padded, a
      )
      metrics = _to_numpy(runner(rule_id(rule), hyper, tiled))
      h = len(values)
      piece = EpisodeMetrics(
          *[x[: h * a].reshape((h, a) + x.shape[1:]) for x in metrics]
      )
      if name.startswith("memory_k"):
        out[name][m] = piece
      else:
        out[name] = piece
    log(
        f"  sweep memory {m:4d}: {len(parts)} x {chunk} settings x {a} agents"
        f" {time.perf_counter() - start:6.1f} s"
    )
  return out


def _sweep_summary(metrics: EpisodeMetrics, tail: int) -> list[dict]:
  """summarise() of each leading-axis entry of [H, A, E] metrics."""
  return [
      summarise(EpisodeMetrics(*[m[i] for m in metrics]), tail=tail)
      for i in range(np.asarray(metrics.regret).shape[0])
  ]


def run_lab(cfg: ml_collections.ConfigDict, out_dir: str, *, log=print):
  """Runs the comparison and the sweeps; writes results.json and the plots.

  Args:
    cfg: the (resolved) config.
    out_dir: output folder, created if needed.
    log: a print-like function for progress lines.

  Returns:
    The results dict (also written to out_dir/results.json).
  """
  os.makedirs(out_dir, exist_ok=True)
  timings = {}
  tail = max(1, cfg.episodes // 4)
  results: dict[str, Any] = {
      "config": cfg.to_dict(),
      "devices": [str(d) for d in jax.devices()],
      "compare": {},
  }
  for env_name in cfg.envs:
    start = time.perf_counter()
    metrics = compare_rules(cfg, env_name, log=log)
    timings[f"compare_{env_name}"] = time.perf_counter() - start
    results["compare"][env_name] = {
        rule: summarise(m, tail=tail) for rule, m in metrics.items()
    }

  start = time.perf_counter()
  sweeps = run_sweeps(cfg, log=log)
  timings["sweeps"] = time.perf_counter() - start
  sweep_tail = max(1, cfg.sweep.episodes // 4)
  results["sweep_beta"] = {
      "values": list(cfg.sweep.betas),
      "summaries": _sweep_summary(sweeps["beta"], sweep_tail),
  }
  results["sweep_lam"] = {
      "values": list(cfg.sweep.lams),
      "summaries": _sweep_summary(sweeps["lam"], sweep_tail),
  }
  results["sweep_memory_k"] = {
      "ks": list(cfg.sweep.ks),
      "memory_sizes": [int(m) for m in cfg.sweep.memory_sizes],
      "summaries": {
          str(m): _sweep_summary(metrics, sweep_tail)
          for m, metrics in sweeps["memory_k"].items()
      },
      "static_summaries": {
          str(m): _sweep_summary(metrics, sweep_tail)
          for m, metrics in sweeps["memory_k_static"].items()
      },
      "static_random_ties_summaries": {
          str(m): _sweep_summary(metrics, sweep_tail)
          for m, metrics in sweeps["memory_k_static_random_ties"].items()
      },
  }
  results["timings_s"] = timings

  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(_json_safe(results), f, indent=1)
  plot_all(_json_safe(results), out_dir)
  return results


def _json_safe(x):
  """NaN / inf -> None, recursively (strict JSON)."""
  if isinstance(x, dict):
    return {k: _json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_json_safe(v) for v in x]
  if isinstance(x, float) and not np.isfinite(x):
    return None
  return x


# ----------------------------------------------------------------------------
# Plots.

_COLOURS = {
    "closed_form": "#d62728",
    "reference": "#1f77b4",
    "gradient_kl": "#ff7f0e",
    "reinforce": "#2ca02c",
    "ppo": "#9467bd",
    "static": "#7f7f7f",
    "greedy_memory": "#8c564b",
}
_STYLES = {"gradient_kl": "--"}


def _curve(ax, summary, key, rule, band=True):
  curve = summary[key]
  if isinstance(curve, dict):
    mean = np.asarray(curve["mean"], float)
    half = np.asarray(curve["ci95"], float)
  else:
    mean = np.asarray([np.nan if v is None else v for v in curve], float)
    half = None
  x = np.arange(1, mean.shape[0] + 1)
  ax.plot(
      x,
      mean,
      label=rule,
      color=_COLOURS.get(rule),
      linestyle=_STYLES.get(rule, "-"),
      lw=1.6,
  )
  if band and half is not None:
    ax.fill_between(
        x, mean - half, mean + half, color=_COLOURS.get(rule), alpha=0.2, lw=0
    )


def _figure_legend(fig, ax) -> None:
  """One legend for the figure, in a strip below the panels."""
  handles, labels = ax.get_legend_handles_labels()
  fig.legend(
      handles,
      labels,
      loc="lower center",
      ncol=len(labels),
      fontsize=9,
      frameon=False,
  )
  fig.tight_layout(rect=(0, 0.06, 1, 1))


def plot_all(results: dict, out_dir: str) -> list[str]:
  """Writes the four PNGs; returns their paths."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  paths = []
  envs = list(results["compare"])
  agents = results["config"]["agents"]

  fig, axes = plt.subplots(
      1, len(envs), figsize=(6.2 * len(envs), 4.4), squeeze=False
  )
  for ax, env_name in zip(axes[0], envs):
    for rule, summary in results["compare"][env_name].items():
      _curve(ax, summary, "regret_curve", rule)
    ax.set_title(f"{env_name}: expected regret per episode ({agents} agents)")
    ax.set_xlabel("episode")
    ax.set_ylabel("regret (mean, 95% CI band)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
  _figure_legend(fig, axes[0][0])
  paths.append(os.path.join(out_dir, "regret_curves.png"))
  fig.savefig(paths[-1], dpi=110)
  plt.close(fig)

  fig, axes = plt.subplots(
      2, len(envs), figsize=(6.2 * len(envs), 7.6), squeeze=False
  )
  for col, env_name in enumerate(envs):
    for rule, summary in results["compare"][env_name].items():
      _curve(axes[0][col], summary, "kl_curve", rule)
      _curve(axes[1][col], summary, "a_error_curve", rule)
    axes[0][col].set_title(f"{env_name}: KL(pi' || pi_theta) per step")
    axes[1][col].set_title(
        f"{env_name}: RMS error of A_hat (shift-invariant, all actions)"
    )
    for row in range(2):
      axes[row][col].set_xlabel("episode")
      axes[row][col].grid(alpha=0.3)
  _figure_legend(fig, axes[0][0])
  paths.append(os.path.join(out_dir, "diagnostics.png"))
  fig.savefig(paths[-1], dpi=110)
  plt.close(fig)

  grid = results["sweep_memory_k"]
  ks = np.asarray(grid["ks"], float)
  fig, axes = plt.subplots(1, 3, figsize=(17.5, 4.6))
  cmap = plt.get_cmap("viridis")
  sizes = grid["memory_sizes"]
  nan = lambda v: np.nan if v is None else v
  for i, m in enumerate(sizes):
    summaries = grid["summaries"][str(m)]
    colour = cmap(i / max(len(sizes) - 1, 1))
    label = f"memory {m}"
    for key, style, suffix in (
        ("static_summaries", "o-", ""),
        ("static_random_ties_summaries", "s--", ", random ties"),
    ):
      behaviour = grid[key][str(m)]
      for ax, field in ((axes[0], "final_a_error"), (axes[1], "final_q_error")):
        ax.plot(
            ks,
            [nan(s[field]) for s in behaviour],
            style,
            color=colour,
            label=label + suffix,
            alpha=1.0 if not suffix else 0.7,
        )
    axes[2].errorbar(
        ks,
        [s["final_regret"] for s in summaries],
        yerr=[s["final_regret_ci95"] for s in summaries],
        fmt="o-",
        color=colour,
        capsize=3,
        label=label,
    )
  sweep_env = results["config"]["sweep"]["env"]
  agents = results["config"]["sweep"]["agents"]
  axes[0].set_title(f"{sweep_env}: A_hat error vs k (behaviour pi_theta)")
  axes[0].set_ylabel("RMS shift-invariant error of A_hat")
  axes[1].set_title(f"{sweep_env}: Q_hat error vs k (behaviour pi_theta)")
  axes[1].set_ylabel("RMS error of Q_hat (seen actions)")
  axes[2].set_title(f"{sweep_env}: closed_form regret vs k ({agents} agents)")
  axes[2].set_ylabel("expected regret per episode (95% CI)")
  tail_note = "final quarter of the episodes"
  for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"k neighbours ({tail_note})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  paths.append(os.path.join(out_dir, "bias_variance.png"))
  fig.savefig(paths[-1], dpi=110)
  plt.close(fig)

  fig, axes = plt.subplots(1, 2, figsize=(12.4, 4.4))
  for ax, name, label in (
      (axes[0], "sweep_beta", "beta"),
      (axes[1], "sweep_lam", "lambda"),
  ):
    values = np.asarray(results[name]["values"], float)
    summaries = results[name]["summaries"]
    reg = np.asarray([s["mean_regret"] for s in summaries])
    half = np.asarray([s["mean_regret_ci95"] for s in summaries])
    ax.errorbar(
        values,
        reg,
        yerr=half,
        fmt="o-",
        color="#d62728",
        capsize=3,
        label="mean regret",
    )
    ax.set_xlabel(label)
    ax.set_ylabel("mean expected regret per episode", color="#d62728")
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(
        values,
        [s["mean_kl"] for s in summaries],
        "s--",
        color="#1f77b4",
        label="KL(pi' || pi_theta)",
    )
    twin.set_ylabel("mean KL(pi' || pi_theta)", color="#1f77b4")
    ax.set_title(f"{sweep_env}, closed_form: sweep of {label}")
  fig.tight_layout()
  paths.append(os.path.join(out_dir, "sweeps.png"))
  fig.savefig(paths[-1], dpi=110)
  plt.close(fig)
  return paths


# ----------------------------------------------------------------------------
# Main.


def _define_flags() -> None:
  """Defines the command-line flags (only when run as a program).

  Defining them at import time would clash with other experiments' flags of
  the same name (`--config`) in any process that imports both.
  """
  global _CONFIG, _OUT
  _CONFIG = config_flags.DEFINE_config_file(
      "config", _DEFAULT_CONFIG, "Theory-lab config file."
  )
  _OUT = flags.DEFINE_string("out", "runs/theory_lab", "Output folder.")


def _print_table(results: dict) -> None:
  for env_name, rules in results["compare"].items():
    print(f"\n{env_name}: regret per episode (mean over agents, 95% CI)")
    print(
        f"  {'rule':14s} {'mean':>16s} {'final':>16s} {'KL':>7s} "
        f"{'A err':>7s}"
    )
    for rule, s in rules.items():
      a_err = s["final_a_error"]
      print(
          f"  {rule:14s} {s['mean_regret']:8.4f} +- {s['mean_regret_ci95']:.4f}"
          f" {s['final_regret']:8.4f} +- {s['final_regret_ci95']:.4f}"
          f" {s['mean_kl']:7.3f} {a_err if a_err is not None else float('nan'):7.3f}"
      )


def main(argv: Sequence[str]) -> None:
  del argv
  cfg = resolve_config(_CONFIG.value)
  start = time.perf_counter()
  print(
      f"theory lab: {cfg.agents} agents x {cfg.episodes} episodes, rules "
      f"{', '.join(cfg.rules)}, envs {', '.join(cfg.envs)}"
  )
  results = run_lab(cfg, _OUT.value)
  _print_table(_json_safe(results))
  out = os.path.abspath(_OUT.value)
  print(f"\ntotal {time.perf_counter() - start:.1f} s")
  print(f"results: {os.path.join(out, 'results.json')}")
  for name in ("regret_curves", "diagnostics", "bias_variance", "sweeps"):
    print(f"plot:    {os.path.join(out, name + '.png')}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
