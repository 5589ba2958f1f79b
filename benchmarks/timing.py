"""Wall-clock timing shared by the benchmarks.

Every timing in BENCHMARKS.md goes through `median_seconds`: one warm-up call
(compilation excluded), then the median of repeated calls, each ended by
`jax.block_until_ready` so that JAX's asynchronous dispatch is not mistaken
for speed. `interleaved` times several contestants in rounds so that all of
them see the same background load.
"""

from collections.abc import Callable, Mapping
import statistics
import time

import jax


def seconds(fn: Callable[[], object]) -> float:
  """Wall seconds of one ``fn()``, its result blocked until ready."""
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def median_seconds(
    fn: Callable[[], object],
    repeats: int,
    *,
    budget_s: float | None = None,
    min_repeats: int = 3,
) -> float:
  """Median wall seconds of ``fn()`` after one warm-up call.

  Args:
    fn: the work; its result (any pytree) is blocked until ready.
    repeats: timed calls.
    budget_s: if set, fewer calls (at least min(min_repeats, repeats)) when
      ``repeats`` of them would take longer than this, judged by the first.
    min_repeats: the floor under a budget.

  Returns:
    The median in seconds.
  """
  if repeats < 1:
    raise ValueError(f"repeats must be >= 1, got {repeats}")
  jax.block_until_ready(fn())  # Compile and warm up: not timed.
  times = [seconds(fn)]
  if budget_s is not None:
    fit = int(budget_s / max(times[0], 1e-9))
    repeats = max(min(repeats, min_repeats), min(repeats, fit))
  times += [seconds(fn) for _ in range(repeats - 1)]
  return statistics.median(times)


def interleaved(
    contestants: Mapping[str, Callable[[], float]], repeats: int
) -> dict[str, float]:
  """Median of each ``contestants[name]()``, a function that returns seconds.

  One warm-up each, then ``repeats`` rounds that run every contestant once,
  so that all of them see the same background load.
  """
  for run in contestants.values():
    run()
  times = {name: [] for name in contestants}
  for _ in range(repeats):
    for name, run in contestants.items():
      times[name].append(run())
  return {name: statistics.median(t) for name, t in times.items()}
