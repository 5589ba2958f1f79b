"""TextWorld Express games behind the `TextEnv` protocol.

TextWorld Express (Jansen and Cote, 2022) simulates TextWorld-style games in
a JVM at about a millisecond a step, fully offline; the `textworld-express`
package bundles the jar and talks to it through py4j, so a Java runtime
(`java` on PATH, version 11 or later) is required. Each game reports its own
valid actions, the look and inventory texts and a task description, so no
probing is needed. Scores are fractions of the task: 1.0 is success.

Default game. `twc` (TextWorld Common Sense: put objects where they belong)
with one room, one object and no doors ("numLocations=1,numItemsToPutAway=1,
includeDoors=0"). The goal takes three steps (take the object, open its
container, put it in), each half of the reward arrives on its own step, there
are about six valid actions a step, and a uniformly random policy succeeds in
about 40% of 20-step episodes: rewards a small LM can reach within 20 steps,
with room to improve from memory. `SMALL_GAME_PARAMS` holds equally small
settings for the other games; pass `game_params=""` for the games' defaults.

Seeds: `reset(seed)` generates the game of that seed in `game_fold`;
`reset()` replays the last seed (0 at first), so that successive episodes
play the same game, as the JitRL protocol does.
"""

from __future__ import annotations

import importlib
import re
import shutil
from typing import Any, Iterable, Mapping

from jitrl_jax.envs import base

DEFAULT_GAME = "twc"
# Small settings per game, used when `game_params` is None.
SMALL_GAME_PARAMS = {
    "twc": "numLocations=1,numItemsToPutAway=1,includeDoors=0",
    "coin": "numLocations=4,includeDoors=0,numDistractorItems=0",
    "mapreader": (
        "numLocations=3,maxDistanceApart=1,includeDoors=0,"
        "maxDistractorItemsPerLocation=0"
    ),
    "cookingworld": (
        "numLocations=1,numIngredients=1,numDistractorItems=0,"
        "includeDoors=0,limitInventorySize=0"
    ),
}
# What to offer when the game lists no valid action.
FALLBACK_ACTIONS = ("look around", "inventory")
# TextWorld Express's own step limit is switched off; `step_limit` rules.
_NO_LIMIT = 2**31 - 1

_LOCATION_RE = re.compile(r"You are in the ([^.]+)\.")


def _import_twx():
  try:
    return importlib.import_module("textworld_express")
  except ImportError as e:
    raise base.EnvironmentUnavailableError(
        "TextWorld Express games need the `textworld-express` package: pip "
        "install 'jitrl-jax[games]' (or `make venv`)"
    ) from e


def format_game_params(params: str | Mapping[str, Any]) -> str:
  """{"numLocations": 1, "includeDoors": 0} -> "numLocations=1,includeDoors=0".

  Args:
    params: a dict, or a string already in that form (returned unchanged).

  Returns:
    The comma-separated "key=value" string TextWorld Express reads.
  """
  if isinstance(params, str):
    return params
  return ",".join(f"{k}={int(v)}" for k, v in params.items())


def location_of(look: str) -> str:
  """The room named by a look text ("You are in the kitchen." -> "kitchen")."""
  match = _LOCATION_RE.search(look)
  return match.group(1).strip() if match else ""


class TextWorldExpressEnv:
  """A TextWorld Express game as a `TextEnv`.

  Attributes:
    name: "twx:<game>".
    game: the game name.
    game_params: the generation parameters, "key=value,..." ("" = defaults).
  """

  def __init__(
      self,
      game: str = DEFAULT_GAME,
      *,
      game_params: str | Mapping[str, Any] | None = None,
      seed: int = 0,
      game_fold: str = "train",
      step_limit: int | None = None,
      fallback_actions: Iterable[str] = FALLBACK_ACTIONS,
  ):
    """Starts the JVM and loads a game (not yet reset).

    Args:
      game: a TextWorld Express game, e.g. "twc", "coin", "cookingworld".
      game_params: generation parameters, a "k=v,..." string or a dict; None
        uses `SMALL_GAME_PARAMS.get(game, "")`.
      seed: the seed of the first `reset()`.
      game_fold: "train", "dev" or "test" (the games' object splits).
      step_limit: the episode ends (info["truncated"]) after this many
        steps; None: only the game ends it.
      fallback_actions: valid actions when the game lists none.

    Raises:
      UnknownGameError: not a TextWorld Express game.
      ValueError: parameters the game does not know.
      EnvironmentUnavailableError: the package or Java is missing.
    """
    twx = _import_twx()
    games = tuple(twx.GAME_NAMES)
    if game not in games:
      raise base.UnknownGameError(
          f"{game!r} is not a TextWorld Express game; games: "
          + ", ".join(games)
      )
    if shutil.which("java") is None:
      raise base.EnvironmentUnavailableError(
          "TextWorld Express runs in a Java VM, and `java` is not on PATH: "
          "install a Java runtime, version 11 or later (e.g. apt-get install "
          "default-jre-headless)"
      )
    if game_params is None:
      game_params = SMALL_GAME_PARAMS.get(game, "")
    self.game = game
    self.game_params = format_game_params(game_params)
    self.name = "twx:" + game
    self._seed = seed
    self._fold = game_fold
    self._step_limit = step_limit
    self._fallback = tuple(fallback_actions)
    try:
      self._env = twx.TextWorldExpressEnv(envStepLimit=_NO_LIMIT)
    except Exception as e:  # py4j raises plain Exceptions on launch failure.
      raise base.EnvironmentUnavailableError(
          f"could not start TextWorld Express's Java VM: {e}"
      ) from e
    try:
      self._env.load(game, self.game_params)
    except ValueError as e:
      self.close()
      raise ValueError(
          f"TextWorld Express rejected {game!r} with game_params "
          f"{self.game_params!r}: {e}"
      ) from e
    self._started = False
    self._done = False
    self._moves = 0
    self._infos: dict[str, Any] = {}
    self._history = base.start_history()

  # -- TextEnv --------------------------------------------------------------

  def reset(self, seed: int | None = None) -> base.StepResult:
    if seed is not None:
      self._seed = seed
    observation, infos = self._env.reset(
        seed=self._seed, gameFold=self._fold, generateGoldPath=False
    )
    self._started = True
    self._done = False
    self._moves = 0
    self._infos = infos
    self._history = base.start_history(location_of(infos["look"]))
    return base.StepResult(
        observation=observation,
        reward=0.0,
        score=float(infos["score"]),
        done=False,
        info=self._info(truncated=False),
    )

  def step(self, action: str) -> base.StepResult:
    base.check_can_step(self.name, started=self._started, done=self._done)
    observation, reward, game_done, infos = self._env.step(action)
    self._moves += 1
    self._infos = infos
    self._done, truncated = base.episode_end(
        game_done, self._moves, self._step_limit
    )
    self._history = base.record_step(
        self._history,
        action=action,
        reward=reward,
        location=location_of(infos["look"]),
    )
    return base.StepResult(
        observation=observation,
        reward=float(reward),
        score=float(infos["score"]),
        done=self._done,
        info=self._info(truncated=truncated),
    )

  def valid_actions(self) -> list[str]:
    """The game's valid actions, sorted (its own order varies per call)."""
    if self._done or not self._started:
      return list(self._fallback)
    return base.with_fallback(self._infos["validActions"], self._fallback)

  def view_texts(self) -> base.ViewTexts:
    infos = self._infos
    return base.ViewTexts(
        current=base.current_text(
            infos.get("look", ""), infos.get("observation", "")
        ),
        history=base.history_text(self._history, infos.get("inventory", "")),
        task=base.clean_text(infos.get("taskDescription", "")),
    )

  @property
  def score(self) -> float:
    return float(self._infos.get("score", 0.0))

  @property
  def max_score(self) -> float:
    return 1.0

  @property
  def done(self) -> bool:
    return self._done

  def close(self) -> None:
    env = self.__dict__.pop("_env", None)
    if env is not None:
      env.close()

  def _info(self, *, truncated: bool) -> dict[str, Any]:
    infos = self._infos
    return {
        "moves": self._moves,
        "won": bool(infos["tasksuccess"]),
        "lost": bool(infos["taskfailure"]),
        "truncated": truncated,
        "location": location_of(infos["look"]),
    }
