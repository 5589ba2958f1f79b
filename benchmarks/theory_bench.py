"""Theory-lab throughput and sharded retrieval.

  python -m benchmarks.theory_bench [--quick]

1. Theory lab (experiments/theory/), contextual bandit, jitrl rule:
   agent-episodes per second with 1, 100 and 1,000 agents vmapped in one
   jitted program (each agent: `episodes` episodes of `horizon` steps
   under `lax.scan`), against a Python loop that calls a jitted
   single-agent run (the same scan, no vmap) once per agent, for 100 agents.
   Two memory settings: the lab's default (M = 256, k = 16), where each
   agent's step is a real similarity scan, and a small one (M = 16, k = 4),
   where per-call overhead dominates. Compilation is excluded (a warm-up
   call); timings are medians of repeated calls, each ended by
   `block_until_ready`. An ablation bounds the ratio the machine allows:
   the same comparison at M = 256 with the retrieval (similarity scan and
   top-k) replaced by a stand-in that takes the k most recent entries (the
   runner's `neighbours_fn` parameter), so what is left is the agent step
   without the retrieval's work.
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

import jax
import jax.numpy as jnp

from benchmarks import run as bench_runner
from benchmarks import timing
from experiments.configs import theory_lab as lab_config
from experiments.theory import rules as lab_rules
from experiments.theory import runner as lab_runner
from jitrl_jax import retrieval as retrieval_lib
from jitrl_jax import similarity

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _recent_neighbours(settings, hyper, memory, views, key):
  """Ablation `neighbours_fn` of the lab's runner: no similarity, no top-k.

  The k_max most recently written rows (the ring buffer's last slots) with
  similarity 1, masked beyond hyper.k and where empty; views and key are
  ignored. Used only to measure what the agent step costs without the
  retrieval's work.
  """
  del views, key
  capacity = memory.returns.shape[0]
  idx = (memory.cursor - 1 - jnp.arange(settings.k_max)) % capacity
  mask = memory.valid[idx] & (jnp.arange(settings.k_max) < hyper.k)
  return retrieval_lib.Neighbours(
      indices=jnp.where(mask, idx, 0).astype(jnp.int32),
      similarities=mask.astype(jnp.float32),
      action_ids=jnp.where(mask, memory.action_ids[idx], 0),
      returns=jnp.where(mask, memory.returns[idx], 0.0),
      mask=mask,
  )


def retrieval_floor_us(env, settings, agents: int, quick: bool) -> dict:
  """Microseconds per agent of the two least parts of any exact retrieval.

  On the lab's own data (each agent's environment instance, M + 1 states
  drawn by reset: M as memory rows, one as the query), vmapped over agents:
  the similarity scan alone (`similarity.memory_similarity`, the lab's
  method) and one float32 `lax.top_k` of k over its output (no tie-breaking).

  Args:
    env: the synthetic environment.
    settings: the lab's `Settings` (memory_size, k_max, similarity_method).
    agents: how many agents are vmapped.
    quick: fewer repeats.

  Returns:
    {"scan_us": ..., "top_k_us": ...} per agent.
  """
  m = settings.memory_size

  def draw(key):
    params = env.init_params(key)
    states = jax.vmap(lambda k: env.reset(params, k))(
        jax.random.split(key, m + 1)
    )
    views = jax.vmap(lambda st: env.views(params, st))(states)
    rows = tuple(type(v)(v.ids[:m], v.counts[:m]) for v in views)
    query = tuple(type(v)(v.ids[m], v.counts[m]) for v in views)
    return rows, query

  rows, query = jax.jit(jax.vmap(draw))(
      jax.random.split(jax.random.key(0), agents)
  )
  weights = (1.0,) * len(rows)
  scan = jax.jit(
      jax.vmap(
          lambda r, q: similarity.memory_similarity(
              q, r, weights, method=settings.policy.similarity_method
          )
      )
  )
  sims = scan(rows, query)
  top = jax.jit(jax.vmap(lambda x: jax.lax.top_k(x, settings.k_max)))
  reps = 5 if quick else 20
  per = lambda fn: 1e6 * timing.median_seconds(fn, reps) / agents
  return {
      "scan_us": per(lambda: scan(rows, query)),
      "top_k_us": per(lambda: top(sims)),
  }


def lab_throughput(
    quick: bool,
    *,
    memory_size: int,
    k: int,
    ablate_retrieval: bool = False,
    with_floor: bool = False,
) -> dict:
  """Agent-episodes per second: vmapped (1, 100, 1000) and a Python loop.

  Args:
    quick: fewer episodes and repeats.
    memory_size: M, each agent's memory capacity.
    k: neighbours retrieved.
    ablate_retrieval: run the lab with `_recent_neighbours` as its
      `neighbours_fn` instead of the retrieval.
    with_floor: also measure `retrieval_floor_us` at 100 agents ("floor").

  Returns:
    A dict of the settings, the timings and the 100-agent speed-up.
  """
  cfg = lab_runner.resolve_config(lab_config.get_config())
  episodes = 5 if quick else 20
  cfg.episodes = episodes
  cfg.jitrl.memory_size = memory_size
  cfg.jitrl.k = k
  env = lab_runner.make_env(cfg, "bandit")
  settings = lab_runner.settings_for(cfg)
  hyper = lab_runner.default_hyper(cfg)
  rule = lab_rules.rule_id("jitrl")
  neighbours_fn = (
      _recent_neighbours if ablate_retrieval else lab_rules.neighbours
  )
  runner = lab_runner.make_runner(env, settings, neighbours_fn=neighbours_fn)
  repeats = 3 if quick else 5
  out = {
      "episodes": episodes,
      "horizon": env.horizon,
      "memory": settings.memory_size,
      "k": settings.k_max,
      "ablated": ablate_retrieval,
  }
  vmapped = {}
  for agents in (1, 100, 1000):
    keys = lab_runner.agent_keys(0, agents)
    t = timing.median_seconds(lambda k=keys: runner(rule, hyper, k), repeats)
    vmapped[agents] = {
        "seconds": t,
        "agent_episodes_per_s": agents * episodes / t,
    }
  out["vmapped"] = vmapped
  if with_floor:
    out["floor"] = retrieval_floor_us(env, settings, 100, quick)

  single = jax.jit(
      lambda key: lab_runner.run_agent(
          env, settings, hyper, rule, key, neighbours_fn=neighbours_fn
      )
  )
  loop_agents = 100
  keys = lab_runner.agent_keys(0, loop_agents)

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
  # Microseconds an agent-step, at 100 agents.
  steps = loop_agents * episodes * env.horizon
  out["loop_step_us"] = 1e6 * t / steps
  out["vmapped_step_us"] = 1e6 * vmapped[100]["seconds"] / steps
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
      lab_throughput(quick, memory_size=256, k=16, with_floor=True),
      lab_throughput(quick, memory_size=16, k=4),
      lab_throughput(quick, memory_size=256, k=16, ablate_retrieval=True),
  ]
  shard = sharded_retrieval(quick)
  lines = [
      "## Theory lab: vmapped agents, sharded retrieval",
      "",
      f"Contextual bandit, jitrl rule, {labs[0]['episodes']} episodes "
      f"x {labs[0]['horizon']} steps per agent in one jitted program; JAX "
      f"backend {jax.default_backend()}, compilation excluded, median of "
      "repeated calls. The loop calls a jitted 1-agent run (the same "
      "episode scan) once per agent.",
      "",
      "| memory, k | agents | how | seconds | agent-episodes / s |",
      "|---|---:|---|---:|---:|",
  ]

  def label(lab):
    setting = f"M = {lab['memory']}, k = {lab['k']}"
    return setting + (", no retrieval (ablation)" if lab["ablated"] else "")

  for lab in labs:
    setting = label(lab)
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
        f"* {label(lab)}: vmapped over the loop at 100"
        f" agents {lab['speedup_100']:.1f}x ({verdict} the 20x target)."
    )
  for lab in labs:
    lines.append(
        f"* {label(lab)}: one agent-step costs {lab['loop_step_us']:.1f} us"
        f" in the loop and {lab['vmapped_step_us']:.1f} us vmapped."
    )
  full, ablated = labs[0], labs[-1]
  loop_us = full["loop_step_us"]
  rest_us = ablated["vmapped_step_us"]
  budget_us = loop_us / 20 - rest_us
  scan_us, top_k_us = full["floor"]["scan_us"], full["floor"]["top_k_us"]
  lines += [
      "",
      "On CPU, vmapping removes the per-agent call and per-op overhead of a"
      " single agent's scan (most of the loop's cost per agent-step), but "
      "not the work of each step, and the exact retrieval (Jaccard against "
      "every memory entry, then a top-k with ties broken by return and "
      "recency) is most of the vmapped step: without it (the ablation row) "
      f"a vmapped agent-step costs {rest_us:.2f} us instead of "
      f"{full['vmapped_step_us']:.2f} us.",
      "",
      f"What 20x would need at M = {full['memory']}, k = {full['k']}: the "
      f"loop's agent-step costs {loop_us:.1f} us, so the vmapped one may "
      f"cost {loop_us / 20:.2f} us, of which the step without retrieval "
      f"takes {rest_us:.2f} us: {budget_us:.2f} us an agent-step is left "
      "for the retrieval. On the lab's own states, vmapped over 100 agents "
      f"(measured in this run), the similarity scan alone costs {scan_us:.2f}"
      f" us an agent and one float32 `lax.top_k` of {full['k']} over its "
      f"{full['memory']} values {top_k_us:.2f} us, before any tie-breaking. "
      + (
          "The top-k pass alone (the least any top-k retrieval does, "
          "whatever the similarity kernel) is over that budget, so no exact"
          " retrieval reaches the target on this machine; on an accelerator"
          " the vmapped step costs about what one agent's does (100 agents "
          "fill vector units one leaves idle), which is where the ratio "
          "grows."
          if top_k_us > budget_us
          else "The top-k pass alone fits that budget; the scan and the "
          "tie-breaking are where a faster retrieval would have to win."
      ),
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
