"""Step rewards of a finished game, for the agent's memory.

docs/method.md section 6: a step's reward is the game's score change
(`env`), the reflective evaluator's score (`evaluator`) or the evaluator's
where it answered and env elsewhere (`mixed`). A malformed evaluator answer
never loses the episode: the env rewards stand in and the note says why.
"""

from __future__ import annotations

from typing import Any, TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
  from jitrl_jax import agents as agent_lib


def episode_rewards(
    cfg,
    trajectory: dict[str, Any],
    lm: agent_lib.LanguageModel,
) -> tuple[np.ndarray, str]:
  """Step rewards of one game for the memory (docs/method.md section 6).

  Args:
    cfg: the config (config.rewards).
    trajectory: {"actions", "observations" [T + 1], "env_rewards", "won",
      "lost", "task"}.
    lm: the LM (the evaluator uses its `generate_text`).

  Returns:
    ([T] rewards, a note on where they came from).
  """
  env_r = np.asarray(trajectory["env_rewards"], np.float32)
  # Scaled score changes, minus a cost per step (0 by default): with the
  # cost, a step that changes nothing has a negative return, as the
  # evaluator's "wasted step" judgement would give it.
  env_r = env_r * float(cfg.rewards.get("env_scale", 1.0)) - float(
      cfg.rewards.get("step_penalty", 0.0)
  )
  source = cfg.rewards.source
  if source not in ("env", "evaluator", "mixed"):
    raise ValueError(
        f"unknown rewards.source {source!r}: use env, evaluator " "or mixed"
    )
  rewards, note = env_r, "env"
  if source != "env" and env_r.size:
    if lm.generate_text is None:
      note = "env (evaluator fallback: the LM cannot generate text)"
    else:
      from jitrl_jax import evaluator  # pylint: disable=g-import-not-at-top

      max_new = int(cfg.rewards.get("evaluator_max_new_tokens", 96))
      steps = [
          evaluator.TrajectoryStep(o, a, float(r))
          for o, a, r in zip(
              trajectory["observations"], trajectory["actions"], env_r
          )
      ]
      result = evaluator.evaluate_episode(
          lambda messages: lm.generate_text(messages, max_new),
          steps,
          bool(trajectory["won"]),
          reward_source=source,
          scale=(
              float(cfg.rewards.get("evaluator_low", -3.0)),
              float(cfg.rewards.get("evaluator_high", 3.0)),
          ),
          task=trajectory.get("task", ""),
          final_observation=trajectory["observations"][-1],
      )
      rewards = np.asarray(result.rewards, np.float32)
      if result.used_fallback:
        why = result.parse.error if result.parse is not None else "no answer"
        note = f"env (evaluator fallback: {why})"
      else:
        note = source
  rewards = np.nan_to_num(np.array(rewards, np.float32), nan=0.0)
  return rewards, note
