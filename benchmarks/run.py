"""Runs benchmark modules one after another in one process; writes markdown.

  python -m benchmarks.run [--out BENCHMARKS.md] [--quick] [NAME ...]
  python -m benchmarks.run --out /tmp/bench.md --only retrieval_bench

NAME is a module in this package exposing `run(quick: bool) -> str` (a
markdown section). With no NAME, every `benchmarks/*_bench.py` runs, in
sorted order. A module that cannot be imported (an optional dependency is
missing) gets a line saying it was skipped and why; a module whose `run`
raises gets a line with the error, the others still run, and the exit
status is then 1. The output starts with the machine, the software versions
and the exact command, and is written atomically, together with a
machine-readable copy beside it (BENCHMARKS.json for BENCHMARKS.md): the
markdown's tables, prose and machine lines as parsed by
`experiments.reporting.headline.parse_benchmarks_markdown`, which is what
the README's benchmark headline is generated from (`make report`).
"""

import argparse
import datetime
import importlib
import os
import pathlib
import platform
import shlex
import sys
import time
import traceback

from experiments.reporting import headline
from jitrl_jax import io as io_lib

_PACKAGE = "benchmarks"
_HERE = pathlib.Path(__file__).resolve().parent


def module_main(run_fn, doc: str) -> None:
  """The command line of one benchmark module: [--quick], prints its section.

  Args:
    run_fn: the module's `run(quick: bool) -> str`.
    doc: the module's docstring (its first line is the description).
  """
  parser = argparse.ArgumentParser(description=doc.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  print(run_fn(quick=parser.parse_args().quick))


def discover() -> list[str]:
  """Names of every `*_bench.py` module beside this file, sorted."""
  return sorted(p.stem for p in _HERE.glob("*_bench.py"))


def _meminfo_gib() -> str:
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemTotal:"):
          return f"{int(line.split()[1]) / 2**20:.1f} GiB"
  except OSError:
    pass
  return "unknown"


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def machine_info() -> list[str]:
  """Markdown bullet lines describing the machine and the software."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  try:
    import jaxlib  # pylint: disable=g-import-not-at-top

    jaxlib_version = jaxlib.__version__
  except (ImportError, AttributeError):
    jaxlib_version = "unknown"
  try:
    cores = len(os.sched_getaffinity(0))
  except AttributeError:
    cores = os.cpu_count()
  try:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
  except OSError:
    load = "unknown"
  devices = ", ".join(sorted({str(d.device_kind) for d in jax.devices()}))
  return [
      f"- machine: {platform.node() or 'unknown'}, {platform.platform()}",
      f"- CPU: {_cpu_model()}, {cores} usable cores (os.cpu_count() = "
      f"{os.cpu_count()}), memory {_meminfo_gib()}",
      f"- load average at start (1, 5, 15 min): {load}",
      f"- JAX backend: {jax.default_backend()} ({devices}), "
      f"{len(jax.devices())} device(s)",
      f"- software: Python {platform.python_version()}, jax {jax.__version__},"
      f" jaxlib {jaxlib_version}, numpy {np.__version__}",
  ]


def run_module(name: str, quick: bool) -> tuple[str, bool]:
  """Imports and runs one benchmark; returns (markdown, ok)."""
  try:
    module = importlib.import_module(f"{_PACKAGE}.{name}")
  except ImportError as e:
    return f"## {name}\n\nSkipped: could not import it ({e!r}).\n", True
  if not callable(getattr(module, "run", None)):
    return f"## {name}\n\nSkipped: it has no run(quick) function.\n", True
  start = time.perf_counter()
  try:
    section = module.run(quick=quick)
  except Exception as e:  # pylint: disable=broad-except
    tb = "".join(traceback.format_exception_only(type(e), e)).strip()
    print(traceback.format_exc(), file=sys.stderr)
    return f"## {name}\n\nFAILED: {tb}\n", False
  elapsed = time.perf_counter() - start
  section = section.rstrip("\n")
  return f"{section}\n\n_{name}: {elapsed:.1f} s in all._\n", True


def json_path(markdown_path: str) -> str:
  """Where the JSON copy of a markdown output goes: X.md -> X.json."""
  path = os.path.splitext(markdown_path)[0] + ".json"
  return path if path != markdown_path else markdown_path + ".json"


def write_outputs(path: str, markdown: str) -> None:
  """Writes the markdown and, beside it, its machine-readable JSON copy.

  Args:
    path: the markdown's path (e.g. BENCHMARKS.md).
    markdown: its text.
  """
  io_lib.atomic_write_text(path, markdown)
  io_lib.atomic_write_text(
      json_path(path), headline.benchmarks_json_text(markdown)
  )


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog=__doc__,
  )
  parser.add_argument(
      "names", nargs="*", help="benchmark modules (default: all *_bench)"
  )
  parser.add_argument("--out", default="BENCHMARKS.md", help="output file")
  parser.add_argument(
      "--quick", action="store_true", help="small sizes, few repeats (CI)"
  )
  parser.add_argument(
      "--only",
      action="append",
      default=[],
      help="run only these modules (repeatable or comma-separated)",
  )
  args = parser.parse_args(argv)
  names = list(args.names) or discover()
  only = [n for item in args.only for n in item.split(",") if n]
  if only:
    names = only if not args.names else [n for n in names if n in only]
  command = "python -m benchmarks.run " + " ".join(
      shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
  )
  started = datetime.datetime.now(datetime.timezone.utc)
  header = [
      "# Benchmarks",
      "",
      f"Generated {started:%Y-%m-%d %H:%M UTC} by `{command.strip()}`"
      f"{' (quick mode)' if args.quick else ''}.",
      "",
      *machine_info(),
      "",
      "Timings are wall-clock medians after a warm-up (compilation "
      "excluded) unless a section says otherwise.",
      "",
  ]
  sections, all_ok = [], True
  for name in names:
    print(f"[benchmarks] running {name} ...", file=sys.stderr, flush=True)
    section, ok = run_module(name, args.quick)
    all_ok &= ok
    sections.append(section)
    # Write after every module, so a long run leaves partial results.
    write_outputs(args.out, "\n".join(header) + "\n" + "\n".join(sections))
  if not names:
    write_outputs(args.out, "\n".join(header) + "\nNo benchmark modules.\n")
  print(
      f"[benchmarks] wrote {args.out} and {json_path(args.out)}",
      file=sys.stderr,
  )
  return 0 if all_ok else 1


if __name__ == "__main__":
  sys.exit(main())
