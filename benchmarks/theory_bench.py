"""Theory-lab throughput and sharded retrieval.

  python -m benchmarks.theory_bench [--quick]

1. Theory lab (experiments/theory_lab.py), contextual bandit, closed_form
   rule: agent-episodes per second with 1, 100 and 1,000 agents vmapped in
   one jitted program (each agent: `episodes` episodes of `horizon` steps
   under `lax.scan`), against a Python loop that calls a jitted
   single-agent run (the same scan, no vmap) once per agent, for 100 agents.
   Two memory settings: the lab's default (M = 256, k = 16), where each
   agent's step is a real similarity scan, and a small one (M = 16, k = 4),
   where per-call overhead dominates. Compilation is excluded (a warm-up
   call); timings are medians of repeated calls, each ended by
   `block_until_ready`.
2. Sharded retrieval (jitrl_jax/sharding.py) on 1, 2, 4 and 8 fake CPU
   devices, each in a subprocess with
   XLA_FLAGS=--xla_force_host_platform_device_count=D (it must be set before
   JAX initialises): a memory of M entries split along its capacity, a batch
   of replicated queries, top-k; checked equal to the unsharded jitted
   retrieval, then timed. Fake devices share the same cores, so no absolute
   speed-up is expected: this measures the cost of the split and merge.
"""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import jax
import numpy as np

from benchmarks import run as bench_runner
from benchmarks import timing

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lab_throughput(quick: bool, *, memory_size: int, k: int) -> dict:
  """Agent-episodes per second: vmapped (1, 100, 1000) and a Python loop."""
  from experiments import theory_lab  # pylint: disable=g-import-not-at-top
  from experiments.configs import (  # pylint: disable=g-import-not-at-top
      theory_lab as lab_config,
  )

  cfg = theory_lab.resolve_config(lab_config.get_config())
  episodes = 5 if quick else 20
  cfg.episodes = episodes
  cfg.jitrl.memory_size = memory_size
  cfg.jitrl.k = k
  env = theory_lab.make_env(cfg, "bandit")
  settings = theory_lab.settings_for(cfg)
  hyper = theory_lab.default_hyper(cfg)
  rule = theory_lab.rule_id("closed_form")
  runner = theory_lab.make_runner(env, settings)
  repeats = 3 if quick else 5
  out = {
      "episodes": episodes,
      "horizon": env.horizon,
      "memory": settings.memory_size,
      "k": settings.k_max,
  }
  vmapped = {}
  for agents in (1, 100, 1000):
    keys = theory_lab.agent_keys(0, agents)
    t = timing.median_seconds(lambda k=keys: runner(rule, hyper, k), repeats)
    vmapped[agents] = {
        "seconds": t,
        "agent_episodes_per_s": agents * episodes / t,
    }
  out["vmapped"] = vmapped

  single = jax.jit(
      lambda key: theory_lab.run_agent(env, settings, hyper, rule, key)
  )
  loop_agents = 100
  keys = theory_lab.agent_keys(0, loop_agents)

  def loop():
    return [single(keys[i]) for i in range(loop_agents)]

  t = timing.median_seconds(loop, 1 if quick else 3)
  out["loop"] = {
      "agents": loop_agents,
      "seconds": t,
      "agent_episodes_per_s": loop_agents * episodes / t,
  }
  out["speedup_100"] = (
      vmapped[100]["agent_episodes_per_s"] / out["loop"]["agent_episodes_per_s"]
  )
  return out


_SHARDED = textwrap.dedent("""\
    import json, sys, time
    import jax, jax.numpy as jnp, numpy as np
    from jitrl_jax import memory as memory_lib, retrieval, sharding
    from jitrl_jax import token_sets
    m, b, k, s, repeats = (int(x) for x in sys.argv[1:6])
    ref_path = sys.argv[6]
    d = len(jax.devices())
    rng = np.random.default_rng(0)
    def views(n):
      ids = np.sort(rng.choice(4000, size=(n, s)), axis=1).astype(np.int32)
      dup = np.zeros_like(ids, bool)
      dup[:, 1:] = ids[:, 1:] == ids[:, :-1]
      ids = np.where(dup, 2**30 + np.arange(s), ids)  # unique per row
      ids = np.sort(ids, axis=1)
      return (token_sets.TokenSet(jnp.asarray(ids),
                                  jnp.ones((n, s), jnp.float32)),)
    memory = memory_lib.init(m, (s,))
    memory = jax.jit(memory_lib.add_episode)(
        memory, views(m), jnp.asarray(rng.integers(0, 8, m), jnp.int32),
        jnp.asarray(rng.normal(size=m), jnp.float32), jnp.zeros((m,)),
        jnp.ones((m,), bool), jnp.int32(0), jnp.int32(0))
    queries = views(b)
    if d == 1:  # The unsharded reference, computed once and saved.
      ref = jax.jit(jax.vmap(lambda q: retrieval.top_k_neighbours(
          memory, q, k=k, weights=(1.0,))))(queries)
      np.savez(ref_path, *[np.asarray(x) for x in ref])
    with np.load(ref_path) as f:
      ref = [f[f"arr_{i}"] for i in range(5)]
    mesh = jax.make_mesh((d,), ("memory",))
    sharded = sharding.shard_memory(memory, mesh)
    fn = sharding.make_sharded_top_k(mesh, k=k, weights=(1.0,))
    out = fn(sharded, queries)
    equal = all(np.array_equal(np.asarray(x), np.asarray(y))
                for x, y in zip(out, ref))
    times = []
    for _ in range(repeats):
      t = time.perf_counter()
      jax.block_until_ready(fn(sharded, queries))
      times.append(time.perf_counter() - t)
    print("RESULT", json.dumps({"devices": d, "equal": equal,
                                "seconds": float(np.median(times))}))
    """)


def sharded_retrieval(quick: bool) -> dict:
  """Sharded top-k on 1, 2, 4, 8 fake CPU devices, one subprocess each."""
  m = 2**14 if quick else 2**16
  b, k, s = 32, 10, 32
  repeats = 3 if quick else 10
  rows = []
  tmp = tempfile.mkdtemp(prefix="theory_bench_")
  ref_path = os.path.join(tmp, "unsharded.npz")
  for d in (1, 2, 4, 8):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={d}"
    )
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = _ROOT + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _SHARDED,
            str(m),
            str(b),
            str(k),
            str(s),
            str(repeats),
            ref_path,
        ],
        env=env,
        cwd=_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    line = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
    if result.returncode or not line:
      rows.append({"devices": d, "error": result.stderr.strip()[-300:]})
    else:
      rows.append(json.loads(line[-1][len("RESULT ") :]))
  return {"memory": m, "queries": b, "k": k, "set_size": s, "rows": rows}


def run(quick: bool = False) -> str:
  """Runs both parts; returns a markdown section."""
  labs = [
      lab_throughput(quick, memory_size=256, k=16),
      lab_throughput(quick, memory_size=16, k=4),
  ]
  shard = sharded_retrieval(quick)
  lines = [
      "## Theory lab: vmapped agents, sharded retrieval",
      "",
      f"Contextual bandit, closed_form rule, {labs[0]['episodes']} episodes "
      f"x {labs[0]['horizon']} steps per agent in one jitted program; JAX "
      f"backend {jax.default_backend()}, compilation excluded, median of "
      "repeated calls. The loop calls a jitted 1-agent run (the same "
      "episode scan) once per agent.",
      "",
      "| memory, k | agents | how | seconds | agent-episodes / s |",
      "|---|---:|---|---:|---:|",
  ]
  for lab in labs:
    setting = f"M = {lab['memory']}, k = {lab['k']}"
    for agents, r in lab["vmapped"].items():
      lines.append(
          f"| {setting} | {agents:,} | vmapped | {r['seconds']:.3f} | "
          f"{r['agent_episodes_per_s']:,.0f} |"
      )
    loop = lab["loop"]
    lines.append(
        f"| {setting} | {loop['agents']} | Python loop | "
        f"{loop['seconds']:.3f} | {loop['agent_episodes_per_s']:,.0f} |"
    )
  lines.append("")
  for lab in labs:
    verdict = "meets" if lab["speedup_100"] >= 20 else "misses"
    lines.append(
        f"* M = {lab['memory']}, k = {lab['k']}: vmapped over the loop at 100"
        f" agents {lab['speedup_100']:.1f}x ({verdict} the 20x target)."
    )
  for lab in labs:
    steps = lab["episodes"] * lab["horizon"]
    loop_us = 1e6 * lab["loop"]["seconds"] / (lab["loop"]["agents"] * steps)
    vmap_us = 1e6 * lab["vmapped"][100]["seconds"] / (100 * steps)
    lines.append(
        f"* M = {lab['memory']}, k = {lab['k']}: one agent-step costs "
        f"{loop_us:.1f} us in the loop and {vmap_us:.1f} us vmapped."
    )
  lines += [
      "",
      "On CPU, vmapping removes the per-agent call and per-op overhead of a"
      " single agent's scan (the loop's cost per agent-step), but not the "
      "work of each step: the exact retrieval (Jaccard against every memory"
      " entry, then a top-k with ties broken by return and recency, four "
      "`lax.top_k` passes) is most of the vmapped step. The ratio is "
      "therefore bounded by (loop cost per agent-step) / (retrieval work per"
      " agent-step); on 2 CPU cores that bound sits well under 20x (with "
      "the retrieval replaced by a near-free stand-in, the vmapped program is"
      " 6 to 10x the"
      " loop in profiling), and it grows on accelerators, whose vector units"
      " the 100 agents' retrievals fill.",
      "",
      f"### Sharded retrieval: M = {shard['memory']:,} entries, "
      f"{shard['queries']} replicated queries, k = {shard['k']}, "
      f"S = {shard['set_size']}",
      "",
      "Fake CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count) "
      "share the same cores: no speed-up is expected; the column shows the "
      "cost of the split and the all-gather merge. 'equal' is bitwise "
      "equality with the unsharded jitted retrieval.",
      "",
      "| devices | equal | seconds per batch |",
      "|---:|---|---:|",
  ]
  for r in shard["rows"]:
    if "error" in r:
      lines.append(f"| {r['devices']} | error: {r['error']!r} | |")
    else:
      lines.append(
          f"| {r['devices']} | {'yes' if r['equal'] else 'NO'} | "
          f"{r['seconds']:.4f} |"
      )
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  bench_runner.module_main(run, __doc__)
