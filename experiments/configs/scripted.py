"""The demo on a scripted LM: seconds instead of minutes (tests, smoke runs).

  python -m experiments.run_text_game --config=experiments/configs/scripted.py

The scripted LM (`jitrl_jax.agents.scripted_language_model`) gives every
action string a fixed logit (`lm.preferences`, pairs of (action, logit);
`lm.default_logit` for the rest) and ignores the prompt. The default prefers
the two commands that never score in TextWorld Express ("look around",
"inventory") by one nat: a misleading prior that JitRL has to overcome.
"""

import ml_collections

from experiments.configs import demo


def get_config() -> ml_collections.ConfigDict:
  c = demo.get_config()
  c.name = "scripted"
  c.episodes = 6
  c.steps = 6
  c.batch_size = 4
  c.lm.kind = "scripted"
  c.lm.preferences = (("look around", 1.0), ("inventory", 1.0))
  c.lm.default_logit = 0.0
  c.agent.beta = 10.0
  c.agent.memory_capacity = 1024
  c.agent.prompt_buckets = (64,)
  c.agent.candidate_buckets = (16, 32, 64)
  c.agent.token_buckets = (4,)
  return c
