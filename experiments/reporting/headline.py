"""BENCHMARKS.md as data, and the README's benchmark headline table.

parse_benchmarks_markdown reads BENCHMARKS.md's tables, prose and machine
lines into a dict; benchmarks.run writes that dict beside it as
BENCHMARKS.json (benchmarks_json_text), and load_benchmarks refuses a
BENCHMARKS.json that is not the parse of the markdown beside it. HEADLINE
names each row of the headline and where in the data its figure is;
headline_table renders them against the issues' targets.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Callable, Mapping

from experiments.reporting import runs as runs_lib
from experiments.reporting import tables


def _split_row(line: str) -> list[str]:
  return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_benchmarks_markdown(text: str) -> dict[str, Any]:
  """BENCHMARKS.md (as benchmarks.run writes it) as a dict.

  Cells stay the markdown's text ("9.98 ms", "1.12x ✓"): the dict holds what
  the markdown says, to the same precision, and no more.

  Args:
    text: the markdown.

  Returns:
    {"format", "title", "generated", "command", "machine": {label: text},
    "sections": [{"path": [heading, subheading...], "module", "seconds",
    "text": [paragraphs and bullets], "tables": [{"columns": [...], "rows":
    [[cell, ...]]}]}]}. "module" and "seconds" come from a section's closing
    "_name: S s in all._" line.
  """
  data: dict[str, Any] = {
      "format": runs_lib.REPORT_FORMAT,
      "title": "",
      "generated": "",
      "command": "",
      "machine": {},
      "sections": [],
  }
  path: list[str] = []
  section: dict[str, Any] | None = None
  table: dict[str, Any] | None = None
  paragraph: list[str] = []

  def flush():
    if paragraph and section is not None:
      section["text"].append(" ".join(paragraph))
    paragraph.clear()

  for raw in text.splitlines():
    line = raw.strip()
    heading = re.match(r"^(#+)\s+(.*)$", line)
    if not line.startswith("|"):
      table = None
    if heading:
      flush()
      level, title = len(heading.group(1)), heading.group(2).strip()
      if level == 1:
        data["title"] = title
        continue
      path = path[: level - 2] + [title]
      section = {
          "path": list(path),
          "module": "",
          "seconds": None,
          "text": [],
          "tables": [],
      }
      data["sections"].append(section)
    elif not line:
      flush()
    elif line.startswith("|"):
      flush()
      cells = _split_row(line)
      if table is None:
        table = {"columns": cells, "rows": []}
        if section is not None:
          section["tables"].append(table)
      elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
        table["rows"].append(cells)
    elif section is None:
      generated = re.match(r"^Generated (.*?) by `(.*?)`", line)
      item = re.match(r"^- ([^:]+): (.*)$", line)
      if generated:
        data["generated"], data["command"] = generated.groups()
      elif item:
        data["machine"][item.group(1)] = item.group(2)
    else:
      timing = re.match(r"^_(\w+): ([\d.]+) s in all\._$", line)
      if timing:
        flush()
        top = next(
            s
            for s in reversed(data["sections"])
            if len(s["path"]) == 1 and s["path"][0] == path[0]
        )
        top["module"], top["seconds"] = timing.group(1), float(timing[2])
      elif line.startswith(("* ", "- ")):
        flush()
        section["text"].append(line[2:])
      else:
        paragraph.append(line)
  flush()
  return data


def benchmarks_json_text(markdown: str) -> str:
  """The JSON copy of a BENCHMARKS.md, as benchmarks.run writes it."""
  return (
      json.dumps(
          parse_benchmarks_markdown(markdown), indent=1, ensure_ascii=False
      )
      + "\n"
  )


def load_benchmarks(md_path: str) -> dict[str, Any]:
  """Parses BENCHMARKS.md; checks a BENCHMARKS.json beside it against it.

  Args:
    md_path: the markdown.

  Returns:
    parse_benchmarks_markdown of the markdown.

  Raises:
    ReportError: the JSON beside it is not the markdown's parse (stale).
  """
  with open(md_path, encoding="utf-8") as f:
    data = parse_benchmarks_markdown(f.read())
  json_path = os.path.splitext(md_path)[0] + ".json"
  if os.path.exists(json_path):
    with open(json_path, encoding="utf-8") as f:
      if json.load(f) != data:
        raise runs_lib.ReportError(
            f"{json_path} is not the data of {md_path}: rerun `make bench`, "
            "which writes both"
        )
  return data


def _section(data: Mapping[str, Any], *prefixes: str) -> dict[str, Any]:
  """The section whose heading path starts with these prefixes."""
  for s in data["sections"]:
    if len(s["path"]) == len(prefixes) and all(
        h.startswith(p) for h, p in zip(s["path"], prefixes)
    ):
      return s
  raise LookupError(f"no section {' > '.join(prefixes)}")


def _cell(section, column: str, **match: str) -> str:
  """The cell of `column` in the section's table row matching `match`."""
  for table in section["tables"]:
    cols = table["columns"]
    if column not in cols or any(c not in cols for c in match):
      continue
    for row in table["rows"]:
      if all(row[cols.index(c)] == v for c, v in match.items()):
        return row[cols.index(column)].replace("✓", "").strip()
  raise LookupError(f"no {column} where {match} in {section['path']}")


def _prose(section, pattern: str) -> str:
  """The first group of the first text of the section matching pattern."""
  for text in section["text"]:
    m = re.search(pattern, text)
    if m:
      return m.group(1)
  raise LookupError(f"no {pattern!r} in {section['path']}")


def _number(text: str) -> float:
  m = re.match(r"^\s*([\d,]*\.?\d+)", text)
  if not m:
    raise LookupError(f"no number in {text!r}")
  return float(m.group(1).replace(",", ""))


@dataclasses.dataclass(frozen=True)
class Headline:
  """One row of the benchmark headline.

  Attributes:
    what: the first column.
    figure: data -> (the figure's text, the values checked against the
      target).
    target: the lower bound the issues set, or None.
    unit: the target's unit ("x" for a ratio, "" for a fraction).
  """

  what: str
  figure: Callable[[Mapping[str, Any]], tuple[str, list[float]]]
  target: float | None = None
  unit: str = "x"


_RETRIEVAL = "Retrieval: similarity scans"
_M = {"M": "100,000"}


def _jaccard(kind: str, column: str):
  def figure(data):
    t = _cell(_section(data, _RETRIEVAL, "Time for one query"), column, **_M)
    x = _cell(
        _section(data, _RETRIEVAL, "Speed-ups"), f"{kind} vs Counter, 1 q", **_M
    )
    return f"{t}, {x}", [_number(x)]

  return figure


def _bandwidth(data):
  f = _cell(
      _section(data, _RETRIEVAL, "Bitset scan bandwidth"),
      "fraction of copy rate",
      **_M,
  )
  return f, [_number(f)]


def _lm(measure: str, unit: str):
  def figure(data):
    s = _section(data, "Language model")
    jax_rate = _cell(s, "JAX", **{"measure (tokens/s)": measure})
    ratio = _cell(s, "JAX / best torch", **{"measure (tokens/s)": measure})
    return f"{jax_rate} {unit}, {ratio}", [_number(ratio)]

  return figure


def _one_pass(data):
  s = _section(data, "Language model")
  method = "one pass (`score_candidates`, block mask)"
  seconds = _cell(s, "seconds", method=method)
  speed_up = _cell(s, "speed-up", method=method).split("(")[0].strip()
  return f"{seconds} s, {speed_up}", [_number(speed_up)]


def _decision(data):
  s = _section(data, "Agent step")
  latency = _cell(s, "decision latency (s)", B="1")
  lm = _cell(s, "LM scoring", B="1").split("(")[0].strip()
  return f"{latency} s (LM scoring timed alone: {lm})", []


def _batch(data):
  s = _section(data, "Agent step")
  ratio = _prose(s, r"B = 8 gives ([\d.]+)x")
  bound = _prose(s, r"could give at most ([\d.]+)x")
  return f"{ratio}x (roofline bound here: {bound}x)", [float(ratio)]


def _theory_rate(data):
  s = _section(data, "Theory lab")
  rate = _cell(
      s,
      "agent-episodes / s",
      **{"memory, k": "M = 256, k = 16", "agents": "1,000", "how": "vmapped"},
  )
  return f"{rate} agent-episodes/s", []


def _vmapped(data):
  s = _section(data, "Theory lab")
  big = _prose(s, r"^M = 256, k = 16: vmapped over .* agents ([\d.]+)x")
  small = _prose(s, r"^M = 16, k = 4: vmapped over .* agents ([\d.]+)x")
  return f"{big}x (M = 256), {small}x (M = 16)", [float(big), float(small)]


def _sharded(data):
  s = _section(data, "Theory lab", "Sharded retrieval")
  rows = s["tables"][0]["rows"]
  unequal = [r[0] for r in rows if r[1] != "yes"]
  if unequal:
    return f"NOT bitwise equal on {', '.join(unequal)} devices", []
  return "bitwise equal to unsharded", []


def _tilted(data):
  s = _section(data, "Generating a command")
  rate = _cell(s, "tokens/s", decoding=_tilted_label(s))
  ratio = _cell(s, "relative", decoding=_tilted_label(s)).split(" ")[0]
  return f"{rate} tok/s, {ratio}", [_number(ratio)]


def _tilted_label(section) -> str:
  """The tilted row's label (it names S)."""
  for table in section["tables"]:
    for row in table["rows"]:
      if row and row[0].startswith("tilted"):
        return row[0]
  raise LookupError("no tilted decoding row")


def _generate_latency(data):
  s = _section(data, "Generating a command")
  got = _cell(s, "latency (s)", agent="`jitrl-generate`")
  ratio = _cell(s, "vs jitrl", agent="`jitrl-generate`")
  return f"{got} s, {ratio} of `jitrl`'s", []


HEADLINE = (
    Headline(
        "exact Jaccard, 1 query against 10^5 entries, against Python "
        "`Counter`",
        _jaccard("exact", "JAX exact (hash)"),
        20,
    ),
    Headline("bitset Jaccard, same", _jaccard("bitset", "JAX bitset"), 1000),
    Headline(
        "bitset scan, bytes read per second against a NumPy copy",
        _bandwidth,
        0.5,
        "",
    ),
    Headline(
        "Flax Llama prefill, 512 tokens, against torch (best of 1 and 2 "
        "threads)",
        _lm("prefill 512 tokens", "tok/s"),
        1,
    ),
    Headline(
        "Flax Llama decode, against torch",
        _lm("decode after 128 tokens, 32 steps", "tok/s"),
        0.7,
    ),
    Headline(
        "one-pass scoring of 32 candidates against 32 forwards", _one_pass, 5
    ),
    Headline(
        "one JitRL decision (400-token prompt, 20 candidates, 10k memory), "
        "B = 1",
        _decision,
    ),
    Headline(
        "B = 8 games at once, decisions per second against B = 1", _batch, 3
    ),
    Headline(
        "tilted decoding (the LM writes the command, S = 10 memory "
        "commands) against plain, tokens/s",
        _tilted,
        0.85,
    ),
    Headline(
        "one `jitrl-generate` decision (prefill, 10 memory commands scored, "
        "tilted write), B = 1",
        _generate_latency,
    ),
    Headline(
        "theory lab, 1,000 vmapped agents (M = 256, k = 16)", _theory_rate
    ),
    Headline("vmapped against a Python loop, 100 agents", _vmapped, 20),
    Headline("sharded retrieval on 1, 2, 4, 8 fake devices", _sharded),
)


def headline_table(data: Mapping[str, Any]) -> str:
  """The README's benchmark headline table from BENCHMARKS.md's data.

  Figures are BENCHMARKS.md's cells and sentences as written (no rounding
  again); "met" means every value checked is at least the target. A figure
  missing from the data (a skipped module) says so.

  Args:
    data: parse_benchmarks_markdown of BENCHMARKS.md.

  Returns:
    The markdown table.
  """
  backend = data["machine"].get("JAX backend", "").split(" ")[0].upper()
  lines = ["| what | figure | target in the issues |", "|---|---:|---|"]
  for row in HEADLINE:
    try:
      figure, values = row.figure(data)
    except LookupError:
      figure, values = "not in BENCHMARKS.md", []
    target = ""
    if row.target is not None:
      target = f">= {row.target:g}{row.unit}"
      if values:
        met = all(v >= row.target for v in values)
        target += ": met" if met else f": not met on {backend or 'this run'}"
    lines.append(tables.md_row([row.what, figure, target]))
  return "\n".join(lines)
