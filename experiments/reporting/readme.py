"""The README's generated blocks: registry, render, check and update.

Every block of the README between `<!-- report:NAME begin -->` and
`<!-- report:NAME end -->` is generated from the committed files that
README_BLOCKS names (paths relative to the README's folder): text-game
statistics from runs' results.json files (RunsBlock), with a report JSON
and a figure beside them, or the benchmark headline from BENCHMARKS.md
(BenchmarksBlock). check_readme says what `make report` would change;
update_readme changes it, writing every file atomically.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from typing import Any, Callable

from experiments.reporting import headline
from experiments.reporting import runs as runs_lib
from experiments.reporting import tables
from experiments.reporting import web as web_lib
from jitrl_jax import io as io_lib


@dataclasses.dataclass(frozen=True)
class RunsBlock:
  """A README block of text-game statistics.

  Attributes:
    runs: glob of the runs' results.json, relative to the README's folder.
    k: the first-k / last-k window.
    figure: the PNG the block shows (written by make report).
    json: the report JSON written beside it.
    baseline: the agent the others are tested against.
    beside: more globs of runs shown beside them (the same game).
    agents: only these agents' runs (None: all), in this order (names after
      `labels`).
    labels: one suffix per glob (runs, then beside) added to its runs'
      agent names, e.g. the model, so that the same agents on two models
      are told apart (empty: names as they are).
  """

  runs: str
  k: int
  figure: str
  json: str
  baseline: str = runs_lib.BASELINE
  beside: tuple[str, ...] = ()
  agents: tuple[str, ...] | None = None
  labels: tuple[str, ...] = ()

  def sources(self) -> str:
    """The globs, as the "generated from" comment names them."""
    return ", ".join((self.runs,) + self.beside)


@dataclasses.dataclass(frozen=True)
class SuiteBlock:
  """A README block of several games: one table and one figure of panels.

  Attributes:
    runs: glob of the runs' results.json (one per game and seed).
    k: the last-k window.
    figure: the PNG (one panel per game).
    json: the report JSON written beside it.
    baseline: the agent the others are tested against in the JSON.
  """

  runs: str
  k: int
  figure: str
  json: str
  baseline: str = runs_lib.BASELINE


@dataclasses.dataclass(frozen=True)
class WebSuiteBlock:
  """A README block of the MiniWoB++ suite: table, paired test, figures.

  Attributes:
    runs: glob of the web suites' results.json (one per seed).
    k: the first-k / last-k window (episodes of a task).
    figure: the PNG of the success curves (one panel per task).
    json: the report JSON written beside it.
    strip: a committed PNG of one episode's screenshots (copied from a
      run's strip.png), shown when it exists.
    baseline: the agent the others are compared with.
  """

  runs: str
  k: int
  figure: str
  json: str
  strip: str = ""
  baseline: str = runs_lib.BASELINE


@dataclasses.dataclass(frozen=True)
class BenchmarksBlock:
  """A README block holding the benchmark headline of a BENCHMARKS.md."""

  source: str = "BENCHMARKS.md"


README_BLOCKS: dict[
    str, RunsBlock | SuiteBlock | WebSuiteBlock | BenchmarksBlock
] = {
    "jericho-detective": RunsBlock(
        runs="docs/jericho_detective*_results.json",
        k=5,
        figure="docs/jericho_detective_seeds_curve.png",
        json="docs/jericho_detective_report.json",
    ),
    # The LM writes its commands (docs/method.md section 13), beside the
    # agents that pick from the game's list.
    **{
        f"generate-{game}": RunsBlock(
            runs=f"docs/generate_{game}_seed*_results.json",
            beside=(beside,),
            agents=("static-generate", "jitrl-generate", "static", "jitrl"),
            k=5,
            figure=f"docs/generate_{game}_seeds_curve.png",
            json=f"docs/generate_{game}_report.json",
            baseline="static-generate",
        )
        for game, beside in (
            ("detective", "docs/jericho_detective*_results.json"),
            ("twx", "docs/demo_seed*_results.json"),
        )
    },
    # The second embedded model (Gemma 3 270M, base) beside SmolLM2.
    "gemma-detective": RunsBlock(
        runs="docs/gemma_detective_seed*_results.json",
        beside=("docs/jericho_detective*_results.json",),
        labels=(" · Gemma 3 270M", " · SmolLM2"),
        agents=tuple(
            f"{a} · {m}"
            for m in ("Gemma 3 270M", "SmolLM2")
            for a in ("static", "jitrl")
        ),
        baseline="static · Gemma 3 270M",
        k=5,
        figure="docs/gemma_detective_curve.png",
        json="docs/gemma_detective_report.json",
    ),
    # The seven Jericho games, static against jitrl (experiments/run_suite.py).
    "jericho-suite": SuiteBlock(
        runs="docs/suite_seed*_results.json",
        k=5,
        figure="docs/jericho_suite_curves.png",
        json="docs/jericho_suite_report.json",
    ),
    # Twelve MiniWoB++ tasks in Chromium (experiments/run_web_suite.py).
    "miniwob-suite": WebSuiteBlock(
        runs="docs/miniwob_suite_seed*_results.json",
        k=10,
        figure="docs/miniwob_suite_curves.png",
        json="docs/miniwob_suite_report.json",
        strip="docs/miniwob_strip.png",
    ),
    "benchmarks-headline": BenchmarksBlock(),
}

_BLOCK = re.compile(
    r"<!-- report:(?P<name>[\w-]+) begin -->\n(?P<body>.*?)"
    r"<!-- report:(?P=name) end -->",
    re.DOTALL,
)


def readme_blocks(text: str) -> dict[str, str]:
  """The generated blocks of a README: name -> body.

  Args:
    text: the README.

  Returns:
    name -> the text between its begin line and its end marker.

  Raises:
    ReportError: markers that do not pair up, or a name used twice.
  """
  blocks = {}
  for m in _BLOCK.finditer(text):
    if m["name"] in blocks:
      raise runs_lib.ReportError(f"README block {m['name']} appears twice")
    blocks[m["name"]] = m["body"]
  begins = re.findall(r"<!-- report:([\w-]+) begin -->", text)
  ends = re.findall(r"<!-- report:([\w-]+) end -->", text)
  if sorted(begins) != sorted(blocks) or sorted(ends) != sorted(blocks):
    raise runs_lib.ReportError(
        "README report markers do not pair up: begin "
        f"{begins}, end {ends}; each block is `<!-- report:NAME begin -->` "
        "on its own line ... `<!-- report:NAME end -->`"
    )
  return blocks


@dataclasses.dataclass
class Generated:
  """What one README block is made of.

  Attributes:
    body: the block's text (ends in a newline).
    texts: text files to write beside it (path -> content).
    figures: figures to write (path -> writer taking the path).
  """

  body: str
  texts: dict[str, str] = dataclasses.field(default_factory=dict)
  figures: dict[str, Callable[[str], Any]] = dataclasses.field(
      default_factory=dict
  )


def generate_block(name: str, root: str, blocks=None) -> Generated:
  """Generates one README block from the committed files under root.

  Args:
    name: the block's name.
    root: the README's folder (the block's paths are relative to it).
    blocks: the registry (default README_BLOCKS).

  Returns:
    The block's text and the files that go with it.

  Raises:
    ReportError: an unknown block, or runs of more than one game.
  """
  blocks = README_BLOCKS if blocks is None else blocks
  if name not in blocks:
    raise runs_lib.ReportError(
        f"README block {name} is not one of experiments.reporting.readme's "
        f"README_BLOCKS ({', '.join(blocks)})"
    )
  spec = blocks[name]
  if isinstance(spec, BenchmarksBlock):
    data = headline.load_benchmarks(os.path.join(root, spec.source))
    return Generated(
        "<!-- Generated by `make report` (experiments/report.py) from "
        f"{spec.source}; do not edit by hand. -->\n\n"
        + headline.headline_table(data)
        + "\n"
    )
  if isinstance(spec, SuiteBlock):
    return _suite_block(spec, root)
  if isinstance(spec, WebSuiteBlock):
    return _web_block(spec, root)
  globs = (spec.runs,) + spec.beside
  labels = spec.labels or ("",) * len(globs)
  runs = [
      dataclasses.replace(
          r, agent=r.agent + label, source=os.path.relpath(r.source, root)
      )
      for g, label in zip(globs, labels, strict=True)
      for r in runs_lib.load_runs([os.path.join(root, g)])
  ]
  runs = [r for r in runs if spec.agents is None or r.agent in spec.agents]
  if spec.agents is not None:
    runs.sort(key=lambda r: spec.agents.index(r.agent))
  report = runs_lib.build_report(runs, spec.k, baseline=spec.baseline)
  if len(report["games"]) != 1:
    raise runs_lib.ReportError(
        f"{spec.sources()} holds runs of {list(report['games'])}"
    )
  game = next(iter(report["games"].values()))
  body = tables.game_markdown(game, spec.figure, spec.sources()) + "\n"
  return Generated(
      body,
      texts={spec.json: runs_lib.report_json_text(report)},
      figures={spec.figure: lambda path: tables.plot_pooled_curves(game, path)},
  )


def _suite_block(spec: SuiteBlock, root: str) -> Generated:
  """A `SuiteBlock`'s text, report JSON and figure."""
  runs = [
      dataclasses.replace(r, source=os.path.relpath(r.source, root))
      for r in runs_lib.load_runs([os.path.join(root, spec.runs)])
  ]
  report = runs_lib.build_report(runs, spec.k, baseline=spec.baseline)
  games = len(report["games"])
  body = "\n\n".join(
      [
          "<!-- Generated by `make report` (experiments/report.py) from "
          f"{spec.runs}; do not edit by hand. -->",
          f"![{games} Jericho games: score per episode, one panel per game]"
          f"({spec.figure})",
          tables.suite_table(report),
      ]
  )
  return Generated(
      body + "\n",
      texts={spec.json: runs_lib.report_json_text(report)},
      figures={
          spec.figure: lambda path: tables.plot_suite_curves(report, path)
      },
  )


def _web_block(spec: WebSuiteBlock, root: str) -> Generated:
  """A `WebSuiteBlock`'s text, report JSON and figure."""
  runs = web_lib.load_suite_runs(os.path.join(root, spec.runs))
  report = web_lib.web_report(runs, spec.k, baseline=spec.baseline)
  parts = [
      "<!-- Generated by `make report` (experiments/report.py) from "
      f"{spec.runs}; do not edit by hand. -->",
      f"![{len(report['tasks'])} MiniWoB++ tasks: success per episode, one "
      f"panel per task]({spec.figure})",
      f"Success rate of the last {spec.k} episodes of every task, pooled "
      f"over seeds {', '.join(str(s) for s in report['seeds'])} "
      "(Wilson 95% interval); the last rows pool all tasks, last and first "
      f"{spec.k} episodes.",
      web_lib.web_table(report),
  ]
  paired = web_lib.paired_text(report)
  if paired:
    parts.append(paired)
  if spec.strip and os.path.exists(os.path.join(root, spec.strip)):
    parts.append(
        f"![One episode in the browser, the page before every action and "
        f"at the end]({spec.strip})"
    )
  return Generated(
      "\n\n".join(parts) + "\n",
      texts={spec.json: runs_lib.report_json_text(report)},
      figures={spec.figure: lambda path: web_lib.plot_web_curves(report, path)},
  )


def render_readme(
    text: str, root: str, blocks=None
) -> tuple[str, dict[str, Generated]]:
  """The README with every block regenerated.

  Args:
    text: the README.
    root: its folder.
    blocks: the registry (default README_BLOCKS).

  Returns:
    (the new README text, name -> Generated).
  """
  generated = {
      name: generate_block(name, root, blocks) for name in readme_blocks(text)
  }

  def replace(m):
    return (
        f"<!-- report:{m['name']} begin -->\n{generated[m['name']].body}"
        f"<!-- report:{m['name']} end -->"
    )

  return _BLOCK.sub(replace, text), generated


def check_readme(readme: str, blocks=None) -> list[str]:
  """What `make report` would change: one message (with a diff) per problem.

  Args:
    readme: the README's path.
    blocks: the registry (default README_BLOCKS).

  Returns:
    Messages; empty when every block, report JSON and figure is up to date.
  """
  root = os.path.dirname(os.path.abspath(readme))
  with open(readme, encoding="utf-8") as f:
    text = f.read()
  problems = []
  current = readme_blocks(text)
  new_text, generated = render_readme(text, root, blocks)
  new_blocks = readme_blocks(new_text)
  for name, body in current.items():
    if body != new_blocks[name]:
      diff = difflib.unified_diff(
          body.splitlines(keepends=True),
          new_blocks[name].splitlines(keepends=True),
          f"{readme} block {name}",
          "generated",
      )
      problems.append(f"block {name} differs:\n{''.join(diff)}")
  for g in generated.values():
    for path, content in g.texts.items():
      full = os.path.join(root, path)
      if not os.path.exists(full):
        problems.append(f"{path} is missing")
        continue
      with open(full, encoding="utf-8") as f:
        old = f.read()
      if old != content:
        diff = difflib.unified_diff(
            old.splitlines(keepends=True),
            content.splitlines(keepends=True),
            path,
            "generated",
        )
        problems.append(f"{path} differs:\n{''.join(diff)}")
    for path in g.figures:
      if not os.path.exists(os.path.join(root, path)):
        problems.append(f"{path} is missing")
  return problems


def update_readme(readme: str, blocks=None) -> list[str]:
  """Rewrites the README's blocks in place; writes their JSON and figures.

  Args:
    readme: the README's path.
    blocks: the registry (default README_BLOCKS).

  Returns:
    The paths written.
  """
  root = os.path.dirname(os.path.abspath(readme))
  with open(readme, encoding="utf-8") as f:
    text = f.read()
  new_text, generated = render_readme(text, root, blocks)
  written = []
  for g in generated.values():
    for path, content in g.texts.items():
      io_lib.atomic_write_text(
          os.path.join(root, path), content, make_parents=True
      )
      written.append(path)
    for path, writer in g.figures.items():
      writer(os.path.join(root, path))
      written.append(path)
  if new_text != text:
    io_lib.atomic_write_text(readme, new_text, make_parents=True)
    written.append(readme)
  return written
