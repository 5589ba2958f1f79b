"""The decision: one pure function from padded inputs to a chosen action.

For one game (vmapped over B games by `make_decide`), in one jitted call:

  N(s)  = policy.retrieve(memory, views)        once, unless given
  slots = the C environment candidates + X memory actions: the distinct
          neighbour actions with positive mean return, best first
          (docs/method.md section 5), their tokens from the `ActionTable`
  z     = log pi_theta(candidate | prompt) / temperature    (one LM pass)
  jitrl, jitrl-reference: policy.act(z, neighbours=N(s))    (the only place
          where neighbours become a modulated policy)
  static, memory-prompt:  a ~ softmax(z) (or its argmax)

The output speaks `policy.ActDiagnostics`' vocabulary, with the candidate
axis C + X for every agent (agents without memory candidates pad it).

Dimension letters: B games, C environment candidates, X memory-candidate
slots, K neighbours, A action-table rows, T candidate tokens.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jitrl_jax import advantage as advantage_lib
from jitrl_jax import config as config_lib
from jitrl_jax import policy as policy_lib
from jitrl_jax import update as update_lib
from jitrl_jax.agents import actions as actions_lib
from jitrl_jax.agents import batching


class DecisionOutput(NamedTuple):
  """Result of one batched decision; the candidate axis is C + X.

  Field names are those of `policy.ActDiagnostics`.
  """

  index: jax.Array  # [B] int32 chosen slot in [0, C + X), -1: none
  action_ids: jax.Array  # [B] int32 id of the chosen action
  lm_index: jax.Array  # [B] int32 argmax of z
  logits: jax.Array  # [B, C + X] z / temperature, -inf masked
  scores: jax.Array  # [B, C + X] z' = z + beta A - const (or p + w A_hat)
  pi_theta: jax.Array  # [B, C + X] softmax(z / temperature)
  pi: jax.Array  # [B, C + X] the distribution the choice was drawn from
  advantages: jax.Array  # [B, C + X] A = Q - V (0 without the policy)
  rule_advantages: jax.Array  # [B, C + X] A (jitrl) or A_hat (reference)
  q_values: jax.Array  # [B, C + X] Q
  counts: jax.Array  # [B, C + X] int32 n(s, a)
  value: jax.Array  # [B] V(s)
  num_neighbours: jax.Array  # [B] int32 |N(s)|
  weight: jax.Array  # [B] beta (jitrl) or w (reference); 0 without
  nan_logits: jax.Array  # [B] bool some unmasked logit was NaN
  candidate_ids: jax.Array  # [B, C + X] int32 ids of all slots
  candidate_mask: jax.Array  # [B, C + X] bool


def memory_slots(settings: config_lib.Settings, name: str) -> int:
  """X: memory-candidate slots of agent `name` (0 when it adds none)."""
  if name == "static" or not settings.memory_candidates:
    return 0
  return min(int(settings.memory_candidate_slots), settings.neighbour_slots)


def padded_slots(settings: config_lib.Settings) -> int:
  """X as every agent's output has it (the slots of a memory agent)."""
  return min(int(settings.memory_candidate_slots), settings.neighbour_slots)


def _add_memory_candidates(nb, table, ids, mask, toks, lens, slots):
  """Appends the X best neighbour actions (mean return, descending)."""
  t = toks.shape[-1]
  mc = advantage_lib.memory_action_candidates(nb, ids, mask)
  priority = jnp.where(mc.mask, mc.mean_returns, -jnp.inf)
  order = jnp.argsort(-priority, stable=True)[:slots]
  extra_ids = mc.action_ids[order]  # [X]
  row_hit = extra_ids[:, None] == table.action_ids[None, :]  # [X, A]
  found = jnp.any(row_hit, axis=-1)
  row = jnp.argmax(row_hit, axis=-1)
  extra_mask = mc.mask[order] & found
  extra_toks = table.tokens[row, :t]
  extra_lens = jnp.where(extra_mask, jnp.minimum(table.lengths[row], t), 0)
  return (
      jnp.concatenate([ids, extra_ids]),
      jnp.concatenate([mask, extra_mask]),
      jnp.concatenate([toks, extra_toks]),
      jnp.concatenate([lens, extra_lens]),
  )


def _pad_axis(out: DecisionOutput, pad: int) -> DecisionOutput:
  """Pads the candidate axis of one game's output by `pad` masked slots."""

  def p(x, v):
    return jnp.concatenate([x, jnp.full((pad,), v, x.dtype)])

  return out._replace(
      logits=p(out.logits, -jnp.inf),
      scores=p(out.scores, -jnp.inf),
      pi_theta=p(out.pi_theta, 0.0),
      pi=p(out.pi, 0.0),
      advantages=p(out.advantages, 0.0),
      rule_advantages=p(out.rule_advantages, 0.0),
      q_values=p(out.q_values, 0.0),
      counts=p(out.counts, 0),
      candidate_ids=p(out.candidate_ids, -1),
      candidate_mask=p(out.candidate_mask, False),
  )


def _lm_policy(settings, z, ids, mask, nb, key) -> DecisionOutput:
  """static and memory-prompt: the LM's own policy softmax(z)."""
  n = ids.shape[0]
  zeros = jnp.zeros((n,), jnp.float32)
  # NaN logits are treated as masked (never chosen) and reported, as in
  # policy.act; with no finite logit left the index is -1.
  nan = update_lib.nan_candidates(z, zeros, 0.0, mask=mask)
  z = jnp.where(nan, -jnp.inf, z)
  any_valid = jnp.any(~jnp.isneginf(z))
  pi_theta = update_lib.softmax_policy(z)
  lm_index = jnp.where(any_valid, jnp.argmax(z), -1).astype(jnp.int32)
  _, k_choice = jax.random.split(key)
  if settings.greedy:
    index = lm_index
  else:
    sample = jax.random.categorical(k_choice, z).astype(jnp.int32)
    index = jnp.where(any_valid, sample, jnp.int32(-1))
  return DecisionOutput(
      index=index,
      action_ids=ids[index],
      lm_index=lm_index,
      logits=z,
      scores=z,
      pi_theta=pi_theta,
      pi=pi_theta,
      advantages=zeros,
      rule_advantages=zeros,
      q_values=zeros,
      counts=jnp.zeros((n,), jnp.int32),
      value=jnp.float32(0.0),
      num_neighbours=(
          jnp.int32(0) if nb is None else jnp.sum(nb.mask, dtype=jnp.int32)
      ),
      weight=jnp.float32(0.0),
      nan_logits=jnp.any(nan),
      candidate_ids=ids,
      candidate_mask=mask,
  )


def _policy_output(out: policy_lib.ActOutput, ids, mask) -> DecisionOutput:
  d = out.diagnostics
  index = out.index.astype(jnp.int32)
  return DecisionOutput(
      index=index,
      action_ids=ids[index],
      lm_index=d.lm_index,
      logits=d.logits,
      scores=d.scores,
      pi_theta=d.pi_theta,
      pi=d.pi,
      advantages=d.advantages.astype(jnp.float32),
      rule_advantages=d.rule_advantages.astype(jnp.float32),
      q_values=d.q_values.astype(jnp.float32),
      counts=d.counts.astype(jnp.int32),
      value=d.value.astype(jnp.float32),
      num_neighbours=d.num_neighbours.astype(jnp.int32),
      weight=jnp.asarray(d.weight, jnp.float32),
      nan_logits=d.nan_logits,
      candidate_ids=ids,
      candidate_mask=mask,
  )


def decide_one(
    name: str,
    settings: config_lib.Settings,
    hyper: config_lib.Hyper,
    score_fn: Callable[..., jax.Array],
    params,
    memory,
    table: actions_lib.ActionTable,
    inp: batching.DecisionInput,
    key: jax.Array,
    episodes_done,
    prefix=None,
    layout: tuple[int, int] | None = None,
) -> DecisionOutput:
  """One game's decision (unbatched inputs; see the module docstring).

  Args:
    name: the agent (static, jitrl, jitrl-reference, memory-prompt).
    settings: its settings (rule "reference" for jitrl-reference).
    hyper: its hyperparameters.
    score_fn: the LM's `score_fn`.
    params: the LM's weights.
    memory: the memory.
    table: the memory actions' tokens.
    inp: one game's `DecisionInput` (leading B axis removed).
    key: PRNG key, consumed (the bonus draws and the sample).
    episodes_done: [] int episodes finished (the reference weight).
    prefix: the LM's `encode_prefix` cache of the prompt head the prompt
      starts after (packed layout), or None.
    layout: static (N, K) of the packed layout (`batching.packed_layout`),
      or None for the padded one.

  Returns:
    The `DecisionOutput` of this game, candidate axis C + X.
  """
  mask = inp.candidate_mask
  ids, toks = inp.candidate_ids, inp.candidate_tokens
  lens = jnp.where(mask, inp.candidate_lengths, 0)
  nb = inp.neighbours
  if name != "static" and nb is None:
    nb = policy_lib.retrieve(settings, memory, inp.views, inp.steps)
  slots = memory_slots(settings, name)
  if slots:
    ids, mask, toks, lens = _add_memory_candidates(
        nb, table, ids, mask, toks, lens, slots
    )
  if layout is None:
    z = score_fn(params, inp.prompt_ids, inp.prompt_lengths, toks, lens)
  else:
    z = score_fn(
        params,
        inp.prompt_ids,
        inp.prompt_lengths,
        toks,
        lens,
        layout=layout,
        prefix=prefix,
    )
  z = jnp.where(mask, z, -jnp.inf) / hyper.temperature
  if name in ("static", "memory-prompt"):
    out = _lm_policy(settings, z, ids, mask, nb, key)
  else:
    rule = policy_lib.jitrl(settings, hyper)
    act = rule.act(
        memory,
        z,
        ids,
        mask,
        inp.views,
        key,
        inp.steps,
        episodes_done,
        neighbours=nb,
    )
    out = _policy_output(act, ids, mask)
  pad = padded_slots(settings) - slots
  return _pad_axis(out, pad) if pad else out


def make_decide(
    name: str,
    settings: config_lib.Settings,
    hyper: config_lib.Hyper,
    score_fn: Callable[..., jax.Array],
) -> tuple[Callable[..., DecisionOutput], Callable[[], int]]:
  """The jitted, batched decision and a counter of its compilations.

  Returns:
    (decide, num_compiles): decide(params, memory, table, inputs [B, ...],
    key, episodes_done, prefix=None, layout=None) -> DecisionOutput
    [B, ...]; the key is consumed (split into one key a game); `layout` is
    static (one compilation per layout and input shapes), `prefix` shared
    by the B games.
  """
  traces = [0]

  def decide(
      params,
      memory,
      table,
      inputs,
      key,
      episodes_done,
      prefix=None,
      layout=None,
  ):
    traces[0] += 1
    keys = jax.random.split(key, inputs.prompt_ids.shape[0])
    one = lambda inp, k: decide_one(
        name,
        settings,
        hyper,
        score_fn,
        params,
        memory,
        table,
        inp,
        k,
        episodes_done,
        prefix,
        layout,
    )
    return jax.vmap(one)(inputs, keys)

  return jax.jit(decide, static_argnames="layout"), lambda: traces[0]
