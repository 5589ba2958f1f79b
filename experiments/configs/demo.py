"""`make demo`: JitRL against the static LM on a small TextWorld Express game.

  .venv/bin/python -m experiments.run_text_game --config=experiments/configs/demo.py

Game: TextWorld Express `twc` (put an object where it belongs) in one room
with one object and no doors, game seed 3: the dirty teal dress goes in the
laundry basket. Two steps score (take it: +0.5; put it in the right place:
+0.5 and the game is won; putting it anywhere else: -0.5), among 5 to 10
valid actions a step. Every episode replays the same game (game_seed fixed),
as in the paper's protocol; an episode is 2 games played side by side with
different sampling keys (one batched device call a step), and its score is
their mean.

Why this game. SmolLM2-135M's own policy here (measured, prompt as built by
the agent): at the start it says "inventory" with p = 0.59 and "take dirty
teal dress" with 0.40; holding the dress, "inventory" 0.83, "put ... in work
table" (wrong) 0.09, "put ... in laundry basket" (right) 0.05. So the static
LM usually earns the first half and rarely the second: a flat curve around
0.5. The winning command is within reach (a few nats below the LM's
favourite), so JitRL, which remembers that it paid, can learn it within a few
episodes. In the default twc seed (0) the right container must be opened
first and both needed commands sit 4.5 to 5 nats below "inventory"; with
env rewards neither agent gets there in 10 episodes (tried: beta 8, alpha 1
to 5, k 5 or 10, a step cost of 0.1, temperature 2).

LM: the embedded SmolLM2-135M-Instruct (Q4_1 GGUF), the same for both agents.

Rewards: `env` (the game's score changes). The reflective evaluator asks the
LM for a JSON list of step scores; SmolLM2-135M answers with text such as
"1. 1.1.1.1..." (no list: the run would fall back to env rewards and say so)
and costs a minute of generation per episode on a CPU. The evaluator stays
available (`--config.rewards.source=mixed`) for larger models.

beta = 8: the advantages are fractions of the 0.5 rewards, the LM's gaps
between commands a few nats; 8 x 0.5 = 4 nats lets one remembered success
outweigh the LM's preference for "inventory".

Cost: the LM pass dominates (about (192..256 prompt + (C + 2) x 8
candidate) tokens a game, ~2 s a decision on 2 CPU cores); static plays all
8 steps of most games, JitRL stops early once it wins.
"""

import ml_collections

from experiments.configs import text_game


def get_config() -> ml_collections.ConfigDict:
  c = text_game.get_config()
  c.name = "demo"
  c.mode = "compare"
  c.agents = ("static", "jitrl")
  c.game = "twx:twc"
  c.env = ml_collections.ConfigDict(
      {
          "game_params": "numLocations=1,numItemsToPutAway=1,includeDoors=0",
          "step_limit": None,
      }
  )
  c.episodes = 10
  c.steps = 8
  c.batch_size = 2
  c.seed = 0
  c.game_seed = 3
  c.rewards.source = "env"
  c.rewards.env_scale = 1.0
  c.agent.failure_penalty = 0.0
  c.agent.beta = 8.0
  c.agent.history_turns = 0
  c.agent.list_actions = True
  c.agent.prompt_buckets = (192, 256, 320)
  c.agent.candidate_buckets = (6, 10, 12, 16)
  c.agent.token_buckets = (8, 12)
  c.agent.memory_candidate_slots = 2
  c.agent.memory_capacity = 4096
  return c
