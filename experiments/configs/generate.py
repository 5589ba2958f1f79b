"""The LM writes its commands: `static-generate` against `jitrl-generate`.

  python -m experiments.run_text_game --config=experiments/configs/generate.py
  python -m experiments.run_text_game \
      --config=experiments/configs/generate.py:twx --config.seed=1

`detective` (default; any Jericho game name works): the Jericho protocol of
`text_game.py`, 10 episodes x 30 steps. `twx`: the demo's TextWorld Express
game (`demo.py`), 10 episodes x 8 steps, 2 games an episode.

Neither agent sees a list of commands (the runner does not even ask the game
for one); each writes its command after the prompt's "> " (docs/method.md
section 13). `static-generate` samples it from the LM; `jitrl-generate`
samples it exactly from pi'(y) ~ pi_theta(y) exp(beta A(s, y)), A = Q - V for
the commands its neighbours wrote, A_0 = 0 for every other string.

Temperature 0.6: the base policy pi_theta is the LM at temperature 0.6,
token by token (the tilt is exact for it). Measured on both games' first
state: at temperature 1, SmolLM2-135M writes a command in about half of its
draws and otherwise text such as "Abayohbala: Redakiment." or Chinese
characters; at 0.6 nearly every draw is a command about the scene ("1. Pick
up the dirty teal dress", "1. Open the laundry basket"); greedy writes the
same line every time, which leaves nothing to learn from.
"""

import ml_collections

from experiments.configs import demo
from experiments.configs import text_game

AGENTS = ("static-generate", "jitrl-generate")


def get_config(game: str = "detective") -> ml_collections.ConfigDict:
  """Config for `jericho:<game>` (default detective), or `twx` (the demo)."""
  if game == "twx":
    c = demo.get_config()
    c.name = "generate-twx"
  else:
    c = text_game.get_config(game)
    c.name = f"generate-{game}"
    c.episodes = 10
    c.steps = 30
  c.agents = AGENTS
  c.agent.temperature = 0.6
  c.agent.max_command_tokens = 12
  return c
