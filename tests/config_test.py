"""Tests for jitrl_jax.config: one set of defaults, checked values."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp

from jitrl_jax import config
from jitrl_jax import policy


class SplitTest(absltest.TestCase):

  def test_flat_keywords_split_into_settings_hyper_and_rest(self):
    settings, hyper, rest = config.split_kwargs(
        {"k": 4, "beta": 2.0, "other": 1}, allow_rest=True
    )
    self.assertEqual(settings.k, 4)
    self.assertEqual(hyper.beta, 2.0)
    self.assertEqual(rest, {"other": 1})

  def test_unknown_keyword_is_named(self):
    with self.assertRaisesRegex(TypeError, "betta"):
      config.split_kwargs({"betta": 2.0})

  def test_as_dict_round_trips(self):
    s = config.Settings(k=3, view_weights=[0.5, 0.5])
    h = config.Hyper(beta=4.0)
    s2, h2, _ = config.split_kwargs(config.as_dict(s, h))
    self.assertEqual((s2, h2), (s, h))
    # Lists from configs become tuples: the settings stay hashable.
    self.assertEqual(s.view_weights, (0.5, 0.5))
    hash(s)


class CheckTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("negative_beta", dict(beta=-0.1), "beta"),
      ("nan_beta", dict(beta=float("nan")), "beta"),
      ("lam_above_one", dict(lam=1.5), "lam"),
      ("gamma_above_one", dict(gamma=1.01), "gamma"),
      ("negative_gamma", dict(gamma=-0.5), "gamma"),
      ("zero_temperature", dict(temperature=0.0), "temperature"),
      ("negative_temperature", dict(temperature=-1.0), "temperature"),
      ("infinite_alpha", dict(alpha=float("inf")), "alpha"),
  )
  def test_meaningless_hyper_is_an_error(self, kwargs, name):
    with self.assertRaisesRegex(ValueError, name):
      policy.jitrl(**kwargs)

  @parameterized.named_parameters(
      ("zero_k", dict(k=0), "k must"),
      ("negative_weight", dict(view_weights=(-1.0, 2.0)), "view_weights"),
      ("zero_weights", dict(view_weights=(0.0, 0.0)), "sum to a positive"),
      ("negative_budget", dict(kl_budget=-0.1), "kl_budget"),
      ("p_explore", dict(rule="reference", p_explore=1.5), "p_explore"),
      ("capacity", dict(memory_capacity=0), "memory_capacity"),
      ("floor_count", dict(view_floors=(0.5,)), "view_floors"),
      ("floor_range", dict(view_floors=(0.0, 1.5)), "view_floors"),
      ("ngrams", dict(view_ngrams=(1,)), "one entry per view"),
      ("buckets", dict(prompt_buckets=(512, 256)), "ascending"),
      ("paper_is_not_a_rule_name", dict(rule="paper"), "rule must be"),
      ("command_tokens", dict(max_command_tokens=1), "max_command_tokens"),
      (
          "other_command_advantage",
          dict(other_command_advantage="bonus"),
          "other_command_advantage",
      ),
  )
  def test_meaningless_settings_are_an_error(self, kwargs, message):
    with self.assertRaisesRegex(ValueError, message):
      config.Settings(**kwargs)

  @parameterized.named_parameters(
      ("lm_policy", dict(beta=0.0)),
      ("no_bonus", dict(lam=0.0)),
      ("pessimism", dict(alpha=-1.0)),
      ("immediate_rewards", dict(gamma=0.0)),
      ("undiscounted", dict(gamma=1.0)),
  )
  def test_meaningful_edge_values_are_accepted(self, kwargs):
    config.check_hyper(config.Hyper(**kwargs))

  def test_traced_hyper_is_not_checked(self):
    # Under jit a value is unknown: act must trace, not raise.
    rl = policy.jitrl(k=2, view_weights=(1.0,))
    memory = rl.init(4, (4,))
    views = (
        jax.tree.map(jnp.asarray, memory.views[0])._replace(
            ids=jnp.full((4,), -1, jnp.int32), counts=jnp.zeros((4,))
        ),
    )

    @jax.jit
    def act(beta):
      return rl.act(
          memory,
          jnp.zeros(2),
          jnp.arange(2),
          jnp.ones(2, bool),
          views,
          jax.random.key(0),
          hyper=config.Hyper(beta=beta),
      ).diagnostics.pi

    self.assertEqual(act(2.0).shape, (2,))


if __name__ == "__main__":
  absltest.main()
