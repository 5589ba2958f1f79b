"""Text environments: one protocol, state views by rule, and a registry.

A JitRL agent sees a text game through `TextEnv`: `reset(seed)` and
`step(action)` return a `StepResult`, `valid_actions()` lists the candidate
commands, and `view_texts()` describes the state as the texts of
docs/method.md section 2:

  current = look text + latest observation
  history = inventory + path of locations visited + score-raising actions
  task    = the goal text, or "" where the game has none

The history is built by rule, with no LLM call: an `EpisodeHistory` tuple is
started at reset and advanced by `record_step` after every step (state in,
state out), then rendered by `history_text`. Both adapters (Jericho and
TextWorld Express) share these functions, so the views of the two families
read alike.

`make_env("jericho:zork1")` or `make_env("twx:coin")` builds an adapter by name;
the adapters' heavy dependencies (jericho, spaCy, a JVM) are imported only
then. Other families join with `register_env`.

Valid actions are never an empty list: where a game offers none (a parser
game whose action finder found nothing, or a finished episode), the adapter
returns its fallback list (`FALLBACK_ACTIONS` for parser games), so an agent
always has candidates to score.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Callable, Iterable, NamedTuple, Protocol
from typing import runtime_checkable

# Commands every parser game understands; the answer to an empty valid-action
# list (see `with_fallback`).
FALLBACK_ACTIONS = (
    "look",
    "inventory",
    "north",
    "south",
    "east",
    "west",
    "up",
    "down",
)


class EnvironmentUnavailableError(RuntimeError):
  """An environment cannot run here: a package, Java, ROM or model is absent."""


class UnknownGameError(ValueError):
  """The name denotes no game this library can run, or an unsupported ROM."""


class StepResult(NamedTuple):
  """What the environment answers to `reset` or `step`.

  `info` holds at least: `moves` (int, steps taken in the episode), `won`
  and `lost` (bool, the game's own end conditions), `truncated` (bool, the
  step limit ended the episode) and `location` (str, "" where unknown).
  """

  observation: str  # the game's text answer
  reward: float  # score change caused by this step (0.0 at reset)
  score: float  # the game's score after the step
  done: bool  # the episode is over (won, lost or step limit reached)
  info: dict[str, Any]


class ViewTexts(NamedTuple):
  """The texts of a state's views (docs/method.md section 2), before tokenisation."""

  current: str  # look text + latest observation
  history: str  # inventory + location path + score-raising actions
  task: str  # the goal text, or ""


@runtime_checkable
class TextEnv(Protocol):
  """A text game as the JitRL agent sees it (host side, plain Python)."""

  name: str  # e.g. "jericho:zork1", "twx:twc"

  def reset(self, seed: int | None = None) -> StepResult:
    """Starts an episode; `seed=None` reuses the last seed."""
    ...

  def step(self, action: str) -> StepResult:
    """Sends one command; raises RuntimeError once the episode is done."""
    ...

  def valid_actions(self) -> list[str]:
    """Candidate commands in the current state; never empty (fallback)."""
    ...

  def view_texts(self) -> ViewTexts:
    """The current, history and task texts of the current state."""
    ...

  @property
  def score(self) -> float:
    ...

  @property
  def max_score(self) -> float:
    ...

  @property
  def done(self) -> bool:
    ...

  def close(self) -> None:
    ...


# ---------------------------------------------------------------------------
# History by rule.


class EpisodeHistory(NamedTuple):
  """What the history view remembers of an episode (inventory comes later)."""

  locations: tuple[str, ...]  # path visited, without immediate repeats
  scoring_actions: tuple[str, ...]  # actions whose reward was > 0, in order


def clean_text(text: str) -> str:
  """Collapses every run of whitespace to one space and strips the ends."""
  return " ".join(text.split())


def start_history(location: str = "") -> EpisodeHistory:
  """The history at reset: the starting location (if known), nothing scored."""
  location = clean_text(location)
  return EpisodeHistory(
      locations=(location,) if location else (), scoring_actions=()
  )


def record_step(
    history: EpisodeHistory, *, action: str, reward: float, location: str
) -> EpisodeHistory:
  """Advances the history by one step.

  Args:
    history: the history before the step.
    action: the command sent.
    reward: the step's reward; the action is kept when reward > 0.
    location: the location after the step ("" when unknown: not recorded).
      Consecutive repeats are recorded once, so the path lists moves.

  Returns:
    The new history (the argument is unchanged).
  """
  location = clean_text(location)
  locations = history.locations
  if location and (not locations or locations[-1] != location):
    locations = locations + (location,)
  scoring_actions = history.scoring_actions
  if reward > 0:
    scoring_actions = scoring_actions + (clean_text(action),)
  return EpisodeHistory(locations=locations, scoring_actions=scoring_actions)


def history_text(history: EpisodeHistory, inventory: str) -> str:
  """Renders the history view.

  The path is joined with " -> " (spaces around the arrow), so that the
  reference's filter, which drops words with non-alphanumeric characters,
  keeps the location names.

  Args:
    history: the episode history.
    inventory: the game's inventory text now.

  Returns:
    Three lines: "inventory: ...", "path: a -> b", "scoring actions: x; y".
  """
  return "\n".join(
      (
          "inventory: " + (clean_text(inventory) or "unknown"),
          "path: " + (" -> ".join(history.locations) or "unknown"),
          "scoring actions: " + ("; ".join(history.scoring_actions) or "none"),
      )
  )


def current_text(look: str, observation: str) -> str:
  """The current view: the look text, then the latest observation."""
  look, observation = clean_text(look), clean_text(observation)
  if not look or look == observation:
    return observation
  if not observation:
    return look
  return look + "\n" + observation


def check_can_step(name: str, *, started: bool, done: bool) -> None:
  """Raises RuntimeError before the first reset or after the episode's end."""
  if not started:
    raise RuntimeError(f"{name}: call reset() before step()")
  if done:
    raise RuntimeError(f"{name}: the episode is over; call reset()")


def episode_end(
    game_done: bool, moves: int, step_limit: int | None
) -> tuple[bool, bool]:
  """(done, truncated) after a step: the game ended it, or the step limit did.

  Args:
    game_done: the game's own end (won or lost).
    moves: steps taken in the episode, this one included.
    step_limit: the most steps an episode may take; None: no limit.

  Returns:
    done, and truncated (True only when the limit, not the game, ended it).
  """
  truncated = not game_done and step_limit is not None and moves >= step_limit
  return bool(game_done) or truncated, truncated


def with_fallback(
    actions: Iterable[str], fallback: Iterable[str] = FALLBACK_ACTIONS
) -> list[str]:
  """Normalises a valid-action list: stripped, unique, sorted, never empty.

  Sorting makes the candidate order independent of the game engine's hash
  order (TextWorld Express lists its actions in a different order on every
  call), so a seeded run chooses the same way twice.

  Args:
    actions: the engine's valid actions (may be empty or hold "").
    fallback: what to return when no action is left.

  Returns:
    The sorted unique non-empty actions, or `list(fallback)` if there are none.
  """
  kept = sorted({a.strip() for a in actions if a and a.strip()})
  return kept if kept else list(fallback)


# ---------------------------------------------------------------------------
# Registry.

# prefix -> factory(game, **kwargs), or "module:attribute" imported on first
# use so that the games' dependencies load only when a game is made.
_FACTORIES: dict[str, Callable[..., TextEnv] | str] = {
    "jericho": "jitrl_jax.envs.jericho:JerichoEnv",
    "miniwob": "jitrl_jax.envs.miniwob:MiniWoBEnv",
    "twx": "jitrl_jax.envs.textworld_express:TextWorldExpressEnv",
}


def register_env(prefix: str, factory: Callable[..., TextEnv] | str) -> None:
  """Makes `make_env(prefix + ":" + game)` call `factory(game, **kwargs)`.

  Args:
    prefix: the family name before the colon, e.g. "synthetic".
    factory: a callable, or a "module:attribute" string imported on first use.
  """
  if not re.fullmatch(r"[a-z][a-z0-9_]*", prefix):
    raise ValueError(f"bad environment prefix {prefix!r}: use [a-z][a-z0-9_]*")
  _FACTORIES[prefix] = factory


def registered_prefixes() -> tuple[str, ...]:
  return tuple(sorted(_FACTORIES))


def make_env(name: str, **kwargs: Any) -> TextEnv:
  """Builds an environment by name.

  Args:
    name: "<family>:<game>", e.g. "jericho:zork1" or "twx:coin"; "twx" alone
      means the family's default game (where it has one).
    **kwargs: passed to the family's constructor (e.g. `rom_dir`, `seed`,
      `step_limit`, `game_params`).

  Returns:
    The environment, not yet reset.

  Raises:
    UnknownGameError: the family is not registered (or the game is unknown).
    EnvironmentUnavailableError: the family's dependencies are missing.
  """
  prefix, _, game = name.partition(":")
  if prefix not in _FACTORIES:
    raise UnknownGameError(
        f"unknown environment {name!r}: the name must start with one of "
        f"{', '.join(p + ':' for p in registered_prefixes())} "
        "(e.g. 'jericho:zork1', 'twx:coin')"
    )
  factory = _FACTORIES[prefix]
  if isinstance(factory, str):
    module_name, _, attribute = factory.partition(":")
    factory = getattr(importlib.import_module(module_name), attribute)
  return factory(game, **kwargs) if game else factory(**kwargs)
