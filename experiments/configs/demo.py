"""`make demo`: JitRL against the static LM on a small TextWorld Express game.

  .venv/bin/python -m experiments.run_text_game --config=experiments/configs/demo.py

Game: TextWorld Express `twc` (put an object where it belongs) in one room
with one object and no doors, the env helper's default small game: three
steps reach the goal (take the object, open its container, put it in), each
half of the score arrives on its own step, about six valid actions a step.
Every episode replays the same game (game_seed fixed), as in the paper's
protocol; an episode is a batch of games played side by side with different
sampling keys, and its score is their mean, so the curve is not one noisy
trajectory.

LM: the embedded SmolLM2-135M-Instruct (Q4_1 GGUF), the same for both agents.

Rewards: `env` (the game's score changes). The reflective evaluator needs a
model that can read a whole trajectory and answer with a JSON list of step
scores; SmolLM2-135M mostly cannot (answers are unparseable or constant), so
with `evaluator` the run would fall back to env rewards most of the time. The
game's score changes are exact and cheap, and the evaluator stays available
(`--config.rewards.source=mixed`).

beta: env rewards are 0.5 per scoring step, so advantages are a fraction of
one; z are summed token log-probabilities whose gaps between commands are a
few nats. beta = 8 lets a remembered advantage of ~0.5 outweigh a prior gap
of ~4 nats.
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
  c.episodes = 12
  c.steps = 12
  c.batch_size = 4
  c.seed = 0
  c.game_seed = 0
  c.rewards.source = "env"
  c.rewards.env_scale = 1.0
  c.rewards.reference_failure_penalty = 0.0
  c.agent.beta = 8.0
  c.agent.history_turns = 2
  c.agent.prompt_buckets = (256, 384, 512)
  c.agent.candidate_buckets = (16, 32)
  c.agent.token_buckets = (8, 16)
  c.agent.memory_capacity = 4096
  return c
