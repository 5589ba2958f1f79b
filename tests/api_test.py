"""The public API imports by name and the core stays free of heavy imports."""

import subprocess
import sys

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

import jitrl_jax


class ApiTest(absltest.TestCase):

  def test_every_public_name_resolves(self):
    for name in jitrl_jax.__all__:
      with self.subTest(name=name):
        self.assertTrue(hasattr(jitrl_jax, name), name)

  def test_all_is_sorted_and_unique(self):
    self.assertEqual(list(jitrl_jax.__all__), sorted(set(jitrl_jax.__all__)))

  def test_version(self):
    self.assertRegex(jitrl_jax.__version__, r"^\d+\.\d+\.\d+$")

  def test_core_import_does_not_pull_models_or_envs(self):
    # A fresh interpreter: importing the core must not import the LM stack,
    # the games, or torch.
    code = (
        "import sys, jitrl_jax\n"
        "heavy = [m for m in ('transformers', 'torch', 'jericho', "
        "'textworld_express', 'jitrl_jax.models', 'jitrl_jax.envs') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    self.assertEqual(out.stdout.strip(), "")

  def test_jitrl_composes_from_the_top_level(self):
    algo = jitrl_jax.jitrl(k=4, beta=1.0, view_weights=(1.0,))
    memory = algo.init(8, (4,))
    views = (jitrl_jax.text_token_set("west of house", n=1, size=4),)
    out = algo.act(
        memory,
        jnp.zeros(3),
        jnp.arange(3),
        jnp.ones(3, bool),
        views,
        jax.random.key(0),
    )
    # Empty memory: pi' = pi_theta = uniform over the 3 candidates.
    np.testing.assert_allclose(out.diagnostics.pi, [1 / 3] * 3, rtol=1e-6)
    self.assertIn(int(out.index), (0, 1, 2))

  def test_settings_and_keywords_build_the_same_policy(self):
    a = jitrl_jax.jitrl(
        jitrl_jax.Settings(k=4, view_weights=(1.0,)), jitrl_jax.Hyper(beta=2.0)
    )
    b = jitrl_jax.jitrl(k=4, beta=2.0, view_weights=(1.0,))
    memory = a.init(8, (4,))
    views = (jitrl_jax.text_token_set("west of house", n=1, size=4),)
    args = (memory, jnp.array([0.0, 1.0]), jnp.arange(2), jnp.ones(2, bool))
    for x, y in zip(
        jax.tree.leaves(a.act(*args, views, jax.random.key(1))),
        jax.tree.leaves(b.act(*args, views, jax.random.key(1))),
    ):
      np.testing.assert_array_equal(x, y)

  def test_one_name_per_rule(self):
    self.assertEqual(jitrl_jax.config.RULES, ("jitrl", "reference"))
    with self.assertRaisesRegex(ValueError, "rule must be one of"):
      jitrl_jax.jitrl(rule="paper")


if __name__ == "__main__":
  absltest.main()
