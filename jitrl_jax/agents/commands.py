"""Written text -> the command for the game, and the generating agents' logs.

Host side of `agents.generate`: what the LM wrote (token ids) becomes a line
of text, the memory's action, kept as written so that the tilt weighs the
very string the LM can write again; the game is sent that line without what
is not part of a command (`game_command`). Each decision's diagnostics
become one JSON-able step log per game (docs/method.md section 13).
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

import jax
import numpy as np

FALLBACK_COMMAND = "look"


def parse_command(text: str) -> tuple[str, bool]:
  """Generated text -> (the command for the game, whether it fell back).

  The first non-empty line with its spaces collapsed, as written; text with
  no letter or digit gives `FALLBACK_COMMAND`.
  """
  lines = (" ".join(line.split()) for line in text.splitlines())
  first = next((line for line in lines if line), "")
  if not any(c.isalnum() for c in first):
    return FALLBACK_COMMAND, True
  return first, False


_LIST_MARK = re.compile(r"^(?:\d+\s*[.):]|[-*>\u2022]+)\s*")
_QUOTES = "\"'`\u201c\u201d\u2018\u2019"


def _unquote(text: str) -> str:
  """`text` without one pair of quotes around all of it.

  Only a pair that encloses the whole text, with no quote inside, goes:
  a web action such as `"Submit" (button)` starts with a quote that is
  part of the command.
  """
  if (
      len(text) >= 2
      and text[0] in _QUOTES
      and text[-1] in _QUOTES
      and not any(c in _QUOTES for c in text[1:-1])
  ):
    return text[1:-1].strip()
  return text


def game_command(line: str) -> str:
  """The written line -> the command the game is sent.

  The line as written stays the memory's action (the tilt weighs the very
  string the LM writes again); the game gets it without what is not part
  of a command: a list mark ("1.", "-", ">"), a pair of quotes around all
  of it, a final "." or "!". Text left without a letter or digit gives
  `FALLBACK_COMMAND`.
  """
  text = " ".join(line.split())
  text = _unquote(_LIST_MARK.sub("", text).strip())
  text = _unquote(text.rstrip(".!").strip())
  return text if any(c.isalnum() for c in text) else FALLBACK_COMMAND


def finite(x) -> float | None:
  """A float for a JSON step log: the value, or None when not finite."""
  x = float(x)
  return x if math.isfinite(x) else None


def _memory_commands(out, i, action_texts) -> list[dict[str, Any]]:
  """The usable memory commands of game i with A, pi_theta and pi'."""
  rows = []
  for j in np.flatnonzero(out.command_valid[i]):
    rows.append(
        {
            "command": action_texts.get(int(out.command_ids[i, j]), "?"),
            "advantage": finite(out.advantages[i, j]),
            "pi_theta": finite(np.exp(out.command_log_pi_theta[i, j])),
            "pi": finite(np.exp(out.command_log_pi[i, j])),
        }
    )
  return rows


def choices(
    out,
    inputs,
    lm,
    action_texts: Mapping[int, str],
) -> list[tuple[str, bool, dict[str, Any], str]]:
  """Host: the decision -> (line as written, from_memory, step log, command
  for the game) per game.

  Args:
    out: the `generate.GenerateDecision` [B, ...].
    inputs: its `generate.GenerateInput` (prompt lengths).
    lm: the LM (its generator's detokeniser).
    action_texts: action id -> text, for the memory commands' log.
  """
  out = jax.device_get(out)
  result = []
  for i in range(out.tokens.shape[0]):
    n = int(out.lengths[i])
    truncated = bool(out.truncated[i])
    written = out.tokens[i, : n if truncated else max(n - 1, 0)].tolist()
    text = lm.generator.decode(written)
    command, fallback = parse_command(text)
    sent = game_command(command)
    j = int(out.command_index[i])
    a0 = float(out.baseline[i])
    adv = float(out.advantages[i, j]) if j >= 0 else a0
    diag = {
        "generated_text": text,
        "game_command": sent,
        "generated_tokens": n,
        "truncated": truncated,
        "fallback": fallback,
        "num_neighbours": int(out.num_neighbours[i]),
        "value": finite(out.value[i]),
        "q": finite(out.value[i] + adv) if j >= 0 else None,
        "advantage": finite(adv),
        "rule_advantage": finite(adv),
        "other_command_advantage": finite(a0),
        "weight": finite(out.weight[i]),
        "pi_theta": finite(np.exp(out.log_pi_theta[i])),
        "pi": finite(np.exp(out.log_pi[i])),
        "log_pi_theta": finite(out.log_pi_theta[i]),
        "log_pi": finite(out.log_pi[i]),
        "log_w_root": finite(out.log_partition[i]),
        "kl": finite(out.kl[i]),
        "memory_commands": _memory_commands(out, i, action_texts),
        "flipped": None,
        "nan_logits": bool(out.nan_logits[i]),
        "prompt_tokens": int(inputs.prompt_lengths[i]),
    }
    result.append((command, j >= 0 and not fallback, diag, sent))
  return result
