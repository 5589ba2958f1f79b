"""Retrieval benchmark: similarity scans over memory, JAX against Python.

  python -m benchmarks.retrieval_bench [--quick]

Memory of M entries (M = 1e3, 1e4, 1e5; quick mode: up to 1e4), one view of
S = 64 slots holding a multiset of 64 words (Zipf frequencies over a
vocabulary of 4,000, so some repeat; never truncated), 1 query and 32
queries. Compared:

* Python `Counter` multiset Jaccard, a loop over entries in the reference
  code's style. The memory's Counters and the query's are built before the
  clock starts (the fastest Python variant, so speed-ups are conservative).
* Python set Jaccard: `len(q & e) / len(q | e)` over prebuilt sets.
* JAX exact multiset kernel: `similarity.memory_similarity` ("hash"
  method, the default; also "search", binary search), jitted.
* JAX bitset kernel: `similarity.memory_bitset_similarity`, 2048 bits as
  64 uint32 words per entry, memory precomputed as a `BitsetMatrix`
  (words [64, M] word-major, popcounts [M]).
* Full retrieval (similarity + threshold + top-10 with the tie rules).

JAX timings: `jax.jit`, a warm-up call excluded (compilation), then the
median of repeated calls each ended by `block_until_ready`. Python: one full
pass, unless a pass would take over ~20 s, in which case a prefix is timed
and extrapolated linearly (marked). 32 Python queries are 32 x one query
(extrapolated, marked). The machine's copy bandwidth (NumPy copy of a 256 MiB
array) is the yardstick for the bitset scan's bytes per second.
"""

import collections
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import run as bench_runner
from benchmarks import timing
from jitrl_jax import memory as memory_lib
from jitrl_jax import retrieval
from jitrl_jax import similarity
from jitrl_jax import token_sets

S = 64  # set size
TOKENS = 64  # tokens per entry (with repeats): at most S distinct.
VOCAB = 4000
N_BITS = 2048
BATCH = 32
K = 10
PYTHON_BUDGET_S = 20.0


def make_data(m: int, num_queries: int, seed: int = 0):
  """Random memory and queries, as token lists and as padded TokenSets.

  Returns:
    (entry token lists [M][TOKENS], TokenSet ids/counts [M, S],
     query token lists [Q][TOKENS], TokenSet [Q, S]).
  """
  rng = np.random.default_rng(seed)
  # Zipf-like word frequencies, as in text.
  p = 1.0 / np.arange(1, VOCAB + 1)
  p /= p.sum()
  raw = rng.choice(VOCAB, size=(m, TOKENS), p=p)
  # Queries: memory entries with a quarter of their tokens replaced, so that
  # similarities span (0, 1).
  src = rng.integers(0, m, num_queries)
  q_raw = raw[src].copy()
  swap = rng.random(q_raw.shape) < 0.25
  q_raw[swap] = rng.choice(VOCAB, size=int(swap.sum()), p=p)
  # Stable-hash the word ids, as text_token_set would.
  table = np.array([token_sets.stable_hash(f"w{i}") for i in range(VOCAB)])
  assert len(set(table.tolist())) == VOCAB  # a bijection on this vocabulary.
  return raw, _token_sets(table[raw]), q_raw, _token_sets(table[q_raw])


def _token_sets(ids: np.ndarray) -> token_sets.TokenSet:
  """Vectorised `token_sets.token_set` over rows: [N, L] -> TokenSet [N, S]."""
  n = ids.shape[0]
  x = np.sort(ids, axis=1)
  first = np.ones_like(x, bool)
  first[:, 1:] = x[:, 1:] != x[:, :-1]
  rank = np.cumsum(first, axis=1) - 1
  rows = np.broadcast_to(np.arange(n)[:, None], x.shape)
  out_ids = np.full((n, S), token_sets.PAD, np.int32)
  out_counts = np.zeros((n, S), np.float32)
  keep = rank < S
  out_ids[rows[first & keep], rank[first & keep]] = x[first & keep]
  np.add.at(out_counts, (rows[keep], rank[keep]), 1.0)
  return token_sets.TokenSet(out_ids, out_counts)


def counter_jaccard(a: collections.Counter, b: collections.Counter) -> float:
  """The reference's multiset Jaccard: sum(min) / sum(max) via Counter ops."""
  union = sum((a | b).values())
  return sum((a & b).values()) / union if union else 0.0


def set_jaccard(a: set, b: set) -> float:
  union = len(a | b)
  return len(a & b) / union if union else 0.0


def _time_python(fn, entries, query) -> tuple[float, str]:
  """Seconds for one pass of fn(query, e) over entries; maybe extrapolated."""
  m = len(entries)
  probe = min(m, 2000)
  t = time.perf_counter()
  for e in entries[:probe]:
    fn(query, e)
  probe_s = time.perf_counter() - t
  if probe == m:
    return probe_s, ""
  if probe_s * m / probe > PYTHON_BUDGET_S:
    return probe_s * m / probe, f"extrapolated from {probe} entries"
  t = time.perf_counter()
  for e in entries:
    fn(query, e)
  return time.perf_counter() - t, ""


def _time_jax(fn, args, repeats: int) -> float:
  """Median seconds of jitted fn(*args) (at most ~8 s of repeats)."""
  return timing.median_seconds(lambda: fn(*args), repeats, budget_s=8.0)


def copy_bandwidth(nbytes: int = 256 * 2**20, repeats: int = 5) -> float:
  """Bytes copied per second by a NumPy copy of a large array (read+write
  traffic is twice this)."""
  src = np.ones(nbytes // 8, np.float64)
  dst = np.empty_like(src)
  np.copyto(dst, src)  # fault the pages in.
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    np.copyto(dst, src)
    times.append(time.perf_counter() - t)
  return nbytes / float(np.median(times))


def _kernels():
  exact = lambda q, m: similarity.memory_similarity((q,), (m,), (1.0,))
  search = lambda q, m: similarity.memory_similarity(
      (q,), (m,), (1.0,), method="search"
  )
  bitset = lambda qb, mb: similarity.memory_bitset_similarity(
      (qb,), (mb,), (1.0,)
  )
  batched = lambda f: jax.jit(jax.vmap(f, in_axes=(0, None)))
  return {
      "exact": (jax.jit(exact), batched(exact)),
      "search": (jax.jit(search), None),
      "bitset": (jax.jit(bitset), batched(bitset)),
  }


def _retrieval_fns():
  exact = jax.jit(
      lambda mem, q: retrieval.top_k_neighbours(
          mem, (q,), k=K, weights=(1.0,), threshold=0.0
      )
  )
  bitset = jax.jit(
      lambda mem, mb, qb: retrieval.top_k_neighbours_bitset(
          mem, (mb,), (qb,), k=K, weights=(1.0,), threshold=0.0
      )
  )
  return exact, bitset


def measure(m: int, repeats: int, kernels, retrieval_fns) -> dict:
  raw, mem_ts, q_raw, q_ts = make_data(m, BATCH, seed=m)
  counters = [collections.Counter(r.tolist()) for r in raw]
  sets = [set(r.tolist()) for r in raw]
  q_counter = collections.Counter(q_raw[0].tolist())
  q_set = set(q_raw[0].tolist())
  row = {"m": m}
  row["counter_s"], row["counter_note"] = _time_python(
      counter_jaccard, counters, q_counter
  )
  row["set_s"], row["set_note"] = _time_python(set_jaccard, sets, q_set)
  # Check that the exact kernel agrees with the Counter reference (on ids
  # equal up to the bijective word -> stable_hash map).
  mem_dev = token_sets.TokenSet(*map(jnp.asarray, mem_ts))
  q_all = token_sets.TokenSet(*map(jnp.asarray, q_ts))
  q0 = token_sets.TokenSet(q_all.ids[0], q_all.counts[0])
  exact1, exact_b = kernels["exact"]
  sims = np.asarray(exact1(q0, mem_dev))
  probe = min(m, 200)
  want = [counter_jaccard(q_counter, c) for c in counters[:probe]]
  row["max_abs_err_vs_counter"] = float(np.max(np.abs(sims[:probe] - want)))
  row["exact_s"] = _time_jax(exact1, (q0, mem_dev), repeats)
  row["exact_b_s"] = _time_jax(exact_b, (q_all, mem_dev), repeats)
  row["search_s"] = _time_jax(kernels["search"][0], (q0, mem_dev), repeats)
  # Memory: a BitsetMatrix (word-major words + popcounts), as
  # retrieval.memory_bitsets makes it; queries: [B, W] bitsets.
  mem_bits = jax.block_until_ready(
      jax.jit(lambda t: similarity.bitset_matrix(t, n_bits=N_BITS))(mem_dev)
  )
  q_bits = jax.jit(jax.vmap(lambda t: similarity.to_bitset(t, n_bits=N_BITS)))(
      q_all
  )
  bit1, bit_b = kernels["bitset"]
  row["bitset_s"] = _time_jax(bit1, (q_bits[0], mem_bits), repeats)
  row["bitset_b_s"] = _time_jax(bit_b, (q_bits, mem_bits), repeats)
  row["bitset_bytes"] = int(mem_bits.words.nbytes + mem_bits.popcounts.nbytes)
  # Full retrieval over a memory holding these entries.
  memory = memory_lib.init(m, (S,))
  memory = memory._replace(
      views=(mem_dev,),
      valid=jnp.ones((m,), bool),
      inserted_at=jnp.arange(m, dtype=jnp.int32),
      returns=jnp.asarray(np.random.default_rng(1).normal(size=m), jnp.float32),
  )
  ret_exact, ret_bitset = retrieval_fns
  row["retrieve_exact_s"] = _time_jax(ret_exact, (memory, q0), repeats)
  row["retrieve_bitset_s"] = _time_jax(
      ret_bitset, (memory, mem_bits, q_bits[0]), repeats
  )
  return row


def _fmt_s(s: float) -> str:
  if s >= 1.0:
    return f"{s:.2f} s"
  if s >= 1e-3:
    return f"{s * 1e3:.2f} ms"
  return f"{s * 1e6:.0f} us"


def run(quick: bool = False) -> str:
  """Runs the benchmark; returns a markdown section."""
  sizes = (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
  repeats = 5 if quick else 15
  copy_bps = copy_bandwidth()
  kernels, retrieval_fns = _kernels(), _retrieval_fns()
  rows = [measure(m, repeats, kernels, retrieval_fns) for m in sizes]
  lines = [
      "## Retrieval: similarity scans over memory",
      "",
      f"One view, S = {S} multiset ids per entry ({TOKENS} tokens, "
      f"vocabulary {VOCAB:,}, Zipf frequencies), bitsets of {N_BITS} bits "
      f"({N_BITS // 32} uint32 words). JAX backend "
      f"{jax.default_backend()}; median of up to {repeats} calls after a "
      "warm-up. Python baselines: one pass over prebuilt Counters / sets "
      "(marked when extrapolated); their 32-query times are 32 x one query.",
      "",
      "### Time for one query against M entries",
      "",
      "| M | Python Counter | Python set | JAX exact (hash) | JAX exact "
      "(search) | JAX bitset | retrieval exact + top-10 | retrieval "
      "bitset + top-10 |",
      "|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  notes = []
  for r in rows:
    mark = lambda note: " *" if note else ""
    lines.append(
        f"| {r['m']:,} | {_fmt_s(r['counter_s'])}{mark(r['counter_note'])} | "
        f"{_fmt_s(r['set_s'])}{mark(r['set_note'])} | "
        f"{_fmt_s(r['exact_s'])} | {_fmt_s(r['search_s'])} | "
        f"{_fmt_s(r['bitset_s'])} | {_fmt_s(r['retrieve_exact_s'])} | "
        f"{_fmt_s(r['retrieve_bitset_s'])} |"
    )
    for key in ("counter_note", "set_note"):
      if r[key]:
        notes.append(f"M = {r['m']:,}, {key.split('_')[0]}: {r[key]}")
  if notes:
    lines += ["", "\\* " + "; ".join(notes) + "."]
  lines += [
      "",
      f"### {BATCH} queries (JAX: vmapped over queries)",
      "",
      "| M | Python Counter (32 x 1) | Python set (32 x 1) | JAX exact | "
      "JAX bitset | exact per query | bitset per query |",
      "|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    lines.append(
        f"| {r['m']:,} | {_fmt_s(BATCH * r['counter_s'])} | "
        f"{_fmt_s(BATCH * r['set_s'])} | {_fmt_s(r['exact_b_s'])} | "
        f"{_fmt_s(r['bitset_b_s'])} | {_fmt_s(r['exact_b_s'] / BATCH)} | "
        f"{_fmt_s(r['bitset_b_s'] / BATCH)} |"
    )
  lines += [
      "",
      "### Speed-ups (Python time / JAX time)",
      "",
      "| M | exact vs Counter, 1 q | exact vs Counter, 32 q | bitset vs "
      "Counter, 1 q | bitset vs Counter, 32 q | bitset vs set, 1 q | "
      "exact: max abs error vs Counter |",
      "|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    c = r["counter_s"]
    lines.append(
        f"| {r['m']:,} | {c / r['exact_s']:,.0f}x | "
        f"{BATCH * c / r['exact_b_s']:,.0f}x | {c / r['bitset_s']:,.0f}x | "
        f"{BATCH * c / r['bitset_b_s']:,.0f}x | "
        f"{r['set_s'] / r['bitset_s']:,.0f}x | "
        f"{r['max_abs_err_vs_counter']:.1e} |"
    )
  lines += [
      "",
      "### Bitset scan bandwidth",
      "",
      f"NumPy copy of a 256 MiB array: {copy_bps / 1e9:.2f} GB/s copied "
      f"({2 * copy_bps / 1e9:.2f} GB/s of read + write traffic).",
      "",
      "| M | bitset bytes | 1 query: time | read GB/s | fraction of copy "
      "rate | 32 queries: GB/s (bytes x 32 / time) |",
      "|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    bps = r["bitset_bytes"] / r["bitset_s"]
    bps_b = BATCH * r["bitset_bytes"] / r["bitset_b_s"]
    lines.append(
        f"| {r['m']:,} | {r['bitset_bytes'] / 2**20:.1f} MiB | "
        f"{_fmt_s(r['bitset_s'])} | {bps / 1e9:.2f} | "
        f"{bps / copy_bps:.2f} | {bps_b / 1e9:.2f} |"
    )
  big = rows[-1]
  exact_x = big["counter_s"] / big["exact_s"]
  bitset_x = big["counter_s"] / big["bitset_s"]
  frac = big["bitset_bytes"] / big["bitset_s"] / copy_bps
  verdict = lambda ok: "met" if ok else "NOT met"
  lines += [
      "",
      f"Targets at M = {big['m']:,} (1 query): exact multiset >= 20x the "
      f"Counter reference: {exact_x:,.0f}x, {verdict(exact_x >= 20)}; "
      f"bitset >= 1000x: {bitset_x:,.0f}x, {verdict(bitset_x >= 1000)}; "
      f"bitset scan at >= half the copy rate: {frac:.2f}, "
      f"{verdict(frac >= 0.5)}.",
  ]
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  bench_runner.module_main(run, __doc__)
