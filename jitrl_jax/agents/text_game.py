"""Text-game agents: where the frozen LM and the JitRL policy meet.

One decision (docs/method.md section 8):

  host:   game texts -> prompt, views, candidates, padded to buckets
          (`batching.prepare`);
  device: one jitted call for B games (`decision.make_decide`): retrieval
          once, memory candidates, one LM pass, `policy.act`;
  host:   the chosen string goes to the game (`choices`).

The memory-prompt agent retrieves first (one more device call), writes the
neighbours' experiences into the prompt, and hands the same neighbours to the
decision, which then does not retrieve again.

At the end of an episode `observe` turns each game's rewards into discounted
returns and writes every step into memory (nothing of an episode is
retrievable before it ends).

Four agents share the LM, the prompt and the candidate set:

* ``static``: the LM's own policy, softmax(z) over the candidates; no memory.
* ``jitrl``: the paper rule (docs/method.md sections 5, 7).
* ``jitrl-reference``: the authors' code rule (section 9): threshold
  schedule, adaptive exploration, argmax(p + w A_hat) with p = softmax(z).
* ``memory-prompt``: retrieved experiences are written into the prompt; the
  logits are not changed.

Two more write the command themselves, without a candidate list
(`generate`): ``static-generate`` (plain sampling from the LM) and
``jitrl-generate`` (an exact draw from pi_theta(y) exp(beta A(s, y)) over
whole strings). They need an LM with a generator (not the scripted LM).

State: `AgentState` is a pytree (memory, action table, episodes done) that
crosses `jit`; the action texts (host strings) live beside it in
`AgentCarry`, the value the host keeps from episode to episode.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax import config as config_lib
from jitrl_jax import memory as memory_lib
from jitrl_jax import policy as policy_lib
from jitrl_jax import retrieval as retrieval_lib
from jitrl_jax import token_sets
from jitrl_jax.agents import actions as actions_lib
from jitrl_jax.agents import batching
from jitrl_jax.agents import decision as decision_lib
from jitrl_jax.agents import commands as commands_lib
from jitrl_jax.agents import generate as generate_lib
from jitrl_jax.agents import lm as lm_lib
from jitrl_jax.agents import prompts

TokenSet = token_sets.TokenSet

GENERATING_AGENT_NAMES = generate_lib.GENERATING_AGENT_NAMES
AGENT_NAMES = (
    "static",
    "jitrl",
    "jitrl-reference",
    "memory-prompt",
) + GENERATING_AGENT_NAMES
NoGeneratorError = generate_lib.NoGeneratorError


class UnknownAgentError(ValueError):
  """The agent name is not one of `AGENT_NAMES`."""


class NonFiniteLogitsError(ValueError):
  """No candidate of a decision had a finite logit (NaN or -inf LM scores).

  A decision where only some logits are NaN goes on without those
  candidates; its step log says `nan_logits: true`.
  """


def check_agent_name(name: str) -> str:
  """Returns `name` if it is a known agent, else raises UnknownAgentError."""
  if name not in AGENT_NAMES:
    raise UnknownAgentError(
        f"unknown agent {name!r}; valid agents are: {', '.join(AGENT_NAMES)}"
    )
  return name


class AgentState(NamedTuple):
  """The device part of an agent between decisions: a pytree."""

  memory: memory_lib.MemoryState
  table: actions_lib.ActionTable
  episodes_done: jax.Array  # [] int32


class AgentCarry(NamedTuple):
  """What the host keeps from episode to episode: the state and the texts."""

  state: AgentState
  action_texts: Mapping[int, str]  # host: action id -> normalised text

  @property
  def memory(self) -> memory_lib.MemoryState:
    return self.state.memory

  @property
  def table(self) -> actions_lib.ActionTable:
    return self.state.table

  @property
  def episodes_done(self) -> int:
    return int(self.state.episodes_done)


class Trajectory(NamedTuple):
  """One finished game, as `observe` stores it (host side)."""

  views: Sequence[tuple[TokenSet, ...]]  # [T] per-step views
  actions: Sequence[str]  # [T]
  rewards: Sequence[float]  # [T] the rewards that make the returns
  task_id: int
  episode_id: int
  lost: bool = False  # the game was lost (reference rule's failure penalty)


class Choice(NamedTuple):
  """The host-side reading of one game's decision."""

  action: str  # the memory's action (a generating agent: the line written)
  from_memory: bool  # a memory action, not an environment candidate
  diagnostics: dict[str, Any]  # per-step log entries (JSON-able)
  command: str = ""  # what the game is sent, where not `action` itself

  @property
  def game_command(self) -> str:
    """The text the game is sent."""
    return self.command or self.action


class TextGameAgent(NamedTuple):
  """A text-game agent as a bundle of functions (see `make_agent`)."""

  name: str
  settings: config_lib.Settings
  hyper: config_lib.Hyper
  init: Callable[[], AgentCarry]
  act: Callable[..., list[Choice]]
  observe: Callable[[AgentCarry, Sequence[Trajectory]], AgentCarry]
  # DecisionInput (GenerateInput for the generating agents)
  prepare: Callable[..., Any]
  # the jitted call: DecisionOutput (GenerateDecision when generating)
  decide: Callable[..., Any]
  # (inputs, min_tokens) -> (inputs, decide's keyword arguments): the packed
  # layout of prepared inputs (`Settings.scoring_layout`); the inputs as
  # they are and {} for the padded one (and the generating agents).
  pack: Callable[..., tuple[Any, dict[str, Any]]]
  retrieve: Callable[..., retrieval_lib.Neighbours]  # jitted, batched
  state_views: Callable[[str, str, str], tuple[TokenSet, ...]]
  restore: Callable[
      [memory_lib.MemoryState, Mapping[int, str], int], AgentCarry
  ]
  num_compiles: Callable[[], int]


def choices(
    out: decision_lib.DecisionOutput,
    inputs: batching.DecisionInput,
    observations: Sequence[prompts.GameObservation],
    settings: config_lib.Settings,
    action_texts: Mapping[int, str],
) -> list[Choice]:
  """Host: the batched output -> one `Choice` (text and log entries) a game."""
  out = jax.device_get(out)
  c = inputs.candidate_ids.shape[1]
  result = []
  for i, obs in enumerate(observations):
    j = int(out.index[i])
    if j < 0:
      raise NonFiniteLogitsError(
          f"game {i}, step {obs.step}: no candidate has a finite logit "
          f"(NaN logits: {bool(out.nan_logits[i])}); the LM's scores are "
          "unusable, so no action was chosen. Check the model file and its "
          "dtype."
      )
    acts = batching.shown_actions(settings, obs)[:c]
    from_memory = j >= c
    if from_memory:
      text = action_texts.get(int(out.action_ids[i]), "look")
    else:
      text = acts[j]
    a = int(out.lm_index[i])
    diag = {
        "num_neighbours": int(out.num_neighbours[i]),
        "value": commands_lib.finite(out.value[i]),
        "q": commands_lib.finite(out.q_values[i, j]),
        "advantage": commands_lib.finite(out.advantages[i, j]),
        "rule_advantage": commands_lib.finite(out.rule_advantages[i, j]),
        "weight": commands_lib.finite(out.weight[i]),
        "pi_theta": commands_lib.finite(out.pi_theta[i, j]),
        "pi": commands_lib.finite(out.pi[i, j]),
        "lm_argmax_action": (
            acts[a]
            if a < c
            else action_texts.get(int(out.candidate_ids[i, a]), "?")
        ),
        "flipped": bool(j != a),
        "nan_logits": bool(out.nan_logits[i]),
        "num_candidates": int(np.sum(out.candidate_mask[i])),
        "num_memory_candidates": int(np.sum(out.candidate_mask[i, c:])),
        "prompt_tokens": int(inputs.prompt_lengths[i]),
    }
    result.append(Choice(text, bool(from_memory), diag))
  return result


def _episode_arrays(settings, traj: Trajectory):
  """One trajectory padded to a power of two (few add_episode compiles)."""
  n = len(traj.actions)
  t_pad = 1 << max(3, (n - 1).bit_length())
  empty = [
      token_sets.token_set([], s, multiset=settings.multiset)
      for s in settings.view_sizes
  ]
  views = tuple(
      token_sets.stack_token_sets(
          [traj.views[s][j] for s in range(n)] + [empty[j]] * (t_pad - n)
      )
      for j in range(len(settings.view_sizes))
  )
  rewards = np.zeros((t_pad,), np.float32)
  rewards[:n] = np.asarray(traj.rewards, np.float32)
  ids = np.zeros((t_pad,), np.int32)
  ids[:n] = [actions_lib.action_id(a) for a in traj.actions]
  mask = np.arange(t_pad) < n
  return views, jnp.asarray(ids), jnp.asarray(rewards), jnp.asarray(mask)


def _decision(name, settings, hyper, lm):
  """(jitted decide, its trace counter, table token width, memory slots)."""
  if name in GENERATING_AGENT_NAMES:
    decide, num_compiles = generate_lib.make_decide(name, settings, hyper, lm)
    return decide, num_compiles, generate_lib.table_width(settings), 0
  decide, num_compiles = decision_lib.make_decide(
      name, settings, hyper, lm.score_fn
  )
  return (
      decide,
      num_compiles,
      max(settings.token_buckets),
      decision_lib.memory_slots(settings, name),
  )


def _as_written(action: str) -> str:
  """The command as the LM wrote it, spaces collapsed (case kept)."""
  return " ".join(action.split())


def _act_generating(
    name, settings, lm, decide, carry: AgentCarry, observations, key
) -> list[Choice]:
  """`act` of the generating agents: the LM writes B commands."""
  inputs = generate_lib.prepare(settings, lm, observations)
  table = carry.table
  if name == "jitrl-generate":
    t = generate_lib.command_width(settings, jax.device_get(table.lengths))
    table = table._replace(tokens=table.tokens[:, :t])
  out = decide(lm.params, carry.memory, table, inputs, key)
  result = []
  for i, (text, from_memory, diag, sent) in enumerate(
      commands_lib.choices(out, inputs, lm, carry.action_texts)
  ):
    if diag["log_pi_theta"] is None and diag["nan_logits"]:
      raise NonFiniteLogitsError(
          f"game {i}, step {observations[i].step}: the LM's next-token "
          "logits hold NaN, so the command it wrote is meaningless. Check "
          "the model file and its dtype."
      )
    result.append(Choice(text, from_memory, diag, sent))
  return result


def agent_settings(
    name: str, settings: config_lib.Settings
) -> config_lib.Settings:
  """The settings agent `name` runs with: its rule, and the reference's own
  threshold schedule (the reference rule ignores `threshold`)."""
  if name == "jitrl-reference":
    return dataclasses.replace(settings, rule="reference", threshold=None)
  return dataclasses.replace(settings, rule="jitrl", k_exact=0)


def _experiences(settings, retrieve, carry: AgentCarry, observations):
  """The memory-prompt agent's texts and the neighbours they come from."""
  nb = retrieve(
      carry.memory,
      batching.stacked_views(settings, observations),
      np.asarray([o.step for o in observations], np.int32),
  )
  host_nb = jax.device_get(nb)
  experiences = [
      prompts.format_experiences(
          carry.action_texts,
          host_nb.action_ids[i],
          host_nb.returns[i],
          host_nb.mask[i],
          max_lines=settings.experience_lines,
      )
      for i in range(len(observations))
  ]
  return experiences, nb


def _packer(settings, lm, generating: bool, slots: int):
  """(keep_head, pack) of an agent: `TextGameAgent.pack` and how much of a
  prompt cut in the middle its start keeps (at least the reused head)."""
  packed = (
      not generating
      and settings.scoring_layout == "packed"
      and lm.encode_prefix is not None
  )
  prefix_ids = (
      batching.prompt_prefix(lm, prompts.system_prompt(settings.web))
      if packed
      else []
  )
  prefix_cache = []

  def pack(inputs, *, min_tokens=0):
    """The packed layout of `prepare`'s inputs, and decide's extras."""
    if not packed:
      return inputs, {}
    extras = {}
    stripped = batching.strip_prefix(inputs, prefix_ids, lm.pad_id)
    if stripped is not None:
      if not prefix_cache:
        prefix_cache.append(
            jax.jit(lm.encode_prefix)(
                lm.params, jnp.asarray(prefix_ids, jnp.int32)
            )
        )
      inputs, extras["prefix"] = stripped, prefix_cache[0]
    width = min(min_tokens, inputs.candidate_tokens.shape[2])
    inputs, extras["layout"] = batching.packed_layout(
        inputs, extra_tokens=slots * width, pad_id=lm.pad_id
    )
    return inputs, extras

  return max(32, len(prefix_ids) + 1), pack


def make_agent(
    name: str,
    lm: lm_lib.LanguageModel,
    settings: config_lib.Settings | None = None,
    hyper: config_lib.Hyper | None = None,
    **kwargs,
) -> TextGameAgent:
  """Builds one of the `AGENT_NAMES` agents around a frozen LM.

  Args:
    name: "static", "jitrl", "jitrl-reference", "memory-prompt",
      "static-generate" or "jitrl-generate" (the last two need
      `lm.generator`).
    lm: the `LanguageModel`.
    settings: static settings (`config.Settings`); the agent sets the rule.
    hyper: hyperparameters (`config.Hyper`).
    **kwargs: fields of either, overriding them (the flat form the
      ml_collections configs use).

  Returns:
    A `TextGameAgent`.

  Raises:
    UnknownAgentError: for an unknown name.
    NoGeneratorError: a generating agent on an LM without a generator.
    TypeError: for an unknown keyword.
    ValueError: view_sizes with other than two or three views.
  """
  check_agent_name(name)
  base = config_lib.as_dict(
      settings or config_lib.Settings(), hyper or config_lib.Hyper()
  )
  base.update(kwargs)
  settings, hyper, _ = config_lib.split_kwargs(base)
  settings = agent_settings(name, settings)
  if len(settings.view_sizes) not in (2, 3):
    raise ValueError(
        "a text agent has two views (history, current) or three (history, "
        f"current, task); view_sizes {settings.view_sizes} has "
        f"{len(settings.view_sizes)}"
    )
  generating = name in GENERATING_AGENT_NAMES
  decide, num_compiles, t_max, slots = _decision(name, settings, hyper, lm)
  retrieve = jax.jit(
      jax.vmap(
          lambda m, v, s: policy_lib.retrieve(settings, m, v, s),
          in_axes=(None, 0, 0),
      )
  )
  write_episode = jax.jit(policy_lib.jitrl(settings, hyper).observe)

  # A generating agent's table keeps a command as the LM wrote it.
  stored_text = _as_written if generating else actions_lib.normalise_action

  def restore(memory, action_texts, episodes_done) -> AgentCarry:
    texts = {int(a): str(t) for a, t in action_texts.items()}
    table = actions_lib.table_from_texts(
        texts,
        lm.encode,
        lm.candidate_suffix,
        rows=settings.action_table_size,
        max_tokens=t_max,
    )
    return AgentCarry(
        AgentState(memory, table, jnp.int32(episodes_done)), texts
    )

  def init() -> AgentCarry:
    memory = memory_lib.init(settings.memory_capacity, settings.view_sizes)
    return restore(memory, {}, 0)

  keep_head, pack = _packer(settings, lm, generating, slots)

  def prepare(observations, experiences=None, *, min_tokens=0):
    if generating:
      return generate_lib.prepare(settings, lm, observations)
    return batching.prepare(
        settings,
        lm,
        observations,
        experiences,
        min_tokens=min_tokens,
        keep_head=keep_head,
    )

  def act(carry: AgentCarry, observations, key) -> list[Choice]:
    """Host wrapper: B observations -> B choices; the key is consumed."""
    if generating:
      return _act_generating(
          name, settings, lm, decide, carry, observations, key
      )
    experiences, nb = None, None
    if name == "memory-prompt":
      experiences, nb = _experiences(settings, retrieve, carry, observations)
    longest = int(np.max(jax.device_get(carry.table.lengths))) if slots else 0
    inputs = prepare(observations, experiences, min_tokens=longest)
    inputs = inputs._replace(neighbours=nb)
    scored, extras = pack(inputs, min_tokens=longest)
    out = decide(
        lm.params,
        carry.memory,
        carry.table,
        scored,
        key,
        carry.state.episodes_done,
        **extras,
    )
    return choices(out, inputs, observations, settings, carry.action_texts)

  def observe(carry: AgentCarry, trajectories) -> AgentCarry:
    """Writes finished games into memory (static agents: counts only)."""
    done = carry.episodes_done + 1
    if name in ("static", "static-generate"):
      return restore(carry.memory, carry.action_texts, done)
    memory = carry.memory
    texts = dict(carry.action_texts)
    for traj in trajectories:
      if not traj.actions:
        continue
      views, ids, rewards, mask = _episode_arrays(settings, traj)
      memory = write_episode(
          memory,
          views,
          ids,
          rewards,
          mask,
          jnp.int32(traj.task_id),
          jnp.int32(traj.episode_id),
          jnp.asarray(bool(traj.lost)),
      )
      for a in traj.actions:
        texts.pop(actions_lib.action_id(a), None)  # Most recent last.
        texts[actions_lib.action_id(a)] = stored_text(a)
    return restore(memory, texts, done)

  return TextGameAgent(
      name=name,
      settings=settings,
      hyper=hyper,
      init=init,
      act=act,
      observe=observe,
      prepare=prepare,
      decide=decide,
      pack=pack,
      retrieve=retrieve,
      state_views=lambda c, h, t="": batching.state_views(settings, c, h, t),
      restore=restore,
      num_compiles=num_compiles,
  )


def remember(agent: TextGameAgent, entries, carry: AgentCarry | None = None):
  """Observes one single-step game per (current, history, action, return).

  For seeding a memory by hand (tests, benchmarks, notebooks).

  Args:
    agent: a `TextGameAgent`.
    entries: (current view text, history view text, action, return) tuples.
    carry: the `AgentCarry` to add to (default: the agent's empty one).

  Returns:
    The new `AgentCarry`.
  """
  trajs = [
      Trajectory(
          views=[agent.state_views(current, history, "")],
          actions=[action],
          rewards=[reward],
          task_id=0,
          episode_id=i,
      )
      for i, (current, history, action, reward) in enumerate(entries)
  ]
  return agent.observe(carry or agent.init(), trajs)
