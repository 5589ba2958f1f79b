r"""How much probability the LM puts on other tokenisations of a command.

  .venv/bin/python tools/measure_tokenisations.py --out docs/tokenisations.json

The tilt of `jitrl-generate` (docs/method.md section 13) weighs a memory
command as one token string: its canonical tokenisation (`lm.encode`) and a
terminator. The LM can write the same text as other token strings ("look" as
"lo" + "ok"); those are "other" strings, with A_0, so the tilt misses their
mass. This measures that mass on the embedded SmolLM2-135M, after the
generating agents' own prompt for the first state of the two games of the
README (Detective, the demo's TextWorld Express game), for commands the runs
wrote there, at temperature 0.6 (the configs' base policy) and 1.

Search: best-first over the token strings that spell the text exactly: from
the prompt, a node's children are the tokens whose text is a prefix of what
is left to spell; a node that has spelt the whole text ends with any
terminator (`generate.command_stop_ids`), and its mass is counted. A node
below `--floor` times the canonical string's probability is not expanded,
and its probability (an upper bound on the mass below it) is reported as
`unexplored`, with the nodes left when `--max_nodes` is reached, so the
other tokenisations' total lies in [other, other + unexplored].
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from jitrl_jax import agents as agent_lib
from jitrl_jax import io as io_lib
from jitrl_jax.agents import generate
from jitrl_jax.agents import prompts
from jitrl_jax.envs import base as envs_base

GAMES = {
    "jericho:detective": (
        {},
        0,
        ("look", "1", "Take the white paper", "1 + 2 = 3"),
    ),
    "twx:twc": (
        {"game_params": ("numLocations=1,numItemsToPutAway=1,includeDoors=0")},
        3,
        (
            "look",
            "1. Pick up the laundry basket",
            "1. Open the laundry basket",
            "take dirty teal dress",
        ),
    ),
}
WIDTH = 16  # most tokens a spelling may have


def vocabulary(lm, size: int) -> dict[str, list[tuple[int, str]]]:
  """First character -> (id, text) of the tokens whose text starts with it."""
  by_first: dict[str, list[tuple[int, str]]] = {}
  for i in range(size):
    text = lm.generator.decode([i])
    if text and "\ufffd" not in text:
      by_first.setdefault(text[0], []).append((i, text))
  return by_first


def prompt_for(lm, spec, kwargs, seed):
  env = envs_base.make_env(spec, **kwargs)
  result = env.reset(seed=seed)
  views = env.view_texts()
  obs = agent_lib.GameObservation(
      observation=result.observation,
      current=views.current,
      history=views.history,
      task=views.task,
      valid_actions=(),
      recent=(),
      step=0,
  )
  settings = agent_lib.make_agent("static-generate", lm).settings
  return generate.prepare(settings, lm, [obs])


def measure(lm, inputs, text, by_first, *, temperature, floor, max_nodes):
  """The mass of `text` + terminator over its spellings (see the docstring)."""
  gen = lm.generator
  stops = list(generate.command_stop_ids(lm))
  l = inputs.prompt_ids.shape[1]
  first, cache = jax.jit(gen.prefill, static_argnums=3)(
      lm.params, inputs.prompt_ids, inputs.prompt_lengths, l + WIDTH
  )
  n0 = int(inputs.prompt_lengths[0])

  @jax.jit
  def next_logp(params, tokens, length):
    positions = n0 + jnp.arange(WIDTH)[None]
    real = jnp.arange(WIDTH)[None] < length
    logits, _ = gen.extend(params, tokens[None], positions, real, cache)
    z = jnp.where(length == 0, first[0], logits[0, jnp.maximum(length - 1, 0)])
    return jax.nn.log_softmax(z / temperature)

  def dist(prefix):
    toks = np.zeros((WIDTH,), np.int32)
    toks[: len(prefix)] = prefix
    return np.asarray(next_logp(lm.params, toks, len(prefix)), np.float64)

  canonical = tuple(lm.encode(text))
  logp_canonical = 0.0
  for k, t in enumerate(canonical):
    logp_canonical += dist(canonical[:k])[t]
  logp_canonical += np.logaddexp.reduce(dist(canonical)[stops])
  cut = logp_canonical + math.log(floor)

  heap = [(-0.0, (), text)]
  found, unexplored, nodes = [], 0.0, 0
  while heap:
    neg, prefix, rest = heapq.heappop(heap)
    if nodes >= max_nodes:
      unexplored += math.exp(-neg)
      continue
    nodes += 1
    logp = dist(prefix)
    if not rest:
      found.append((prefix, -neg + np.logaddexp.reduce(logp[stops])))
      continue
    for i, piece in by_first.get(rest[0], ()):
      if not rest.startswith(piece) or len(prefix) + 1 >= WIDTH:
        continue
      child = -neg + logp[i]
      if child < cut:
        unexplored += math.exp(child)
      else:
        heapq.heappush(heap, (-child, prefix + (i,), rest[len(piece) :]))
  others = [(p, lp) for p, lp in found if p != canonical]
  other = float(sum(math.exp(lp) for _, lp in others))
  return {
      "text": text,
      "temperature": temperature,
      "canonical_tokens": len(canonical),
      "p_canonical": math.exp(logp_canonical),
      "p_other_tokenisations": other,
      "other_tokenisations_found": len(others),
      "unexplored_upper_bound": unexplored,
      "share_missed_by_the_tilt": other / (other + math.exp(logp_canonical)),
      "nodes_expanded": nodes,
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="docs/tokenisations.json")
  parser.add_argument("--floor", type=float, default=1e-6)
  parser.add_argument("--max_nodes", type=int, default=400)
  args = parser.parse_args(argv)
  lm = agent_lib.load_language_model()
  by_first = None
  rows = []
  for spec, (kwargs, seed, commands) in GAMES.items():
    inputs = prompt_for(lm, spec, kwargs, seed)
    if by_first is None:
      first, _ = lm.generator.prefill(
          lm.params,
          inputs.prompt_ids,
          inputs.prompt_lengths,
          inputs.prompt_ids.shape[1],
      )
      by_first = vocabulary(lm, int(first.shape[-1]))
    for text in commands:
      for temperature in (0.6, 1.0):
        row = measure(
            lm,
            inputs,
            text,
            by_first,
            temperature=temperature,
            floor=args.floor,
            max_nodes=args.max_nodes,
        )
        row["game"] = spec
        print(json.dumps(row), flush=True)
        rows.append(row)
  io_lib.atomic_write_text(
      args.out,
      json.dumps(
          {
              "prompt": "generate.prepare (first state, seed as in the runs)",
              "reply_prefix": prompts.REPLY_PREFIX,
              "floor": args.floor,
              "max_nodes": args.max_nodes,
              "rows": rows,
          },
          indent=1,
      )
      + "\n",
  )
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
