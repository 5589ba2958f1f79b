"""Generating agents: the LM writes the command instead of picking one.

Two agents read the game without any list of commands and write their
command token by token, up to the terminator or `Settings.max_command_tokens`
tokens:

* ``static-generate``: plain sampling from the LM, y ~ pi_theta(. | prompt).
* ``jitrl-generate``: an exact draw from the tilted policy over whole strings
  (docs/method.md section 13: section 7's candidates widened to every string),

    pi'(y) = pi_theta(y) exp(beta A(s, y)) / Z,

  where A(s, y) = Q - V for the commands the retrieved neighbours took (the
  paper rule of section 5, through `policy.memory_command_advantages`) and
  A(s, y) = A_0 for every other string: 0 by default, or the expected
  optimism bonus lam * alpha / |N(s)| (`Settings.other_command_advantage`).
  `models.tilting` turns the commands, their per-token log-probabilities
  and advantages into the decoder's logits hook.

One decision of B games is one jitted call (`make_decide`):

  prefill  the prompts into a KV cache, once.
  jitrl-generate only:
    N(s)   = policy.retrieve(...)                               (vmapped)
    (ids, A, mask, A_0) = policy.memory_command_advantages(N(s)), S = K
    tokens of the S commands from the `ActionTable` (the stored text,
           encoded, plus the terminator), padded to T (a token bucket)
    score  the commands from the prompt's cache: the cache is repeated S
           times and extended by each command, which gives
           log pi_theta(s_t | prompt, s_<t) and the next-token logits at
           every node of the commands' prefix tree
    tilt   = tilting.make_tilt(...)                              (vmapped)
  decode   `sampling.decode` with `tilting.logits_fn` (static-generate:
           none), max_new_tokens = max_command_tokens; it also sums
           log pi'(y) and log pi_theta(y) of the written string.

The prompt has no command list; it asks for one short command and the reply
starts with "> " (`prompts.WRITE_QUESTION`, `prompts.REPLY_PREFIX`). A
command ends at the LM's end-of-turn token or a line break
(`command_stop_ids`); each memory command is tilted once per terminator
(`with_terminators`). The base policy is the LM at `hyper.temperature`: its
logits are divided by it before the tilt, which is exact for that policy.

Host side (`agents.commands.choices`): the tokens before the terminator are
detokenised and the first non-empty line (spaces collapsed) is the action,
kept as written for the memory; the game is sent it without a list mark,
quotes or a final full stop (`commands.game_command`). A command that
reaches the budget is cut there and logged (``truncated``); text without a
letter or digit is replaced by ``commands.FALLBACK_COMMAND`` and logged
(``fallback``). Memory keys commands by `actions.action_id` (the normalised
text); the action table keeps the text as the LM wrote it, so the tilt
weighs the very string the LM can write again (another spelling is another
string, with A_0).

Exactness: unless greedy, the draw is exactly pi' (with pi_theta the LM at
`hyper.temperature`) over the strings of at most max_command_tokens tokens,
a string cut by the budget counting as an "other" string (see
`models.tilting`).

Dimension letters: B games, L prompt tokens, S memory commands, T command
tokens, N new tokens, V vocabulary, A action-table rows.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax import config as config_lib
from jitrl_jax import policy as policy_lib
from jitrl_jax import token_sets
from jitrl_jax.agents import actions as actions_lib
from jitrl_jax.agents import batching
from jitrl_jax.agents import lm as lm_lib
from jitrl_jax.agents import prompts
from jitrl_jax.models import sampling
from jitrl_jax.models import scoring
from jitrl_jax.models import tilting

GENERATING_AGENT_NAMES = ("static-generate", "jitrl-generate")


class NoGeneratorError(ValueError):
  """A generating agent was given an LM that cannot write (no generator)."""


class GenerateInput(NamedTuple):
  """Padded device inputs of one batched generating decision."""

  prompt_ids: Any  # [B, L] int32, right-padded
  prompt_lengths: Any  # [B] int32
  views: tuple[token_sets.TokenSet, ...]  # each ids [B, S_v]
  steps: Any  # [B] int32 step within the episode


class GenerateDecision(NamedTuple):
  """The output of one batched generating decision (S = 0 for static)."""

  tokens: jax.Array  # [B, N] int32 written tokens, pad after the terminator
  lengths: jax.Array  # [B] int32 tokens written (terminator included)
  truncated: jax.Array  # [B] bool the budget ended the command
  log_pi_theta: jax.Array  # [B] log pi_theta(y)
  log_pi: jax.Array  # [B] log pi'(y), the law it was drawn from
  log_partition: jax.Array  # [B] log W(root) = log Z
  kl: jax.Array  # [B] KL(pi' || pi_theta)
  command_index: jax.Array  # [B] int32 the memory command y is, or -1
  command_ids: jax.Array  # [B, S] int32 action ids of the memory commands
  command_valid: jax.Array  # [B, S] bool usable (distinct, in the budget)
  advantages: jax.Array  # [B, S] A_s = Q - V
  command_log_pi_theta: jax.Array  # [B, S] log pi_theta(s), -inf unusable
  command_log_pi: jax.Array  # [B, S] log pi'(s), -inf unusable
  baseline: jax.Array  # [B] A_0
  value: jax.Array  # [B] V(s)
  num_neighbours: jax.Array  # [B] int32 |N(s)|
  weight: jax.Array  # [B] beta (0 for static-generate)
  nan_logits: jax.Array  # [B] bool the first next-token logits had a NaN


def check_generating(
    name: str, lm: lm_lib.LanguageModel, settings: config_lib.Settings
) -> None:
  """Raises when agent `name` cannot run with this LM or these settings."""
  if lm.generator is None:
    raise NoGeneratorError(
        f"agent {name!r} writes its own commands and needs an LM that can "
        f"generate (LanguageModel.generator); {lm.name!r} has none (the "
        "scripted LM only scores given strings). Use a real model "
        "(lm.kind 'gguf' or 'hf', agents.load_language_model) or a scoring "
        "agent (static, jitrl, jitrl-reference, memory-prompt)."
    )
  if settings.kl_budget is not None:
    raise ValueError(
        f"agent {name!r}: kl_budget is not supported by the generating "
        "agents; set beta instead"
    )


def table_width(settings: config_lib.Settings) -> int:
  """Token width of a generating agent's action table (>= the budget)."""
  return scoring.bucket_size(
      settings.max_command_tokens, settings.token_buckets
  )


def command_stop_ids(lm: lm_lib.LanguageModel) -> tuple[int, ...]:
  """The tokens that end a written command: the LM's reply terminators, then
  every single token that is a line break ("\\n", "\\n\\n"): a command is
  one line. The first is the one the action table's commands end with."""
  stops = list(lm.generator.stop_ids)
  for text in ("\n", "\n\n"):
    ids = lm.encode(text)
    if len(ids) == 1 and ids[0] not in stops:
      stops.append(int(ids[0]))
  return tuple(stops)


def command_width(settings: config_lib.Settings, table_lengths) -> int:
  """T: the token bucket of the longest stored command within the budget."""
  longest = int(np.max(np.asarray(table_lengths), initial=1))
  longest = max(1, min(longest, settings.max_command_tokens))
  return min(
      scoring.bucket_size(longest, settings.token_buckets),
      table_width(settings),
  )


def prepare(
    settings: config_lib.Settings,
    lm: lm_lib.LanguageModel,
    observations: Sequence[prompts.GameObservation],
) -> GenerateInput:
  """Host: B games -> prompts (no command list) and views, padded.

  Raises:
    ValueError: on no games.
  """
  if not observations:
    raise ValueError("prepare needs at least one game observation")
  rows = [
      prompts.prompt_ids(
          obs._replace(valid_actions=()),
          render_prompt=lm.render_prompt,
          encode=lm.encode,
          history_turns=settings.history_turns,
          list_actions=False,
          experiences="",
          max_observation_chars=settings.max_observation_chars,
          max_tokens=max(settings.prompt_buckets),
          question=prompts.WRITE_QUESTION,
          reply_prefix=lm.reply_prefix,
          system=prompts.system_prompt(settings.web),
      )
      for obs in observations
  ]
  l = scoring.bucket_size(max(len(r) for r in rows), settings.prompt_buckets)
  return GenerateInput(
      prompt_ids=np.stack(
          [scoring.pad_prompt(r, length=l, pad_id=lm.pad_id)[0] for r in rows]
      ),
      prompt_lengths=np.asarray([len(r) for r in rows], np.int32),
      views=batching.stacked_views(settings, observations),
      steps=np.asarray([o.step for o in observations], np.int32),
  )


def command_rows(
    table: actions_lib.ActionTable, ids: jax.Array, mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """The tokens of S memory commands from the table (one game).

  Args:
    table: the action table, tokens [A, T] (T: this decision's width).
    ids: [S] int32 action ids.
    mask: [S] bool.

  Returns:
    (tokens [S, T] int32, lengths [S] int32, 0 for a masked or missing
    command). A command longer than T is cut, so it loses its terminator
    and the tilt ignores it (the budget convention of `models.tilting`).
  """
  t = table.tokens.shape[1]
  hit = ids[:, None] == table.action_ids[None, :]  # [S, A]
  row = jnp.argmax(hit, axis=-1)
  keep = mask & jnp.any(hit, axis=-1)
  return table.tokens[row], jnp.where(
      keep, jnp.minimum(table.lengths[row], t), 0
  )


def score_commands(
    generator: lm_lib.Generator,
    params,
    first_logits: jax.Array,
    cache,
    prompt_lengths: jax.Array,
    tokens: jax.Array,
    lengths: jax.Array,
    logit_scale: float | jax.Array = 1.0,
) -> tuple[jax.Array, jax.Array]:
  """Per-token log-probabilities of S commands after B prefilled prompts.

  The prompt is not encoded again: its cache is repeated S times and each
  copy is extended by one command (its tokens at positions n_b + t).

  Args:
    generator: the LM's `Generator`.
    params: its weights.
    first_logits: [B, V] next-token logits after each prompt.
    cache: the prompts' cache, with at least n_b + T slots.
    prompt_lengths: [B] int32 n_b.
    tokens: [B, S, T] int32 commands.
    lengths: [B, S] int32 (0: padding).
    logit_scale: the model's logits are multiplied by it (1 / temperature:
      the base policy is the LM at that temperature); `first_logits` are
      taken as already scaled.

  Returns:
    (token_logp [B, S, T], 0 past the length; next_logp [B, S, T, V], the
    LM's next-token log-probabilities at each node s[:t]).
  """
  b, s, t = tokens.shape
  copies = jax.tree.map(lambda x: jnp.repeat(x, s, axis=0), cache)
  positions = prompt_lengths[:, None, None] + jnp.arange(t)[None, None, :]
  real = jnp.arange(t)[None, None, :] < lengths[..., None]  # [B, S, T]
  logits, _ = generator.extend(
      params,
      tokens.reshape(b * s, t),
      jnp.broadcast_to(positions, (b, s, t)).reshape(b * s, t),
      real.reshape(b * s, t),
      copies,
  )
  v = logits.shape[-1]
  first = jnp.broadcast_to(first_logits[:, None, None, :], (b, s, 1, v))
  later = logits.reshape(b, s, t, v)[:, :, :-1] * logit_scale
  nodes = jnp.concatenate([first, later], 2)
  next_logp = jax.nn.log_softmax(nodes.astype(jnp.float32), axis=-1)
  token_logp = jnp.take_along_axis(next_logp, tokens[..., None], -1)[..., 0]
  return jnp.where(real, token_logp, 0.0), next_logp


def with_terminators(
    tokens: jax.Array,
    lengths: jax.Array,
    token_logp: jax.Array,
    next_logp: jax.Array,
    stop_ids: Sequence[int],
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Each memory command once per terminator: R = len(stop_ids) strings.

  A command is its text and any of the terminators (the LM may end the line
  with its end-of-turn token or a line break), so each of the S commands
  becomes R strings of the prefix tree, siblings that differ in their last
  token. Their log-probabilities come from the one scoring pass: the last
  token's is read from the next-token distribution at the command's last
  node, which all R share. A row whose last token is not a terminator (a
  command cut at the width) is kept as it is, R times: the tilt ignores it.

  Args:
    tokens: [B, S, T] int32, each ending with a terminator.
    lengths: [B, S] int32.
    token_logp: [B, S, T] from `score_commands`.
    next_logp: [B, S, T, V] from `score_commands`.
    stop_ids: the R terminators.

  Returns:
    (tokens, lengths, token_logp [B, S R, T], next_logp [B, S R, T, V]),
    row s R + r being command s ended by stop_ids[r].
  """
  b, s, t = tokens.shape
  r = len(stop_ids)
  stops = jnp.asarray(stop_ids, jnp.int32)
  last = jnp.maximum(lengths - 1, 0)  # [B, S]
  last_token = jnp.take_along_axis(tokens, last[..., None], axis=2)[..., 0]
  ends = (lengths > 0) & jnp.isin(last_token, stops)  # [B, S]
  at_end = (jnp.arange(t) == last[..., None]) & ends[..., None]  # [B, S, T]
  node = jnp.take_along_axis(next_logp, last[..., None, None], axis=2)[
      :, :, 0
  ]  # [B, S, V]
  stop_logp = node[..., stops]  # [B, S, R]
  at_end = at_end[:, :, None, :]  # [B, S, 1, T]
  out_tokens = jnp.where(at_end, stops[:, None], tokens[:, :, None, :])
  out_logp = jnp.where(at_end, stop_logp[..., None], token_logp[:, :, None, :])
  flat = lambda x: x.reshape((b, s * r) + x.shape[3:])
  return (
      flat(out_tokens),
      jnp.repeat(lengths, r, axis=1),
      flat(out_logp),
      jnp.repeat(next_logp, r, axis=1),
  )


def memory_tilt(
    settings: config_lib.Settings,
    hyper: config_lib.Hyper,
    lm: lm_lib.LanguageModel,
    params,
    memory,
    table: actions_lib.ActionTable,
    inputs: GenerateInput,
    first_logits: jax.Array,
    cache,
    *,
    stop_ids: Sequence[int],
    logit_scale: float | jax.Array = 1.0,
) -> tuple[tilting.Tilt, policy_lib.MemoryCommands, jax.Array]:
  """N(s) -> the tilt of B games (see the module docstring).

  Returns:
    (Tilt with fields [B, S R, ...] (`with_terminators`), MemoryCommands
    [B, S], |N(s)| [B]).
  """
  nb = jax.vmap(lambda v, st: policy_lib.retrieve(settings, memory, v, st))(
      inputs.views, inputs.steps
  )
  mc = jax.vmap(
      lambda n: policy_lib.memory_command_advantages(settings, hyper, n)
  )(nb)
  tokens, lengths = jax.vmap(lambda i, m: command_rows(table, i, m))(
      mc.action_ids, mc.mask
  )
  token_logp, next_logp = score_commands(
      lm.generator,
      params,
      first_logits,
      cache,
      inputs.prompt_lengths,
      tokens,
      lengths,
      logit_scale,
  )
  tokens, lengths, token_logp, next_logp = with_terminators(
      tokens, lengths, token_logp, next_logp, stop_ids
  )
  r = len(stop_ids)
  make = functools.partial(
      tilting.make_tilt,
      stop_ids=tuple(stop_ids),
      max_len=settings.max_command_tokens,
  )
  tilt = jax.vmap(make, in_axes=(0, 0, 0, 0, 0, None))(
      tokens,
      lengths,
      token_logp,
      jnp.repeat(mc.advantages.astype(jnp.float32), r, axis=1),
      mc.baseline.astype(jnp.float32),
      jnp.asarray(hyper.beta, jnp.float32),
      next_logits=next_logp,
  )
  return tilt, mc, jnp.sum(nb.mask, axis=-1, dtype=jnp.int32)


def sample(
    lm: lm_lib.LanguageModel,
    params,
    first_logits: jax.Array,
    cache,
    prompt_lengths: jax.Array,
    key: jax.Array,
    *,
    tilt: tilting.Tilt | None,
    max_new_tokens: int,
    temperature: float | jax.Array = 1.0,
    num_samples: int = 1,
    stop_ids: Sequence[int] | None = None,
    logit_scale: float | jax.Array = 1.0,
) -> sampling.GenerateOutput:
  """Writes one command per prompt (per sample), tilted when `tilt` is set.

  Args:
    lm: the LM (its generator, pad id).
    params: its weights.
    first_logits: [B, V] after each prompt.
    cache: the prompts' cache (at least n_b + max_new_tokens slots).
    prompt_lengths: [B] int32.
    key: PRNG key, consumed by the sampler.
    tilt: the `Tilt` [B, ...] (built with max_len = max_new_tokens), or None
      for plain sampling.
    max_new_tokens: N, the budget (static).
    temperature: 1 draws exactly pi' (or pi_theta); 0 is greedy.
    num_samples: R (static): each prompt is written R times (rows b R to
      b R + R - 1), from one prefill.
    stop_ids: the terminators (default the generator's; the agents pass
      `command_stop_ids`).
    logit_scale: the model's logits after the first are multiplied by it
      (`first_logits` are taken as already scaled).

  Returns:
    `sampling.GenerateOutput` [B R, ...] with log_probs (log pi'(y)) and
    base_log_probs (log pi_theta(y)).
  """
  if num_samples > 1:
    rep = lambda x: jnp.repeat(x, num_samples, axis=0)
    first_logits, prompt_lengths = rep(first_logits), rep(prompt_lengths)
    cache = jax.tree.map(rep, cache)
    tilt = None if tilt is None else jax.tree.map(rep, tilt)
  extend = lm.generator.extend

  def tokens_to_logits(tokens, positions, cache):
    real = jnp.ones(tokens.shape + (1,), bool)
    logits, cache = extend(
        params, tokens[:, None], positions[:, None], real, cache
    )
    return logits[:, 0] * logit_scale, cache

  return sampling.decode(
      tokens_to_logits,
      first_logits,
      cache,
      prompt_lengths.astype(jnp.int32),
      key,
      max_new_tokens=max_new_tokens,
      temperature=temperature,
      logits_fn=None if tilt is None else tilting.logits_fn,
      stop_ids=lm.generator.stop_ids if stop_ids is None else stop_ids,
      pad_id=lm.pad_id,
      logits_fn_state=tilt,
      return_log_probs=True,
  )


def written_command(tilt: tilting.Tilt, tokens, length) -> jax.Array:
  """[] int32 the memory command the written tokens [N] are, or -1."""
  w = min(tilt.tokens.shape[1], tokens.shape[0])
  inside = jnp.arange(w)[None, :] < tilt.lengths[:, None]
  same = jnp.all((tilt.tokens[:, :w] == tokens[None, :w]) | ~inside, -1)
  hit = tilt.valid & (tilt.lengths == length) & same
  return jnp.where(jnp.any(hit), jnp.argmax(hit), -1).astype(jnp.int32)


def _decision(out, first_logits, stop_ids, tilt, mc, num_nb, beta):
  """Assembles the `GenerateDecision` (tilt None: static-generate)."""
  b, n = out.tokens.shape
  last = out.tokens[jnp.arange(b), jnp.clip(out.lengths - 1, 0, n - 1)]
  stopped = jnp.isin(last, jnp.asarray(stop_ids or (-1,), jnp.int32))
  zeros = jnp.zeros((b,), jnp.float32)
  empty = jnp.zeros((b, 0), jnp.float32)
  common = dict(
      tokens=out.tokens,
      lengths=out.lengths,
      truncated=(out.lengths >= n) & ~stopped,
      log_pi_theta=out.base_log_probs,
      log_pi=out.log_probs,
      nan_logits=jnp.any(jnp.isnan(first_logits), axis=-1),
  )
  if tilt is None:
    return GenerateDecision(
        log_partition=zeros,
        kl=zeros,
        command_index=jnp.full((b,), -1, jnp.int32),
        command_ids=jnp.zeros((b, 0), jnp.int32),
        command_valid=jnp.zeros((b, 0), bool),
        advantages=empty,
        command_log_pi_theta=empty,
        command_log_pi=empty,
        baseline=zeros,
        value=zeros,
        num_neighbours=jnp.zeros((b,), jnp.int32),
        weight=zeros,
        **common,
    )
  # The tilt's rows are the S commands x R terminators (`with_terminators`):
  # a command's probability sums its R strings.
  r = tilt.valid.shape[1] // mc.action_ids.shape[1]
  per_command = lambda x: jax.nn.logsumexp(
      x.reshape(b, -1, r), axis=-1, where=tilt.valid.reshape(b, -1, r)
  )
  row = jax.vmap(written_command)(tilt, out.tokens, out.lengths)
  return GenerateDecision(
      log_partition=jax.vmap(tilting.log_partition)(tilt),
      kl=jax.vmap(tilting.kl_to_base)(tilt),
      command_index=jnp.where(row >= 0, row // r, -1),
      command_ids=mc.action_ids,
      command_valid=jnp.any(tilt.valid.reshape(b, -1, r), axis=-1),
      advantages=mc.advantages.astype(jnp.float32),
      command_log_pi_theta=per_command(tilt.log_prob),
      command_log_pi=per_command(jax.vmap(tilting.command_log_probs)(tilt)),
      baseline=mc.baseline.astype(jnp.float32),
      value=mc.value.astype(jnp.float32),
      num_neighbours=num_nb,
      weight=jnp.full((b,), beta, jnp.float32),
      **common,
  )


def make_decide(name, settings, hyper, lm):
  """The jitted, batched generating decision and a counter of its traces.

  Args:
    name: "static-generate" or "jitrl-generate".
    settings: the agent's settings.
    hyper: its hyperparameters (beta, lam, alpha, temperature).
    lm: the LM (with a generator).

  Returns:
    (decide, num_compiles): decide(params, memory, table [A, T], inputs
    [B, ...], key) -> `GenerateDecision` [B, ...]; the key is consumed by
    the sampler (the same draws for both agents where the tilt is the
    identity).
  """
  check_generating(name, lm, settings)
  traces = [0]
  tilted = name == "jitrl-generate"
  n_new = int(settings.max_command_tokens)
  stops = command_stop_ids(lm)
  # The base policy pi_theta is the LM at `hyper.temperature`, token by
  # token: its logits are divided by it before anything else, the tilt is
  # exact for that policy, and the sampler draws at temperature 1 (or takes
  # the argmax when greedy, where the scale changes nothing).
  temperature = 0.0 if settings.greedy else 1.0
  scale = 1.0 if settings.greedy else 1.0 / hyper.temperature

  def decide(params, memory, table, inputs, key):
    traces[0] += 1
    l = inputs.prompt_ids.shape[1]
    t = table.tokens.shape[1] if tilted else 0
    first, cache = lm.generator.prefill(
        params, inputs.prompt_ids, inputs.prompt_lengths, l + max(n_new, t)
    )
    first = first * scale
    tilt, mc, num_nb = None, None, None
    if tilted:
      tilt, mc, num_nb = memory_tilt(
          settings,
          hyper,
          lm,
          params,
          memory,
          table,
          inputs,
          first,
          cache,
          stop_ids=stops,
          logit_scale=scale,
      )
    out = sample(
        lm,
        params,
        first,
        cache,
        inputs.prompt_lengths,
        key,
        tilt=tilt,
        max_new_tokens=n_new,
        temperature=temperature,
        stop_ids=stops,
        logit_scale=scale,
    )
    return _decision(out, first, stops, tilt, mc, num_nb, hyper.beta)

  return jax.jit(decide), lambda: traces[0]
