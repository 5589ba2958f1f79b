"""The theory lab's runs: episodes under `lax.scan`, agents under `vmap`.

One jitted program per environment and shape serves every rule (the rule is a
traced index, see `rules.step_policy`). Every rule sees the same environment
instances and random draws: an agent's key gives its instance and its
episodes' keys, never depending on the rule.

Also the lab's values from its ml_collections config: `resolve_config`,
`settings_for`, `default_hyper`, `make_env`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from experiments.theory import rules as rules_lib
from jitrl_jax import config as config_lib
from jitrl_jax import memory as memory_lib
from jitrl_jax import returns as returns_lib
from jitrl_jax import update as update_lib
from jitrl_jax.envs import synthetic

AgentState = rules_lib.AgentState
Hyper = rules_lib.Hyper
Settings = rules_lib.Settings
RULES = rules_lib.RULES


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
  tv_jitrl: jax.Array  # [] mean_t TV to the jitrl policy (gradient_kl)


# ----------------------------------------------------------------------------
# The config.


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


def _split_jitrl_block(cfg: ml_collections.ConfigDict):
  """The config's `jitrl` block -> (config.Settings, config.Hyper, the rest).

  Its fields are those of `config.Settings` and `config.Hyper` (the shared
  configuration type) plus the lab's `memory_size` and `random_ties`.
  """
  block = cfg.jitrl.to_dict()
  memory_size = block.pop("memory_size")
  settings, hyper, rest = config_lib.split_kwargs(block, allow_rest=True)
  settings = dataclasses.replace(
      settings, memory_capacity=int(memory_size), view_weights=(1.0,)
  )
  return settings, hyper, rest


def default_hyper(cfg: ml_collections.ConfigDict) -> Hyper:
  """Hyper from the config's `jitrl` block (every field a [] array)."""
  _, policy_hyper, rest = _split_jitrl_block(cfg)
  return Hyper(
      policy=config_lib.Hyper(*[jnp.float32(x) for x in policy_hyper]),
      k=jnp.int32(cfg.jitrl.k),
      random_ties=jnp.asarray(bool(rest["random_ties"])),
  )


def settings_for(
    cfg: ml_collections.ConfigDict,
    *,
    episodes: int | None = None,
    memory_size: int | None = None,
    k_max: int | None = None,
) -> Settings:
  """Static settings from the config (with optional overrides)."""
  policy, _, _ = _split_jitrl_block(cfg)
  policy = dataclasses.replace(
      policy,
      k=int(k_max or policy.k),
      memory_capacity=int(memory_size or policy.memory_capacity),
  )
  return Settings(
      episodes=int(episodes or cfg.episodes),
      policy=policy,
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


def agent_keys(seed: int, agents: int) -> jax.Array:
  """[A] keys of the agents, the same for every rule."""
  return jax.random.split(jax.random.key(seed), agents)


# ----------------------------------------------------------------------------
# Episodes and agents.


def init_agent(env, settings: Settings, params) -> AgentState:
  """An empty memory and the prior as the per-state table."""
  return AgentState(
      memory=memory_lib.init(settings.memory_size, env.view_sizes),
      table=params.prior_logits,
      baseline=jnp.zeros((env.num_states,), jnp.float32),
  )


def _update_tables(settings, rule, agent, state_ids, actions, returns):
  """The policy-gradient rules' update after an episode (others: none)."""
  update = lambda ppo: lambda a: rules_lib.pg_update(
      settings, a, state_ids, actions, returns, ppo=ppo
  )
  branch = jnp.where(
      rule == RULES.index("reinforce"),
      1,
      jnp.where(rule == RULES.index("ppo"), 2, 0),
  )
  return jax.lax.switch(
      branch, [lambda a: a, update(False), update(True)], agent
  )


def run_episode(
    env,
    settings,
    hyper,
    rule,
    params,
    agent,
    key,
    episode,
    *,
    neighbours_fn: rules_lib.NeighboursFn = rules_lib.neighbours,
):
  """One episode of one agent: act T steps, then write memory / update.

  Nothing of the episode is retrievable before it ends: its steps are
  written to memory after the last one (docs/method.md section 8).

  Args:
    env: a synthetic `Environment`.
    settings: static `Settings`.
    hyper: `Hyper` (traced).
    rule: [] int32 index into RULES (traced, unbatched).
    params: the environment instance.
    agent: `AgentState`.
    key: PRNG key, consumed.
    episode: [] int32 episodes done so far.
    neighbours_fn: the retrieval (see `rules.step_policy`).

  Returns:
    (agent, EpisodeMetrics).
  """
  horizon = env.horizon
  k_reset, k_steps = jax.random.split(key)
  state0 = env.reset(params, k_reset)

  def body(state, key):
    k_pol, k_env = jax.random.split(key)
    values = rules_lib.state_values(env, params, state)
    out = rules_lib.step_policy(
        env,
        settings,
        hyper,
        rule,
        agent,
        params,
        state,
        k_pol,
        episode,
        values,
        neighbours_fn=neighbours_fn,
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
  agent = _update_tables(
      settings,
      rule,
      agent._replace(memory=memory),
      traj["state_id"],
      out.action,
      returns,
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
      tv_jitrl=jnp.mean(out.tv_jitrl),
  )
  return agent, metrics


def run_agent(
    env,
    settings: Settings,
    hyper: Hyper,
    rule,
    key,
    *,
    neighbours_fn: rules_lib.NeighboursFn = rules_lib.neighbours,
):
  """One agent from an empty memory over `settings.episodes` episodes.

  The key splits into the environment instance's key and the episodes'
  keys (fold_in of the episode index): the same for every rule.

  Args:
    env: a synthetic `Environment`.
    settings: static `Settings`.
    hyper: `Hyper`.
    rule: [] int32 index into RULES.
    key: PRNG key of the agent, consumed.
    neighbours_fn: the retrieval (see `rules.step_policy`).

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
        neighbours_fn=neighbours_fn,
    )

  _, metrics = jax.lax.scan(
      body, agent, jnp.arange(settings.episodes, dtype=jnp.int32)
  )
  return metrics


def make_runner(
    env,
    settings: Settings,
    *,
    per_agent_hyper: bool = False,
    neighbours_fn: rules_lib.NeighboursFn = rules_lib.neighbours,
):
  """A jitted run of a batch of agents: one program for every rule.

  Args:
    env: a synthetic `Environment`.
    settings: static `Settings`.
    per_agent_hyper: if True, hyper has a leading [A] axis (one setting per
      agent, for sweeps); otherwise it is shared.
    neighbours_fn: the retrieval, fn(settings, hyper, memory, views, key) ->
      Neighbours [k_max] (see `rules.neighbours`); the default is the lab's.
      An explicit parameter, as mctx takes its `recurrent_fn`, so that an
      ablation can run the same program with a stand-in.

  Returns:
    fn(rule [] int32, hyper, keys [A]) -> EpisodeMetrics [A, E]. The rule
    index is not batched, so `lax.switch` runs only the chosen branch.
  """

  def run(rule, hyper, keys):
    one = lambda h, k: run_agent(
        env, settings, h, rule, k, neighbours_fn=neighbours_fn
    )
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
