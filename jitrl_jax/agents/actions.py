"""Action identity: one id per command text, and the device table of them.

An action's memory id is the stable hash of its normalised text (lower case,
single spaces), so the same command means the same entry in every episode and
every run. `ActionTable` keeps the tokens of the actions in memory on the
device, so that the decision can add the neighbours' actions to the
candidates without a trip to the host.

Dimension letters: A table rows, T candidate tokens.
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jitrl_jax import token_sets


def normalise_action(action: str) -> str:
  """Lower case, single spaces: the text an action is stored under."""
  return " ".join(action.lower().split())


def action_id(action: str) -> int:
  """Stable int32 id of an action string (case and spacing ignored)."""
  return token_sets.stable_hash(normalise_action(action))


def distinct_actions(actions: Sequence[str]) -> list[str]:
  """The stripped, non-empty actions in order, each once."""
  return list(dict.fromkeys(a.strip() for a in actions if a and a.strip()))


class ActionTable(NamedTuple):
  """Device copy of the tokens of every action stored in memory."""

  action_ids: jax.Array  # [A] int32, -1 for an empty row
  tokens: jax.Array  # [A, T_max] int32
  lengths: jax.Array  # [A] int32


def empty_table(rows: int, max_tokens: int) -> ActionTable:
  """An `ActionTable` of `rows` empty rows of `max_tokens` tokens."""
  return ActionTable(
      action_ids=jnp.full((rows,), -1, jnp.int32),
      tokens=jnp.zeros((rows, max_tokens), jnp.int32),
      lengths=jnp.zeros((rows,), jnp.int32),
  )


def table_from_texts(
    texts: Mapping[int, str],
    encode: Callable[[str], list[int]],
    suffix: Sequence[int],
    *,
    rows: int,
    max_tokens: int,
) -> ActionTable:
  """The table of `texts` (action id -> text), most recent last.

  Args:
    texts: action id -> text, in insertion order (most recent last).
    encode: text -> token ids.
    suffix: ids appended to every action (the end of the reply).
    rows: A; when there are more actions, the most recent A are kept.
    max_tokens: T_max; longer actions are cut.

  Returns:
    The `ActionTable` on the device.
  """
  ids = np.full((rows,), -1, np.int32)
  toks = np.zeros((rows, max_tokens), np.int32)
  lens = np.zeros((rows,), np.int32)
  items = list(texts.items())[-rows:]
  for row, (aid, text) in enumerate(items):
    t = (list(encode(text)) + list(suffix))[:max_tokens]
    ids[row], lens[row] = aid, len(t)
    toks[row, : len(t)] = t
  return ActionTable(jnp.asarray(ids), jnp.asarray(toks), jnp.asarray(lens))
