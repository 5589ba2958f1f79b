"""The colabs and the README's code: committed clean, and they run.

Each notebook runs in a fresh kernel of this very interpreter (the venv's
python: a kernelspec naming `sys.executable` is written to a temporary
JUPYTER_PATH folder, so no user or system kernel can stand in for it), with
`JITRL_NOTEBOOK_SMOKE=1` so that its knob cell picks the small CI settings,
and the test fails on the first cell that raises.

Executing the notebooks takes minutes (the 135M LM on CPU), so it runs only
when JITRL_NOTEBOOK_RUN=1, which `make notebooks` sets; `make test` checks
the cheap structural properties only. `JITRL_NOTEBOOK_SMOKE=0 make notebooks`
runs them with their full (Colab) settings. The README's ```python blocks
are run the same way, each in its own interpreter (with 8 fake CPU devices
for the sharding example).
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest
from absl.testing import parameterized
import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLABS = ROOT / "colabs"
DOCS = ROOT / "docs"  # the README's figures
NOTEBOOKS = ("01_quickstart", "02_theory_lab", "03_text_game")
COLAB_URL = (
    "https://colab.research.google.com/github/jitrl-jax/jitrl-jax/blob/main/"
    "colabs/{}.ipynb"
)
_CASES = [(name, name) for name in NOTEBOOKS]
KERNEL_NAME = "jitrl-jax-test-python"
# Generous: the first cell that loads and compiles the LM takes about a
# minute on a busy 2-core machine.
CELL_TIMEOUT_S = 1200


def readme_python_blocks() -> list[str]:
  """The ```python code blocks of README.md, in order."""
  text = (ROOT / "README.md").read_text()
  return re.findall(r"^```python\n(.*?)^```$", text, flags=re.M | re.S)


def _read(name: str):
  return nbformat.read(COLABS / f"{name}.ipynb", as_version=4)


def _kernelspec_dir() -> str:
  """A JUPYTER_PATH folder whose only kernel runs `sys.executable`."""
  root = tempfile.mkdtemp(prefix="jitrl_kernels_")
  spec_dir = os.path.join(root, "kernels", KERNEL_NAME)
  os.makedirs(spec_dir)
  spec = {
      "argv": [
          sys.executable,
          "-m",
          "ipykernel_launcher",
          "-f",
          "{connection_file}",
      ],
      "display_name": "jitrl-jax test (this interpreter)",
      "language": "python",
  }
  with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
    json.dump(spec, f)
  return root


README_HEAD = """\
# jitrl-jax

```
make demo   # creates .venv, installs everything, runs the main job, prints where the results are
make test   # creates .venv if needed, runs every test
```
"""


class ReadmeTest(absltest.TestCase):

  def test_starts_with_the_two_commands(self):
    text = (ROOT / "README.md").read_text()
    self.assertTrue(text.startswith(README_HEAD), text[: len(README_HEAD)])

  def test_local_figures_and_notebooks_exist(self):
    text = (ROOT / "README.md").read_text()
    paths = re.findall(r"\]\(((?:docs|colabs)/[^)#]+)\)", text)
    self.assertNotEmpty(paths)
    self.assertTrue(DOCS.is_dir())
    for path in paths:
      with self.subTest(path):
        self.assertTrue((ROOT / path).is_file(), f"{path} is missing")


class NotebookStructureTest(parameterized.TestCase):

  @parameterized.named_parameters(*_CASES)
  def test_outputs_are_stripped(self, name):
    for i, cell in enumerate(_read(name).cells):
      if cell.cell_type == "code":
        with self.subTest(cell=i):
          self.assertEqual(cell.outputs, [], f"{name} cell {i} has outputs")
          self.assertIsNone(
              cell.execution_count, f"{name} cell {i} has an execution count"
          )

  @parameterized.named_parameters(*_CASES)
  def test_opening_and_closing_cells(self, name):
    cells = _read(name).cells
    first, last = cells[0], cells[-1]
    self.assertEqual(first.cell_type, "markdown")
    self.assertTrue(first.source.startswith("# "), "starts with a title")
    self.assertIn(COLAB_URL.format(name), first.source)
    self.assertEqual(last.cell_type, "markdown")
    self.assertIn("## What you saw", last.source)
    code = [c.source for c in cells if c.cell_type == "code"]
    # The first code cell is the idempotent install cell.
    self.assertIn('find_spec("jitrl_jax")', code[0])
    self.assertIn("pip", code[0])
    self.assertIn("JITRL_NOTEBOOK_SMOKE", "\n".join(code))
    self.assertIn("#@param", "\n".join(code))
    self.assertIn("print(jax.devices())", "\n".join(code))

  @parameterized.named_parameters(*_CASES)
  def test_kernelspec_is_plain_python3(self, name):
    # Colab and Jupyter open the notebook with their own python3 kernel.
    self.assertEqual(_read(name).metadata.kernelspec.name, "python3")


@absltest.skipUnless(
    os.environ.get("JITRL_NOTEBOOK_RUN") == "1",
    "executing the notebooks takes minutes: run `make notebooks`",
)
class NotebookExecutionTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # Inherited by every kernel this process starts.
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        p for p in (_kernelspec_dir(), os.environ.get("JUPYTER_PATH")) if p
    )
    os.environ.setdefault("JITRL_NOTEBOOK_SMOKE", "1")
    os.environ.setdefault("JITRL_CHECKOUT", str(ROOT))

  @parameterized.named_parameters(*_CASES)
  def test_notebook_runs(self, name):
    from nbclient import NotebookClient  # pylint: disable=g-import-not-at-top
    from nbclient.exceptions import CellExecutionError  # pylint: disable=g-import-not-at-top

    nb = _read(name)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        startup_timeout=180,
        resources={"metadata": {"path": str(COLABS)}},
    )
    start = time.perf_counter()
    try:
      client.execute()
    except CellExecutionError as e:
      self.fail(f"{name}: a cell raised:\n{e}")
    seconds = time.perf_counter() - start
    print(f"\n{name}: {len(nb.cells)} cells in {seconds:.1f} s", flush=True)

  def test_readme_python_blocks_run(self):
    blocks = readme_python_blocks()
    self.assertGreaterEqual(len(blocks), 3)  # API tour: core, LM; sharding
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    for i, block in enumerate(blocks):
      with self.subTest(block=i):
        result = subprocess.run(
            [sys.executable, "-c", block],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=CELL_TIMEOUT_S,
            check=False,
        )
        self.assertEqual(
            result.returncode,
            0,
            f"README python block {i} failed:\n{block}\n{result.stderr}",
        )


if __name__ == "__main__":
  absltest.main()
