"""Lint: pyink formatting and the import rules of ARCHITECTURE.md.

Reads the source tree itself, found from this file's real path, so it checks
the same files under pytest and under Bazel. `make format` fixes what the
pyink test reports.
"""

import pathlib
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "bazel"))
import gen_build  # pylint: disable=g-import-not-at-top,wrong-import-position

# Keep in step with FORMAT_DIRS in the Makefile.
FORMATTED_DIRS = ("jitrl_jax", "tests", "experiments", "benchmarks", "tools")
# The core: these import only jax, numpy, chex, typing, the standard library
# and each other.
CORE_MODULES = (
    "token_sets",
    "similarity",
    "memory",
    "retrieval",
    "returns",
    "advantage",
    "update",
    "policy",
)
CORE_THIRD_PARTY = frozenset({"jax", "numpy", "chex", "typing"})
# Never in the library: randomness takes a jax key; torch is for benchmarks.
FORBIDDEN_IN_LIBRARY = frozenset({"random", "torch"})


def _imports(path: pathlib.Path) -> list[str]:
  """What a library file imports, TYPE_CHECKING blocks included."""
  package = ".".join(path.relative_to(ROOT).parent.parts)
  return gen_build.imported_names(path.read_text(), package)


def _allowed_in_core(name: str) -> bool:
  top, _, rest = name.partition(".")
  if top == "jitrl_jax":
    return rest.partition(".")[0] in CORE_MODULES
  if top in FORBIDDEN_IN_LIBRARY:
    return False
  return top in CORE_THIRD_PARTY or top in sys.stdlib_module_names


class LintTest(parameterized.TestCase):

  def _assert_tool_passes(self, args, dirs, message):
    """Runs `python -m <args> <dirs>` in the repo; fails with its output."""
    dirs = [d for d in dirs if (ROOT / d).is_dir()]
    result = subprocess.run(
        [sys.executable, "-m", *args, *dirs],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    self.assertEqual(
        result.returncode, 0, f"{message}:\n{result.stdout}{result.stderr}"
    )

  def test_pyink_formatting(self):
    self._assert_tool_passes(
        ["pyink", "--check", "--diff", "--quiet"],
        FORMATTED_DIRS,
        "pyink would reformat these files; run `make format`",
    )

  def test_pyflakes_rules(self):
    # Unused imports and variables, undefined names, redefinitions: ruff's
    # "F" rules (pyflakes) over the code and the notebooks.
    self._assert_tool_passes(
        ["ruff", "check", "--select", "F", "--no-cache"]
        + ["--output-format", "concise"],
        (*FORMATTED_DIRS, "colabs"),
        "ruff (F rules)",
    )

  def test_library_uses_neither_torch_nor_python_random(self):
    for path in sorted((ROOT / "jitrl_jax").rglob("*.py")):
      with self.subTest(str(path.relative_to(ROOT))):
        forbidden = [
            n for n in _imports(path) if n.split(".")[0] in FORBIDDEN_IN_LIBRARY
        ]
        self.assertEmpty(forbidden)

  @parameterized.parameters(*CORE_MODULES)
  def test_core_module_imports(self, module):
    path = ROOT / "jitrl_jax" / f"{module}.py"
    if not path.exists():
      self.skipTest(f"{path.relative_to(ROOT)} is not written yet")
    outside = [n for n in _imports(path) if not _allowed_in_core(n)]
    self.assertEmpty(
        outside,
        f"{module} may import only {sorted(CORE_THIRD_PARTY)}, the standard"
        " library and the other core modules",
    )

  def test_allowed_in_core(self):
    self.assertTrue(_allowed_in_core("jax.numpy"))
    self.assertTrue(_allowed_in_core("typing.NamedTuple"))
    self.assertTrue(_allowed_in_core("functools.partial"))
    self.assertTrue(_allowed_in_core("jitrl_jax.token_sets.TokenSet"))
    self.assertFalse(_allowed_in_core("jitrl_jax"))  # the whole public API
    self.assertFalse(_allowed_in_core("jitrl_jax.models.llama"))
    self.assertFalse(_allowed_in_core("jitrl_jax.agents"))
    self.assertFalse(_allowed_in_core("random.random"))
    self.assertFalse(_allowed_in_core("torch"))
    self.assertFalse(_allowed_in_core("flax.nnx"))


if __name__ == "__main__":
  absltest.main()
