"""Jericho protocol: the paper's text-game setting on a local LM.

  python -m experiments.run_text_game --config=experiments/configs/text_game.py
  python -m experiments.run_text_game \
      --config=experiments/configs/text_game.py:zork1 --config.episodes=10

The paper runs 50 episodes x 50 steps per game with every agent on the same
model (docs/method.md section 10). The defaults here are that protocol on SmolLM2-135M; on a CPU
a step of the four agents costs about a second, so shorten with
--config.episodes / --config.steps. Every episode replays the same game (the
Jericho games are deterministic given the seed), one game per episode
(batch_size 1, as in the paper; raise it to average several sampled
trajectories per episode).

Rewards: the game's score changes (`env`). The reflective evaluator
(`rewards.source=evaluator` or `mixed`) works with the same LM, but a 135M
model's step scores are mostly noise or unparseable (then the run falls back
to env rewards and says so in results.json), so env is the default; with a
large model `mixed` is the paper's setting.
"""

import ml_collections

from jitrl_jax import config as config_lib


def get_config(game: str = "detective") -> ml_collections.ConfigDict:
  """Config for `jericho:<game>` (default detective)."""
  c = ml_collections.ConfigDict()
  c.name = f"jericho-{game}"
  c.mode = "compare"
  c.agents = ("static", "jitrl", "jitrl-reference", "memory-prompt")
  c.game = f"jericho:{game}"
  c.env = ml_collections.ConfigDict({"step_limit": None})
  c.episodes = 50
  c.steps = 50
  c.batch_size = 1
  c.seed = 0
  c.game_seed = 0
  c.vary_game_seed = False
  c.runs_root = "runs"

  c.lm = ml_collections.ConfigDict()
  c.lm.kind = "gguf"
  c.lm.path = ""  # "": the embedded SmolLM2-135M-Instruct Q4_1 GGUF.

  c.rewards = ml_collections.ConfigDict()
  c.rewards.source = "env"
  c.rewards.env_scale = 0.1  # Jericho score steps are 5-10 points: ~[-3, 3].
  c.rewards.step_penalty = 0.0  # Cost per step, subtracted from env rewards.
  c.rewards.evaluator_low = -3.0
  c.rewards.evaluator_high = 3.0
  c.rewards.evaluator_max_new_tokens = 128

  # The agent: config.Settings and config.Hyper, the library's one set of
  # defaults (docs/method.md sections 2 to 9), with this protocol's choices.
  c.agent = ml_collections.ConfigDict(
      config_lib.as_dict(config_lib.Settings(), config_lib.Hyper())
  )
  c.agent.beta = 5.0
  # docs/method.md section 9: the reference rule gives a failed (lost)
  # episode's last step -10; on the env_scale above that is -1.
  c.agent.failure_penalty = -1.0
  # Shapes: the LM pass costs about (L + (C + X) T) tokens through 135M
  # parameters a game, so the buckets are kept tight; a longer prompt is cut
  # (oldest moves first, then the middle).
  c.agent.history_turns = 1
  c.agent.prompt_buckets = (384, 512)
  c.agent.candidate_buckets = (16, 32, 64)
  return c
