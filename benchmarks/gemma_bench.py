"""Gemma 3 270M benchmark: the Flax model against transformers + torch.

  python -m benchmarks.gemma_bench [--quick]

The second embedded model (the ``gemma`` extra: Gemma 3 270M, Q4_K_M GGUF,
assembled into the project's cache folder). Both sides load the same file
and run float32 on the CPU: ours with ``gemma_gguf.load_gemma_gguf`` (the
``gguf`` package's dequantisers), torch with transformers' GGUF loader (its
own dequantisation) and its default attention. Measured as for SmolLM2
(``lm_bench``, same timing rules and targets): prefill tokens/s after a
128- and a 512-token prompt (the output projection at the last position
only, a 262k-token vocabulary) and greedy decode tokens/s after a
128-token prompt. Without the extra the section says so and measures
nothing.
"""

import jax
import numpy as np

from benchmarks import lm_bench
from benchmarks import run as bench_runner
from jitrl_jax.models import gemma_gguf


def run(quick: bool = False) -> str:
  """Runs the benchmark; returns a markdown section."""
  title = "## Gemma 3 270M against torch (float32, CPU)"
  missing = gemma_gguf._missing_packages()  # pylint: disable=protected-access
  if missing:
    return (
        f"{title}\n\nNot measured: the `gemma` extra is not installed "
        f"(missing {', '.join(missing)}; `make gemma`).\n"
    )
  reps = 3 if quick else 5
  decode_n = 16 if quick else 32
  cores = lm_bench._cores()  # pylint: disable=protected-access
  threads = sorted({1, cores})
  load = lm_bench.load_average()
  path = gemma_gguf.default_gemma_path()
  loaded = gemma_gguf.load_gemma_gguf()
  ref, torch_missing = lm_bench._load_torch(cores, path)  # pylint: disable=protected-access
  rows = lm_bench.rate_rows(
      loaded.model,
      ref,
      threads=threads,
      reps=reps,
      decode_n=decode_n,
      rng=np.random.default_rng(0),
  )
  c = loaded.config
  versions = lm_bench.torch_versions(ref, torch_missing, cores)
  lines = [
      title,
      "",
      f"JAX {jax.__version__} (XLA CPU, {cores} cores) against {versions}; "
      f"the same GGUF weights ({gemma_gguf.GEMMA_GGUF_NAME}) dequantised to "
      f"float32: {c.num_layers} layers, hidden {c.hidden_size}, "
      f"vocabulary {c.vocab_size}, sliding window {c.sliding_window}. "
      "Compilation excluded; "
      f"median of {reps} interleaved rounds"
      + (", quick mode" if quick else "")
      + f". Load average at the start: {load}.",
      "",
  ]
  lines += lm_bench.rate_table(rows, cores=cores, threads=threads)
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  bench_runner.module_main(run, __doc__)
