"""The committed BUILD is what tools/bazel/gen_build.py makes of the tree.

Also checks gen_build itself on a small tree written to a temporary folder.
"""

import pathlib
import re
import sys
import tempfile
import textwrap

from absl.testing import absltest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "bazel"))
import gen_build  # pylint: disable=g-import-not-at-top,wrong-import-position

# A tree with a public API, a subpackage, relative and TYPE_CHECKING imports,
# an absltest test with test data, a pytest-style test and a heavy test.
SMALL_TREE = {
    "jitrl_jax/__init__.py": "from jitrl_jax import a\nfrom .models import b\n",
    "jitrl_jax/a.py": "import numpy as np\n",
    "jitrl_jax/models/b.py": textwrap.dedent("""\
        import typing
        from .. import a
        from jitrl_jax.models.c import f
        if typing.TYPE_CHECKING:
          from jitrl_jax import agents
        """),
    "jitrl_jax/models/c.py": "def f():\n  from jitrl_jax.a import g\n",
    "jitrl_jax/agents.py": "from jitrl_jax.models import b\n",
    "tests/b_test.py": textwrap.dedent("""\
        from absl.testing import absltest
        from jitrl_jax.models import b
        DATA = "testdata/x.txt"
        if __name__ == "__main__":
          absltest.main()
        """),
    "tests/api_test.py": "import jitrl_jax\ndef test_api():\n  pass\n",
    "tests/agent_test.py": "from jitrl_jax import agents\nabsltest.main()\n",
    "tests/testdata/x.txt": "x\n",
}


def _write(root: pathlib.Path, files: dict[str, str]) -> None:
  for path, text in files.items():
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(text)


def _rules(build: str) -> dict[str, str]:
  """Each rule of a BUILD file by its name."""
  return {
      re.search(r'name = "(\w+)"', rule).group(1): rule
      for rule in build.split("\n\n")
      if "name = " in rule
  }


class BuildTest(absltest.TestCase):

  def _tree(self, files: dict[str, str]) -> pathlib.Path:
    """A temporary source tree with these files."""
    root = pathlib.Path(self.enter_context(tempfile.TemporaryDirectory()))
    _write(root, files)
    return root

  def test_committed_build_is_up_to_date(self):
    self.assertMultiLineEqual(
        (ROOT / "BUILD").read_text(),
        gen_build.render(ROOT),
        "BUILD is stale: run `.venv/bin/python tools/bazel/gen_build.py`",
    )

  def test_small_tree(self):
    root = self._tree(SMALL_TREE)
    rules = _rules(gen_build.render(root))
    self.assertSameElements(
        rules,
        [
            "jitrl_jax",
            "a",
            "agents",
            "models_b",
            "models_c",
            "b_test",
            "api_test",
            "agent_test",
        ],
    )
    self.assertIn(
        'deps = [\n        ":a",\n        ":models_b",', rules["jitrl_jax"]
    )
    self.assertNotIn("deps", rules["a"])
    # Relative and function-level imports count, TYPE_CHECKING ones do not.
    self.assertIn('":a",\n        ":models_c",\n    ],', rules["models_b"])
    self.assertIn('deps = [":a"]', rules["models_c"])
    # absltest file: its own main, light, with the test data it names.
    self.assertIn('main = "tests/b_test.py"', rules["b_test"])
    self.assertIn('size = "medium"', rules["b_test"])
    self.assertIn('data = ["tests/testdata/x.txt"]', rules["b_test"])
    self.assertIn('deps = [":models_b"]', rules["b_test"])
    # pytest file: run through the wrapper; depends on the public API.
    self.assertIn(f'main = "{gen_build.PYTEST_MAIN}"', rules["api_test"])
    self.assertIn('args = ["$(rootpath tests/api_test.py)"]', rules["api_test"])
    self.assertIn('deps = [":jitrl_jax"]', rules["api_test"])
    # Heavy test: large and manual.
    self.assertIn('size = "large"', rules["agent_test"])
    self.assertIn('tags = ["manual"]', rules["agent_test"])

  def test_output_is_deterministic(self):
    root = self._tree(SMALL_TREE)
    self.assertEqual(gen_build.render(root), gen_build.render(root))

  def test_import_cycle_is_an_error(self):
    root = self._tree(
        {
            "jitrl_jax/a.py": "from jitrl_jax import b\n",
            "jitrl_jax/b.py": "from jitrl_jax import a\n",
        }
    )
    with self.assertRaisesRegex(ValueError, "import cycle"):
      gen_build.render(root)

  def test_imported_names(self):
    source = textwrap.dedent("""\
        import os.path
        from jax import numpy as jnp
        from . import sibling
        from ..up import thing
        from .mod import *
        """)
    self.assertEqual(
        gen_build.imported_names(source, "pkg.sub"),
        [
            "jax.numpy",
            "os.path",
            "pkg.sub.mod",
            "pkg.sub.sibling",
            "pkg.up.thing",
        ],
    )


if __name__ == "__main__":
  absltest.main()
