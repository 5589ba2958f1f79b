"""Host-side batching: B games' texts -> one padded `DecisionInput`.

Every shape is a bucket of `models.scoring` (its `bucket_size`,
`pad_prompt` and `pad_candidates`), so that one compile serves a whole run:
the prompt length L from `Settings.prompt_buckets`, the candidate count C
from `candidate_buckets`, the candidate token length T from `token_buckets`.
What does not fit the largest bucket is cut before padding (the prompt in
`prompts.prompt_ids`, extra candidates dropped, long candidates cut), so the
largest bucket is also the largest shape.

Dimension letters: B games, L prompt tokens, C candidates, T candidate
tokens, S set size.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from jitrl_jax import config as config_lib
from jitrl_jax import retrieval as retrieval_lib
from jitrl_jax import token_sets
from jitrl_jax.agents import actions as actions_lib
from jitrl_jax.agents import lm as lm_lib
from jitrl_jax.agents import prompts
from jitrl_jax.models import packing
from jitrl_jax.models import scoring

TokenSet = token_sets.TokenSet


class DecisionInput(NamedTuple):
  """Padded device inputs of one batched decision."""

  prompt_ids: Any  # [B, L] int32
  prompt_lengths: Any  # [B] int32
  candidate_tokens: Any  # [B, C, T] int32
  candidate_lengths: Any  # [B, C] int32 (0 = padding slot)
  candidate_ids: Any  # [B, C] int32 action ids
  candidate_mask: Any  # [B, C] bool
  views: tuple[TokenSet, ...]  # each ids [B, S_v], counts [B, S_v]
  steps: Any  # [B] int32 step within the episode
  # N(s) retrieved before the call (memory-prompt agent), fields [B, K];
  # None: the decision retrieves them itself.
  neighbours: retrieval_lib.Neighbours | None = None


def state_views(
    settings: config_lib.Settings, current: str, history: str, task: str = ""
) -> tuple[TokenSet, ...]:
  """The views of a state as padded token sets, one per `view_sizes` entry.

  Two views are (history, current): a game's task is the same in every
  state, so it is no state feature there. Three are (history, current,
  task), for environments whose task changes between episodes (a web
  task's utterance names other targets in every instance).
  """
  texts = (history, current, task)[: len(settings.view_sizes)]
  return tuple(
      token_sets.text_token_set(
          t,
          n=n,
          size=s,
          multiset=settings.multiset,
          reference_filter=settings.reference_filter,
      )
      for t, n, s in zip(texts, settings.view_ngrams, settings.view_sizes)
  )


def stacked_views(
    settings: config_lib.Settings,
    observations: Sequence[prompts.GameObservation],
) -> tuple[TokenSet, ...]:
  """The views of B games, each view stacked to ids [B, S_v]."""
  per_game = [
      state_views(settings, o.current, o.history, o.task) for o in observations
  ]
  return tuple(
      token_sets.stack_token_sets([vs[j] for vs in per_game])
      for j in range(len(settings.view_sizes))
  )


def shown_actions(
    settings: config_lib.Settings, obs: prompts.GameObservation
) -> list[str]:
  """The game's candidates as the agent sees them: distinct, at most max C."""
  return actions_lib.distinct_actions(obs.valid_actions)[
      : max(settings.candidate_buckets)
  ]


def prepare(
    settings: config_lib.Settings,
    lm: lm_lib.LanguageModel,
    observations: Sequence[prompts.GameObservation],
    experiences: Sequence[str] | None = None,
    *,
    min_tokens: int = 0,
    keep_head: int = 32,
) -> DecisionInput:
  """Host: prompts, candidates and views of B games -> padded arrays.

  Args:
    settings: shapes and prompt settings.
    lm: the LM (tokeniser, chat template, pad id, reply suffix).
    observations: B games.
    experiences: B memory texts for the prompt (memory-prompt agent).
    min_tokens: the candidate token bucket T is at least this (the
      longest memory action that may join the candidates).
    keep_head: tokens kept from the start of a prompt cut in the middle
      (at least the reused prompt head, `prompt_prefix`).

  Returns:
    The padded `DecisionInput` (no neighbours).

  Raises:
    ValueError: on no games, or a game with no candidate.
  """
  if not observations:
    raise ValueError("prepare needs at least one game observation")
  max_t = max(settings.token_buckets)
  prompt_rows, cand_rows, cand_ids = [], [], []
  for i, obs in enumerate(observations):
    actions = shown_actions(settings, obs)
    if not actions:
      raise ValueError(
          f"game {i} has an empty valid-action list at step {obs.step}; an "
          "agent needs at least one candidate (use "
          "jitrl_jax.envs.base.with_fallback)"
      )
    prompt_rows.append(
        prompts.prompt_ids(
            obs._replace(valid_actions=actions),
            render_prompt=lm.render_prompt,
            encode=lm.encode,
            history_turns=settings.history_turns,
            list_actions=settings.list_actions,
            experiences=experiences[i] if experiences else "",
            max_observation_chars=settings.max_observation_chars,
            max_tokens=max(settings.prompt_buckets),
            keep_head=keep_head,
            system=prompts.system_prompt(settings.web),
        )
    )
    cand_rows.append(
        [
            (list(lm.encode(a)) + list(lm.candidate_suffix))[:max_t]
            for a in actions
        ]
    )
    cand_ids.append([actions_lib.action_id(a) for a in actions])
  l = scoring.bucket_size(
      max(len(p) for p in prompt_rows), settings.prompt_buckets
  )
  c = scoring.bucket_size(
      max(len(r) for r in cand_rows), settings.candidate_buckets
  )
  longest = max(len(t) for r in cand_rows for t in r)
  t = scoring.bucket_size(
      min(max(min_tokens, longest), max_t), settings.token_buckets
  )
  padded = [
      scoring.pad_candidates(
          r, num_candidates=c, num_tokens=t, pad_id=lm.pad_id
      )
      for r in cand_rows
  ]
  ids = np.full((len(observations), c), -1, np.int32)
  for i, row in enumerate(cand_ids):
    ids[i, : len(row)] = row
  lengths = np.stack([p[1] for p in padded])
  return DecisionInput(
      prompt_ids=np.stack(
          [
              scoring.pad_prompt(p, length=l, pad_id=lm.pad_id)[0]
              for p in prompt_rows
          ]
      ),
      prompt_lengths=np.asarray([len(p) for p in prompt_rows], np.int32),
      candidate_tokens=np.stack([p[0] for p in padded]),
      candidate_lengths=lengths,
      candidate_ids=ids,
      candidate_mask=lengths > 0,
      views=stacked_views(settings, observations),
      steps=np.asarray([o.step for o in observations], np.int32),
  )


# ---------------------------------------------------------------------------
# The packed layout (`Settings.scoring_layout == "packed"`).


def prompt_prefix(
    lm: lm_lib.LanguageModel, system: str = prompts.SYSTEM_PROMPT
) -> list[int]:
  """The prompt head every step's prompt starts with: the tokens of the
  rendered system turn up to where the user text begins (encoded once per
  run and reused, `LanguageModel.encode_prefix`).

  Found as the longest common start of two prompts that differ only in the
  user text, less one token (a merge across the boundary could differ); a
  prompt that does not start with it is scored without reuse.
  """
  a = lm.encode(lm.render_prompt(system, "Now: a"))
  b = lm.encode(lm.render_prompt(system, "Goal: b"))
  n = 0
  while n < min(len(a), len(b)) and a[n] == b[n]:
    n += 1
  return list(a[: max(n - 1, 0)])


def strip_prefix(
    inputs: DecisionInput, prefix_ids: Sequence[int], pad_id: int
) -> DecisionInput | None:
  """The prompts after the shared head `prefix_ids` (None when a row does
  not start with it, or nothing would remain)."""
  p = len(prefix_ids)
  ids = np.asarray(inputs.prompt_ids)
  lengths = np.asarray(inputs.prompt_lengths)
  if p == 0 or np.any(lengths <= p):
    return None
  if not np.all(ids[:, :p] == np.asarray(prefix_ids, ids.dtype)[None]):
    return None
  rest = np.full_like(ids, pad_id)
  rest[:, : ids.shape[1] - p] = ids[:, p:]
  return inputs._replace(prompt_ids=rest, prompt_lengths=lengths - p)


def packed_layout(
    inputs: DecisionInput, *, extra_tokens: int, pad_id: int
) -> tuple[DecisionInput, tuple[int, int]]:
  """The packed layout's static (N, K) for B games, and the inputs with the
  prompt columns cut or padded to N (so that N, K, C and T alone key the
  compilation).

  Args:
    inputs: the prepared inputs (prompt after any stripped head).
    extra_tokens: room for candidates that join on the device (memory
      actions: slots x the longest one's tokens).
    pad_id: padding id.

  Returns:
    (inputs, (N, K)).
  """
  lengths = np.asarray(inputs.prompt_lengths)
  cand = np.asarray(inputs.candidate_lengths) * np.asarray(
      inputs.candidate_mask
  )
  sizes = [
      packing.packed_layout(
          int(lengths[i]), int(cand[i].sum()), extra_tokens=extra_tokens
      )
      for i in range(lengths.shape[0])
  ]
  n = max(x[0] for x in sizes)
  k = max(x[1] for x in sizes)
  ids = np.asarray(inputs.prompt_ids)
  out = np.full((ids.shape[0], n), pad_id, ids.dtype)
  w = min(n, ids.shape[1])
  out[:, :w] = ids[:, :w]
  return inputs._replace(prompt_ids=out), (n, k)
