"""Web benchmark: the browser's latency and where a web decision's time goes.

  python -m benchmarks.web_bench [--quick]

MiniWoB++ pages in headless Chromium (`jitrl_jax.envs.miniwob`), the
embedded SmolLM2-135M and the `jitrl` agent with the web suite's settings
(`experiments/configs/web_suite.py`), B = 1:

* browser: `reset(seed)` (a new instance of the task on the open page) and
  one `step` (the action in the page, then the page's elements read back),
  median over seeds; the first browser start is timed once;
* a decision's parts on real pages of the suite's tasks, each timed on its
  own: the browser (the step that carries the action out, and reading the
  candidates and views), the host (`agent.prepare`: prompt, tokenising,
  views; `agent.pack`: the packed layout) and the device (`agent.decide`,
  the one jitted call: LM scoring, retrieval, the update, sampling), with a
  memory of 1,000 entries written by episodes on the same tasks.

Without the `web` extra or Chromium the section says so and measures
nothing.
"""

from __future__ import annotations

import statistics
import time

import jax
import numpy as np

from benchmarks import lm_bench
from benchmarks import run as bench_runner
from benchmarks import timing
from experiments import episodes
from experiments.configs import web_suite as web_suite_config
from jitrl_jax import agents as agent_lib
from jitrl_jax.envs import base as envs_base

TASKS = ("click-button", "click-checkboxes", "enter-text", "login-user")
MEMORY_EPISODES = 40  # random episodes written before the decisions


def _median_ms(times) -> float:
  return 1000 * statistics.median(times)


def browser_latency(task: str, seeds: int) -> dict[str, float]:
  """Start, reset and step medians (ms) of one task's page."""
  from jitrl_jax.envs import miniwob  # pylint: disable=g-import-not-at-top

  t0 = time.perf_counter()
  env = miniwob.MiniWoBEnv(task, episode_time_s=120.0)
  start = time.perf_counter() - t0
  resets, steps = [], []
  try:
    for seed in range(seeds):
      t0 = time.perf_counter()
      env.reset(seed=seed)
      resets.append(time.perf_counter() - t0)
      action = env.valid_actions()[0]
      t0 = time.perf_counter()
      env.step(action)
      steps.append(time.perf_counter() - t0)
  finally:
    env.close()
  return {
      "start_s": start,
      "reset_ms": _median_ms(resets),
      "step_ms": _median_ms(steps),
  }


def _filled_state(agent, envs, rng):
  """The agent's state after MEMORY_EPISODES random episodes on the tasks."""
  state = agent.init()
  for i in range(MEMORY_EPISODES):
    task = TASKS[i % len(TASKS)]
    env = envs[task]
    res = env.reset(seed=10_000 + i)
    views, actions, rewards = [], [], []
    for _ in range(3):
      if res.done:
        break
      obs = episodes.observation(
          env, res, (), len(actions), env.valid_actions()
      )
      views.append(agent.state_views(obs.current, obs.history, obs.task))
      action = str(rng.choice(obs.valid_actions))
      res = env.step(action)
      actions.append(action)
      rewards.append(res.reward)
    state = agent.observe(
        state,
        [
            agent_lib.Trajectory(
                views=views,
                actions=actions,
                rewards=np.asarray(rewards, np.float32),
                task_id=agent_lib.action_id(task),
                episode_id=i,
            )
        ],
    )
  return state


def decision_parts(lm, reps: int) -> dict[str, float]:
  """Browser, host and device medians (ms) of decisions on real pages."""
  from jitrl_jax.envs import miniwob  # pylint: disable=g-import-not-at-top

  cfg = web_suite_config.get_config()
  agent = agent_lib.make_agent("jitrl", lm, **cfg.agent.to_dict())
  rng = np.random.default_rng(0)
  envs = {t: miniwob.MiniWoBEnv(t, episode_time_s=120.0) for t in TASKS}
  parts = {"browser": [], "host": [], "device": []}
  try:
    state = _filled_state(agent, envs, rng)
    key = jax.random.key(0)
    for r in range(reps + 1):  # the first round compiles: not kept
      for j, task in enumerate(TASKS):
        env = envs[task]
        res = env.reset(seed=20_000 + r * len(TASKS) + j)
        t0 = time.perf_counter()
        obs = episodes.observation(env, res, (), 0, env.valid_actions())
        read = time.perf_counter() - t0
        t0 = time.perf_counter()
        longest = int(np.max(jax.device_get(state.table.lengths)))
        inputs = agent.prepare([obs], None, min_tokens=longest)
        scored, extras = agent.pack(inputs, min_tokens=longest)
        host = time.perf_counter() - t0
        args = (lm.params, state.memory, state.table, scored, key)
        device = timing.seconds(
            lambda: agent.decide(*args, state.state.episodes_done, **extras)
        )
        t0 = time.perf_counter()
        env.step(obs.valid_actions[0])
        browser = read + time.perf_counter() - t0
        if r:
          parts["browser"].append(browser)
          parts["host"].append(host)
          parts["device"].append(device)
  finally:
    for env in envs.values():
      env.close()
  return {k: _median_ms(v) for k, v in parts.items()}


def _missing() -> str:
  try:
    from jitrl_jax.envs import miniwob  # pylint: disable=g-import-not-at-top

    miniwob.available_tasks()
    env = miniwob.MiniWoBEnv(TASKS[0])
    env.close()
  except envs_base.EnvironmentUnavailableError as e:
    return str(e)
  return ""


def run(quick: bool = False) -> str:
  """Runs the benchmark; returns a markdown section."""
  title = "## Web tasks in Chromium (MiniWoB++)"
  missing = _missing()
  if missing:
    return f"{title}\n\nNot measured: {missing}\n"
  seeds = 5 if quick else 20
  reps = 2 if quick else 5
  load = lm_bench.load_average()
  browser = {t: browser_latency(t, seeds) for t in TASKS}
  lm = agent_lib.load_language_model()
  parts = decision_parts(lm, reps)
  total = sum(parts.values())
  lines = [
      title,
      "",
      f"Headless Chromium through selenium, B = 1; load average at the "
      f"start {load}. Browser: median of {seeds} seeds per task (start: "
      "one launch of Chromium and the page).",
      "",
      "| task | browser start (s) | reset (ms) | step (ms) |",
      "|---|---:|---:|---:|",
  ]
  for t, b in browser.items():
    lines.append(
        f"| {t} | {b['start_s']:.2f} | {b['reset_ms']:.1f} | "
        f"{b['step_ms']:.1f} |"
    )
  lines += [
      "",
      f"One `jitrl` decision on these pages (web suite settings, "
      f"{MEMORY_EPISODES} episodes in memory; median of {reps} rounds over "
      f"the {len(TASKS)} tasks, compilation excluded), each part timed on "
      "its own:",
      "",
      "| part | ms | share |",
      "|---|---:|---:|",
  ]
  names = {
      "browser": "browser (the step, reading candidates and views)",
      "host": "host (prompt, tokenising, views, packing)",
      "device": "device (the jitted decision: LM, retrieval, update)",
  }
  for k, v in parts.items():
    lines.append(f"| {names[k]} | {v:.1f} | {100 * v / total:.0f}% |")
  lines.append(f"| **total** | **{total:.1f}** | 100% |")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  bench_runner.module_main(run, __doc__)
