"""Prompt text: what the LM reads before it writes (or scores) a command.

The prompt is the chat template's system and user turns, ending where the
reply (the action text) begins. The user turn holds the goal, the last few
moves, the memory-prompt agent's experiences, the latest observation and,
optionally, the candidate commands. `prompt_ids` fits it into the largest
prompt bucket: older moves go first, then the middle of the text.
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

SYSTEM_PROMPT = (
    "You are playing a text adventure game. Read what the game says and "
    "reply with exactly one command that makes progress toward the goal."
)
# Web tasks (`Settings.web`): the page is a listing of its elements and the
# commands are the grammar of `jitrl_jax.envs.miniwob_actions`.
WEB_SYSTEM_PROMPT = (
    "You are using a web page. Read the goal and the page's elements and "
    "reply with exactly one command that makes progress toward the goal."
)


def system_prompt(web: bool) -> str:
  """The system turn: the text-game one, or the web one (`Settings.web`)."""
  return WEB_SYSTEM_PROMPT if web else SYSTEM_PROMPT


# The generating agents' question and the start of their reply. Measured on
# SmolLM2-135M (README, "The LM writes the command"): asked only "What is
# your next command?", it describes the room ("You are in the laundry room.
# In one part of the..."); with the reply opened by the transcript's "> "
# prompt it writes a command, often as a list item ("1. Pick up the dirty
# teal dress"). Examples of commands in the question were copied whatever
# the room ("open the fridge" in a laundry room), so there are none.
WRITE_QUESTION = (
    "What is your next command? Answer with one short command only."
)
REPLY_PREFIX = "> "


class GameObservation(NamedTuple):
  """What the agent reads from one game before a decision (host side)."""

  observation: str  # the latest game text
  current: str  # current view text (look + observation)
  history: str  # history view text (inventory, path, scoring actions)
  task: str  # goal text or ""
  valid_actions: Sequence[str]  # the environment's candidates
  recent: Sequence[tuple[str, str]]  # last (action, observation) pairs
  step: int  # step within the episode


def format_experiences(
    texts: Mapping[int, str], action_ids, returns, mask, *, max_lines: int = 5
) -> str:
  """Memory-prompt text: per distinct neighbour action, mean return and count.

  Args:
    texts: action id -> string.
    action_ids: [K] neighbour action ids.
    returns: [K] neighbour returns.
    mask: [K] bool.
    max_lines: most lines written (best mean return first).

  Returns:
    Lines such as '- "take coin": average return 1.00 over 3 tries', or "".
  """
  stats: dict[int, list[float]] = {}
  for a, g, m in zip(
      np.asarray(action_ids), np.asarray(returns), np.asarray(mask)
  ):
    if m:
      stats.setdefault(int(a), []).append(float(g))
  ranked = sorted(stats.items(), key=lambda kv: -np.mean(kv[1]))[:max_lines]
  lines = []
  for a, gs in ranked:
    text = texts.get(a)
    if text is None:
      continue
    lines.append(
        f'- "{text}": average return {np.mean(gs):.2f} over '
        f"{len(gs)} tr{'y' if len(gs) == 1 else 'ies'}"
    )
  return "\n".join(lines)


def build_user_message(
    obs: GameObservation,
    *,
    history_turns: int,
    list_actions: bool,
    experiences: str = "",
    max_observation_chars: int = 1500,
    question: str = "What is your next command?",
) -> str:
  """The user turn of the prompt: goal, recent moves, memory, now, commands."""
  parts = []
  if obs.task:
    parts.append("Goal: " + " ".join(obs.task.split()))
  recent = list(obs.recent)[-history_turns:] if history_turns > 0 else []
  if recent:
    lines = ["Recent moves:"]
    for action, text in recent:
      text = " ".join(text.split())
      if len(text) > 200:
        text = text[:200] + "..."
      lines.append(f"> {action}\n{text}")
    parts.append("\n".join(lines))
  if experiences:
    parts.append(
        "What happened in similar situations in earlier games:\n" + experiences
    )
  observation = " ".join(obs.observation.split())[:max_observation_chars]
  parts.append("Now: " + observation)
  if list_actions:
    parts.append("Possible commands: " + ", ".join(obs.valid_actions))
  parts.append(question)
  return "\n\n".join(parts)


def prompt_ids(
    obs: GameObservation,
    *,
    render_prompt: Callable[[str, str], str],
    encode: Callable[[str], list[int]],
    history_turns: int,
    list_actions: bool,
    experiences: str,
    max_observation_chars: int,
    max_tokens: int,
    keep_head: int = 32,
    question: str = "What is your next command?",
    reply_prefix: str = "",
    system: str = SYSTEM_PROMPT,
) -> list[int]:
  """The token ids of one game's prompt, at most `max_tokens` of them.

  Fewer recent moves are shown until the prompt fits; if even none fits, the
  first `keep_head` tokens (the system turn) and the end (the question) are
  kept and the middle is cut.

  Args:
    obs: the game observation (its valid_actions as they are to be shown).
    render_prompt: (system, user) -> text (the LM's chat template).
    encode: text -> ids.
    history_turns: most recent moves shown.
    list_actions: write the commands into the prompt.
    experiences: the memory-prompt text ("" for none).
    max_observation_chars: the observation is cut to this length.
    max_tokens: the largest prompt bucket.
    keep_head: tokens kept from the start when the middle is cut.
    question: the user turn's last line.
    reply_prefix: text after the template's reply start (the reply begins
      with it; the LM continues it).
    system: the system turn (`system_prompt`).

  Returns:
    The ids, at most `max_tokens`.
  """
  ids: list[int] = []
  for turns in range(history_turns, -1, -1):
    text = (
        render_prompt(
            system,
            build_user_message(
                obs,
                history_turns=turns,
                list_actions=list_actions,
                experiences=experiences,
                max_observation_chars=max_observation_chars,
                question=question,
            ),
        )
        + reply_prefix
    )
    ids = encode(text)
    if len(ids) <= max_tokens:
      return ids
  return ids[:keep_head] + ids[len(ids) - (max_tokens - keep_head) :]
