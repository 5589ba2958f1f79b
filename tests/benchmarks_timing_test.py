"""Tests for benchmarks/timing.py: what gets called and what gets reported.

No wall-clock assertions (speed lives in BENCHMARKS.md): the clock is faked.
"""

from unittest import mock

from absl.testing import absltest
import jax.numpy as jnp

from benchmarks import timing


class _FakeClock:
  """time.perf_counter that advances by a scripted step per reading pair."""

  def __init__(self, durations):
    self._durations = list(durations)
    self._now = 0.0
    self._started = False

  def __call__(self):
    if self._started:
      self._now += self._durations.pop(0)
    self._started = not self._started
    return self._now


class MedianSecondsTest(absltest.TestCase):

  def test_warm_up_is_not_timed_and_median_is_returned(self):
    calls = []
    fn = lambda: calls.append(1) or jnp.zeros(())
    clock = _FakeClock([5.0, 1.0, 3.0])
    with mock.patch.object(timing.time, "perf_counter", clock):
      got = timing.median_seconds(fn, 3)
    self.assertLen(calls, 4)  # one warm-up + three timed calls
    self.assertEqual(got, 3.0)

  def test_budget_cuts_repeats_but_keeps_the_floor(self):
    calls = []
    fn = lambda: calls.append(1)
    clock = _FakeClock([10.0] * 3)
    with mock.patch.object(timing.time, "perf_counter", clock):
      got = timing.median_seconds(fn, 50, budget_s=1.0, min_repeats=3)
    self.assertLen(calls, 1 + 3)
    self.assertEqual(got, 10.0)

  def test_rejects_no_repeats(self):
    with self.assertRaisesRegex(ValueError, "repeats"):
      timing.median_seconds(lambda: None, 0)


class InterleavedTest(absltest.TestCase):

  def test_rounds_alternate_and_medians_are_per_contestant(self):
    order = []
    times = {"a": iter([9.0, 1.0, 2.0, 3.0]), "b": iter([9.0, 5.0, 7.0, 6.0])}

    def contestant(name):
      def run():
        order.append(name)
        return next(times[name])

      return run

    got = timing.interleaved({"a": contestant("a"), "b": contestant("b")}, 3)
    self.assertEqual(order, ["a", "b"] * 4)  # warm-up round, then 3 rounds
    self.assertEqual(got, {"a": 2.0, "b": 6.0})


if __name__ == "__main__":
  absltest.main()
