"""The theory lab's summaries: curves, confidence bands and errors.

Metrics per agent and episode (`runner.EpisodeMetrics`), summarised here:

  return     sum_t w^t r_t (w = 1 for the bandit, gamma for the tree)
  regret     sum_t w^t (max_a Q(s_t, a) - sum_a pi'(a | s_t) Q(s_t, a)): the
             expected regret of pi' against the optimal policy along the
             visited states (performance-difference lemma), so that
             E[return + regret] = optimal return
  kl         mean_t KL(pi'(. | s_t) || pi_theta(. | s_t))
  a_error    RMS over steps of the shift-invariant advantage error (see
             `rules.estimation_errors`)
  q_error    RMS over steps and seen actions (n(s, a) > 0) of Q_hat(s, a) -
             Q(s, a).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from experiments.theory import runner as runner_lib

EpisodeMetrics = runner_lib.EpisodeMetrics


def _rms(err2, count, axis) -> np.ndarray:
  err2 = np.asarray(err2, np.float64).sum(axis=axis)
  count = np.asarray(count, np.float64).sum(axis=axis)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(count > 0, np.sqrt(err2 / np.maximum(count, 1)), np.nan)


def a_error(metrics: EpisodeMetrics, axis=None) -> np.ndarray:
  """RMS (shift-invariant) advantage error over steps, along `axis`."""
  return _rms(metrics.a_err2, metrics.a_count, axis)


def q_error(metrics: EpisodeMetrics, axis=None) -> np.ndarray:
  """RMS Q error over (step, seen action) pairs along `axis` (NaN if none)."""
  return _rms(metrics.q_err2, metrics.q_count, axis)


def _band(x: np.ndarray) -> dict[str, list[float]]:
  """Mean over agents (axis 0) and a 95% normal confidence half-width."""
  x = np.asarray(x, np.float64)
  mean = x.mean(axis=0)
  half = 1.96 * x.std(axis=0, ddof=1) / np.sqrt(max(x.shape[0], 1))
  return {"mean": mean.tolist(), "ci95": half.tolist()}


def _tail(metrics: EpisodeMetrics, tail: int) -> EpisodeMetrics:
  """The last `tail` episodes of [A, E] metrics."""
  return EpisodeMetrics(*[np.asarray(m)[:, -tail:] for m in metrics])


def summarise(metrics: EpisodeMetrics, *, tail: int) -> dict[str, Any]:
  """Curves and scalars of one rule's [A, E] metrics.

  Args:
    metrics: EpisodeMetrics with [A, E] arrays.
    tail: number of final episodes for the "final" numbers.

  Returns:
    A JSON-ready dict (NaN where undefined, e.g. A-error with no estimate).
  """
  regret = np.asarray(metrics.regret, np.float64)
  agents = regret.shape[0]
  per_agent_mean = regret.mean(axis=1)
  per_agent_tail = regret[:, -tail:].mean(axis=1)

  def ci(x):
    return float(1.96 * x.std(ddof=1) / np.sqrt(max(agents, 1)))

  return {
      "agents": agents,
      "episodes": regret.shape[1],
      "regret_curve": _band(regret),
      "return_curve": _band(metrics.ret),
      "kl_curve": _band(metrics.kl),
      "a_error_curve": a_error(metrics, axis=0).tolist(),
      "mean_regret": float(per_agent_mean.mean()),
      "mean_regret_ci95": ci(per_agent_mean),
      "final_regret": float(per_agent_tail.mean()),
      "final_regret_ci95": ci(per_agent_tail),
      "mean_return": float(np.mean(metrics.ret)),
      "mean_kl": float(np.mean(metrics.kl)),
      "final_kl": float(np.mean(np.asarray(metrics.kl)[:, -tail:])),
      "a_error": float(a_error(metrics)),
      "final_a_error": float(a_error(_tail(metrics, tail))),
      "q_error_curve": q_error(metrics, axis=0).tolist(),
      "q_error": float(q_error(metrics)),
      "final_q_error": float(q_error(_tail(metrics, tail))),
      "mean_neighbours": float(np.mean(metrics.num_neighbours)),
      "tv_jitrl": float(np.mean(metrics.tv_jitrl)),
  }


def sweep_summary(metrics: EpisodeMetrics, tail: int) -> list[dict]:
  """summarise() of each leading-axis entry of [H, A, E] metrics."""
  return [
      summarise(EpisodeMetrics(*[m[i] for m in metrics]), tail=tail)
      for i in range(np.asarray(metrics.regret).shape[0])
  ]


def to_numpy(metrics: EpisodeMetrics) -> EpisodeMetrics:
  """The metrics as host numpy arrays."""
  return EpisodeMetrics(*[np.asarray(jax.device_get(m)) for m in metrics])


def json_safe(x):
  """NaN / inf -> None, recursively (strict JSON)."""
  if isinstance(x, dict):
    return {k: json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [json_safe(v) for v in x]
  if isinstance(x, float) and not np.isfinite(x):
    return None
  return x
