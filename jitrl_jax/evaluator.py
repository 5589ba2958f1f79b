"""The reflective evaluator: an LLM scores every step of a finished episode.

JitRL (arXiv 2601.18510; docs/method.md section 6) rewards steps with a reflective
evaluator: after an episode, a prompt shows the LM the whole trajectory (per
step: an observation snippet, the action and the environment's reward) and
whether the episode succeeded, and asks for a score r_t in [-3, 3] for every
step, judged on usefulness and certainty. The authors' text-game code uses
[-10, 10] (`REFERENCE_SCALE`).

This module builds the prompt, calls a `generate_text_fn(messages) -> str`
that the caller supplies (the agent passes its LM; nothing here imports a
model), and parses the answer robustly:

* the first JSON array or object in the text is used, inside a code fence
  when there is one; trailing commas and single quotes are tolerated;
* accepted forms: `[1, -2, 0]`, `{"scores": [...]}`,
  `[{"step": 1, "score": 2}, ...]`, `{"1": 2, "2": -1}`; numbers may be
  strings ("2"); step numbers count from 1 as in the prompt, or from 0 when
  the answer uses a step 0;
* out-of-range scores are clipped to [low, high] (`ParseResult.num_clipped`);
* a step without a score is filled with `fill_value` (0, neutral) and
  flagged in `ParseResult.missing`; when more than `max_missing_fraction` of
  the steps are missing, the answer counts as malformed;
* no JSON, a truncated array or no usable score: `scores` is None and
  `error` says why.

Reward sources: "env" (the game's score changes; the LM is not called),
"evaluator" (the evaluator's scores) and "mixed" (the evaluator's score where
it gave one, the env reward elsewhere). A malformed answer, or an exception
from `generate_text_fn`, never loses the episode: the env rewards stand in,
and a warning is logged.

Dimension letters: T steps of the episode.
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any, Callable, Iterator, NamedTuple, Sequence

from absl import logging
import numpy as np

PAPER_SCALE = (-3.0, 3.0)
REFERENCE_SCALE = (-10.0, 10.0)
REWARD_SOURCES = ("env", "evaluator", "mixed")

Messages = list[dict[str, str]]  # chat messages: {"role": ..., "content": ...}
GenerateTextFn = Callable[[Messages], str]

_SCORE_CONTAINER_KEYS = (
    "scores",
    "step_scores",
    "rewards",
    "ratings",
    "evaluations",
    "steps",
)
_STEP_KEYS = ("step", "index", "step_index", "t", "turn", "id")
_VALUE_KEYS = ("score", "reward", "value", "rating")
_FENCE_RE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA_RE = re.compile(r",(\s*[\]}])")
_STEP_NUMBER_RE = re.compile(r"^\D*?(-?\d+)\s*$")


class TrajectoryStep(NamedTuple):
  """One step of an episode, as the evaluator sees it."""

  observation: str  # what the agent saw before acting
  action: str  # the command it sent
  reward: float  # the environment's reward for it


class ParseResult(NamedTuple):
  """The evaluator's answer, parsed."""

  scores: np.ndarray | None  # [T] float32 in [low, high]; None: malformed
  error: str | None  # why `scores` is None
  missing: np.ndarray | None  # [T] bool, steps the answer did not score
  num_clipped: int  # scores moved into [low, high]
  notes: tuple[str, ...]  # what was repaired (clipping, extra scores, ...)


class EvaluationResult(NamedTuple):
  """The rewards of an episode and how they were obtained."""

  rewards: np.ndarray  # [T] float32, the rewards to learn from
  source: str  # the reward source asked for: env, evaluator or mixed
  used_fallback: bool  # the env rewards stood in for a malformed answer
  parse: ParseResult | None  # None when the evaluator was not called
  messages: Messages | None  # the prompt, None when not called
  answer: str | None  # the LM's text, None when not called or it raised


def _format_number(x: float) -> str:
  return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _snippet(text: str, max_chars: int) -> str:
  text = " ".join(text.split())
  if len(text) <= max_chars:
    return text
  return text[: max(max_chars - 3, 0)].rstrip() + "..."


def build_prompt(
    trajectory: Sequence[TrajectoryStep],
    success: bool,
    *,
    task: str = "",
    final_observation: str = "",
    scale: tuple[float, float] = PAPER_SCALE,
    max_observation_chars: int = 300,
) -> Messages:
  """The evaluator's chat prompt for one episode.

  Args:
    trajectory: the T steps (observation before the action, action, reward).
    success: whether the episode reached its goal.
    task: the task text, if any.
    final_observation: what the last action produced, if wanted.
    scale: (low, high) of the scores asked for.
    max_observation_chars: each observation is cut to this many characters.

  Returns:
    [system message, user message].
  """
  low, high = (_format_number(x) for x in scale)
  lines = []
  if task:
    lines.append(f"Task: {_snippet(task, 4 * max_observation_chars)}")
  outcome = "succeeded" if success else "did not succeed"
  lines.append(f"The episode {outcome}. It had {len(trajectory)} steps.")
  lines.append("")
  for t, step in enumerate(trajectory, start=1):
    step = TrajectoryStep(*step)
    lines.append(f"Step {t}")
    lines.append(
        f"  observation: {_snippet(step.observation, max_observation_chars)}"
    )
    lines.append(f"  action: {' '.join(step.action.split())}")
    lines.append(f"  reward: {_format_number(float(step.reward))}")
  if final_observation:
    lines.append(
        "Final observation: "
        + _snippet(final_observation, max_observation_chars)
    )
  lines.append("")
  lines.append(
      f"Score every step from {low} to {high}: how useful its action was for "
      "reaching the goal, weighted by how certain you are. "
      f"{high}: clearly useful; 0: neutral or unsure; {low}: clearly harmful "
      "or wasted."
  )
  lines.append(
      f"Answer with only a JSON list of {len(trajectory)} numbers, one per "
      "step in order, for example [1, 0, -2]."
  )
  system = (
      "You evaluate the steps of an agent that plays a text game, after the "
      "episode is over. You answer with JSON only."
  )
  return [
      {"role": "system", "content": system},
      {"role": "user", "content": "\n".join(lines)},
  ]


# ---------------------------------------------------------------------------
# Parsing.


def _closing_index(text: str, start: int) -> int | None:
  """Index of the bracket closing text[start] ('[' or '{'), or None."""
  pairs = {"[": "]", "{": "}"}
  stack = []
  quote = None
  escaped = False
  for i in range(start, len(text)):
    c = text[i]
    if quote is not None:
      if escaped:
        escaped = False
      elif c == "\\":
        escaped = True
      elif c == quote:
        quote = None
    elif c in "\"'":
      quote = c
    elif c in pairs:
      stack.append(pairs[c])
    elif c in "]}":
      if not stack or stack.pop() != c:
        return None
      if not stack:
        return i
  return None


def _decode(region: str) -> Any:
  """json.loads, then with trailing commas removed, then Python literals."""
  try:
    return json.loads(region)
  except ValueError:
    pass
  cleaned = _TRAILING_COMMA_RE.sub(r"\1", region)
  try:
    return json.loads(cleaned)
  except ValueError:
    pass
  try:
    return ast.literal_eval(cleaned)
  except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
    return None


def _as_number(value: Any) -> float | None:
  if isinstance(value, bool):
    return None
  if isinstance(value, str):
    try:
      value = float(value.strip())
    except ValueError:
      return None
  if isinstance(value, (int, float)) and math.isfinite(value):
    return float(value)
  return None


def _as_step(value: Any) -> int | None:
  if isinstance(value, bool):
    return None
  if isinstance(value, int):
    return value
  if isinstance(value, float) and value.is_integer():
    return int(value)
  if isinstance(value, str):
    match = _STEP_NUMBER_RE.match(value.strip())
    return int(match.group(1)) if match else None
  return None


def _get(d: dict[Any, Any], keys: Sequence[str]) -> tuple[bool, Any]:
  lowered = {str(k).lower(): v for k, v in d.items()}
  for key in keys:
    if key in lowered:
      return True, lowered[key]
  return False, None


def _interpret(obj: Any) -> tuple[str, list[Any]] | None:
  """A decoded answer as ("position", [value]) or ("step", [(step, value)])."""
  if isinstance(obj, dict):
    found, inner = _get(obj, _SCORE_CONTAINER_KEYS)
    if found and isinstance(inner, (list, dict)):
      return _interpret(inner)
    has_value, _ = _get(obj, _VALUE_KEYS)
    if has_value:  # a single {"step": i, "score": s}
      return _interpret([obj])
    steps = [_as_step(k) for k in obj]
    if obj and all(s is not None for s in steps):
      return "step", list(zip(steps, obj.values()))
    return None
  if isinstance(obj, list):
    if obj and all(isinstance(x, dict) for x in obj):
      pairs = []
      for x in obj:
        has_step, step = _get(x, _STEP_KEYS)
        _, value = _get(x, _VALUE_KEYS)
        pairs.append((_as_step(step) if has_step else None, value))
      if all(s is not None for s, _ in pairs):
        return "step", pairs
      return "position", [v for _, v in pairs]
    return "position", list(obj)
  return None


def _candidates(text: str) -> Iterator[tuple[str, Any]]:
  """Yields ("ok", decoded) per balanced JSON region, or ("truncated", None)."""
  regions = [m.group(1) for m in _FENCE_RE.finditer(text)] + [text]
  for region in regions:
    for start, c in enumerate(region):
      if c not in "[{":
        continue
      end = _closing_index(region, start)
      if end is None:
        yield "truncated", None
        break  # everything after an unclosed bracket lies inside it
      decoded = _decode(region[start : end + 1])
      if decoded is not None:
        yield "ok", decoded


def parse_step_scores(
    text: str | None,
    num_steps: int,
    *,
    low: float = PAPER_SCALE[0],
    high: float = PAPER_SCALE[1],
    fill_value: float = 0.0,
    max_missing_fraction: float = 0.5,
) -> ParseResult:
  """Parses the evaluator's per-step scores (see the module docstring).

  Args:
    text: the LM's answer.
    num_steps: T, the number of steps in the episode.
    low: the lowest score; lower ones are clipped.
    high: the highest score; higher ones are clipped.
    fill_value: the score of a step the answer leaves out.
    max_missing_fraction: above this fraction of missing steps the answer is
      malformed.

  Returns:
    ParseResult: `scores` [T] float32 and `missing` [T] bool, or `scores`
    None with `error` set.
  """
  if num_steps == 0:
    return ParseResult(
        np.zeros([0], np.float32), None, np.zeros([0], bool), 0, ()
    )
  if not isinstance(text, str) or not text.strip():
    return ParseResult(None, "empty answer", None, 0, ())
  truncated = False
  for status, decoded in _candidates(text):
    if status == "truncated":
      truncated = True
      continue
    form = _interpret(decoded)
    if form is None:
      continue
    kind, items = form
    if kind == "position":
      pairs = list(enumerate(items))
    else:
      base = 0 if any(s == 0 for s, _ in items) else 1
      pairs = [(s - base, v) for s, v in items]
    scores = np.full([num_steps], np.nan, np.float64)
    notes = []
    dropped = 0
    for t, value in pairs:
      number = _as_number(value)
      if not 0 <= t < num_steps:
        dropped += 1
      elif number is not None and np.isnan(scores[t]):
        scores[t] = number
    if dropped:
      notes.append(f"{dropped} scores beyond the {num_steps} steps dropped")
    missing = np.isnan(scores)
    if missing.all():
      continue
    if missing.mean() > max_missing_fraction:
      return ParseResult(
          None,
          f"only {int((~missing).sum())} of {num_steps} steps scored",
          missing,
          0,
          tuple(notes),
      )
    if missing.any():
      notes.append(
          f"{int(missing.sum())} missing steps filled with {fill_value}"
      )
    present = scores[~missing]
    num_clipped = int(((present < low) | (present > high)).sum())
    if num_clipped:
      notes.append(f"{num_clipped} scores clipped to [{low}, {high}]")
    scores = np.where(missing, fill_value, np.clip(scores, low, high))
    return ParseResult(
        scores.astype(np.float32), None, missing, num_clipped, tuple(notes)
    )
  if truncated:
    error = "unterminated JSON (the answer looks truncated)"
  else:
    error = "no JSON list or object of step scores in the answer"
  return ParseResult(None, error, None, 0, ())


# ---------------------------------------------------------------------------
# Rewards.


def select_rewards(
    env_rewards: np.ndarray, parse: ParseResult | None, source: str
) -> tuple[np.ndarray, bool]:
  """The rewards of an episode from the chosen source.

  Args:
    env_rewards: [T] the environment's step rewards.
    parse: the parsed evaluator answer (None: no answer).
    source: "env", "evaluator" or "mixed".

  Returns:
    (rewards [T] float32, used_fallback): `used_fallback` is True when the
    source wanted the evaluator and its answer was missing or malformed, so
    the env rewards were used.
  """
  if source not in REWARD_SOURCES:
    raise ValueError(f"reward source {source!r} not in {REWARD_SOURCES}")
  env_rewards = np.asarray(env_rewards, np.float32)
  if source == "env":
    return env_rewards, False
  if parse is None or parse.scores is None:
    return env_rewards, True
  if source == "evaluator":
    return parse.scores.astype(np.float32), False
  return (
      np.where(parse.missing, env_rewards, parse.scores).astype(np.float32),
      False,
  )


def evaluate_episode(
    generate_text_fn: GenerateTextFn,
    trajectory: Sequence[TrajectoryStep],
    success: bool,
    *,
    reward_source: str = "evaluator",
    scale: tuple[float, float] = PAPER_SCALE,
    task: str = "",
    final_observation: str = "",
    max_observation_chars: int = 300,
    fill_value: float = 0.0,
    max_missing_fraction: float = 0.5,
) -> EvaluationResult:
  """Rewards for every step of a finished episode.

  Args:
    generate_text_fn: messages -> the LM's answer text.
    trajectory: the T steps; tuples (observation, action, reward) will do.
    success: whether the episode reached its goal.
    reward_source: "env", "evaluator" or "mixed" (module docstring).
    scale: (low, high), `PAPER_SCALE` [-3, 3] or `REFERENCE_SCALE` [-10, 10].
    task: the task text, if any.
    final_observation: what the last action produced, if wanted.
    max_observation_chars: each observation is cut to this many characters.
    fill_value: see `parse_step_scores`.
    max_missing_fraction: see `parse_step_scores`.

  Returns:
    EvaluationResult with rewards [T] float32. Never raises for a bad answer
    or a failing `generate_text_fn`: the env rewards are used instead.
  """
  if reward_source not in REWARD_SOURCES:
    raise ValueError(f"reward source {reward_source!r} not in {REWARD_SOURCES}")
  trajectory = [TrajectoryStep(*step) for step in trajectory]
  env_rewards = np.array([s.reward for s in trajectory], np.float32)
  if reward_source == "env" or not trajectory:
    return EvaluationResult(env_rewards, reward_source, False, None, None, None)
  messages = build_prompt(
      trajectory,
      success,
      task=task,
      final_observation=final_observation,
      scale=scale,
      max_observation_chars=max_observation_chars,
  )
  answer = None
  try:
    answer = generate_text_fn(messages)
    parse = parse_step_scores(
        answer,
        len(trajectory),
        low=scale[0],
        high=scale[1],
        fill_value=fill_value,
        max_missing_fraction=max_missing_fraction,
    )
  except Exception as e:  # pylint: disable=broad-exception-caught
    parse = ParseResult(None, f"generate_text_fn raised {e!r}", None, 0, ())
  rewards, used_fallback = select_rewards(env_rewards, parse, reward_source)
  if used_fallback:
    logging.warning(
        "Reflective evaluator answer unusable (%s); using env rewards for the "
        "%d steps. Answer: %.200r",
        parse.error,
        len(trajectory),
        answer,
    )
  elif parse.notes:
    logging.info(
        "Reflective evaluator answer repaired: %s", "; ".join(parse.notes)
    )
  return EvaluationResult(
      rewards, reward_source, used_fallback, parse, messages, answer
  )
