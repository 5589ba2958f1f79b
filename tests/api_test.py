"""The public API imports by name and the core stays free of heavy imports."""

import subprocess
import sys

from absl.testing import absltest

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
    algo = jitrl_jax.jitrl(k=4, beta=1.0)
    self.assertIsInstance(algo, jitrl_jax.JitRL)
    for fn in (algo.init, algo.act, algo.observe):
      self.assertTrue(callable(fn))


if __name__ == "__main__":
  absltest.main()
