"""Lint: pyink formatting, the import rules and room sizes of README "Layout".

Reads the source tree itself, found from this file's real path, so it checks
the same files under pytest and under Bazel. `make format` fixes what the
pyink test reports.
"""

import ast
import pathlib
import re
import subprocess
import sys
import tempfile

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
    "config",
    "io",
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
    self.assertTrue(path.exists(), f"core module {module} was moved/renamed")
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


def _python_files(*dirs: str):
  for d in dirs:
    for path in sorted((ROOT / d).rglob("*.py")):
      if "__pycache__" not in path.parts:
        yield path


def _function_lengths(path: pathlib.Path):
  """(name, lines) of every top-level function and method, nested included."""
  tree = ast.parse(path.read_text())
  out = []
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      out.append((node.name, node.end_lineno - node.lineno + 1))
  return out


class RoomSizeTest(absltest.TestCase):
  """Rooms small enough to change safely (README "Layout")."""

  DIRS = ("jitrl_jax", "experiments", "benchmarks")
  MAX_FILE_LINES = 700
  MAX_FUNCTION_LINES = 150  # a closure counts with its nested functions

  def test_no_file_is_too_long(self):
    for path in _python_files(*self.DIRS):
      with self.subTest(str(path.relative_to(ROOT))):
        n = len(path.read_text().splitlines())
        self.assertLessEqual(n, self.MAX_FILE_LINES)

  def test_no_function_is_too_long(self):
    for path in _python_files(*self.DIRS):
      for name, n in _function_lengths(path):
        with self.subTest(f"{path.relative_to(ROOT)}:{name}"):
          self.assertLessEqual(n, self.MAX_FUNCTION_LINES)

  def test_the_measure_sees_nested_functions(self):
    # A 3-line closure inside a 6-line function: the outer counts all 6.
    source = "def f():\n  x = 1\n\n  def g():\n    return x\n  return g\n"
    with tempfile.TemporaryDirectory() as d:
      tmp = pathlib.Path(d) / "f.py"
      tmp.write_text(source)
      self.assertEqual(dict(_function_lengths(tmp)), {"f": 6, "g": 2})


class CitationTest(absltest.TestCase):
  """Code cites the project's own method document, and it resolves."""

  def test_no_reference_to_files_outside_the_repository(self):
    for path in _python_files("jitrl_jax", "experiments", "benchmarks"):
      lines = path.read_text().splitlines()
      outside = [
          f"line {i}: {line.strip()}"
          for i, line in enumerate(lines, 1)
          if re.search(r"\bSPEC\b|ARCHITECTURE\.md", line)
      ]
      with self.subTest(str(path.relative_to(ROOT))):
        self.assertEmpty(outside)

  def test_every_method_section_reference_resolves(self):
    method = (ROOT / "docs" / "method.md").read_text()
    sections = set(re.findall(r"^## (\d+)\. ", method, re.M))
    pattern = re.compile(r"docs/method\.md,? sections? ([\d, and]+)")
    for path in _python_files("jitrl_jax", "experiments", "benchmarks"):
      for match in pattern.finditer(path.read_text()):
        for number in re.findall(r"\d+", match.group(1)):
          with self.subTest(f"{path.relative_to(ROOT)}: section {number}"):
            self.assertIn(number, sections)


class OneCompositionTest(absltest.TestCase):
  """policy.act is the only code that turns neighbours into pi'."""

  def test_modulation_is_composed_only_in_the_policy(self):
    allowed = {
        ROOT / "jitrl_jax" / "policy.py",
        ROOT / "jitrl_jax" / "update.py",
    }
    calls = re.compile(r"\b(modulate_logits|reference_choice)\(")
    for path in _python_files("jitrl_jax", "experiments", "benchmarks"):
      if path in allowed:
        continue
      with self.subTest(str(path.relative_to(ROOT))):
        self.assertEmpty(calls.findall(path.read_text()))


if __name__ == "__main__":
  absltest.main()
