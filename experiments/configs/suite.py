"""The Jericho suite: static against jitrl on every game in the ROM folder.

  make suite                      # seed 0, all seven games, resumable
  python -m experiments.run_suite --config=experiments/configs/suite.py \
      --config.seed=1 --suite_dir=runs/suite-seed1

Each game is the text-game protocol of `text_game.py` (its agent settings,
rewards and buckets) cut to 10 episodes x 30 steps and the two agents the
comparison is about. The games run one after another, each in its own run
directory under the suite directory, so a killed suite resumes at the game
and episode it was in (`experiments/run_suite.py`).
"""

import ml_collections

from experiments.configs import text_game

# The seven games of ../shared/jericho-games, in the paper's order where it
# has them.
GAMES = (
    "zork1",
    "zork3",
    "detective",
    "library",
    "balances",
    "pentari",
    "temple",
)


def get_config() -> ml_collections.ConfigDict:
  """The suite config: the games and one text-game config's settings."""
  c = text_game.get_config("detective")
  c.name = "jericho-suite"
  c.games = GAMES
  c.agents = ("static", "jitrl")
  c.episodes = 10
  c.steps = 30
  return c
