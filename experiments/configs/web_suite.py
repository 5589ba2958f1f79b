"""The MiniWoB++ suite: twelve web tasks in a real browser, one memory.

  make web-suite SEED=0            # the three seeds of the README: 0, 1, 2
  python -m experiments.run_web_suite --config=experiments/configs/web_suite.py \
      --config.seed=1 --suite_dir=runs/miniwob-suite-seed1

Every agent plays `episodes` episodes of every task, the tasks interleaved
(episode e of every task, then episode e + 1), with one memory across all of
them (`experiments/web_suite.py` says why). Episode e of a task is the page
instance of seed `1000 * seed + e` for every agent, so the agents meet the
same instances. The agents are the text-game agents with the web switch
(`Settings.web`: the web system prompt, and the reference rule's web
exploration), a third view for the task's utterance, and MiniWoB's rewards
as they are (in [-1, 1]; success is a reward > 0).

  --config=experiments/configs/web_suite.py:authors

keys states by the authors' web key instead (`jitrl_jax/envs/web_key.py`:
the normalised URL as a hard filter, 0.7 x the action signature's Jaccard
+ 0.3 x the task's, a task Jaccard of at least 0.27).
"""

import ml_collections

from experiments.configs import text_game
from jitrl_jax.envs import web_key

# State keys: this project's views by rule, or the authors' web key.
KEYS = ("views", "authors")

# The twelve tasks of the suite: single clicks, clicks found by reading
# (tabs, collapsibles, a tree), several clicks, typing, and a form.
TASKS = (
    "click-button",
    "click-link",
    "click-dialog",
    "click-tab",
    "click-option",
    "click-checkboxes",
    "click-collapsible",
    "enter-text",
    "focus-text",
    "login-user",
    "click-button-sequence",
    "navigate-tree",
)


def get_config(key: str = "views") -> ml_collections.ConfigDict:
  """The web suite's config: tasks, agents, the browser and the agent.

  Args:
    key: "views" (the listing, the actions so far, the utterance) or
      "authors" (`web_key`).
  """
  if key not in KEYS:
    raise ValueError(f"key must be one of {KEYS}, got {key!r}")
  c = text_game.get_config("detective")
  c.name = "miniwob-suite"
  c.game = "miniwob-suite"
  c.tasks = TASKS
  c.agents = ("static", "jitrl", "jitrl-reference", "memory-prompt")
  c.episodes = 20  # per task
  c.steps = 6  # the longest task here (login-user) needs 3 to 4 actions
  c.vary_game_seed = True
  # The pages' clock is real time (10 s for most tasks). A CPU agent that
  # compiles a new shape mid-episode needs far longer; the page discounts a
  # success by max(0, 1 - t / 120 s), and ends at -1 when it runs out.
  c.env = ml_collections.ConfigDict(
      {"step_limit": c.steps, "episode_time_s": 120.0}
  )
  # One screenshot strip (README): this agent's last episode of this task.
  c.screenshots = ml_collections.ConfigDict(
      {"agent": "jitrl", "task": "login-user", "episode": -1}
  )
  c.rewards.env_scale = 1.0  # MiniWoB's rewards are already in [-1, 1].
  c.agent.web = True
  # (history, current, task): the utterance names other targets in every
  # instance, so it is a state feature here (agents.batching.state_views).
  c.agent.view_sizes = (64, 256, 64)
  c.agent.view_ngrams = (1, 2, 1)
  c.agent.view_weights = (0.2, 0.5, 0.3)
  c.agent.history_turns = 2
  c.agent.max_observation_chars = 2000
  c.agent.memory_capacity = 8192
  if key == "authors":
    c.name = "miniwob-suite-authors-key"
    c.env.state_key = "authors"
    for name, value in web_key.AUTHORS_SETTINGS.items():
      c.agent[name] = value
  return c
