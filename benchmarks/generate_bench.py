"""Generating agents: tilted against plain decoding, and decision latency.

  python -m benchmarks.generate_bench [--quick]

Two measures (docs/method.md section 13), on the embedded SmolLM2-135M:

* **Decode tokens/s, tilted against plain.** The same prompt (the agent
  benchmark's 400 tokens), its KV cache prefilled once; then N new tokens
  decoded by `sampling.decode` with no hook (plain) and with
  `tilting.logits_fn` over S memory commands (tilted). No stop id ends a
  row early, so both loops run the same N steps; the tilt is built before
  the timed loop (its cost is in the decision latency below). The hook's
  work per step is the alive mask of the S commands and a scatter into the
  vocabulary, against one 135M-parameter forward of a token.
* **Decision latency, `jitrl-generate` against `jitrl`** (and
  `static-generate`), B = 1, on the agent benchmark's shapes: 400-token
  prompt, 10,000 memory entries, k = 10; `jitrl` scores 20 candidates
  (bucket 32, 8 tokens) plus 4 memory slots in one pass; the generating
  agents write up to `max_command_tokens` = 12 tokens, and `jitrl-generate`
  also scores the k neighbours' commands from the prompt's cache. Each is
  the agent's one jitted call, timed alternately in the same rounds. The
  generating agents' latency grows with the tokens written; the table says
  how many were written (the same key every call, so the same string).

`run(quick)` returns a markdown section for BENCHMARKS.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import agent_bench
from benchmarks import run as bench_runner
from benchmarks import timing
from jitrl_jax import agents as agent_lib
from jitrl_jax.agents import generate
from jitrl_jax.models import sampling
from jitrl_jax.models import tilting

NUM_COMMANDS = 10  # S, as k = 10 neighbours
NEW_TOKENS = 32  # N decoded in the tokens/s measure
COMMANDS = (
    "take lamp",
    "open the door",
    "go north",
    "put the coin in the box",
    "read the note",
    "examine table",
    "unlock door with key",
    "look",
    "inventory",
    "climb the stairs",
    "close the box",
    "go west",
)


def _prompt(lm, settings, rng):
  obs = agent_bench._observations(1, lm, rng)  # pylint: disable=protected-access
  return generate.prepare(settings, lm, obs)


def decode_rates(lm, *, reps: int) -> dict:
  """Tokens/s of plain and tilted decoding after the same prefilled prompt."""
  gen = lm.generator
  settings = agent_lib.make_agent(
      "static-generate", lm, prompt_buckets=(512,), max_command_tokens=12
  ).settings
  inputs = _prompt(lm, settings, np.random.default_rng(0))
  l = inputs.prompt_ids.shape[1]
  prefill = jax.jit(gen.prefill, static_argnums=3)
  first, cache = prefill(
      lm.params, inputs.prompt_ids, inputs.prompt_lengths, l + NEW_TOKENS
  )
  ids, lengths = tilting.pack_commands(
      [lm.encode(c) for c in COMMANDS[:NUM_COMMANDS]],
      stop_id=gen.stop_ids[0],
      stop_ids=gen.stop_ids,
      num_commands=NUM_COMMANDS,
      num_tokens=12,
      pad_id=lm.pad_id,
  )
  tokens, lengths = jnp.asarray(ids)[None], jnp.asarray(lengths)[None]

  @jax.jit
  def build_tilt(params, first, cache):
    token_logp, next_logp = generate.score_commands(
        gen, params, first, cache, inputs.prompt_lengths, tokens, lengths
    )
    adv = jnp.linspace(-1.0, 1.0, NUM_COMMANDS)[None]
    return jax.vmap(
        lambda *a, next_logits: tilting.make_tilt(
            *a,
            stop_ids=gen.stop_ids,
            max_len=NEW_TOKENS,
            next_logits=next_logits,
        ),
        in_axes=(0, 0, 0, 0, None, None),
    )(tokens, lengths, token_logp, adv, 0.0, 5.0, next_logits=next_logp)

  tilt = build_tilt(lm.params, first, cache)

  def make(hook):
    @jax.jit
    def run_decode(params, first, cache, tilt, key):
      def tokens_to_logits(toks, positions, cache):
        real = jnp.ones(toks.shape + (1,), bool)
        logits, cache = gen.extend(
            params, toks[:, None], positions[:, None], real, cache
        )
        return logits[:, 0], cache

      return sampling.decode(
          tokens_to_logits,
          first,
          cache,
          inputs.prompt_lengths,
          key,
          max_new_tokens=NEW_TOKENS,
          temperature=1.0,
          logits_fn=hook,
          stop_ids=(),  # N steps in both loops
          pad_id=lm.pad_id,
          logits_fn_state=tilt if hook is not None else None,
      ).tokens

    return lambda: timing.seconds(
        lambda: run_decode(lm.params, first, cache, tilt, jax.random.key(0))
    )

  times = timing.interleaved(
      {"plain": make(None), "tilted": make(tilting.logits_fn)}, reps
  )
  return {
      "prompt_tokens": int(inputs.prompt_lengths[0]),
      "plain_tps": NEW_TOKENS / times["plain"],
      "tilted_tps": NEW_TOKENS / times["tilted"],
      "tilt_build_s": timing.median_seconds(
          lambda: build_tilt(lm.params, first, cache), reps
      ),
  }


def _command_memory(agent, obs, rng):
  """The agent benchmark's memory, its actions the COMMANDS, plus one
  single-step episode per command in the state of `obs` (so that the k
  neighbours are real and their commands are in the action table)."""
  texts = {agent_lib.action_id(c): c for c in COMMANDS}
  memory = agent_bench._fill_memory(  # pylint: disable=protected-access
      agent,
      agent.init(),
      agent_bench.MEMORY_ENTRIES - len(COMMANDS),
      rng,
      action_ids=np.asarray(sorted(texts), np.int32),
  )
  carry = agent.restore(memory, texts, 1)
  views = agent.state_views(obs.current, obs.history, obs.task)
  return agent.observe(
      carry,
      [
          agent_lib.Trajectory(
              views=[views],
              actions=[c],
              rewards=[float(rng.normal())],
              task_id=0,
              episode_id=i + 1,
          )
          for i, c in enumerate(COMMANDS)
      ],
  )


def decision_latencies(lm, *, reps: int) -> dict:
  """B = 1 decision latency of jitrl, static-generate and jitrl-generate."""
  common = dict(
      memory_capacity=agent_bench.MEMORY_ENTRIES,
      beta=1.0,
      history_turns=0,
      prompt_buckets=(512,),
      max_observation_chars=agent_bench.MAX_CHARS,
      k=10,
  )
  calls, written = {}, {}
  for name in ("jitrl", "static-generate", "jitrl-generate"):
    extra = (
        dict(
            list_actions=False,
            candidate_buckets=(32,),
            token_buckets=(8,),
            memory_candidate_slots=agent_bench.MEMORY_SLOTS,
        )
        if name == "jitrl"
        else dict(max_command_tokens=12, token_buckets=(8, 12))
    )
    agent = agent_lib.make_agent(name, lm, **common, **extra)
    obs = agent_bench._observations(  # pylint: disable=protected-access
        1, lm, np.random.default_rng(1)
    )
    carry = _command_memory(agent, obs[0], np.random.default_rng(0))
    inputs = jax.device_put(agent.prepare(obs))
    key = jax.random.key(0)
    if name == "jitrl":
      call = lambda a=agent, c=carry, x=inputs: a.decide(
          lm.params, c.memory, c.table, x, key, c.state.episodes_done
      )
    else:
      table = carry.table
      if name == "jitrl-generate":
        t = generate.command_width(agent.settings, table.lengths)
        table = table._replace(tokens=table.tokens[:, :t])
      call = lambda a=agent, c=carry, x=inputs, tb=table: a.decide(
          lm.params, c.memory, tb, x, key
      )
      out = call()
      written[name] = int(out.lengths[0])
      if name == "jitrl-generate":
        written["memory_commands"] = int(np.sum(out.command_valid[0]))
    calls[name] = lambda call=call: timing.seconds(call)
  times = timing.interleaved(calls, reps)
  return {"seconds": times, "written": written}


def run(quick: bool = False) -> str:
  """Runs the benchmark; returns a markdown section."""
  lm = agent_lib.load_language_model()
  reps = 2 if quick else 7
  rates = decode_rates(lm, reps=reps)
  lat = decision_latencies(lm, reps=reps)
  ratio = rates["tilted_tps"] / rates["plain_tps"]
  ok = "✓" if ratio >= 0.85 else "NOT met"
  s, w = lat["seconds"], lat["written"]
  lines = [
      "## Generating a command (tilted decoding)",
      "",
      f"SmolLM2-135M (float32), after a {rates['prompt_tokens']}-token prompt "
      f"(bucket 512), B = 1; {NUM_COMMANDS} memory commands of 2 to 7 "
      f"tokens; median of {reps} interleaved rounds after a warm-up.",
      "",
      "| decoding | tokens/s | relative | target |",
      "|---|---:|---:|---:|",
      f"| plain (`sampling.decode`) | {rates['plain_tps']:.1f} | 1.00x | |",
      f"| tilted (`tilting.logits_fn`, S = {NUM_COMMANDS}) | "
      f"{rates['tilted_tps']:.1f} | {ratio:.2f}x {ok} | >= 0.85x |",
      "",
      f"{NEW_TOKENS} tokens a call, no stop id (both loops run every step). "
      "Building the tilt (scoring the memory commands from the prompt's "
      f"cache, then W over their prefix tree) takes "
      f"{rates['tilt_build_s']:.3f} s once per decision.",
      "",
      "Decision latency, one jitted call (agent benchmark shapes: "
      f"{agent_bench.MEMORY_ENTRIES} memory entries, k = 10):",
      "",
      "| agent | what the call does | latency (s) | vs jitrl |",
      "|---|---|---:|---:|",
      f"| `jitrl` | scores 20 + 4 candidates of 8 tokens, retrieval, "
      f"z + beta A, sample | {s['jitrl']:.3f} | 1.00x |",
      f"| `static-generate` | prefill, writes {w['static-generate']} tokens "
      f"| {s['static-generate']:.3f} | "
      f"{s['static-generate'] / s['jitrl']:.2f}x |",
      f"| `jitrl-generate` | prefill, retrieval, scores "
      f"{w['memory_commands']} memory commands, tilted write of "
      f"{w['jitrl-generate']} tokens | {s['jitrl-generate']:.3f} | "
      f"{s['jitrl-generate'] / s['jitrl']:.2f}x |",
  ]
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  bench_runner.module_main(run, __doc__)
