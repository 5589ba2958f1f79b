"""Retrieval: the top-k neighbours of a state in memory, with fixed shapes.

JitRL (arXiv 2601.18510, docs/method.md section 4) scores every valid memory
entry against the current state, keeps those at or above a threshold tau and
returns the k most similar. Ties are broken by higher return, then by
recency (higher `inserted_at`), so the order is a lexicographic
(similarity desc, return desc, recency desc). All outputs have shape [K]
with a mask.

Which entries count. An entry is a neighbour when it is valid, its
similarity is >= threshold, AND its similarity is > 0. The last clause means
that an entry with nothing in common with the query (or any entry, when the
query is all padding) is never a neighbour, even with the default threshold
0.0: returns from unrelated states would otherwise flood V(s).

Selection in O(M). A full `lax.sort` of M = 1e5 scores with three keys
costs ~50 ms on CPU, far more than the similarity scan. Instead four
float32 `lax.top_k` passes of size K find (1) the entries above the K-th
largest similarity s*, (2) among the entries tied at s*, those above the
needed return r*, (3, 4) among those tied at (s*, r*), the most recent (the
insertion counter split in two 16-bit halves, exact in float32); a final
`lax.sort` of the <= 4K survivors orders them. The result equals the full
lexicographic sort (tests check it against NumPy).

Exact tier (the reference's "keep every entry with similarity > 0.98 even
past k"): with fixed shapes it becomes a second cap. With k_exact > 0 the
output has K = k + k_exact slots: the first k are the usual top k, and the
next k_exact hold the following entries in the same order, masked unless
their similarity is > exact_threshold.

Returns are assumed finite; `inserted_at` is unique among valid entries (it
is the insertion counter).

Dimension letters: M memory rows, K output slots, W bitset words, V views.
"""

from typing import NamedTuple, Sequence

import jax
from jax import lax
import jax.numpy as jnp

from jitrl_jax import memory as memory_lib
from jitrl_jax import similarity
from jitrl_jax import token_sets

MemoryState = memory_lib.MemoryState
TokenSet = token_sets.TokenSet


class Neighbours(NamedTuple):
  """Retrieved neighbours, best first; masked slots come last."""

  indices: jax.Array  # [K] int32 memory rows (0 where masked).
  similarities: jax.Array  # [K] float32 (0 where masked).
  action_ids: jax.Array  # [K] int32 (0 where masked).
  returns: jax.Array  # [K] float32 (0 where masked).
  mask: jax.Array  # [K] bool, True for a real neighbour.


def reference_threshold(step, *, tau0: float = 0.95) -> jax.Array:
  """The reference's threshold schedule: tau_t = tau0 - 0.1 * min(t/20, 1).

  Args:
    step: [] t, the step within the episode (int or traced).
    tau0: the initial threshold (0.95 for text games).

  Returns:
    [] float32, from tau0 at t = 0 down to tau0 - 0.1 from t = 20 on.
  """
  t = jnp.asarray(step, jnp.float32)
  return (tau0 - 0.1 * jnp.minimum(t / 20.0, 1.0)).astype(jnp.float32)


def _top_lexicographic(sim, ret, rec, keep, k: int):
  """Indices of the k best kept entries by (sim, ret, rec), all descending.

  Tie refinement with float32 `lax.top_k` passes (XLA:CPU has a fast path
  for float32 top-k, while int32 top-k falls back to a sort, ~100x slower):
  keys (sim, ret, rec_hi, rec_lo) with rec = rec_hi * 2**16 + rec_lo, each
  half exact in float32. Pass i keeps the entries strictly above the value
  at the position still needed, among those tied on every earlier key, and
  narrows the tie set to that value. rec is unique, so the last pass breaks
  every tie.

  Args:
    sim: [M] float32.
    ret: [M] float32 (finite).
    rec: [M] int32, >= 0 and unique among kept entries.
    keep: [M] bool.
    k: static, 1 <= k <= M.

  Returns:
    (indices [k] int32 best first, mask [k] bool), masked slots last.
  """
  neg_inf = jnp.float32(-jnp.inf)
  rec = jnp.maximum(rec, 0)
  keys = (
      sim,
      ret,
      (rec >> 16).astype(jnp.float32),
      (rec & 0xFFFF).astype(jnp.float32),
  )
  tied, need = keep, jnp.int32(k)
  cand_idx, cand_sel = [], []
  for i, key in enumerate(keys):
    values, idx = lax.top_k(jnp.where(tied, key, neg_inf), k)
    member = tied[idx]
    if i < len(keys) - 1:
      if i == 0:
        # need == k: the last (smallest) value. Not values[k - 1]: XLA:CPU
        # rewrites top_k + a constant-index read into a full sort (0.2 ms
        # -> 60 ms at M = 1e5).
        cut = jnp.min(values)
      else:
        cut = values[jnp.clip(need - 1, 0, k - 1)]
      sel = member & (values > cut) & (need > 0)
      # Fewer tied entries than needed: cut = -inf and all were selected.
      tied = tied & (key == cut)
    else:
      sel = member & (jnp.arange(k) < need)
    need = need - jnp.sum(sel, dtype=jnp.int32)
    cand_idx.append(idx)
    cand_sel.append(sel)
  # Order the <= k selected survivors of the 4k candidates by rank: the
  # number of candidates that beat each one on (selected, sim, ret, rec).
  # Selected entries are distinct with distinct rec, so their ranks are
  # 0 .. n_sel - 1, unique; the rest rank after them (and may share ranks,
  # which only the masked slots see). A [4k, 4k] comparison instead of a
  # 5-operand sort: ~8x faster on CPU, and cheap under vmap.
  idx = jnp.concatenate(cand_idx).astype(jnp.int32)
  sel = jnp.concatenate(cand_sel)
  s, r, c = sim[idx], ret[idx], rec[idx]
  col = lambda x: x[:, None]
  row = lambda x: x[None, :]
  beats = (col(s) > row(s)) | (
      (col(s) == row(s))
      & ((col(r) > row(r)) | ((col(r) == row(r)) & (col(c) > row(c))))
  )
  rank = jnp.sum(beats & col(sel), axis=0, dtype=jnp.int32)
  n_sel = jnp.sum(sel, dtype=jnp.int32)
  rank = jnp.where(sel, rank, 4 * k)  # unselected: dropped by the scatter.
  order_idx = jnp.zeros((k,), jnp.int32).at[rank].set(idx, mode="drop")
  mask = jnp.arange(k) < n_sel
  return jnp.where(mask, order_idx, 0), mask


def top_k_from_similarities(
    memory: MemoryState,
    similarities: jax.Array,
    *,
    k: int,
    threshold=0.0,
    k_exact: int = 0,
    exact_threshold: float = 0.98,
) -> Neighbours:
  """Neighbours from precomputed similarities (see the module docstring).

  Args:
    memory: the memory (valid, returns, action_ids, inserted_at are used).
    similarities: [M] float32 similarity of each row to the query.
    k: static number of neighbours, >= 1; may exceed M (extra slots masked).
    threshold: [] keep entries with similarity >= threshold (and > 0).
    k_exact: static size of the exact tier (0: none).
    exact_threshold: similarity above which exact-tier entries count.

  Returns:
    Neighbours with K = k + k_exact slots.
  """
  if k < 1 or k_exact < 0:
    raise ValueError(f"need k >= 1 and k_exact >= 0, got {k}, {k_exact}")
  m = memory_lib.capacity(memory)
  if jnp.shape(similarities) != (m,):
    raise ValueError(
        f"similarities must be [{m}], got {jnp.shape(similarities)}"
    )
  sim = similarities.astype(jnp.float32)
  keep = memory.valid & (sim >= threshold) & (sim > 0)
  total = k + k_exact
  kk = min(total, m)
  idx, mask = _top_lexicographic(
      sim, memory.returns.astype(jnp.float32), memory.inserted_at, keep, kk
  )
  if kk < total:  # More slots than memory rows: pad with masked slots.
    idx = jnp.concatenate([idx, jnp.zeros((total - kk,), jnp.int32)])
    mask = jnp.concatenate([mask, jnp.zeros((total - kk,), bool)])
  sims = sim[idx]
  if k_exact:
    mask = mask & ((jnp.arange(total) < k) | (sims > exact_threshold))
  zero = lambda x: jnp.where(mask, x, jnp.zeros_like(x))
  return Neighbours(
      indices=zero(idx),
      similarities=zero(sims),
      action_ids=zero(memory.action_ids[idx]),
      returns=zero(memory.returns[idx]),
      mask=mask,
  )


def top_k_neighbours(
    memory: MemoryState,
    query_views: Sequence[TokenSet],
    *,
    k: int,
    weights,
    threshold=0.0,
    k_exact: int = 0,
    exact_threshold: float = 0.98,
    method: str = "hash",
    floors=None,
) -> Neighbours:
  """The top-k neighbours of a query by exact weighted Jaccard similarity.

  sim[m] = sum_v w_v J(q_v, memory_v[m]); keep valid entries with
  threshold <= sim and sim > 0; order by (sim, return, recency) descending.

  Args:
    memory: the memory, M rows.
    query_views: V TokenSets, view v ids [S_v], counts [S_v].
    k: static number of neighbours (may exceed M: extra slots masked).
    weights: [V] view weights, e.g. (0.3, 0.7).
    threshold: [] similarity threshold tau (may be traced, e.g.
      `reference_threshold(step)`).
    k_exact: static size of the exact tier (0: none); output K = k + k_exact.
    exact_threshold: exact-tier similarity bar (strictly above).
    method: exact kernel, see `similarity.jaccard`.
    floors: None, or [V] per-view minimum Jaccard: an entry below a floor
      in any view has similarity 0, so it is never a neighbour
      (`similarity.weighted_jaccard`).

  Returns:
    Neighbours, each field [k + k_exact].
  """
  sims = similarity.memory_similarity(
      query_views, memory.views, weights, method=method, floors=floors
  )
  return top_k_from_similarities(
      memory,
      sims,
      k=k,
      threshold=threshold,
      k_exact=k_exact,
      exact_threshold=exact_threshold,
  )


def memory_bitsets(
    memory: MemoryState, *, n_bits: int = 2048
) -> tuple[jax.Array, ...]:
  """Bitsets of every memory row and view, for `top_k_neighbours_bitset`.

  Memory changes only at episode end, so compute these once per episode
  (after `add_episode` or `load`) and reuse them for every step.

  Args:
    memory: the memory.
    n_bits: bitset width (power of two >= 32).

  Returns:
    V `similarity.BitsetMatrix`es: words [n_bits // 32, M] uint32,
    word-major (column m is entry m's bitset; empty rows give zero
    columns), and popcounts [M].
  """
  return tuple(
      similarity.bitset_matrix(view, n_bits=n_bits) for view in memory.views
  )


def query_bitsets(
    query_views: Sequence[TokenSet], *, n_bits: int = 2048
) -> tuple[jax.Array, ...]:
  """Bitsets of a query's views: V arrays [n_bits // 32] uint32."""
  return tuple(similarity.to_bitset(v, n_bits=n_bits) for v in query_views)


def top_k_neighbours_bitset(
    memory: MemoryState,
    bitsets: Sequence[jax.Array],
    query_bits: Sequence[jax.Array],
    *,
    k: int,
    weights,
    threshold=0.0,
    k_exact: int = 0,
    exact_threshold: float = 0.98,
) -> Neighbours:
  """Like `top_k_neighbours`, with the bitset similarity (set form).

  sim[m] = sum_v w_v popcount(q_v & b_v[m]) / popcount(q_v | b_v[m]); see
  `similarity.bitset_jaccard` for its error against the exact Jaccard.

  Args:
    memory: the memory, M rows.
    bitsets: V `similarity.BitsetMatrix`es from `memory_bitsets(memory)`.
    query_bits: V arrays [W_v] uint32 from `query_bitsets(query_views)`.
    k: static number of neighbours.
    weights: [V] view weights.
    threshold: [] similarity threshold.
    k_exact: static size of the exact tier.
    exact_threshold: exact-tier similarity bar.

  Returns:
    Neighbours, each field [k + k_exact].
  """
  m = memory_lib.capacity(memory)
  for v, b in enumerate(bitsets):
    words = getattr(b, "words", None)
    if words is None or jnp.ndim(words) != 2 or jnp.shape(words)[1] != m:
      raise ValueError(
          f"bitsets[{v}] must be a BitsetMatrix of {m} entries (from"
          f" memory_bitsets), got {type(b).__name__}"
      )
  sims = similarity.memory_bitset_similarity(query_bits, bitsets, weights)
  return top_k_from_similarities(
      memory,
      sims,
      k=k,
      threshold=threshold,
      k_exact=k_exact,
      exact_threshold=exact_threshold,
  )
